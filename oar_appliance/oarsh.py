"""oarsh on the calling side: which job the caller is in, and the ssh that reaches a node of
it through the nodes' dedicated sshd (port 6667, the OAR account, ForceCommand oarsh_shell).

Three ways in, all ending in :mod:`oar_appliance.nodeside.oarsh_login` on the node:

* **From inside a job** (``oarsh node2 cmd`` run by a job's process): the user part
  re-runs oarsh through sudo as the OAR account (``--privileged``).  That half trusts
  nothing the user gives about identity: the caller is sudo's ``SUDO_USER``, the job is
  read from the caller's cgroup (``/proc/self/cgroup``: ``.../<user>_<jobid>``, which the
  user cannot leave or forge), or, on a node without cgroups, from the session of one of
  the caller's ancestors recorded in the job's ``job_<jobid>.pgid``.  It connects with the
  OAR account's key, sending ``OAR_JOB_ID`` and ``OAR_JOB_USER`` (ssh's SetEnv).
* **With a job key** (``OAR_JOB_KEY_FILE`` or ``-i FILE``): plain ssh as the user with that
  key; the node knows the key as the job's (:mod:`oar_appliance.nodeside.oarsh_login`).
* **oarsub -I / -C** (already the OAR account, the job checked in the database):
  :func:`job_shell_argv`.

The user's ssh options pass through an allow-list (:func:`parse_arguments`): the privileged
half runs ssh with the OAR account's key, so no option may choose another port, a proxy, a
local command, a log file, a forwarding or another identity.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .errors import NotFoundError, UsageError

__all__ = [
    "OarshRequest", "parse_arguments", "job_from_cgroups",
    "job_from_sessions", "ssh_base", "node_argv", "job_key_argv", "job_shell_argv",
]

#: ssh flags without a value that change nothing about where or as whom ssh connects
SAFE_FLAGS = frozenset("46CnNqtTvx")
#: ``-o`` settings allowed: name -> allowed values (None: a number)
SAFE_SETTINGS: dict[str, frozenset[str] | None] = {
    "connecttimeout": None, "serveraliveinterval": None, "serveralivecountmax": None,
    "batchmode": frozenset({"yes", "no"}), "requesttty": frozenset({"yes", "no", "force", "auto"}),
    "loglevel": frozenset({"quiet", "fatal", "error", "info", "verbose", "debug", "debug1",
                           "debug2", "debug3"}),
    "compression": frozenset({"yes", "no"}),
    # what scp -S adds
    "permitlocalcommand": frozenset({"no"}), "clearallforwardings": frozenset({"yes"}),
    "remotecommand": frozenset({"none"}), "forwardagent": frozenset({"no"}),
    "forwardx11": frozenset({"no"}),
}
HOST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")


@dataclass
class OarshRequest:
    """A parsed ``oarsh [options] host [command...]``."""

    host: str
    command: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)  # the allowed ssh options, as given
    identity: str | None = None  # -i FILE: a job key


def _setting(text: str) -> str:
    name, sep, value = text.partition("=")
    if not sep:
        name, _, value = text.partition(" ")
    key, value = name.strip().lower(), value.strip()
    if key not in SAFE_SETTINGS:
        raise UsageError(f"oarsh: the ssh option -o {name.strip()} is not allowed")
    allowed = SAFE_SETTINGS[key]
    if (value.lower() not in allowed) if allowed is not None else not value.isdigit():
        raise UsageError(f"oarsh: -o {name.strip()}={value} is not allowed")
    return f"-o{name.strip()}={value}"


def parse_arguments(argv: list[str], caller: str | None = None) -> OarshRequest:
    """Split ``argv`` like ssh does, keeping only the allowed options.

    ``-l USER`` and ``USER@host`` are accepted only for ``caller`` (the session's account
    is the job's user anyway); anything that could change the port, the identity (other
    than ``-i`` for a job key), a proxy, forwardings or files written is refused."""
    options: list[str] = []
    identity = None
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            index += 1
            break
        if not word.startswith("-") or word == "-":
            break
        letters = word[1:]
        while letters:
            letter, letters = letters[0], letters[1:]
            if letter in SAFE_FLAGS:
                options.append("-" + letter)
                continue
            if letter not in "oil":
                raise UsageError(f"oarsh: the ssh option -{letter} is not allowed")
            if not letters:
                index += 1
                if index >= len(argv):
                    raise UsageError(f"oarsh: option -{letter} needs a value")
                letters = argv[index]
            value, letters = letters, ""
            if letter == "o":
                options.append(_setting(value))
            elif letter == "i":
                identity = value
            elif caller is None or value != caller:
                raise UsageError(f"oarsh: -l {value}: oarsh connects as the job's user only")
        index += 1
    if index >= len(argv):
        raise UsageError("oarsh: which host? usage: oarsh [ssh options] HOST [COMMAND...]")
    host = argv[index]
    login, at, name = host.rpartition("@")
    if at:
        if caller is None or login != caller:
            raise UsageError(f"oarsh: {host}: oarsh connects as the job's user only")
        host = name
    if not HOST_RE.match(host):
        raise UsageError(f"oarsh: bad host name {host!r}")
    return OarshRequest(host, list(argv[index + 1:]), options, identity)


def job_from_cgroups(lines: Iterable[str], user: str) -> int | None:
    """The job whose cgroup (``<base>/<user>_<jobid>``) holds the process whose
    ``/proc/<pid>/cgroup`` lines are given, or None."""
    pattern = re.compile(r"^" + re.escape(user) + r"_(\d+)$")
    for line in lines:
        path = line.rstrip("\n").split(":", 2)[-1]
        for part in reversed(path.split("/")):
            match = pattern.match(part)
            if match:
                return int(match.group(1))
    return None


def _session_of(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of ``pid`` from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            fields = stream.read().rpartition(")")[2].split()
        return int(fields[1]), int(fields[3])
    except (OSError, ValueError, IndexError):
        return None


def job_from_sessions(runtime_dir: str, user: str, pid: int) -> int | None:
    """Without cgroups: the job of ``user`` whose recorded session (``job_<id>.pgid``,
    written by oarexec as root) is the session of ``pid`` or of one of its ancestors."""
    from .nodeside.cgroups import read_manager_file
    from .nodeside.runtime import JobFiles

    sessions: dict[int, int] = {}
    try:
        names = os.listdir(runtime_dir)
    except OSError:
        return None
    for name in names:
        match = re.match(r"^job_(\d+)\.pgid$", name)
        if not match:
            continue
        files = JobFiles(runtime_dir, int(match.group(1)))
        try:
            with open(files.pgid) as stream:
                words = stream.read().split()
            session = int(words[1])
        except (OSError, ValueError, IndexError):
            continue
        if (read_manager_file(files) or {}).get("user") == user:
            sessions[session] = files.job_id
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        info = _session_of(pid)
        if info is None:
            return None
        if info[1] in sessions:
            return sessions[info[1]]
        pid = info[0]
    return None


def ssh_base(config: Mapping[str, Any]) -> list[str]:
    """The server's ssh to the nodes (OPENSSH_CMD, port 6667 unless it names one, batch
    mode, ``-l NODE_SSH_USER``), then OARSH_OPENSSH_DEFAULT_OPTIONS."""
    from .execution.ssh import SshConnector

    return [*SshConnector.from_config(config).ssh_argv,
            *shlex.split(str(config.get("OARSH_OPENSSH_DEFAULT_OPTIONS") or ""))]


def node_argv(config: Mapping[str, Any], request: OarshRequest, job_id: int, user: str,
              mode: str = "") -> list[str]:
    """The ssh of the privileged half: the OAR account's key, the job and its user sent to
    the node with SetEnv (the node's sshd accepts exactly these variables)."""
    if not USER_RE.match(user):  # SetEnv splits on blanks
        raise UsageError(f"oarsh: bad user name {user!r}")
    sent = f"OAR_JOB_ID={int(job_id)} OAR_JOB_USER={user}" + (f" OAR_SHELL_MODE={mode}" if mode else "")
    return [*ssh_base(config), "-o", "SetEnv=" + sent, *request.options, "--", request.host, *request.command]


def job_key_argv(config: Mapping[str, Any], request: OarshRequest, key_file: str) -> list[str]:
    """The ssh of a job-key holder: as the OAR account, with the job key only."""
    if not os.access(key_file, os.R_OK):
        raise NotFoundError(f"oarsh: cannot read the job key {key_file}")
    return [*ssh_base(config), "-i", key_file, "-o", "IdentitiesOnly=yes", *request.options, "--",
            request.host, *request.command]


def job_shell_argv(config: Mapping[str, Any], host: str, job_id: int, user: str,
                   interactive: bool, terminal: bool) -> list[str]:
    """oarsub -I / -C on a site: the job's shell on its head node (with a terminal when
    oarsub has one)."""
    request = OarshRequest(host, [], ["-t"] if terminal else ["-T"])
    return node_argv(config, request, job_id, user, "interactive" if interactive else "connect")
