"""Setting a node up for a job and cleaning it after, on every node of the job.

``jobctl prepare`` (:func:`prepare`) runs on each node before oarexec starts on the head
node: the job resource manager's ``init`` (the cgroup ``<base>/<user>_<jobid>`` with the
node's cpus of the job, memory in proportion to them, a freezer),
``job_<jobid>.manager`` in the runtime directory (and the job key, ``job_<jobid>.key.pub``,
for oarsh), so that ``jobctl suspend``, ``resume``,
``kill`` and ``clean`` find the job on a node where no oarexec runs.  oarexec then does the
same again on the head node (``init`` is idempotent).

``jobctl clean`` then calls :func:`remove_leftovers` once the job's processes are gone: the
job's own files (``job_<jobid>.*``, its keys included) and, when the user has no other job
on the node, what the user left in ``/tmp``, ``/dev/shm`` and System V IPC.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
from typing import Any

from oar_appliance.errors import OarError, UsageError
from oar_appliance.nodeside import cgroups
from oar_appliance.nodeside.runtime import JobFiles, parse_public_key, unsafe_runtime_dir

log = logging.getLogger(__name__)

__all__ = ["prepare", "remove_leftovers", "LEFTOVER_DIRS"]

#: where a user's files outlive their jobs (cleaned when the user has no job left)
LEFTOVER_DIRS = ("/tmp", "/dev/shm")
#: System V IPC tables: (file under /proc/sysvipc, ipcrm option)
IPC_TABLES = (("shm", "-m"), ("sem", "-s"), ("msg", "-q"))


class PrepareError(OarError):
    """The node could not be set up for the job (the server suspects the node)."""

    exit_code = 70


class UnknownUserError(OarError):
    """The job's user does not exist on this node (oarexec's code 7, USER_SHELL)."""

    exit_code = 7


def prepare(files: JobFiles, data: dict[str, Any], host: str) -> cgroups.JobResourceManager:
    """Set this node (named ``host`` in the job data) up for the job described by
    ``data`` (``user``, ``cpusets`` = {host: [cpus]}, ``devices`` and ``node_devices`` =
    {host: [device paths]} (the job's and all of the host's), ``job_resource_manager``,
    ``cgroup_base`` and the suspend/resume scripts)."""
    user = data.get("user")
    if not isinstance(user, str) or not user:
        raise UsageError("the job data has no user")
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise UnknownUserError(f"unknown user {user!r} on this node") from None
    cpusets = data.get("cpusets") or {}
    if not isinstance(cpusets, dict) or not all(isinstance(c, list) for c in cpusets.values()):
        raise UsageError("cpusets must map each host to a list of cpus")
    try:
        cpus = sorted({int(cpu) for cpu in cpusets.get(host, [])})
    except (TypeError, ValueError):
        raise UsageError(f"bad cpus for {host}: {cpusets.get(host)!r}") from None
    job_devices, node_devices = (_host_paths(data, key, host) for key in ("devices", "node_devices"))
    try:
        os.makedirs(files.runtime_dir, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise PrepareError(f"cannot create {files.runtime_dir}: {exc.strerror}") from None
    problem = unsafe_runtime_dir(files.runtime_dir)
    if problem:
        raise PrepareError(f"unsafe runtime directory: {problem}")
    try:
        denied = cgroups.device_rules(job_devices, node_devices)
        manager = cgroups.manager_for(str(data.get("job_resource_manager") or "auto"), user, files.job_id,
                                      cpus, files, base=str(data.get("cgroup_base") or cgroups.DEFAULT_BASE),
                                      devices=bool(denied))
        memory = None
        if cpus:
            memory = cgroups.memory_share(cgroups.node_memory(), len(cpus), len(cgroups.node_cpus()))
        manager.init(cpus, memory, denied)
    except (cgroups.CgroupError, OSError, ValueError) as exc:
        raise PrepareError(f"cannot set up the job's cgroup: {exc}") from None
    if data.get("job_key"):
        write_job_key(files, data["job_key"])
    timeout = data.get("suspend_resume_script_timeout")
    cgroups.write_manager_file(files, manager, {
        "just_after_suspend_exec_file": data.get("just_after_suspend_exec_file"),
        "just_before_resume_exec_file": data.get("just_before_resume_exec_file"),
        "suspend_resume_script_timeout": 60 if timeout is None else timeout,
        "user": user,
    })
    return manager


def _host_paths(data: dict[str, Any], key: str, host: str) -> list[str]:
    """``data[key][host]``: a list of device paths (none when absent)."""
    mapping = data.get(key) or {}
    paths = (mapping.get(host) or []) if isinstance(mapping, dict) else None
    if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
        raise UsageError(f"{key} must map each host to a list of absolute device paths")
    return paths


def write_job_key(files: JobFiles, text: Any) -> None:
    """``job_<jobid>.key.pub``: the node's sshd lets the holder of the job key (``oarsub
    -k``/``-i``) into the job (oarsh); ``clean`` removes it with the job's other files."""
    key = parse_public_key(text) if isinstance(text, str) else None
    if key is None:
        raise UsageError("the job data's job_key is not an ssh public key")
    fd = os.open(files.job_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, f"{key[0]} {key[1]}\n".encode())
    finally:
        os.close(fd)


def read_job_data(stream) -> dict[str, Any]:
    """The JSON object ``jobctl prepare`` reads on stdin."""
    try:
        data = json.loads(stream.read() or "null")
    except ValueError as exc:
        raise UsageError(f"bad job data: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError("the job data must be a JSON object")
    return data


def job_user(files: JobFiles, base: str) -> str | None:
    """The job's user on this node: from ``job_<jobid>.manager``, else from the name of a
    cgroup ``<base>/<user>_<jobid>`` left here."""
    data = cgroups.read_manager_file(files)
    if data and isinstance(data.get("user"), str):
        return data["user"]
    found = cgroups.manager_from_files(files, base=base)
    for path in (getattr(found, "paths", None) or {}).values():
        name = os.path.basename(path)
        suffix = f"_{files.job_id}"
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def other_jobs_of(user: str, files: JobFiles) -> list[int]:
    """The user's other jobs set up on this node (their ``job_<id>.manager`` files)."""
    others = []
    for path in glob.glob(os.path.join(files.runtime_dir, "job_*.manager")):
        number = os.path.basename(path)[len("job_"):-len(".manager")]
        if not number.isdigit() or int(number) == files.job_id:
            continue
        data = cgroups.read_manager_file(JobFiles(files.runtime_dir, int(number)))
        if data and data.get("user") == user:
            others.append(int(number))
    return sorted(others)


def remove_leftovers(files: JobFiles, user: str | None, dirs: tuple[str, ...] = LEFTOVER_DIRS) -> list[str]:
    """Remove the job's files (``job_<jobid>.*``, its keys included; not oarexec's debug
    log) and, when ``user`` has no other job here and is not root, the user's entries of
    ``dirs`` and System V IPC objects.  Returns what was removed."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(files.runtime_dir), f"job_{files.job_id}.*")) + [files.pid]:
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    if not user or other_jobs_of(user, files):
        return removed
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return removed
    if uid == 0:
        return removed
    for directory in dirs:
        try:
            entries = os.scandir(directory)
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if info.st_uid != uid:
                    continue
                try:
                    if stat.S_ISDIR(info.st_mode):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                    removed.append(entry.path)
                except OSError as exc:
                    log.warning("cannot remove %s: %s", entry.path, exc)
    for table, option in IPC_TABLES:
        for ident in _ipc_ids(table, uid):
            done = subprocess.run(["ipcrm", option, str(ident)], capture_output=True, timeout=10)
            if done.returncode == 0:
                removed.append(f"ipc {table} {ident}")
    return removed


def _ipc_ids(table: str, uid: int) -> list[int]:
    """Ids of the System V IPC objects of ``table`` owned by ``uid``."""
    try:
        with open(f"/proc/sysvipc/{table}", encoding="ascii") as stream:
            header, *lines = stream.read().splitlines()
    except (OSError, ValueError):
        return []
    names = header.split()
    ident = next((n for n in names if n in ("shmid", "semid", "msqid")), None)
    found = []
    for line in lines:
        row = dict(zip(names, line.split()))
        if ident and row.get("uid") == str(uid) and row.get(ident, "").isdigit():
            found.append(int(row[ident]))
    return found
