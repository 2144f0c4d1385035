"""The one-host lab: its directory, its oar.conf, its database and its resources.

A lab is a directory (``~/.oar-lab`` by default) holding everything of a small OAR on
this host: ``oar.conf``, the SQLite database, the runtime directory of oarexec, the logs
and the server's pid file.  Its resources are this host's cores (those this process may
run on), with ``cpuset`` set to each core's processor number so that a job can be
confined to its cores.  ``oar-lab`` (:mod:`oar_appliance.cli.oar_lab`) drives it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import ConflictError, UsageError

CONF_NAME = "oar.conf"
#: what ``init --force`` removes before creating the lab again
DATABASE_FILES = ("oar.sqlite", "oar.sqlite-wal", "oar.sqlite-shm", "oar.sqlite-journal")


@dataclass(frozen=True)
class LabPaths:
    """The files of a lab in ``root``."""

    root: str
    #: True when ``root`` is the default directory (hints then omit ``--dir``)
    default: bool = False

    @property
    def conf(self) -> str:
        return os.path.join(self.root, CONF_NAME)

    @property
    def database(self) -> str:
        return os.path.join(self.root, "oar.sqlite")

    @property
    def runtime(self) -> str:
        return os.path.join(self.root, "run")

    @property
    def log(self) -> str:
        return os.path.join(self.root, "oar.log")

    @property
    def server_log(self) -> str:
        """stdout and stderr of oar-server (its own messages go to LOG_FILE)."""
        return os.path.join(self.root, "oar-server.log")

    @property
    def pid_file(self) -> str:
        return os.path.join(self.root, "oar-server.pid")

    def exists(self) -> bool:
        return os.path.exists(self.conf) or os.path.exists(self.database)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _quoted(path: str) -> str:
    """``path`` in single quotes for oar.conf (which must stay valid bash)."""
    if "'" in path or "\n" in path:
        raise UsageError(f"{path!r}: a path of the lab must not contain a quote or a newline")
    return f"'{path}'"


def conf_text(paths: LabPaths, port: int, host: str, user: str) -> str:
    """The oar.conf of a lab: SQLite, server on loopback, local connector, files in the lab."""
    root = paths.root
    if "'" in root or "\n" in root:
        raise UsageError(f"the lab directory {root!r} must not contain a quote or a newline")
    return "\n".join([
        f"# OAR lab of {user} on {host}, made by oar-lab init (oar-lab start | stop | status).",
        "# Every key and its default: the OAR documentation and oar_appliance/conf.py.",
        "DB_TYPE=sqlite",
        f"DB_BASE_FILE={_quoted(paths.database)}",
        "SERVER_HOSTNAME=127.0.0.1",
        f"SERVER_PORT={port}",
        "# jobs start as child processes of this host, not over ssh",
        "OAR_CONNECTOR=local",
        f"OAR_RUNTIME_DIRECTORY={_quoted(paths.runtime)}",
        f"LOG_FILE={_quoted(paths.log)}",
        "LOG_LEVEL=2",
        f"STAGEIN_DIR={_quoted(os.path.join(root, 'stagein'))}",
        f"STAGEOUT_DIR={_quoted(os.path.join(root, 'stageout'))}",
        "DEPLOY_HOSTNAME=127.0.0.1",
        "COSYSTEM_HOSTNAME=127.0.0.1",
        "# a job asks for one core unless -l says otherwise; one hour unless walltime= says otherwise",
        'OARSUB_DEFAULT_RESOURCES="/resource_id=1"',
        "DEFAULT_JOB_WALLTIME=3600",
        "# oardel kills at once in a lab (20 s and 300 s on a site)",
        "JOBDEL_SOFTWALLTIME=5",
        "JOBDEL_WALLTIME=30",
        "# jobs are not put in cgroups: a lab leaves the host's /oar cgroups alone (auto: confine",
        "# them when the lab runs as root; see JOB_RESOURCE_MANAGER_CGROUP_BASE)",
        "JOB_RESOURCE_MANAGER=none",
        "",
    ])


def host_cores(cpuinfo: str | None = None, allowed: Iterable[int] | None = None) -> list[tuple[int, int]]:
    """``(processor, package)`` of each core this process may use, in processor order.

    ``allowed`` defaults to the process's CPU affinity; the package (physical id) comes
    from ``/proc/cpuinfo`` when it says so, else 0.
    """
    allowed = sorted(os.sched_getaffinity(0) if allowed is None else allowed)
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    package_of: dict[int, int] = {}
    processor = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor" and value.isdigit():
            processor = int(value)
        elif key == "physical id" and value.isdigit() and processor is not None:
            package_of[processor] = int(value)
    return [(p, package_of.get(p, 0)) for p in allowed]


def resource_rows(host: str, cores: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """One resource per core: ``cpu`` numbered per package from 1, ``core`` from 1,
    ``cpuset`` the processor number."""
    packages = sorted({package for _, package in cores})
    return [{"network_address": host, "host": host, "cpu": packages.index(package) + 1,
             "core": index, "cpuset": processor}
            for index, (processor, package) in enumerate(cores, 1)]


def create(paths: LabPaths, host: str, user: str, now: int, port: int | None = None,
           force: bool = False, cores: list[tuple[int, int]] | None = None) -> dict[str, Any]:
    """Write the lab's oar.conf, create its database and register this host's cores.

    Refuses an existing lab unless ``force`` (its database is then removed).  Returns what
    was made: ``port``, ``resources`` (ids) and ``host``.
    """
    from . import resources
    from .conf import load_config
    from .db import connection, schema

    if paths.exists() and not force:
        raise ConflictError(f"a lab already exists in {paths.root} "
                            "(oar-lab init --force replaces it, losing its jobs)")
    text = conf_text(paths, 0, host, user)  # checks the directory's name before anything is made
    os.makedirs(paths.root, mode=0o755, exist_ok=True)
    for name in DATABASE_FILES:
        try:
            os.unlink(os.path.join(paths.root, name))
        except FileNotFoundError:
            pass
    for directory in (paths.runtime, os.path.join(paths.root, "stagein"), os.path.join(paths.root, "stageout")):
        os.makedirs(directory, mode=0o755, exist_ok=True)
    port = port or free_port()
    text = conf_text(paths, port, host, user)
    temporary = paths.conf + ".tmp"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, paths.conf)
    config = load_config(paths.conf, environ={})
    db = connection.connect(config.database_url(), create=True)
    try:
        schema.create(db)
        with db.atomic():
            ids = resources.add_resources(db, resource_rows(host, cores or host_cores()), now)
    finally:
        db.close()
    return {"port": port, "resources": ids, "host": host}


def job_counts(db) -> dict[str, int]:
    """Number of jobs in each state (one query)."""
    rows = db.execute_sql('SELECT "state", COUNT(*) FROM "jobs" GROUP BY "state"').fetchall()
    return {state: count for state, count in sorted(rows)}


def resource_counts(db) -> dict[str, int]:
    rows = db.execute_sql('SELECT "state", COUNT(*) FROM "resources" GROUP BY "state"').fetchall()
    return {state: count for state, count in sorted(rows)}


def describe_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{state} {count}" for state, count in counts.items()) or "none"


__all__ = ["LabPaths", "conf_text", "create", "describe_counts", "free_port", "host_cores",
           "job_counts", "resource_counts", "resource_rows"]
