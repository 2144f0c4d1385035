"""The files a job leaves in the node's runtime directory, and its processes.

oarexec and jobctl agree on these names (``<runtime_dir>/...``):

| file | content |
|---|---|
| ``oarexec_<jobid>.pid`` | oarexec's pid |
| ``job_<jobid>.pgid`` | ``<process group> <session>`` of the job's command (``-`` before it starts) |
| ``job_<jobid>.env`` | the job's ``OAR_*`` environment, one ``NAME=value`` per line |
| ``job_<jobid>.nodefile`` | ``OAR_NODEFILE`` |
| ``job_<jobid>.resources`` | ``OAR_RESOURCE_PROPERTIES_FILE`` |
| ``job_<jobid>.signal`` | a signal name for the user signal (``oardel -s``) |
| ``job_<jobid>.shell.status`` | the exit status of an interactive job's shell |
| ``job_<jobid>.manager`` | the job resource manager oarexec chose (JSON: its cgroup, the suspend/resume scripts) |
| ``job_<jobid>.key.pub`` | the job key (``oarsub -k``/``-i``): the node's sshd lets its holder into the job |
| ``oarexec_<jobid>.log`` | oarexec's debug log (``OAREXEC_DEBUG_MODE``) |

:class:`ProcessGroupJobProcesses` finds a job's processes by process group and session
(oarexec runs in a session of its own and the command in a process group of its own).
:func:`job_processes` is the one place that says how a job's processes are found: the
job's cgroup when oarexec made one (:mod:`oar_appliance.nodeside.cgroups`, which also
catches processes that left the session), else the process group and session.
"""

from __future__ import annotations

import errno
import os
import signal
import time

__all__ = [
    "DEFAULT_PATH",
    "JobFiles",
    "parse_public_key",
    "unsafe_runtime_dir",
    "ProcessGroupJobProcesses",
    "job_processes",
    "pid_alive",
    "read_pid",
    "signal_number",
]

#: PATH of a job's processes when the node side has none to pass on
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class JobFiles:
    """The paths of one job's runtime files."""

    def __init__(self, runtime_dir: str, job_id: int):
        self.runtime_dir = runtime_dir
        self.job_id = int(job_id)

    def _path(self, name: str) -> str:
        return os.path.join(self.runtime_dir, name)

    @property
    def pid(self) -> str:
        return self._path(f"oarexec_{self.job_id}.pid")

    @property
    def pgid(self) -> str:
        return self._path(f"job_{self.job_id}.pgid")

    @property
    def env(self) -> str:
        return self._path(f"job_{self.job_id}.env")

    @property
    def nodefile(self) -> str:
        return self._path(f"job_{self.job_id}.nodefile")

    @property
    def resources(self) -> str:
        return self._path(f"job_{self.job_id}.resources")

    @property
    def signal(self) -> str:
        return self._path(f"job_{self.job_id}.signal")

    @property
    def shell_status(self) -> str:
        return self._path(f"job_{self.job_id}.shell.status")

    @property
    def manager(self) -> str:
        return self._path(f"job_{self.job_id}.manager")

    @property
    def job_key(self) -> str:
        return self._path(f"job_{self.job_id}.key.pub")

    @property
    def debug_log(self) -> str:
        return self._path(f"oarexec_{self.job_id}.log")

    def job_files(self) -> list[str]:
        """Every file ``clean`` removes (the debug log stays, for the administrator)."""
        return [self.pid, self.pgid, self.env, self.nodefile, self.resources, self.signal,
                self.shell_status, self.manager, self.job_key]


def parse_public_key(text: str) -> tuple[str, str] | None:
    """``(type, base64 blob)`` of one ssh public key line (a comment may follow), or None
    (also for several lines: a job key is written into sshd's authorized keys)."""
    import re

    words = text.strip().split()
    if len(words) < 2 or "\n" in text.strip() or "\r" in text:
        return None
    if re.match(r"^(ssh|ecdsa|sk)-[A-Za-z0-9@.-]+$", words[0]) and re.match(r"^[A-Za-z0-9+/]+={0,3}$", words[1]):
        return words[0], words[1]
    return None


def unsafe_runtime_dir(path: str) -> str | None:
    """Why ``path`` must not be trusted as a runtime directory, or None when it is fine.

    oarexec writes, and jobctl reads, pids there (and jobctl signals them): the directory
    must be a real directory (not a symbolic link) of this account, that no one else can
    write in."""
    import stat

    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if info.st_uid != os.geteuid():
        return f"{path} belongs to uid {info.st_uid}, not to this account"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by others"
    return None


def read_pid(path: str) -> int | None:
    """The first integer of ``path``, or None when it is missing or malformed."""
    try:
        with open(path, encoding="ascii") as stream:
            words = stream.read().split()
        return int(words[0]) if words else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def pid_alive(pid: int | None) -> bool:
    """True when a process ``pid`` exists (and is not a zombie)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def signal_number(name: str | int) -> int:
    """``"USR2"``, ``"SIGUSR2"``, ``"12"`` or ``12`` -> 12; ValueError for anything else."""
    if isinstance(name, int) or (isinstance(name, str) and name.strip().isdigit()):
        number = int(name)
        if number not in {s.value for s in signal.Signals}:
            raise ValueError(f"unknown signal number {number}")
        return number
    text = str(name).strip().upper()
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return signal.Signals[text].value
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, session) of ``pid`` from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            data = stream.read()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: the fields start after the last ')'
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3])
    except (IndexError, ValueError):
        return None


class ProcessGroupJobProcesses:
    """A job's processes: those in its process group or in oarexec's session.

    ``pgid`` and ``sid`` come from ``job_<jobid>.pgid`` unless given.  ``exclude`` pids
    (oarexec itself) are never signalled.
    """

    def __init__(self, pgid: int | None, sid: int | None, exclude: set[int] | None = None):
        self.pgid = pgid
        self.sid = sid
        self.exclude = set(exclude or ())

    @classmethod
    def from_files(cls, files: JobFiles, exclude: set[int] | None = None) -> ProcessGroupJobProcesses:
        try:
            with open(files.pgid, encoding="ascii") as stream:
                words = stream.read().split()
            pgid = None if words[0] == "-" else int(words[0])
            sid = int(words[1])
        except (OSError, ValueError, IndexError):
            pgid = sid = None
        return cls(pgid, sid, exclude)

    def pids(self) -> set[int]:
        """The live processes of the job (zombies left out)."""
        return set(self._members())

    def _members(self) -> dict[int, int]:
        """pid -> process group of every live process of the job."""
        if self.pgid is None and self.sid is None:
            return {}
        found = {}
        own = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid == own or pid in self.exclude:
                continue
            stat = _stat(pid)
            if stat is None or stat[0] == "Z":
                continue
            if (self.pgid is not None and stat[2] == self.pgid) or (
                self.sid is not None and stat[3] == self.sid
            ):
                found[pid] = stat[2]
        return found

    def signal(self, sig: int) -> int:
        """Send ``sig`` to the process group and to every process of the job; how many got it."""
        sent = 0
        group_done = False
        if self.pgid is not None:
            try:
                os.killpg(self.pgid, sig)
                sent += 1
                group_done = True
            except (ProcessLookupError, PermissionError):
                pass
        for pid, group in self._members().items():
            if group_done and group == self.pgid:
                continue  # the group got it already: a handler must not see it twice
            try:
                os.kill(pid, sig)
                sent += 1
            except (ProcessLookupError, PermissionError):
                pass
        return sent

    def suspend(self) -> int:
        return self.signal(signal.SIGSTOP)

    def resume(self) -> int:
        return self.signal(signal.SIGCONT)

    def kill_all(self, grace: float = 0.0) -> bool:
        """TERM (when ``grace`` > 0), then KILL what is left; True when nothing is left."""
        if grace > 0:
            self.signal(signal.SIGTERM)
            self.signal(signal.SIGCONT)  # a stopped (suspended) process only dies when it runs
            deadline = time.monotonic() + grace
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.05)
        for _ in range(20):
            if not self.pids():
                return True
            self.signal(signal.SIGKILL)
            time.sleep(0.05)
        return not self.pids()


def job_processes(files: JobFiles, exclude: set[int] | None = None):
    """The job's processes on this node, for oarexec and jobctl alike: the job resource
    manager oarexec chose (:func:`oar_appliance.nodeside.cgroups.manager_from_files`: the
    job's cgroup, or its process group and session), an object with ``pids``, ``signal``,
    ``suspend``, ``resume``, ``kill_all``, ``freeze``, ``thaw`` and ``clean``."""
    from oar_appliance.nodeside.cgroups import manager_from_files

    return manager_from_files(files, exclude)


def remove_files(paths: list[str]) -> None:
    """Remove each path; a missing one is fine."""
    for path in paths:
        try:
            os.unlink(path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
