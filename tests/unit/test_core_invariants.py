"""Invariants of one scheduling round (oar_appliance.sched.core), on generated cases.

Hypothesis builds clusters (switch / host / cpu / core trees of random shape, sometimes in a
shuffled scheduling order, sometimes with resources outside any switch), occupations
(running, overdue, future, besteffort) and waiting jobs of every kind the core takes:
hierarchical groups, ``+`` groups, constraints given as bit sets (dict or callable),
ALL / BEST / HALF_BEST counts, moldable alternatives, besteffort jobs, advance
reservations and ``earliest_start`` (dependencies).

The checks use a model written here, independent of the hierarchy module: resources are
Python sets of positions, the Gantt is a list of intervals, a placement is validated by
enumerating the ways its resources can be split among the groups and levels, and on tiny
clusters every second is tried to find the earliest start by brute force.

The runs are derandomized (a fixed sequence of examples, no example database), so a
failure is reproducible in CI; the whole file runs several thousand cases.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from itertools import combinations, product

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oar_appliance.lang.request import Level, MoldableRequest, ResourceGroup
from oar_appliance.sched.core import (Occupation, RoundOptions, WaitingJob, placement_order,
                                      schedule_round)
from oar_appliance.sched.hierarchy import ResourcePool

LABELS = ("resource_id", "switch", "network_address", "cpu", "core")
#: request labels from the top of the hierarchy down ("nodes" is the alias of the hosts)
TOP_DOWN = ("switch", "nodes", "cpu", "core")
SYMBOLIC = ("ALL", "BEST", "HALF_BEST")
CONSTRAINT_TEXTS = ("c0", "c1")
FOREVER = 1 << 62


def fast(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


# ----------------------------------------------------------------------------- generation

def _group_shapes():
    """Every chain of levels (top-down subsets of TOP_DOWN, or resource_id alone) with
    counts 1..3, and each of them with one level made symbolic: drawn in one step (a
    request drawn level by level costs too much generation time for thousands of cases)."""
    chains = [[lab for i, lab in enumerate(TOP_DOWN) if mask >> i & 1] for mask in range(1, 16)]
    chains.append(["resource_id"])
    shapes = []
    for chain in chains:
        for counts in product((1, 2, 3), repeat=len(chain)):
            if sum(counts) > len(chain) + 2:
                continue                                # keep the requests small
            shapes.append(tuple(Level(lab, n) for lab, n in zip(chain, counts)))
            for k in range(len(chain)):
                for sym in SYMBOLIC:
                    shapes.append(tuple(Level(lab, sym if i == k else n)
                                        for i, (lab, n) in enumerate(zip(chain, counts))))
    return shapes


GROUP_SHAPES = _group_shapes()
#: hosts: (cpus, cores per cpu)
HOST_SHAPES = [(c, k) for c in (1, 2) for k in (1, 2, 3)]
GROUP_CONSTRAINTS = (None, None) + CONSTRAINT_TEXTS
# strategies built once (building them per draw costs more than drawing)
HOSTS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, len(HOST_SHAPES) - 1)),
                 min_size=1, max_size=7)
GROUP = st.tuples(st.integers(0, len(GROUP_SHAPES) - 1),
                  st.integers(0, len(GROUP_CONSTRAINTS) - 1))


@st.composite
def clusters(draw, max_resources):
    """Rows of a switch/host/cpu/core tree of random shape, in a random scheduling order."""
    rows = []
    cpu = 0
    hosts = draw(HOSTS)
    # switch 3 stands for "outside any switch" (a NULL label); hosts sorted by switch
    for host, (sw, shape) in enumerate(sorted(hosts), 1):
        cpus, cores = HOST_SHAPES[shape]
        switch = f"sw{sw + 1}" if sw < 3 else None
        for _ in range(cpus):
            cpu += 1
            for _ in range(cores):
                rid = len(rows) + 1
                rows.append({"resource_id": rid, "switch": switch,
                             "network_address": f"host{host}", "cpu": cpu, "core": rid})
    rows = rows[:max_resources]
    how = draw(st.integers(0, 5))
    if how == 0:
        rows = draw(st.permutations(rows))              # interleaved blocks
    elif how == 1:
        rows = rows[::-1]
    return rows


@st.composite
def requests(draw, max_groups=2, max_walltime=30):
    n = 1 if max_groups == 1 or draw(st.integers(0, 3)) else draw(st.integers(2, max_groups))
    gs = [draw(GROUP) for _ in range(n)]
    return MoldableRequest(tuple(ResourceGroup(GROUP_SHAPES[g], GROUP_CONSTRAINTS[c])
                                 for g, c in gs),
                           draw(st.integers(1, max_walltime)))


@st.composite
def scenarios(draw, max_resources=24, max_jobs=8, max_groups=2, max_walltime=30):
    rows = draw(clusters(max_resources))
    pool = ResourcePool(rows, LABELS)
    size = pool.size
    bits = st.integers(0, pool.all_bits)
    usable = pool.all_bits
    if draw(st.integers(0, 3)) == 0:
        usable = draw(bits)
    now = draw(st.integers(0, 30))
    occs = []
    for i in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 3))
        if kind == 0:                                   # overdue running job
            start = draw(st.integers(0, now))
            end = draw(st.integers(start + 1, now + 1))
        elif kind == 1:                                 # in the future (a kept reservation)
            start = draw(st.integers(now + 1, now + 40))
            end = start + draw(st.integers(1, 40))
        else:                                           # running
            start = draw(st.integers(0, now))
            end = now + draw(st.integers(1, 50))
        occs.append(Occupation(1000 + i, start, end, draw(st.integers(1, pool.all_bits)),
                               besteffort=draw(st.integers(0, 3)) == 0))
    table = {text: draw(bits) for text in CONSTRAINT_TEXTS}
    # a few requests shared by several jobs (with their own walltimes), as in a real
    # queue: they exercise the round's memos (failed free sets, start bounds per request)
    palette = [draw(requests(max_groups, max_walltime)) for _ in range(draw(st.integers(1, 3)))]
    jobs = []
    for jid in range(1, draw(st.integers(1, max_jobs)) + 1):
        moldables = []
        for k in range(draw(st.integers(1, 3))):
            if draw(st.booleans()):
                shared = palette[draw(st.integers(0, len(palette) - 1))]
                request = MoldableRequest(shared.groups, draw(st.integers(1, max_walltime)))
            else:
                request = draw(requests(max_groups, max_walltime))
            moldables.append((jid * 10 + k, request))
        moldables = tuple(moldables)
        how = draw(st.integers(0, 3))
        if how == 0:
            constraints = None
        elif how == 1:
            # a callable, with an extra job-wide restriction (like -p)
            extra = draw(bits) | draw(bits)
            constraints = (lambda text, t=dict(table), e=extra:
                           e & (t[text] if text is not None else (1 << size) - 1))
        else:
            constraints = dict(table)
        reservation = draw(st.integers(0, now + 60)) if draw(st.integers(0, 5)) == 0 else None
        earliest = draw(st.integers(0, now + 50)) if draw(st.integers(0, 2)) == 0 else 0
        jobs.append(WaitingJob(jid, moldables, constraints=constraints, earliest_start=earliest,
                               besteffort=draw(st.integers(0, 4)) == 0, reservation=reservation))
    security = draw(st.sampled_from((0, 0, 1, 3)))
    return rows, usable, occs, jobs, now, security


# ----------------------------------------------------------------------------- the model

class Model:
    """Positions as sets; blocks of each label; validity and existence of placements."""

    def __init__(self, rows):
        self.rows = rows
        self.size = len(rows)
        self.blocks: dict[str, dict] = {}
        for lab in LABELS:
            found: dict = {}
            for pos, row in enumerate(rows):
                if row[lab] is not None:
                    found.setdefault(row[lab], set()).add(pos)
            self.blocks[lab] = found

    @staticmethod
    def column(label):
        return "network_address" if label == "nodes" else label

    def parts(self, label, parent):
        """The non-empty parts of the blocks of label inside parent, by first position."""
        out = [frozenset(b & parent) for b in self.blocks[self.column(label)].values()]
        return sorted((p for p in out if p), key=min)

    def satisfiable(self, levels, k, parent, free):
        """Can levels k.. be met inside parent (a block part, already inside the tree)?"""
        label, count = levels[k].label, levels[k].count
        sat = [p for p in self.parts(label, parent) if self.block_ok(levels, k, p, free)]
        if count == "ALL":
            return bool(sat) and len(sat) == len(self.parts(label, parent))
        if isinstance(count, int):
            return len(sat) >= count
        return bool(sat)

    def block_ok(self, levels, k, part, free):
        if k == len(levels) - 1:
            return part <= free
        return self.satisfiable(levels, k + 1, part, free)

    def placements(self, levels, k, parent, free, within):
        """Every valid choice of levels k.. inside parent, using only ``within``."""
        label, count = levels[k].label, levels[k].count
        parts = self.parts(label, parent)
        sat = [p for p in parts if self.block_ok(levels, k, p, free)]
        last = k == len(levels) - 1

        def options(p):
            if last:
                return [p] if p <= within else []
            return list(self.placements(levels, k + 1, p, free, within))

        if count == "ALL":
            if not parts or len(sat) != len(parts):
                return
            choices = [parts]
        elif count == "BEST":
            if not sat:
                return
            choices = [sat]
        else:
            n = count if isinstance(count, int) else max(1, len(sat) // 2)
            if len(sat) < n:
                return
            usable = [p for p in sat if (p <= within if last else p & within)]
            choices = combinations(usable, n)
        for chosen in choices:
            opts = [options(p) for p in chosen]
            for combo in product(*opts):
                yield frozenset().union(*combo)

    def request_splits(self, request, trees, free, within):
        """Valid placements of the whole request (groups in order, disjoint) inside within."""

        def rec(gi, taken):
            if gi == len(request.groups):
                yield taken
                return
            group = request.groups[gi]
            tree = trees[gi] - taken
            if not tree:
                return
            for s in self.placements(group.levels, 0, frozenset(tree), free & tree,
                                     within - taken):
                if s:
                    yield from rec(gi + 1, taken | s)

        return rec(0, frozenset())

    def valid(self, request, trees, free, chosen):
        return any(s == chosen for s in self.request_splits(request, trees, free, chosen))

    def fits(self, request, trees, free):
        return next(iter(self.request_splits(request, trees, free, frozenset(range(self.size)))),
                    None) is not None


def positions(bits):
    return frozenset(i for i in range(bits.bit_length()) if bits >> i & 1)


def trees_of(job, request, usable, size):
    out = []
    for g in request.groups:
        c = job.constraints
        if c is None:
            b = usable
        elif callable(c):
            b = usable & c(g.constraint)
        else:
            b = usable & (c[g.constraint] if g.constraint is not None else (1 << size) - 1)
        out.append(positions(b))
    return out


def occupation_intervals(occs, now):
    """(start, end, positions, blocks normal jobs) of the occupations, as the core takes them."""
    out = []
    for o in occs:
        end = now + 1 if o.start <= now and o.end <= now else o.end
        out.append((o.start, end, positions(o.bits), not o.besteffort))
    return out


def free_during(intervals, usable, start, end, for_besteffort):
    free = set(usable)
    for s, e, pos, blocks_normal in intervals:
        if s < end and start < e and (for_besteffort or blocks_normal):
            free -= pos
    return frozenset(free)


def run(scenario):
    rows, usable, occs, jobs, now, security = scenario
    return schedule_round(ResourcePool(rows, LABELS), usable, occs, jobs, now, security)


def walk(scenario, res):
    """Yield (job, placement or None, intervals before it) in placement order."""
    rows, usable, occs, jobs, now, security = scenario
    placed = {p.job_id: p for p in res.placements}
    ivs = occupation_intervals(occs, now)
    for job in placement_order(jobs):
        p = placed.get(job.job_id)
        yield job, p, list(ivs)
        if p is not None:
            ivs.append((p.start, p.start + p.walltime + security, positions(p.bits),
                        not job.besteffort or job.reservation is not None))


# ----------------------------------------------------------------------------- properties

@fast(1500)
@given(scenarios())
def test_every_job_is_placed_once_or_told_why(scenario):
    rows, usable, occs, jobs, now, security = scenario
    res = run(scenario)
    placed = [p.job_id for p in res.placements]
    assert len(placed) == len(set(placed))
    assert set(placed) | set(res.messages) == {j.job_id for j in jobs}
    assert not set(placed) & set(res.messages)
    assert all(res.messages.values())
    # placements come in placement order (reservations first, besteffort last)
    order = [j.job_id for j in placement_order(jobs)]
    assert placed == [j for j in order if j in set(placed)]
    assert sorted(res.to_launch) == sorted(p.job_id for p in res.placements if p.start == now)


@fast(1500)
@given(scenarios())
def test_no_resource_is_used_twice_at_the_same_time(scenario):
    rows, usable, occs, jobs, now, security = scenario
    res = run(scenario)
    byid = {j.job_id: j for j in jobs}
    items = [("occ", o.job_id, s, e, pos, not normal)
             for o, (s, e, pos, normal) in zip(occs, occupation_intervals(occs, now))]
    for p in res.placements:
        j = byid[p.job_id]
        items.append(("job", p.job_id, p.start, p.start + p.walltime + security,
                       positions(p.bits), j.besteffort and j.reservation is None))
    kill = set()
    for a, b in combinations(items, 2):
        if a[0] == b[0] == "occ":
            continue                                    # the input's business
        if a[2] < b[3] and b[2] < a[3] and a[4] & b[4]:
            # the only overlap allowed: a non-besteffort job on a besteffort occupation
            occ, job = (a, b) if a[0] == "occ" else (b, a)
            assert occ[0] == "occ" and job[0] == "job", (a, b)
            assert occ[5] and not byid[job[1]].besteffort, (a, b)
            occ_obj = next(o for o in occs if o.job_id == occ[1])
            if job[2] == now and occ_obj.start <= now:
                kill.add(occ[1])
    # and those running now under a job launched now are exactly the ones to kill
    assert res.besteffort_to_kill == sorted(kill)
    # every placement stays on usable resources
    assert all(p.bits & ~usable == 0 for p in res.placements)


@fast(1000)
@given(scenarios(max_resources=16, max_jobs=6))
def test_every_placement_satisfies_its_request(scenario):
    rows, usable, occs, jobs, now, security = scenario
    res = run(scenario)
    model = Model(rows)
    placed = {p.job_id: p for p in res.placements}
    for job, p, ivs in walk(scenario, res):
        if p is None:
            continue
        request = dict(job.moldables)[p.moldable_id]
        assert p.walltime == request.walltime
        assert p.start >= now and p.start >= job.earliest_start
        if job.reservation is not None:
            assert p.start == max(job.reservation, now)
        free = free_during(ivs, positions(usable), p.start, p.start + p.walltime + security,
                           job.besteffort)
        trees = trees_of(job, request, usable, model.size)
        chosen = positions(p.bits)
        # counts per level, groups disjoint and each inside its constraint, last-level
        # blocks whole and free, BEST = every satisfiable block, HALF_BEST = half of them
        assert model.valid(request, trees, free, chosen), (job, p)
    assert set(placed) <= {j.job_id for j in jobs}


@fast(1000)
@given(scenarios())
def test_the_same_input_gives_the_same_plan(scenario):
    first = run(scenario)
    again = run(scenario)
    rows, usable, occs, jobs, now, security = scenario
    # a fresh copy of everything (new pool, new objects): nothing depends on identity or
    # on state left in a pool by a previous round
    copied = run((copy.deepcopy(rows), usable, copy.deepcopy(occs), list(jobs), now, security))
    assert first == again == copied


@fast(400)
@given(scenarios(max_jobs=6))
def test_conservative_backfilling_later_jobs_never_delay_earlier_ones(scenario):
    """Each job gets exactly what it gets when the jobs placed after it are absent."""
    rows, usable, occs, jobs, now, security = scenario
    res = run(scenario)
    order = placement_order(jobs)
    for k, job in enumerate(order):
        alone = run((rows, usable, occs, order[:k + 1], now, security))
        assert alone.placement_of(job.job_id) == res.placement_of(job.job_id), job.job_id
        assert alone.messages.get(job.job_id) == res.messages.get(job.job_id)


def brute_force(model, job, usable, ivs, now, security):
    """(moldable_id, start) of the best alternative, trying every second; None if none fits."""
    best = None
    every = positions(usable)
    for mid, request in job.moldables:
        trees = trees_of(job, request, usable, model.size)
        earliest = max(now, job.earliest_start)
        if job.reservation is not None:
            t = max(now, job.reservation)
            # (a start passed by more than the walltime: the whole slot is over)
            candidates = [t] if t >= earliest and now <= job.reservation + request.walltime else []
        else:
            # past every finite end (and every start of an endless interval, a horizon),
            # the free set no longer changes: the last candidate worth trying
            horizon = max([earliest] + [e if e < FOREVER else s for s, e, _, _ in ivs]) + 1
            candidates = range(earliest, horizon + 1)
        for t in candidates:
            dur = request.walltime + security
            if model.fits(request, trees, free_during(ivs, every, t, t + dur, job.besteffort)):
                if best is None or t + request.walltime < best[0]:
                    best = (t + request.walltime, mid, t)
                break
    return None if best is None else best[1:]


@fast(500)
@given(scenarios(max_resources=8, max_jobs=5, max_groups=1, max_walltime=12))
def test_single_group_start_is_the_earliest_possible(scenario):
    """Brute force on tiny clusters: no second before the start found admits the request
    (each alternative), and the alternative kept finishes first (ties: the first)."""
    rows, usable, occs, jobs, now, security = scenario
    res = run(scenario)
    model = Model(rows)
    for job, p, ivs in walk(scenario, res):
        expected = brute_force(model, job, usable, ivs, now, security)
        got = None if p is None else (p.moldable_id, p.start)
        assert got == expected, (job, p, res.messages.get(job.job_id))


# ----------------------------------------------------------------------------- hand cases

def tree_rows(switches=2, hosts=2, cpus=2, cores=2):
    rows = []
    for s in range(switches):
        for h in range(hosts):
            host = s * hosts + h + 1
            for c in range(cpus):
                cpu = (host - 1) * cpus + c + 1
                for _ in range(cores):
                    rid = len(rows) + 1
                    rows.append({"resource_id": rid, "switch": f"sw{s + 1}",
                                 "network_address": f"host{host}", "cpu": cpu, "core": rid})
    return rows


def one(text_levels, walltime, constraint=None):
    levels = tuple(Level(lab, int(n) if n.isdigit() else n)
                   for lab, n in (part.split("=") for part in text_levels.strip("/").split("/")))
    return MoldableRequest((ResourceGroup(levels, constraint),), walltime)


def test_switch_then_nodes_takes_one_node_on_each_switch():
    rows = tree_rows()
    pool = ResourcePool(rows, LABELS)
    res = schedule_round(pool, pool.all_bits, [], [WaitingJob(1, ((1, one("/switch=2/nodes=1", 10)),))], 0)
    hosts = sorted({rows[i]["network_address"] for i in positions(res.placements[0].bits)})
    assert hosts == ["host1", "host3"]


def test_plus_groups_are_placed_when_some_split_fits():
    rows = tree_rows(1, 1, 1, 2)
    pool = ResourcePool(rows, LABELS)
    request = MoldableRequest((ResourceGroup((Level("core", 1),)),
                               ResourceGroup((Level("core", 1),), "c0")), 10)
    res = schedule_round(pool, pool.all_bits, [], [WaitingJob(1, ((1, request),),
                                                              constraints={"c0": 0b01})], 0)
    assert res.messages == {}
    assert res.placements[0].start == 0 and res.placements[0].bits == 0b11


# ----------------------------------------------------------------------------- policies

KEYS = (None, None, None, "k1", "k2")
NAMES = (None, None, None, "p1")


@st.composite
def policy_scenarios(draw):
    """The scenarios above, plus timesharing keys, placeholder / allow names, containers
    and their inner jobs (running and waiting, some naming no container), horizons
    (available_upto) and a minimum hole for backfilling."""
    rows, usable, occs, jobs, now, security = draw(scenarios(max_resources=16, max_jobs=7))
    pick = lambda seq: seq[draw(st.integers(0, len(seq) - 1))]  # noqa: E731
    occs = [replace(o, timesharing=pick(KEYS), placeholder=pick(NAMES),
                    container=draw(st.integers(0, 3)) == 0) for o in occs]
    containers = [o.job_id for o in occs if o.container]
    new_jobs = []
    for j in jobs:
        j = replace(j, timesharing=pick(KEYS), placeholder=pick(NAMES), allow=pick(NAMES),
                    container=draw(st.integers(0, 3)) == 0)
        if j.container:
            containers.append(j.job_id)
        elif containers and j.reservation is None and draw(st.integers(0, 2)) == 0:
            j = replace(j, inner=pick(containers))
        elif draw(st.integers(0, 12)) == 0:
            j = replace(j, inner=999)                   # a container that does not exist
        new_jobs.append(j)
    # running inner jobs of running containers
    running = [o for o in occs if o.container and o.start <= now]
    for k in range(draw(st.integers(0, 2)) if running else 0):
        c = pick(running)
        sub = draw(st.integers(0, c.bits)) & c.bits
        if sub:
            occs.append(Occupation(2000 + k, c.start, min(c.end, c.start + draw(st.integers(1, 30))),
                                   sub, inner=c.job_id))
    horizons = tuple((draw(st.integers(0, now + 80)), draw(st.integers(0, (1 << len(rows)) - 1)))
                     for _ in range(draw(st.integers(0, 2))))
    hole = (0, 0, 5, 20)[draw(st.integers(0, 3))]       # SCHEDULER_GANTT_HOLE_MINIMUM_TIME
    return (rows, usable, occs, new_jobs, now, security,
            RoundOptions(horizons=horizons, hole_minimum=hole))


def run_policies(scenario):
    rows, usable, occs, jobs, now, security, options = scenario
    return schedule_round(ResourcePool(rows, LABELS), usable, occs, jobs, now, security,
                          options=options)


def shares(earlier, later):
    """May ``later`` (a job being placed) use resources ``earlier`` holds at the same time?
    ``earlier``: an Occupation or a WaitingJob already placed."""
    batch_besteffort = earlier.besteffort and getattr(earlier, "reservation", None) is None
    if batch_besteffort and not later.besteffort:
        return True
    if earlier.timesharing is not None and earlier.timesharing == later.timesharing:
        return True
    if earlier.placeholder is not None and earlier.placeholder == later.allow:
        return True
    return False


@fast(800)
@given(policy_scenarios())
def test_policies_no_resource_used_twice_unless_shared(scenario):
    rows, usable, occs, jobs, now, security, options = scenario
    res = run_policies(scenario)
    byid = {j.job_id: j for j in jobs}
    assert {p.job_id for p in res.placements} | set(res.messages) == set(byid)
    occ_by_id = {o.job_id: o for o in occs}
    items = []                                          # (object, start, end, bits, order)
    for o in occs:
        end = now + 1 if o.start <= now and o.end <= now else o.end
        items.append((o, max(o.start, now), end, o.bits, -1))
    for k, p in enumerate(res.placements):
        items.append((byid[p.job_id], p.start, p.start + p.walltime + security, p.bits, k))
    windows = {}                                        # container id -> (start, end, bits)
    for o in occs:
        if o.container:
            windows[o.job_id] = (o.start, o.end - security, o.bits)
    for p in res.placements:
        if byid[p.job_id].container:
            windows[p.job_id] = (p.start, p.start + p.walltime, p.bits)
    for p in res.placements:
        j = byid[p.job_id]
        assert p.bits & ~usable == 0
        assert p.start >= now and p.start >= j.earliest_start
        # nothing at or after a horizon on its resources (inner jobs included)
        for date, hbits in options.horizons:
            if p.bits & hbits:
                assert p.start + p.walltime + security <= max(date, now), (p, date)
        if j.inner is not None:
            # inside its container: its resources, its window (with the security time)
            assert j.inner in windows, (j, windows)
            cs, ce, cb = windows[j.inner]
            assert p.bits & ~cb == 0
            assert cs <= p.start and p.start + p.walltime + security <= ce, (p, windows[j.inner])
    for a, b in combinations(items, 2):
        if a[4] == b[4] == -1:
            continue                                    # occupations: the input's business
        if not (a[1] < b[2] and b[1] < a[2] and a[3] & b[3]):
            continue
        earlier, later = (a, b) if a[4] < b[4] else (b, a)
        e, l_ = earlier[0], later[0]
        if l_.inner is not None or getattr(e, "inner", None) is not None:
            e_inner = getattr(e, "inner", None)
            if l_.inner is not None and l_.inner == e.job_id:
                continue                                # an inner job in its container
            if e_inner is not None and l_.inner is None:
                # an outer job over an inner one: judged against the container
                c = occ_by_id.get(e_inner) or byid.get(e_inner)
                assert c is not None and shares(c, l_), (a, b)
                continue
            assert e_inner != l_.inner, (a, b)          # inner jobs of one container: exclusive
            continue
        assert shares(e, l_), (a, b)


@fast(300)
@given(policy_scenarios())
def test_policies_deterministic_and_conservative(scenario):
    rows, usable, occs, jobs, now, security, options = scenario
    res = run_policies(scenario)
    assert run_policies(scenario) == res
    order = placement_order(jobs)
    for k, job in enumerate(order):
        alone = run_policies((rows, usable, occs, order[:k + 1], now, security, options))
        assert alone.placement_of(job.job_id) == res.placement_of(job.job_id), job.job_id


def test_inner_jobs_respect_horizons():
    rows = tree_rows(1, 1, 1, 2)
    pool = ResourcePool(rows, LABELS)
    container = Occupation(1, 0, 100, pool.all_bits, container=True)
    inner = WaitingJob(2, ((20, one("/core=1", 30)),), inner=1)
    res = schedule_round(pool, pool.all_bits, [container], [inner], 10,
                         options=RoundOptions(horizons=((20, pool.all_bits),)))
    assert res.placements == [] and 2 in res.messages


@st.composite
def tiny_policy_scenarios(draw):
    """Tiny clusters with sharing rules and horizons, single-group requests, no hole
    minimum (for the brute force below)."""
    rows, usable, occs, jobs, now, security = draw(
        scenarios(max_resources=8, max_jobs=5, max_groups=1, max_walltime=12))
    pick = lambda seq: seq[draw(st.integers(0, len(seq) - 1))]  # noqa: E731
    occs = [replace(o, timesharing=pick(KEYS), placeholder=pick(NAMES)) for o in occs]
    jobs = [replace(j, timesharing=pick(KEYS), placeholder=pick(NAMES), allow=pick(NAMES))
            for j in jobs]
    horizons = tuple((draw(st.integers(now, now + 40)), draw(st.integers(0, (1 << len(rows)) - 1)))
                     for _ in range(draw(st.integers(0, 2))))
    return rows, usable, occs, jobs, now, security, RoundOptions(horizons=horizons)


@fast(400)
@given(tiny_policy_scenarios())
def test_policies_start_is_the_earliest_possible(scenario):
    """Brute force with the sharing rules: a job sees free what the earlier jobs and
    occupations it may share with hold, and nothing of a horizon from its date on."""
    rows, usable, occs, jobs, now, security, options = scenario
    res = run_policies(scenario)
    model = Model(rows)
    placed = {p.job_id: p for p in res.placements}
    held = [(o, max(o.start, now), now + 1 if o.start <= now and o.end <= now else o.end,
             positions(o.bits)) for o in occs]
    for job in placement_order(jobs):
        ivs = [(s, e, pos, True) for o, s, e, pos in held if not shares(o, job)]
        ivs += [(date, FOREVER, positions(bits), True) for date, bits in options.horizons]
        expected = brute_force(model, job, usable, ivs, now, security)
        p = placed.get(job.job_id)
        got = None if p is None else (p.moldable_id, p.start)
        assert got == expected, (job, p, res.messages.get(job.job_id))
        if p is not None:
            held.append((job, p.start, p.start + p.walltime + security, positions(p.bits)))
