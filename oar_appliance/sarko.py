"""Sarko: the server's periodic watch over running jobs, kills and suspected resources.

``oar-server`` calls :func:`run` every 30 seconds (and may call it at any other time: every
decision is taken from the database and taken once).  One call:

1. **Walltime.**  A Running job whose time is up -- ``start_time + walltime + the time it
   spent Suspended or Resuming`` reached -- gets a kill request for Leon (``frag_jobs``
   ``LEON`` and a ``FRAG_JOB_REQUEST`` event, as :func:`resources.request_kill` records
   them) and a ``WALLTIME`` event.  A job that already has a kill request is left alone.
2. **Checkpoint.**  A Running batch job submitted with ``--checkpoint DELAY`` gets, once,
   ``DELAY`` seconds before its walltime, a ``CHECKPOINT`` event with ``to_check = 'YES'``:
   the same request ``oardel -c`` records (:func:`job_control.request_checkpoint`), which
   the server carries out (the job's ``checkpoint_signal`` sent on its head node) and
   closes with ``CHECKPOINT_SUCCESS`` or ``CHECKPOINT_ERROR``.  Sarko's own requests are
   told apart by the start of their description (:data:`CHECKPOINT_DESCRIPTION_PREFIX`),
   so that a user's earlier ``oardel -c`` does not stop the automatic one.
3. **Stuck kills.**  A kill armed by Leon (``TIMER_ARMED``) for ``JOBDEL_WALLTIME``
   seconds (counted from ``frag_date``) without the job ending goes to
   ``LEON_EXTERMINATE``: Leon then ends the job in the database and suspects its nodes.
4. **Desktop computing.**  An Alive ``desktop_computing`` resource whose ``expiry_date``
   (set by the node's agent each time it reports) is past becomes Suspected at once; its
   jobs get a kill request.
5. **Dead switch.**  A resource Suspected for ``DEAD_SWITCH_TIME`` seconds (0: never),
   counted from the start of its current ``state`` interval in ``resource_logs``, becomes
   Dead at once, with its log interval.  Resources with a pending state request
   (``next_state``) are left to NodeChangeState.

Each part runs in a transaction of its own, so a failure in one does not undo the others;
the :class:`SarkoReport` says what was done, for the server to wake Leon and log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import peewee

from . import resources
from .db import resource_table
from .db.connection import backend_for
from .db.models import EventLog, FragJob, Job, JobStateLog, MoldableJobDescription, ResourceLog

log = logging.getLogger(__name__)

WALLTIME = "WALLTIME"
CHECKPOINT = "CHECKPOINT"
#: how Sarko's checkpoint requests start their description (users' requests do not)
CHECKPOINT_DESCRIPTION_PREFIX = "Sarko:"
#: at most this many ids in one ``IN (...)`` (well under SQLite's parameter limit)
CHUNK = 5000


@dataclass
class SarkoReport:
    """What one round of Sarko did."""

    #: jobs given a kill request because their walltime is reached
    walltime_kills: list[int] = field(default_factory=list)
    #: jobs given an automatic checkpoint request (``CHECKPOINT`` event, to_check YES)
    checkpoints: list[int] = field(default_factory=list)
    #: jobs whose armed kill timed out: ``frag_jobs`` now ``LEON_EXTERMINATE``
    exterminations: list[int] = field(default_factory=list)
    #: desktop computing resources whose expiry date passed, now Suspected
    expired_resources: list[int] = field(default_factory=list)
    #: jobs killed because a resource of theirs expired
    expired_jobs: list[int] = field(default_factory=list)
    #: resources switched from Suspected to Dead
    dead_resources: list[int] = field(default_factory=list)
    #: their hosts (``network_address``), sorted
    dead_hosts: list[str] = field(default_factory=list)
    #: parts that failed (their transaction was rolled back), as "part: error" texts
    errors: list[str] = field(default_factory=list)

    @property
    def leon_needed(self) -> bool:
        """Leon has work: new kill requests or exterminations."""
        return bool(self.walltime_kills or self.exterminations or self.expired_jobs)

    @property
    def anything(self) -> bool:
        return bool(self.walltime_kills or self.checkpoints or self.exterminations or self.expired_resources
                    or self.dead_resources)


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# ----------------------------------------------------------------------------- running jobs

@dataclass(frozen=True)
class RunningJob:
    """What Sarko needs of a Running job."""

    job_id: int
    start_time: int
    walltime: int
    #: seconds spent Suspended or Resuming up to now
    suspended: int
    checkpoint: int
    interactive: bool

    @property
    def deadline(self) -> int:
        """When the job's walltime is reached."""
        return self.start_time + self.walltime + self.suspended


def suspended_durations(job_ids: Sequence[int], now: int) -> dict[int, int]:
    """Job id -> seconds spent Suspended or Resuming (an open interval counts up to ``now``).

    The batched form of :func:`job_control.suspended_duration`: one query per chunk of jobs.
    """
    result: dict[int, int] = {}
    for chunk in _chunks(list(job_ids)):
        rows = (JobStateLog.select(JobStateLog.job_id, JobStateLog.date_start, JobStateLog.date_stop)
                .where(JobStateLog.job_id.in_(list(chunk))
                       & JobStateLog.job_state.in_(["Suspended", "Resuming"]))
                .tuples())
        for job_id, start, stop in rows:
            result[job_id] = result.get(job_id, 0) + max(0, (stop or now) - start)
    return result


def running_jobs(now: int) -> list[RunningJob]:
    """Every Running job with its current walltime and suspended time (two queries)."""
    rows = list(
        Job.select(Job.job_id, Job.start_time, MoldableJobDescription.moldable_walltime,
                   Job.checkpoint, Job.job_type)
        .join(MoldableJobDescription, on=(MoldableJobDescription.moldable_id == Job.assigned_moldable_job))
        .where(Job.state == "Running")
        .order_by(Job.job_id)
        .tuples()
    )
    suspended = suspended_durations([r[0] for r in rows], now)
    return [RunningJob(job_id, int(start or 0), int(walltime or 0), suspended.get(job_id, 0),
                       int(checkpoint or 0), job_type == "INTERACTIVE")
            for job_id, start, walltime, checkpoint, job_type in rows]


def _with_kill_request(job_ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(list(job_ids)):
        found.update(j for (j,) in FragJob.select(FragJob.frag_id_job)
                     .where(FragJob.frag_id_job.in_(list(chunk))).tuples())
    return found


def _with_sarko_checkpoint(job_ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(list(job_ids)):
        found.update(j for (j,) in EventLog.select(EventLog.job_id)
                     .where((EventLog.type == CHECKPOINT) & EventLog.job_id.in_(list(chunk))
                            & EventLog.description.startswith(CHECKPOINT_DESCRIPTION_PREFIX))
                     .tuples())
    return found


def check_walltimes(db: peewee.Database, now: int) -> tuple[list[int], list[int]]:
    """Kill requests for the jobs past their walltime, checkpoint requests before it;
    returns the ids of the jobs given each."""
    kills: list[int] = []
    checkpoints: list[int] = []
    jobs = running_jobs(now)
    expired = [j for j in jobs if now >= j.deadline]
    due = [j for j in jobs if j.checkpoint > 0 and not j.interactive
           and j.deadline - j.checkpoint <= now < j.deadline]
    if expired:
        already = _with_kill_request([j.job_id for j in expired])
        fresh = [j for j in expired if j.job_id not in already]
        if fresh:
            resources.request_kill(db, [j.job_id for j in fresh], now,
                                   reason="Sarko: walltime reached, the job is killed")
            EventLog.insert_many([
                {"type": WALLTIME, "job_id": j.job_id, "date": now, "to_check": "NO",
                 "description": (f"Sarko: job {j.job_id} reached its walltime ({j.walltime} s from "
                                 f"{j.start_time}, {j.suspended} s suspended): killed")[:255]}
                for j in fresh
            ]).execute()
            kills = [j.job_id for j in fresh]
    if due:
        done = _with_sarko_checkpoint([j.job_id for j in due]) | _with_kill_request([j.job_id for j in due])
        fresh = [j for j in due if j.job_id not in done]
        if fresh:
            EventLog.insert_many([
                {"type": CHECKPOINT, "job_id": j.job_id, "date": now, "to_check": "YES",
                 "description": (f"{CHECKPOINT_DESCRIPTION_PREFIX} checkpoint of the job {j.job_id}, "
                                 f"{j.deadline - now} s before its walltime")[:255]}
                for j in fresh
            ]).execute()
            checkpoints = [j.job_id for j in fresh]
    return kills, checkpoints


# ----------------------------------------------------------------------------- stuck kills

def check_stuck_kills(db: peewee.Database, now: int, jobdel_walltime: int) -> list[int]:
    """``TIMER_ARMED`` kills older than ``JOBDEL_WALLTIME`` -> ``LEON_EXTERMINATE``."""
    stuck = [job_id for (job_id,) in
             FragJob.select(FragJob.frag_id_job)
             .join(Job, on=(Job.job_id == FragJob.frag_id_job))
             .where((FragJob.frag_state == "TIMER_ARMED")
                    & (FragJob.frag_date + jobdel_walltime <= now)
                    & Job.state.not_in(["Terminated", "Error"]))
             .order_by(FragJob.frag_id_job)
             .tuples()]
    for chunk in _chunks(stuck):
        (FragJob.update(frag_state="LEON_EXTERMINATE")
         .where(FragJob.frag_id_job.in_(list(chunk)) & (FragJob.frag_state == "TIMER_ARMED"))
         .execute())
    return stuck


# ----------------------------------------------------------------------------- desktop computing

def check_desktop_expiry(db: peewee.Database, now: int) -> tuple[list[int], list[int]]:
    """Alive desktop computing resources past their ``expiry_date`` -> Suspected; returns
    (those resources, the jobs given a kill request)."""
    expired = [r["resource_id"] for r in resource_table.select(
        db, "\"desktop_computing\" = 'YES' AND \"state\" = 'Alive' AND \"next_state\" = 'UnChanged' "
            f"AND \"expiry_date\" > 0 AND \"expiry_date\" < {backend_for(db).placeholder}",
        [now], only=["resource_id"])]
    if not expired:
        return [], []
    jobs = resources.set_states(db, expired, "Suspected", now,
                                reason="Sarko: a desktop computing node of the job expired")
    return expired, jobs


# ----------------------------------------------------------------------------- dead switch

def suspected_since(db: peewee.Database) -> dict[int, tuple[int, str]]:
    """Resource id -> (when it became Suspected, network_address), for the Suspected
    resources without a pending state request and with a known start of that state."""
    rows = resource_table.select(
        db, "\"state\" = 'Suspected' AND \"next_state\" = 'UnChanged'",
        only=["resource_id", "network_address"])
    hosts = {r["resource_id"]: r["network_address"] for r in rows}
    since: dict[int, tuple[int, str]] = {}
    for chunk in _chunks(sorted(hosts)):
        query = (ResourceLog.select(ResourceLog.resource_id, peewee.fn.MAX(ResourceLog.date_start))
                 .where(ResourceLog.resource_id.in_(list(chunk)) & (ResourceLog.attribute == "state")
                        & (ResourceLog.date_stop == 0) & (ResourceLog.value == "Suspected"))
                 .group_by(ResourceLog.resource_id)
                 .tuples())
        for rid, start in query:
            since[rid] = (int(start), hosts[rid])
    unknown = sorted(set(hosts) - set(since))
    if unknown:
        log.warning("sarko: Suspected resources without a state log, left as they are: %s", unknown[:20])
    return since


def check_dead_switch(db: peewee.Database, now: int, dead_switch_time: int) -> dict[int, str]:
    """Suspected resources for ``DEAD_SWITCH_TIME`` seconds become Dead (0: never);
    returns resource id -> host of those switched."""
    if dead_switch_time <= 0:
        return {}
    due = {rid: host for rid, (start, host) in suspected_since(db).items() if start + dead_switch_time <= now}
    if due:
        resources.set_states(db, sorted(due), "Dead", now,
                             reason=f"Sarko: resources Suspected for {dead_switch_time} s became Dead")
    return due


# ----------------------------------------------------------------------------- the round

def run(db: peewee.Database, config: Mapping[str, Any], now: int) -> SarkoReport:
    """One round of Sarko at time ``now`` (see the module's documentation).

    Never raises for a failed part: its transaction is rolled back, the error is logged
    and listed in ``report.errors``, and the other parts still run.
    """
    report = SarkoReport()

    def walltime() -> None:
        report.walltime_kills, report.checkpoints = check_walltimes(db, now)

    def stuck_kills() -> None:
        report.exterminations = check_stuck_kills(db, now, int(config["JOBDEL_WALLTIME"]))

    def desktop_expiry() -> None:
        report.expired_resources, report.expired_jobs = check_desktop_expiry(db, now)

    def dead_switch() -> None:
        dead = check_dead_switch(db, now, int(config["DEAD_SWITCH_TIME"]))
        report.dead_resources, report.dead_hosts = sorted(dead), sorted(set(dead.values()))

    parts = (("walltime", walltime, ("walltime_kills", "checkpoints")),
             ("stuck kills", stuck_kills, ("exterminations",)),
             ("desktop expiry", desktop_expiry, ("expired_resources", "expired_jobs")),
             ("dead switch", dead_switch, ("dead_resources", "dead_hosts")))
    for name, part, fields in parts:
        try:
            with db.atomic():
                part()
        except Exception as exc:  # one bad part must not stop the server's other duties
            log.exception("sarko: %s failed", name)
            for name_of_field in fields:  # rolled back: nothing of it was done
                setattr(report, name_of_field, [])
            report.errors.append(f"{name}: {type(exc).__name__}: {exc}")
    if report.anything:
        log.info("sarko: walltime kills %s, checkpoints %s, exterminations %s, expired resources %s, "
                 "dead resources %s", report.walltime_kills, report.checkpoints, report.exterminations,
                 report.expired_resources, report.dead_resources)
    return report


__all__ = ["run", "SarkoReport", "RunningJob", "running_jobs", "suspended_durations",
           "check_walltimes", "check_stuck_kills", "check_desktop_expiry", "check_dead_switch", "suspected_since",
           "WALLTIME", "CHECKPOINT", "CHECKPOINT_DESCRIPTION_PREFIX"]
