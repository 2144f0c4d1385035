"""The connector interface: how oar-server reaches the nodes (docs/execution.md).

A connector starts oarexec on a job's head node and runs node-side commands (jobctl,
node checks).  It keeps no process per job: oarexec detaches once it printed its ready
line, so a restarted server loses nothing.
"""

from __future__ import annotations

import abc
import json
import selectors
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from oar_appliance.errors import OarError

__all__ = ["READY_LINE", "SETUP_CODES", "Connector", "LaunchError", "RunResult"]

#: the line oarexec prints once the job is set up (oar_appliance.nodeside.oarexec.READY_LINE;
#: repeated here because this layer does not import the node side)
READY_LINE = "oarexec is initialized and ready to do the job"

#: the node-side modules a connector may run
OAREXEC_MODULE = "oar_appliance.nodeside.oarexec"
JOBCTL_MODULE = "oar_appliance.nodeside.jobctl"


#: the exit codes by which oarexec says why it could not set a job up (before its ready line)
SETUP_CODES = frozenset({5, 6, 7, 8, 10, 12, 20, 22, 30})


class LaunchError(OarError):
    """oarexec did not start the job.

    ``oarexec_code`` is oarexec's exit code when it stopped before its ready line (one of
    :data:`SETUP_CODES`, REFERENCE.md: 5 node file, 6 pid file, 7 user shell, 8 tmp dir,
    10/12 working directory, 20/22 stdout/stderr file, 30 job data), or None when it could
    not be started or failed otherwise (the message has the exit code), did not answer
    within the timeout (``timed_out``), or the node is unreachable.
    """

    kind = "launch"

    def __init__(self, message: str, host: str = "", oarexec_code: int | None = None,
                 timed_out: bool = False, stderr: str = "", rc: int | None = None):
        super().__init__(message)
        self.host = host
        self.oarexec_code = oarexec_code
        self.timed_out = timed_out
        self.stderr = stderr
        #: the exit code of the started process (oarexec, or ssh), when it exited
        self.rc = rc


@dataclass(frozen=True)
class RunResult:
    """What a node-side command did: exit code (None when it timed out), its output."""

    rc: int | None
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Connector(abc.ABC):
    """Reaches the nodes.  Implementations: LocalConnector, SshConnector.

    ``fanout`` (set by :func:`oar_appliance.execution.connector_for`; ClusterShell when
    unset) runs a command on many nodes at once: :meth:`jobctl_all`."""

    fanout: Any = None

    @abc.abstractmethod
    def node_command(self, host: str, module: str) -> list[str]:
        """The argv that runs ``python -m module`` on ``host``."""

    @abc.abstractmethod
    def start_oarexec(self, host: str, job_data: dict[str, Any], timeout: float) -> None:
        """Start oarexec for a job on its head node; return once oarexec printed its ready
        line and detached (raise LaunchError with the reason otherwise)."""

    @abc.abstractmethod
    def run(self, host: str, argv: list[str], stdin: bytes | None = None,
            timeout: float = 30.0) -> RunResult:
        """Run a node-side command (jobctl, node checks) on host."""

    def remote_argv(self, host: str, argv: list[str]) -> list[str]:
        """The local argv that runs the node-side ``argv`` on ``host`` (here: ``argv``)."""
        return list(argv)

    def jobctl(self, host: str, action: str, job_id: int, runtime_dir: str,
               *extra: str, timeout: float = 30.0) -> RunResult:
        """Run ``jobctl action`` (kill, checkpoint, signal SIG, suspend, resume, clean) for
        a job on ``host``; see oar_appliance/nodeside/jobctl.py for its exit codes."""
        argv = self.node_command(host, JOBCTL_MODULE) + [
            action, *extra, "--job-id", str(int(job_id)), "--runtime-dir", runtime_dir]
        return self.run(host, argv, timeout=timeout)

    def jobctl_all(self, hosts: list[str], action: str, job_id: int, runtime_dir: str, *extra: str,
                   stdin: bytes | None = None, timeout: float = 30.0) -> dict[str, RunResult]:
        """Run ``jobctl action`` for a job on every one of ``hosts`` at once (the fan-out;
        an ``extra`` argument ``%h`` is each node's name); each host's RunResult."""
        from oar_appliance.execution.fanout import ClusterShellFanOut

        fanout = self.fanout or ClusterShellFanOut(self)
        argv = self.node_command("", JOBCTL_MODULE) + [
            action, *extra, "--job-id", str(int(job_id)), "--runtime-dir", runtime_dir]
        return fanout.run(hosts, argv, stdin, timeout)


def start_and_wait_ready(argv: list[str], host: str, job_data: dict[str, Any],
                         timeout: float) -> None:
    """Run ``argv`` (oarexec, locally or through ssh), give it the job data and wait for
    its ready line and its exit; LaunchError otherwise."""
    payload = json.dumps(dict(job_data, host=host)).encode()
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise LaunchError(f"cannot start oarexec for {host}: {exc.strerror or exc}", host) from None
    out, err = bytearray(), bytearray()
    ready = False
    try:
        try:
            proc.stdin.write(payload)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ, out)
            selector.register(proc.stderr, selectors.EVENT_READ, err)
            # oarexec's starting process exits right after the ready line; its pipes then
            # reach their end (the detached oarexec holds neither)
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _timeout(proc, host, timeout, err)
                for key, _ in selector.select(remaining):
                    chunk = key.fileobj.read1(65536)
                    if chunk:
                        key.data.extend(chunk)
                    else:
                        selector.unregister(key.fileobj)
                if READY_LINE.encode() in out:
                    ready = True
        remaining = max(0.0, deadline - time.monotonic())
        try:
            rc = proc.wait(remaining)
        except subprocess.TimeoutExpired:
            raise _timeout(proc, host, timeout, err) from None
    finally:
        for stream in (proc.stdout, proc.stderr):
            stream.close()
    text = err.decode(errors="replace").strip()
    if ready and rc == 0:
        return
    if ready:
        raise LaunchError(f"oarexec on {host} exited with {rc} after its ready line: {text}",
                          host, stderr=text, rc=rc)
    reason = text.splitlines()[-1] if text else "no ready line"
    reason = reason.removeprefix("#ERROR: ")
    # any other exit code is not oarexec's verdict (python or sudo missing, a crash...)
    code = rc if rc in SETUP_CODES else None
    raise LaunchError(f"oarexec on {host} failed (exit code {rc}): {reason}", host,
                      oarexec_code=code, stderr=text, rc=rc)


def _timeout(proc: subprocess.Popen, host: str, timeout: float, err: bytearray) -> LaunchError:
    """Stop the starting oarexec (its own session: the whole group) and describe it."""
    import os
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()
    text = err.decode(errors="replace").strip()
    return LaunchError(f"oarexec on {host} was not ready after {timeout:g} s", host,
                       timed_out=True, stderr=text)


def run_command(argv: list[str], stdin: bytes | None, timeout: float) -> RunResult:
    """Run ``argv`` with ``stdin``, at most ``timeout`` seconds (then killed, rc None)."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        return RunResult(127, b"", str(exc).encode())
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        import os
        import signal

        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = proc.communicate()
        return RunResult(None, out, err)
    return RunResult(proc.returncode, out, err)
