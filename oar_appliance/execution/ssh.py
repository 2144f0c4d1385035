"""SshConnector: the nodes of a site, reached with ssh (``OAR_CONNECTOR=ssh``).

Every call is one ``ssh`` process (``OPENSSH_CMD``, port 6667 unless it names one, batch
mode: no password prompt ever blocks the server) running the node-side command as one
quoted shell line.  oarexec's stdin is the job data; the connection ends when oarexec's
starting process exits, since the detached oarexec keeps nothing of its stdio.

On the node the command is ``<NODE_COMMAND_PREFIX> <NODE_PYTHON> -m <module> ...``: the
prefix (``sudo -n`` by default) gives oarexec the root rights it needs to run jobs as
their users when ssh logs in as ``oar``.
"""

from __future__ import annotations

import shlex
from typing import Any, Sequence

from oar_appliance.execution.base import (
    OAREXEC_MODULE,
    Connector,
    LaunchError,
    RunResult,
    run_command,
    start_and_wait_ready,
)

__all__ = ["NODE_SSH_PORT", "SSH_FAILURE", "SshConnector"]

#: the port of the nodes' dedicated sshd (REFERENCE.md)
NODE_SSH_PORT = 6667
#: ssh's exit code when it could not connect or log in (``run`` returns it as is)
SSH_FAILURE = 255


class SshConnector(Connector):
    """Runs node-side commands through ``ssh``."""

    def __init__(self, ssh_command: Sequence[str] = ("ssh",), user: str | None = None,
                 node_python: Sequence[str] = ("python3",),
                 command_prefix: Sequence[str] = ("sudo", "-n"), connect_timeout: int = 10):
        argv = list(ssh_command)
        if not any(word == "-p" or (word.startswith("-p") and word[2:].isdigit()) for word in argv[1:]):
            argv += ["-p", str(NODE_SSH_PORT)]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(connect_timeout)}"]
        if user:
            argv += ["-l", user]
        self.ssh_argv = argv
        self.node_python = list(node_python)
        self.command_prefix = list(command_prefix)

    @classmethod
    def from_config(cls, config: Any) -> SshConnector:
        """From ``OPENSSH_CMD``, ``NODE_SSH_USER``, ``NODE_PYTHON``, ``NODE_COMMAND_PREFIX``."""
        return cls(
            ssh_command=shlex.split(config["OPENSSH_CMD"]),
            user=config["NODE_SSH_USER"] or None,
            node_python=shlex.split(config["NODE_PYTHON"]),
            command_prefix=shlex.split(config["NODE_COMMAND_PREFIX"] or ""),
        )

    def node_command(self, host: str, module: str) -> list[str]:
        return [*self.command_prefix, *self.node_python, "-m", module]

    def remote_argv(self, host: str, argv: list[str]) -> list[str]:
        """The local argv that runs ``argv`` on ``host`` (one quoted shell line for the
        remote shell: ssh joins its arguments with spaces)."""
        return [*self.ssh_argv, "--", host, shlex.join(argv)]

    def start_oarexec(self, host: str, job_data: dict[str, Any], timeout: float) -> None:
        try:
            start_and_wait_ready(self.remote_argv(host, self.node_command(host, OAREXEC_MODULE)),
                                 host, job_data, timeout)
        except LaunchError as exc:
            if exc.rc != SSH_FAILURE:
                raise
            # ssh itself failed (oarexec never exits 255): the node is not reachable
            reason = exc.stderr.splitlines()[-1] if exc.stderr else "ssh failed"
            raise LaunchError(f"cannot reach {host} with ssh: {reason}", host,
                              stderr=exc.stderr, rc=exc.rc) from None

    def run(self, host: str, argv: list[str], stdin: bytes | None = None,
            timeout: float = 30.0) -> RunResult:
        return run_command(self.remote_argv(host, argv), stdin, timeout)
