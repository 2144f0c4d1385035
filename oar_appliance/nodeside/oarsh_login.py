"""The login program of the OAR account on a node: the ForceCommand of the node's
dedicated sshd (console script ``oarsh_shell``; ansible/roles/oar_node/templates).

``oarsh_shell --config OAR_CONF``  (run by sshd as the OAR account)

Every connection to the node's sshd lands here, and is one of three kinds:

* **a job key** (the key the client used, as sshd tells it in ``SSH_USER_AUTH`` with
  ``ExposeAuthInfo``, is a job's ``job_<id>.key.pub`` in the runtime directory): the
  connection enters that job, as its user, whatever the client sent;
* **oarsh** (the OAR account's own key, with ``OAR_JOB_ID`` and ``OAR_JOB_USER`` sent by
  oarsh's privileged half or by oarsub -I/-C): the connection enters that job, as that
  user, once the node's own files say the job runs here and is that user's;
* **the server** (the OAR account's own key, no ``OAR_JOB_ID``): ``SSH_ORIGINAL_COMMAND``
  runs unchanged with the account's shell (oarexec, jobctl, node checks).

Entering a job is :mod:`oar_appliance.nodeside.oarsh_shell` run as root through
``NODE_COMMAND_PREFIX NODE_PYTHON -m`` (the sudo rule oarexec already uses): it joins the
job's cgroup, becomes the user and runs the command (or a shell) with the job's
environment.  A job that has no files here is refused with one ``#ERROR:`` line.

``oarsh_shell --config OAR_CONF --authorized-keys USER`` is sshd's AuthorizedKeysCommand:
it prints the keys of the jobs running on this node (``restrict,pty``: no forwarding).
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shlex
import socket
import sys
from dataclasses import dataclass

from ..errors import NotFoundError, OarError, PermissionDeniedError, UsageError
from .runtime import JobFiles, parse_public_key

__all__ = ["Entry", "authorized_keys", "decide", "job_keys", "main", "used_keys"]

JOB_KEY_RE = re.compile(r"^job_(\d+)\.key\.pub$")
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")
MODES = ("", "connect", "interactive")


@dataclass(frozen=True)
class Entry:
    """What a connection is: ``server`` (run its command as the OAR account) or ``job``."""

    kind: str
    command: str
    job_id: int | None = None
    user: str | None = None  # the job's user claimed by oarsh (None: read from the job)
    mode: str = ""


def job_keys(runtime_dir: str) -> dict[tuple[str, str], int]:
    """The job keys of the jobs on this node: key -> job id."""
    keys: dict[tuple[str, str], int] = {}
    try:
        names = os.listdir(runtime_dir)
    except OSError:
        return keys
    for name in sorted(names):
        match = JOB_KEY_RE.match(name)
        if not match:
            continue
        try:
            with open(os.path.join(runtime_dir, name), encoding="ascii") as stream:
                key = parse_public_key(stream.readline())
        except (OSError, UnicodeDecodeError):
            continue
        if key:
            keys[key] = int(match.group(1))
    return keys


def authorized_keys(runtime_dir: str) -> list[str]:
    """AuthorizedKeysCommand lines: every job key, with no forwarding of any kind."""
    return [f"restrict,pty {kind} {blob} oar-job-{job_id}"
            for (kind, blob), job_id in job_keys(runtime_dir).items()]


def used_keys(auth_info: str) -> list[tuple[str, str]]:
    """The public keys of ``SSH_USER_AUTH`` (``publickey TYPE BLOB`` lines)."""
    found = []
    for line in auth_info.splitlines():
        method, _, rest = line.partition(" ")
        key = parse_public_key(rest) if method == "publickey" else None
        if key:
            found.append(key)
    return found


def decide(environ: dict[str, str], used: list[tuple[str, str]],
           keys: dict[tuple[str, str], int]) -> Entry:
    """The kind of connection, from the key used and what the client sent."""
    command = environ.get("SSH_ORIGINAL_COMMAND", "")
    for key in used:
        if key in keys:  # a job key: what the client sent cannot widen it
            return Entry("job", command, keys[key], None, "connect")
    job = environ.get("OAR_JOB_ID", "")
    if not job:
        return Entry("server", command)
    user, mode = environ.get("OAR_JOB_USER", ""), environ.get("OAR_SHELL_MODE", "")
    if not job.isdigit() or not USER_RE.match(user) or mode not in MODES:
        raise UsageError(f"oarsh: bad job {job!r}, user {user!r} or mode {mode!r} sent to the node")
    return Entry("job", command, int(job), user, mode or "connect")


def enter_argv(config, runtime_dir: str, entry: Entry, user: str) -> list[str]:
    """The root program that puts the connection into its job (oarsh_shell, as the server
    runs node-side modules)."""
    argv = [*shlex.split(config["NODE_COMMAND_PREFIX"] or ""), *shlex.split(config["NODE_PYTHON"]),
            "-m", "oar_appliance.nodeside.oarsh_shell", "--runtime-dir", runtime_dir, "--user", user]
    if entry.command:
        argv.append("--command=" + entry.command)  # one word even when it starts with "-"
    elif entry.mode == "interactive":
        argv.append("--interactive")
    return argv + [str(entry.job_id)]


def job_user(files: JobFiles) -> str | None:
    """The job's user as recorded on this node by root: ``job_<id>.manager`` (written by
    oarexec on the head node and by the preparation of every node), else ``OAR_USER`` of
    ``job_<id>.env``; None when the job has nothing here."""
    from .cgroups import read_manager_file

    recorded = read_manager_file(files)
    if recorded is not None:
        return recorded.get("user") if isinstance(recorded.get("user"), str) else None
    try:
        with open(files.env, encoding="utf-8") as stream:
            for line in stream:
                name, _, value = line.rstrip("\n").partition("=")
                if name == "OAR_USER":
                    return value
    except OSError:
        return None
    return None


def _own_shell() -> tuple[str, str]:
    entry = pwd.getpwuid(os.getuid())
    return entry.pw_shell or "/bin/sh", entry.pw_name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oarsh_shell", description=(
        "Login program of the OAR account on a node (the node sshd's ForceCommand): runs the "
        "server's commands, or puts an oarsh connection into its job."))
    parser.add_argument("--config", required=True, help="the node's oar.conf")
    parser.add_argument("--authorized-keys", metavar="USER",
                        help="print the keys of the jobs running here (AuthorizedKeysCommand)")
    return parser


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def main(argv=None, environ: dict[str, str] | None = None) -> int:
    from ..conf import load_config

    environ = dict(os.environ if environ is None else environ)
    parser = build_parser()
    parser.__class__ = _Parser
    try:
        args = parser.parse_args(argv)
        config = load_config(args.config, environ={})
        runtime_dir = str(config["OAR_RUNTIME_DIRECTORY"])
        shell, account = _own_shell()
        if args.authorized_keys is not None:
            if args.authorized_keys == account:
                for line in authorized_keys(runtime_dir):
                    print(line)
            return 0
        used = []
        if environ.get("SSH_USER_AUTH"):
            with open(environ["SSH_USER_AUTH"], encoding="utf-8", errors="replace") as stream:
                used = used_keys(stream.read())
        entry = decide(environ, used, job_keys(runtime_dir))
        if entry.kind == "server":
            login = ["-" + os.path.basename(shell)]
            os.execv(shell, [shell, "-c", entry.command] if entry.command else login)
        files = JobFiles(runtime_dir, entry.job_id)
        owner = job_user(files)
        host = socket.gethostname()
        if owner is None:
            raise NotFoundError(f"oarsh: job {entry.job_id} has no resources on {host}")
        if entry.user is not None and entry.user != owner:
            raise PermissionDeniedError(f"oarsh: job {entry.job_id} is not {entry.user}'s")
        os.chdir("/")
        command = enter_argv(config, runtime_dir, entry, owner)
        os.execvp(command[0], command)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except OarError as exc:
        print("#ERROR: " + " ".join(exc.message.split()), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"#ERROR: oarsh: {exc.strerror or exc}", file=sys.stderr)
        return 70
    return 70


if __name__ == "__main__":
    raise SystemExit(main())
