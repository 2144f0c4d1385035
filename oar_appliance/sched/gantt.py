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
from itertools import accumulate, repeat
from operator import and_, sub, xor
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

    def take(self, start: int, end: int, bits: int) -> None:
        """:meth:`occupy` for ``bits`` known to be free during the whole of ``[start,
        end)`` (start >= now; a placement found on this Gantt): every slot loses all of
        them, no check per slot (the loop runs in C)."""
        if end <= start or not bits:
            return
        i = self._split(start)
        j = self._split(end)
        frees, counts = self.frees, self.counts
        frees[i:j] = map(xor, frees[i:j], repeat(bits, j - i))
        counts[i:j] = map(sub, counts[i:j], repeat(bits.bit_count(), j - i))

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
        A monotone request also skips a window whose free set (in ``tree``) is a subset of
        the last failed one.

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
        last_failed = -1                # the last usable free set that failed (monotone)
        # the window of a start in slot i is the slots [i, j); slots [i, checked) are known
        # to have at least min_count free resources
        i = bisect_right(times, earliest) - 1
        start = earliest
        j = checked = i
        # lazy two-stack AND: front = the slots before mid as suffix ANDs (suf[mid - 1 - k]
        # for slot k), back = AND of slots [mid, jb); rebuilt when the start passes mid
        mid = jb = i
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
            if k >= lo and min(counts[lo:j]) < min_count:
                while counts[k] >= min_count:
                    k -= 1
            else:
                k = lo - 1
            checked = j
            if k >= lo:
                i = k + 1                   # every start up to slot k has it in its window
            else:
                skip = False
                if monotone:
                    shortest = failed_spans.get(start)
                    skip = shortest is not None and shortest <= span
                if not skip and i >= mid:
                    # suffix ANDs of the window, suf[w - 1] = AND of its last w slots,
                    # computed (in C) by chunks ending at w = 1, 2, 4, 8...: the number of
                    # usable free resources is checked at those w, and the first w where
                    # none is left found by bisection in its chunk
                    seg = frees[i:j]
                    seg.reverse()
                    length = j - i
                    suf = []
                    acc = ones
                    fail = 0
                    w0 = 0
                    while w0 < length:
                        w1 = w0 + w0 if w0 else 1
                        if w1 > length:
                            w1 = length
                        part = list(accumulate(seg[w0:w1], and_, initial=acc))
                        del part[0]
                        suf += part
                        acc = part[-1]
                        have = acc if tree is None else acc & tree
                        if not have:
                            a, b = 0, len(part) - 1         # the first empty one
                            while a < b:
                                c = (a + b) // 2
                                if part[c] if tree is None else part[c] & tree:
                                    a = c + 1
                                else:
                                    b = c
                            fail = w0 + a + 1
                            break
                        if not w1 & (w1 - 1) and have.bit_count() < min_count:
                            fail = w1               # (counted at 1, 2, 4, 8... slots: it costs)
                            break
                        w0 = w1
                    mid, jb, back = j, j, ones
                    if fail:
                        # too few usable resources are free during the last `fail` slots:
                        # no start up to the first of them can fit (their windows hold
                        # them); the shorter suffixes are kept for the later starts
                        i = j - fail + 1
                        if i >= n:
                            return None
                        start = times[i]
                        if latest is not None and start > latest:
                            return None
                        continue
                if not skip:
                    while jb < j:
                        back &= frees[jb]
                        jb += 1
                    free = suf[mid - 1 - i] & back if jb > mid else suf[mid - 1 - i]
                    have = free if tree is None else free & tree
                    if have.bit_count() >= min_count:
                        if monotone:
                            # (compared on what the request may use: the rest is no help)
                            if last_failed >= 0 and have | last_failed == last_failed:
                                skip = True
                        elif free in failed:
                            skip = True
                        if not skip:
                            bits = request_fit(free)
                            if bits:
                                return start, bits
                            if monotone:
                                last_failed = have
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
