"""Options of a scheduling round beyond FIFO and backfilling (pure data).

:class:`RoundOptions` is passed to :func:`oar_appliance.sched.core.schedule_round` as its
``options`` keyword; every field defaults to "policy off", so a caller that does not know
a policy gets the plain round.  The database adapter fills it from ``oar.conf`` and the
resources (:mod:`oar_appliance.sched.metasched`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RoundOptions"]


@dataclass(frozen=True)
class RoundOptions:
    """What the round must also respect.

    - ``hole_minimum`` (``SCHEDULER_GANTT_HOLE_MINIMUM_TIME``): a batch job is put in a
      hole of the Gantt only if the hole lasts at least this long (seconds), even when the
      job is shorter; 0: any hole that holds the job;
    - ``always_assigned`` (``SCHEDULER_RESOURCES_ALWAYS_ASSIGNED_TYPE``): bits of
      resources never chosen by a request nor occupied by a job, and added to every
      placement;
    - ``suspended_shareable`` (``SCHEDULER_AVAILABLE_SUSPENDED_RESOURCE_TYPE``): bits of
      resources that a *suspended* occupation does not hold (other jobs may use them);
    - ``horizons``: ``(date, bits)`` pairs: nothing may use ``bits`` at or after ``date``
      (a resource's ``available_upto``); a job whose window would cross it goes to other
      resources or is not placed;
    - ``deadline`` and ``clock`` (``SCHEDULER_TIMEOUT``): when ``clock()`` reaches
      ``deadline`` the round stops placing jobs; each job not reached gets a message.
      The clock is given by the caller (the core reads no time itself).
    """

    hole_minimum: int = 0
    always_assigned: int = 0
    suspended_shareable: int = 0
    horizons: tuple[tuple[int, int], ...] = ()
    deadline: float | None = None
    clock: Callable[[], float] | None = None
