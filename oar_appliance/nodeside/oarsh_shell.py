"""The user's shell inside a job, on the job's head node (no database access).

``python -m oar_appliance.nodeside.oarsh_shell [--interactive] --runtime-dir DIR JOB_ID``

Reads ``DIR/job_<JOB_ID>.env`` (the job's ``OAR_*`` variables, one ``NAME=value`` per line,
written by oarexec), then runs the user's shell (``$SHELL``, else ``/bin/bash``) as a
child with those variables, in the job's working directory (``OAR_WORKDIR``), on the
terminal it was given (or whatever stdin is).  Its exit status is the shell's.

``--interactive`` marks the shell of an ``oarsub -I`` job: when it ends, its exit status is
written to ``DIR/job_<JOB_ID>.shell.status``, the file oarexec waits for to end the job.
The file is written once (a temporary file renamed into place), also when the shell was
killed by a signal (status 128 + signal number) or could not be started (status 7, as
oarexec's "user shell" error).

The shell lives as long as the job: when oarexec (``DIR/oarexec_<JOB_ID>.pid``) ends —
the job was deleted or reached its walltime — the shell gets SIGHUP, then SIGKILL
:data:`HANGUP_GRACE` seconds later, and no status is written (there is nobody to read it).

``--user USER`` (run as root, by :mod:`oar_appliance.nodeside.oarsh_login` through the
node's sudo rule, for oarsh connections and the shells of oarsub -I/-C on a site): the job
must be USER's (``job_<JOB_ID>.manager``, written as root by oarexec or by the node's
preparation), the runtime directory must be root's; on a node without the env file (not
the head node) the job's variables are ``OAR_JOB_ID``, ``OAR_JOBID`` and ``OAR_USER``; this process joins the job's cgroup (so does everything it
starts), and the shell, or ``--command CMD`` run by the user's shell, runs as USER with a
clean login environment plus the job's variables.  This process stays root, so it can
write the status into the root-owned runtime directory.

Errors are one ``#ERROR:`` line and the exit code of their class
(:mod:`oar_appliance.errors`): 2 usage, 6 no environment for the job here, 8 the job is
not USER's or the runtime directory is not safe.
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import subprocess
import sys

from ..errors import NotFoundError, OarError, PermissionDeniedError, UsageError
from .terminal import default_signal_dispositions, exit_status, signals_passed_to

#: status written when the shell cannot be started (oarexec's "user shell" code)
SHELL_START_FAILED = 7
DEFAULT_SHELL = "/bin/bash"
#: seconds between SIGHUP and SIGKILL when the job ends under its shell
HANGUP_GRACE = 5.0
#: how often the job's oarexec is looked at
WATCH_PERIOD = 0.5


def env_path(runtime_dir: str, job_id: int) -> str:
    return os.path.join(runtime_dir, f"job_{job_id}.env")


def status_path(runtime_dir: str, job_id: int) -> str:
    return os.path.join(runtime_dir, f"job_{job_id}.shell.status")


def oarexec_pid(runtime_dir: str, job_id: int) -> int | None:
    """The pid in ``oarexec_<jobid>.pid``, or None."""
    try:
        with open(os.path.join(runtime_dir, f"oarexec_{job_id}.pid")) as f:
            words = f.read().split()
        return int(words[0]) if words else None
    except (OSError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def read_job_env(runtime_dir: str, job_id: int) -> dict[str, str]:
    """The job's variables from its env file (``NAME=value`` lines; others are skipped)."""
    path = env_path(runtime_dir, job_id)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise NotFoundError(f"job {job_id} has no environment on this node ({path} does not exist): "
                            "is it running here?") from None
    except OSError as exc:
        raise NotFoundError(f"cannot read the environment of job {job_id} ({path}): {exc.strerror}") from None
    variables: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.isidentifier():
            variables[name] = value
    return variables


def write_status(runtime_dir: str, job_id: int, status: int) -> None:
    """Write the shell's exit status where oarexec looks for it (atomically)."""
    final = status_path(runtime_dir, job_id)
    temporary = f"{final}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        f.write(f"{status}\n")
    os.replace(temporary, final)


def shell_environment(base: dict[str, str], job_env: dict[str, str]) -> dict[str, str]:
    """The caller's environment with the job's variables on top."""
    environment = dict(base)
    environment.update(job_env)
    return environment


def run_shell(shell: str | list[str], environment: dict[str, str], cwd: str | None,
              job_alive=None, account: pwd.struct_passwd | None = None) -> tuple[int, bool]:
    """Run ``shell`` (a path, or an argv) as a child, as ``account`` when given;
    ``(exit status, whether the job ended under it)``.

    The status is 128 + N when the shell was killed by signal N.  While it runs, this
    process ignores the terminal's SIGINT/SIGQUIT (they are the shell's) and passes
    SIGTERM and SIGHUP on to it.  ``job_alive()`` (when given) is asked every
    :data:`WATCH_PERIOD` seconds; once it says False the shell is hung up.
    """
    argv = [shell] if isinstance(shell, str) else shell
    identity = {}
    if account is not None:
        identity = dict(user=account.pw_uid, group=account.pw_gid,
                        extra_groups=os.getgrouplist(account.pw_name, account.pw_gid))
    try:
        # this process is single-threaded: preexec_fn is safe here
        child = subprocess.Popen(argv, env=environment, cwd=cwd,
                                 preexec_fn=default_signal_dispositions, **identity)
    except OSError as exc:
        print(f"#ERROR: cannot start the shell {argv[0]}: {exc.strerror}", file=sys.stderr)
        return SHELL_START_FAILED, False

    job_ended = False
    with signals_passed_to(child):
        while True:
            try:
                returncode = child.wait(timeout=WATCH_PERIOD if job_alive else None)
                break
            except subprocess.TimeoutExpired:
                pass
            if not job_ended and not job_alive():
                job_ended = True
                print("\n#WARNING: the job has ended: closing its shell", file=sys.stderr, flush=True)
                child.send_signal(signal.SIGHUP)
                try:
                    returncode = child.wait(timeout=HANGUP_GRACE)
                    break
                except subprocess.TimeoutExpired:
                    child.kill()
    return exit_status(returncode), job_ended


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oarsh_shell", description="Run the user's shell inside a job, with the job's environment.")
    parser.add_argument("job_id", type=int, help="the job")
    parser.add_argument("--runtime-dir", required=True, help="where oarexec wrote job_<id>.env")
    parser.add_argument("--interactive", action="store_true",
                        help="the shell of an oarsub -I job: write its status for oarexec when it ends")
    parser.add_argument("--user", help="(as root) enter the job's cgroup and run as USER, the job's owner")
    parser.add_argument("--command", help="run COMMAND with the user's shell instead of a shell")
    return parser


#: variables of the connection kept in the user's environment (root mode)
KEPT_VARIABLES = ("TERM", "LANG", "LC_ALL", "LC_CTYPE", "TZ")


def enter_job(runtime_dir: str, job_id: int, user: str) -> pwd.struct_passwd:
    """(Root) check that the job is ``user``'s and move this process into its cgroup."""
    from .cgroups import manager_from_files, read_manager_file
    from .runtime import JobFiles, unsafe_runtime_dir

    problem = unsafe_runtime_dir(runtime_dir)
    if problem:
        raise PermissionDeniedError(f"unsafe runtime directory: {problem}")
    files = JobFiles(runtime_dir, job_id)
    recorded = read_manager_file(files)
    if recorded is None:
        raise NotFoundError(f"job {job_id} is not running on this node")
    if recorded.get("user") != user:
        raise PermissionDeniedError(f"job {job_id} is not {user}'s")
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise NotFoundError(f"unknown user {user!r} on this node") from None
    manager_from_files(files).attach(os.getpid())
    return account


def user_environment(account: pwd.struct_passwd, environ: dict[str, str]) -> dict[str, str]:
    """A login's environment for ``account`` (not root's): what a shell started by sshd
    would get, plus the connection's terminal and locale."""
    from .runtime import DEFAULT_PATH

    environment = {name: environ[name] for name in KEPT_VARIABLES if environ.get(name)}
    environment.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name,
                       SHELL=account.pw_shell or "/bin/sh", PATH=DEFAULT_PATH)
    return environment


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one #ERROR line and the usage code, not argparse's exit 2 text
        raise UsageError(message)


def main(argv=None, environ: dict[str, str] | None = None) -> int:
    environ = dict(os.environ if environ is None else environ)
    parser = build_parser()
    parser.__class__ = _Parser
    try:
        args = parser.parse_args(argv)
        account = None
        if args.user is not None and os.geteuid() == 0:
            account = enter_job(args.runtime_dir, args.job_id, args.user)
        elif args.user is not None and pwd.getpwuid(os.getuid()).pw_name != args.user:
            raise PermissionDeniedError(f"only root can enter a job of {args.user}")
        try:
            job_env = read_job_env(args.runtime_dir, args.job_id)
        except NotFoundError:
            if account is None or args.interactive:
                if args.interactive:  # oarexec must not wait for a shell that never ran
                    write_status(args.runtime_dir, args.job_id, SHELL_START_FAILED)
                raise
            # a node of the job other than its head: prepared, no oarexec, no env file
            job_env = {"OAR_JOB_ID": str(args.job_id), "OAR_JOBID": str(args.job_id), "OAR_USER": args.user}
        if account is not None:
            environ = user_environment(account, environ)
        shell = (account.pw_shell if account else environ.get("SHELL")) or DEFAULT_SHELL
        cwd = job_env.get("OAR_WORKDIR") or None
        if cwd is not None and not os.path.isdir(cwd):
            print(f"#WARNING: the job's directory {cwd} does not exist here: starting in the current one",
                  file=sys.stderr)
            cwd = None
        if cwd is None and account is not None and os.path.isdir(account.pw_dir):
            cwd = account.pw_dir  # as an ssh login would (not root's "/")
        watched = oarexec_pid(args.runtime_dir, args.job_id)
        job_alive = (lambda: process_alive(watched)) if watched and process_alive(watched) else None
        argv = [shell, "-c", args.command] if args.command is not None else shell
        status, job_ended = run_shell(argv, shell_environment(environ, job_env), cwd, job_alive, account)
        if args.interactive and args.command is None and not job_ended:
            write_status(args.runtime_dir, args.job_id, status)
        return status
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except OarError as exc:
        print("#ERROR: " + " ".join(exc.message.split()), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"#ERROR: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}", file=sys.stderr)
        return SHELL_START_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
