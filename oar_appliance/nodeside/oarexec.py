"""oarexec: runs one job on its head node (``python -m oar_appliance.nodeside.oarexec``).

It reads the job data (one JSON object, docs/execution.md) on stdin, sets the job up —
runtime directory and files, node file, resource properties file, output files, working
directory — and prints :data:`READY_LINE`.  A failure before that line is reported by
oarexec's exit code (the codes of REFERENCE.md, "Server and nodes") with one ``#ERROR:``
line on stderr, and nothing is run.  Once ready it detaches (double fork, new session),
the starting process exits 0, and the detached oarexec runs prologue, command, epilogue
and sends the end report (:mod:`oar_appliance.nodeside.job_runner`).

No database access, no oar.conf: everything comes with the job data.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import select
import signal
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

from oar_appliance.nodeside.runtime import (DEFAULT_PATH, JobFiles, parse_public_key, remove_files,
                                            unsafe_runtime_dir)

__all__ = ["READY_LINE", "Codes", "PreparedJob", "SetupError", "main", "prepare", "read_job_data"]

#: what the launcher waits for on oarexec's stdout
READY_LINE = "oarexec is initialized and ready to do the job"

#: the signals the detached oarexec handles; blocked from before the fork until its
#: handlers are in place, so that none is lost or kills it early
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGURG, signal.SIGCHLD)

#: environment variables handed from oarexec's environment to the job
PASSED_VARIABLES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")


class Codes:
    """oarexec's exit codes (REFERENCE.md, "Server and nodes")."""

    OK = 0
    PROLOGUE = 1
    EPILOGUE = 2
    KILLED = 3
    NODE_FILE = 5
    PID_FILE = 6
    USER_SHELL = 7
    TMP_DIR = 8
    WORKDIR = 10
    WORKDIR_ACCESS = 12
    STDOUT_FILE = 20
    STDERR_FILE = 22
    JOB_DATA = 30
    CHECKPOINT = 40
    CHECKPOINT_ERROR = 41
    USER_SIGNAL = 42
    #: not an OAR code: oarexec itself failed after its ready line (the server reports an
    #: unknown oarexec code, EXIT_VALUE_OAREXEC)
    INTERNAL = 70


class SetupError(Exception):
    """A failure before the ready line: oarexec exits with ``code``."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


REQUIRED_KEYS = ("job_id", "user", "command", "launching_directory", "challenge", "server",
                 "runtime_dir")


class PreparedJob:
    """Everything the detached oarexec needs, set up before the ready line.

    (A plain class: oarexec starts for every job, and ``dataclasses`` costs tens of ms
    of import.)"""

    def __init__(self, data: dict[str, Any], files: JobFiles, user: pwd.struct_passwd,
                 shell: str, as_root: bool, interactive: bool, host: str):
        self.data = data
        self.job_id: int = data["job_id"]
        self.files = files
        self.user = user
        self.shell = shell
        self.as_root = as_root
        self.interactive = interactive
        self.host = host
        self.env: dict[str, str] = {}
        self.stdout_fd: int | None = None
        self.stderr_fd: int | None = None
        #: runtime files created so far, removed if the set-up fails
        self.created: list[str] = []
        #: the job resource manager (its cgroup), set up before the ready line
        self.manager: Any = None

    def undo(self) -> None:
        """The job will not run: remove its runtime files and its cgroup."""
        remove_files(self.created)
        if self.manager is not None:
            try:
                self.manager.clean()
            except Exception:  # nothing better to do: the set-up error is what is reported
                pass


# --------------------------------------------------------------------------------------------
# Job data
# --------------------------------------------------------------------------------------------


def read_job_data(fd: int, timeout: float) -> dict[str, Any]:
    """Read stdin to its end within ``timeout`` seconds and decode one JSON object."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SetupError(Codes.JOB_DATA, f"no job data on stdin after {timeout:g} s")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise SetupError(Codes.JOB_DATA, f"the job data is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SetupError(Codes.JOB_DATA, "the job data is not a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise SetupError(Codes.JOB_DATA, f"the job data lacks {', '.join(missing)}")
    server = data["server"]
    if not isinstance(server, dict) or "host" not in server or "port" not in server:
        raise SetupError(Codes.JOB_DATA, "the job data's server must be {\"host\": ..., \"port\": ...}")
    try:
        data["job_id"] = int(data["job_id"])
    except (TypeError, ValueError):
        raise SetupError(Codes.JOB_DATA, f"bad job_id {data['job_id']!r}") from None
    for key, kinds in _OPTIONAL_TYPES.items():
        value = data.get(key)
        # bool is an int to isinstance: true is no walltime, and 1 no flag
        ok = (bool in kinds) if isinstance(value, bool) else isinstance(value, kinds)
        if value is not None and not ok:
            raise SetupError(Codes.JOB_DATA, f"bad {key} in the job data: {value!r}")
    return data


_NUMBER = (int, float)
#: the type of every optional key of the job data (null is always allowed)
_OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {
    "user": (str,), "command": (str,), "launching_directory": (str,), "challenge": (str,),
    "runtime_dir": (str,), "name": (str,), "project": (str,), "queue": (str,), "host": (str,),
    "stdout_file": (str,), "stderr_file": (str,), "prologue": (str,), "epilogue": (str,),
    "job_resource_manager": (str,), "cgroup_base": (str,), "job_key": (str,),
    "just_after_suspend_exec_file": (str,), "just_before_resume_exec_file": (str,),
    "suspend_resume_script_timeout": _NUMBER,
    "walltime": _NUMBER, "prologue_timeout": _NUMBER, "kill_grace": _NUMBER,
    "report_try_timeout": _NUMBER, "report_max_backoff": _NUMBER,
    "array_id": (int,), "array_index": (int,), "checkpoint_signal": (int, str),
    "node_file_lines": (list,), "resource_properties": (list,), "cpuset": (list,),
    "devices": (list,), "node_devices": (list,), "hosts": (list,), "types": (list,),
    "interactive": (bool,), "debug": (bool,), "login_shell": (bool,),
}


def walltime_hms(seconds: int) -> str:
    """``5400`` -> ``"1:30:00"`` (OAR_JOB_WALLTIME)."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def job_environment(data: dict[str, Any], files: JobFiles) -> dict[str, str]:
    """The job's ``OAR_*`` variables (REFERENCE.md, "Job environment")."""
    job_id = str(data["job_id"])
    workdir = data["launching_directory"]
    walltime = int(data.get("walltime") or 0)
    cpus = data.get("cpuset") or []
    cpuset_name = f"/oar/{data['user']}_{job_id}" if cpus else ""
    array_id = data.get("array_id")
    array_index = data.get("array_index")
    return {
        "OAR_JOB_ID": job_id,
        "OAR_JOBID": job_id,
        "OAR_NODEFILE": files.nodefile,
        "OAR_NODE_FILE": files.nodefile,
        "OAR_FILE_NODES": files.nodefile,
        "OAR_RESOURCE_PROPERTIES_FILE": files.resources,
        "OAR_RESOURCE_FILE": files.resources,
        "OAR_JOB_NAME": data.get("name") or "",
        "OAR_PROJECT_NAME": data.get("project") or "",
        "OAR_JOB_WALLTIME": walltime_hms(walltime),
        "OAR_JOB_WALLTIME_SECONDS": str(walltime),
        "OAR_WORKDIR": workdir,
        "OAR_O_WORKDIR": workdir,
        "OAR_WORKING_DIRECTORY": workdir,
        "OAR_USER": data["user"],
        "OAR_CPUSET": cpuset_name,
        "OAR_JOB_CPUS": ",".join(str(cpu) for cpu in cpus),
        "OAR_ARRAY_ID": "" if array_id is None else str(array_id),
        "OAR_ARRAY_INDEX": "" if array_index is None else str(array_index),
        "OAR_JOB_INTERACTIVE": "1" if data.get("interactive") else "0",
        "OAR_QUEUE": data.get("queue") or "",
    }


# --------------------------------------------------------------------------------------------
# Set-up (before the ready line)
# --------------------------------------------------------------------------------------------


def resolve_user(name: str) -> tuple[pwd.struct_passwd, bool]:
    """The job's account, and whether oarexec switches to it (it runs as root)."""
    if os.geteuid() == 0:
        try:
            return pwd.getpwnam(name), True
        except KeyError:
            raise SetupError(Codes.USER_SHELL, f"unknown user {name!r} on this node") from None
    own = pwd.getpwuid(os.getuid())
    if own.pw_name != name:
        raise SetupError(
            Codes.USER_SHELL,
            f"oarexec runs as {own.pw_name!r}, not as root: it cannot run a job of {name!r}",
        )
    return own, False


@contextmanager
def as_user(user: pwd.struct_passwd, switch: bool) -> Iterator[None]:
    """Act with the user's effective identity (file creation, directory checks)."""
    if not switch or user.pw_uid == 0:
        yield
        return
    groups = os.getgroups()
    os.setgroups(os.getgrouplist(user.pw_name, user.pw_gid))
    os.setegid(user.pw_gid)
    os.seteuid(user.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def _write_file(path: str, text: str, code: int, what: str, mode: int = 0o644) -> None:
    try:
        # never through a symbolic link: the runtime directory may be shared (/tmp)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise SetupError(code, f"cannot write the {what} {path}: {exc.strerror}") from None


def _lines(items: list[Any]) -> str:
    return "".join(f"{item}\n" for item in items)


def _output_path(path: str | None, default: str, data: dict[str, Any]) -> str:
    path = path or default
    path = path.replace("%jobid%", str(data["job_id"])).replace("%jobname%", data.get("name") or "")
    return os.path.join(data["launching_directory"], path)


def _open_output(path: str, code: int, what: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise SetupError(code, f"cannot open the {what} file {path}: {exc.strerror}") from None


def prepare(data: dict[str, Any], environ: dict[str, str]) -> PreparedJob:
    """Check and create everything the job needs; SetupError with its code otherwise.
    Files created here are listed in ``created`` so that a later failure removes them."""
    files = JobFiles(data["runtime_dir"], data["job_id"])
    user, as_root = resolve_user(data["user"])
    shell = user.pw_shell or "/bin/sh"
    interactive = bool(data.get("interactive"))
    if not interactive and not os.access(shell, os.X_OK):
        raise SetupError(Codes.USER_SHELL, f"the shell {shell!r} of {user.pw_name} cannot be run")
    job = PreparedJob(data, files, user, shell, as_root, interactive,
                      host=str(data.get("host") or os.uname().nodename))
    try:
        _prepare_files(job, environ)
    except BaseException:
        for fd in (job.stdout_fd, job.stderr_fd):
            if fd is not None:
                os.close(fd)
        job.undo()
        raise
    return job


def _prepare_files(job: PreparedJob, environ: dict[str, str]) -> None:
    data, files, user = job.data, job.files, job.user
    try:
        os.makedirs(files.runtime_dir, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise SetupError(Codes.TMP_DIR, f"cannot create {files.runtime_dir}: {exc.strerror}") from None
    problem = unsafe_runtime_dir(files.runtime_dir)
    if problem:
        raise SetupError(Codes.TMP_DIR, f"unsafe runtime directory: {problem}")

    job.created.append(files.nodefile)
    _write_file(files.nodefile, _lines(data.get("node_file_lines") or []), Codes.NODE_FILE, "node file")
    job.created.append(files.resources)
    _write_file(files.resources, _lines(data.get("resource_properties") or []), Codes.NODE_FILE,
                "resource properties file")

    oar_env = job_environment(data, files)
    job.created.append(files.env)
    _write_file(files.env, "".join(f"{k}={v}\n" for k, v in oar_env.items()), Codes.TMP_DIR,
                "environment file")
    _prepare_manager(job)
    if data.get("job_key"):
        _write_job_key(job)
    base = {name: environ[name] for name in PASSED_VARIABLES if environ.get(name)}
    base.setdefault("PATH", DEFAULT_PATH)
    base.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name, SHELL=job.shell)
    job.env = {**base, **oar_env}

    workdir = data["launching_directory"]
    # existence with oarexec's rights (10), access with the user's (12)
    if not os.path.isdir(workdir):
        raise SetupError(Codes.WORKDIR, f"the working directory {workdir} does not exist")
    with as_user(user, job.as_root):
        try:
            os.chdir(workdir)
        except OSError as exc:
            raise SetupError(Codes.WORKDIR_ACCESS,
                             f"cannot enter the working directory {workdir}: {exc.strerror}") from None
        finally:
            os.chdir("/")
        if job.interactive:
            return
        out = _output_path(data.get("stdout_file"), "OAR.%jobid%.stdout", data)
        err = _output_path(data.get("stderr_file"), "OAR.%jobid%.stderr", data)
        job.stdout_fd = _open_output(out, Codes.STDOUT_FILE, "stdout")
        job.stderr_fd = job.stdout_fd if err == out else _open_output(err, Codes.STDERR_FILE, "stderr")


def _write_job_key(job: PreparedJob) -> None:
    """``job_<jobid>.key.pub``: the node's sshd lets the holder of the job key into the job
    (oarsh_login); ``jobctl clean`` removes it with the other files."""
    key = parse_public_key(job.data["job_key"])
    if key is None:
        raise SetupError(Codes.JOB_DATA, "the job data's job_key is not an ssh public key")
    job.created.append(job.files.job_key)
    _write_file(job.files.job_key, f"{key[0]} {key[1]}\n", Codes.TMP_DIR, "job key file")


def _prepare_manager(job: PreparedJob) -> None:
    """Choose the job resource manager, create the job's cgroup (its cpus, its share of
    the node's memory, a freezer, the node's devices that are not the job's denied) and
    write ``job_<jobid>.manager`` for jobctl."""
    from oar_appliance.nodeside import cgroups

    data, files = job.data, job.files
    mode = data.get("job_resource_manager") or "auto"
    cpus = [int(cpu) for cpu in data.get("cpuset") or []]
    devices = [data.get("devices") or [], data.get("node_devices") or []]
    if not all(isinstance(path, str) and path.startswith("/") for paths in devices for path in paths):
        raise SetupError(Codes.JOB_DATA, "the job data's devices and node_devices must be absolute paths")
    try:
        denied = cgroups.device_rules(*devices)
        job.manager = cgroups.manager_for(mode, job.user.pw_name, job.job_id, cpus, files,
                                          base=data.get("cgroup_base") or cgroups.DEFAULT_BASE,
                                          devices=bool(denied))
        memory = None
        if cpus:
            memory = cgroups.memory_share(cgroups.node_memory(), len(cpus), len(cgroups.node_cpus()))
        job.manager.init(cpus, memory, denied)
    except (cgroups.CgroupError, OSError, ValueError) as exc:
        raise SetupError(Codes.INTERNAL, f"cannot set up the job's cgroup: {exc}") from None
    timeout = data.get("suspend_resume_script_timeout")
    job.created.append(files.manager)
    try:
        cgroups.write_manager_file(files, job.manager, {
            "just_after_suspend_exec_file": data.get("just_after_suspend_exec_file"),
            "just_before_resume_exec_file": data.get("just_before_resume_exec_file"),
            "suspend_resume_script_timeout": 60 if timeout is None else timeout,
            "user": job.user.pw_name,
        })
    except OSError as exc:
        raise SetupError(Codes.TMP_DIR, f"cannot write {files.manager}: {exc.strerror}") from None


# --------------------------------------------------------------------------------------------
# Detaching
# --------------------------------------------------------------------------------------------


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def detach(job: PreparedJob, stdout: Any) -> int:
    """Double fork; the original process writes the pid file, prints the ready line and
    returns 0, and only then lets the detached oarexec go on.  Returns in the original
    process only; the detached one never returns."""
    pid_r, pid_w = os.pipe()
    go_r, go_w = os.pipe()
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    stdout.flush()
    sys.stderr.flush()
    intermediate = os.fork()
    if intermediate == 0:
        os.close(pid_r)
        os.close(go_w)
        os.setsid()
        detached = os.fork()
        if detached:
            os.write(pid_w, str(detached).encode())
            os._exit(0)
        os.close(pid_w)
        _run_detached(job, go_r)  # never returns
    os.close(pid_w)
    os.close(go_r)
    text = _read_all(pid_r)
    os.close(pid_r)
    os.waitpid(intermediate, 0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
    try:
        detached_pid = int(text)
    except ValueError:
        os.close(go_w)
        raise SetupError(Codes.TMP_DIR, "could not start the detached oarexec") from None
    try:
        job.created.append(job.files.pid)
        _write_file(job.files.pid, f"{detached_pid}\n", Codes.PID_FILE, "pid file")
        # the intermediate process made the session: its pid is the session id, and jobctl
        # can find the job's processes by it from now on (no process group before the command)
        job.created.append(job.files.pgid)
        _write_file(job.files.pgid, f"- {intermediate}\n", Codes.PID_FILE, "process group file")
        stdout.write(READY_LINE + "\n")
        stdout.flush()
    except BaseException:
        os.close(go_w)  # the detached oarexec reads no go-ahead and leaves quietly
        raise
    os.write(go_w, b"1")
    os.close(go_w)
    return 0


def _run_detached(job: PreparedJob, go_r: int) -> None:
    status = 0
    try:
        go = os.read(go_r, 1)
        os.close(go_r)
        if go != b"1":
            os._exit(0)
        from oar_appliance.nodeside.job_runner import JobRunner

        _redirect_stdio(job)
        os.chdir("/")
        status = JobRunner(job).run()
    except BaseException:  # nobody is left to tell: the debug log has it when enabled
        import traceback

        traceback.print_exc()
        status = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)


def _redirect_stdio(job: PreparedJob) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    if job.data.get("debug"):
        log_fd = os.open(job.files.debug_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW,
                         0o600)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format=f"%(asctime)s oarexec[{os.getpid()}] job {job.job_id} %(levelname)s %(message)s")
    else:
        os.dup2(null, 1)
        os.dup2(null, 2)
    os.close(null)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="oarexec",
        description="Run one OAR job on its head node; the job data (JSON) comes on stdin.",
    )
    parser.add_argument("--stdin-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="how long to wait for the job data (exit code 30 after it)")
    args = parser.parse_args(argv)
    job = None
    try:
        data = read_job_data(sys.stdin.fileno(), args.stdin_timeout)
        job = prepare(data, dict(os.environ))
        return detach(job, sys.stdout)
    except SetupError as exc:
        if job is not None:  # the job will not run: leave nothing behind
            job.undo()
        print(f"#ERROR: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line for the launcher, never a traceback
        if job is not None:
            job.undo()
        print(f"#ERROR: oarexec failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return Codes.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
