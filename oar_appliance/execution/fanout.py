"""Running one node-side command on every node of a job at once (the fan-out).

The server prepares, suspends, resumes, kills and cleans all the nodes of a job in
parallel.  :func:`fanout_for` chooses the tool once: TakTuk when ``TAKTUK_CMD`` is set (the
spec's "efficient launching tool"), else ClusterShell's local execution workers, one
connector command per node (``ssh`` with ``OPENSSH_CMD``, or a child process for the
local connector), at most ``fanout`` at a time.

A command names its node with :data:`HOST`: the argument ``%h`` is replaced by each
node's name (``jobctl prepare --host %h``).
"""

from __future__ import annotations

import abc
import logging
import re
import shlex
from typing import Any, Mapping, Sequence

from oar_appliance.execution.base import Connector, RunResult, run_command

log = logging.getLogger(__name__)

__all__ = ["HOST", "FanOut", "ClusterShellFanOut", "TaktukFanOut", "fanout_for"]

#: the argument replaced by each node's name
HOST = "%h"
#: nodes contacted at the same time
DEFAULT_FANOUT = 64


class FanOut(abc.ABC):
    """Runs a node-side command on many nodes in parallel."""

    def __init__(self, connector: Connector, fanout: int = DEFAULT_FANOUT):
        self.connector = connector
        self.fanout = max(1, int(fanout))

    @abc.abstractmethod
    def run(self, hosts: Sequence[str], argv: Sequence[str], stdin: bytes | None = None,
            timeout: float = 30.0) -> dict[str, RunResult]:
        """Run ``argv`` (a node-side command, :data:`HOST` replaced) on each of ``hosts``
        with the same ``stdin``; each host's RunResult (rc None: timed out)."""


class ClusterShellFanOut(FanOut):
    """ClusterShell's ExecWorker: one local process per node running the connector's
    command for that node (its ``%h`` is ClusterShell's own node placeholder)."""

    def run(self, hosts: Sequence[str], argv: Sequence[str], stdin: bytes | None = None,
            timeout: float = 30.0) -> dict[str, RunResult]:
        from ClusterShell.NodeSet import NodeSet
        from ClusterShell.Task import task_self
        from ClusterShell.Worker.Exec import ExecWorker

        hosts = sorted(set(hosts))
        if not hosts:
            return {}
        # '%' is ClusterShell's template character: every other one is doubled
        escaped = [word if word == HOST else word.replace("%", "%%") for word in argv]
        command = shlex.join(self.connector.remote_argv(HOST, escaped))
        task = task_self()
        task.set_info("fanout", self.fanout)
        worker = ExecWorker(NodeSet.fromlist(hosts), handler=None, timeout=timeout, command=command,
                            stderr=True)
        task.schedule(worker)
        if stdin is not None:
            worker.write(stdin)
        worker.set_write_eof()
        task.resume()
        timed_out = {str(node) for node in worker.iter_keys_timeout()}
        results = {}
        for host in hosts:
            out = bytes(worker.node_buffer(host) or b"")
            err = bytes(worker.node_error_buffer(host) or b"")
            try:
                rc = None if host in timed_out else worker.node_retcode(host)
            except KeyError:  # never ran (the task was stopped): as a timeout
                log.warning("no exit status from %s", host)
                rc = None
            results[host] = RunResult(rc, out, err)
        task.abort()  # this thread's task is reused by its next fan-out: start it afresh
        return results


class TaktukFanOut(FanOut):
    """TakTuk (``TAKTUK_CMD``: ``taktuk`` when it is installed on the nodes, ``taktuk -s``
    to propagate itself): one ``taktuk`` process reaching every node with the connector's
    ssh (``-c``) and ``exec`` of the node-side command on each, ``stdin`` broadcast to
    them.  Each node's output, errors and exit status come back as tagged lines; a node
    that never gave a status (unreachable) gets 255, as ssh would."""

    LINE = re.compile(r"^(?P<host>[^ ]+) (?P<stream>out|err|status) (?P<text>.*)$")

    def __init__(self, connector: Connector, taktuk_command: str, fanout: int = DEFAULT_FANOUT):
        super().__init__(connector, fanout)
        self.taktuk = shlex.split(taktuk_command)

    def run(self, hosts: Sequence[str], argv: Sequence[str], stdin: bytes | None = None,
            timeout: float = 30.0) -> dict[str, RunResult]:
        hosts = sorted(set(hosts))
        if not hosts:
            return {}
        # the node's name as TakTuk gave it to the connector, in the remote environment
        line = " ".join('"$TAKTUK_HOSTNAME"' if word == HOST else shlex.quote(word) for word in argv)
        # TakTuk's connector: the connector's ssh, to which TakTuk adds the node's name
        command = [*self.taktuk, "-w", str(self.fanout), "-c", shlex.join([*self.connector.ssh_argv, "--"])]
        command += ["-o", 'output="$host out $line\\n"', "-o", 'error="$host err $line\\n"',
                    "-o", 'status="$host status $line\\n"', "-o", "connector", "-o", "state",
                    "-o", "info", "-o", "message", "-o", "taktuk"]
        for host in hosts:
            command += ["-m", host]
        command += ["broadcast", "exec", "[", line, "]"]
        if stdin is not None:
            command += [";", "broadcast", "input", "file", "[", "-", "]", ";", "broadcast", "input", "close"]
        done = run_command(command, stdin if stdin is not None else b"", timeout)
        if done.rc is None or done.rc == 127:  # timed out (all killed) or not started
            return {h: RunResult(done.rc, b"", done.stderr) for h in hosts}
        out: dict[str, list[str]] = {h: [] for h in hosts}
        err: dict[str, list[str]] = {h: [] for h in hosts}
        status: dict[str, int] = {}
        for text in done.stdout.decode(errors="replace").splitlines():
            found = self.LINE.match(text)
            if not found or found["host"] not in out:
                continue
            if found["stream"] == "status":
                status[found["host"]] = _exit_code(found["text"])
            else:
                (out if found["stream"] == "out" else err)[found["host"]].append(found["text"])
        return {h: RunResult(status.get(h, 255), "\n".join(out[h]).encode(),
                             ("\n".join(err[h]) or done.stderr.decode(errors="replace")).encode())
                for h in hosts}


def _exit_code(text: str) -> int:
    """An exit code from TakTuk's status (a wait status): 128 + N for signal N."""
    if not text.isdigit():
        return 255
    status = int(text)
    return status >> 8 if status & 0x7F == 0 else 128 + (status & 0x7F)


def fanout_for(config: Mapping[str, Any], connector: Connector) -> FanOut:
    """The fan-out of ``config``: TakTuk when ``TAKTUK_CMD`` is set and the nodes are
    reached with ssh, else ClusterShell."""
    from oar_appliance.execution.ssh import SshConnector

    taktuk = str(config.get("TAKTUK_CMD") or "").strip()
    if taktuk and isinstance(connector, SshConnector):
        return TaktukFanOut(connector, taktuk)
    return ClusterShellFanOut(connector)
