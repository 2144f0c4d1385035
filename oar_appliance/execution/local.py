"""LocalConnector: every node is this host (the one-host lab, ``OAR_CONNECTOR=local``)."""

from __future__ import annotations

import sys
from typing import Any

from oar_appliance.execution.base import (
    JOBCTL_MODULE,
    OAREXEC_MODULE,
    Connector,
    RunResult,
    run_command,
    start_and_wait_ready,
)

__all__ = ["LocalConnector"]


class LocalConnector(Connector):
    """Runs oarexec and node commands as child processes of this host, with this Python.

    ``host`` only names the node in messages and in the job data (``job_data["host"]``,
    which oarexec puts in its end report)."""

    def __init__(self, python: str | None = None):
        self.python = python or sys.executable

    def node_command(self, host: str, module: str) -> list[str]:
        return [self.python, "-m", module]

    def start_oarexec(self, host: str, job_data: dict[str, Any], timeout: float) -> None:
        start_and_wait_ready(self.node_command(host, OAREXEC_MODULE), host, job_data, timeout)

    def run(self, host: str, argv: list[str], stdin: bytes | None = None,
            timeout: float = 30.0) -> RunResult:
        return run_command(argv, stdin, timeout)

    def jobctl_all(self, hosts: list[str], action: str, job_id: int, runtime_dir: str, *extra: str,
                   stdin: bytes | None = None, timeout: float = 30.0) -> dict[str, RunResult]:
        """Every node is this host, with one runtime directory and one cgroup tree: the
        action is done once (for the first host, the head node) and stands for all."""
        if not hosts:
            return {}
        first = sorted(hosts)[0]
        words = [first if word == "%h" else word for word in extra]
        argv = self.node_command(first, JOBCTL_MODULE) + [
            action, *words, "--job-id", str(int(job_id)), "--runtime-dir", runtime_dir]
        result = run_command(argv, stdin, timeout)
        return {host: result for host in hosts}
