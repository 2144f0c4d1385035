"""The job resource manager: where a job's processes live on a node, and how they are
confined, frozen and cleaned.

A job whose data names cpus (``cpuset``, from the resource column
``JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD``) gets a cgroup ``<base>/<user>_<jobid>``
(``base`` is ``/oar`` on a node) with:

* its cpus (cpuset controller),
* a memory limit proportional to its cores: ``node memory x job cpus / node cpus``
  (node memory is ``MemTotal``, node cpus those of the cgroup root), see
  :func:`memory_share`,
* a freezer, for suspend/resume (``oarhold -r`` / ``oarresume``),
* the node's devices that are not the job's denied (devices controller, see
  :func:`device_rules`): the resources' ``JOB_RESOURCE_MANAGER_DEVICES_DB_FIELD`` column
  names the device a resource stands for (a GPU's ``/dev/nvidia0``).

Every process of the job, also one that left the job's session with ``setsid``, is in that
cgroup, so ``clean`` (freeze, KILL every task, thaw, wait until empty, remove) leaves
nothing behind.

Three implementations of one interface, :class:`JobResourceManager`:

* :class:`CgroupV1Manager`: the cpuset, memory and freezer hierarchies of cgroup v1;
* :class:`CgroupV2Manager`: the unified hierarchy (``cpuset.cpus``, ``memory.max``,
  ``cgroup.freeze``, ``cgroup.kill``); a controller the host does not delegate to the
  hierarchy is left out (and said so by :attr:`CgroupV2Manager.missing`);
* :class:`ProcessGroupManager`: no cgroup (an ordinary user, a host without writable
  cgroups, ``JOB_RESOURCE_MANAGER=none``, a job without cpus): the job's process group
  and oarexec's session, SIGSTOP/SIGCONT for suspend/resume.

:func:`manager_for` chooses once, from the job and what the host has; oarexec writes the
choice to ``job_<jobid>.manager`` in its runtime directory and :func:`manager_from_files`
reads it back for jobctl.  No database, no oar.conf here: the choice comes with the job
data (``job_resource_manager``: ``auto``, ``cgroup`` or ``none``).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import time
from typing import Any

from oar_appliance.nodeside.runtime import JobFiles, ProcessGroupJobProcesses

__all__ = [
    "MODES",
    "CgroupError",
    "JobResourceManager",
    "CgroupV1Manager",
    "CgroupV2Manager",
    "ProcessGroupManager",
    "cgroup_name",
    "device_rules",
    "memory_share",
    "node_cpus",
    "node_memory",
    "detect",
    "manager_for",
    "manager_from_files",
    "write_manager_file",
    "read_manager_file",
]

#: the values of ``JOB_RESOURCE_MANAGER`` (job data ``job_resource_manager``)
MODES = ("auto", "cgroup", "none")
#: the parent of the jobs' cgroups in each hierarchy on a node
DEFAULT_BASE = "/oar"
V1_CONTROLLERS = ("cpuset", "memory", "freezer")
#: used only for a job that must not open some of the node's devices
V1_DEVICES = "devices"
#: how long a freeze, or the end of the killed tasks, may take
SETTLE_TIMEOUT = 10.0


class CgroupError(Exception):
    """A cgroup could not be created, written or removed."""


def cgroup_name(user: str, job_id: int) -> str:
    """``<user>_<jobid>``: the job's cgroup name on every node."""
    return f"{user}_{int(job_id)}"


def _read(path: str) -> str:
    with open(path, encoding="ascii") as stream:
        return stream.read().strip()


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as stream:
            stream.write(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from None


def device_rules(job_devices: list[str], node_devices: list[str]) -> list[str]:
    """The ``devices.deny`` lines (``c MAJOR:MINOR rwm``, ``b`` for a block device) of the
    node's devices that are not the job's: ``node_devices`` are the device paths of all the
    node's resources, ``job_devices`` those of the job's resources on this node.  A device
    the job has under another path stays open to it.  A path to deny that is missing or not
    a device is a :class:`CgroupError` (the node is not as its resources say)."""
    def rule(path: str) -> str:
        try:
            mode = os.stat(path)
        except OSError as exc:
            raise CgroupError(f"cannot deny the device {path}: {exc.strerror}") from None
        if stat.S_ISCHR(mode.st_mode):
            kind = "c"
        elif stat.S_ISBLK(mode.st_mode):
            kind = "b"
        else:
            raise CgroupError(f"cannot deny the device {path}: not a device")
        return f"{kind} {os.major(mode.st_rdev)}:{os.minor(mode.st_rdev)} rwm"

    kept = set(job_devices)
    denied = {rule(path) for path in set(node_devices) - kept}
    own = set()
    for path in kept:
        try:
            own.add(rule(path))
        except CgroupError:
            pass  # the job's own device missing here: nothing of it to keep open
    return sorted(denied - own)


def parse_cpu_list(text: str) -> list[int]:
    """``"0-2,5"`` -> ``[0, 1, 2, 5]``."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def cpu_list(cpus: list[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(set(cpus)))


def node_memory() -> int:
    """The node's memory in bytes: ``MemTotal`` of /proc/meminfo, or less when the root of
    the node's memory cgroup tree has a lower limit (a node that is itself a container or
    a cgroup namespace with a limit: its jobs share that limit, not the machine's)."""
    total = None
    with open("/proc/meminfo", encoding="ascii") as stream:
        for line in stream:
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
    if total is None:
        raise CgroupError("no MemTotal in /proc/meminfo")
    found = detect()
    if found and found[0] == "v1" and "memory" in found[1]:
        try:
            limit = int(_read(os.path.join(found[1]["memory"], "memory.limit_in_bytes")))
        except (OSError, ValueError):
            limit = total
        total = min(total, limit)
    return total


def node_cpus() -> list[int]:
    """The node's online cpus."""
    try:
        return parse_cpu_list(_read("/sys/devices/system/cpu/online"))
    except OSError:
        return list(range(os.cpu_count() or 1))


def memory_share(memory: int, job_cpus: int, node_cpu_count: int) -> int:
    """The memory limit of a job: ``memory x job_cpus / node_cpus`` bytes, rounded down to
    a page (4096), never more than ``memory``."""
    if node_cpu_count <= 0 or job_cpus <= 0:
        return memory
    share = memory * min(job_cpus, node_cpu_count) // node_cpu_count
    return max(4096, share - share % 4096)


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _pids_of(procs_file: str) -> set[int]:
    try:
        return {int(word) for word in _read(procs_file).split()}
    except FileNotFoundError:
        return set()
    except OSError as exc:
        if exc.errno == errno.ENODEV:  # removed under us
            return set()
        raise


def _rmdir(path: str) -> bool:
    """Remove one cgroup directory; True when it is gone."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _kill_each(pids: set[int], sig: int) -> int:
    sent = 0
    for pid in pids:
        try:
            os.kill(pid, sig)
            sent += 1
        except (ProcessLookupError, PermissionError):
            pass
    return sent


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


class JobResourceManager:
    """Where a job's processes are, on one node.

    ``init`` sets the job's place up (before its command starts; ``denied_devices`` are
    :func:`device_rules` lines, refused with :class:`CgroupError` by a manager that cannot
    enforce them), ``attach(pid)`` puts a
    process there (the command, before it runs the user's shell), ``pids`` lists the live
    ones, ``freeze``/``thaw`` stop and continue them all, ``clean`` kills them all and
    removes the place (idempotent: cleaning a cleaned job is a success).  ``signal``,
    ``suspend``, ``resume`` and ``kill_all`` are what oarexec and jobctl use
    (:func:`oar_appliance.nodeside.runtime.job_processes`)."""

    kind = "abstract"

    def init(self, cpus: list[int], memory_limit: int | None, denied_devices: list[str] = ()) -> None:
        raise NotImplementedError

    def attach(self, pid: int) -> None:
        raise NotImplementedError

    def pids(self) -> set[int]:
        raise NotImplementedError

    def freeze(self) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def clean(self) -> bool:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What jobctl needs to find the job again (written to ``job_<jobid>.manager``)."""
        return {"kind": self.kind}

    # the interface of runtime.job_processes
    def signal(self, sig: int) -> int:
        return _kill_each(self.pids(), sig)

    def suspend(self) -> int:
        self.freeze()
        return len(self.pids())

    def resume(self) -> int:
        self.thaw()
        return len(self.pids())

    def kill_all(self, grace: float = 0.0) -> bool:
        """TERM (when ``grace`` > 0), then KILL what is left; True when nothing is left.
        The cgroup stays (``clean`` removes it)."""
        if grace > 0:
            self.thaw()  # a frozen task only dies once it runs
            self.signal(signal.SIGTERM)
            _wait_until(lambda: not self.pids(), grace)
        return self._kill_frozen()

    def _kill_frozen(self) -> bool:
        """Freeze (no task may fork meanwhile), KILL every task, thaw, wait for the end."""
        for _ in range(5):
            if not self.pids():
                return True
            self.freeze()
            _kill_each(self.pids(), signal.SIGKILL)
            self.thaw()
            if _wait_until(lambda: not self.pids(), SETTLE_TIMEOUT / 5):
                return True
        return not self.pids()


class ProcessGroupManager(JobResourceManager):
    """No cgroup: the job's processes are those of its process group and of oarexec's
    session (a process that calls ``setsid`` escapes); no cpu or memory confinement."""

    kind = "process_group"

    def __init__(self, files: JobFiles, exclude: set[int] | None = None):
        self.files = files
        self.exclude = set(exclude or ())

    def _processes(self) -> ProcessGroupJobProcesses:
        # read each time: oarexec writes the process group once the command started
        return ProcessGroupJobProcesses.from_files(self.files, self.exclude)

    def init(self, cpus: list[int], memory_limit: int | None, denied_devices: list[str] = ()) -> None:
        if denied_devices:
            raise CgroupError("the job must not open some devices of this node, and without cgroup v1 "
                              "(root, a devices hierarchy) nothing can keep it from them")

    def attach(self, pid: int) -> None:
        pass  # the command's process group is the job's place

    def pids(self) -> set[int]:
        return self._processes().pids()

    def freeze(self) -> None:
        self._processes().signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._processes().signal(signal.SIGCONT)

    def signal(self, sig: int) -> int:
        return self._processes().signal(sig)

    def kill_all(self, grace: float = 0.0) -> bool:
        return self._processes().kill_all(grace)

    def clean(self) -> bool:
        return self._processes().kill_all(0)


class CgroupV1Manager(JobResourceManager):
    """cgroup v1: one directory per controller (cpuset, memory, freezer, and devices for a
    job that must not open some devices), ``paths`` maps a controller to the job's cgroup
    directory in its hierarchy."""

    kind = "cgroup_v1"

    def __init__(self, paths: dict[str, str]):
        self.paths = dict(paths)

    @classmethod
    def for_job(cls, mounts: dict[str, str], base: str, name: str, devices: bool = False) -> CgroupV1Manager:
        """The job's cgroup ``<base>/<name>`` under each controller's mount point (the
        devices one too when ``devices`` and mounted); a relative ``base`` is taken inside
        this process's own cgroup of each hierarchy."""
        paths = {}
        wanted = V1_CONTROLLERS + ((V1_DEVICES,) if devices and V1_DEVICES in mounts else ())
        for controller in wanted:
            parent = base if base.startswith("/") else own_cgroup(controller).rstrip("/") + "/" + base
            paths[controller] = os.path.join(mounts[controller], parent.strip("/"), name)
        return cls(paths)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "paths": self.paths}

    def init(self, cpus: list[int], memory_limit: int | None, denied_devices: list[str] = ()) -> None:
        if denied_devices and V1_DEVICES not in self.paths:
            raise CgroupError("the job must not open some devices of this node, which has no cgroup v1 "
                              "devices hierarchy")
        for controller, path in self.paths.items():
            self._make(controller, path)
        cpuset = self.paths.get("cpuset")
        if cpus and cpuset:
            _write(os.path.join(cpuset, "cpuset.cpus"), cpu_list(cpus))
        if memory_limit and self.paths.get("memory"):
            memory = self.paths["memory"]
            _write(os.path.join(memory, "memory.limit_in_bytes"), str(int(memory_limit)))
            memsw = os.path.join(memory, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):  # swap counts too (the limit first: memsw >= memory)
                _write(memsw, str(int(memory_limit)))
        for rule in denied_devices:  # a new cgroup allows what its parent allows
            _write(os.path.join(self.paths[V1_DEVICES], "devices.deny"), rule)

    def _make(self, controller: str, path: str) -> None:
        """mkdir -p; a new cpuset directory takes its parent's cpus and memory nodes (a
        cpuset without them accepts no task)."""
        missing = []
        current = path
        while not os.path.isdir(current):
            missing.append(current)
            current = os.path.dirname(current)
        for directory in reversed(missing):
            try:
                os.mkdir(directory)
            except FileExistsError:
                pass
            except OSError as exc:
                raise CgroupError(f"cannot create the cgroup {directory}: {exc.strerror}") from None
            if controller == "cpuset":
                parent = os.path.dirname(directory)
                for name in ("cpuset.mems", "cpuset.cpus"):
                    _write(os.path.join(directory, name), _read(os.path.join(parent, name)))

    def attach(self, pid: int) -> None:
        for path in self.paths.values():
            _write(os.path.join(path, "cgroup.procs"), str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.paths.values():
            found |= _pids_of(os.path.join(path, "cgroup.procs"))
        return found

    def _state_file(self) -> str | None:
        freezer = self.paths.get("freezer")
        return os.path.join(freezer, "freezer.state") if freezer else None

    def frozen(self) -> bool:
        state = self._state_file()
        try:
            return state is not None and _read(state) == "FROZEN"
        except FileNotFoundError:
            return False

    def freeze(self) -> None:
        state = self._state_file()
        if state is None or not os.path.exists(state):
            return
        _write(state, "FROZEN")
        # FREEZING until every task stopped; writing FROZEN again moves it on
        if not _wait_until(lambda: _read(state) == "FROZEN" or _write(state, "FROZEN"), SETTLE_TIMEOUT):
            raise CgroupError(f"{state} did not freeze within {SETTLE_TIMEOUT:g} s")

    def thaw(self) -> None:
        state = self._state_file()
        if state is not None and os.path.exists(state):
            _write(state, "THAWED")

    def clean(self) -> bool:
        if not any(os.path.isdir(path) for path in self.paths.values()):
            return True
        emptied = self._kill_frozen()
        removed = all([_rmdir(path) for path in self.paths.values()])
        return emptied and removed


class CgroupV2Manager(JobResourceManager):
    """cgroup v2, one directory ``path`` in the unified hierarchy.  The cpuset and memory
    controllers are used when the hierarchy has them (enabled in every parent's
    ``cgroup.subtree_control`` by :meth:`init`); freeze and kill are core files."""

    kind = "cgroup_v2"

    def __init__(self, path: str, mount: str | None = None):
        self.path = path
        self.mount = mount or "/"
        #: the controllers the job wanted but the hierarchy does not offer
        self.missing: list[str] = []

    @classmethod
    def for_job(cls, mount: str, base: str, name: str) -> CgroupV2Manager:
        parent = base if base.startswith("/") else own_cgroup("").rstrip("/") + "/" + base
        return cls(os.path.join(mount, parent.strip("/"), name), mount)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "mount": self.mount}

    def init(self, cpus: list[int], memory_limit: int | None, denied_devices: list[str] = ()) -> None:
        if denied_devices:  # before any mkdir: a refused job leaves nothing behind
            raise CgroupError("the job must not open some devices of this node, and cgroup v2 has no "
                              "devices files (only a BPF program could deny them)")
        wanted = [c for c, needed in (("cpuset", bool(cpus)), ("memory", bool(memory_limit))) if needed]
        missing = []
        current = self.path
        while not os.path.isdir(current):
            missing.append(current)
            current = os.path.dirname(current)
        # every ancestor from the first existing one down hands the controllers on
        chain = [current] + list(reversed(missing))
        for index, directory in enumerate(chain):
            if index > 0:
                try:
                    os.mkdir(directory)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise CgroupError(f"cannot create the cgroup {directory}: {exc.strerror}") from None
            if directory == self.path:
                break
            available = set(_read(os.path.join(directory, "cgroup.controllers")).split())
            enabled = set(_read(os.path.join(directory, "cgroup.subtree_control")).split())
            todo = [c for c in wanted if c in available and c not in enabled]
            if todo:
                _write(os.path.join(directory, "cgroup.subtree_control"), " ".join("+" + c for c in todo))
        have = set(_read(os.path.join(self.path, "cgroup.controllers")).split())
        self.missing = [c for c in wanted if c not in have]
        if cpus and "cpuset" in have:
            _write(os.path.join(self.path, "cpuset.cpus"), cpu_list(cpus))
        if memory_limit and "memory" in have:
            _write(os.path.join(self.path, "memory.max"), str(int(memory_limit)))
            if os.path.exists(os.path.join(self.path, "memory.swap.max")):
                _write(os.path.join(self.path, "memory.swap.max"), "0")

    def attach(self, pid: int) -> None:
        _write(os.path.join(self.path, "cgroup.procs"), str(pid))

    def pids(self) -> set[int]:
        return _pids_of(os.path.join(self.path, "cgroup.procs"))

    def _events(self) -> dict[str, str]:
        try:
            text = _read(os.path.join(self.path, "cgroup.events"))
        except FileNotFoundError:
            return {}
        return dict(line.split(None, 1) for line in text.splitlines() if " " in line)

    def frozen(self) -> bool:
        return self._events().get("frozen") == "1"

    def freeze(self) -> None:
        if not os.path.isdir(self.path):
            return
        _write(os.path.join(self.path, "cgroup.freeze"), "1")
        if not _wait_until(self.frozen, SETTLE_TIMEOUT):
            raise CgroupError(f"{self.path} did not freeze within {SETTLE_TIMEOUT:g} s")

    def thaw(self) -> None:
        if os.path.isdir(self.path):
            _write(os.path.join(self.path, "cgroup.freeze"), "0")

    def _kill_frozen(self) -> bool:
        kill = os.path.join(self.path, "cgroup.kill")
        if os.path.exists(kill):  # the kernel kills every task, forks included, at once
            _write(kill, "1")
            if _wait_until(lambda: not self.pids(), SETTLE_TIMEOUT):
                return True
        return super()._kill_frozen()

    def clean(self) -> bool:
        if not os.path.isdir(self.path):
            return True
        emptied = self._kill_frozen()
        return _rmdir(self.path) and emptied


# --------------------------------------------------------------------------------------------
# What the host has, and the choice
# --------------------------------------------------------------------------------------------


def own_cgroup(controller: str) -> str:
    """This process's cgroup in the hierarchy of ``controller`` (``""``: the unified one)."""
    with open("/proc/self/cgroup", encoding="ascii") as stream:
        for line in stream:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            names = controllers.split(",") if controllers else [""]
            if controller in names:
                return path
    return "/"


def detect(mountinfo: str = "/proc/self/mountinfo") -> tuple[str, dict[str, str]] | None:
    """``("v1", {controller: mount point})`` when cpuset, memory and freezer are mounted
    as cgroup v1 (with devices when it is mounted too), else ``("v2", {"": mount point})``
    for a unified hierarchy, else None."""
    v1: dict[str, str] = {}
    v2: list[str] = []
    try:
        with open(mountinfo, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if len(fields) < 5 or len(extra) < 3:
            continue
        point = fields[4].replace("\\040", " ")
        if extra[0] == "cgroup":
            for option in extra[2].split(","):
                if option in V1_CONTROLLERS + (V1_DEVICES,) and option not in v1:
                    v1[option] = point
        elif extra[0] == "cgroup2":
            v2.append(point)
    if all(c in v1 for c in V1_CONTROLLERS):
        return "v1", v1
    # a unified hierarchy that is the host's cgroup tree (not the empty one of a hybrid)
    for point in v2:
        if os.path.exists(os.path.join(point, "cgroup.subtree_control")) and (
            {"cpuset", "memory"} & set(_read(os.path.join(point, "cgroup.controllers")).split())
        ):
            return "v2", {"": point}
    return None


def _writable(points: list[str]) -> bool:
    return os.geteuid() == 0 and all(os.access(p, os.W_OK) for p in points)


def manager_for(
    mode: str,
    user: str,
    job_id: int,
    cpus: list[int],
    files: JobFiles,
    exclude: set[int] | None = None,
    base: str = DEFAULT_BASE,
    hierarchy: tuple[str, dict[str, str]] | None = None,
    devices: bool = False,
) -> JobResourceManager:
    """The manager of a job on this node, chosen once.

    ``mode`` ``none``, or a job without cpus and without ``devices`` to deny:
    :class:`ProcessGroupManager`.  ``auto``: a cgroup manager when the host has writable cgroups (root, cpuset/memory/freezer of v1
    or a unified v2 hierarchy with its controllers), else :class:`ProcessGroupManager`.
    ``cgroup``: a cgroup manager or :class:`CgroupError`.  ``hierarchy`` overrides
    :func:`detect` (``("v1", mounts)`` or ``("v2", {"": mount})``)."""
    if mode not in MODES:
        raise CgroupError(f"unknown job resource manager {mode!r} (one of {', '.join(MODES)})")
    if mode == "none" or (not cpus and not devices and mode == "auto"):
        return ProcessGroupManager(files, exclude)
    found = hierarchy or detect()
    if found is None or not _writable(list(found[1].values())):
        if mode == "cgroup":
            raise CgroupError("this node has no writable cgroup hierarchy (cpuset, memory, freezer)"
                              + ("" if os.geteuid() == 0 else ": oarexec does not run as root"))
        return ProcessGroupManager(files, exclude)
    name = cgroup_name(user, job_id)
    if found[0] == "v1":
        return CgroupV1Manager.for_job(found[1], base, name, devices)
    return CgroupV2Manager.for_job(found[1][""], base, name)


def manager_file(files: JobFiles) -> str:
    return os.path.join(files.runtime_dir, f"job_{files.job_id}.manager")


def write_manager_file(files: JobFiles, manager: JobResourceManager, extra: dict[str, Any]) -> str:
    """Write ``job_<jobid>.manager``: the manager's description and ``extra`` (the suspend
    and resume scripts); returns its path."""
    path = manager_file(files)
    content = json.dumps({"manager": manager.describe(), **extra})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    return path


def read_manager_file(files: JobFiles) -> dict[str, Any] | None:
    try:
        with open(manager_file(files), encoding="utf-8") as stream:
            data = json.load(stream)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _from_description(described: dict[str, Any]) -> JobResourceManager | None:
    kind = described.get("kind")
    if kind == "cgroup_v1" and isinstance(described.get("paths"), dict):
        return CgroupV1Manager({str(k): str(v) for k, v in described["paths"].items()})
    if kind == "cgroup_v2" and isinstance(described.get("path"), str):
        return CgroupV2Manager(described["path"], described.get("mount"))
    return None


def _find_job_cgroups(job_id: int, base: str) -> JobResourceManager | None:
    """A cgroup ``<base>/*_<jobid>`` left on this node without runtime files."""
    found = detect()
    if found is None or not base.startswith("/"):
        return None
    suffix = f"_{int(job_id)}"
    kind, mounts = found
    paths = {}
    for controller, mount in mounts.items():
        parent = os.path.join(mount, base.strip("/"))
        try:
            names = [n for n in os.listdir(parent) if n.endswith(suffix)
                     and os.path.isdir(os.path.join(parent, n))]
        except OSError:
            continue
        if len(names) == 1:  # two users' jobs cannot share an id: more is not ours to guess
            paths[controller] = os.path.join(parent, names[0])
    if not paths:
        return None
    if kind == "v1":
        return CgroupV1Manager(paths)
    return CgroupV2Manager(paths[""], mounts[""])


def manager_from_files(files: JobFiles, exclude: set[int] | None = None,
                       base: str = DEFAULT_BASE) -> JobResourceManager:
    """The manager oarexec chose for the job (``job_<jobid>.manager``); without that file,
    a cgroup ``<base>/*_<jobid>`` of this node, else the process group and session."""
    data = read_manager_file(files)
    described = data.get("manager") if data else None
    manager = _from_description(described) if isinstance(described, dict) else None
    if manager is None and data is None and os.geteuid() == 0:
        manager = _find_job_cgroups(files.job_id, base)
    return manager or ProcessGroupManager(files, exclude)
