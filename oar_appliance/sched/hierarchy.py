"""Hierarchical placement of a resource request on a set of resources, ignoring time.

Pure: plain data in, bits out.  Resources are *positions* ``0 .. size-1`` in the
scheduling order (``SCHEDULER_RESOURCE_ORDER``); a set of resources is a Python int used as
a bitset (bit i = position i).  A *block* of a label is the set of resources sharing one
value of that label (``network_address='node3'``, ``cpu=12``); a resource whose value is
NULL belongs to no block of that label.

Semantics of one group ``/l0=n0/l1=n1/.../lk=nk`` on ``tree`` (the resources the group may
use at all) and ``free`` (those of them free now):

- levels nest: the blocks of level i are taken inside the chosen block of level i-1
  (label block ∩ parent ∩ tree);
- inside a parent, blocks are tried in order of their first position in the parent (the
  pool order for any tree-shaped hierarchy, even with interleaved labels);
- only the last level must be entirely free: a last-level block is satisfiable iff its
  part in the parent is non-empty and has no busy resource, and it contributes that part;
  an upper block is satisfiable iff its own sub-level can be met inside it;
- ``n`` takes the first n satisfiable blocks; ``ALL`` needs every block meeting the parent
  to be satisfiable (and at least one block); ``BEST`` takes every satisfiable block (at
  least one); ``HALF_BEST`` the first ``max(1, satisfiable // 2)`` of them.

For one group this greedy choice is exact: blocks of one label are disjoint and a block's
satisfiability depends only on its own content, so the group fits iff the function finds
it.  Groups joined by ``+`` are placed in order on disjoint resources: the resources of
the groups already placed leave the ``tree`` (and ``free``) of the next ones.

Hot-path techniques: every block is stored once as its bits shifted down to its first
position, so inside a parent the work happens on small ints relative to the parent
("windows"); labels whose blocks do not interleave are walked with a cursor shift; a last
level of single-resource blocks (``core``, ``resource_id``) is a popcount and a prefix
search; an upper block with fewer free resources than its sub-levels need is skipped
without descending; a one-level group of a label whose blocks are all the same number of
consecutive positions (nodes of one size) is met with a few shift/AND operations on the
whole bitset (:func:`_fit_uniform`) instead of a step per block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import permutations
from typing import Any

from oar_appliance.lang.request import Level, MoldableRequest

ALL, BEST, HALF_BEST = -1, -2, -3
_SYMBOLIC = {"ALL": ALL, "BEST": BEST, "HALF_BEST": HALF_BEST}
_LOW64 = (1 << 64) - 1
#: use the lane computation for labels of equal contiguous blocks (see _fit_uniform)
_UNIFORM = True
#: bits per window of the walk over non-interleaved blocks (see _walk_windows)
_WINDOW = 2048


def _low(x: int) -> int:
    """Index of the lowest set bit of x > 0 (O(1) when it is in the first 64 bits)."""
    m = x & _LOW64
    if m:
        return (m & -m).bit_length() - 1
    return (x & -x).bit_length() - 1


def _first_n(x: int, n: int) -> int:
    """The n lowest set bits of x (x has at least n bits set)."""
    if n <= 6:
        r = 0
        for _ in range(n):
            b = x & -x
            r |= b
            x ^= b
        return r
    lo, hi = n, x.bit_length()
    while lo < hi:
        mid = (lo + hi) >> 1
        if (x & ((1 << mid) - 1)).bit_count() >= n:
            hi = mid
        else:
            lo = mid + 1
    return x & ((1 << lo) - 1)


def _bits_of_positions(positions: Iterable[int], width: int) -> int:
    """A bitset from positions < width, in O(width) (no big-int shifting per position)."""
    flags = bytearray(b"0") * width
    for p in positions:
        flags[width - 1 - p] = 0x31
    return int(flags, 2) if width else 0


class _Label:
    """The blocks of one label: values, first/last positions, bits shifted to the first."""

    __slots__ = ("name", "values", "firsts", "lasts", "locals", "owner", "cover", "full",
                 "atomic", "disjoint", "width", "starts")

    def __init__(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        index: dict[Any, int] = {}
        members: list[list[int]] = []
        owner = [-1] * len(rows)
        for pos, row in enumerate(rows):
            value = row.get(name)
            if value is None:
                continue
            bi = index.get(value)
            if bi is None:
                bi = index[value] = len(members)
                members.append([])
            members[bi].append(pos)
            owner[pos] = bi
        self.name = name
        self.values = list(index)
        self.owner = owner
        self.firsts = [m[0] for m in members]
        self.lasts = [m[-1] for m in members]
        self.locals = []
        for m in members:
            first, span = m[0], m[-1] - m[0] + 1
            if span == len(m):
                self.locals.append((1 << span) - 1)
            else:
                self.locals.append(_bits_of_positions((p - first for p in m), span))
        self.full = all(bi >= 0 for bi in owner)
        self.cover = (1 << len(rows)) - 1 if self.full else _bits_of_positions(
            (p for p, bi in enumerate(owner) if bi >= 0), len(rows))
        self.atomic = all(len(m) == 1 for m in members)
        # blocks are numbered by first position; they do not interleave iff each one ends
        # before the next one starts (then a cursor can walk them)
        self.disjoint = all(self.lasts[i] < self.firsts[i + 1] for i in range(len(members) - 1))
        # every block w consecutive positions (w > 1): ``starts`` has the first of each
        width = len(members[0]) if members else 0
        if width > 1 and all(len(m) == width and m[-1] - m[0] + 1 == width for m in members):
            self.width = width
            self.starts = _bits_of_positions(self.firsts, len(rows))
        else:
            self.width, self.starts = 0, 0


class ResourcePool:
    """The resources in scheduling order and the blocks of every hierarchy label.

    ``rows[i]`` is the resource at position i (a mapping with ``resource_id`` and the label
    columns).  ``aliases`` maps request labels to columns (``nodes`` ->
    ``OARSUB_NODES_RESOURCES``).  Label indexes are built on first use.
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], labels: Sequence[str],
                 aliases: Mapping[str, str] | None = None) -> None:
        self.rows = tuple(rows)
        self.labels = tuple(labels)
        self.aliases = dict({"nodes": "network_address"} if aliases is None else aliases)
        self.size = len(self.rows)
        self.ids = [row["resource_id"] for row in self.rows]
        self.position_of = {rid: pos for pos, rid in enumerate(self.ids)}
        if len(self.position_of) != self.size:
            raise ValueError("duplicate resource_id in the resource rows")
        self.all_bits = (1 << self.size) - 1
        self._labels: dict[str, _Label] = {}
        self._compiled: dict[tuple[Level, ...], tuple] = {}
        self._value_index: dict[tuple[str, ...], dict[tuple, list[int]]] = {}
        self._block_sizes: dict[tuple[str, int], list[int]] = {}

    # -- sets ---------------------------------------------------------------------------
    def bits_of_ids(self, ids: Iterable[int]) -> int:
        """The bitset of these resource ids (KeyError for an unknown id)."""
        pos = self.position_of
        return _bits_of_positions((pos[i] for i in ids), self.size)

    def ids_of(self, bits: int) -> list[int]:
        """The resource ids of a bitset, in position order."""
        if not bits:
            return []
        # the text of the bits from the lowest one only (a job's bits are a short span
        # of a long int)
        low = _low(bits)
        ids, text, out = self.ids, bin(bits >> low)[:1:-1], []
        i, n = 0, len(text)
        while i >= 0:
            # a run of ones at a time (whole nodes, consecutive cores: long runs)
            end = text.find("0", i)
            if end < 0:
                end = n
            out.extend(ids[low + i:low + end])
            i = text.find("1", end)
        return out

    def bits_where(self, predicate: Callable[[Mapping[str, Any]], bool]) -> int:
        """The bitset of the resources whose row satisfies predicate."""
        if not self.size:
            return 0
        return int("".join("1" if predicate(r) else "0" for r in reversed(self.rows)), 2)

    def bits_where_columns(self, columns: Iterable[str],
                           predicate: Callable[[Mapping[str, Any]], bool]) -> int:
        """Like :meth:`bits_where` for a predicate that reads only ``columns``: it is
        called once per distinct combination of their values (a row given to it holds
        only those columns), not once per resource.
        """
        cols = tuple(sorted(columns))
        index = self._value_index.get(cols)
        if index is None:
            index = {}
            for pos, row in enumerate(self.rows):
                key = tuple([row.get(c) for c in cols])
                found = index.get(key)
                if found is None:
                    index[key] = [pos]
                else:
                    found.append(pos)
            self._value_index[cols] = index
        chosen = [positions for key, positions in index.items()
                  if predicate(dict(zip(cols, key)))]
        if len(chosen) == len(index):
            return self.all_bits
        return _bits_of_positions((p for positions in chosen for p in positions), self.size)

    # -- labels -------------------------------------------------------------------------
    def label(self, name: str) -> str:
        """The column of a request label (alias resolved); ValueError if not a label."""
        column = name if name in self.labels else self.aliases.get(name)
        if column not in self.labels:
            raise ValueError(f"unknown resource label '{name}' (valid: "
                             f"{', '.join(self.labels)})")
        return column

    def _index(self, name: str) -> _Label:
        column = self.label(name)
        lab = self._labels.get(column)
        if lab is None:
            lab = self._labels[column] = _Label(column, self.rows)
        return lab

    def blocks(self, label: str) -> list[tuple[Any, int]]:
        """``(value, bits)`` of every block of label, by first position (built on demand)."""
        lab = self._index(label)
        return [(v, loc << f) for v, loc, f in zip(lab.values, lab.locals, lab.firsts)]

    def _compile(self, levels: Sequence[Level]) -> tuple:
        """((label index, count code, free resources a block of the level needs), ...)."""
        key = tuple(levels)
        compiled = self._compiled.get(key)
        if compiled is not None:
            return compiled
        if not key:
            raise ValueError("a resource group needs at least one level")
        codes = []
        for lv in key:
            count = lv.count
            if isinstance(count, str):
                if count not in _SYMBOLIC:
                    raise ValueError(f"bad count '{count}' for {lv.label}")
                codes.append(_SYMBOLIC[count])
            elif isinstance(count, int) and not isinstance(count, bool) and count > 0:
                codes.append(count)
            else:
                raise ValueError(f"bad count '{count}' for {lv.label}")
        needs, need = [], 1
        for code in reversed(codes):
            needs.append(need)
            need *= code if code > 0 else 1
        needs.reverse()
        compiled = tuple((self._index(lv.label), c, nd) for lv, c, nd in zip(key, codes, needs))
        if len(self._compiled) > 4096:
            self._compiled.clear()
        self._compiled[key] = compiled
        return compiled


def _sorted_block_sizes(pool: ResourcePool, lab: _Label, tree: int) -> list[int]:
    """The sizes of the blocks of a label inside tree (those meeting it), increasing."""
    key = (lab.name, tree)
    sizes = pool._block_sizes.get(key)
    if sizes is None:
        per_block: dict[int, int] = {}
        owner, text = lab.owner, bin(tree)[:1:-1]
        i = text.find("1")
        while i >= 0:
            bi = owner[i]
            if bi >= 0:
                per_block[bi] = per_block.get(bi, 0) + 1
            i = text.find("1", i + 1)
        sizes = sorted(per_block.values())
        if len(pool._block_sizes) > 1024:
            pool._block_sizes.clear()
        pool._block_sizes[key] = sizes
    return sizes


def group_lower_bound(pool: ResourcePool, group_levels: Sequence[Level], tree: int) -> int:
    """A lower bound of the number of resources that any fit of the group on ``tree``
    takes, whatever the free set (0 when the group cannot be compiled).

    A group of one level takes whole blocks of ``tree`` (each block's part in the tree, all
    free): at least the n smallest of them, or all of them for ``ALL``; a deeper group at
    least the product of its counts.
    """
    try:
        levels = pool._compile(group_levels)
    except ValueError:
        return 0
    if len(levels) == 1:
        lab, code, _ = levels[0]
        if lab.atomic:
            return code if code > 0 else (tree & lab.cover).bit_count() if code == ALL else 1
        sizes = _sorted_block_sizes(pool, lab, tree)
        if code > 0:
            return sum(sizes[:code])
        if code == ALL:
            return sum(sizes)
        return sizes[0] if sizes else 0
    bound = 1
    for _, code, _ in levels:
        if code > 0:
            bound *= code
    return bound


# ----------------------------------------------------------------------------- fitting

def _fit(levels: tuple, k: int, F: int, B: int, base: int) -> int:
    """Choose level k..end inside a parent whose free part is F and busy part B.

    F, B and the result are relative to position ``base``; 0 means "cannot".
    """
    lab, n, need = levels[k]
    last = k == len(levels) - 1
    if not lab.full:
        cover = lab.cover >> base if base else lab.cover
        F &= cover
        B &= cover
    if last and lab.atomic:
        if n > 0:
            return _first_n(F, n) if F.bit_count() >= n else 0
        if n == ALL:
            return F if not B else 0
        if n == BEST:
            return F
        c = F.bit_count()
        return _first_n(F, max(1, c >> 1)) if c else 0
    if n > 0 and F.bit_count() < n * need:
        return 0
    if last and n > 0 and not base and lab.width and _UNIFORM:
        return _fit_uniform(lab.width, lab.starts, n, F, B)

    if lab.disjoint:
        return _walk_windows(levels, k, last, F, B, base)
    # interleaved blocks: walk the whole parent (busy part included, so that blocks come
    # in the order of their first position in the parent), removing each block visited
    firsts, locs, owner = lab.firsts, lab.locals, lab.owner
    X = F | B
    result = got = 0
    chosen: list[int] = []
    while X:
        bi = owner[base + _low(X)]
        d = firsts[bi] - base
        blk = locs[bi] << d if d >= 0 else locs[bi] >> -d
        X &= ~blk
        sf = blk & F
        if last:
            ok = sf and not (blk & B)
        elif sf.bit_count() < need:
            ok = 0
        elif d > 0:
            ok = _fit(levels, k + 1, sf >> d, (blk & B) >> d, base + d)
            sf = ok << d
        else:
            ok = sf = _fit(levels, k + 1, sf, blk & B, base)
        if ok:
            if n > 0:
                result |= sf
                got += 1
                if got == n:
                    return result
            elif n == ALL:
                result |= sf
            else:
                chosen.append(sf)
        elif n == ALL:
            return 0
    if n > 0:
        return 0
    if n == ALL:
        return result
    for sf in chosen[:len(chosen) if n == BEST else max(1, len(chosen) >> 1)]:
        result |= sf
    return result


def _fit_uniform(width: int, starts: int, n: int, F: int, B: int) -> int:
    """The last level ``label=n`` (n > 0) at the top of the tree, for a label whose blocks
    are all ``width`` consecutive positions (``starts``: their first positions).

    The same choice as the walk (the n first satisfiable blocks, each contributing its
    free part), with a constant number of big-integer operations instead of a Python step
    per block: bit p of ``whole`` says that positions p .. p+width-1 hold no busy
    resource, bit p of ``some`` that they hold a free one (shift-and / shift-or doubling).
    """
    top = (F | B).bit_length() + width
    whole = ((1 << top) - 1) & ~B
    some = F
    done = 1
    while done * 2 <= width:
        whole &= whole >> done
        some |= some >> done
        done *= 2
    if done < width:
        whole &= whole >> (width - done)
        some |= some >> (width - done)
    ok = whole & some & starts
    if ok.bit_count() < n:
        return 0
    # the blocks of the n first starts (disjoint, so the product has no carry)
    return F & (_first_n(ok, n) * ((1 << width) - 1))


def _walk_windows(levels: tuple, k: int, last: bool, F: int, B: int, base: int) -> int:
    """_fit for a label whose blocks do not interleave (each ends before the next starts).

    The parent is cut into windows of about _WINDOW bits, each window holding whole
    blocks, so that the per-block work is on small ints; inside a window a cursor shift
    walks the blocks (over the free part only, except for ALL which must see busy blocks).
    """
    lab, n, need = levels[k]
    firsts, lasts, locs, owner = lab.firsts, lab.lasts, lab.locals, lab.owner
    walk_busy = n == ALL
    total = (F | B).bit_length() if walk_busy else F.bit_length()
    result = got = 0
    chosen: list[tuple[int, int]] = []
    ws, width = 0, _WINDOW
    while ws < total:
        if ws == 0 and total <= width:
            Fw, Bw = F, B
        else:
            mask = (1 << width) - 1
            Fw, Bw = (F >> ws) & mask, (B >> ws) & mask
        X = Fw | Bw if walk_busy else Fw
        xo = 0                          # X is Fw (or Fw|Bw) shifted right by xo
        wres = 0
        next_ws, next_width = ws + width, _WINDOW
        at = base + ws
        while X:
            bi = owner[at + xo + _low(X)]
            d, end = firsts[bi] - at, lasts[bi] - at + 1
            if end > width or (d < 0 and ws):
                # the block is not wholly inside the window (it crosses the end, or it
                # began in a previous window with busy resources only): restart the
                # window where the block starts (in the parent), wide enough for it
                start = ws + d if ws + d > 0 else 0
                next_ws, next_width = start, max(_WINDOW, ws + end - start)
                break
            X >>= end - xo
            xo = end
            blk = locs[bi] << d if d >= 0 else locs[bi] >> -d
            sf = blk & Fw
            if last:
                ok = sf and not (blk & Bw)
            elif sf.bit_count() < need:
                ok = 0
            elif d > 0:
                ok = _fit(levels, k + 1, sf >> d, (blk & Bw) >> d, at + d)
                sf = ok << d
            else:
                ok = sf = _fit(levels, k + 1, sf, blk & Bw, at)
            if ok:
                if n > 0:
                    wres |= sf
                    got += 1
                    if got == n:
                        return result | (wres << ws)
                elif n == ALL:
                    wres |= sf
                else:
                    chosen.append((ws, sf))
            elif n == ALL:
                return 0
        if wres:
            result |= wres << ws
        ws, width = next_ws, next_width
    if n > 0:
        return 0
    if n == ALL:
        return result
    part, part_ws = 0, 0
    for w, sf in chosen[:len(chosen) if n == BEST else max(1, len(chosen) >> 1)]:
        if w != part_ws:
            result |= part << part_ws
            part, part_ws = 0, w
        part |= sf
    return result | (part << part_ws)


def fit_group(pool: ResourcePool, group_levels: Sequence[Level], tree: int, free: int,
              memo: dict | None = None) -> int | None:
    """The resources chosen for one group, or None if it cannot be met.

    ``tree``: the resources the group may use at all; ``free``: those free now.  Raises
    ValueError for an unknown label or a bad count.  ``memo``: an optional dict, owned by
    the caller for one sequence of calls on one pool, remembering the answer for each
    (levels, tree, free) already seen (a hit costs the hashing of the two bitsets).
    """
    return _fit_levels(pool._compile(group_levels), tree, free, memo) or None


def _fit_levels(levels: tuple, tree: int, free: int, memo: dict | None) -> int:
    F = free & tree
    if not F:
        return 0
    if memo is None:
        return _fit(levels, 0, F, tree ^ F, 0)
    key = (levels, tree, F)
    chosen = memo.get(key)
    if chosen is None:
        chosen = memo[key] = _fit(levels, 0, F, tree ^ F, 0)
    return chosen


#: up to this many '+' groups every order is tried; beyond, two orders only
_ALL_ORDERS_UP_TO = 3


def fit_request(pool: ResourcePool, request: MoldableRequest, usable: int, free: int,
                constraint_bits: Callable[[str | None], int], *,
                explain: bool = True, memo: dict | None = None) -> tuple[int | None, str]:
    """Place every group of a moldable alternative on disjoint resources.

    The groups are placed one after the other (:func:`_fit_in_order`); when the given
    order fails and every count is a number, other orders are tried, since an earlier
    group may take what a later, more constrained, one needs: every order for up to :data:`_ALL_ORDERS_UP_TO` groups,
    else the most constrained group first (fewest usable resources) and the reverse
    order.  The orders are tried in a fixed sequence: the result is deterministic.
    Returns ``(bits, "")`` or ``(None, reason)``, the reason of the given order; other
    arguments as for :func:`_fit_in_order`.
    """
    bits, reason = _fit_in_order(pool, request, usable, free, constraint_bits,
                                 explain=explain, memo=memo)
    if bits is not None or len(request.groups) < 2 or any(
            not isinstance(lv.count, int) for g in request.groups for lv in g.levels):
        # (BEST, HALF_BEST, ALL are relative to what the groups before took: their
        # meaning depends on the order, which stays the given one)
        return bits, reason
    for order in _other_orders(request, usable, constraint_bits):
        # each group alone, what the groups before it took being busy (not outside its
        # tree): its blocks are whole in its own tree, so the result is valid whatever
        # the order the groups are read in
        taken = 0
        for i in order:
            found, _ = _fit_in_order(pool, replace(request, groups=(request.groups[i],)),
                                     usable, free & ~taken, constraint_bits,
                                     explain=False, memo=memo)
            if found is None:
                break
            taken |= found
        else:
            return taken, ""
    return None, reason


def _other_orders(request: MoldableRequest, usable: int,
                  constraint_bits: Callable[[str | None], int]) -> list[tuple[int, ...]]:
    n = len(request.groups)
    given = tuple(range(n))
    if n <= _ALL_ORDERS_UP_TO:
        return [p for p in permutations(given) if p != given]
    sizes = [(usable & constraint_bits(g.constraint)).bit_count() for g in request.groups]
    orders = [tuple(sorted(given, key=lambda i: (sizes[i], i))), given[::-1]]
    return [o for k, o in enumerate(orders) if o != given and o not in orders[:k]]


def _fit_in_order(pool: ResourcePool, request: MoldableRequest, usable: int, free: int,
                  constraint_bits: Callable[[str | None], int], *,
                  explain: bool = True, memo: dict | None = None) -> tuple[int | None, str]:
    """Place every group of a moldable alternative on disjoint resources, in order.

    Returns ``(bits, "")`` or ``(None, reason)``; the reason names the group and the level
    that cannot be met.  ``explain=False`` skips the (slower) diagnosis of a failure and
    returns a short reason (for the Gantt's many tries); ``memo`` as for fit_group.
    """
    if not request.groups:
        return None, "the request has no resource group"
    taken = 0
    for gi, group in enumerate(request.groups, 1):
        try:
            levels = pool._compile(group.levels)
        except ValueError as exc:
            return None, f"{_where(gi, group)}: {exc}"
        tree = usable & constraint_bits(group.constraint)
        if taken:
            left = tree & ~taken
            if tree and not left:
                return None, f"{_where(gi, group)}: no usable resource left by the previous groups"
            tree = left
        if not tree:
            if group.constraint is not None:
                return None, (f"{_where(gi, group)}: no usable resource matches "
                              f"{{{group.constraint}}}")
            return None, f"{_where(gi, group)}: no usable resource"
        chosen = _fit_levels(levels, tree, free, memo)
        if not chosen:
            if not explain:
                return None, f"{_where(gi, group)}: cannot be satisfied"
            F = free & tree
            return None, f"{_where(gi, group)}: {_explain(levels, F, tree ^ F)}"
        taken |= chosen
    return taken, ""


def _where(gi: int, group: Any) -> str:
    return f"group {gi} ({_group_text(group.constraint, group.levels)})"


# ----------------------------------------------------------------------------- diagnosis

def _group_text(constraint: str | None, levels: Sequence[Level]) -> str:
    text = "".join(f"/{lv.label}={lv.count}" for lv in levels)
    return f"{{{constraint}}}{text}" if constraint is not None else text


def _level_stats(levels: tuple, k: int, F: int, B: int,
                 base: int) -> list[tuple[int, int, int, bool]]:
    """(free part, busy part, their base, satisfiable) of every block of level k meeting
    a parent whose free and busy parts are F and B (relative to base)."""
    lab = levels[k][0]
    last = k == len(levels) - 1
    X = (F | B) & (lab.cover >> base)
    out = []
    while X:
        bi = lab.owner[base + _low(X)]
        d = lab.firsts[bi] - base
        blk = lab.locals[bi] << d if d >= 0 else lab.locals[bi] >> -d
        X &= ~blk
        sf, sb = blk & F, blk & B
        if d > 0:
            sf, sb, at = sf >> d, sb >> d, base + d
        else:
            at = base
        ok = bool(sf) and (not sb if last else _fit(levels, k + 1, sf, sb, at) != 0)
        out.append((sf, sb, at, ok))
    return out


def _meets(code: int, stats: list) -> bool:
    sat = sum(1 for s in stats if s[3])
    if code > 0:
        return sat >= code
    if code == ALL:
        return bool(stats) and sat == len(stats)
    return sat >= 1


def _explain(levels: tuple, F: int, B: int) -> str:
    """Why a failed group fails: the highest level whose requirement no parent meets and
    below which some candidate parent could meet the next level."""
    parents = [_level_stats(levels, 0, F, B, 0)]
    k = 0
    while k + 1 < len(levels):
        below = [_level_stats(levels, k + 1, sf, sb, at)
                 for stats in parents for sf, sb, at, _ in stats if sf]
        if not below or any(_meets(levels[k + 1][1], stats) for stats in below):
            break
        parents, k = below, k + 1
    code, label = levels[k][1], levels[k][0].name
    inside = f" in any {levels[k - 1][0].name}" if k else ""
    best = max((sum(1 for s in stats if s[3]) for stats in parents), default=0)
    if code == ALL and any(parents):
        return f"not every block of {label} is available{inside}"
    if code > 0 and best:
        return f"only {best} block{'s' if best > 1 else ''} of {label} available{inside}"
    return f"no block of {label} available{inside}"
