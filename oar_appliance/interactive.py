"""Shells inside jobs: ``oarsub -I`` once its job runs, and ``oarsub -C JOB_ID``.

The shell itself is started on the job's head node by
:mod:`oar_appliance.nodeside.oarsh_shell`, which reads the job's environment written there
by oarexec; this module decides *whether* a caller may have one (:func:`connectable_job`)
and *how* to reach the head node (:func:`shell_command`), from the ``OAR_CONNECTOR`` of
oar.conf: ``local`` runs it here as a child holding the terminal (the one-host lab);
``ssh`` connects to the head node's sshd as the OAR account, the way oarsh does
(:mod:`oar_appliance.oarsh`), naming the job and its user: the node's login program puts
the shell into the job's cgroup as the job's user.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Mapping

import peewee

from .db.models import AssignedResource, Job, Resource
from . import oarsh
from .errors import ConfigError, ConflictError, NotFoundError, PermissionDeniedError
from .nodeside.terminal import exit_status, signals_passed_to

#: connectors that can give a shell on a node
SHELL_CONNECTORS = ("local", "ssh")


@dataclass(frozen=True)
class JobShell:
    """Where the shell of a job runs: its id, its head node and the job's user."""

    job_id: int
    head_host: str
    user: str


def head_host(db: peewee.Database, job: Job) -> str | None:
    """The job's head node: the first, in sorted order, of its hosts (as oarexec's ``hosts``)."""
    row = (Resource.select(peewee.fn.MIN(Resource.network_address))
           .join(AssignedResource, on=(AssignedResource.resource_id == Resource.resource_id))
           .where((AssignedResource.moldable_job_id == job.assigned_moldable_job)
                  & (AssignedResource.assigned_resource_index == "CURRENT"))
           .scalar())
    return row or None


def connectable_job(db: peewee.Database, job_id: int, user: str, admin: bool) -> JobShell:
    """The job ``oarsub -C`` may enter: it exists, is the caller's (or the caller is an
    administrator) and is Running; otherwise a clear error."""
    job = Job.get_or_none(Job.job_id == job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    if job.job_user != user and not admin:
        raise PermissionDeniedError(f"job {job_id} is not yours (you are {user}): "
                                    "only its owner, oar or root may connect to it")
    if job.state != "Running":
        raise ConflictError(f"job {job_id} is not running ({job.state}): "
                            "only a running job can be connected to")
    host = head_host(db, job)
    if host is None:
        raise ConflictError(f"job {job_id} is running but has no resource assigned")
    return JobShell(job_id, host, job.job_user)


def shell_command(config: Mapping[str, Any], shell: JobShell, interactive: bool,
                  terminal: bool = True) -> list[str]:
    """The command that runs the job's shell on its head node through the connector.

    ``interactive``: the shell of the ``oarsub -I`` job itself, whose end ends the job;
    ``terminal``: oarsub has one (ssh then asks the node for one).
    """
    connector = str(config["OAR_CONNECTOR"]).strip().lower()
    if connector not in SHELL_CONNECTORS:
        raise ConfigError(f"OAR_CONNECTOR={connector}: shells inside jobs are only available with "
                          f"OAR_CONNECTOR={' or '.join(SHELL_CONNECTORS)} in this version")
    if connector == "ssh":
        return oarsh.job_shell_argv(config, shell.head_host, shell.job_id, shell.user, interactive, terminal)
    argv = [sys.executable, "-m", "oar_appliance.nodeside.oarsh_shell",
            "--runtime-dir", str(config["OAR_RUNTIME_DIRECTORY"]), str(shell.job_id)]
    if interactive:
        argv.insert(-1, "--interactive")
    return argv


def run_attached(argv: list[str]) -> int:
    """Run ``argv`` on this terminal and return its exit status (128 + N if killed by N).

    The terminal's SIGINT/SIGQUIT belong to the shell while it runs; SIGTERM and SIGHUP
    sent to this process are passed on to it.
    """
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        raise ConflictError(f"cannot start the job's shell: {exc.strerror}") from None

    with signals_passed_to(child):
        returncode = child.wait()
    return exit_status(returncode)


__all__ = ["JobShell", "SHELL_CONNECTORS", "connectable_job", "head_host", "run_attached", "shell_command"]
