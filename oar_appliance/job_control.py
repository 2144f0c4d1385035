"""Job control: the rules behind ``oardel``, ``oarhold``, ``oarresume`` and ``oarwalltime``.

These commands do not act on jobs themselves: they **record a request** in the database
(each job's request in its own transaction) and wake the server up; the server carries the
request out.  A lost notification costs a delay, never a request.

Who may act
===========

Only the job's owner, ``oar`` or ``root`` (:data:`JOB_ADMINS`) may delete, checkpoint,
signal, hold, resume a job or change (or see) its walltime change status.  Anybody else
gets "job N is not yours" (:class:`~oar_appliance.errors.PermissionDeniedError`) before
anything about the job's state is looked at, so nothing else about another user's job is
revealed.  A few options are for administrators (``Caller.admin``: ``oar``, ``root``, and
in the lab mode the owner of the database, as for the admin commands): suspending a
running job (``oarhold -r``) and resuming a suspended one, unless
``USERS_ALLOWED_HOLD_RESUME`` is on; ``oarwalltime --force`` and ``--delay-next-jobs``.

What is recorded
================

========================  ===================================================  ==========
request                   rows written                                          to_check
========================  ===================================================  ==========
delete (any unfinished    ``frag_jobs`` (``LEON``) and a ``FRAG_JOB_REQUEST``   NO
job)                      event, through :func:`resources.request_kill`
checkpoint (Running)      event ``CHECKPOINT``                                  YES
signal (Running)          event ``USER_SIGNAL``, the signal's name in the       YES
                          description (:func:`requested_signal` reads it back)
hold (Waiting, Resuming)  event ``HOLD_WAITING_JOB``                            YES
hold -r (Running)         event ``HOLD_RUNNING_JOB`` (suspend)                  YES
resume (Hold, Suspended)  event ``RESUME_JOB``                                  YES
walltime change           ``walltime_change`` (``pending`` = the change in      NO
(Running)                 seconds, relative to the current walltime; a new
                          request replaces the pending one) and an event
                          ``WALLTIME_REQUEST``
========================  ===================================================  ==========

``to_check = 'YES'`` marks an event that *is* a request the server has not handled yet; the
server sets it to ``'NO'`` once it has (and records the outcome, e.g. ``CHECKPOINT_SUCCESS``
or ``CHECKPOINT_ERROR``).  ``'NO'`` events are history: their request is carried by another
table (``frag_jobs``, ``walltime_change``).

Refusals (each a one-line message and the exit code of its class): an unknown job (6), not
yours (8), an admin-only option (8), a finished job (7, "job 42 is already finished"), a job
already being deleted (7: a second ``oardel`` is an error, the other jobs of the call go on),
any other state the request does not apply to (7), a malformed signal or duration (2), a
refused ``--sql`` expression (5, before anything is written), walltime change disabled
(:class:`FeatureDisabledError`, 11).
"""

from __future__ import annotations

import logging
import re
import signal as signal_module
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import peewee

from . import resources
from .accounts import ADMIN_USERS
from .db.connection import backend_for
from .db.models import EventLog, FragJob, Job, JobStateLog, JobType, MoldableJobDescription, WalltimeChange
from .errors import (
    ConflictError,
    DatabaseError,
    FeatureDisabledError,
    NotFoundError,
    OarError,
    PermissionDeniedError,
    UsageError,
)

log = logging.getLogger(__name__)

#: accounts that may act on every job (DESIGN.md, "Identity and trust")
JOB_ADMINS = ADMIN_USERS

FINISHED_STATES = ("Terminated", "Error")
#: states of a job on its way out: too late to delete, hold or resume it
ENDING_STATES = ("Finishing", "toError")
HOLDABLE_STATES = ("Waiting", "Resuming")
#: job types that cannot be suspended (their processes are not in a job cgroup)
UNSUSPENDABLE_TYPES = ("cosystem", "deploy")

FRAG_JOB_REQUEST = "FRAG_JOB_REQUEST"
CHECKPOINT = "CHECKPOINT"
USER_SIGNAL = "USER_SIGNAL"
HOLD_WAITING_JOB = "HOLD_WAITING_JOB"
HOLD_RUNNING_JOB = "HOLD_RUNNING_JOB"
RESUME_JOB = "RESUME_JOB"
WALLTIME_REQUEST = "WALLTIME_REQUEST"


# ----------------------------------------------------------------------------- callers

@dataclass(frozen=True)
class Caller:
    """Who asks: the account name, and whether it may use the administrators' options."""

    name: str
    admin: bool = False

    @property
    def acts_for_everybody(self) -> bool:
        """``oar`` and ``root`` may act on every job."""
        return self.name in JOB_ADMINS

    @classmethod
    def of(cls, ctx: Any) -> "Caller":
        """The caller of a command's context (``ctx.user``; admin as ``ctx.require_admin``)."""
        try:
            ctx.require_admin()
            admin = True
        except PermissionDeniedError:
            admin = False
        return cls(ctx.user, admin or ctx.user in JOB_ADMINS)


@dataclass
class Outcome:
    """What became of one job's request: ``error`` is None when it was recorded."""

    job_id: int
    error: OarError | None = None
    result: Any = None


def first_exit_code(errors: Iterable[OarError | None]) -> int:
    """0 if there is no error, else the exit code of the first one."""
    for error in errors:
        if error is not None:
            return error.exit_code
    return 0


@dataclass
class Batch:
    """The requests of one command over several jobs."""

    #: errors of the selection itself (an empty array, an expression matching nothing)
    selection_errors: list[OarError] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def recorded(self) -> list[int]:
        return [o.job_id for o in self.outcomes if o.error is None]

    @property
    def exit_code(self) -> int:
        """0 if every request was recorded, else the exit code of the first error met."""
        return first_exit_code([*self.selection_errors, *(o.error for o in self.outcomes)])


# ----------------------------------------------------------------------------- selection

def select_jobs(db: peewee.Database, caller: Caller, ids: Sequence[int] = (),
                arrays: Sequence[int] = (), expression: str | None = None) -> tuple[list[int], list[OarError]]:
    """The jobs named by ids, ``--array`` ids and a ``--sql`` expression, in that order.

    Explicit ids are kept as given (an unknown one is reported when it is acted on).
    An array gives its unfinished jobs; ``--sql`` gives the unfinished jobs matching the
    expression (on the columns of ``jobs``) among the caller's own ones, or among all jobs
    for ``oar`` and ``root``.  Returns the ids without repetition and the errors met: an
    array without unfinished jobs, an expression matching nothing.  A malformed or refused
    expression raises :class:`~oar_appliance.errors.ExpressionError` at once.
    """
    errors: list[OarError] = []
    found: list[int] = list(ids)
    where_sql = None
    if expression is not None:
        from .lang import properties as property_language  # ~50 ms: only when needed

        backend = backend_for(db)
        columns = backend.columns(db, "jobs")
        tree = property_language.parse(expression)
        property_language.validate(tree, columns, what="job field")
        where_sql = property_language.to_sql(tree, columns, backend.dialect, what="job field")
    for array_id in arrays:
        if array_id <= 0:
            raise UsageError(f"an array id must be a positive number, got {array_id}")
        rows = list(Job.select(Job.job_id, Job.state).where(Job.array_id == array_id)
                    .order_by(Job.job_id).tuples())
        if not rows:
            errors.append(NotFoundError(f"array {array_id} does not exist"))
            continue
        live = [job_id for job_id, state in rows if state not in FINISHED_STATES]
        if not live:
            errors.append(ConflictError(f"every job of array {array_id} is already finished"))
        found.extend(live)
    if where_sql is not None:
        sql, params = where_sql
        mark = backend_for(db).placeholder
        query = (f'SELECT "job_id" FROM "jobs" WHERE ({sql}) '
                 f'AND "state" NOT IN ({", ".join([mark] * len(FINISHED_STATES))})')
        params = list(params) + list(FINISHED_STATES)
        if not caller.acts_for_everybody:
            query += f' AND "job_user" = {mark}'
            params.append(caller.name)
        matched = [row[0] for row in db.execute_sql(query + ' ORDER BY "job_id"', params).fetchall()]
        if not matched:
            whose = "" if caller.acts_for_everybody else " of yours"
            errors.append(NotFoundError(f"no unfinished job{whose} matches {expression!r}"))
        found.extend(matched)
    return list(dict.fromkeys(found)), errors


def for_each(db: peewee.Database, job_ids: Sequence[int], action: Callable[[int], Any]) -> list[Outcome]:
    """Run ``action(job_id)`` for each job, each in a transaction of its own.

    A refused request (an :class:`~oar_appliance.errors.OarError`) writes nothing and does
    not stop the others.
    """
    outcomes = []
    for job_id in job_ids:
        try:
            with db.atomic():
                outcomes.append(Outcome(job_id, result=action(job_id)))
        except OarError as exc:
            outcomes.append(Outcome(job_id, error=exc))
        except peewee.IntegrityError:
            # another request for this job was recorded at the same time
            outcomes.append(Outcome(job_id, error=ConflictError(
                f"job {job_id} was changed by another request at the same time: try again")))
    return outcomes


def process(db: peewee.Database, caller: Caller, action: Callable[[int], Any], ids: Sequence[int] = (),
            arrays: Sequence[int] = (), expression: str | None = None) -> Batch:
    """:func:`select_jobs`, then :func:`for_each` with ``action``."""
    job_ids, errors = select_jobs(db, caller, ids, arrays, expression)
    return Batch(errors, for_each(db, job_ids, action))


# ----------------------------------------------------------------------------- common checks

def _load_job(db: peewee.Database, job_id: int, caller: Caller, what: str) -> Job:
    """The job, locked for the transaction where the backend can; unknown / not yours: errors."""
    query = Job.select().where(Job.job_id == job_id)
    if getattr(db, "for_update", False):  # PostgreSQL; SQLite transactions take the write lock
        query = query.for_update()
    job = query.first()
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    if job.job_user != caller.name and not caller.acts_for_everybody:
        raise PermissionDeniedError(
            f"job {job_id} is not yours (you are {caller.name}): only its owner, oar or root may {what}")
    return job


def _being_deleted(job_id: int) -> bool:
    return FragJob.select().where(FragJob.frag_id_job == job_id).exists()


def _refuse_finished_or_deleted(job: Job) -> None:
    if job.state in FINISHED_STATES:
        raise ConflictError(f"job {job.job_id} is already finished")
    if _being_deleted(job.job_id):
        raise ConflictError(f"job {job.job_id} is being deleted")


def _job_types(job_id: int) -> list[str]:
    return [t for (t,) in JobType.select(JobType.type)
            .where((JobType.job_id == job_id) & (JobType.type_index == "CURRENT")).tuples()]


def _has_type(types: Iterable[str], name: str) -> bool:
    return any(t == name or t.startswith(name + "=") for t in types)


def _add_event(job_id: int, kind: str, description: str, now: int, to_check: str) -> None:
    EventLog.insert(type=kind, job_id=job_id, date=now, description=description[:255],
                    to_check=to_check).execute()


# ----------------------------------------------------------------------------- oardel

def request_deletion(db: peewee.Database, job_id: int, caller: Caller, now: int) -> None:
    """Ask Leon to kill the job (``frag_jobs`` LEON and a ``FRAG_JOB_REQUEST`` event)."""
    job = _load_job(db, job_id, caller, "delete it")
    if job.state in FINISHED_STATES:
        raise ConflictError(f"job {job_id} is already finished")
    if _being_deleted(job_id):
        raise ConflictError(f"job {job_id} is already being deleted")
    if job.state in ENDING_STATES:
        raise ConflictError(f"job {job_id} is already ending ({job.state})")
    resources.request_kill(db, [job_id], now, reason=f"User {caller.name} requested to frag the job {job_id}")


def _require_running_passive(job: Job, what: str) -> None:
    _refuse_finished_or_deleted(job)
    if job.state != "Running":
        raise ConflictError(f"job {job.job_id} is not running ({job.state}): only a running job can be {what}")
    if job.job_type == "INTERACTIVE":
        raise ConflictError(f"job {job.job_id} is interactive: only a batch job can be {what}")


def request_checkpoint(db: peewee.Database, job_id: int, caller: Caller, now: int) -> None:
    """Ask the server to send the job its checkpoint signal (event ``CHECKPOINT``)."""
    job = _load_job(db, job_id, caller, "checkpoint it")
    _require_running_passive(job, "checkpointed")
    _add_event(job_id, CHECKPOINT, f"User {caller.name} requested a checkpoint on the job {job_id}",
               now, to_check="YES")


def parse_signal(text: str) -> str:
    """The canonical name of a signal given as ``SIGUSR1``, ``USR1``, ``usr1`` or ``10``."""
    spelled = str(text).strip()
    try:
        if spelled.isdigit():
            return signal_module.Signals(int(spelled)).name
        name = spelled.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        if re.fullmatch(r"SIG[A-Z0-9]+", name) and not name.startswith("SIG_"):
            return signal_module.Signals[name].name
    except (KeyError, ValueError):
        pass
    raise UsageError(f"unknown signal {spelled!r} (give a name such as SIGUSR1 or USR1, or a number such as 10)")


_SIGNAL_IN_DESCRIPTION = re.compile(r"requested the signal (SIG[A-Z0-9]+) on the job")


def requested_signal(description: str) -> str | None:
    """The signal name recorded in a ``USER_SIGNAL`` event's description (for the server)."""
    found = _SIGNAL_IN_DESCRIPTION.search(description or "")
    return found.group(1) if found else None


def request_signal(db: peewee.Database, job_id: int, caller: Caller, signal_name: str, now: int) -> None:
    """Ask the server to send a signal to the job's processes (event ``USER_SIGNAL``)."""
    name = parse_signal(signal_name)
    job = _load_job(db, job_id, caller, "signal it")
    _require_running_passive(job, "signalled")
    _add_event(job_id, USER_SIGNAL, f"User {caller.name} requested the signal {name} on the job {job_id}",
               now, to_check="YES")


# ----------------------------------------------------------------------------- oarhold / oarresume

def request_hold(db: peewee.Database, job_id: int, caller: Caller, now: int, running: bool = False,
                 users_allowed_hold_resume: bool = False) -> str:
    """Hold a waiting job, or with ``running`` suspend a running one; returns the event type.

    Waiting and Resuming jobs get ``HOLD_WAITING_JOB`` (with or without ``running``); a
    Running job, only with ``running``, gets ``HOLD_RUNNING_JOB``, which needs an
    administrator unless ``users_allowed_hold_resume``.
    """
    job = _load_job(db, job_id, caller, "hold it")
    _refuse_finished_or_deleted(job)
    if job.state in HOLDABLE_STATES:
        kind = HOLD_WAITING_JOB
    elif job.state == "Running":
        if not running:
            raise ConflictError(f"job {job_id} is running: use -r to suspend it")
        if not (caller.admin or users_allowed_hold_resume):
            raise PermissionDeniedError(
                f"only oar or root may suspend a running job (you are {caller.name}; "
                "USERS_ALLOWED_HOLD_RESUME is off)")
        types = _job_types(job_id)
        for name in UNSUSPENDABLE_TYPES:
            if _has_type(types, name):
                raise ConflictError(f"job {job_id} is of the {name} type: it cannot be suspended")
        kind = HOLD_RUNNING_JOB
    elif job.state == "Hold":
        raise ConflictError(f"job {job_id} is already held")
    elif job.state == "Suspended":
        raise ConflictError(f"job {job_id} is already suspended")
    elif job.state in ("toLaunch", "Launching"):
        raise ConflictError(f"job {job_id} is starting ({job.state}): it can be suspended once it is Running")
    else:
        raise ConflictError(f"job {job_id} is {job.state}: only Waiting jobs can be held (Running ones with -r)")
    _add_event(job_id, kind, f"User {caller.name} launched oarhold on the job {job_id}", now, to_check="YES")
    return kind


def request_resume(db: peewee.Database, job_id: int, caller: Caller, now: int,
                   users_allowed_hold_resume: bool = False) -> str:
    """Resume a held job (back to Waiting) or a suspended one (event ``RESUME_JOB``)."""
    job = _load_job(db, job_id, caller, "resume it")
    _refuse_finished_or_deleted(job)
    if job.state == "Suspended":
        if not (caller.admin or users_allowed_hold_resume):
            raise PermissionDeniedError(
                f"only oar or root may resume a suspended job (you are {caller.name}; "
                "USERS_ALLOWED_HOLD_RESUME is off)")
    elif job.state != "Hold":
        raise ConflictError(f"job {job_id} is {job.state}: only Hold or Suspended jobs can be resumed")
    _add_event(job_id, RESUME_JOB, f"User {caller.name} launched oarresume on the job {job_id}", now,
               to_check="YES")
    return RESUME_JOB


# ----------------------------------------------------------------------------- oarwalltime

def require_walltime_change_enabled(enabled: bool) -> None:
    """Raise :class:`FeatureDisabledError` unless ``WALLTIME_CHANGE_ENABLED`` is on."""
    if not enabled:
        raise FeatureDisabledError("walltime change is disabled (WALLTIME_CHANGE_ENABLED)")


def format_signed(seconds: int) -> str:
    """``+H:MM:SS`` / ``-H:MM:SS``."""
    from .lang.request import format_duration

    return ("-" if seconds < 0 else "+") + format_duration(abs(seconds))


def parse_walltime_change(text: str) -> tuple[str, int]:
    """``"+1:30"`` -> ``("+", 5400)``; the sign is ``""`` for a new absolute walltime.

    Durations are ``hours``, ``hours:minutes`` or ``hours:minutes:seconds`` (a bare
    number is hours), as in ``oarsub -l walltime=``.
    """
    from .lang.request import RequestError, parse_duration

    spelled = str(text).strip()
    sign = spelled[:1] if spelled[:1] in "+-" else ""
    value = spelled[len(sign):]
    try:
        seconds = parse_duration(value, what="walltime change", allow_zero=bool(sign))
    except RequestError as exc:
        if re.fullmatch(r"[0-9]+(:[0-9]+){0,2}", value):  # 0, or too long: the message says it
            raise UsageError(exc.message) from None
        raise UsageError(f"invalid walltime change {spelled!r}: expected [+|-]hours, hours:minutes "
                         "or hours:minutes:seconds (e.g. +1:30)") from None
    return sign, seconds


def _moldable_walltime(job: Job) -> int | None:
    if not job.assigned_moldable_job:
        return None
    row = (MoldableJobDescription.select(MoldableJobDescription.moldable_walltime)
           .where(MoldableJobDescription.moldable_id == job.assigned_moldable_job).first())
    if row is None:
        raise DatabaseError(f"job {job.job_id} has no moldable description {job.assigned_moldable_job}")
    return int(row.moldable_walltime)


def suspended_duration(job_id: int, now: int) -> int:
    """Seconds the job spent Suspended or Resuming (an open interval counts up to ``now``)."""
    rows = (JobStateLog.select(JobStateLog.date_start, JobStateLog.date_stop)
            .where((JobStateLog.job_id == job_id) & JobStateLog.job_state.in_(["Suspended", "Resuming"]))
            .tuples())
    return sum(max(0, (stop or now) - start) for start, stop in rows)


@dataclass
class WalltimeStatus:
    """What ``oarwalltime JOB`` shows."""

    job_id: int
    state: str
    #: the current walltime in seconds; None while the job has no assigned alternative
    walltime: int | None
    pending: int = 0
    force: str = "NO"
    delay_next_jobs: str = "NO"
    granted: int = 0
    granted_with_force: int = 0
    granted_with_delaying_next_jobs: int = 0
    #: seconds the job has run (suspensions excluded), 0 if it has not started
    elapsed: int = 0


def walltime_status(db: peewee.Database, job_id: int, caller: Caller, now: int, *, enabled: bool) -> WalltimeStatus:
    """The current walltime of the job and its pending change request."""
    require_walltime_change_enabled(enabled)
    job = _load_job(db, job_id, caller, "see its walltime")
    status = WalltimeStatus(job_id, job.state, _moldable_walltime(job))
    change = WalltimeChange.get_or_none(WalltimeChange.job_id == job_id)
    if change is not None:
        status.pending = change.pending
        status.force = change.force
        status.delay_next_jobs = change.delay_next_jobs
        status.granted = change.granted
        status.granted_with_force = change.granted_with_force
        status.granted_with_delaying_next_jobs = change.granted_with_delaying_next_jobs
    if job.start_time:
        status.elapsed = max(0, (job.stop_time or now) - job.start_time - suspended_duration(job_id, now))
    return status


@dataclass
class WalltimeRequest:
    """A recorded walltime change request."""

    job_id: int
    #: True when it replaced a pending request
    updated: bool
    #: the change asked, relative to the current walltime, in seconds
    pending: int
    walltime: int
    force: str = "NO"
    delay_next_jobs: str = "NO"


def request_walltime_change(db: peewee.Database, job_id: int, caller: Caller, change: str, now: int, *,
                            enabled: bool, force: bool = False, delay_next_jobs: bool = False) -> WalltimeRequest:
    """Record a walltime change request for a running job (``walltime_change``).

    ``change`` is ``[+|-]duration``: with a sign, relative to the current walltime; without,
    the new walltime.  A request replaces the pending one (``+0`` cancels it).  The new
    walltime may not be shorter than the time the job has already run (suspensions
    excluded).  ``force`` and ``delay_next_jobs`` are for administrators and only apply to
    an increase.
    """
    require_walltime_change_enabled(enabled)
    sign, seconds = parse_walltime_change(change)
    if (force or delay_next_jobs) and not caller.admin:
        option = "--force" if force else "--delay-next-jobs"
        raise PermissionDeniedError(f"only oar or root may use {option} (you are {caller.name})")
    job = _load_job(db, job_id, caller, "change its walltime")
    _refuse_finished_or_deleted(job)
    if job.state != "Running":
        raise ConflictError(f"job {job_id} is not running ({job.state}): only the walltime of a running job can change")
    current = _moldable_walltime(job)
    if current is None:
        raise DatabaseError(f"job {job_id} is Running without an assigned moldable description")
    delta = {"+": seconds, "-": -seconds}.get(sign, seconds - current)
    new_walltime = current + delta
    if delta < 0:
        if _has_type(_job_types(job_id), "container"):
            raise ConflictError(f"job {job_id} is a container: its walltime cannot be reduced")
        elapsed = max(0, now - job.start_time - suspended_duration(job_id, now))
        if new_walltime < elapsed:
            from .lang.request import format_duration

            raise ConflictError(
                f"job {job_id} has already run {format_duration(elapsed)}: its walltime cannot become "
                f"{format_duration(max(0, new_walltime))}")
    values = {
        "pending": delta,
        "force": "YES" if force and delta > 0 else "NO",
        "delay_next_jobs": "YES" if delay_next_jobs and delta > 0 else "NO",
    }
    updated = WalltimeChange.update(**values).where(WalltimeChange.job_id == job_id).execute() > 0
    if not updated:
        WalltimeChange.insert(job_id=job_id, **values).execute()
    _add_event(
        job_id, WALLTIME_REQUEST,
        f"User {caller.name} requested a walltime change of {format_signed(delta)} for the job {job_id} "
        f"(force: {values['force']}, delay next jobs: {values['delay_next_jobs']})",
        now, to_check="NO")
    return WalltimeRequest(job_id, updated, delta, new_walltime, values["force"], values["delay_next_jobs"])


# ----------------------------------------------------------------------------- notification

def notify(config: Any, tag: str) -> str | None:
    """Wake the server up; a warning text (for ``#WARNING:``) if it did not take the tag."""
    from .notify import notify_server

    host, port = config["SERVER_HOSTNAME"], config["SERVER_PORT"]
    if notify_server(host, port, tag):
        return None
    return (f"the OAR server at {host}:{port} did not take the notification {tag}: "
            "the request is recorded and will be carried out when the server runs")


__all__ = [
    "Caller", "Outcome", "JOB_ADMINS",
    "Batch", "select_jobs", "for_each", "process", "first_exit_code",
    "request_deletion", "request_checkpoint", "request_signal", "parse_signal", "requested_signal",
    "request_hold", "request_resume",
    "require_walltime_change_enabled", "walltime_status", "request_walltime_change", "parse_walltime_change", "suspended_duration",
    "WalltimeStatus", "WalltimeRequest", "format_signed", "notify",
]
