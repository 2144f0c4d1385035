"""The policies of a metascheduler round on the database side (layer 4).

Helpers of :mod:`oar_appliance.sched.metasched` that turn what it loaded into the inputs
of the core's policies, and act on due reservations:

- :func:`read_policies` / :func:`resolve_inner`: each job's ``-t`` attributes
  (:func:`~oar_appliance.sched.sharing.job_policy`), and the container of each inner job;
- :func:`occupation`: an :class:`~oar_appliance.sched.core.Occupation` carrying them;
- :func:`round_options`: :class:`~oar_appliance.sched.policies.RoundOptions` from
  ``oar.conf`` and the resources (types, ``available_upto``), with the round's deadline;
- :func:`reservations_due`: what each accepted reservation whose start has come does
  (:mod:`~oar_appliance.sched.reservations`);
- :func:`besteffort_first`: besteffort jobs in the way of a job starting now are killed,
  and that job waits for them to be gone.

The jobs are the metascheduler's loaded records (``job_id``, ``state``, ``types``,
``user``, ``name``, ``policy``, ``container_id``, ...).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .. import resources as resource_service
from ..conf import KEYS
from .core import Occupation, RoundResult
from .hierarchy import ResourcePool
from .policies import RoundOptions
from .reservations import LAUNCH, REDUCE, WAIT, ReservationStart, reservation_at_start
from .sharing import JobPolicy, job_policy

__all__ = ["read_policies", "resolve_inner", "occupation", "round_options", "conf_value",
           "reservations_due", "besteffort_first"]

#: the clock of SCHEDULER_TIMEOUT (read through the module, so that a test can replace it)
_clock = time.monotonic


def read_policies(jobs: Mapping[int, Any], waiting_ids: set[int], broken: dict[int, str]) -> None:
    """Each job's -t attributes; a malformed one is a message for a waiting job (a running
    one is taken as exclusive)."""
    for job in jobs.values():
        try:
            job.policy = job_policy(job.types, job.user, job.name)
        except ValueError as exc:
            job.policy = JobPolicy(besteffort=job.besteffort)
            if job.job_id in waiting_ids:
                broken[job.job_id] = f"error: {exc}"


def resolve_inner(jobs: Mapping[int, Any], waiting_ids: set[int], broken: dict[int, str]) -> None:
    """``inner=ID`` or ``inner=NAME`` (the unfinished container job of that name with the
    lowest id, the job's own user's first) -> ``container_id``, for the waiting jobs and
    for the running ones (which hold their part of the container); a waiting job whose
    container is unknown gets a message: it is not scheduled, the round goes on."""
    by_name: dict[str, list[Any]] = {}
    for job in jobs.values():
        if job.policy is not None and job.policy.container:
            by_name.setdefault(job.policy.container, []).append(job)
    for job in jobs.values():
        value = job.policy.inner if job.policy is not None else None
        if value is None or job.job_id in broken:
            continue
        if value.isdigit():
            container = jobs.get(int(value))
            if container is not None and container.policy is not None \
                    and container.policy.container is not None:
                job.container_id = container.job_id
            elif job.job_id in waiting_ids:
                broken[job.job_id] = (f"container job {value} is not a running or waiting "
                                      "container (unknown, held, ended or not a container): "
                                      "the inner job cannot be scheduled")
            continue
        found = sorted(by_name.get(value, ()), key=lambda c: (c.user != job.user, c.job_id))
        if found:
            job.container_id = found[0].job_id
        elif job.job_id in waiting_ids:
            broken[job.job_id] = (f"no unfinished container job named {value!r}: the inner job "
                                  "cannot be scheduled")


def occupation(job: Any, start: int, end: int, bits: int, reservation: bool = False) -> Occupation:
    """An Occupation with the -t attributes of job."""
    policy = job.policy or JobPolicy()
    return Occupation(job.job_id, start, end, bits,
                      besteffort=job.besteffort and not reservation,
                      timesharing=policy.timesharing, placeholder=policy.placeholder,
                      suspended=job.state == "Suspended",
                      container=policy.container is not None, inner=job.container_id)


def round_options(config: Mapping[str, Any], pool: ResourcePool, usable: int, now: int) -> RoundOptions:
    """The policies of oar.conf and of the resources' ``available_upto``."""
    always_types = set(conf_value(config, "SCHEDULER_RESOURCES_ALWAYS_ASSIGNED_TYPE") or ())
    suspended_types = set(conf_value(config, "SCHEDULER_AVAILABLE_SUSPENDED_RESOURCE_TYPE") or ())
    always = pool.bits_where(lambda r: r["type"] in always_types) & usable if always_types else 0
    suspended = pool.bits_where(lambda r: r["type"] in suspended_types) if suspended_types else 0
    # available_upto: 0 (never set) and the maximum (2^31 - 1) mean no end
    dates: dict[int, list[int]] = {}
    for row in pool.rows:
        upto = row.get("available_upto") or 0
        if 0 < upto < resource_service.MAX_AVAILABLE_UPTO:
            dates.setdefault(upto, []).append(row["resource_id"])
    horizons = tuple((date, pool.bits_of_ids(ids)) for date, ids in sorted(dates.items()))
    timeout = int(conf_value(config, "SCHEDULER_TIMEOUT") or 0)
    deadline = _clock() + timeout if timeout > 0 else None
    return RoundOptions(hole_minimum=int(conf_value(config, "SCHEDULER_GANTT_HOLE_MINIMUM_TIME") or 0),
                        always_assigned=always, suspended_shareable=suspended,
                        horizons=horizons, deadline=deadline, clock=_clock)


def conf_value(config: Mapping[str, Any], key: str) -> Any:
    """A key of oar.conf, with its documented default when the mapping lacks it."""
    if key in config:
        return config[key]
    return KEYS[key][1]


def reservations_due(loaded: Any, now: int, waiting_timeout: int) -> dict[int, ReservationStart]:
    """The decision for each accepted reservation whose start has come (see
    :mod:`oar_appliance.sched.reservations`); the occupations of those that will not start
    now on all their resources are adjusted before the round."""
    pool = loaded.pool
    due_jobs = [k for k in loaded.kept_reservations if k[2] <= now]
    if not due_jobs:
        return {}
    kept = loaded.kept_by_job
    busy = 0                # held now by running (non-besteffort) jobs, overdue ones included
    for occ in loaded.occupations:
        if occ.job_id not in kept and not occ.besteffort:
            busy |= occ.bits
    available = loaded.startable & ~busy
    decisions: dict[int, ReservationStart] = {}
    for job, moldable_id, start, rids in due_jobs:
        walltime = dict(job.moldables).get(moldable_id, 0)
        decisions[job.job_id] = reservation_at_start(start, walltime, now, pool.bits_of_ids(rids),
                                                     available, waiting_timeout)
    occupations = []
    for occ in loaded.occupations:
        decision = decisions.get(occ.job_id)
        if decision is None or decision.action in (LAUNCH, WAIT):
            occupations.append(occ)
        elif decision.action == REDUCE:
            occupations.append(replace(occ, bits=decision.bits))
    loaded.occupations = occupations
    return decisions


def besteffort_first(loaded: Any, due: Mapping[int, ReservationStart], result: RoundResult,
                     being_killed: set[int]) -> dict[int, ReservationStart]:
    """Besteffort jobs still holding resources that a job starting now needs are killed,
    and that job starts only once they are gone (a later round), as OAR does.

    A job placed at ``now`` on resources of a besteffort job still present (running, or
    being killed) is taken out of ``result.to_launch``: it stays Waiting with its
    placement as prediction.  A due reservation on such resources waits (slot kept,
    message).  ``result.besteffort_to_kill`` gets the besteffort jobs in the way, less
    those in ``being_killed`` (already asked to end: asked once only).  Returns ``due``
    with the held reservations turned to waiting.
    """
    always = loaded.options.always_assigned
    present = [(o.job_id, o.bits & ~always) for o in loaded.occupations if o.besteffort]
    kills = set(result.besteffort_to_kill)

    def in_the_way(bits: int) -> set[int]:
        return {job_id for job_id, held in present if held & bits}

    launching = set(result.to_launch)
    held: set[int] = set()
    for p in result.placements:
        if p.job_id in launching:
            found = in_the_way(p.bits & ~always)
            if found:
                held.add(p.job_id)
                kills |= found
    if held:
        result.to_launch = [j for j in result.to_launch if j not in held]
    due = dict(due)
    for job_id, decision in due.items():
        if decision.action in (LAUNCH, REDUCE):
            found = in_the_way(decision.bits & ~always)
            if found:
                kills |= found
                due[job_id] = ReservationStart(WAIT, 0, BESTEFFORT_WAIT_MESSAGE)
    result.besteffort_to_kill = sorted(kills - being_killed)
    return due


BESTEFFORT_WAIT_MESSAGE = ("reservation waiting: besteffort jobs still hold some of its "
                           "resources (they are being killed)")
