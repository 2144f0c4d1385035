"""The resource request of ``oarsub -l``: data types, grammar, canonical text, storage rows.

A job has one or several moldable alternatives (one per ``-l``); each is a list of
resource groups joined by ``+`` and an optional walltime::

    request  := [ groups ] [ "," "walltime=" duration ]  |  "walltime=" duration
    groups   := group ( "+" group )*
    group    := [ "{" property-expression "}" ] [ "/" ] level ( "/" level )*
    level    := label "=" ( count | "ALL" | "BEST" | "HALF_BEST" )
    duration := hours | hours ":" minutes | hours ":" minutes ":" seconds

Examples: ``/nodes=4``, ``nodes=2/cpu=1/core=2,walltime=2:15:00``, ``core=ALL``,
``{gpu_model IN ('A100','H100')}/nodes=2+{cluster='b'}/core=4,walltime=1:30``.

Rules
=====

* **Labels** are the resource labels of ``HIERARCHY_LABELS`` (case-sensitive); an unknown
  label is refused with the list of valid ones. ``nodes`` and ``node`` are aliases of the
  ``OARSUB_NODES_RESOURCES`` label (``network_address``), unless the name is itself a
  label. ``host`` is *not* an alias: it is accepted only when it is a label (many sites have
  a ``host`` property of their own). A label may appear only once in a group (``nodes`` and
  ``network_address`` are the same label).
* **Counts** are positive integers (at most 2147483647), or ``ALL`` (every block of the
  level), ``BEST`` (all the free blocks, at least one), ``HALF_BEST`` (half of them, at
  least one) in any letter case; the three symbols are allowed only in a group with a
  single level (``core=ALL``, not ``nodes=ALL/core=1``).
* ``{...}`` restricts one group with a property expression (the language of ``-p``); it
  comes first in its group. It may contain ``/``, ``+``, ``,`` and ``}`` inside quoted
  strings (``'...'``, ``"..."``, a quote doubled inside) and ``IN (...)`` lists, but no
  other ``{``. Its syntax is checked here (a bad expression is an ``ExpressionError`` that
  names the group); its column names are checked later against the database.
* The ``/`` before the first level is optional. Whitespace around ``=``, ``,``, ``/``, ``+``,
  ``{`` and ``}`` is ignored (``nodes = 2 / cpu = 1 , walltime = 1:30``).
* **walltime** may be given once, last, after a ``,`` (``nodes=2,walltime=1``), or alone
  (``walltime=1``, or ``,walltime=1``). Nothing else may follow a ``,``. A bare number is
  hours (``walltime=2`` is 2 h), ``1:30`` is 1 h 30 min, ``1:30:15`` adds seconds; the parts
  are non-negative integers of any size (``0:90`` is 90 minutes), the total must be more
  than 0 seconds and at most 100 years.
* A request without groups (``""``, ``walltime=2``) asks for the default resources
  (``OARSUB_DEFAULT_RESOURCES``, applied by :func:`parse_requests`). A request without
  walltime keeps ``walltime=None``: the admission rules / ``DEFAULT_JOB_WALLTIME`` apply.

A malformed request raises :class:`RequestError` (a usage error, exit code 2) whose message
quotes the request, the offending part and its 1-based column, and says what was expected.

In the database a request is stored as ``moldable_job_descriptions`` (walltime),
``job_resource_groups`` (the group's property expression) and
``job_resource_descriptions`` (one row per level, ``res_job_order`` from 0, the count in
``res_job_value`` with the codes of :data:`COUNT_CODES` for ALL, BEST and HALF_BEST):
:func:`storage_rows` gives these rows and :func:`from_storage` rebuilds the request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, NoReturn

from oar_appliance.errors import ConfigError, DatabaseError, ExpressionError, UsageError

#: stored values of the symbolic counts in ``job_resource_descriptions.res_job_value``
COUNT_CODES = {"ALL": -1, "BEST": -2, "HALF_BEST": -3}
COUNT_NAMES = {code: name for name, code in COUNT_CODES.items()}


@dataclass(frozen=True)
class Level:
    """One level of a group: ``label=count``, e.g. ``network_address=2`` or ``core=ALL``."""

    label: str
    #: a positive int, or one of "ALL", "BEST", "HALF_BEST"
    count: int | str

    @property
    def stored_count(self) -> int:
        return self.count if isinstance(self.count, int) else COUNT_CODES[self.count]


@dataclass(frozen=True)
class ResourceGroup:
    """Levels from the top of the hierarchy down, restricted by an optional expression."""

    levels: tuple[Level, ...]
    #: the text between ``{`` and ``}``, or None
    constraint: str | None = None


@dataclass(frozen=True)
class MoldableRequest:
    """One ``-l`` alternative: groups on disjoint resources, and a walltime in seconds."""

    groups: tuple[ResourceGroup, ...]
    walltime: int | None = None


# ----------------------------------------------------------------------------- grammar


class RequestError(UsageError):
    """A malformed ``-l`` request or duration (a usage error, exit code 2)."""


#: names standing for the ``OARSUB_NODES_RESOURCES`` label when they are not labels themselves
NODE_ALIASES = ("nodes", "node")
#: largest count (``res_job_value`` is a 32-bit integer)
MAX_COUNT = 2**31 - 1
#: longest duration accepted, in seconds (100 years)
MAX_DURATION = 100 * 365 * 24 * 3600

_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_SEPARATORS = "/+,="
_QUOTES = "'\"`"


def _show(text: str, limit: int = 80) -> str:
    """``text`` for a one-line message: control characters escaped, long texts shortened."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def parse_duration(text: str, *, what: str = "walltime", allow_zero: bool = False) -> int:
    """Seconds of ``hours``, ``hours:minutes`` or ``hours:minutes:seconds``.

    The parts are non-negative integers of any size (``0:90`` is 5400). Raises
    :class:`RequestError` for anything else, for a total of 0 (unless ``allow_zero``) and
    for more than 100 years. ``what`` names the value in the messages.
    """
    spelled = text.strip()
    expected = "expected hours, hours:minutes or hours:minutes:seconds"
    parts = spelled.split(":")
    if len(parts) > 3:
        raise RequestError(f"invalid {what} '{_show(spelled)}': too many ':' parts; {expected}")
    for part in parts:
        if not _DIGITS.fullmatch(part):
            problem = "empty part" if not part else f"'{_show(part)}' is not a non-negative integer"
            raise RequestError(f"invalid {what} '{_show(spelled)}': {problem}; {expected}")
    if any(len(part.lstrip("0")) > 15 for part in parts):
        raise RequestError(f"{what} '{_show(spelled)}' is too long (more than 100 years)")
    hours, minutes, seconds = (int(part) for part in parts + ["0"] * (3 - len(parts)))
    total = hours * 3600 + minutes * 60 + seconds
    if total == 0 and not allow_zero:
        raise RequestError(f"{what} '{_show(spelled)}' is 0 seconds; it must be longer than 0")
    if total > MAX_DURATION:
        raise RequestError(f"{what} '{_show(spelled)}' is too long (more than 100 years)")
    return total


def format_duration(seconds: int) -> str:
    """``H:MM:SS`` (hours unbounded, a leading ``-`` for a negative duration)."""
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    return f"{sign}{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Tok(NamedTuple):
    kind: str  # one of "/+,=", "{" (text: the inside of the braces) or "w" (a word)
    text: str
    start: int  # 0-based, in the -l text
    end: int

    def show(self) -> str:
        return f"'{_show(self.text)}'" if self.kind == "w" else "'{...}'" if self.kind == "{" else f"'{self.kind}'"


class _Parser:
    """One ``-l`` text: raises :class:`RequestError` prefixed with ``in -l "<text>": ``."""

    def __init__(self, text: str, labels: Sequence[str], nodes_label: str):
        self.text = text
        self.labels = tuple(labels)
        self.nodes_label = nodes_label

    def fail(self, message: str, error: type[Exception] = RequestError) -> NoReturn:
        raise error(f'in -l "{_show(self.text)}": {message}')

    def source(self, toks: Sequence[_Tok]) -> str:
        return _show(self.text[toks[0].start : toks[-1].end].strip(), 60) if toks else ""

    # -- scanner
    def scan(self) -> list[_Tok]:
        text, toks, i, n = self.text, [], 0, len(self.text)
        while i < n:
            c = text[i]
            if c.isspace():
                i += 1
            elif c in _SEPARATORS:
                toks.append(_Tok(c, c, i, i + 1))
                i += 1
            elif c == "}":
                self.fail(f"unbalanced '}}' at column {i + 1}: no '{{' before it")
            elif c == "{":
                j = self.scan_braces(i)
                toks.append(_Tok("{", text[i + 1 : j], i, j + 1))
                i = j + 1
            else:
                j = i
                while j < n and not text[j].isspace() and text[j] not in "/+,={}":
                    j += 1
                toks.append(_Tok("w", text[i:j], i, j))
                i = j
        return toks

    def scan_braces(self, i: int) -> int:
        """Index of the ``}`` closing the ``{`` at ``i``, skipping quoted strings."""
        text, n, j = self.text, len(self.text), i + 1
        while j < n and text[j] != "}":
            if text[j] == "{":
                self.fail(f"nested '{{' at column {j + 1} inside the '{{' at column {i + 1}: braces cannot be nested")
            if text[j] in _QUOTES:
                quote, k = text[j], j + 1
                while k < n and (text[k] != quote or text[k + 1 : k + 2] == quote):
                    k += 2 if text[k] == quote else 1
                if k >= n:
                    self.fail(f"unterminated quote ({quote}) at column {j + 1} inside the '{{' at column {i + 1}")
                j = k
            j += 1
        if j >= n:
            self.fail(f"unbalanced '{{' at column {i + 1}: no matching '}}'")
        return j

    # -- parser
    def parse(self) -> MoldableRequest:
        items: list[list[_Tok]] = [[]]
        for tok in self.scan():
            if tok.kind == ",":
                items.append([])
            items[-1].append(tok)
        head, tails = items[0], items[1:]
        walltime = None
        if self.is_walltime(head):
            if tails:
                if any(self.is_walltime(tail[1:]) for tail in tails):
                    self.fail("walltime given twice")
                self.fail("walltime must come last, after the resources and a ',' (e.g. 'nodes=2,walltime=1:00:00')")
            walltime, head = self.walltime(head), []
        groups: list[list[_Tok]] = [[]]
        for tok in head:
            if tok.kind == "+":
                if not groups[-1]:
                    self.fail(f"empty group before '+' at column {tok.end}")
                groups.append([])
            else:
                groups[-1].append(tok)
        if head and not groups[-1]:
            self.fail(f"empty group after '+' at column {head[-1].end}")
        parsed = tuple(self.group(toks, n) for n, toks in enumerate(groups, 1) if toks)
        for tail in tails:
            comma, rest = tail[0], tail[1:]
            if not rest:
                self.fail(f"nothing after ',' at column {comma.end}; expected walltime=<duration>")
            if not self.is_walltime(rest):
                self.fail(f"only walltime=<duration> may follow ',' (column {comma.end}), got '{self.source(rest)}'")
            if walltime is not None:
                self.fail("walltime given twice")
            walltime = self.walltime(rest)
        return MoldableRequest(groups=parsed, walltime=walltime)

    @staticmethod
    def is_walltime(toks: Sequence[_Tok]) -> bool:
        return len(toks) >= 2 and toks[0].kind == "w" and toks[0].text.lower() == "walltime" and toks[1].kind == "="

    def walltime(self, toks: Sequence[_Tok]) -> int:
        if len(toks) < 3 or toks[2].kind != "w":
            self.fail(f"missing duration after 'walltime=' at column {toks[1].end}")
        if len(toks) > 3:
            self.fail(
                f"unexpected {toks[3].show()} at column {toks[3].start + 1} after the walltime; "
                "the walltime must come last (e.g. 'nodes=2,walltime=1:00:00')"
            )
        try:
            return parse_duration(toks[2].text)
        except RequestError as exc:
            self.fail(exc.message)

    def group(self, toks: list[_Tok], number: int) -> ResourceGroup:
        where = f"group {number} '{self.source(toks)}'"
        constraint, i = None, 0
        if toks[0].kind == "{":
            constraint = self.constraint(toks[0], number)
            i = 1
        if i < len(toks) and toks[i].kind == "/":
            i += 1
        if i >= len(toks):
            self.fail(f"{where} has no level; expected label=count (e.g. '{{...}}/nodes=2')")
        levels: list[Level] = []
        seen: dict[str, str] = {}
        while True:
            level, i = self.level(toks, i)
            if level.label in seen:
                first = seen[level.label]
                alias = f" ('{first}' and '{level.label}' are the same label)" if first != level.label else ""
                self.fail(f"label '{level.label}' appears twice in {where}{alias}")
            seen[level.label] = toks[i - 3].text
            levels.append(level)
            if i >= len(toks):
                break
            tok = toks[i]
            if tok.kind != "/":
                self.fail(
                    f"unexpected {tok.show()} at column {tok.start + 1} after '{self.source(toks[i - 3 : i])}'; "
                    "expected '/', '+', ',' or the end"
                )
            if i + 1 >= len(toks):
                self.fail(f"empty level after '/' at column {tok.start + 1}; expected label=count")
            i += 1
        if len(levels) > 1 and any(isinstance(level.count, str) for level in levels):
            self.fail(
                f"ALL, BEST and HALF_BEST are allowed only in a group with a single level, got '{self.source(toks)}'"
            )
        return ResourceGroup(levels=tuple(levels), constraint=constraint)

    def constraint(self, tok: _Tok, number: int) -> str:
        text = tok.text.strip()
        try:
            from oar_appliance.lang import properties  # ~70 ms of lark: only for {...}

            properties.parse(text)
        except ExpressionError as exc:
            self.fail(f"in the {{...}} of group {number} (column {tok.start + 1}): {exc.message}", ExpressionError)
        return text

    def level(self, toks: list[_Tok], i: int) -> tuple[Level, int]:
        tok = toks[i]
        if tok.kind == "{":
            self.fail(f"'{{...}}' at column {tok.start + 1} must come first in its group (one per group)")
        if tok.kind == "/":
            self.fail(f"empty level: '//' at column {tok.start}; expected label=count between the two '/'")
        if tok.kind == "=":
            self.fail(f"missing label before '=' at column {tok.start + 1}")
        if tok.kind != "w":
            self.fail(f"expected label=count at column {tok.start + 1}, got {tok.show()}")
        if i + 1 >= len(toks) or toks[i + 1].kind != "=":
            got = f", got {toks[i + 1].show()}" if i + 1 < len(toks) else ""
            self.fail(f"missing '=' after '{_show(tok.text)}' at column {tok.end + 1}; expected label=count{got}")
        if i + 2 >= len(toks) or toks[i + 2].kind != "w":
            self.fail(f"missing count after '{_show(tok.text)}=' at column {toks[i + 1].end + 1}")
        return Level(self.label(tok.text), self.count(tok.text, toks[i + 2].text)), i + 3

    def label(self, word: str) -> str:
        valid = f"(valid: {', '.join(self.labels)})"
        if word in self.labels:
            return word
        if word in NODE_ALIASES:
            if self.nodes_label not in self.labels:
                self.fail(f"'{word}' stands for '{self.nodes_label}', which is not a resource label {valid}")
            return self.nodes_label
        if word.lower() == "walltime":
            self.fail("walltime is not a resource: it must come last, after a ',' (e.g. 'nodes=2,walltime=1:00:00')")
        self.fail(f"unknown resource label '{_show(word)}' {valid}")

    def count(self, label: str, word: str) -> int | str:
        if word.upper() in COUNT_CODES:
            return word.upper()
        if _DIGITS.fullmatch(word):
            if len(word.lstrip("0")) > 10 or int(word) > MAX_COUNT:
                self.fail(f"count of '{_show(label)}' is too large, got '{_show(word)}' (at most {MAX_COUNT})")
            if int(word) > 0:
                return int(word)
        self.fail(f"count of '{_show(label)}' must be a positive integer, ALL, BEST or HALF_BEST, got '{_show(word)}'")


def parse_request(text: str, labels: Sequence[str], nodes_label: str = "network_address") -> MoldableRequest:
    """Parse one ``-l`` text (see the module documentation).

    ``labels`` are the valid labels (``HIERARCHY_LABELS``); ``nodes_label`` the label that
    ``nodes`` and ``node`` stand for. A request without groups has ``groups=()``. Raises
    :class:`RequestError`, or :class:`~oar_appliance.errors.ExpressionError` (naming the
    group) for a malformed expression inside ``{...}``.
    """
    return _Parser(text, labels, nodes_label).parse()


def parse_requests(
    texts: Sequence[str],
    labels: Sequence[str],
    nodes_label: str = "network_address",
    default_resources: str = "/resource_id=1",
) -> list[MoldableRequest]:
    """The moldable alternatives of the ``-l`` options, in order.

    An alternative without groups gets the groups of ``default_resources``
    (``OARSUB_DEFAULT_RESOURCES``), and its walltime if it has none; no ``-l`` at all gives
    one alternative made of ``default_resources``. Raises what :func:`parse_request` raises,
    and :class:`~oar_appliance.errors.ConfigError` when ``default_resources`` is needed and
    malformed or without groups.
    """
    requests = [parse_request(text, labels, nodes_label) for text in texts] or [MoldableRequest(groups=())]
    if all(req.groups for req in requests):
        return requests
    try:
        default = parse_request(default_resources, labels, nodes_label)
    except (RequestError, ExpressionError) as exc:
        raise ConfigError(f"OARSUB_DEFAULT_RESOURCES is not a valid request: {exc.message}") from None
    if not default.groups:
        raise ConfigError(f"OARSUB_DEFAULT_RESOURCES=\"{_show(default_resources)}\" gives no resources")
    return [
        req if req.groups else MoldableRequest(groups=default.groups, walltime=req.walltime or default.walltime)
        for req in requests
    ]


def _count_text(count: int | str) -> str:
    return count if isinstance(count, str) else str(count)


def request_to_text(req: MoldableRequest) -> str:
    """Canonical text of ``req``, e.g. ``{cluster='a'}/network_address=2/core=1+/resource_id=3,walltime=1:30:00``.

    :func:`parse_request` gives back an equal request (with labels containing those of
    ``req``, and constraints without surrounding whitespace, as the parser stores them).
    """
    groups = "+".join(
        (f"{{{group.constraint}}}" if group.constraint is not None else "")
        + "".join(f"/{level.label}={_count_text(level.count)}" for level in group.levels)
        for group in req.groups
    )
    if req.walltime is None:
        return groups
    walltime = f"walltime={format_duration(req.walltime)}"
    return f"{groups},{walltime}" if groups else walltime


def storage_rows(req: MoldableRequest) -> list[tuple[str | None, list[tuple[str, int, int]]]]:
    """Per group: ``(constraint, [(label, stored_count, order), ...])``, order from 0.

    The rows of ``job_resource_groups`` and ``job_resource_descriptions``; the walltime
    goes to ``moldable_job_descriptions`` (``req.walltime``).
    """
    return [
        (group.constraint, [(level.label, level.stored_count, order) for order, level in enumerate(group.levels)])
        for group in req.groups
    ]


def from_storage(
    walltime: int | None, groups_rows: Sequence[tuple[str | None, Sequence[tuple[str, int, int]]]]
) -> MoldableRequest:
    """Rebuild a request from the database rows (the inverse of :func:`storage_rows`).

    Levels are sorted by order; an empty or blank constraint is None; a walltime of 0 or
    None is None. Rows that no request can give (no level, a repeated order or label, a
    count of 0 or an unknown code) raise
    :class:`~oar_appliance.errors.DatabaseError` naming the group.
    """
    groups = []
    for number, (constraint, rows) in enumerate(groups_rows, 1):
        rows = sorted(rows, key=lambda row: row[2])
        problem = None
        if not rows:
            problem = "it has no level"
        elif len({row[2] for row in rows}) != len(rows):
            problem = "two levels have the same order"
        elif len({row[0] for row in rows}) != len(rows):
            problem = "a label appears twice"
        elif any(count <= 0 and count not in COUNT_NAMES for _, count, _ in rows):
            problem = "a count is neither positive nor a code of ALL, BEST or HALF_BEST"
        elif len(rows) > 1 and any(count < 0 for _, count, _ in rows):
            problem = "ALL, BEST or HALF_BEST is used in a group with several levels"
        if problem:
            raise DatabaseError(f"stored resource group {number} ({rows!r}) is invalid: {problem}")
        levels = tuple(Level(label, COUNT_NAMES.get(count, count)) for label, count, _ in rows)
        text = constraint.strip() if constraint is not None else ""
        groups.append(ResourceGroup(levels=levels, constraint=text or None))
    return MoldableRequest(groups=tuple(groups), walltime=walltime or None)
