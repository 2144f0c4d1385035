"""One scheduling round: FIFO with conservative backfilling on a Gantt (pure).

Plain data in, decisions out; time is passed in as ``now``; no DB, no I/O.  The caller
(metascheduler adapter) loads the resources, the running jobs / accepted reservations and
the waiting jobs, calls :func:`schedule_round` and writes the decisions back.

Rules (REFERENCE.md, "Scheduling semantics"):

- every walltime is extended by ``security_time`` in the Gantt (placements report the
  start; the Gantt end is ``start + walltime + security_time``);
- occupations (running jobs, accepted reservations) are put in the Gantt first; then new
  advance reservations (jobs with ``reservation`` set), in the given order, each placed at
  its start time exactly or rejected (a start already past is moved to ``now``, as OAR
  does for a reservation the scheduler sees late, unless it passed by more than the
  walltime: the whole slot is over, rejected); then the batch jobs in the given order
  (the caller's priority order: queue priority, then FIFO/karma), besteffort batch jobs
  after all the others (:func:`placement_order`);
- dependencies on jobs of the same round (``after``): a job starts at or after the
  predicted ends of the jobs placed before it that it depends on (one of them not placed:
  a message), so dependent jobs keep their place in the order;
- each job gets the EARLIEST start >= max(now, earliest_start) at which its request fits
  during its whole walltime + security time, without moving anything placed before it
  (conservative backfilling: a later job may take a hole in front of earlier ones);
- moldable alternatives: each is placed, the one that finishes first is kept (ties: the
  first given);
- who blocks whom is decided by *views* (:mod:`~oar_appliance.sched.sharing`), one Gantt
  per kind of job, built lazily and updated on every placement:

  - besteffort occupations and placements do not block non-besteffort jobs; a
    non-besteffort job placed to start at ``now`` on resources of a running besteffort
    occupation makes that job's id appear in ``besteffort_to_kill``;
  - timesharing (``timesharing`` key, see :func:`~oar_appliance.sched.sharing.timesharing_key`):
    a timesharing job shares resources with the occupations and placements of timesharing
    jobs of the *same* key (``*,*``; ``user,*`` and ``*,name`` and ``user,name`` with the
    job's user / name substituted); every other job blocks it, and a job that is not
    timesharing never shares;
  - placeholder / allow: the resources of a ``placeholder=NAME`` job are free for
    ``allow=NAME`` jobs only (whatever their user); allow jobs block each other;

- containers (:mod:`~oar_appliance.sched.containers`): an ``inner`` job is placed only
  inside its container's resources and window ``[start, start + walltime)`` (with its
  own security time, so at most the container's walltime minus the security time); inner
  jobs are placed after all the others (they cannot compete with them); a container
  neither running nor placed gives its inner jobs a message;
- :class:`~oar_appliance.sched.policies.RoundOptions` (keyword ``options``): horizons
  (``available_upto``: nothing planned at or after it on those resources, inside
  containers too; a job that would cross it goes elsewhere or later, or gets a
  message), always-assigned resources
  (never chosen nor occupied, added to every placement), resources of suspended jobs that
  others may use, the minimum hole for backfilling (batch jobs only), and a deadline
  (``SCHEDULER_TIMEOUT``: the jobs not reached get :data:`TIMEOUT_MESSAGE`, what was
  decided is kept, ``RoundResult.timed_out`` is set);
- quotas (keyword ``quotas``, see :func:`schedule_round`): every candidate placement of
  every job (timesharing, placeholder/allow and inner jobs included) is checked; one the
  quotas refuse is not taken and the job is tried again at the next breakpoint of its
  Gantt or the next change of the quotas; every placement taken is counted (the quotas
  object itself ignores container jobs; their inner jobs count; always-assigned resources
  are not counted);
- a placement starting at ``now`` is "to launch";
- an error in one job's data (bad label, unknown constraint text...) gives that job a
  message and never stops the round.

What a due reservation does at its start is decided outside the round
(:mod:`~oar_appliance.sched.reservations`).  Out of scope: fairsharing (the caller orders
the jobs), energy saving (decided from the result by the caller).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Union

from oar_appliance.lang.request import MoldableRequest
from oar_appliance.sched.containers import Containers
from oar_appliance.sched.gantt import Gantt
from oar_appliance.sched.hierarchy import ResourcePool, fit_request, group_lower_bound
from oar_appliance.sched.policies import RoundOptions
from oar_appliance.sched.sharing import EXCLUSIVE, FAR, Share, Views

__all__ = ["Occupation", "WaitingJob", "Placement", "RoundResult", "RoundOptions",
           "placement_order", "schedule_round"]

#: ``constraint_bits`` of a job: a callable (text or None -> bits) or a dict from the group
#: constraint text to bits (None, or a text missing from the dict, when the group has no
#: constraint, means every resource)
Constraints = Union[Callable[[Union[str, None]], int], Mapping[str, int], None]


@dataclass(frozen=True)
class Occupation:
    """Resources already taken: a running job or an accepted reservation.

    ``end`` is exclusive and should already include the security time (the caller knows
    the job's walltime and start).  A running job (``start <= now``) whose ``end`` has
    passed still holds its resources: it is kept busy until ``now + 1``.
    """

    job_id: int
    start: int
    end: int
    bits: int
    besteffort: bool = False
    #: the resolved key of a timesharing job (:func:`~.sharing.timesharing_key`), or None
    timesharing: str | None = None
    #: ``-t placeholder=NAME``: the resources are held for ``allow=NAME`` jobs only
    placeholder: str | None = None
    #: a suspended job (see :attr:`~.policies.RoundOptions.suspended_shareable`)
    suspended: bool = False
    #: a container job: inner jobs may be placed in its resources until ``end`` minus
    #: the security time
    container: bool = False
    #: the container job id of an inner job (it takes part of its container's resources)
    inner: int | None = None


@dataclass(frozen=True)
class WaitingJob:
    """A job to schedule.

    ``moldables``: ``(moldable_id, MoldableRequest)`` pairs, every request with its
    walltime in seconds; ``constraints``: see :data:`Constraints`; ``earliest_start``: no
    start before it (dependencies, computed by the caller); ``reservation``: the requested
    start of a new advance reservation, or None for a batch job.
    """

    job_id: int
    moldables: tuple[tuple[int, MoldableRequest], ...]
    constraints: Constraints = None
    earliest_start: int = 0
    besteffort: bool = False
    reservation: int | None = None
    #: the resolved timesharing key (:func:`~.sharing.timesharing_key`), or None
    timesharing: str | None = None
    #: ``-t placeholder=NAME`` / ``-t allow=NAME``
    placeholder: str | None = None
    allow: str | None = None
    #: ``-t container``: inner jobs may be placed in it
    container: bool = False
    #: ``-t inner=ID``: placed only inside container job ID
    inner: int | None = None
    #: ids of jobs of this round that must end before this one starts (dependencies):
    #: each must come before it in :func:`placement_order`; its start is then at or
    #: after their predicted ends; one of them not placed gives this job a message
    after: tuple[int, ...] = ()


@dataclass(frozen=True)
class Placement:
    """A decision: job ``job_id`` runs moldable ``moldable_id`` on ``bits`` from ``start``.

    ``walltime`` is the chosen moldable's walltime (without security time).
    """

    job_id: int
    moldable_id: int
    start: int
    bits: int
    walltime: int = 0

    @property
    def end(self) -> int:
        """Predicted end (start + walltime, without security time)."""
        return self.start + self.walltime


@dataclass
class RoundResult:
    """The decisions of one round.

    ``placements``: one per placed job, in the order the jobs were placed (reservations
    first); ``messages``: job_id -> why it was not placed; ``to_launch``: ids of the jobs
    placed at ``now`` (reservations included); ``besteffort_to_kill``: sorted ids of the
    running besteffort jobs overlapping a non-besteffort job to launch now;
    ``timed_out``: the round stopped at its deadline (the jobs not reached have a
    message).
    """

    placements: list[Placement] = field(default_factory=list)
    messages: dict[int, str] = field(default_factory=dict)
    to_launch: list[int] = field(default_factory=list)
    besteffort_to_kill: list[int] = field(default_factory=list)
    timed_out: bool = False

    def placement_of(self, job_id: int) -> Placement | None:
        for p in self.placements:
            if p.job_id == job_id:
                return p
        return None


def _resolver(pool: ResourcePool, constraints: Constraints) -> Callable[[str | None], int]:
    if constraints is None:
        return lambda text: pool.all_bits
    if callable(constraints):
        return constraints
    table = constraints

    def bits(text: str | None) -> int:
        if text is None:
            return pool.all_bits
        try:
            return table[text]
        except KeyError:
            raise ValueError(f"no resource set given for the constraint {{{text}}}") from None
    return bits


def _min_count(request: MoldableRequest) -> int:
    """A lower bound of the number of resources any placement of request takes."""
    total = 0
    for group in request.groups:
        prod = 1
        for level in group.levels:
            if isinstance(level.count, int) and level.count > 0:
                prod *= level.count
        total += prod
    return total


_NEVER = 1 << 62       # the "start" of a request that never fits


class _Placer:
    """Placement of requests on one Gantt, with memos shared by the jobs of the round.

    ``failed``: per request key (levels and resolved trees of its groups), what is known
    to fail: for a single-group request (monotone: it fails on every subset of a free set
    it fails on) the shortest window length that failed from each start time
    (``Gantt.first_fit``'s ``failed_spans``; the Gantt only loses free resources during a
    round, so a failure stays true), for a multi-group request the free sets that failed.
    ``bounds``: per single-group request key, ``(durations, starts)`` sorted increasing in
    both: a search started at ``now`` for a duration d found its first fit at s, so any
    later search from ``now`` for a duration >= d cannot start before s.  Multi-group
    requests are not monotone (an earlier group may take what a later one needs) and get
    no bound.  ``mins``: per request key, a lower bound of the resources it takes.
    """

    def __init__(self, pool: ResourcePool, usable: int, now: int, memo: dict) -> None:
        self.pool = pool
        self.usable = usable
        self.now = now
        self.memo = memo
        self.failed: dict[tuple, set | dict] = {}
        self.bounds: dict[tuple, tuple[list[int], list[int]]] = {}
        self.mins: dict[tuple, int] = {}
        self.gantt = Gantt(now, usable)

    def place(self, request: MoldableRequest, cbits: Callable[[str | None], int],
              duration: int, earliest: int, latest: int | None, hole_minimum: int = 0
              ) -> tuple[int, int] | None:
        pool, usable = self.pool, self.usable
        trees = tuple(usable & cbits(g.constraint) for g in request.groups)
        key = (tuple(g.levels for g in request.groups), trees)
        single = len(request.groups) == 1
        failed = self.failed.get(key)
        if failed is None:
            failed = self.failed[key] = {} if single else set()
        min_count = self.mins.get(key)
        if min_count is None:
            min_count = _min_count(request)
            if single:
                min_count = max(min_count, group_lower_bound(pool, request.groups[0].levels,
                                                             trees[0]))
            self.mins[key] = min_count

        def request_fit(free: int) -> int | None:
            # (no memo: a window's free set seldom comes back, the failure memos of the
            # Gantt catch those that do, and hashing two long ints per call costs more)
            return fit_request(pool, request, usable, free, cbits, explain=False)[0]

        from_now = earliest <= self.now and latest is None and single
        if from_now:
            bound = self.bounds.get(key)
            if bound is not None:
                k = bisect_right(bound[0], duration) - 1
                if k >= 0:
                    if bound[1][k] == _NEVER:
                        return None
                    earliest = bound[1][k]
        if single:
            found = self.gantt.first_fit(request_fit, duration, earliest, latest, hole_minimum,
                                         min_count=min_count, failed_spans=failed,
                                         tree=None if trees[0] == usable else trees[0])
        else:
            found = self.gantt.first_fit(request_fit, duration, earliest, latest, hole_minimum,
                                         min_count=min_count, failed=failed)
        if from_now:
            self._remember(key, duration, None if found is None else found[0])
        return found

    def _remember(self, key: tuple, duration: int, start: int | None) -> None:
        durs, starts = self.bounds.setdefault(key, ([], []))
        s = _NEVER if start is None else start
        k = bisect_right(durs, duration)
        if k and starts[k - 1] >= s:
            return                                      # a shorter duration says as much
        end = k
        while end < len(durs) and starts[end] <= s:
            end += 1                                    # longer durations, weaker bounds
        del durs[k:end], starts[k:end]
        durs.insert(k, duration)
        starts.insert(k, s)


def placement_order(waiting: Sequence[WaitingJob]) -> list[WaitingJob]:
    """The order in which jobs are placed: new reservations, then the batch jobs, then the
    besteffort batch jobs, then the inner jobs of containers (each part in the given order).

    Besteffort jobs come last (as the ``besteffort`` queue, priority 0, does) so that a
    normal job never lands on a besteffort job placed in the same round.  Inner jobs use
    only the resources of their container, which no other job may take: placing them
    after everything else changes no other job's place, and lets them find a container
    placed in the same round.
    """
    outer = [j for j in waiting if j.inner is None]
    return ([j for j in outer if j.reservation is not None]
            + [j for j in outer if j.reservation is None and not j.besteffort]
            + [j for j in outer if j.reservation is None and j.besteffort]
            + [j for j in waiting if j.inner is not None])


def schedule_round(pool: ResourcePool, usable: int, occupations: Sequence[Occupation],
                   waiting: Sequence[WaitingJob], now: int, security_time: int = 0,
                   *, options: RoundOptions | None = None, quotas=None) -> RoundResult:
    """Schedule the waiting jobs around the occupations; see the module docstring.

    ``usable``: the bits of the resources that may be used (Alive...); ``waiting`` in
    priority order; ``options``: the policies of :class:`~.policies.RoundOptions` (None:
    all off).  ``quotas`` (optional, e.g. :class:`oar_appliance.sched.quotas.Quotas`)
    has ``check(job_id, start, end, bits) -> bool``, ``add(job_id, start, end, bits)`` and
    ``next_change(t, quiet_from) -> int | None``: a placement it refuses is not taken and
    later starts are tried; every placement taken is added to it (the caller adds the
    occupations).  ``end`` includes the security time; ``bits`` never include the
    always-assigned resources (not part of a request, they count for no quota: the caller
    leaves them out of the occupations it adds too).
    """
    opts = options or _NO_OPTIONS
    result = RoundResult()
    memo: dict = {}
    always = opts.always_assigned
    fit_usable = usable & ~always if always else usable
    views = Views(lambda: _Placer(pool, fit_usable, now, memo))

    def container_placer(bits: int) -> _Placer:
        # the inside of a container: its resources, with their horizons (available_upto
        # may have been lowered after the container was placed)
        placer = _Placer(pool, bits & fit_usable, now, memo)
        for date, hbits in opts.horizons:
            placer.gantt.occupy(max(date, now), FAR, hbits & bits)
        return placer

    containers = Containers(container_placer, now)
    running_besteffort: list[Occupation] = []
    for occ in occupations:
        end = occ.end
        if occ.start <= now and end <= now:
            end = now + 1                               # overdue: still holds resources
        bits = occ.bits & ~always if always else occ.bits
        if occ.suspended and opts.suspended_shareable:
            bits &= ~opts.suspended_shareable
        views.occupy(occ.start, end, bits, _share(occ.besteffort, occ.timesharing,
                                                   occ.placeholder))
        if occ.besteffort and occ.start <= now < end:
            running_besteffort.append(occ)
        if occ.container:
            containers.add_container(occ.job_id, occ.start, occ.end - security_time, bits)
        if occ.inner is not None:
            containers.add_inner(occ.inner, occ.start, end, bits)
    for date, bits in opts.horizons:
        views.occupy(max(date, now), FAR, bits & ~always if always else bits)

    order = placement_order(waiting)
    views.expect((j.besteffort, j.timesharing, j.allow) for j in order if j.inner is None)
    kill: set[int] = set()
    ends: dict[int, int] = {}                           # placed job -> predicted end
    clock, deadline = opts.clock, opts.deadline
    for index, job in enumerate(order):
        if deadline is not None and clock is not None and clock() >= deadline:
            result.timed_out = True
            for late in order[index:]:
                result.messages[late.job_id] = TIMEOUT_MESSAGE
            break
        try:
            placer, message = None, ""
            if job.after:
                job, message = _after_placed(job, ends)
            if message:
                pass
            elif job.inner is not None:
                placer, message = containers.placer(job.inner)
                hole = 0
            else:
                placer, message = views.placer((job.besteffort, job.timesharing,
                                                job.allow)), ""
                hole = opts.hole_minimum
            placement = None
            if placer is not None:
                placement, message = _schedule_job(pool, placer.usable, job, placer, now,
                                                   security_time, hole, quotas)
                if placement is None and job.inner is not None:
                    message = f"in container job {job.inner}: {message}"
        except Exception as exc:                        # one job's bad data: a message
            placement, message = None, f"error: {exc}"
        if job.inner is None:
            views.done((job.besteffort, job.timesharing, job.allow))
        if placement is None:
            result.messages[job.job_id] = message
            continue
        ends[job.job_id] = placement.start + placement.walltime
        end = placement.start + placement.walltime + security_time
        if quotas is not None:
            quotas.add(job.job_id, placement.start, end, placement.bits)
        if job.inner is not None:
            containers.add_inner(job.inner, placement.start, end, placement.bits)
        else:
            # (a new reservation blocks everyone, even one flagged besteffort)
            views.occupy(placement.start, end, placement.bits, _share(
                job.besteffort and job.reservation is None, job.timesharing,
                job.placeholder), found_by=placer)
        if job.container:
            containers.add_container(job.job_id, placement.start,
                                     placement.start + placement.walltime, placement.bits)
        if always:
            placement = replace(placement, bits=placement.bits | always)
        result.placements.append(placement)
        if placement.start == now:
            result.to_launch.append(job.job_id)
            if not job.besteffort:
                for occ in running_besteffort:
                    if occ.bits & placement.bits & ~always:
                        kill.add(occ.job_id)
    result.besteffort_to_kill = sorted(kill)
    return result


TIMEOUT_MESSAGE = ("not scheduled: the round reached its time limit (SCHEDULER_TIMEOUT) "
                   "before this job")
_NO_OPTIONS = RoundOptions()


def _share(besteffort: bool, timesharing: str | None, placeholder: str | None) -> Share:
    if not (besteffort or timesharing or placeholder):
        return EXCLUSIVE
    return Share(besteffort, timesharing, placeholder)


def _within_quotas(placer: _Placer, quotas, job_id: int, request: MoldableRequest,
                   cbits: Callable[[str | None], int], duration: int,
                   found: tuple[int, int], latest: int | None, hole_minimum: int
                   ) -> tuple[int, int] | None:
    """The first fit from ``found`` on that the quotas accept (None: none ever will).

    A fit at or past :data:`~.sharing.FAR` (after the end of availability of the
    resources) is returned as it is: the caller rejects it whatever the quotas say.
    """
    times = placer.gantt.times
    while found is not None:
        start, bits = found
        if start >= FAR or quotas.check(job_id, start, start + duration, bits):
            return found
        if latest is not None:
            return None                                 # a reservation has one start
        i = bisect_right(times, start)
        # past the last breakpoint before FAR nothing of the Gantt changes any more
        quiet = times[-1] if times[-1] < FAR else (times[-2] if len(times) > 1 else start)
        nxt = quotas.next_change(start, quiet)
        if i < len(times):
            nxt = times[i] if nxt is None else min(nxt, times[i])
        if nxt is None:
            return None
        found = placer.place(request, cbits, duration, nxt, None, hole_minimum)
    return None


def _after_placed(job: WaitingJob, ends: Mapping[int, int]) -> tuple[WaitingJob, str]:
    """``job`` with its earliest start after the ends of its ``after`` jobs, or a message
    when one of them was not placed before it."""
    earliest = job.earliest_start
    for required in job.after:
        end = ends.get(required)
        if end is None:
            return job, f"dependency on job {required} which is not scheduled"
        earliest = max(earliest, end)
    return replace(job, earliest_start=earliest), ""


def _schedule_job(pool: ResourcePool, usable: int, job: WaitingJob, placer: _Placer,
                  now: int, security_time: int, hole_minimum: int = 0, quotas=None
                  ) -> tuple[Placement | None, str]:
    cbits = _resolver(pool, job.constraints)
    if not job.moldables:
        return None, "cannot be satisfied: the job has no resource request"
    earliest = max(now, job.earliest_start)
    latest = None
    if job.reservation is not None:
        start = max(job.reservation, now)
        if start < earliest:
            return None, (f"reservation rejected: its start {job.reservation} is before the "
                          f"job's earliest start {earliest}")
        earliest = latest = start
        hole_minimum = 0
    best: tuple[int, Placement] | None = None
    reasons: list[str] = []
    for moldable_id, request in job.moldables:
        walltime = request.walltime
        if walltime is None or walltime <= 0:
            reasons.append(f"moldable {moldable_id} has no walltime")
            continue
        if job.reservation is not None and now > job.reservation + walltime:
            # its whole slot has passed: moved to now it would run outside it
            reasons.append(f"moldable {moldable_id}: its start passed by more than its "
                           f"walltime ({now - job.reservation} s late, walltime {walltime} s)")
            continue
        if len(request.groups) == 1:
            # one group is monotone in the free set: if it does not fit on the whole
            # cluster free, it never fits (several groups are not: an earlier group may
            # take, on a freer cluster, what a later one needs; they get the full search)
            bits, reason = fit_request(pool, request, usable, usable, cbits, explain=True,
                                       memo=placer.memo)
            if bits is None:
                reasons.append(reason)
                continue
        found = placer.place(request, cbits, walltime + security_time, earliest, latest,
                             hole_minimum)
        if found is not None and quotas is not None:
            found = _within_quotas(placer, quotas, job.job_id, request, cbits,
                                   walltime + security_time, found, latest, hole_minimum)
            if found is None:
                reasons.append(f"moldable {moldable_id}: no slot within the quotas")
                continue
        if found is not None and found[0] >= FAR:
            reasons.append(f"moldable {moldable_id}: no slot before the end of availability "
                           "of the resources")
            continue
        if found is None:
            if latest is not None:
                reasons.append(f"moldable {moldable_id}: no slot at {latest}")
            else:
                bits, reason = fit_request(pool, request, usable, usable, cbits,
                                           explain=True)
                reasons.append(reason or f"moldable {moldable_id}: no slot")
            continue
        start, bits = found
        finish = start + walltime
        if best is None or finish < best[0]:
            best = (finish, Placement(job.job_id, moldable_id, start, bits, walltime))
    if best is not None:
        return best[1], ""
    what = "reservation rejected" if job.reservation is not None else "cannot be satisfied"
    return None, f"{what}: {'; '.join(reasons)}"
