"""Tests of one scheduling round (oar_appliance.sched.core).

Hand cases first, then invariants on generated clusters and jobs, then a benchmark.
"""

from __future__ import annotations

import random
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oar_appliance.lang.request import Level, MoldableRequest, ResourceGroup
from oar_appliance.sched.core import (Occupation, WaitingJob, placement_order,
                                      schedule_round)
from oar_appliance.sched.gantt import Gantt
from oar_appliance.sched.hierarchy import ResourcePool, fit_request

LABELS = ("resource_id", "network_address", "cpu", "core", "switch")


def make_pool(nodes, cores=1):
    rows, rid = [], 1
    for n in range(nodes):
        for c in range(cores):
            rows.append({"resource_id": rid, "network_address": f"node{n + 1}",
                         "cpu": n, "core": rid, "switch": f"sw{n // 2 + 1}"})
            rid += 1
    return ResourcePool(rows, LABELS)


def req(text, walltime, constraint=None):
    levels = []
    for part in text.strip("/").split("/"):
        label, count = part.split("=")
        levels.append(Level(label, int(count) if count.isdigit() else count))
    return MoldableRequest((ResourceGroup(tuple(levels), constraint),), walltime)


def job(job_id, text, walltime, **kw):
    return WaitingJob(job_id, ((job_id * 10, req(text, walltime)),), **kw)


def nodes_of(pool, bits):
    return sorted({pool.rows[p]["network_address"] for p in range(pool.size)
                   if bits >> p & 1})


def node_bits(pool, *names):
    return pool.bits_where(lambda r: r["network_address"] in names)


# ----------------------------------------------------------------------------- hand cases

def test_fifo_on_a_busy_cluster():
    pool = make_pool(4)
    occ = [Occupation(1, 0, 100, node_bits(pool, "node1", "node2"))]
    jobs = [job(2, "/nodes=3", 50), job(3, "/nodes=2", 50), job(4, "/nodes=4", 10)]
    res = schedule_round(pool, pool.all_bits, occ, jobs, now=10)
    p = {pl.job_id: pl for pl in res.placements}
    assert p[2].start == 100                   # needs 3 nodes: after job 1
    assert p[3].start == 10                    # 2 free nodes now
    assert nodes_of(pool, p[3].bits) == ["node3", "node4"]
    assert p[4].start == 150                   # after job 2 (ends 150)
    assert res.to_launch == [3]
    assert p[2].moldable_id == 20 and p[2].walltime == 50 and p[2].end == 150


def test_security_time_extends_every_walltime():
    pool = make_pool(2)
    jobs = [job(1, "/nodes=2", 50), job(2, "/nodes=1", 10)]
    res = schedule_round(pool, pool.all_bits, [], jobs, now=0, security_time=5)
    p = {pl.job_id: pl for pl in res.placements}
    assert p[1].start == 0 and p[2].start == 55
    # an occupation's end is taken as given (the caller includes the security time)
    res = schedule_round(pool, pool.all_bits, [Occupation(9, 0, 30, pool.all_bits)],
                         [job(1, "/nodes=1", 10)], now=0, security_time=5)
    assert res.placements[0].start == 30


def test_backfilling_does_not_delay_the_big_job():
    pool = make_pool(4)
    occ = [Occupation(1, 0, 100, node_bits(pool, "node1", "node2"))]
    jobs = [job(2, "/nodes=4", 50),            # must wait for job 1: start 100
            job(3, "/nodes=2", 90),            # fits in the hole in front of it
            job(4, "/nodes=2", 91)]            # would delay job 2: after it
    res = schedule_round(pool, pool.all_bits, occ, jobs, now=0)
    p = {pl.job_id: pl for pl in res.placements}
    assert p[2].start == 100
    assert p[3].start == 0
    assert p[4].start == 150
    assert res.to_launch == [3]


def test_moldable_keeps_the_alternative_finishing_first():
    pool = make_pool(4)
    occ = [Occupation(1, 0, 100, node_bits(pool, "node1", "node2"))]
    # 4 nodes x 10 s finishes at 110; 2 nodes x 60 s finishes at 60: the second
    j = WaitingJob(2, ((21, req("/nodes=4", 10)), (22, req("/nodes=2", 60))))
    res = schedule_round(pool, pool.all_bits, occ, [j], now=0)
    assert res.placements[0].moldable_id == 22 and res.placements[0].start == 0
    # 2 nodes x 120 s would finish at 120: the first (110)
    j = WaitingJob(2, ((21, req("/nodes=4", 10)), (22, req("/nodes=2", 120))))
    res = schedule_round(pool, pool.all_bits, occ, [j], now=0)
    assert res.placements[0].moldable_id == 21 and res.placements[0].start == 100
    # ties: the first given
    j = WaitingJob(2, ((21, req("/nodes=4", 10)), (22, req("/nodes=2", 110))))
    res = schedule_round(pool, pool.all_bits, occ, [j], now=0)
    assert res.placements[0].moldable_id == 21
    # an impossible alternative is skipped
    j = WaitingJob(2, ((21, req("/nodes=9", 10)), (22, req("/nodes=2", 500))))
    res = schedule_round(pool, pool.all_bits, occ, [j], now=0)
    assert res.placements[0].moldable_id == 22


def test_besteffort_does_not_block_and_is_listed_to_kill():
    pool = make_pool(4)
    occ = [Occupation(1, 0, 1000, node_bits(pool, "node1", "node2"), besteffort=True),
           Occupation(2, 0, 1000, node_bits(pool, "node4"), besteffort=True),
           Occupation(3, 0, 50, node_bits(pool, "node3"))]
    jobs = [job(4, "/nodes=2", 100),                   # on node1, node2, now
            job(5, "/nodes=1", 10, besteffort=True),
            job(6, "/nodes=3", 10)]                    # node3 is busy until 50
    res = schedule_round(pool, pool.all_bits, occ, jobs, now=0)
    p = {pl.job_id: pl for pl in res.placements}
    assert p[4].start == 0 and nodes_of(pool, p[4].bits) == ["node1", "node2"]
    assert p[6].start == 100
    # the besteffort job waits for everything placed before it (node3 free at 50)
    assert p[5].start == 50 and nodes_of(pool, p[5].bits) == ["node3"]
    assert res.to_launch == [4]
    assert res.besteffort_to_kill == [1]               # not 2: job 6 starts later
    # a normal job started now on node4 too kills job 2
    res = schedule_round(pool, pool.all_bits, occ, [job(7, "/nodes=3", 10)], now=0)
    assert res.besteffort_to_kill == [1, 2]
    # a besteffort job started now kills nothing
    res = schedule_round(pool, pool.all_bits, occ[1:2],
                         [job(8, "/nodes=3", 10, besteffort=True)], now=0)
    assert res.to_launch == [8] and res.besteffort_to_kill == []


def test_reservation_at_its_date_or_rejected():
    pool = make_pool(2)
    occ = [Occupation(1, 0, 100, node_bits(pool, "node1"))]
    jobs = [job(2, "/nodes=2", 50),                    # batch, given first
            job(3, "/nodes=1", 30, reservation=20),    # placed before the batch jobs
            job(4, "/nodes=2", 30, reservation=50),    # node1 busy at 50: rejected
            job(5, "/nodes=2", 10, reservation=200)]
    res = schedule_round(pool, pool.all_bits, occ, jobs, now=0)
    p = {pl.job_id: pl for pl in res.placements}
    assert p[3].start == 20 and nodes_of(pool, p[3].bits) == ["node2"]
    assert 4 not in p and res.messages[4].startswith("reservation rejected")
    assert p[5].start == 200
    assert p[2].start == 100                           # 100..150 fits before 200
    assert [pl.job_id for pl in res.placements] == [3, 5, 2]
    # a reservation whose date has passed starts now
    res = schedule_round(pool, pool.all_bits, [], [job(6, "/nodes=1", 10, reservation=5)],
                         now=10)
    assert res.placements[0].start == 10 and res.to_launch == [6]
    # one whose start passed by more than its walltime: its slot is over, rejected
    res = schedule_round(pool, pool.all_bits, [], [job(7, "/nodes=1", 10, reservation=5)],
                         now=16)
    assert res.placements == [] and res.messages[7].startswith("reservation rejected")


def test_earliest_start_is_honoured():
    pool = make_pool(2)
    res = schedule_round(pool, pool.all_bits, [],
                         [job(1, "/nodes=1", 10, earliest_start=40), job(2, "/nodes=2", 10)],
                         now=0)
    p = {pl.job_id: pl for pl in res.placements}
    assert p[1].start == 40 and p[2].start == 0
    assert res.to_launch == [2]


def test_after_keeps_a_dependent_job_in_its_place():
    """``after``: the dependent job starts after its required job's end, in its place in
    the order (the job queued after it goes after it); a required job not placed gives
    it a message."""
    pool = make_pool(2)
    jobs = [job(1, "/nodes=2", 10),
            job(2, "/nodes=1", 10),                    # required: 11..21 (security 1)
            job(3, "/nodes=2", 10, after=(2,)),        # not before 21
            job(4, "/nodes=2", 10),                    # after 3, not in front of it
            job(5, "/nodes=3", 10),                    # never fits
            job(6, "/nodes=1", 10, after=(5,))]
    res = schedule_round(pool, pool.all_bits, [], jobs, now=0, security_time=1)
    p = {pl.job_id: pl for pl in res.placements}
    assert (p[1].start, p[2].start, p[3].start, p[4].start) == (0, 11, 22, 33)
    assert 6 not in p and res.messages[6] == "dependency on job 5 which is not scheduled"


def test_messages_and_errors_do_not_stop_the_round():
    pool = make_pool(2)
    jobs = [job(1, "/nodes=3", 10),
            job(2, "/bogus=1", 10),
            WaitingJob(3, ((30, req("/nodes=1", None)),)),
            WaitingJob(4, ((40, req("/nodes=1", 10, "switch = sw9")),),
                       constraints={"switch = sw1": pool.all_bits}),
            WaitingJob(5, ((50, req("/nodes=1", 10, "x")),),
                       constraints=lambda t: 1 // 0),
            job(6, "/nodes=1", 10),
            WaitingJob(7, ())]
    res = schedule_round(pool, pool.all_bits, [], jobs, now=0)
    assert [pl.job_id for pl in res.placements] == [6]
    m = res.messages
    assert m[1].startswith("cannot be satisfied: group 1") and "network_address" in m[1]
    assert "unknown resource label" in m[2]
    assert "no walltime" in m[3]
    assert m[4].startswith("error:") and "switch = sw9" in m[4]
    assert m[5].startswith("error:")
    assert "no resource request" in m[7]


def test_constraints_and_usable():
    pool = make_pool(4)
    sw2 = pool.bits_where(lambda r: r["switch"] == "sw2")
    usable = pool.all_bits & ~node_bits(pool, "node3")
    j = WaitingJob(1, ((10, req("/nodes=1", 10, "switch = sw2")),),
                   constraints={"switch = sw2": sw2})
    res = schedule_round(pool, usable, [], [j], now=0)
    assert nodes_of(pool, res.placements[0].bits) == ["node4"]
    j2 = WaitingJob(2, ((20, req("/nodes=2", 10, "switch = sw2")),),
                    constraints=lambda t: sw2)
    res = schedule_round(pool, usable, [], [j2], now=0)
    assert res.messages[2].startswith("cannot be satisfied")


def test_overdue_running_job_still_holds_its_resources():
    pool = make_pool(1)
    res = schedule_round(pool, pool.all_bits, [Occupation(1, 0, 50, pool.all_bits)],
                         [job(2, "/nodes=1", 10)], now=60)
    assert res.placements[0].start == 61 and res.to_launch == []


# ----------------------------------------------------------------------------- invariants

@st.composite
def scenarios(draw):
    nodes = draw(st.integers(1, 5))
    cores = draw(st.integers(1, 3))
    pool = make_pool(nodes, cores)
    usable = pool.all_bits
    if draw(st.booleans()):
        usable &= ~(1 << draw(st.integers(0, pool.size - 1)))
    now = draw(st.integers(0, 20))
    occs = []
    for i in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, 40))
        occs.append(Occupation(1000 + i, start, start + draw(st.integers(1, 40)),
                               draw(st.integers(1, pool.all_bits)),
                               besteffort=draw(st.integers(0, 3)) == 0))
    texts = ["/nodes=1", "/nodes=2", "/core=1", "/core=2", "/nodes=1/core=2",
             "/switch=1/nodes=1", "/core=BEST", "/nodes=ALL", "/core=HALF_BEST"]
    jobs = []
    for jid in range(1, draw(st.integers(1, 8)) + 1):
        mold = []
        for k in range(draw(st.integers(1, 2))):
            text = draw(st.sampled_from(texts))
            if draw(st.integers(0, 4)) == 0:
                groups = (ResourceGroup(req(text, 1).groups[0].levels),
                          ResourceGroup(req("/core=1", 1).groups[0].levels, "switch = sw1"))
                r = MoldableRequest(groups, draw(st.integers(1, 30)))
            else:
                r = req(text, draw(st.integers(1, 30)))
            mold.append((jid * 10 + k, r))
        reservation = draw(st.integers(0, 60)) if draw(st.integers(0, 6)) == 0 else None
        jobs.append(WaitingJob(
            jid, tuple(mold),
            constraints={"switch = sw1": pool.bits_where(lambda r: r["switch"] == "sw1")},
            earliest_start=draw(st.integers(0, 50)) if draw(st.booleans()) else 0,
            besteffort=draw(st.integers(0, 4)) == 0, reservation=reservation))
    security = draw(st.sampled_from([0, 0, 1, 5]))
    return pool, usable, occs, jobs, now, security


def intervals(res, jobs, occs, security, now):
    walltime = {}
    for j in jobs:
        for mid, r in j.moldables:
            walltime[(j.job_id, mid)] = r.walltime
    be = {j.job_id: j.besteffort for j in jobs}
    out = [(o.job_id, max(o.start, now), max(o.end, now + 1) if o.start <= now else o.end,
            o.bits, o.besteffort) for o in occs]
    for p in res.placements:
        out.append((p.job_id, p.start, p.start + walltime[(p.job_id, p.moldable_id)] + security,
                    p.bits, be[p.job_id]))
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_round_invariants(scenario):
    pool, usable, occs, jobs, now, security = scenario
    res = schedule_round(pool, usable, occs, jobs, now, security)
    byid = {j.job_id: j for j in jobs}
    placed = {p.job_id for p in res.placements}
    assert len(placed) == len(res.placements)
    assert placed | set(res.messages) == set(byid) and not placed & set(res.messages)
    # determinism
    assert schedule_round(pool, usable, occs, jobs, now, security) == res
    cons = {None: pool.all_bits,
            "switch = sw1": pool.bits_where(lambda r: r["switch"] == "sw1")}
    for p in res.placements:
        j = byid[p.job_id]
        request = dict(j.moldables)[p.moldable_id]
        # the placement satisfies its request on its own bits
        bits, why = fit_request(pool, request, usable, p.bits, lambda t: cons[t])
        assert bits is not None and bits & ~p.bits == 0, why
        if not any(isinstance(lv.count, str) and lv.count != "ALL"
                   for g in request.groups for lv in g.levels):
            assert bits == p.bits          # (BEST / HALF_BEST of a placement shrink it)
        assert p.bits & ~usable == 0
        assert p.start >= now and p.start >= j.earliest_start
        if j.reservation is not None:
            assert p.start == max(j.reservation, now)
        assert (p.job_id in res.to_launch) == (p.start == now)
    # no resource used twice at the same time, besteffort aside
    ivs = intervals(res, jobs, occs, security, now)
    for a in range(len(ivs)):
        for b in range(a + 1, len(ivs)):
            ja, sa, ea, ba, bea = ivs[a]
            jb, sb, eb, bb, beb = ivs[b]
            if (ja in byid or jb in byid) and sa < eb and sb < ea and ba & bb:
                # only allowed between a besteffort occupation and a normal job
                assert bea != beb, (ivs[a], ivs[b])
                assert (ja in byid) != (jb in byid), (ivs[a], ivs[b])
    # besteffort_to_kill: exactly the running besteffort occupations that a normal job
    # launched now overlaps
    expected = {o.job_id for o in occs if o.besteffort and o.start <= now  # (overdue too)
                and any(o.bits & p.bits for p in res.placements
                        if p.start == now and not byid[p.job_id].besteffort)}
    assert res.besteffort_to_kill == sorted(expected)
    # conservative backfilling: each job gets the start it gets with only the jobs before
    # it (in the placement order: reservations first, besteffort last)
    order = placement_order(jobs)
    for k, j in enumerate(order):
        alone = schedule_round(pool, usable, occs, order[:k + 1], now, security)
        assert alone.placement_of(j.job_id) == res.placement_of(j.job_id)
        assert alone.messages.get(j.job_id) == res.messages.get(j.job_id)


def reference_round(pool, usable, occs, jobs, now, security):
    """A naive model of the round: every candidate start scanned, no memo, no bound."""
    normal, everything = Gantt(now, usable), Gantt(now, usable)
    for o in occs:
        end = max(o.end, now + 1) if o.start <= now else o.end
        everything.occupy(o.start, end, o.bits)
        if not o.besteffort:
            normal.occupy(o.start, end, o.bits)
    out = {}
    for j in placement_order(jobs):
        g = everything if j.besteffort else normal
        cons = {None: pool.all_bits, **j.constraints}
        best = None
        for mid, r in j.moldables:
            earliest = max(now, j.earliest_start)
            if j.reservation is not None:
                if max(now, j.reservation) < earliest:
                    break                           # before its dependencies: rejected
                if now > j.reservation + r.walltime:
                    continue                        # its whole slot has passed
                earliest = max(now, j.reservation)
            for s in g.candidate_starts(earliest):
                if j.reservation is not None and s > earliest:
                    break
                bits, _ = fit_request(pool, r, usable,
                                      g.free_during(s, s + r.walltime + security),
                                      lambda t: cons[t], explain=False)
                if bits is not None:
                    if best is None or s + r.walltime < best[0]:
                        best = (s + r.walltime, mid, s, bits, r.walltime)
                    break
        if best is None:
            continue
        _, mid, s, bits, w = best
        out[j.job_id] = (mid, s, bits)
        everything.occupy(s, s + w + security, bits)
        if not j.besteffort or j.reservation is not None:
            normal.occupy(s, s + w + security, bits)
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_round_agrees_with_a_naive_model(scenario):
    pool, usable, occs, jobs, now, security = scenario
    res = schedule_round(pool, usable, occs, jobs, now, security)
    got = {p.job_id: (p.moldable_id, p.start, p.bits) for p in res.placements}
    assert got == reference_round(pool, usable, occs, jobs, now, security)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 20)), min_size=1, max_size=10),
       st.integers(0, 9))
def test_earliest_start_among_all_candidates(shapes, now):
    """Single-node-count jobs: each start is the first second at which the request fits
    (checked against a per-second model of the Gantt built from the earlier jobs)."""
    pool = make_pool(3)
    jobs = [job(i + 1, f"/nodes={n}", w) for i, (n, w) in enumerate(shapes)]
    res = schedule_round(pool, pool.all_bits, [], jobs, now)
    busy: dict[int, int] = {}
    for j, p in zip(jobs, res.placements):
        n, w = shapes[j.job_id - 1]
        t = now
        while True:
            used = 0
            for s in range(t, t + w):
                used |= busy.get(s, 0)
            if 3 - used.bit_count() >= n:      # n nodes free during the whole walltime
                break
            t += 1
        assert p.start == t
        for s in range(p.start, p.start + w):
            busy[s] = busy.get(s, 0) | p.bits


# ----------------------------------------------------------------------------- benchmark

def test_benchmark():
    rnd = random.Random(42)
    pool = make_pool(100)
    occs = [Occupation(i, 0, rnd.randint(100, 3600), 1 << i) for i in range(0, 100, 3)]
    jobs = [job(1000 + i, f"/nodes={rnd.choice([1, 1, 2, 4, 8, 16, 32])}",
                rnd.randint(1, 48) * 300) for i in range(500)]
    schedule_round(pool, pool.all_bits, occs, jobs[:5], now=0)        # label indexes
    t = time.perf_counter()
    res = schedule_round(pool, pool.all_bits, occs, jobs, now=0, security_time=60)
    t500 = time.perf_counter() - t
    assert len(res.placements) == 500

    pool10 = make_pool(10)
    jobs = [job(i + 1, f"/core={1 + i % 3}", 60 + i) for i in range(1024)]
    schedule_round(pool10, pool10.all_bits, [], jobs[:5], now=0)
    t = time.perf_counter()
    res = schedule_round(pool10, pool10.all_bits, [], jobs, now=0, security_time=60)
    t1024 = time.perf_counter() - t
    assert len(res.placements) == 1024
    print(f"\ncore: 500 node jobs on 100 nodes {t500 * 1e3:.1f} ms; "
          f"1024 jobs with distinct walltimes on 10 resources {t1024 * 1e3:.1f} ms")
    assert t500 < 0.5 and t1024 < 1.0        # loose (targets: 0.05 s and 0.1 s)


@st.composite
def crowded_scenarios(draw):
    """Many jobs of few shapes on nodes of different sizes: the memos shared between jobs
    (failures, bounds, lower bounds, the shared Gantt of everything) are used."""
    shape = draw(st.lists(st.integers(1, 4), min_size=2, max_size=6))
    rows, rid = [], 1
    for n, cores in enumerate(shape):
        for _ in range(cores):
            rows.append({"resource_id": rid, "network_address": f"node{n + 1}", "cpu": n,
                         "core": rid, "switch": f"sw{n // 2 + 1}"})
            rid += 1
    pool = ResourcePool(rows, LABELS)
    usable = pool.all_bits
    if draw(st.booleans()):
        usable &= ~(1 << draw(st.integers(0, pool.size - 1)))
    now = draw(st.integers(0, 10))
    occs = []
    for i in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, 30))
        occs.append(Occupation(1000 + i, start, start + draw(st.integers(1, 30)),
                               draw(st.integers(1, pool.all_bits)),
                               besteffort=draw(st.integers(0, 2)) == 0))
    shapes = draw(st.lists(st.sampled_from(
        ["/nodes=1", "/nodes=2", "/core=1", "/core=3", "/nodes=1/core=2", "/switch=1/nodes=1",
         "/nodes=BEST", "/core=ALL"]), min_size=1, max_size=3))
    sw1 = pool.bits_where(lambda r: r["switch"] == "sw1")
    jobs = []
    for jid in range(1, draw(st.integers(5, 25)) + 1):
        text = draw(st.sampled_from(shapes))
        constraint = "switch = sw1" if draw(st.integers(0, 3)) == 0 else None
        mold = ((jid * 10, req(text, draw(st.sampled_from([3, 5, 8, 13])), constraint)),)
        jobs.append(WaitingJob(
            jid, mold, constraints={"switch = sw1": sw1},
            earliest_start=draw(st.integers(0, 20)) if draw(st.integers(0, 3)) == 0 else 0,
            besteffort=draw(st.integers(0, 4)) == 0,
            reservation=draw(st.integers(0, 40)) if draw(st.integers(0, 8)) == 0 else None))
    return pool, usable, occs, jobs, now, draw(st.sampled_from([0, 1]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crowded_scenarios())
def test_crowded_round_agrees_with_a_naive_model(scenario):
    pool, usable, occs, jobs, now, security = scenario
    res = schedule_round(pool, usable, occs, jobs, now, security)
    got = {p.job_id: (p.moldable_id, p.start, p.bits) for p in res.placements}
    assert got == reference_round(pool, usable, occs, jobs, now, security)
