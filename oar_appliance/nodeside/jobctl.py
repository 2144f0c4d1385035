"""jobctl: act on a job running on this node, through its runtime files.

``python -m oar_appliance.nodeside.jobctl ACTION --job-id N --runtime-dir D``

| action | what |
|---|---|
| ``status`` | prints oarexec's pid; nothing else is done (exit code 6 when no oarexec runs) |
| ``kill`` | SIGTERM to oarexec, which kills the job and reports code 3 |
| ``checkpoint`` | SIGUSR2 to oarexec, which sends the job its checkpoint signal |
| ``signal SIG`` | writes SIG in ``job_<jobid>.signal`` and sends SIGURG to oarexec |
| ``suspend`` / ``resume`` | freeze / thaw the job's cgroup (SIGSTOP / SIGCONT to its processes without one; never to oarexec) |
| ``clean`` | KILL whatever is left of the job (oarexec included), remove its cgroup and runtime files, and the user's leftovers when the user has no other job on the node |
| ``prepare`` | set the node up for the job (its cgroup, ``job_<jobid>.manager``) from the job data on stdin; ``--host`` names this node |

``suspend`` then runs ``JUST_AFTER_SUSPEND_EXEC_FILE`` and ``resume`` first runs
``JUST_BEFORE_RESUME_EXEC_FILE`` when the job data named them (oarexec keeps them in
``job_<jobid>.manager``), as jobctl's account, with ``<job id> <user> <node file>`` and the
job's ``OAR_*`` environment, within ``SUSPEND_RESUME_SCRIPT_TIMEOUT`` seconds.  A failing or
late script after a suspend is a warning (the job is suspended: exit 0); before a resume it
is an error (exit 70) and the job stays suspended.

Exit codes: 0 done; 2 usage (unknown action or signal, bad job data for ``prepare``);
6 oarexec (for status, kill, checkpoint, signal) or the job's processes (suspend, resume
of a job without a cgroup) not found on this node — ``kill`` then still kills what is left
of the job's processes; 7 (``prepare``) unknown user; 8 not allowed to signal them;
70 internal error (``prepare``: the cgroup could not be set up).  ``clean`` of a job with
nothing left is a success.

The job's processes are found by :func:`oar_appliance.nodeside.runtime.job_processes`:
the job's cgroup when oarexec made one (:mod:`oar_appliance.nodeside.cgroups`), else its
process group and session.  ``clean`` on a node without the job's runtime files still finds
a cgroup ``/oar/*_<jobid>`` there (``--cgroup-base``).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys

from oar_appliance.errors import NotFoundError, OarError, PermissionDeniedError, UsageError
from oar_appliance.nodeside import cgroups, node_setup
from oar_appliance.nodeside.runtime import (
    JobFiles,
    job_processes,
    pid_alive,
    read_pid,
    signal_number,
    unsafe_runtime_dir,
)

__all__ = ["act", "main"]

ACTIONS = ("status", "kill", "checkpoint", "signal", "suspend", "resume", "clean", "prepare")


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


class ScriptError(OarError):
    """A suspend/resume script failed."""

    exit_code = 70


def _run_script(files: JobFiles, key: str) -> None:
    """Run the suspend or resume script named in ``job_<jobid>.manager``, if any."""
    data = cgroups.read_manager_file(files) or {}
    path = data.get(key)
    if not path:
        return
    timeout = float(data.get("suspend_resume_script_timeout") or 60)
    env = {"PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"}
    try:
        with open(files.env, encoding="utf-8") as stream:
            env.update(line.rstrip("\n").split("=", 1) for line in stream if "=" in line)
    except OSError:
        pass
    argv = [path, str(files.job_id), str(data.get("user") or ""), files.nodefile]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env, cwd="/", start_new_session=True)
    except OSError as exc:
        raise ScriptError(f"cannot run {path}: {exc.strerror}") from None
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        raise ScriptError(f"{path} did not end within {timeout:g} s") from None
    if rc != 0:
        raise ScriptError(f"{path} exited with {rc}")


def act(action: str, files: JobFiles, signal_name: str | None = None, grace: float = 2.0,
        cgroup_base: str = cgroups.DEFAULT_BASE, host: str = "") -> None:
    """Do ``action`` for the job; OarError when it cannot be done."""
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    if action == "prepare":
        node_setup.prepare(files, node_setup.read_job_data(sys.stdin), host or socket.gethostname())
        return
    if not os.path.isdir(files.runtime_dir):
        if action == "clean":
            # a node of the job without its runtime files: its cgroup may still be here
            user = node_setup.job_user(files, cgroup_base)
            if not cgroups.manager_from_files(files, base=cgroup_base).clean():
                raise PermissionDeniedError(f"some processes of job {files.job_id} could not be killed")
            node_setup.remove_leftovers(files, user)
            return
        raise NotFoundError(f"no oarexec running for job {files.job_id} on this node"
                            f" ({files.runtime_dir} does not exist)")
    problem = unsafe_runtime_dir(files.runtime_dir)
    if problem:  # its pid files could name any process
        raise PermissionDeniedError(f"unsafe runtime directory: {problem}")
    if action == "status":
        pid = _oarexec_pid(files)
        if pid is None:
            raise NotFoundError(f"no oarexec running for job {files.job_id} on this node")
        print(pid)
    elif action == "kill":
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
        # a job's cgroup is frozen even while empty (a node where no process of the job
        # runs yet): whatever enters it later is frozen too
        if not processes.pids() and isinstance(processes, cgroups.ProcessGroupManager):
            raise NotFoundError(f"no process of job {files.job_id} on this node")
        try:
            if action == "suspend":
                processes.freeze()
            else:
                _run_script(files, "just_before_resume_exec_file")  # a failure: stays suspended
                processes.thaw()
        except cgroups.CgroupError as exc:
            raise ScriptError(str(exc)) from None
        if action == "suspend":
            try:
                _run_script(files, "just_after_suspend_exec_file")
            except ScriptError as exc:  # the job is suspended all the same
                print(f"#WARNING: {exc.message}", file=sys.stderr)
    elif action == "clean":
        user = node_setup.job_user(files, cgroup_base)
        oarexec = _oarexec_pid(files)
        if oarexec is not None:
            try:
                os.kill(oarexec, signal.SIGKILL)
            except OSError:
                pass
        try:
            cleaned = cgroups.manager_from_files(files, base=cgroup_base).clean()
        except cgroups.CgroupError as exc:
            raise PermissionDeniedError(f"cannot clean job {files.job_id}: {exc}") from None
        if not cleaned:
            raise PermissionDeniedError(f"some processes of job {files.job_id} could not be killed")
        # a job without a cgroup may also have processes left in its session
        if not cgroups.ProcessGroupManager(files).clean():
            raise PermissionDeniedError(f"some processes of job {files.job_id} could not be killed")
        node_setup.remove_leftovers(files, user)
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
    parser.add_argument("--cgroup-base", default=cgroups.DEFAULT_BASE,
                        help="clean without runtime files: where the jobs' cgroups are (default /oar)")
    parser.add_argument("--host", default="",
                        help="for 'prepare': this node's name in the job data (default: the hostname)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        act(args.action, JobFiles(args.runtime_dir, args.job_id), args.signal_name, args.grace,
            args.cgroup_base, args.host)
        return 0
    except OarError as exc:
        print(f"#ERROR: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"#ERROR: {exc}", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
