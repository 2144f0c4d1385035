"""Scheduler quotas: the rules file and their check during placement (pure, no I/O).

The rules limit what jobs may hold **at the same time**.  The quotas file
(``QUOTAS_CONF_FILE``, read when ``QUOTAS="yes"``) is JSON::

    {
      "rules": {
        "*,*,*,/":          [16, -1, -1],
        "default,*,*,*":    [-1, 20, -1],
        "*,proj1,*,/":      [-1, -1, 100]
      },
      "periods": [
        {"name": "workdays", "when": ["mon-fri 08:00-19:00"],
         "rules": {"*,*,*,/": [8, -1, -1]}}
      ]
    }

- A rule key is ``queue,project,job_type,user``.  Each field is a name (only the jobs with
  that value), ``*`` (every job, all counted together) or ``/`` (every job, each distinct
  value counted separately: ``*,*,*,/`` limits each user on their own).
- A rule value is ``[resources, jobs, resource_hours]``: the most resources, running or
  planned jobs, and resource-hours (resources x walltime in hours, summed over the jobs)
  that the jobs the rule counts may hold at any instant; ``-1`` means unlimited.
- ``periods`` (optional) are times of the week, in the server's local time: ``when`` is a
  list of ``DAYS HH:MM-HH:MM`` (DAYS: ``mon``, ``mon-fri``, ``sat,sun``, ``*``; an end of
  ``24:00`` or before the start runs into the next day).  While a period holds, its
  ``rules`` replace the top-level ones (the first period of the list that holds wins);
  outside every period the top-level ``rules`` apply.
- Every rule that matches a job applies.  A job with several types counts once for each of
  its types under a ``/`` type field; a job without types matches only ``*`` there.
- Jobs of type ``container`` are neither counted nor checked (their inner jobs are);
  besteffort jobs count only for rules whose queue field is ``besteffort``; a job of type
  ``no_quotas`` is counted but never refused.

:class:`Quotas` is the object the scheduling core's hook uses: ``check`` a candidate
placement, ``add`` a taken one, ``next_change`` to know the next date worth trying.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

__all__ = ["Rule", "QuotaRules", "JobKind", "Quotas", "parse_rules", "parse_when", "WEEK"]

WEEK = 7 * 86400
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: the Thursday 1970-01-01 is 3 days after a Monday
_EPOCH_WEEKDAY = 3
_FIELDS = ("queue", "project", "job_type", "user")


@dataclass(frozen=True)
class Rule:
    """One rule: the four field specs and the three limits (-1: unlimited)."""

    queue: str
    project: str
    job_type: str
    user: str
    resources: int = -1
    jobs: int = -1
    resource_hours: float = -1

    @property
    def key(self) -> str:
        return ",".join((self.queue, self.project, self.job_type, self.user))


@dataclass(frozen=True)
class JobKind:
    """What the rules look at in a job."""

    queue: str
    project: str = ""
    user: str = ""
    types: tuple[str, ...] = ()
    besteffort: bool = False
    #: False: the job is counted but never refused (its queue does not apply quotas)
    checked: bool = True

    @property
    def container(self) -> bool:
        return any(t == "container" or t.startswith("container=") for t in self.types)

    @property
    def exempt(self) -> bool:
        return not self.checked or "no_quotas" in self.types


@dataclass
class QuotaRules:
    """The parsed file: top-level rules and ``(week intervals, rules)`` periods."""

    rules: tuple[Rule, ...] = ()
    periods: list[tuple[str, list[tuple[int, int]], tuple[Rule, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        points = {0}
        for _, intervals, _ in self.periods:
            for a, b in intervals:
                points.update((a % WEEK, b % WEEK))
        self._bounds = sorted(points)

    def rules_at(self, week_pos: int) -> tuple[Rule, ...]:
        """The rules in force at ``week_pos`` seconds after Monday 00:00."""
        for _, intervals, rules in self.periods:
            for a, b in intervals:
                if a <= week_pos < b:
                    return rules
        return self.rules

    def next_bound(self, week_pos: int) -> int:
        """Seconds from ``week_pos`` to the next point where the rules in force may change."""
        i = bisect_right(self._bounds, week_pos)
        if i < len(self._bounds):
            return self._bounds[i] - week_pos
        return WEEK - week_pos + self._bounds[0]


# ------------------------------------------------------------------------------ parsing

def _err(where: str, text: str) -> ConfigError:
    return ConfigError(f"{where}: {text}")


def _parse_rule(key: Any, value: Any, where: str) -> Rule:
    if not isinstance(key, str) or len(key.split(",")) != 4:
        raise _err(where, f"rule key {key!r} must be 'queue,project,job_type,user'")
    fields = [f.strip() for f in key.split(",")]
    if any(not f for f in fields):
        raise _err(where, f"rule key {key!r} has an empty field (use * or /)")
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise _err(where, f"rule {key!r}: the value must be [resources, jobs, resource_hours], "
                          f"got {json.dumps(value)}")
    if any(v < 0 and v != -1 for v in value) or value[0] != int(value[0]) or value[1] != int(value[1]):
        raise _err(where, f"rule {key!r}: limits are whole numbers >= 0 for resources and jobs "
                          f"and -1 for unlimited, got {json.dumps(value)}")
    return Rule(*fields, int(value[0]), int(value[1]), float(value[2]))


def _parse_rules(obj: Any, where: str) -> tuple[Rule, ...]:
    if not isinstance(obj, dict):
        raise _err(where, "'rules' must be an object of 'queue,project,job_type,user': [..] items")
    return tuple(_parse_rule(k, v, where) for k, v in obj.items())


_WHEN_RE = re.compile(r"\s*(\S+)\s+([0-9]{1,2}):([0-9]{2})\s*-\s*([0-9]{1,2}):([0-9]{2})\s*\Z")


def _days(text: str, where: str) -> list[int]:
    if text == "*":
        return list(range(7))
    days: list[int] = []
    for part in text.lower().split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(e not in _DAYS for e in ends):
            raise _err(where, f"unknown days {text!r} (use mon..sun, mon-fri, sat,sun or *)")
        a, b = _DAYS.index(ends[0]), _DAYS.index(ends[-1])
        days.extend(range(a, b + 1) if a <= b else list(range(a, 7)) + list(range(0, b + 1)))
    return days


def parse_when(text: str, where: str = "quotas") -> list[tuple[int, int]]:
    """``"mon-fri 08:00-19:00"`` -> intervals in seconds of the week from Monday 00:00
    (an interval running past Sunday midnight is split in two)."""
    match = _WHEN_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise _err(where, f"cannot read the period {text!r} (expected 'DAYS HH:MM-HH:MM')")
    h1, m1, h2, m2 = (int(g) for g in match.groups()[1:])
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise _err(where, f"bad time in the period {text!r}")
    a, b = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if b <= a:
        b += 86400                                      # runs into the next day
    intervals = []
    for day in _days(match.group(1), where):
        start, end = day * 86400 + a, day * 86400 + b
        if end > WEEK:
            intervals += [(start, WEEK), (0, end - WEEK)]
        else:
            intervals.append((start, end))
    return intervals


def parse_rules(text: str, where: str = "quotas") -> QuotaRules:
    """Parse the quotas file's text; errors are :class:`ConfigError` naming ``where``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _err(where, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise _err(where, "the file must hold a JSON object with 'rules' and 'periods'")
    unknown = set(data) - {"rules", "periods"}
    if unknown:
        raise _err(where, f"unknown entries {sorted(unknown)} (only 'rules' and 'periods')")
    rules = _parse_rules(data.get("rules", {}), where)
    periods = []
    raw = data.get("periods", [])
    if not isinstance(raw, list):
        raise _err(where, "'periods' must be a list")
    for n, period in enumerate(raw, 1):
        if not isinstance(period, dict) or set(period) - {"name", "when", "rules"} or "when" not in period:
            raise _err(where, f"period {n} must be an object with 'when', 'rules' and an optional 'name'")
        name = str(period.get("name", f"period {n}"))
        when = period["when"]
        if isinstance(when, str):
            when = [when]
        if not isinstance(when, list) or not when:
            raise _err(where, f"period {name!r}: 'when' must be a list of 'DAYS HH:MM-HH:MM'")
        intervals = [iv for w in when for iv in parse_when(w, f"{where}: period {name!r}")]
        periods.append((name, intervals, _parse_rules(period.get("rules", {}), f"{where}: period {name!r}")))
    return QuotaRules(rules, periods)


# ------------------------------------------------------------------------------ checking

def _field_values(rule_field: str, values: Sequence[str]) -> list[str] | None:
    """The instance values of a job for one rule field, or None when it does not match."""
    if rule_field == "*":
        return ["*"]
    if rule_field == "/":
        return list(values)
    return [rule_field] if rule_field in values else None


def _instances(rule: Rule, kind: JobKind) -> list[tuple[str, ...]]:
    """The counters of ``rule`` a job of ``kind`` belongs to (none: the rule ignores it)."""
    if kind.besteffort and rule.queue != "besteffort":
        return []
    found: list[list[str]] = [[]]
    for rule_field, values in ((rule.queue, (kind.queue,)), (rule.project, (kind.project,)),
                               (rule.job_type, kind.types), (rule.user, (kind.user,))):
        vals = _field_values(rule_field, values)
        if not vals:
            return []
        found = [f + [v] for f in found for v in vals]
    return [tuple(f) for f in found]


@dataclass
class _Entry:
    start: int
    end: int
    count: int
    hours: float
    kind: JobKind


class Quotas:
    """Quota accounting over time for one scheduling round.

    ``rules``: the parsed file; ``kinds``: job id -> :class:`JobKind` of every job the round
    may count (running, planned, waiting); ``utc_offset``: seconds to add to an epoch date
    to get the local time of the periods.  The caller :meth:`add` s the jobs that already
    hold resources, then the core calls :meth:`check` and :meth:`add` while placing.
    """

    def __init__(self, rules: QuotaRules, kinds: Mapping[int, JobKind], utc_offset: int = 0) -> None:
        self.rules = rules
        self.kinds = dict(kinds)
        self.utc_offset = utc_offset
        self.entries: list[_Entry] = []
        self.last_end = 0
        # counted entries per (rule, instance), and the instances of each (rule, kind):
        # a check looks only at the entries of its own counters
        self._all_rules = tuple(dict.fromkeys(
            list(rules.rules) + [r for _, _, rs in rules.periods for r in rs]))
        self._counters: dict[tuple[Rule, tuple[str, ...]], list[_Entry]] = {}
        self._instances: dict[tuple[Rule, JobKind], list[tuple[str, ...]]] = {}

    def _instances_of(self, rule: Rule, kind: JobKind) -> list[tuple[str, ...]]:
        key = (rule, kind)
        found = self._instances.get(key)
        if found is None:
            found = self._instances[key] = _instances(rule, kind)
        return found

    # -- time of week ------------------------------------------------------------------
    def _week_pos(self, t: int) -> int:
        return (t + self.utc_offset + _EPOCH_WEEKDAY * 86400) % WEEK

    def _segments(self, start: int, end: int) -> Iterable[tuple[int, int, tuple[Rule, ...]]]:
        """``[start, end)`` cut where the rules in force change, with those rules."""
        if not self.rules.periods:
            yield start, end, self.rules.rules
            return
        t = start
        while t < end:
            pos = self._week_pos(t)
            stop = min(end, t + self.rules.next_bound(pos))
            yield t, stop, self.rules.rules_at(pos)
            t = stop

    # -- the hook's interface ----------------------------------------------------------
    def add(self, job_id: int, start: int, end: int, bits: int) -> None:
        """Count a job holding ``bits`` (an int bitset) on ``[start, end)``."""
        kind = self.kinds.get(job_id)
        if kind is None or kind.container or end <= start:
            return
        count = bits.bit_count()
        entry = _Entry(start, end, count, count * (end - start) / 3600.0, kind)
        self.entries.append(entry)
        self.last_end = max(self.last_end, end)
        for rule in self._all_rules:
            for instance in self._instances_of(rule, kind):
                self._counters.setdefault((rule, instance), []).append(entry)

    def check(self, job_id: int, start: int, end: int, bits: int) -> bool:
        """True when a placement of the job on ``bits`` over ``[start, end)`` keeps every
        rule in force during it."""
        kind = self.kinds.get(job_id)
        if kind is None or kind.container or kind.exempt or end <= start:
            return True
        return self.violation(kind, start, end, bits.bit_count()) is None

    def violation(self, kind: JobKind, start: int, end: int, count: int) -> str | None:
        """The first rule a job of ``kind`` on ``count`` resources over ``[start, end)``
        would break, as text, or None."""
        hours = count * (end - start) / 3600.0
        for a, b, rules in self._segments(start, end):
            for rule in rules:
                for instance in self._instances_of(rule, kind):
                    others = [e for e in self._counters.get((rule, instance), ())
                              if e.start < b and e.end > a]
                    peak = _peak(others, a, b)
                    if 0 <= rule.resources < peak[0] + count:
                        return f"quota {rule.key} of {rule.resources} resources"
                    if 0 <= rule.jobs < peak[1] + 1:
                        return f"quota {rule.key} of {rule.jobs} jobs"
                    if 0 <= rule.resource_hours < peak[2] + hours - 1e-9:
                        return f"quota {rule.key} of {rule.resource_hours:g} resource-hours"
        return None

    def next_change(self, t: int, quiet_from: int) -> int | None:
        """The next date after ``t`` at which a refused placement may become possible (a
        counted job ends, the rules in force change), or None when nothing can change any
        more: past ``max(quiet_from, last counted end)`` the situation repeats every week,
        so a week of tries after it is enough."""
        if t > max(quiet_from, self.last_end) + WEEK:
            return None
        best = None
        for e in self.entries:
            if e.end > t and (best is None or e.end < best):
                best = e.end
        if self.rules.periods:
            bound = t + self.rules.next_bound(self._week_pos(t))
            best = bound if best is None else min(best, bound)
        return best


def _peak(entries: Sequence[_Entry], a: int, b: int) -> tuple[int, int, float]:
    """The highest (resources, jobs, resource-hours) held at one instant of ``[a, b)``."""
    if not entries:
        return 0, 0, 0.0
    events = []
    for e in entries:
        events.append((max(e.start, a), 1, e))
        events.append((min(e.end, b), -1, e))
    events.sort(key=lambda x: (x[0], x[1]))              # ends before starts at one date
    res = jobs = 0
    hours = 0.0
    best = [0, 0, 0.0]
    for _, sign, e in events:
        res += sign * e.count
        jobs += sign
        hours += sign * e.hours
        if sign > 0:
            best = [max(best[0], res), max(best[1], jobs), max(best[2], hours)]
    return best[0], best[1], best[2]
