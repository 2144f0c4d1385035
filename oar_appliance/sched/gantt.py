"""The Gantt of free resources over time (pure: plain ints in, ints out).

Resources are positions in the scheduling order and a set of them is a Python int used as
a bitset (see :mod:`oar_appliance.sched.hierarchy`).  The Gantt is a sorted list of
breakpoints ``(time, free_bits)``: ``free_bits`` holds from that time up to the next
breakpoint, the last one extends to infinity.  It starts as one breakpoint ``(now,
all_bits)``; nothing is ever planned before ``now`` (occupations are clipped to it).

Times are integers (seconds); intervals are half-open ``[start, end)``, so a job ending at
t and another starting at t do not overlap.

Hot path (:meth:`Gantt.first_fit`): candidate starts are the breakpoints, walked in order;
the free set of the window ``[start, start + duration)`` is maintained by a two-stack
sliding AND (each slot is ANDed O(1) times amortized, whatever the window length); a
window whose free set has too few resources, or is a set that already failed for this
request, is skipped without calling the fit function.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator

__all__ = ["Gantt"]


class Gantt:
    """Free resources over time, from ``now`` on; ``all_bits`` is free everywhere at first.

    ``times`` and ``frees`` are the parallel lists of the breakpoints (read-only for
    callers).  Adjacent slots with equal free sets are not merged (it would cost more than
    it saves: a candidate start with the same free set is skipped by the memo).
    """

    __slots__ = ("now", "all_bits", "times", "frees")

    def __init__(self, now: int, all_bits: int) -> None:
        self.now = now
        self.all_bits = all_bits
        self.times: list[int] = [now]
        self.frees: list[int] = [all_bits]

    def __repr__(self) -> str:
        slots = ", ".join(f"({t}, {bin(f)})" for t, f in zip(self.times, self.frees))
        return f"Gantt([{slots}])"

    def slots(self) -> list[tuple[int, int]]:
        """The breakpoints ``(time, free_bits)``, in time order."""
        return list(zip(self.times, self.frees))

    # -- updates ------------------------------------------------------------------------
    def _split(self, t: int) -> int:
        """Index of the breakpoint at time t (t >= now), created if needed."""
        times = self.times
        i = bisect_left(times, t)
        if i < len(times) and times[i] == t:
            return i
        # t falls inside slot i-1: split it
        self.times.insert(i, t)
        self.frees.insert(i, self.frees[i - 1])
        return i

    def occupy(self, start: int, end: int, bits: int) -> None:
        """Remove ``bits`` from the free resources on ``[start, end)`` (clipped to now)."""
        if start < self.now:
            start = self.now
        if end <= start or not bits:
            return
        i = self._split(start)
        j = self._split(end)
        frees, keep = self.frees, ~bits
        for k in range(i, j):
            frees[k] &= keep

    # -- queries ------------------------------------------------------------------------
    def free_during(self, start: int, end: int) -> int:
        """The resources free during the whole of ``[start, end)`` (start clipped to now).

        An empty interval (end <= start) gives the free set at ``start``.
        """
        times, frees = self.times, self.frees
        if start < self.now:
            start = self.now
        i = bisect_right(times, start) - 1
        free = frees[i]
        n = len(times)
        i += 1
        while i < n and times[i] < end:
            free &= frees[i]
            i += 1
        return free

    def candidate_starts(self, earliest: int) -> Iterator[int]:
        """``earliest`` (clipped to now), then every breakpoint time after it, in order."""
        if earliest < self.now:
            earliest = self.now
        yield earliest
        times = self.times
        for i in range(bisect_right(times, earliest), len(times)):
            yield times[i]

    def first_fit(self, request_fit: Callable[[int], int | None], duration: int,
                  earliest: int, latest: int | None = None, hole_minimum: int = 0, *,
                  min_count: int = 0, failed: set | None = None
                  ) -> tuple[int, int] | None:
        """The earliest candidate start where the request fits, and the bits it gets.

        ``request_fit(free)`` returns the bits chosen on ``free`` or None (0 counts as
        None).  The window checked at a start s is ``[s, s + max(duration,
        hole_minimum))``: ``hole_minimum`` asks for a free hole at least that long (0: the
        duration alone).  Starts are ``earliest`` (clipped to now) and the breakpoints after
        it, up to ``latest`` inclusive (None: no limit; the last breakpoint extends to
        infinity, so the search always ends).  ``min_count``: a lower bound of the number
        of resources any fit takes (windows with fewer free resources are skipped).
        ``failed``: a set of free sets known to fail for this request (read and extended;
        pass the same set to later calls for the same request to share the knowledge).
        """
        times, frees = self.times, self.frees
        n = len(times)
        if earliest < self.now:
            earliest = self.now
        if latest is not None and latest < earliest:
            return None
        span = duration if duration > hole_minimum else hole_minimum
        if span <= 0:
            span = 1
        if failed is None:
            failed = set()
        ones = self.all_bits
        # window = slots [i, j); front = slots [i, mid) as suffix ANDs suf[k - i0],
        # back = AND of slots [mid, j)
        i = bisect_right(times, earliest) - 1
        start = earliest
        mid = j = i
        back = ones
        suf: list[int] = []
        i0 = i
        while True:
            end = start + span
            while j < n and times[j] < end:
                back &= frees[j]
                j += 1
            if i == mid:
                # front empty: move the back into a new front of suffix ANDs
                suf = [0] * (j - i)
                acc = ones
                for k in range(j - 1, i - 1, -1):
                    acc &= frees[k]
                    suf[k - i] = acc
                i0, mid, back = i, j, ones
            free = suf[i - i0] & back if i < mid else back
            if free.bit_count() >= min_count and free not in failed:
                bits = request_fit(free)
                if bits:
                    return start, bits
                failed.add(free)
            # next candidate: the next breakpoint
            i += 1
            if i >= n:
                return None
            start = times[i]
            if latest is not None and start > latest:
                return None
            if j < i + 1:
                # (only when the window was one slot wide and ended before times[i])
                j = mid = i
                back = ones
                suf, i0 = [], i
