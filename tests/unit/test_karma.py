"""Fairsharing karma and ordering (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oar_appliance.errors import ConfigError
from oar_appliance.sched import karma as k


@dataclass(frozen=True)
class J:
    job_id: int
    queue: str
    prio: int


def test_targets_parse_and_errors():
    assert k.parse_targets("first:75, default = 25") == {"first": 0.75, "default": 0.25}
    assert k.parse_targets("") == {} and k.parse_targets(None) == {}
    with pytest.raises(ConfigError, match="KEY: cannot read 'first'"):
        k.parse_targets("first", "KEY")
    with pytest.raises(ConfigError, match="over 100"):
        k.parse_targets("a:150")


def test_params_defaults_and_config():
    p = k.params_from_config({})
    assert (p.window, p.coef_project, p.coef_user, p.coef_user_ask) == (108000, 3, 2, 1)
    assert p.project_targets == {} and p.user_targets == {}
    p = k.params_from_config({"SCHEDULER_FAIRSHARING_USER_TARGETS": "oar:100",
                              "SCHEDULER_FAIRSHARING_COEF_USER": 5})
    assert p.user_targets == {"oar": 1.0} and p.coef_user == 5
    with pytest.raises(ConfigError, match="WINDOW_SIZE"):
        k.params_from_config({"SCHEDULER_FAIRSHARING_WINDOW_SIZE": 0})


def test_karma_formula():
    used = k.consumption_by_queue([
        ("default", "alice", "p1", "USED", 300), ("default", "alice", "p1", "ASKED", 600),
        ("default", "bob", "p2", "USED", 100), ("default", "bob", "p2", "ASKED", 400),
        ("default", "alice", "p1", "USED", 100),            # rows of the same key add up
        ("other", "bob", "p2", "USED", 1000),
    ])["default"]
    p = k.KarmaParams(project_targets={"p1": 0.5}, user_targets={"bob": 0.25})
    # alice: project 400/500, user 400/500, asked 600/1000
    assert k.karma(p, used, "alice", "p1") == pytest.approx(3 * (0.8 - 0.5) + 2 * 0.8 + 0.6)
    # bob: project 100/500, user 100/500 - .25, asked 400/1000 - .25
    assert k.karma(p, used, "bob", "p2") == pytest.approx(3 * 0.2 + 2 * (0.2 - 0.25) + (0.4 - 0.25))
    # no consumption at all: only the targets count
    assert k.karma(p, None, "bob", "p1") == pytest.approx(-3 * 0.5 - 2 * 0.25 - 0.25)


def test_order_permutes_only_fairsharing_jobs_within_a_level():
    jobs = [J(1, "fair", 5), J(2, "fifo", 5), J(3, "fair", 5), J(4, "fair", 1), J(5, "fair", 1)]
    karmas = {1: 2.0, 3: -1.0, 4: 0.5, 5: 0.5}
    out = k.karma_order(jobs, lambda j: j.prio,
                        lambda j: karmas[j.job_id] if j.queue == "fair" else None,
                        lambda j: j.job_id)
    assert [j.job_id for j in out] == [3, 2, 1, 4, 5]       # ties: by job id


def test_is_fairsharing():
    assert k.is_fairsharing("oar_sched_gantt_with_timesharing_and_fairsharing")
    assert k.is_fairsharing("oar_sched_gantt_with_timesharing_and_fairsharing_and_quotas")
    assert not k.is_fairsharing("oar_sched_gantt_with_timesharing") and not k.is_fairsharing(None)


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(-5, 5)), max_size=30))
def test_order_properties(spec):
    # jobs given in priority order (levels decreasing), as the metascheduler gives them
    spec = sorted(spec, key=lambda s: -s[0])
    jobs = [J(i, "fair" if fair else "fifo", prio) for i, (prio, fair, _) in enumerate(spec)]
    karmas = {i: float(s[2]) for i, s in enumerate(spec)}
    out = k.karma_order(jobs, lambda j: j.prio,
                        lambda j: karmas[j.job_id] if j.queue == "fair" else None,
                        lambda j: j.job_id)
    assert sorted(j.job_id for j in out) == [j.job_id for j in jobs]
    for before, after in zip(jobs, out):
        assert before.prio == after.prio                      # levels keep their places
        if before.queue == "fifo":
            assert after is before                            # FIFO jobs do not move
    for level in {j.prio for j in jobs}:
        fair = [(karmas[j.job_id], j.job_id) for j in out if j.prio == level and j.queue == "fair"]
        assert fair == sorted(fair)


@given(st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from("pq"),
                          st.sampled_from(["USED", "ASKED"]), st.integers(0, 10**6)), max_size=20))
def test_more_own_consumption_never_lowers_karma(rows):
    p = k.KarmaParams()
    base = k.consumption_by_queue([("q", u, pr, kind, n) for u, pr, kind, n in rows]).get("q")
    more = k.consumption_by_queue([("q", u, pr, kind, n) for u, pr, kind, n in rows]
                                  + [("q", "a", "p", "USED", 1000), ("q", "a", "p", "ASKED", 1000)])["q"]
    assert k.karma(p, more, "a", "p") >= k.karma(p, base, "a", "p") - 1e-9
