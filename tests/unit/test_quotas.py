"""Quotas: the rules file, the checks, and their hook in the scheduling core (pure)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oar_appliance.errors import ConfigError
from oar_appliance.sched import quotas as q
from oar_appliance.sched.core import Occupation, RoundOptions, schedule_round
from tests.unit.test_core import job, make_pool, node_bits

MONDAY = 1_700_438_400          # 2023-11-20 00:00 UTC, a Monday
H = 3600


def rules(obj) -> q.QuotaRules:
    return q.parse_rules(json.dumps(obj), "quotas.json")


def quotas_of(obj, kinds, offset=0) -> q.Quotas:
    return q.Quotas(rules(obj), kinds, offset)


# ----------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"),
    ("[]", "must hold a JSON object"),
    ('{"rule": {}}', "unknown entries ['rule']"),
    ('{"rules": {"*,*,*": [1, 1, 1]}}', "must be 'queue,project,job_type,user'"),
    ('{"rules": {"*,*,,*": [1, 1, 1]}}', "empty field"),
    ('{"rules": {"*,*,*,*": [1, 1]}}', "[resources, jobs, resource_hours]"),
    ('{"rules": {"*,*,*,*": [1, -2, 1]}}', "-1 for unlimited"),
    ('{"rules": {"*,*,*,*": [1.5, 1, 1]}}', "whole numbers"),
    ('{"rules": {"*,*,*,*": ["1", 1, 1]}}', "[resources, jobs, resource_hours]"),
    ('{"periods": [{"when": ["someday 08:00-10:00"], "rules": {}}]}', "unknown days"),
    ('{"periods": [{"when": ["mon 8h-10h"], "rules": {}}]}', "cannot read the period"),
    ('{"periods": [{"when": ["mon 08:00-25:00"], "rules": {}}]}', "bad time"),
    ('{"periods": [{"rules": {}}]}', "must be an object with 'when'"),
    ('{"periods": {}}', "'periods' must be a list"),
])
def test_bad_files(text, message):
    with pytest.raises(ConfigError) as err:
        q.parse_rules(text, "/etc/oar/scheduler_quotas.conf")
    assert str(err.value).startswith("/etc/oar/scheduler_quotas.conf: ")
    assert message in str(err.value)


def test_when_intervals():
    assert q.parse_when("mon-fri 08:00-19:00")[:2] == [(8 * H, 19 * H), (86400 + 8 * H, 86400 + 19 * H)]
    assert len(q.parse_when("* 00:00-24:00")) == 7
    # Sunday night runs into Monday morning: split at the end of the week
    assert q.parse_when("sun 22:00-06:00") == [(6 * 86400 + 22 * H, q.WEEK), (0, 6 * H)]
    assert q.parse_when("sat,sun 10:00-11:00") == [(5 * 86400 + 10 * H, 5 * 86400 + 11 * H),
                                                   (6 * 86400 + 10 * H, 6 * 86400 + 11 * H)]
    assert [d // 86400 for d, _ in q.parse_when("fri-mon 01:00-02:00")] == [4, 5, 6, 0]


# ----------------------------------------------------------------------------- checks

K = {1: q.JobKind("default", "p1", "alice"), 2: q.JobKind("default", "p1", "bob"),
     3: q.JobKind("default", "p2", "alice", ("deploy",)),
     4: q.JobKind("besteffort", "p1", "alice", ("besteffort",), besteffort=True),
     5: q.JobKind("default", "p1", "alice", ("container",)),
     6: q.JobKind("default", "p1", "alice", ("no_quotas",))}


def bits(n):
    return (1 << n) - 1


def test_per_user_resources():
    qs = quotas_of({"rules": {"*,*,*,/": [4, -1, -1]}}, K)
    qs.add(1, 0, 100, bits(3))
    assert not qs.check(3, 50, 150, bits(2))          # alice: 3 + 2 > 4 during [50, 100)
    assert qs.check(3, 100, 150, bits(2))             # after her first job
    assert qs.check(2, 50, 150, bits(4))              # bob counts on his own
    assert qs.next_change(50, 0) == 100


def test_global_jobs_and_resource_hours():
    qs = quotas_of({"rules": {"*,*,*,*": [-1, 2, -1], "*,p1,*,*": [-1, -1, 10]}}, K)
    qs.add(1, 0, 2 * H, bits(4))                      # 8 resource-hours in p1
    assert not qs.check(2, 0, H, bits(3))             # p1: 8 + 3 > 10
    assert qs.check(2, 0, H, bits(2))                 # exactly 10
    qs.add(2, 0, H, bits(2))
    assert not qs.check(3, 0, H, bits(1))             # 3 jobs at once > 2 (p2 has no rh limit)
    assert qs.check(3, H, 2 * H, bits(1))


def test_named_fields_types_and_exemptions():
    qs = quotas_of({"rules": {"default,*,deploy,*": [1, -1, -1], "*,*,*,*": [5, -1, -1]}}, K)
    assert qs.check(1, 0, 10, bits(5))                # no deploy type: only the global rule
    assert not qs.check(3, 0, 10, bits(2))            # deploy: at most 1
    qs.add(5, 0, 10, bits(5))                         # a container does not count
    assert qs.check(1, 0, 10, bits(5))
    assert qs.check(6, 0, 10, bits(50))               # no_quotas: never refused...
    qs.add(6, 0, 10, bits(5))
    assert not qs.check(1, 0, 10, bits(1))            # ...but counted
    # besteffort jobs count only for rules of the besteffort queue
    be = quotas_of({"rules": {"*,*,*,*": [1, -1, -1], "besteffort,*,*,*": [3, -1, -1]}}, K)
    assert be.check(4, 0, 10, bits(3)) and not be.check(4, 0, 10, bits(4))
    be.add(4, 0, 10, bits(3))
    assert be.check(1, 0, 10, bits(1))


def test_periods_replace_the_rules():
    spec = {"rules": {"*,*,*,*": [8, -1, -1]},
            "periods": [{"name": "day", "when": ["mon-fri 08:00-19:00"],
                         "rules": {"*,*,*,*": [2, -1, -1]}}]}
    qs = quotas_of(spec, K)
    assert qs.check(1, MONDAY, MONDAY + 8 * H, bits(8))            # night: 8
    assert not qs.check(1, MONDAY, MONDAY + 9 * H, bits(8))        # runs into the day: 2
    assert qs.check(1, MONDAY + 9 * H, MONDAY + 10 * H, bits(2))
    assert qs.check(1, MONDAY + 5 * 86400, MONDAY + 6 * 86400, bits(8))   # saturday
    assert qs.next_change(MONDAY + H, MONDAY) == MONDAY + 8 * H
    assert qs.next_change(MONDAY + 9 * H, MONDAY) == MONDAY + 19 * H
    assert qs.next_change(MONDAY + 9 * H + q.WEEK + 1, MONDAY) is None       # nothing new
    # local time: at UTC+2, 08:00 local is 06:00 UTC
    east = quotas_of(spec, K, offset=2 * H)
    assert not east.check(1, MONDAY + 6 * H, MONDAY + 7 * H, bits(3))
    assert east.check(1, MONDAY + 5 * H, MONDAY + 6 * H, bits(3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 50), st.integers(1, 30),
                          st.integers(1, 4)), max_size=12),
       st.integers(1, 6), st.integers(1, 4))
def test_added_jobs_never_exceed_what_check_allowed(jobs, max_res, max_jobs):
    kinds = {i: q.JobKind("default", "p", f"u{u}") for i, (u, _, _, _) in enumerate(jobs)}
    qs = quotas_of({"rules": {"*,*,*,/": [max_res, max_jobs, -1]}}, kinds)
    taken = []
    for i, (u, start, length, n) in enumerate(jobs):
        if qs.check(i, start, start + length, bits(n)):
            qs.add(i, start, start + length, bits(n))
            taken.append((u, start, start + length, n))
    for t in range(0, 81):
        for user in (1, 2, 3):
            live = [n for u, s, e, n in taken if u == user and s <= t < e]
            assert sum(live) <= max_res and len(live) <= max_jobs


# ----------------------------------------------------------------------------- the core hook

def test_core_looks_for_a_later_slot_within_the_quotas():
    pool = make_pool(8)
    kinds = {i: q.JobKind("default", "p", "alice" if i < 5 else "bob") for i in range(1, 8)}
    qs = quotas_of({"rules": {"*,*,*,/": [4, -1, -1]}}, kinds)
    occ = [Occupation(1, 0, 100, pool.all_bits & 0b11)]          # alice holds 2 nodes
    qs.add(1, 0, 100, 0b11)
    jobs = [job(2, "/nodes=3", 50), job(3, "/nodes=2", 50), job(5, "/nodes=3", 50),
            job(4, "/nodes=9", 10)]
    res = schedule_round(pool, pool.all_bits, occ, jobs, now=10, quotas=qs)
    place = {p.job_id: p for p in res.placements}
    assert place[2].start == 100                      # alice: 2 + 3 > 4 until her job ends
    assert place[3].start == 10                       # 2 + 2 = 4: fits now
    assert place[5].start == 10                       # bob is not limited by alice
    assert "no slot within the quotas" not in res.messages.get(4, "")
    assert res.messages[4].startswith("cannot be satisfied")
    # the same round without quotas starts job 2 at once
    free = schedule_round(pool, pool.all_bits, occ, jobs[:1], now=10)
    assert free.placements[0].start == 10


def test_core_quota_never_satisfiable_and_reservations():
    pool = make_pool(8)
    kinds = {i: q.JobKind("default", "p", "alice") for i in range(1, 4)}
    qs = quotas_of({"rules": {"*,*,*,*": [2, -1, -1]}}, kinds)
    res = schedule_round(pool, pool.all_bits, [], [job(1, "/nodes=3", 50),
                                                   job(2, "/nodes=2", 50, reservation=500),
                                                   job(3, "/nodes=1", 50, reservation=520)],
                         now=10, quotas=qs)
    assert res.messages[1] == "cannot be satisfied: moldable 10: no slot within the quotas"
    assert res.placement_of(2).start == 500
    assert res.messages[3].startswith("reservation rejected: moldable 30: no slot within the quotas")


def test_core_waits_for_the_end_of_a_period():
    pool = make_pool(8)
    spec = {"rules": {"*,*,*,*": [-1, -1, -1]},
            "periods": [{"name": "day", "when": "mon-fri 08:00-19:00",
                         "rules": {"*,*,*,/": [2, -1, -1]}}]}
    qs = quotas_of(spec, {1: q.JobKind("default", "p", "alice"), 2: q.JobKind("default", "p", "bob")})
    now = MONDAY + 10 * H
    res = schedule_round(pool, pool.all_bits, [], [job(1, "/nodes=4", H), job(2, "/nodes=2", H)],
                         now=now, quotas=qs)
    assert res.placement_of(1).start == MONDAY + 19 * H        # at the end of the day
    assert res.placement_of(2).start == now                     # within bob's 2
    # a job that would run into the day period from the night is refused there too
    qs = quotas_of(spec, {1: q.JobKind("default", "p", "alice")})
    res = schedule_round(pool, pool.all_bits, [], [job(1, "/nodes=4", 2 * H)],
                         now=MONDAY + 7 * H, quotas=qs)
    assert res.placement_of(1).start == MONDAY + 19 * H


# ----------------------------------------------------------------------------- with the policies

NOW = MONDAY + 3 * H
PER_USER_2 = {"rules": {"*,*,*,/": [2, -1, -1]}}


def test_core_quotas_apply_to_timesharing_jobs():
    pool = make_pool(4)
    kinds = {1: q.JobKind("default", "p", "alice"), 2: q.JobKind("default", "p", "alice"),
             3: q.JobKind("default", "p", "bob")}
    jobs = [job(i, "/nodes=2", 100, timesharing="*,*") for i in (1, 2, 3)]
    shared = schedule_round(pool, pool.all_bits, [], jobs, now=NOW, security_time=1)
    assert [p.start for p in shared.placements] == [NOW] * 3          # all share node1-2
    res = schedule_round(pool, pool.all_bits, [], jobs, now=NOW, security_time=1,
                         quotas=quotas_of(PER_USER_2, kinds))
    # alice's second job would make her hold 4 resources: after her first one
    assert [res.placement_of(j).start for j in (1, 2, 3)] == [NOW, NOW + 101, NOW]


def test_core_quotas_count_inner_jobs_not_their_container():
    pool = make_pool(4)
    kinds = {1: q.JobKind("default", "p", "alice", ("container",)),
             2: q.JobKind("default", "p", "alice", ("inner=1",)),
             3: q.JobKind("default", "p", "alice", ("inner=1",)),
             4: q.JobKind("default", "p", "bob", ("inner=1",))}
    jobs = [job(1, "/nodes=4", 1000, container=True),
            job(2, "/nodes=2", 100, inner=1), job(3, "/nodes=2", 100, inner=1),
            job(4, "/nodes=2", 100, inner=1)]
    qs = quotas_of(PER_USER_2, kinds)
    res = schedule_round(pool, pool.all_bits, [], jobs, now=NOW, security_time=1, quotas=qs)
    # the container (4 resources) is neither refused nor counted; alice's inner jobs are
    assert res.placement_of(1).start == NOW
    assert [res.placement_of(j).start for j in (2, 3, 4)] == [NOW, NOW + 101, NOW]
    assert not qs.check(2, NOW, NOW + 10, 0b1)                       # alice holds 2 now
    # a running container and a running inner job count the same way
    qs = quotas_of(PER_USER_2, kinds)
    running = [Occupation(1, NOW - 10, NOW + 990, pool.all_bits, container=True),
               Occupation(2, NOW - 10, NOW + 50, 0b11, inner=1)]
    for occ in running:
        qs.add(occ.job_id, occ.start, occ.end, occ.bits)
    res = schedule_round(pool, pool.all_bits, running, jobs[2:], now=NOW, security_time=1,
                         quotas=qs)
    assert [res.placement_of(j).start for j in (3, 4)] == [NOW + 50, NOW]


def test_core_quota_delay_keeps_the_availability_horizon_and_hole_minimum():
    pool = make_pool(4)
    kinds = {i: q.JobKind("default", "p", "alice") for i in (1, 2, 3)}
    spec = {"rules": {"*,*,*,/": [3, -1, -1]}}
    running = [Occupation(1, NOW - 10, NOW + 100, node_bits(pool, "node1"))]
    # node3 and node4 are gone at NOW + 150: after alice's running job, 3 nodes for 61 s
    # exist only once they are gone (never)
    opts = RoundOptions(horizons=((NOW + 150, node_bits(pool, "node3", "node4")),))
    free = schedule_round(pool, pool.all_bits, running, [job(2, "/nodes=3", 60)], now=NOW,
                          security_time=1, options=opts)
    assert free.placement_of(2).start == NOW
    qs = quotas_of(spec, kinds)
    qs.add(1, NOW - 10, NOW + 100, node_bits(pool, "node1"))
    res = schedule_round(pool, pool.all_bits, running, [job(2, "/nodes=3", 60)], now=NOW,
                         security_time=1, options=opts, quotas=qs)
    assert res.placements == []
    assert "no slot before the end of availability" in res.messages[2]
    # a start the quotas delay is still put only in a hole of hole_minimum
    qs = quotas_of(spec, kinds)
    qs.add(1, NOW - 10, NOW + 100, node_bits(pool, "node1"))
    planned = [Occupation(9, NOW + 200, NOW + 400, node_bits(pool, "node2", "node3"))]
    jobs = [job(2, "/nodes=3", 50)]
    opts = RoundOptions(hole_minimum=200)
    res = schedule_round(pool, pool.all_bits, running + planned, jobs, now=NOW,
                         security_time=1, options=opts, quotas=qs)
    # at NOW + 100 three nodes are free for 100 s only (< 200): after job 9
    assert res.placement_of(2).start == NOW + 400
    qs = quotas_of(spec, kinds)
    qs.add(1, NOW - 10, NOW + 100, node_bits(pool, "node1"))
    res = schedule_round(pool, pool.all_bits, running + planned, jobs, now=NOW,
                         security_time=1, quotas=qs)
    assert res.placement_of(2).start == NOW + 100              # without: the first hole


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4), st.integers(1, 5)),
                min_size=1, max_size=10),
       st.integers(2, 6), st.integers(1, 3))
def test_core_placements_respect_the_quotas(spec, max_res, max_jobs):
    pool = make_pool(6)
    kinds = {i: q.JobKind("default", "p", f"u{u}") for i, (u, _, _) in enumerate(spec, 1)}
    jobs = [job(i, f"/nodes={n}", 10 * w) for i, (_, n, w) in enumerate(spec, 1)]
    unlimited = quotas_of({"rules": {"*,*,*,/": [-1, -1, -1]}}, kinds)
    plain = schedule_round(pool, pool.all_bits, [], jobs, now=0, security_time=1)
    same = schedule_round(pool, pool.all_bits, [], jobs, now=0, security_time=1, quotas=unlimited)
    assert same.placements == plain.placements               # no limit: no change
    qs = quotas_of({"rules": {"*,*,*,/": [max_res, max_jobs, -1]}}, kinds)
    res = schedule_round(pool, pool.all_bits, [], jobs, now=0, security_time=1, quotas=qs)
    placed = {p.job_id: p for p in res.placements}
    for i, (_, n, _) in enumerate(spec, 1):
        if n > max_res:
            assert i not in placed and "within the quotas" in res.messages[i]
        else:
            assert i in placed                               # always a later slot
    for t in range(0, 600):
        for user in range(3):
            live = [p for p in res.placements if kinds[p.job_id].user == f"u{user}"
                    and p.start <= t < p.end + 1]
            assert sum(p.bits.bit_count() for p in live) <= max_res and len(live) <= max_jobs
