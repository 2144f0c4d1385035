"""Tests of the Gantt of free resources (oar_appliance.sched.gantt)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from oar_appliance.sched.gantt import Gantt

ALL4 = 0b1111


def count_fit(n):
    """A request for any n free resources: the n lowest."""
    def fit(free):
        if free.bit_count() < n:
            return None
        out = 0
        for _ in range(n):
            b = free & -free
            out |= b
            free ^= b
        return out
    return fit


def test_empty_gantt():
    g = Gantt(100, ALL4)
    assert g.slots() == [(100, ALL4)]
    assert g.free_during(100, 10**9) == ALL4
    assert g.free_during(0, 50) == ALL4               # clipped to now
    assert list(g.candidate_starts(0)) == [100]
    assert g.first_fit(count_fit(4), 10, 0) == (100, ALL4)
    assert g.first_fit(count_fit(5), 10, 0) is None


def test_occupy_splits_and_subtracts():
    g = Gantt(0, ALL4)
    g.occupy(10, 20, 0b0011)
    assert g.slots() == [(0, ALL4), (10, 0b1100), (20, ALL4)]
    g.occupy(15, 30, 0b0100)
    assert g.slots() == [(0, ALL4), (10, 0b1100), (15, 0b1000), (20, 0b1011), (30, ALL4)]
    # adjacency: [a, b) and [b, c) do not overlap
    assert g.free_during(0, 10) == ALL4
    assert g.free_during(20, 30) == 0b1011
    assert g.free_during(30, 40) == ALL4
    assert g.free_during(9, 11) == 0b1100
    assert g.free_during(12, 16) == 0b1000
    assert g.free_during(5, 100) == 0b1000
    assert g.free_during(15, 15) == 0b1000          # empty interval: the free set at 15
    # past and empty occupations are ignored / clipped
    g.occupy(-50, -10, ALL4)
    g.occupy(40, 40, ALL4)
    g.occupy(5, 5, ALL4)
    assert g.slots()[0] == (0, ALL4) and len(g.slots()) == 5
    g.occupy(-5, 3, 0b0001)
    assert g.slots()[:2] == [(0, 0b1110), (3, ALL4)]


def test_candidate_starts():
    g = Gantt(0, ALL4)
    g.occupy(10, 20, 1)
    g.occupy(30, 40, 1)
    assert list(g.candidate_starts(0)) == [0, 10, 20, 30, 40]
    assert list(g.candidate_starts(15)) == [15, 20, 30, 40]
    assert list(g.candidate_starts(20)) == [20, 30, 40]
    assert list(g.candidate_starts(50)) == [50]


def test_first_fit_holes():
    g = Gantt(0, ALL4)
    g.occupy(0, 10, 0b0111)           # only one free resource on [0, 10)
    g.occupy(20, 50, 0b1111)          # nothing free on [20, 50)
    # 2 resources for 10 s: the hole [10, 20) fits exactly (adjacency on both sides)
    assert g.first_fit(count_fit(2), 10, 0) == (10, 0b0011)
    # 11 s does not fit in the hole: after 50
    assert g.first_fit(count_fit(2), 11, 0) == (50, 0b0011)
    # 1 resource for 10 s fits right now
    assert g.first_fit(count_fit(1), 10, 0) == (0, 0b1000)
    # earliest in the middle of a slot is a candidate itself
    assert g.first_fit(count_fit(2), 5, 12) == (12, 0b0011)
    assert g.first_fit(count_fit(2), 10, 12) == (50, 0b0011)
    # latest limits the candidates (inclusive)
    assert g.first_fit(count_fit(2), 10, 0, latest=10) == (10, 0b0011)
    assert g.first_fit(count_fit(2), 11, 0, latest=49) is None
    assert g.first_fit(count_fit(2), 11, 0, latest=50) == (50, 0b0011)
    assert g.first_fit(count_fit(2), 11, 60, latest=50) is None
    # hole_minimum: the window is at least that long
    assert g.first_fit(count_fit(2), 5, 0, hole_minimum=15) == (50, 0b0011)
    # security time is the caller's: it lengthens the duration
    walltime, security = 8, 2
    assert g.first_fit(count_fit(2), walltime + security, 0) == (10, 0b0011)
    assert g.first_fit(count_fit(2), walltime + security + 1, 0) == (50, 0b0011)


def test_first_fit_memo_of_failed_sets():
    g = Gantt(0, ALL4)
    for t in range(0, 100, 10):
        g.occupy(t, t + 5, 0b0011)            # the same free set again and again
    calls = []

    def fit(free):
        calls.append(free)
        return free if free.bit_count() >= 3 else None

    failed: set = set()
    assert g.first_fit(fit, 3, 0, failed=failed) == (5, ALL4)
    assert calls == [0b1100, ALL4]
    calls.clear()
    assert g.first_fit(fit, 6, 0, failed=failed) == (95, ALL4)
    assert calls == [ALL4]                   # no new call on the failed set
    # min_count skips windows without calling
    calls.clear()
    assert g.first_fit(fit, 6, 0, min_count=3) == (95, ALL4)
    assert calls == [ALL4]


def naive_first_fit(g, fit, duration, earliest, latest=None):
    for s in g.candidate_starts(earliest):
        if latest is not None and s > latest:
            return None
        bits = fit(g.free_during(s, s + duration))
        if bits:
            return s, bits
    return None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 60), st.integers(1, 30), st.integers(0, 15)),
                max_size=12),
       st.integers(1, 4), st.integers(1, 40), st.integers(-5, 70),
       st.one_of(st.none(), st.integers(0, 90)))
def test_first_fit_agrees_with_the_naive_scan(occs, n, duration, earliest, latest):
    g = Gantt(0, ALL4)
    model = {}
    for start, length, bits in occs:
        g.occupy(start, start + length, bits)
        for t in range(max(start, 0), start + length):
            model[t] = model.get(t, 0) | bits
    # the breakpoints are sorted, and free_during matches a per-second model
    assert g.times == sorted(set(g.times)) and g.times[0] == 0
    for t in range(0, 95):
        assert g.free_during(t, t + 1) == ALL4 & ~model.get(t, 0)
    fit = count_fit(n)
    got = g.first_fit(fit, duration, earliest, latest)
    assert got == naive_first_fit(g, fit, duration, earliest, latest)
    if got is not None:
        s, bits = got
        assert s >= max(0, earliest)
        assert all(not (model.get(t, 0) & bits) for t in range(s, s + duration))


def pairs_fit(n, tree):
    """A monotone request that a count does not decide: n pairs of resources (2k, 2k+1)
    of tree, both free (the n lowest pairs)."""
    def fit(free):
        free &= tree
        out, got = 0, 0
        for k in range(0, 8, 2):
            if free >> k & 3 == 3:
                out |= 3 << k
                got += 1
                if got == n:
                    return out
        return None
    return fit


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 60), st.integers(1, 30), st.integers(0, 255)),
                max_size=10),
       st.integers(1, 3),
       st.lists(st.tuples(st.integers(1, 40), st.integers(-5, 30), st.integers(0, 2)),
                min_size=1, max_size=12),
       st.sampled_from([255, 0b00111100, 0b11110011]))
def test_first_fit_memos_agree_with_the_naive_scan(occs, n, searches, tree):
    """A sequence of searches of one monotone request, each placed before the next, with
    the shared failure memo (failed_spans), the count bound and the tree: each answer is
    the naive scan's."""
    g = Gantt(0, 255)
    for start, length, bits in occs:
        g.occupy(start, start + length, bits)
    assert g.counts == [f.bit_count() for f in g.frees]
    fit = pairs_fit(n, tree)
    failed_spans: dict = {}
    for duration, earliest, hole in searches:
        got = g.first_fit(fit, duration, earliest, hole_minimum=duration + hole,
                          min_count=n, failed_spans=failed_spans,
                          tree=None if tree == 255 else tree)
        assert got == naive_first_fit(g, fit, duration + hole, earliest)
        if got is not None and hole == 0:
            g.occupy(got[0], got[0] + duration, got[1])


def test_copy_is_independent():
    g = Gantt(0, ALL4)
    g.occupy(10, 20, 0b0011)
    h = g.copy()
    h.occupy(0, 5, 0b1000)
    assert g.slots() == [(0, ALL4), (10, 0b1100), (20, ALL4)]
    assert h.slots() == [(0, 0b0111), (5, ALL4), (10, 0b1100), (20, ALL4)]
    assert h.counts == [f.bit_count() for f in h.frees]
    assert g.counts == [f.bit_count() for f in g.frees]
