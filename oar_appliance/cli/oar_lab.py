"""oar-lab: a whole OAR on this host, for trying it out and for development.

``oar-lab init`` makes a lab directory (oar.conf, SQLite database, this host's cores as
resources); ``start`` runs ``oar-server`` in the background, ``stop`` stops it, ``status``
tells whether it runs and counts the jobs, ``env`` prints the ``export OARCONFFILE=...``
line that points the ``oar*`` commands at the lab.  See :mod:`oar_appliance.lab`.

The server is started in a session of its own, its pid in ``oar-server.pid`` and its
output in ``oar-server.log`` of the lab.  ``stop`` signals that pid only, and only when
it is still the lab's server (its command line names the lab's oar.conf): a pid file left
behind by a server that died, whose number may since belong to another process, is
reported and removed, never signalled.
"""

from __future__ import annotations

import errno
import os
import pwd
import signal
import socket
import subprocess
import sys
import time

from .. import __version__
from .. import lab as lab_mod
from ..errors import (
    DatabaseError,
    ConflictError,
    NotFoundError,
    OarError,
    PermissionDeniedError,
    ServerUnreachableError,
    UsageError,
)
from .common import INTERNAL_ERROR_EXIT, INTERRUPTED_EXIT, ArgumentParser, caller_name, error_line, exit_code_table

ACTIONS = ("init", "start", "stop", "status", "env")
DEFAULT_DIR = "~/.oar-lab"


def build_parser() -> ArgumentParser:
    import configargparse

    parser = ArgumentParser(
        prog="oar-lab",
        description=(
            "A whole OAR on this host: SQLite, the server on 127.0.0.1, jobs run here as you.\n"
            "  oar-lab init     make the lab: oar.conf, database, this host's cores as resources\n"
            "  oar-lab start    run oar-server in the background (waits until it answers)\n"
            "  oar-lab stop     stop it (TERM, then KILL after --timeout seconds)\n"
            "  oar-lab status   is it running? how many jobs in each state?\n"
            "  oar-lab env      shell lines for: eval \"$(oar-lab env)\"\n"
            "Example: oar-lab init && oar-lab start && eval \"$(oar-lab env)\" && oarsub -l core=1 hostname"),
        epilog=exit_code_table(),
        add_help=False,
        formatter_class=configargparse.RawDescriptionHelpFormatter,
        args_for_setting_config_path=[],
        default_config_files=[],
    )
    parser.add_argument("action", choices=ACTIONS, help="what to do")
    parser.add_argument("--dir", default=None, metavar="DIR", help=f"the lab directory (default {DEFAULT_DIR})")
    parser.add_argument("--force", action="store_true", help="init: replace an existing lab (its jobs are lost)")
    parser.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                        help="start: how long to wait for the server to answer; stop: how long to wait "
                             "after TERM before KILL (default 20)")
    parser.add_argument("-h", "--help", action="help", help="show this help and exit")
    parser.add_argument("-V", "--version", action="version", version=f"OAR appliance {__version__}",
                        help="print the OAR version and exit")
    return parser


# ----------------------------------------------------------------------------- the server process

def server_argv(paths: lab_mod.LabPaths) -> list[str]:
    """How the lab runs oar-server (this Python, so the same installation)."""
    return [sys.executable, "-m", "oar_appliance.cli.oar_server", "--conf", paths.conf]


def _process_state(pid: int) -> str | None:
    """The state letter of ``pid`` from /proc (None: no such process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:  # reap it if it is our own child (a start and a stop in one process)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    state = _process_state(pid)
    return state is not None and state not in ("Z", "X")


def _is_lab_server(pid: int, paths: lab_mod.LabPaths) -> bool:
    """Is ``pid`` alive and running with this lab's oar.conf on its command line?"""
    if not _alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return False
    return os.fsencode(paths.conf) in words


def _read_pid(paths: lab_mod.LabPaths) -> int | None:
    try:
        with open(paths.pid_file) as f:
            text = f.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ConflictError(f"cannot read {paths.pid_file}: {exc.strerror}") from None
    if not text.isdigit() or int(text) < 1:
        return -1  # garbage: stale
    return int(text)


def server_pid(paths: lab_mod.LabPaths) -> tuple[int | None, bool]:
    """``(pid, running)``: the pid file's pid (None without one) and whether it is the server."""
    pid = _read_pid(paths)
    if pid is None:
        return None, False
    return pid, pid > 0 and _is_lab_server(pid, paths)


def _remove_pid_file(paths: lab_mod.LabPaths) -> None:
    try:
        os.unlink(paths.pid_file)
    except FileNotFoundError:
        pass


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, errors="replace") as f:
            return " | ".join(line.rstrip() for line in f.readlines()[-lines:] if line.strip())
    except OSError:
        return ""


def _terminate(pid: int, timeout: float) -> bool:
    """TERM, then KILL after ``timeout``; True if TERM sufficed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return False


# ----------------------------------------------------------------------------- actions

def _require_lab(paths: lab_mod.LabPaths):
    from ..conf import load_config

    if not os.path.exists(paths.conf):
        raise NotFoundError(f"no lab in {paths.root}: make one with oar-lab init{_dir_option(paths)}")
    return load_config(paths.conf, environ={})


def do_init(paths: lab_mod.LabPaths, args, out) -> int:
    pid, running = server_pid(paths)
    if running:
        raise ConflictError(f"the lab's oar-server is running (pid {pid}): oar-lab stop first")
    try:
        made = lab_mod.create(paths, socket.gethostname(), caller_name(), int(time.time()), force=args.force)
    except OSError as exc:
        error = PermissionDeniedError if exc.errno in (errno.EACCES, errno.EPERM) else ConflictError
        raise error(f"cannot make the lab in {paths.root}: {exc.strerror or exc}") from None
    ids = made["resources"]
    out(f"OAR lab made in {paths.root}: {len(ids)} core(s) of {made['host']} registered "
        f"(resources {ids[0]}-{ids[-1]}), server port {made['port']}.")
    out(f"Next: oar-lab start{_dir_option(paths)}; eval \"$(oar-lab env{_dir_option(paths)})\"; "
        "oarsub -l core=1 hostname")
    return 0


def _dir_option(paths: lab_mod.LabPaths) -> str:
    """`` --dir DIR`` for the hints printed, unless DIR is the default."""
    import shlex

    return "" if paths.default else f" --dir {shlex.quote(paths.root)}"


def do_start(paths: lab_mod.LabPaths, args, out, warn) -> int:
    config = _require_lab(paths)
    port = config["SERVER_PORT"]
    pid, running = server_pid(paths)
    if running:
        raise ConflictError(f"the lab's oar-server is already running (pid {pid})")
    if pid is not None:
        warn(f"removed the stale pid file {paths.pid_file} (pid {pid} is not the lab's oar-server)")
        _remove_pid_file(paths)
    if _answers(port):
        raise ConflictError(f"port {port} (SERVER_PORT of {paths.conf}) is taken by another program")
    argv = server_argv(paths)
    with open(paths.server_log, "ab") as log_file:
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                       cwd=paths.root, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise ServerUnreachableError(f"cannot start oar-server ({argv[0]}): {exc.strerror}") from None
    with open(paths.pid_file + ".tmp", "w") as f:
        f.write(f"{process.pid}\n")
    os.replace(paths.pid_file + ".tmp", paths.pid_file)
    deadline = time.monotonic() + args.timeout
    while True:
        code = process.poll()
        if code is not None:
            _remove_pid_file(paths)
            tail = _tail(paths.server_log)
            raise ServerUnreachableError(f"oar-server exited at once (code {code})"
                                         + (f": {tail}" if tail else "") + f" (log: {paths.server_log})")
        if _answers(port):
            break
        if time.monotonic() > deadline:
            _terminate(process.pid, 5)
            process.poll()
            _remove_pid_file(paths)
            raise ServerUnreachableError(f"oar-server did not answer on port {port} within {args.timeout:g} s "
                                         f"and was stopped (log: {paths.server_log})")
        time.sleep(0.1)
    out(f"oar-server started (pid {process.pid}, port {port}); its output: {paths.server_log}")
    return 0


def do_stop(paths: lab_mod.LabPaths, args, out) -> int:
    _require_lab(paths)
    pid, running = server_pid(paths)
    if pid is None:
        raise ConflictError(f"the lab's oar-server is not running (no pid file in {paths.root})")
    if not running:
        _remove_pid_file(paths)
        raise ConflictError(f"the lab's oar-server is not running: its pid file named pid {pid}, which is gone "
                            "or is another program (the server ended without removing it); pid file removed")
    gently = _terminate(pid, args.timeout)
    _remove_pid_file(paths)
    out(f"oar-server stopped (pid {pid})" if gently else
        f"oar-server did not stop within {args.timeout:g} s of TERM: killed (pid {pid})")
    return 0


def do_status(paths: lab_mod.LabPaths, args, out) -> int:
    from ..db import connection, schema

    config = _require_lab(paths)
    pid, running = server_pid(paths)
    out(f"lab: {paths.root}")
    if running:
        out(f"oar-server: running (pid {pid}, port {config['SERVER_PORT']})")
    elif pid is not None:
        out(f"oar-server: not running (stale pid file: pid {pid} is not the lab's server)")
    else:
        out("oar-server: not running")
    if not os.path.exists(config["DB_BASE_FILE"]):
        raise DatabaseError(f"the lab's database {config['DB_BASE_FILE']} is missing: oar-lab init --force")
    db = connection.connect(config.database_url())
    try:
        schema.require_schema(db)
        out(f"resources: {lab_mod.describe_counts(lab_mod.resource_counts(db))}")
        out(f"jobs: {lab_mod.describe_counts(lab_mod.job_counts(db))}")
    finally:
        db.close()
    return 0


def do_env(paths: lab_mod.LabPaths, args, out, environ) -> int:
    import shlex

    _require_lab(paths)
    out(f"export OARCONFFILE={shlex.quote(paths.conf)}")
    bin_dir = os.path.dirname(sys.executable)
    on_path = environ.get("PATH", "").split(os.pathsep)
    if os.path.exists(os.path.join(bin_dir, "oarsub")) and bin_dir not in on_path:
        out(f"export PATH={shlex.quote(bin_dir)}:\"$PATH\"")
    return 0


def run(argv, environ) -> int:
    args = build_parser().parse_args(argv)
    home = environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    root = args.dir or DEFAULT_DIR
    if root == "~" or root.startswith("~/"):
        root = home + root[1:]
    paths = lab_mod.LabPaths(os.path.abspath(root), default=args.dir is None)
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")

    def out(text: str) -> None:
        print(text, flush=True)

    def warn(text: str) -> None:
        print("#WARNING: " + text, file=sys.stderr)

    if args.action == "init":
        return do_init(paths, args, out)
    if args.action == "start":
        return do_start(paths, args, out, warn)
    if args.action == "stop":
        return do_stop(paths, args, out)
    if args.action == "status":
        return do_status(paths, args, out)
    return do_env(paths, args, out, environ)


def main(argv=None) -> int:
    """Run oar-lab; every failure is one ``#ERROR:`` line and the exit code of its class."""
    import peewee

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(argv, dict(os.environ))
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except OarError as exc:
        print(error_line(exc.message), file=sys.stderr)
        return exc.exit_code
    except peewee.DatabaseError as exc:
        print(error_line(f"database error: {str(exc).strip() or type(exc).__name__}"), file=sys.stderr)
        return DatabaseError.exit_code
    except KeyboardInterrupt:
        print(error_line("interrupted"), file=sys.stderr)
        return INTERRUPTED_EXIT
    except OSError as exc:  # the lab directory cannot be written, typically
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(error_line(f"{exc.strerror or exc}{where}"), file=sys.stderr)
        denied = exc.errno in (errno.EACCES, errno.EPERM)
        return PermissionDeniedError.exit_code if denied else ConflictError.exit_code
    except Exception as exc:  # the last barrier: no traceback reaches the user
        print(error_line(f"internal error: {type(exc).__name__}: {exc}"), file=sys.stderr)
        return INTERNAL_ERROR_EXIT


if __name__ == "__main__":
    raise SystemExit(main())
