"""jobctl: act on a job running on this node, through its runtime files.

``python -m oar_appliance.nodeside.jobctl ACTION --job-id N --runtime-dir D``

| action | what |
|---|---|
| ``kill`` | SIGTERM to oarexec, which kills the job and reports code 3 |
| ``checkpoint`` | SIGUSR2 to oarexec, which sends the job its checkpoint signal |
| ``signal SIG`` | writes SIG in ``job_<jobid>.signal`` and sends SIGURG to oarexec |
| ``suspend`` / ``resume`` | SIGSTOP / SIGCONT to the job's processes (not to oarexec) |
| ``clean`` | KILL whatever is left of the job (oarexec included), remove its runtime files |

Exit codes: 0 done; 2 usage (unknown action or signal); 6 oarexec (for kill, checkpoint,
signal) or the job's processes (suspend, resume) not found on this node — ``kill`` then
still kills what is left of the job's processes; 8 not allowed to signal them;
70 internal error.  ``clean`` of a job with nothing left is a success.

The job's processes are found by :class:`~oar_appliance.nodeside.runtime.ProcessGroupJobProcesses`;
a cgroup manager plugs in by giving :func:`job_processes` another class with the same
methods (``pids``, ``signal``, ``suspend``, ``resume``, ``kill_all``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from oar_appliance.errors import NotFoundError, OarError, PermissionDeniedError, UsageError
from oar_appliance.nodeside.runtime import (
    JobFiles,
    ProcessGroupJobProcesses,
    pid_alive,
    read_pid,
    remove_files,
    signal_number,
)

__all__ = ["job_processes", "main"]

ACTIONS = ("kill", "checkpoint", "signal", "suspend", "resume", "clean")


def job_processes(files: JobFiles, exclude: set[int] | None = None) -> ProcessGroupJobProcesses:
    """The job's processes on this node (the place where a cgroup manager plugs in)."""
    return ProcessGroupJobProcesses.from_files(files, exclude)


def _oarexec_pid(files: JobFiles) -> int | None:
    pid = read_pid(files.pid)
    return pid if pid_alive(pid) else None


def _signal_oarexec(files: JobFiles, sig: int) -> None:
    pid = _oarexec_pid(files)
    if pid is None:
        raise NotFoundError(f"no oarexec running for job {files.job_id} on this node")
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise NotFoundError(f"no oarexec running for job {files.job_id} on this node") from None
    except PermissionError:
        raise PermissionDeniedError(f"not allowed to signal oarexec of job {files.job_id}") from None


def act(action: str, files: JobFiles, signal_name: str | None = None, grace: float = 2.0) -> None:
    """Do ``action`` for the job; OarError when it cannot be done."""
    if action == "kill":
        try:
            _signal_oarexec(files, signal.SIGTERM)
        except NotFoundError:
            # no oarexec to do it: kill what is left of the job, and say oarexec was gone
            job_processes(files).kill_all(grace)
            raise
    elif action == "checkpoint":
        _signal_oarexec(files, signal.SIGUSR2)
    elif action == "signal":
        if not signal_name:
            raise UsageError("signal needs a signal name, e.g. 'signal SIGUSR1'")
        try:
            number = signal_number(signal_name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if _oarexec_pid(files) is None:
            raise NotFoundError(f"no oarexec running for job {files.job_id} on this node")
        with open(files.signal, "w", encoding="ascii") as stream:
            stream.write(f"{signal.Signals(number).name}\n")
        _signal_oarexec(files, signal.SIGURG)
    elif action in ("suspend", "resume"):
        exclude = {pid} if (pid := read_pid(files.pid)) else set()
        processes = job_processes(files, exclude)
        if not processes.pids():
            raise NotFoundError(f"no process of job {files.job_id} on this node")
        if action == "suspend":
            processes.suspend()
        else:
            processes.resume()
    elif action == "clean":
        oarexec = _oarexec_pid(files)
        if oarexec is not None:
            try:
                os.kill(oarexec, signal.SIGKILL)
            except OSError:
                pass
        if not job_processes(files).kill_all(0):
            raise PermissionDeniedError(f"some processes of job {files.job_id} could not be killed")
        remove_files(files.job_files())
    else:
        raise UsageError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobctl", description="Act on a job running on this node.")
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("signal_name", nargs="?", default=None, metavar="SIGNAL",
                        help="for 'signal': the signal to send (name or number)")
    parser.add_argument("--job-id", type=int, required=True)
    parser.add_argument("--runtime-dir", required=True)
    parser.add_argument("--grace", type=float, default=2.0,
                        help="kill without oarexec: seconds between TERM and KILL")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        act(args.action, JobFiles(args.runtime_dir, args.job_id), args.signal_name, args.grace)
        return 0
    except OarError as exc:
        print(f"#ERROR: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"#ERROR: {exc}", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
