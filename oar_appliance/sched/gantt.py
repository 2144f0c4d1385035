"""The Gantt of free resources over time (pure: plain ints in, ints out).

Resources are positions in the scheduling order and a set of them is a Python int used as
a bitset (see :mod:`oar_appliance.sched.hierarchy`).  The Gantt is a sorted list of
breakpoints ``(time, free_bits)``: ``free_bits`` holds from that time up to the next
breakpoint, the last one extends to infinity.  It starts as one breakpoint ``(now,
all_bits)``; nothing is ever planned before ``now`` (occupations are clipped to it).

Times are integers (seconds); intervals are half-open ``[start, end)``, so a job ending at
t and another starting at t do not overlap.

Hot path (:meth:`Gantt.first_fit`): every slot keeps the number of its free resources, so
a candidate start whose window holds a slot with fewer free resources than the request
needs at least is rejected without any big-integer work, and the walk jumps past the last
such slot (every start before it has it in its window too).  The free set of a window is
only computed for the starts that pass, by a two-stack sliding AND (each slot is ANDed
O(1) times amortized, whatever the window length).  A window whose free set is known to
fail for the request (the same set, or for a monotone request a start already tried with a
window as long or shorter, or a subset of the previous failure) is skipped without calling
the fit function.
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

    __slots__ = ("now", "all_bits", "times", "frees", "counts")

    def __init__(self, now: int, all_bits: int) -> None:
        self.now = now
        self.all_bits = all_bits
        self.times: list[int] = [now]
        self.frees: list[int] = [all_bits]
        #: number of free resources of each slot (``frees[k].bit_count()``)
        self.counts: list[int] = [all_bits.bit_count()]

    def __repr__(self) -> str:
        slots = ", ".join(f"({t}, {bin(f)})" for t, f in zip(self.times, self.frees))
        return f"Gantt([{slots}])"

    def copy(self) -> Gantt:
        """An independent Gantt with the same slots (the bitsets are immutable ints)."""
        other = Gantt.__new__(Gantt)
        other.now, other.all_bits = self.now, self.all_bits
        other.times, other.frees, other.counts = self.times[:], self.frees[:], self.counts[:]
        return other

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
        times.insert(i, t)
        self.frees.insert(i, self.frees[i - 1])
        self.counts.insert(i, self.counts[i - 1])
        return i

    def occupy(self, start: int, end: int, bits: int) -> None:
        """Remove ``bits`` from the free resources on ``[start, end)`` (clipped to now)."""
        if start < self.now:
            start = self.now
        if end <= start or not bits:
            return
        i = self._split(start)
        j = self._split(end)
        frees, counts, size = self.frees, self.counts, bits.bit_count()
        for k in range(i, j):
            f = frees[k]
            removed = f & bits          # (cheap: as long as bits, often much shorter)
            if removed:
                # (XOR with a short positive int: far cheaper than AND with ~bits)
                frees[k] = f ^ removed
                counts[k] -= size if removed == bits else removed.bit_count()

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
                  min_count: int = 0, failed: set | None = None,
                  failed_spans: dict | None = None, tree: int | None = None
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

        ``failed_spans``: only for a *monotone* request (one that fails on every subset of
        a free set it fails on; one group of :mod:`~oar_appliance.sched.hierarchy` is): a
        dict, start time -> the shortest window length that failed from there, read and
        extended (valid for later calls as long as the Gantt only loses free resources).
        A monotone request also skips a window whose free set is a subset of the last
        failed one.

        ``tree``: the resources the request may use at all, when some are excluded
        (constraints): ``min_count`` is then also checked on the window's free resources
        in the tree.
        """
        times, frees, counts = self.times, self.frees, self.counts
        n = len(times)
        if earliest < self.now:
            earliest = self.now
        if latest is not None and latest < earliest:
            return None
        span = duration if duration > hole_minimum else hole_minimum
        if span <= 0:
            span = 1
        monotone = failed_spans is not None
        if failed is None and not monotone:
            failed = set()
        ones = self.all_bits
        last_failed = -1                # the last free set that failed (monotone requests)
        # the window of a start in slot i is the slots [i, j); slots [i, checked) are known
        # to have at least min_count free resources
        i = bisect_right(times, earliest) - 1
        start = earliest
        j = checked = i
        # lazy two-stack AND: front = slots [i0, mid) as suffix ANDs suf[k - i0], back =
        # AND of slots [mid, jb); rebuilt when the start passes mid
        i0 = mid = jb = i
        suf: list[int] = []
        back = ones
        while True:
            end = start + span
            while j < n and times[j] < end:
                j += 1
            if j <= i:
                j = i + 1
            # the last slot of the window with too few free resources, if any
            k = j - 1
            lo = checked if checked > i else i
            while k >= lo and counts[k] >= min_count:
                k -= 1
            checked = j
            if k >= lo:
                i = k + 1                   # every start up to slot k has it in its window
            else:
                skip = False
                if monotone:
                    shortest = failed_spans.get(start)
                    skip = shortest is not None and shortest <= span
                if not skip and i >= mid:
                    suf = [0] * (j - i)
                    acc = ones
                    m = j - 1
                    while m >= i:
                        acc &= frees[m]
                        if not acc or (tree is not None and not acc & tree):
                            break
                        w = j - m
                        if not w & (w - 1) and (acc if tree is None else acc & tree
                                                ).bit_count() < min_count:
                            break               # (counted at 1, 2, 4, 8... slots: it costs)
                        suf[m - i] = acc
                        m -= 1
                    if m >= i:
                        # too few usable resources are free during [slot m, j): no start
                        # up to slot m can fit (their windows hold those slots)
                        # (the suffixes of slots m+1 .. j-1 are kept for those starts)
                        i0, mid, jb, back = i, j, j, ones
                        i = m + 1
                        if i >= n:
                            return None
                        start = times[i]
                        if latest is not None and start > latest:
                            return None
                        continue
                    i0, mid, jb, back = i, j, j, ones
                if not skip:
                    while jb < j:
                        back &= frees[jb]
                        jb += 1
                    free = suf[i - i0] & back if jb > mid else suf[i - i0]
                    if free.bit_count() >= min_count and (
                            tree is None or (free & tree).bit_count() >= min_count):
                        if monotone:
                            if last_failed >= 0 and free | last_failed == last_failed:
                                skip = True
                        elif free in failed:
                            skip = True
                        if not skip:
                            bits = request_fit(free)
                            if bits:
                                return start, bits
                            if monotone:
                                last_failed = free
                                shortest = failed_spans.get(start)
                                if shortest is None or span < shortest:
                                    failed_spans[start] = span
                            else:
                                failed.add(free)
                i += 1
            # next candidate: the breakpoint of slot i
            if i >= n:
                return None
            start = times[i]
            if latest is not None and start > latest:
                return None
