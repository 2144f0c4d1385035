"""Scheduling policies of the pure core: timesharing, placeholder/allow, containers,
resource availability, SCHEDULER_TIMEOUT, reservations at their start."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oar_appliance.sched.core import (TIMEOUT_MESSAGE, Occupation, RoundOptions, WaitingJob,
                                      placement_order, schedule_round)
from oar_appliance.sched.hierarchy import ResourcePool
from oar_appliance.sched.reservations import (EXPIRED, LAUNCH, NO_RESOURCE, REDUCE, WAIT,
                                              reservation_at_start)
from oar_appliance.sched.sharing import Share, Views, job_policy, timesharing_key
from tests.unit.test_core import job, make_pool, node_bits, nodes_of, req

NOW = 1000


def ts(user, name, mode="*,*"):
    return timesharing_key(mode, user, name)


# ----------------------------------------------------------------------------- timesharing

def test_timesharing_keys_substitute_user_and_name():
    assert ts("alice", "a") == ts("bob", "b") == "*,*"
    assert ts("alice", "a", "") == "*,*"
    assert ts("alice", "a", "user,*") == ts("alice", "b", "user,*") != ts("bob", "a", "user,*")
    assert ts("alice", "a", "*,name") == ts("bob", "a", "*,name") != ts("alice", "b", "*,name")
    assert ts("alice", "a", "user,name") != ts("alice", "b", "user,name")
    assert ts("alice", "a", "user,name") != ts("bob", "a", "user,name")
    assert ts("alice", "a", "user,name") == ts("alice", "a", "user,name")
    # the modes differ from each other even for the same job
    keys = {ts("alice", "a", m) for m in ("*,*", "user,*", "*,name", "user,name")}
    assert len(keys) == 4
    with pytest.raises(ValueError):
        timesharing_key("alice,*", "alice", "a")


def test_job_policy_reads_types():
    p = job_policy(["timesharing=user,*", "allow=gpu", "inner=42"], "alice", "x")
    assert (p.timesharing, p.allow, p.inner, p.container) == ("user=alice,*", "gpu", "42", None)
    p = job_policy(["container", "placeholder=ph", "besteffort"])
    assert (p.container, p.placeholder, p.besteffort, p.timesharing) == ("", "ph", True, None)
    assert job_policy(["timesharing"]).timesharing == "*,*"
    with pytest.raises(ValueError):
        job_policy(["timesharing=me,you"])


def test_timesharing_jobs_of_one_key_share_a_node():
    pool = make_pool(1)
    key = ts("alice", "a")
    jobs = [job(1, "/nodes=1", 100, timesharing=key), job(2, "/nodes=1", 100, timesharing=key),
            job(3, "/nodes=1", 100)]
    res = schedule_round(pool, pool.all_bits, [], jobs, now=NOW, security_time=1)
    assert [res.placement_of(j).start for j in (1, 2)] == [NOW, NOW]
    assert res.placement_of(3).start == NOW + 101            # a normal job never shares
    assert res.to_launch == [1, 2]


def test_timesharing_with_running_jobs_and_keys():
    pool = make_pool(2)
    alice = ts("alice", "x", "user,*")
    running = [Occupation(1, NOW - 10, NOW + 500, node_bits(pool, "node1"), timesharing=alice),
               Occupation(2, NOW - 10, NOW + 300, node_bits(pool, "node2"))]
    jobs = [job(10, "/nodes=1", 100, timesharing=ts("alice", "y", "user,*")),   # same key
            job(11, "/nodes=1", 100, timesharing=ts("bob", "y", "user,*")),     # other user
            job(12, "/nodes=1", 100, timesharing=ts("alice", "y")),             # other mode
            job(13, "/nodes=1", 50)]                                            # not shared
    res = schedule_round(pool, pool.all_bits, running, jobs, now=NOW)
    p10 = res.placement_of(10)
    assert (p10.start, nodes_of(pool, p10.bits)) == (NOW, ["node1"])
    # bob's job cannot share alice's node1 nor the exclusive node2: after node2 frees
    assert res.placement_of(11).start == NOW + 300
    assert nodes_of(pool, res.placement_of(11).bits) == ["node2"]
    # job 12 (key *,*) shares with job 11 (key user=bob,*)? no: other key, after it
    assert res.placement_of(12).start == NOW + 400
    # the exclusive job: node2 after 12 ends? node1 frees at NOW + 500 (10 ends NOW + 100)
    assert res.placement_of(13).start == NOW + 500


def test_timesharing_views_are_built_once_per_key():
    built = []

    class FakeGantt:
        def __init__(self):
            self.taken = []

        def occupy(self, start, end, bits):
            self.taken.append((start, end, bits))

        def copy(self):
            other = FakeGantt()
            other.taken = self.taken[:]
            return other

    class FakePlacer:
        def __init__(self):
            self.gantt = FakeGantt()
            built.append(self)

    views = Views(FakePlacer)
    views.occupy(0, 10, 0b01)
    views.occupy(0, 10, 0b10, Share(timesharing="k"))
    a = views.placer((False, "k", None))
    b = views.placer((False, None, None))
    assert views.placer((False, "k", None)) is a and len(built) == 2
    assert a.gantt.taken == [(0, 10, 0b01)]
    assert b.gantt.taken == [(0, 10, 0b01), (0, 10, 0b10)]
    views.occupy(5, 6, 0b100, Share(timesharing="k"))      # applied to b only
    assert a.gantt.taken[-1] == (0, 10, 0b01) and b.gantt.taken[-1] == (5, 6, 0b100)


def test_views_of_keys_without_jobs_to_come_are_dropped():
    class FakeGantt:
        def __init__(self):
            self.taken = []

        def occupy(self, start, end, bits):
            self.taken.append((start, end, bits))

        def copy(self):
            other = FakeGantt()
            other.taken = self.taken[:]
            return other

    class FakePlacer:
        def __init__(self):
            self.gantt = FakeGantt()

    views = Views(FakePlacer)
    views.expect([(False, "k", None), (False, "k", None), (False, None, "p")])
    views.occupy(0, 10, 0b1, Share(timesharing="k"))
    views.occupy(0, 10, 0b10, Share(placeholder="p"))
    k, p = views.placer((False, "k", None)), views.placer((False, None, "p"))
    views.done((False, "k", None))
    assert (False, "k", None) in views.keys()             # one "k" job still to come
    views.done((False, "k", None))
    views.occupy(20, 30, 0b100)
    assert (False, "k", None) not in views.keys() and k.gantt.taken[-1] != (20, 30, 0b100)
    assert p.gantt.taken[-1] == (20, 30, 0b100)
    views.done((False, None, "p"))
    assert views.keys() == []
    # asked again anyway: rebuilt from every record
    again = views.placer((False, "k", None))
    assert again.gantt.taken == [(0, 10, 0b10), (20, 30, 0b100)]


def test_besteffort_timesharing_job_sees_besteffort_and_key():
    pool = make_pool(1)
    key = ts("u", "n")
    occ = [Occupation(1, NOW - 5, NOW + 100, pool.all_bits, besteffort=True, timesharing=key)]
    shared = job(2, "/nodes=1", 10, besteffort=True, timesharing=key)
    other = job(3, "/nodes=1", 10, besteffort=True)
    res = schedule_round(pool, pool.all_bits, occ, [shared, other], now=NOW)
    assert res.placement_of(2).start == NOW
    assert res.placement_of(3).start == NOW + 100


# ----------------------------------------------------------------------------- placeholder

def test_placeholder_resources_only_for_allow_jobs():
    pool = make_pool(2)
    ph = [Occupation(1, NOW - 10, NOW + 1000, node_bits(pool, "node1"), placeholder="gpu")]
    jobs = [job(2, "/nodes=2", 50),                         # needs node1: after the placeholder
            job(3, "/nodes=1", 50, allow="gpu"),            # may use node1 now
            job(4, "/nodes=1", 50, allow="gpu"),            # node2 (node1 taken by job 3)
            job(5, "/nodes=1", 50, allow="gpu"),            # node1 after job 3
            job(6, "/nodes=1", 50, allow="other")]          # node1 is not for it
    res = schedule_round(pool, pool.all_bits, ph, jobs, now=NOW)
    assert res.placement_of(2).start == NOW + 1000
    p3, p4, p5, p6 = (res.placement_of(j) for j in (3, 4, 5, 6))
    assert (p3.start, nodes_of(pool, p3.bits)) == (NOW, ["node1"])
    assert (p4.start, nodes_of(pool, p4.bits)) == (NOW, ["node2"])
    assert (p5.start, nodes_of(pool, p5.bits)) == (NOW + 50, ["node1"])
    assert nodes_of(pool, p6.bits) == ["node2"] and p6.start == NOW + 50


def test_placeholder_placed_in_the_round_then_allow_job():
    pool = make_pool(2)
    jobs = [job(1, "/nodes=1", 500, placeholder="p"), job(2, "/nodes=2", 10, allow="p"),
            job(3, "/nodes=2", 10)]
    res = schedule_round(pool, pool.all_bits, [], jobs, now=NOW)
    assert res.placement_of(1).start == NOW
    assert res.placement_of(2).start == NOW                 # node1 (placeholder) + node2
    assert res.placement_of(3).start == NOW + 500


# ----------------------------------------------------------------------------- containers

def test_inner_jobs_inside_a_running_container():
    pool = make_pool(4)
    sec = 1
    container = Occupation(1, NOW - 100, NOW - 100 + 1000 + sec, node_bits(pool, "node2", "node3"),
                           container=True)
    jobs = [job(2, "/nodes=1", 200, inner=1),
            job(5, "/nodes=1", 900 - sec, inner=1),         # ends exactly at the window's end
            job(6, "/nodes=1", 900 - sec + 1, inner=1),     # one second too long
            job(3, "/nodes=1", 200, inner=1),               # after job 2, on node2
            job(4, "/nodes=3", 10, inner=1),                # more than the container has
            job(7, "/nodes=1", 10, inner=99),               # no such container
            job(8, "/nodes=2", 10)]                         # outside: nodes 1 and 4
    res = schedule_round(pool, pool.all_bits, [container], jobs, now=NOW, security_time=sec)
    p2 = res.placement_of(2)
    assert (p2.start, nodes_of(pool, p2.bits)) == (NOW, ["node2"])
    p5 = res.placement_of(5)
    assert (p5.start, nodes_of(pool, p5.bits)) == (NOW, ["node3"])
    assert p5.start + p5.walltime + sec == NOW - 100 + 1000
    p3 = res.placement_of(3)
    assert (p3.start, nodes_of(pool, p3.bits)) == (NOW + 200 + sec, ["node2"])
    assert "in container job 1" in res.messages[4] and "node" in res.messages[4]
    assert 6 in res.messages and res.placement_of(6) is None
    assert "container job 99" in res.messages[7]
    assert nodes_of(pool, res.placement_of(8).bits) == ["node1", "node4"]


def test_container_placed_in_the_round_takes_its_inner_jobs():
    pool = make_pool(3)
    occ = [Occupation(1, NOW - 10, NOW + 300, node_bits(pool, "node1"))]
    inner_first = job(3, "/nodes=1", 100, inner=2)          # given before its container
    container = job(2, "/nodes=3", 1000, container=True)
    res = schedule_round(pool, pool.all_bits, occ, [inner_first, container], now=NOW)
    assert [j.job_id for j in placement_order([inner_first, container])] == [2, 3]
    pc, pi = res.placement_of(2), res.placement_of(3)
    assert pc.start == NOW + 300
    assert pi.start == pc.start and pi.bits & pc.bits == pi.bits
    assert res.to_launch == []


def test_inner_job_of_a_finished_container_window():
    pool = make_pool(1)
    occ = [Occupation(1, NOW - 500, NOW - 10, pool.all_bits, container=True)]  # overdue
    res = schedule_round(pool, pool.all_bits, occ, [job(2, "/nodes=1", 10, inner=1)], now=NOW)
    assert "end of its walltime" in res.messages[2]


def test_running_inner_jobs_hold_their_part_of_the_container():
    pool = make_pool(2)
    occ = [Occupation(1, NOW - 10, NOW + 1000, pool.all_bits, container=True),
           Occupation(2, NOW - 10, NOW + 100, node_bits(pool, "node1"), inner=1)]
    res = schedule_round(pool, pool.all_bits, occ, [job(3, "/nodes=2", 10, inner=1)], now=NOW)
    assert res.placement_of(3).start == NOW + 100


# ----------------------------------------------------------------------------- availability

def test_horizon_available_upto():
    pool = make_pool(2)
    opts = RoundOptions(horizons=((NOW + 100, node_bits(pool, "node1")),))
    jobs = [job(1, "/nodes=1", 99), job(2, "/nodes=1", 200), job(3, "/nodes=2", 10),
            job(4, "/nodes=2", 200)]
    res = schedule_round(pool, pool.all_bits, [], jobs, now=NOW, security_time=1, options=opts)
    assert nodes_of(pool, res.placement_of(1).bits) == ["node1"]       # ends at NOW + 100
    assert nodes_of(pool, res.placement_of(2).bits) == ["node2"]       # would cross it
    assert res.placement_of(3) is None or res.placement_of(3).start + 11 <= NOW + 100
    assert res.placement_of(4) is None
    assert "end of availability" in res.messages[4]


def test_suspended_jobs_resources_of_shareable_types():
    pool = make_pool(2)
    occ = [Occupation(1, NOW - 10, NOW + 1000, node_bits(pool, "node1"), suspended=True)]
    jobs = [job(2, "/nodes=2", 10)]
    plain = schedule_round(pool, pool.all_bits, occ, jobs, now=NOW)
    assert plain.placement_of(2).start == NOW + 1000
    opts = RoundOptions(suspended_shareable=node_bits(pool, "node1"))
    shared = schedule_round(pool, pool.all_bits, occ, jobs, now=NOW, options=opts)
    assert shared.placement_of(2).start == NOW
    # a running (not suspended) job keeps its resources whatever the option
    running = [Occupation(1, NOW - 10, NOW + 1000, node_bits(pool, "node1"))]
    assert schedule_round(pool, pool.all_bits, running, jobs, now=NOW,
                          options=opts).placement_of(2).start == NOW + 1000


def test_always_assigned_resources():
    rows = [{"resource_id": i, "network_address": f"node{i}", "type": "default"} for i in (1, 2)]
    rows.append({"resource_id": 3, "network_address": "frontend", "type": "frontend"})
    pool = ResourcePool(rows, ("resource_id", "network_address"))
    front = pool.bits_of_ids([3])
    opts = RoundOptions(always_assigned=front)
    jobs = [job(1, "/nodes=1", 10), job(2, "/nodes=1", 10), job(3, "/nodes=1", 10)]
    res = schedule_round(pool, pool.all_bits, [], jobs, now=NOW, options=opts)
    ids = {j: pool.ids_of(res.placement_of(j).bits) for j in (1, 2, 3)}
    assert ids[1] == [1, 3] and ids[2] == [2, 3]            # never chosen as a node
    assert res.placement_of(3).start == NOW + 10 and 3 in ids[3]
    # a running job holding the always-assigned resource does not block it
    occ = [Occupation(9, NOW - 1, NOW + 50, pool.bits_of_ids([1, 3]))]
    res = schedule_round(pool, pool.all_bits, occ, [job(4, "/nodes=1", 10)], now=NOW,
                         options=opts)
    assert (res.placement_of(4).start, pool.ids_of(res.placement_of(4).bits)) == (NOW, [2, 3])


def test_hole_minimum_time():
    pool = make_pool(1)
    occ = [Occupation(1, NOW + 100, NOW + 1000, pool.all_bits)]
    short = [job(2, "/nodes=1", 50)]
    assert schedule_round(pool, pool.all_bits, occ, short, now=NOW).placement_of(2).start == NOW
    opts = RoundOptions(hole_minimum=300)
    res = schedule_round(pool, pool.all_bits, occ, short, now=NOW, options=opts)
    assert res.placement_of(2).start == NOW + 1000
    opts = RoundOptions(hole_minimum=100)                   # the hole is exactly 100 s
    assert schedule_round(pool, pool.all_bits, occ, short, now=NOW,
                          options=opts).placement_of(2).start == NOW


# ----------------------------------------------------------------------------- timeout

def test_timeout_stops_the_round_and_keeps_decisions():
    pool = make_pool(4)
    ticks = iter(range(100))
    opts = RoundOptions(deadline=2.5, clock=lambda: next(ticks))
    jobs = [job(i, "/nodes=1", 100) for i in range(1, 7)]
    res = schedule_round(pool, pool.all_bits, [], jobs, now=NOW, options=opts)
    assert [p.job_id for p in res.placements] == [1, 2, 3]
    assert res.timed_out
    assert {j: res.messages[j] for j in (4, 5, 6)} == dict.fromkeys((4, 5, 6), TIMEOUT_MESSAGE)
    assert not schedule_round(pool, pool.all_bits, [], jobs, now=NOW).timed_out


# ----------------------------------------------------------------------------- reservations

def test_reservation_at_start_decisions():
    res = 0b1111
    assert reservation_at_start(100, 50, 100, res, 0b11111, 300).action == LAUNCH
    d = reservation_at_start(100, 3600, 200, res, 0b0011, 300)
    assert d.action == WAIT and "2 missing" in d.message
    d = reservation_at_start(100, 3600, 400, res, 0b0011, 300)
    assert (d.action, d.bits) == (REDUCE, 0b0011) and "2 of its 4" in d.message
    assert reservation_at_start(100, 3600, 400, res, 0b10000, 300).action == NO_RESOURCE
    d = reservation_at_start(100, 50, 151, res, res, 300)
    assert d.action == EXPIRED and "expired" in d.message
    assert reservation_at_start(100, 50, 150, res, res, 300).action == LAUNCH


# ----------------------------------------------------------------------------- invariants

@st.composite
def sharing_scenarios(draw):
    pool = make_pool(draw(st.integers(1, 4)), draw(st.integers(1, 2)))
    now = draw(st.integers(0, 20))
    keys = st.sampled_from([None, None, "k1", "k2"])
    names = st.sampled_from([None, None, "p"])
    occs = []
    for i in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, 40))
        occs.append(Occupation(1000 + i, start, start + draw(st.integers(1, 40)),
                               draw(st.integers(1, pool.all_bits)),
                               besteffort=draw(st.integers(0, 3)) == 0,
                               timesharing=draw(keys), placeholder=draw(names)))
    texts = ["/nodes=1", "/nodes=2", "/core=1", "/core=2", "/nodes=ALL"]
    jobs = []
    for jid in range(1, draw(st.integers(1, 8)) + 1):
        jobs.append(WaitingJob(
            jid, ((jid * 10, req(draw(st.sampled_from(texts)), draw(st.integers(1, 30)))),),
            besteffort=draw(st.integers(0, 4)) == 0, timesharing=draw(keys),
            placeholder=draw(names), allow=draw(names)))
    return pool, occs, jobs, now, draw(st.sampled_from([0, 1, 5]))


def may_share(a, b):
    """May occupations/jobs a and b (dicts) hold one resource at the same time?"""
    if a["ts"] is not None and a["ts"] == b["ts"]:
        return True                       # timesharing jobs of one key
    for x, y in ((a, b), (b, a)):
        if x["ph"] is not None and x["ph"] == y["allow"]:
            return True                   # a placeholder and a job allowed in it
        if x["be"] and not x["placed"] and y["placed"] and not y["be"]:
            return True                   # a besteffort occupation and a normal job
    return False


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sharing_scenarios())
def test_sharing_invariants(scenario):
    pool, occs, jobs, now, security = scenario
    res = schedule_round(pool, pool.all_bits, occs, jobs, now, security)
    byid = {j.job_id: j for j in jobs}
    assert {p.job_id for p in res.placements} | set(res.messages) == set(byid)
    items = [dict(start=max(o.start, now), end=max(o.end, now + 1) if o.start <= now else o.end,
                  bits=o.bits, be=o.besteffort, ts=o.timesharing, ph=o.placeholder, allow=None,
                  placed=False) for o in occs]
    for p in res.placements:
        j = byid[p.job_id]
        items.append(dict(start=p.start, end=p.end + security, bits=p.bits, be=j.besteffort,
                          ts=j.timesharing, ph=j.placeholder, allow=j.allow, placed=True))
    for a, b in itertools.combinations(items, 2):
        if (a["placed"] or b["placed"]) and a["start"] < b["end"] and b["start"] < a["end"] \
                and a["bits"] & b["bits"]:
            assert may_share(a, b), (a, b)
    # conservative backfilling holds with views too: a job's place depends only on the
    # jobs placed before it
    order = placement_order(jobs)
    for k, j in enumerate(order):
        alone = schedule_round(pool, pool.all_bits, occs, order[:k + 1], now, security)
        assert alone.placement_of(j.job_id) == res.placement_of(j.job_id)


@st.composite
def container_scenarios(draw):
    pool = make_pool(draw(st.integers(1, 4)), draw(st.integers(1, 2)))
    now = draw(st.integers(0, 20))
    security = draw(st.sampled_from([0, 1, 5]))
    start = draw(st.integers(0, 40))
    container = Occupation(1, start, start + draw(st.integers(1, 60)) + security,
                           draw(st.integers(1, pool.all_bits)), container=True)
    texts = ["/nodes=1", "/core=1", "/core=2", "/nodes=ALL"]
    jobs = [WaitingJob(jid, ((jid * 10, req(draw(st.sampled_from(texts)),
                                            draw(st.integers(1, 30)))),),
                       inner=draw(st.sampled_from([None, 1, 1, 7])))
            for jid in range(2, draw(st.integers(2, 9)))]
    return pool, container, jobs, now, security


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(container_scenarios())
def test_container_invariants(scenario):
    pool, c, jobs, now, security = scenario
    res = schedule_round(pool, pool.all_bits, [c], jobs, now, security)
    byid = {j.job_id: j for j in jobs}
    assert {p.job_id for p in res.placements} | set(res.messages) == set(byid)
    window_end = c.end - security                       # the container's walltime end
    inner = [p for p in res.placements if byid[p.job_id].inner is not None]
    for p in inner:
        assert byid[p.job_id].inner == 1                # never placed in a missing one
        assert p.bits & ~c.bits == 0
        assert max(c.start, now) <= p.start and p.end + security <= window_end
    for a, b in itertools.combinations(inner, 2):       # inner jobs do not overlap
        assert not (a.bits & b.bits and a.start < b.end + security and b.start < a.end + security)
    c_end = max(c.end, now + 1) if c.start <= now else c.end
    for p in res.placements:                            # outer jobs stay out of it
        if byid[p.job_id].inner is None and p.bits & c.bits:
            assert p.end + security <= c.start or p.start >= c_end
    for j in jobs:
        if j.inner == 7:
            assert "container job 7" in res.messages[j.job_id]
