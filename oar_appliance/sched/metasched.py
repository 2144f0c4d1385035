"""The metascheduler adapter: one scheduling round on the database (layer 4).

:func:`run_round` loads what the pure core (:mod:`oar_appliance.sched.core`) needs with a
few batched queries (one per table, never one per job), calls
:func:`~oar_appliance.sched.core.schedule_round`, and writes the decisions back in one
transaction:

- ``gantt_jobs_predictions`` / ``gantt_jobs_resources`` (and their ``_visu`` copies) are
  replaced by the round's placements, the kept slots of accepted reservations, and the
  reference date (``moldable_job_id`` 0 = ``now``);
- ``jobs.message``: OAR's ``R=<resources>,W=<h:m:s>,J=<B|I>,Q=<queue>`` for a placed job,
  the reason for a job that cannot be placed;
- jobs placed at ``now``: ``toLaunch`` with their ``start_time``,
  ``assigned_moldable_job``, ``assigned_resources`` rows and a ``job_state_logs`` interval;
- new advance reservations: ``toSchedule`` -> ``Scheduled`` when placed, ``Error`` (with
  the reason and a state log) when rejected;
- besteffort jobs still holding resources that a job placed at ``now`` needs: a kill
  request for Leon (:func:`oar_appliance.resources.request_kill`) and a
  ``BESTEFFORT_KILL`` event, once per job (not again while it is being killed); the job
  that needs their resources is not launched in this round: it stays ``Waiting`` with its
  prediction and starts in a round where they are gone (as OAR does, so that it never
  runs on top of them).

What is loaded (REFERENCE.md, "Scheduling semantics"):

- resources in ``SCHEDULER_RESOURCE_ORDER`` (``"col ASC, col DESC, ..."``; every column
  is checked against the live columns, ``resource_id`` breaks ties); usable for new
  placements: ``Alive``, or ``Absent`` with ``available_upto > now``, and not draining;
  labels: the ``HIERARCHY_LABELS`` that are columns;
- occupations: jobs in toLaunch, Launching, Running, Suspended, Resuming, Finishing on
  their CURRENT ``assigned_resources``, from ``start_time`` to ``start_time + walltime +
  SCHEDULER_JOB_SECURITY_TIME`` (walltime of ``assigned_moldable_job``; besteffort from
  ``job_types``); accepted reservations (``Scheduled``, still ``Waiting``) keep the slot of
  their Gantt prediction, and are launched when their start has come;
- waiting jobs: ``Waiting`` (not Hold), reservation ``None`` or ``toSchedule``, in an
  ``Active`` queue, ordered by queue priority (highest first) then job id; a job's
  ``properties`` apply to each of its groups (AND), and a group asks for
  ``type = 'default'`` unless its expressions name ``type`` (as
  :func:`oar_appliance.submission.check_resources` does at submission; mirrored here,
  with per-job error handling);
- dependencies (CURRENT ``job_dependencies``): a required job running or with a slot ->
  no start before its end (start + walltime; ``now + 1`` for a job still active past its
  walltime, as it has not ended yet); waiting and placed in this round -> the
  same, from its placement; ``Terminated`` with exit code 0 or NULL -> nothing;
  ``Terminated`` with another exit code -> the job is not scheduled (message
  ``dependency on job N which ended with exit code X``); ``Error`` or unknown -> ignored
  (OAR 2 behaviour); anything else (Hold, not placed...) -> not scheduled this round.

Dependencies on jobs waiting in the same round are resolved by the core when the required
job comes first in the placement order (``WaitingJob.after``): the dependent job keeps its
place in the order, starts after the required job's predicted end, and no job queued
after it can take its slot.  A job whose required job (or container) comes after it in
the placement order (a queue of higher priority, a reservation depending on a batch job)
is left to a later *wave*: the core runs again, with the placements so far as
occupations, on those jobs.

A bug in one job's stored data (broken resource rows, a bad expression) gives that job a
message and never stops the round.

Policies (:class:`~oar_appliance.sched.policies.RoundOptions` and the job attributes):

- ``-t`` types of every loaded job: ``timesharing[=user|*,name|*]`` (key with the job's
  user and name), ``placeholder=NAME``, ``allow=NAME``, ``container[=NAME]``,
  ``inner=ID|NAME`` (a name designates the unfinished container job of that name, the
  job's own user's first, lowest id); a waiting inner job whose container is not loaded
  (unknown, held, ended) gets a message; one whose container waits in the same round is
  placed after it (inner jobs come last in the placement order);
- resources: ``available_upto`` strictly between 0 and 2^31 - 1 is a horizon;
  ``SCHEDULER_RESOURCES_ALWAYS_ASSIGNED_TYPE`` and
  ``SCHEDULER_AVAILABLE_SUSPENDED_RESOURCE_TYPE`` select resources by their ``type``;
  ``SCHEDULER_GANTT_HOLE_MINIMUM_TIME`` is the minimum backfilling hole;
- ``SCHEDULER_TIMEOUT`` (seconds, 0: no limit) bounds the placement of jobs, all waves
  together; the round then writes what it decided and the summary says it stopped;
- accepted reservations whose start has come (:mod:`~oar_appliance.sched.reservations`):
  launched on all their resources when they are usable (Alive, or Absent with a future
  ``available_upto``) and not held by a running job; otherwise they wait
  ``RESERVATION_WAITING_RESOURCES_TIMEOUT`` (message, slot kept), then start on what is
  left (event ``SCHEDULER_REDUCE_NB_NODES_FOR_RESERVATION``), or go to ``Error`` when
  nothing is left (event ``RESERVATION_NO_RESOURCE``) or when their start passed by more
  than their walltime (event ``RESERVATION_EXPIRED``); besteffort jobs on the
  resources of a reservation starting now are killed as for any job, and the reservation
  waits for them to be gone (slot kept, message).

Fairsharing, quotas, energy saving (:mod:`~oar_appliance.sched.round_extras` loads what
they need): jobs of fairsharing queues are ordered by karma within their priority level;
with ``QUOTAS`` (or in a queue with a quotas policy) the core gets a
:class:`~oar_appliance.sched.quotas.Quotas` counting the running jobs and the accepted
reservations (as they are after the due ones' decisions); a job placed at ``now`` on a
resource that is not ``Alive`` is not launched (it keeps its slot), nor is a due
reservation (it waits, slot kept, until its resources are up or it expires); and the
report lists the nodes to wake up and to halt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import peewee

from .. import resources as resource_service
from ..db import bulk, resource_table
from ..db.connection import backend_for, quote_identifier
from ..db.models import EventLog
from ..errors import ConfigError
from ..lang.request import from_storage
from . import energy, round_extras
from .core import (TIMEOUT_MESSAGE, Occupation, Placement, RoundResult, WaitingJob,
                   placement_order, schedule_round)
from .hierarchy import ResourcePool
from .metasched_policies import (besteffort_first, conf_value, occupation, read_policies,
                                 reservations_due, resolve_inner, round_options)
from .policies import RoundOptions
from .reservations import EXPIRED, LAUNCH, REDUCE, WAIT, ReservationStart
from .sharing import JobPolicy

log = logging.getLogger(__name__)

__all__ = ["RoundReport", "run_round", "resource_order_sql", "job_message"]

#: states whose jobs hold their assigned resources
ACTIVE_STATES = ("toLaunch", "Launching", "Running", "Suspended", "Resuming", "Finishing")
KILL_REASON = "besteffort job killed for a normal job"
MESSAGE_MAX = 255
WAKE_UP_MESSAGE = "reservation waiting: some of its resources are not Alive yet (nodes waking up)"


@dataclass
class RoundReport:
    """What one round decided."""

    now: int
    #: placed jobs (to launch now or planned later), in placement order
    placed: list[int] = field(default_factory=list)
    to_launch: list[int] = field(default_factory=list)
    planned: list[int] = field(default_factory=list)
    #: job id -> why it was not scheduled (rejected reservations included)
    messages: dict[int, str] = field(default_factory=dict)
    rejected_reservations: list[int] = field(default_factory=list)
    accepted_reservations: list[int] = field(default_factory=list)
    besteffort_kills: list[int] = field(default_factory=list)
    #: the round stopped at SCHEDULER_TIMEOUT
    timed_out: bool = False
    #: energy saving: network addresses of the nodes to wake up / to halt (the server
    #: runs SCHEDULER_NODE_MANAGER_WAKE_UP_CMD / _SLEEP_CMD with them)
    nodes_to_wake: list[str] = field(default_factory=list)
    nodes_to_halt: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"Scheduled {len(self.placed)} jobs: {len(self.to_launch)} to launch, "
                f"{len(self.planned)} planned, {len(self.messages)} not schedulable, "
                f"{len(self.besteffort_kills)} besteffort kills.")
        if self.timed_out:
            text += " Stopped at SCHEDULER_TIMEOUT."
        return text


# ------------------------------------------------------------------------------ helpers

def resource_order_sql(order: str, columns: Mapping[str, str]) -> tuple[str, list[str]]:
    """``"cpu ASC, core DESC"`` -> an ORDER BY of quoted identifiers, and its columns.

    Every column must exist; ``resource_id`` is appended as the last key when missing.
    """
    parts, names = [], []
    for item in (order or "").split(","):
        words = item.split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
            raise ConfigError(f"SCHEDULER_RESOURCE_ORDER: cannot read {item.strip()!r} "
                              "(use 'column ASC, column DESC, ...')")
        name = words[0]
        if name not in columns:
            raise ConfigError(f"SCHEDULER_RESOURCE_ORDER: {name!r} is not a column of the resources")
        parts.append(f"{quote_identifier(name)} {words[1].upper() if len(words) == 2 else 'ASC'}")
        names.append(name)
    if "resource_id" not in names:
        parts.append('"resource_id" ASC')
        names.append("resource_id")
    return ", ".join(parts), names


def _hms(seconds: int) -> str:
    seconds = int(seconds or 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60}:{seconds % 60}"


def job_message(count: int, walltime: int, job_type: str, queue: str) -> str:
    """OAR's message of a placed job: ``R=8,W=2:0:0,J=B,Q=default``."""
    letter = "I" if job_type == "INTERACTIVE" else "B"
    return f"R={count},W={_hms(walltime)},J={letter},Q={queue}"


def _rows(db: peewee.Database, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    return db.execute_sql(sql, list(params)).fetchall()


class _Constraints:
    """Bits of the resources each (job properties, group constraint) pair may use.

    Mirrors :func:`oar_appliance.submission.check_resources`: the job's properties AND the
    group's constraint, plus ``type = 'default'`` unless one of them names ``type``.
    Each distinct text is parsed and checked once per round; each distinct pair is
    evaluated once.
    """

    def __init__(self, pool: ResourcePool, columns: Mapping[str, str]) -> None:
        self.pool = pool
        self.columns = columns
        self.parsed: dict[str, Any] = {}
        self.bits: dict[tuple[str | None, str | None], int] = {}
        self.text_bits: dict[str, int] = {}
        self.default_type: int | None = None

    def _parse(self, text: str):
        found = self.parsed.get(text)
        if found is None:
            from ..lang import properties as language

            try:
                tree = language.parse(text)
                language.validate(tree, self.columns, what="property")
                found = (language.columns_of(tree), language.compile_predicate(tree, self.columns), None)
            except Exception as exc:                    # a bad stored expression
                message = getattr(exc, "message", None) or str(exc)
                found = (frozenset(), None, f"invalid expression {text!r}: {message}")
            self.parsed[text] = found
        if found[2] is not None:
            raise ValueError(found[2])
        return found

    def needed_columns(self, texts) -> set[str]:
        needed: set[str] = set()
        for text in texts:
            try:
                needed |= set(self._parse(text)[0])
            except ValueError:
                pass
        return needed

    def _text_bits(self, text: str) -> int:
        bits = self.text_bits.get(text)
        if bits is None:
            used, predicate, _ = self._parse(text)
            bits = self.text_bits[text] = self.pool.bits_where_columns(used, predicate)
        return bits

    def of(self, properties: str | None, text: str | None) -> int:
        key = (properties or None, text or None)
        bits = self.bits.get(key)
        if bits is None:
            # AND of the expressions = AND of their bits: each text is evaluated once
            texts = [t for t in key if t]
            bits = self.pool.all_bits
            for t in texts:
                bits &= self._text_bits(t)
            if not any("type" in self._parse(t)[0] for t in texts):
                if self.default_type is None:
                    self.default_type = self.pool.bits_where_columns(
                        ("type",), lambda r: r["type"] == "default")
                bits &= self.default_type
            self.bits[key] = bits
        return bits


@dataclass
class _Job:
    job_id: int
    state: str
    reservation: str
    queue: str
    properties: str | None
    start_time: int
    assigned_moldable: int
    job_type: str
    exit_code: int | None
    message: str
    moldables: list[tuple[int, int]] = field(default_factory=list)   # (moldable_id, walltime)
    types: list[str] = field(default_factory=list)
    user: str | None = None
    name: str | None = None
    #: the attributes of its -t types (set by _load; None until then or when malformed)
    policy: JobPolicy | None = None
    #: the container job id of an inner job, once resolved
    container_id: int | None = None

    @property
    def besteffort(self) -> bool:
        return self.queue == "besteffort" or "besteffort" in self.types


# ------------------------------------------------------------------------------ loading

@dataclass
class _Loaded:
    pool: ResourcePool
    usable: int
    ids_by_position: list[int]
    occupations: list[Occupation]
    waiting: list[_Job]
    jobs: dict[int, _Job]
    requests: dict[int, list[tuple[int, Any]]]            # job -> [(moldable_id, request)]
    broken: dict[int, str]                                 # job -> message
    constraints: _Constraints
    dependencies: dict[int, list[int]]                     # job -> required ids
    required: dict[int, _Job]                              # required jobs outside `jobs`
    kept_reservations: list[tuple[_Job, int, int, list[int]]]  # job, moldable, start, rids
    queue_rank: dict[str, int]
    options: RoundOptions = field(default_factory=RoundOptions)
    #: resources a due reservation may start on (state only: Alive, or Absent to wake up)
    startable: int = 0

    @property
    def kept_by_job(self) -> dict[int, tuple]:
        found = self.__dict__.get("_kept_by_job")
        if found is None:
            found = self.__dict__["_kept_by_job"] = {k[0].job_id: k for k in self.kept_reservations}
        return found


def _load(db: peewee.Database, config: Mapping[str, Any], now: int) -> _Loaded:
    security = int(config.get("SCHEDULER_JOB_SECURITY_TIME", 0) or 0)
    columns = resource_table.columns(db)
    order_sql, order_columns = resource_order_sql(config.get("SCHEDULER_RESOURCE_ORDER",
                                                             "resource_id ASC"), columns)
    labels = [label for label in config.get("HIERARCHY_LABELS", ()) if label in columns]

    queues = _rows(db, 'SELECT "queue_name", "priority", "state" FROM "queues"')
    active_queues = {q for q, _, s in queues if s == "Active"}
    priority = {q: p or 0 for q, p, _ in queues}

    # jobs: the active ones and the waiting ones (one query)
    states = ACTIVE_STATES + ("Waiting",)
    job_cols = ('"job_id", "state", "reservation", "queue_name", "properties", "start_time", '
                '"assigned_moldable_job", "job_type", "exit_code", "message", "job_user", "job_name"')
    jobs: dict[int, _Job] = {}
    for row in _rows(db, f'SELECT {job_cols} FROM "jobs" WHERE "state" IN ({bulk.placeholders(db, len(states))})',
                     states):
        jobs[row[0]] = _Job(row[0], row[1], row[2] or "None", row[3] or "", row[4] or None,
                            row[5] or 0, row[6] or 0, row[7] or "PASSIVE", row[8], row[9] or "",
                            user=row[10], name=row[11])
    state_filter = f'j."state" IN ({bulk.placeholders(db, len(states))})'

    for job_id, moldable_id, walltime in _rows(
            db, 'SELECT m."moldable_job_id", m."moldable_id", m."moldable_walltime" '
                'FROM "moldable_job_descriptions" m JOIN "jobs" j ON j."job_id" = m."moldable_job_id" '
                f'WHERE {state_filter} ORDER BY m."moldable_id"', states):
        job = jobs.get(job_id)
        if job is not None:
            job.moldables.append((moldable_id, walltime or 0))
    for job_id, job_type in _rows(
            db, 'SELECT t."job_id", t."type" FROM "job_types" t JOIN "jobs" j ON j."job_id" = t."job_id" '
                f'WHERE t."type_index" = \'CURRENT\' AND {state_filter}', states):
        job = jobs.get(job_id)
        if job is not None:
            job.types.append(job_type)

    # the waiting jobs to schedule, in priority order
    waiting = [j for j in jobs.values()
               if j.state == "Waiting" and j.reservation in ("None", "toSchedule")
               and j.queue in active_queues]
    waiting.sort(key=lambda j: (-priority.get(j.queue, 0), j.job_id))
    waiting_ids = {j.job_id for j in waiting}

    # their resource groups and levels (one query each)
    groups: dict[int, list[tuple[int, str | None]]] = {}
    for group_id, moldable_id, constraint in _rows(
            db, 'SELECT g."res_group_id", g."res_group_moldable_id", g."res_group_property" '
                'FROM "job_resource_groups" g '
                'JOIN "moldable_job_descriptions" m ON m."moldable_id" = g."res_group_moldable_id" '
                'JOIN "jobs" j ON j."job_id" = m."moldable_job_id" '
                'WHERE j."state" = \'Waiting\' ORDER BY g."res_group_id"'):
        groups.setdefault(moldable_id, []).append((group_id, constraint))
    levels: dict[int, list[tuple[str, int, int]]] = {}
    for group_id, label, value, order in _rows(
            db, 'SELECT d."res_job_group_id", d."res_job_resource_type", d."res_job_value", '
                'd."res_job_order" FROM "job_resource_descriptions" d '
                'JOIN "job_resource_groups" g ON g."res_group_id" = d."res_job_group_id" '
                'JOIN "moldable_job_descriptions" m ON m."moldable_id" = g."res_group_moldable_id" '
                'JOIN "jobs" j ON j."job_id" = m."moldable_job_id" '
                'WHERE j."state" = \'Waiting\''):
        levels.setdefault(group_id, []).append((label, value, order))

    requests: dict[int, list[tuple[int, Any]]] = {}
    broken: dict[int, str] = {}
    read_policies(jobs, waiting_ids, broken)
    resolve_inner(jobs, waiting_ids, broken)
    for job in waiting:
        try:
            built = []
            for moldable_id, walltime in job.moldables:
                built.append((moldable_id, from_storage(walltime, [
                    (constraint, levels.get(group_id, []))
                    for group_id, constraint in groups.get(moldable_id, [])])))
            requests[job.job_id] = built
        except Exception as exc:
            broken[job.job_id] = "error: " + (getattr(exc, "message", None) or str(exc))

    # dependencies of the waiting jobs, with the required jobs not loaded yet
    dependencies: dict[int, list[int]] = {}
    required: dict[int, _Job] = {}
    for job_id, req_id, r_state, r_exit, r_start, r_moldable, r_walltime in _rows(
            db, 'SELECT d."job_id", d."job_id_required", r."state", r."exit_code", r."start_time", '
                'r."assigned_moldable_job", m."moldable_walltime" FROM "job_dependencies" d '
                'JOIN "jobs" j ON j."job_id" = d."job_id" '
                'LEFT JOIN "jobs" r ON r."job_id" = d."job_id_required" '
                'LEFT JOIN "moldable_job_descriptions" m ON m."moldable_id" = r."assigned_moldable_job" '
                'WHERE d."job_dependency_index" = \'CURRENT\' AND j."state" = \'Waiting\''):
        if job_id not in waiting_ids:
            continue
        dependencies.setdefault(job_id, []).append(req_id)
        if r_state is not None and req_id not in jobs:
            done = _Job(req_id, r_state, "None", "", None, r_start or 0, r_moldable or 0,
                        "PASSIVE", r_exit, "")
            done.moldables = [(r_moldable, r_walltime or 0)] if r_moldable else []
            required[req_id] = done

    # expressions: parse once, to know which resource columns are needed
    texts = {j.properties for j in waiting if j.properties}
    for job in waiting:
        for moldable_id, _ in job.moldables:
            texts |= {c for _, c in groups.get(moldable_id, []) if c and c.strip()}
    texts = {t.strip() for t in texts if t and t.strip()}

    probe = _Constraints(ResourcePool([], labels), columns)
    needed = {"resource_id", "state", "type", "available_upto", "drain", *labels, *order_columns}
    needed |= probe.needed_columns(texts)
    rows = resource_table.select(db, order_by=order_sql, only=[c for c in columns if c in needed])
    pool = ResourcePool(rows, labels)
    constraints = _Constraints(pool, columns)
    constraints.parsed = probe.parsed
    ids_by_position = [r["resource_id"] for r in rows]
    startable = pool.bits_where(lambda r: r["state"] == "Alive" or (
        r["state"] == "Absent" and (r["available_upto"] or 0) > now))
    usable = startable & pool.bits_where(lambda r: r.get("drain") != "YES")
    options = round_options(config, pool, usable, now)

    # occupations: running jobs on their assigned resources
    assigned: dict[int, list[int]] = {}
    for job_id, resource_id in _rows(
            db, 'SELECT j."job_id", a."resource_id" FROM "assigned_resources" a '
                'JOIN "jobs" j ON j."assigned_moldable_job" = a."moldable_job_id" '
                f'WHERE a."assigned_resource_index" = \'CURRENT\' '
                f'AND j."state" IN ({bulk.placeholders(db, len(ACTIVE_STATES))})', ACTIVE_STATES):
        assigned.setdefault(job_id, []).append(resource_id)
    occupations: list[Occupation] = []
    for job_id, rids in assigned.items():
        job = jobs.get(job_id)
        if job is None:
            continue
        walltime = dict(job.moldables).get(job.assigned_moldable, 0)
        occupations.append(occupation(job, job.start_time, job.start_time + walltime + security,
                                       pool.bits_of_ids(rids)))

    # accepted reservations keep their slot (their Gantt prediction)
    kept: dict[int, tuple[int, int]] = {}
    for job_id, moldable_id, start in _rows(
            db, 'SELECT j."job_id", p."moldable_job_id", p."start_time" FROM "gantt_jobs_predictions" p '
                'JOIN "moldable_job_descriptions" m ON m."moldable_id" = p."moldable_job_id" '
                'JOIN "jobs" j ON j."job_id" = m."moldable_job_id" '
                'WHERE j."state" = \'Waiting\' AND j."reservation" = \'Scheduled\''):
        kept[job_id] = (moldable_id, start)
    kept_rids: dict[int, list[int]] = {}
    for moldable_id, resource_id in _rows(
            db, 'SELECT r."moldable_job_id", r."resource_id" FROM "gantt_jobs_resources" r '
                'JOIN "moldable_job_descriptions" m ON m."moldable_id" = r."moldable_job_id" '
                'JOIN "jobs" j ON j."job_id" = m."moldable_job_id" '
                'WHERE j."state" = \'Waiting\' AND j."reservation" = \'Scheduled\''):
        kept_rids.setdefault(moldable_id, []).append(resource_id)
    kept_reservations = []
    for job_id, (moldable_id, start) in sorted(kept.items()):
        job = jobs[job_id]
        rids = kept_rids.get(moldable_id, [])
        walltime = dict(job.moldables).get(moldable_id, 0)
        kept_reservations.append((job, moldable_id, start, rids))
        occupations.append(occupation(job, start, start + walltime + security,
                                       pool.bits_of_ids(rids), reservation=True))

    return _Loaded(pool, usable, ids_by_position, occupations, waiting, jobs, requests, broken,
                   constraints, dependencies, required, kept_reservations,
                   {q: p for q, p in priority.items()}, options, startable)


# ------------------------------------------------------------------------------ the round

def _dependency_start(job: _Job, loaded: _Loaded, placed: dict[int, Placement],
                      unresolved: set[int], now: int
                      ) -> tuple[str, int | str, tuple[int, ...]]:
    """('ok', earliest start, required jobs of this round not placed yet) |
    ('blocked', message, ())."""
    earliest = 0
    after: list[int] = []
    kept = loaded.kept_by_job
    for req_id in loaded.dependencies.get(job.job_id, ()):
        req = loaded.jobs.get(req_id) or loaded.required.get(req_id)
        if req is None or req.state == "Error":
            continue                                    # unknown or Error: ignored (OAR 2)
        if req.state == "Terminated":
            if req.exit_code not in (None, 0):
                return ("blocked", f"dependency on job {req_id} which ended with exit code "
                        f"{req.exit_code}", ())
            continue
        if req.state in ACTIVE_STATES:
            walltime = dict(req.moldables).get(req.assigned_moldable, 0)
            end = req.start_time + walltime
            if end <= now:
                # still active past its walltime: it has not ended yet, its end is
                # unknown (the Gantt, likewise, keeps it busy until now + 1)
                end = now + 1
            earliest = max(earliest, end)
            continue
        if req_id in kept:
            _, moldable_id, start, _ = kept[req_id]
            earliest = max(earliest, start + dict(req.moldables).get(moldable_id, 0))
            continue
        if req_id in placed:
            earliest = max(earliest, placed[req_id].end)
            continue
        if req_id in unresolved:
            after.append(req_id)
            continue
        return "blocked", f"dependency on job {req_id} which is {req.state} and not scheduled", ()
    return "ok", earliest, tuple(after)


def _schedule(loaded: _Loaded, now: int, security: int, quotas=None) -> RoundResult:
    """Run the core, in waves for dependencies on jobs of the same round."""
    pool, usable = loaded.pool, loaded.usable
    result = RoundResult()
    result.messages.update(loaded.broken)
    candidates = [j for j in loaded.waiting if j.job_id not in loaded.broken]
    placed: dict[int, Placement] = {}
    occupations = list(loaded.occupations)
    running_besteffort = {o.job_id for o in loaded.occupations if o.besteffort}
    kills: set[int] = set()
    constraints = loaded.constraints
    pending = candidates
    while pending:
        unresolved = {j.job_id for j in pending}
        built = []
        for job in pending:
            status, value, after = _dependency_start(job, loaded, placed, unresolved, now)
            if status == "blocked":
                result.messages[job.job_id] = value
                continue
            props = job.properties.strip() if job.properties else None
            policy = job.policy or JobPolicy()
            built.append(WaitingJob(
                job.job_id, tuple(loaded.requests[job.job_id]),
                constraints=(lambda text, p=props: constraints.of(p, text)),
                earliest_start=value, besteffort=job.besteffort,
                reservation=job.start_time if job.reservation == "toSchedule" else None,
                timesharing=policy.timesharing, placeholder=policy.placeholder,
                allow=policy.allow, container=policy.container is not None,
                inner=job.container_id, after=after))
        # in placement order, a job joins the wave when the jobs of this round it waits
        # for (required jobs, its container) are in it before it: the core places it
        # after them, in its place in the order; the others wait for a later wave
        wave, in_wave = [], set()
        for wj in placement_order(built):
            container = loaded.jobs[wj.job_id].container_id
            if (all(r in in_wave for r in wj.after)
                    and (container is None or container not in unresolved
                         or container in in_wave)):
                wave.append(wj)
                in_wave.add(wj.job_id)
        later = [j for j in pending if j.job_id in unresolved - in_wave
                 and j.job_id not in result.messages]
        if not wave:
            for job in later:
                result.messages[job.job_id] = "dependency cycle: its required jobs wait for it"
            break
        part = schedule_round(pool, usable, occupations, wave, now, security,
                              options=loaded.options, quotas=quotas)
        result.messages.update(part.messages)
        result.to_launch.extend(part.to_launch)
        kills.update(k for k in part.besteffort_to_kill if k in running_besteffort)
        for p in part.placements:
            result.placements.append(p)
            placed[p.job_id] = p
            job = loaded.jobs[p.job_id]
            occupations.append(occupation(job, p.start, p.start + p.walltime + security,
                                           p.bits, reservation=job.reservation != "None"))
        if part.timed_out:
            result.timed_out = True
            for job in later:
                result.messages[job.job_id] = TIMEOUT_MESSAGE
            break
        # a job waiting on one that could not be placed is blocked in the next wave
        pending = later
    result.besteffort_to_kill = sorted(kills)
    return result


def run_round(db: peewee.Database, config: Mapping[str, Any], now: int) -> RoundReport:
    """One scheduling round: load, schedule, write atomically; see the module docstring."""
    security = int(config.get("SCHEDULER_JOB_SECURITY_TIME", 0) or 0)
    policies = round_extras.queue_policies(db)
    quota_queues = round_extras.quota_queues(config, policies)
    quota_rules = round_extras.load_quota_rules(config, quota_queues)   # bad file: no work
    loaded = _load(db, config, now)
    due = reservations_due(loaded, now, int(conf_value(config, "RESERVATION_WAITING_RESOURCES_TIMEOUT") or 0))
    owners = None
    quotas = None
    if quota_rules is not None:
        # counted: the running jobs and the accepted reservations, as the due ones' decisions
        # left them (an expired one no longer counts, a reduced one on what it keeps)
        # (always-assigned resources are in no request: they count for no quota)
        owners = round_extras.job_owners(db, ACTIVE_STATES + ("Waiting",))
        always = loaded.options.always_assigned
        counted = ([replace(o, bits=o.bits & ~always) for o in loaded.occupations] if always
                   else loaded.occupations)
        quotas = round_extras.build_quotas(quota_rules, loaded.jobs, owners, counted, now,
                                           quota_queues)
    # fairsharing queues: their jobs by karma within each priority level
    loaded.waiting = round_extras.karma_ordered(db, config, loaded.waiting,
                                                loaded.queue_rank, now, policies=policies,
                                                owners=owners)
    result = _schedule(loaded, now, security, quotas)
    report = RoundReport(now=now)
    due = _energy(db, config, loaded, result, now, security, report, due)
    due = besteffort_first(loaded, due, result, _being_killed(db))
    _write(db, loaded, result, now, report, due)
    return report


def _being_killed(db: peewee.Database) -> set[int]:
    """The active jobs already asked to end (a ``frag_jobs`` row)."""
    return {j for (j,) in _rows(
        db, 'SELECT f."frag_id_job" FROM "frag_jobs" f JOIN "jobs" j ON j."job_id" = f."frag_id_job" '
            f'WHERE j."state" IN ({bulk.placeholders(db, len(ACTIVE_STATES))})', ACTIVE_STATES)}


def _energy(db: peewee.Database, config: Mapping[str, Any], loaded: _Loaded,
            result: RoundResult, now: int, security: int, report: RoundReport,
            due: Mapping[int, ReservationStart]) -> dict[int, ReservationStart]:
    """Keep jobs off non-Alive resources (they start once those are up) and fill the
    report's energy saving decisions (:mod:`oar_appliance.sched.energy`).

    A job placed at ``now`` on a resource that is not ``Alive`` is not launched (it keeps
    its slot); a due reservation to start on one waits (slot kept, message) as it does
    for missing resources.  Returns ``due`` with those reservations turned to waiting.
    """
    pool = loaded.pool
    alive = pool.bits_where(lambda r: r["state"] == "Alive")
    launching = set(result.to_launch)
    blocked = set(energy.launch_blocked(
        [(p.job_id, p.bits) for p in result.placements if p.job_id in launching], alive))
    if blocked:
        result.to_launch = [j for j in result.to_launch if j not in blocked]
    starting = [(j, d.bits) for j, d in due.items() if d.action in (LAUNCH, REDUCE)]
    held = set(energy.launch_blocked(starting, alive))
    if held:
        due = dict(due)
        for job_id in held:
            due[job_id] = ReservationStart(WAIT, 0, WAKE_UP_MESSAGE)
    params = energy.params_from_config(config)
    if not (params.wake or params.halt):
        return due
    kept = []
    for job, _, start, rids in loaded.kept_reservations:
        decision = due.get(job.job_id)
        if decision is None or decision.action == WAIT:
            kept.append((start, pool.bits_of_ids(rids)))
        elif decision.action in (LAUNCH, REDUCE):
            kept.append((start, decision.bits))
    planned = [(p.start, p.bits) for p in result.placements] + kept
    busy = [(o.start, o.end if o.end > now else now + 1, o.bits) for o in loaded.occupations]
    busy += [(p.start, p.start + p.walltime + security, p.bits) for p in result.placements]
    report.nodes_to_wake, report.nodes_to_halt = round_extras.energy_decisions(
        db, params, pool, planned, busy, now)
    return due


# ------------------------------------------------------------------------------ writing

def _write(db: peewee.Database, loaded: _Loaded, result: RoundResult, now: int,
           report: RoundReport, due: Mapping[int, ReservationStart] | None = None) -> None:
    jobs, pool = loaded.jobs, loaded.pool
    ph = backend_for(db).placeholder

    def rids_of(bits: int) -> list[int]:
        return pool.ids_of(bits) if bits else []

    predictions: list[tuple[int, int]] = [(0, now)]
    gantt_resources: list[tuple[int, int]] = []
    messages: list[tuple[str, int]] = []
    launch: list[tuple[int, int, list[int]]] = []          # job, moldable, resource ids
    to_launch = set(result.to_launch)
    accepted: list[int] = []

    due = due or {}
    events: list[dict] = []
    errors: list[tuple[int, str]] = []                 # due reservations going to Error
    for job, moldable_id, start, rids in loaded.kept_reservations:
        decision = due.get(job.job_id)
        if decision is None:
            predictions.append((moldable_id, start))
            gantt_resources.extend((moldable_id, r) for r in rids)
            continue
        action = decision.action
        if action in (LAUNCH, REDUCE):
            launch.append((job.job_id, moldable_id, rids_of(decision.bits)))
            report.to_launch.append(job.job_id)
            if action == REDUCE:
                events.append({"type": "SCHEDULER_REDUCE_NB_NODES_FOR_RESERVATION",
                               "job_id": job.job_id, "date": now,
                               "description": decision.message[:MESSAGE_MAX], "to_check": "NO"})
                messages.append((decision.message[:MESSAGE_MAX], job.job_id))
        elif action == WAIT:
            predictions.append((moldable_id, start))
            gantt_resources.extend((moldable_id, r) for r in rids)
            report.messages[job.job_id] = decision.message
            if decision.message != job.message:
                messages.append((decision.message[:MESSAGE_MAX], job.job_id))
        else:
            kind = "RESERVATION_EXPIRED" if action == EXPIRED else "RESERVATION_NO_RESOURCE"
            errors.append((job.job_id, decision.message[:MESSAGE_MAX]))
            report.messages[job.job_id] = decision.message
            events.append({"type": kind, "job_id": job.job_id, "date": now,
                           "description": decision.message[:MESSAGE_MAX], "to_check": "NO"})

    rids_by_moldable: dict[int, list[int]] = {}
    for p in result.placements:
        job = jobs[p.job_id]
        rids = rids_by_moldable[p.moldable_id] = rids_of(p.bits)
        report.placed.append(p.job_id)
        predictions.append((p.moldable_id, p.start))
        text = job_message(len(rids), p.walltime, job.job_type, job.queue)
        if text != job.message:
            messages.append((text, p.job_id))
        if job.reservation == "toSchedule":
            accepted.append(p.job_id)
        if p.job_id in to_launch:
            launch.append((p.job_id, p.moldable_id, rids))
            report.to_launch.append(p.job_id)
        else:
            report.planned.append(p.job_id)

    # in key order: the primary key's index (and the _visu copy) is then filled in order
    for mid in sorted(rids_by_moldable):
        gantt_resources.extend([(mid, r) for r in rids_by_moldable[mid]])

    rejected: list[tuple[int, str]] = []
    for job_id, text in result.messages.items():
        text = (text or "not scheduled")[:MESSAGE_MAX]
        report.messages[job_id] = text
        job = jobs.get(job_id)
        if job is not None and job.reservation == "toSchedule":
            rejected.append((job_id, text))
        elif job is None or text != job.message:
            messages.append((text, job_id))
    report.rejected_reservations = [j for j, _ in rejected]
    report.timed_out = result.timed_out
    report.accepted_reservations = accepted
    report.besteffort_kills = list(result.besteffort_to_kill)

    with db.atomic():
        # the _visu copies are filled from the tables in SQL (no second trip of the rows)
        for table, columns, rows in (
                ("gantt_jobs_predictions", '"moldable_job_id", "start_time"', predictions),
                ("gantt_jobs_resources", '"moldable_job_id", "resource_id"', gantt_resources)):
            db.execute_sql(f'DELETE FROM "{table}"')
            db.execute_sql(f'DELETE FROM "{table}_visu"')
            if rows:
                _insert_pairs(db, table, columns, rows)
            db.execute_sql(f'INSERT INTO "{table}_visu" ({columns}) SELECT {columns} FROM "{table}"')
        if messages:
            db.cursor().executemany(
                f'UPDATE "jobs" SET "message" = {ph} WHERE "job_id" = {ph}', messages)
        if accepted:
            bulk.update_by_ids(db, "jobs", "job_id", accepted, {"reservation": "Scheduled"})
        rejected += errors
        if rejected:
            db.cursor().executemany(
                f'UPDATE "jobs" SET "state" = \'Error\', "message" = {ph} '
                f'WHERE "job_id" = {ph} AND "state" = \'Waiting\'', [(t, j) for j, t in rejected])
            _log_states(db, [j for j, _ in rejected], "Error", now)
        if events:
            EventLog.insert_many(events).execute()
        if launch:
            db.cursor().executemany(
                f'UPDATE "jobs" SET "state" = \'toLaunch\', "start_time" = {ph}, '
                f'"assigned_moldable_job" = {ph} WHERE "job_id" = {ph} AND "state" = \'Waiting\'',
                [(now, moldable_id, job_id) for job_id, moldable_id, _ in launch])
            bulk.insert_rows(db, "assigned_resources", [
                {"moldable_job_id": moldable_id, "resource_id": r}
                for _, moldable_id, rids in launch for r in rids])
            _log_states(db, [job_id for job_id, _, _ in launch], "toLaunch", now)
        if result.besteffort_to_kill:
            resource_service.request_kill(db, result.besteffort_to_kill, now, reason=KILL_REASON)
            EventLog.insert_many([
                {"type": "BESTEFFORT_KILL", "job_id": j, "date": now,
                 "description": KILL_REASON, "to_check": "NO"}
                for j in result.besteffort_to_kill]).execute()


def _insert_pairs(db: peewee.Database, table: str, columns: str,
                  rows: list[tuple[int, int]]) -> None:
    """Insert rows of two integers: COPY on PostgreSQL (one stream for the whole table,
    the gantt_jobs_resources of a big round are hundreds of thousands of rows), one
    executemany elsewhere."""
    backend = backend_for(db)
    if backend.dialect == "postgresql":
        with db.cursor().copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        return
    ph = backend.placeholder
    db.cursor().executemany(f'INSERT INTO "{table}" ({columns}) VALUES ({ph}, {ph})', rows)


def _log_states(db: peewee.Database, job_ids: Sequence[int], state: str, now: int) -> None:
    """Close the open state interval of each job and open one in ``state``."""
    step = bulk.MAX_PARAMETERS - 1
    ph = backend_for(db).placeholder
    for start in range(0, len(job_ids), step):
        where, params = bulk.ids_clause(db, "job_id", job_ids[start:start + step])
        db.execute_sql(f'UPDATE "job_state_logs" SET "date_stop" = {ph} '
                       f'WHERE "date_stop" = 0 AND {where}', [now] + params)
    bulk.insert_rows(db, "job_state_logs", [
        {"job_id": j, "job_state": state, "date_start": now, "date_stop": 0} for j in job_ids])
