"""Energy saving: which nodes to wake up and which to halt after a round (pure, no I/O).

OAR's "dynamic nodes coupling": a node switched off is ``Absent`` with an
``available_upto`` in the future, and the scheduler may plan jobs on it.  After a round:

- **to wake up**: the nodes with an ``Absent`` resource (``available_upto > now``) that a
  job placed in the round, or an accepted reservation, needs at a start no later than
  ``now + SCHEDULER_NODE_MANAGER_WAKEUP_TIME``.  Such a job is not launched while a
  resource it got is not ``Alive`` (:func:`launch_blocked`): it keeps its slot and starts in
  a later round, once its nodes are up.
- **to halt**: the nodes whose resources are all ``Alive`` and may be woken up again
  (``available_upto > now``; 0 means "never wake it", so it is never halted either), that
  nothing occupies now, that ran nothing for ``SCHEDULER_NODE_MANAGER_IDLE_TIME`` seconds
  (their last activity: the latest of the resources' ``last_job_date`` and of the end of
  the last job that ran on them), and on which nothing is planned before
  ``now + SCHEDULER_NODE_MANAGER_SLEEP_TIME``.

Nothing is planned on a resource past its ``available_upto`` (when it is a date in the
future): that is the metascheduler's horizon (:class:`~oar_appliance.sched.policies.RoundOptions`).

A node is the set of resources sharing a ``network_address``; resources without one
(licences...) are not nodes.  The server runs ``SCHEDULER_NODE_MANAGER_WAKE_UP_CMD`` /
``SCHEDULER_NODE_MANAGER_SLEEP_CMD`` with the lists; this module only decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Node", "nodes_of", "nodes_to_wake", "nodes_to_halt", "launch_blocked",
           "EnergyParams", "params_from_config"]


@dataclass(frozen=True)
class EnergyParams:
    """Which decisions are wanted and their delays (seconds)."""

    wake: bool = False
    halt: bool = False
    idle_time: int = 600
    sleep_time: int = 600
    wakeup_time: int = 1


def params_from_config(config: Mapping[str, Any]) -> EnergyParams:
    """Wake-ups are decided with ``ENERGY_SAVING_INTERNAL`` or a wake-up command, halts
    with ``ENERGY_SAVING_INTERNAL`` or a sleep command."""
    internal = bool(config.get("ENERGY_SAVING_INTERNAL", False))
    return EnergyParams(
        wake=internal or bool(config.get("SCHEDULER_NODE_MANAGER_WAKE_UP_CMD")),
        halt=internal or bool(config.get("SCHEDULER_NODE_MANAGER_SLEEP_CMD")),
        idle_time=int(config.get("SCHEDULER_NODE_MANAGER_IDLE_TIME", 600)),
        sleep_time=int(config.get("SCHEDULER_NODE_MANAGER_SLEEP_TIME", 600)),
        wakeup_time=int(config.get("SCHEDULER_NODE_MANAGER_WAKEUP_TIME", 1)),
    )


@dataclass(frozen=True)
class Node:
    """One node: its resources' bits and what energy saving needs to know of them.

    ``absent_bits``: its ``Absent`` resources that may be woken up (``available_upto >
    now``); ``all_alive``: every resource ``Alive``; ``can_wake``: every resource has
    ``available_upto > now``; ``last_activity``: date of the last job end on it.
    """

    name: str
    bits: int
    absent_bits: int = 0
    all_alive: bool = True
    can_wake: bool = True
    last_activity: int = 0


def nodes_of(resources: Iterable[tuple[int, str | None, str, int, int]], now: int) -> list[Node]:
    """Group ``(bit, network_address, state, available_upto, last_activity)`` per node
    (``bit``: the resource's bitset; nodes in order of first appearance)."""
    found: dict[str, dict[str, Any]] = {}
    for bit, name, state, upto, last in resources:
        if not name:
            continue
        node = found.setdefault(name, {"bits": 0, "absent": 0, "alive": True, "wake": True,
                                       "last": 0})
        node["bits"] |= bit
        upto = upto or 0
        if state == "Absent" and upto > now:
            node["absent"] |= bit
        node["alive"] = node["alive"] and state == "Alive"
        node["wake"] = node["wake"] and upto > now
        node["last"] = max(node["last"], last or 0)
    return [Node(n, d["bits"], d["absent"], d["alive"], d["wake"], d["last"])
            for n, d in found.items()]


def nodes_to_wake(nodes: Sequence[Node], planned: Iterable[tuple[int, int]], now: int,
                  wakeup_time: int) -> list[str]:
    """Names of the nodes with a wakeable ``Absent`` resource needed by a ``(start,
    bits)`` planned no later than ``now + wakeup_time``, in node order."""
    soon = 0
    for start, bits in planned:
        if start <= now + wakeup_time:
            soon |= bits
    return [n.name for n in nodes if n.absent_bits & soon]


def nodes_to_halt(nodes: Sequence[Node], busy: Iterable[tuple[int, int, int]], now: int,
                  idle_time: int, sleep_time: int) -> list[str]:
    """Names of the nodes to halt (module docstring); ``busy``: every ``(start, end,
    bits)`` running or planned (``end`` exclusive), in node order."""
    taken = 0
    for start, end, bits in busy:
        if start < now + sleep_time and end > now:
            taken |= bits
    return [n.name for n in nodes
            if n.all_alive and n.can_wake and not n.bits & taken
            and now - n.last_activity >= idle_time]


def launch_blocked(to_launch: Iterable[tuple[int, int]], alive_bits: int) -> list[int]:
    """Ids of the ``(job_id, bits)`` to launch that got a resource not ``Alive``."""
    return [job_id for job_id, bits in to_launch if bits & ~alive_bits]
