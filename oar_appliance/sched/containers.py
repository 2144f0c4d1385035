"""Container jobs and their inner jobs (pure).

A ``-t container`` job is scheduled like any job.  A ``-t inner=<container id>`` job is
placed only inside its container: on the container's resources, within its time window
``[container start, container start + container walltime)``.  Every job carries
``SCHEDULER_JOB_SECURITY_TIME`` after its walltime in the Gantt, so an inner job of
walltime W fits only if ``start + W + security time`` stays inside that window, i.e. at
most the container's walltime minus the security time.

Inner jobs of one container share its resources as jobs share a cluster (exclusively,
FIFO with backfilling); they are never seen by jobs outside the container (the container
itself already holds its resources there).  Each container gets its own Gantt, built on
the first inner job that needs it; a container that is neither running nor placed gives
its inner jobs a message (:meth:`Containers.placer` returns None and the reason).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .sharing import FAR

__all__ = ["Containers"]


class Containers:
    """The windows of the containers known in a round and the Gantts of their insides.

    ``factory(bits)`` returns a new placer whose Gantt has ``bits`` free from ``now`` on,
    and whose fits are limited to ``bits``.
    """

    def __init__(self, factory: Callable[[int], Any], now: int) -> None:
        self._factory = factory
        self.now = now
        #: container job id -> (start, end, bits); end exclusive, without security time
        self.windows: dict[int, tuple[int, int, int]] = {}
        self._inside: dict[int, list[tuple[int, int, int]]] = {}
        self._placers: dict[int, Any] = {}

    def add_container(self, job_id: int, start: int, end: int, bits: int) -> None:
        """A container running, reserved or placed in the round: ``[start, end)`` on bits."""
        self.windows[job_id] = (start, end, bits)

    def add_inner(self, container_id: int, start: int, end: int, bits: int) -> None:
        """An inner job (running or just placed) taking bits of its container on [start, end)."""
        self._inside.setdefault(container_id, []).append((start, end, bits))
        placer = self._placers.get(container_id)
        if placer is not None:
            placer.gantt.occupy(start, end, bits)

    def placer(self, container_id: int) -> tuple[Any | None, str]:
        """The placer of a container's inside, or (None, why there is none)."""
        placer = self._placers.get(container_id)
        if placer is not None:
            return placer, ""
        window = self.windows.get(container_id)
        if window is None:
            return None, (f"container job {container_id} is not running nor planned: "
                          "the inner job waits for it")
        start, end, bits = window
        if end <= self.now:
            return None, f"container job {container_id} has reached the end of its walltime"
        placer = self._placers[container_id] = self._factory(bits)
        gantt = placer.gantt
        gantt.occupy(self.now, start, bits)            # not before the container starts
        gantt.occupy(end, FAR, bits)                    # nor after its walltime
        for s, e, b in self._inside.get(container_id, ()):
            gantt.occupy(s, e, b)
        return placer, ""
