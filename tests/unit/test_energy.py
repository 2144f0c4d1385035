"""Energy saving decisions (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from oar_appliance.sched import energy as e

NOW = 1_000_000
FAR = 2_147_483_647


def resources(spec):
    """spec: per node (state, available_upto, last) for each of its 2 resources."""
    rows, bit = [], 1
    for n, (state, upto, last) in enumerate(spec):
        for _ in range(2):
            rows.append((bit, f"node-{n + 1}", state, upto, last))
            bit <<= 1
    return rows


def test_nodes_grouping():
    rows = resources([("Alive", FAR, 10), ("Absent", FAR, 0), ("Absent", 0, 0)])
    rows.append((1 << 6, None, "Alive", FAR, 0))              # a licence: no node
    rows.append((1 << 7, "node-1", "Suspected", FAR, 50))
    nodes = e.nodes_of(rows, NOW)
    assert [n.name for n in nodes] == ["node-1", "node-2", "node-3"]
    n1, n2, n3 = nodes
    assert (n1.bits, n1.all_alive, n1.last_activity) == (0b10000011, False, 50)
    assert (n2.absent_bits, n2.can_wake) == (0b1100, True)
    assert (n3.absent_bits, n3.can_wake) == (0, False)        # available_upto 0: stays off


def test_wake_nodes_needed_soon():
    nodes = e.nodes_of(resources([("Alive", FAR, 0), ("Absent", FAR, 0), ("Absent", FAR, 0),
                                  ("Absent", NOW - 1, 0)]), NOW)
    planned = [(NOW, 0b0111), (NOW + 500, 0b110000), (NOW, 0b11000000)]
    assert e.nodes_to_wake(nodes, planned, NOW, 1) == ["node-2"]
    assert e.nodes_to_wake(nodes, planned, NOW, 600) == ["node-2", "node-3"]   # node-4 expired


def test_halt_idle_nodes_with_nothing_planned():
    nodes = e.nodes_of(resources([
        ("Alive", FAR, NOW - 1000),      # idle, free: halt
        ("Alive", FAR, NOW - 100),       # ran a job 100 s ago
        ("Alive", FAR, 0),               # a job planned in 300 s
        ("Alive", FAR, 0),               # running now
        ("Alive", 0, 0),                 # could not be woken up again
        ("Absent", FAR, 0),              # already off
        ("Alive", FAR, 0),               # next job in 700 s: enough time to sleep
    ]), NOW)
    busy = [(NOW + 300, NOW + 900, 0b110000), (NOW - 50, NOW + 10, 0b11000000),
            (NOW + 700, NOW + 800, 0b11 << 12)]
    assert e.nodes_to_halt(nodes, busy, NOW, 600, 600) == ["node-1", "node-7"]
    assert e.nodes_to_halt(nodes, busy, NOW, 50, 600) == ["node-1", "node-2", "node-7"]
    assert e.nodes_to_halt(nodes, busy, NOW, 600, 800) == ["node-1"]


def test_launch_blocked_and_params():
    assert e.launch_blocked([(1, 0b11), (2, 0b100), (3, 0b1000)], 0b1011) == [2]
    p = e.params_from_config({})
    assert (p.wake, p.halt, p.idle_time, p.sleep_time, p.wakeup_time) == (False, False, 600, 600, 1)
    p = e.params_from_config({"SCHEDULER_NODE_MANAGER_SLEEP_CMD": "halt-them"})
    assert (p.wake, p.halt) == (False, True)
    p = e.params_from_config({"ENERGY_SAVING_INTERNAL": True})
    assert (p.wake, p.halt) == (True, True)


@given(st.lists(st.tuples(st.sampled_from(["Alive", "Absent", "Suspected"]),
                          st.sampled_from([0, NOW - 1, FAR]), st.integers(0, NOW)), max_size=8),
       st.lists(st.tuples(st.integers(NOW - 100, NOW + 2000), st.integers(1, 1000),
                          st.integers(0, 2 ** 16 - 1)), max_size=6))
def test_never_halt_what_is_woken_or_busy(spec, jobs):
    nodes = e.nodes_of(resources(spec), NOW)
    busy = [(s, s + d, b) for s, d, b in jobs]
    halt = set(e.nodes_to_halt(nodes, busy, NOW, 600, 600))
    wake = set(e.nodes_to_wake(nodes, [(s, b) for s, _, b in busy], NOW, 1))
    assert not halt & wake
    by_name = {n.name: n for n in nodes}
    for name in halt:
        n = by_name[name]
        assert n.all_alive and n.can_wake and NOW - n.last_activity >= 600
        assert not any(b & n.bits and s < NOW + 600 and s + d > NOW for s, d, b in jobs)
