"""Fairsharing: the karma of waiting jobs and the order it gives (pure, no I/O).

A queue whose ``scheduler_policy`` names fairsharing
(``oar_sched_gantt_with_timesharing_and_fairsharing``, with or without ``_and_quotas``)
orders its waiting jobs by *karma*, lowest first, instead of FIFO.  The karma measures how
much more than its share a user (and the user's project) has consumed recently in the
queue, from the ``accounting`` table:

- the window is ``[now - SCHEDULER_FAIRSHARING_WINDOW_SIZE, now)``; every accounting row
  whose interval overlaps it counts in full (the rows are ``ACCOUNTING_WINDOW`` long);
- in the job's queue, with ``U`` the total ``USED`` consumption and ``A`` the total
  ``ASKED`` consumption of the window, the karma of a job of user ``u`` and project ``p``
  is::

      coef_project  * (used(p) / U - target(p))
    + coef_user     * (used(u) / U - target(u))
    + coef_user_ask * (asked(u) / A - target(u))

  where a share whose total is 0 counts as 0 and a target is the configured percentage
  divided by 100 (0 when the project or user has none).

A user far below their target gets a negative karma and goes first.  Jobs of queues that
are not fairsharing keep their FIFO order, and each job keeps its priority level: karma
only permutes the fairsharing jobs among the places they held in a priority level.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from ..errors import ConfigError

__all__ = ["KarmaParams", "QueueConsumption", "parse_targets", "params_from_config",
           "consumption_by_queue", "karma", "is_fairsharing", "karma_order"]

#: default window of the consumption taken into account (30 hours)
DEFAULT_WINDOW = 30 * 3600

T = TypeVar("T")


def is_fairsharing(policy: str | None) -> bool:
    """True for a queue's ``scheduler_policy`` that orders its jobs by karma."""
    return bool(policy) and "fairsharing" in policy


_TARGET_RE = re.compile(r"\s*([^\s:=,]+)\s*[:=]\s*([0-9]+(?:\.[0-9]*)?)\s*\Z")


def parse_targets(text: str | None, key: str = "targets") -> dict[str, float]:
    """``"first:75, default:25"`` -> ``{"first": 0.75, "default": 0.25}``.

    Items are separated by commas; each is ``name:percent`` (or ``name=percent``).  An
    empty text means no targets.  Malformed items raise :class:`ConfigError` naming ``key``.
    """
    targets: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        match = _TARGET_RE.match(item)
        if match is None:
            raise ConfigError(f"{key}: cannot read {item.strip()!r} "
                              "(expected name:percent items separated by commas)")
        percent = float(match.group(2))
        if percent > 100:
            raise ConfigError(f"{key}: the target of {match.group(1)!r} is over 100 percent")
        targets[match.group(1)] = percent / 100.0
    return targets


@dataclass(frozen=True)
class KarmaParams:
    """The fairsharing parameters (from oar.conf, see :func:`params_from_config`)."""

    window: int = DEFAULT_WINDOW
    project_targets: Mapping[str, float] = field(default_factory=dict)
    user_targets: Mapping[str, float] = field(default_factory=dict)
    coef_project: float = 3.0
    coef_user: float = 2.0
    coef_user_ask: float = 1.0


def params_from_config(config: Mapping[str, Any]) -> KarmaParams:
    """The :class:`KarmaParams` of the ``SCHEDULER_FAIRSHARING_*`` keys of ``config``."""
    window = int(config.get("SCHEDULER_FAIRSHARING_WINDOW_SIZE", DEFAULT_WINDOW))
    if window <= 0:
        raise ConfigError(f"SCHEDULER_FAIRSHARING_WINDOW_SIZE must be positive, got {window}")
    return KarmaParams(
        window=window,
        project_targets=parse_targets(config.get("SCHEDULER_FAIRSHARING_PROJECT_TARGETS"),
                                      "SCHEDULER_FAIRSHARING_PROJECT_TARGETS"),
        user_targets=parse_targets(config.get("SCHEDULER_FAIRSHARING_USER_TARGETS"),
                                   "SCHEDULER_FAIRSHARING_USER_TARGETS"),
        coef_project=float(config.get("SCHEDULER_FAIRSHARING_COEF_PROJECT", 3)),
        coef_user=float(config.get("SCHEDULER_FAIRSHARING_COEF_USER", 2)),
        coef_user_ask=float(config.get("SCHEDULER_FAIRSHARING_COEF_USER_ASK", 1)),
    )


@dataclass
class QueueConsumption:
    """Consumption (seconds) in one queue over the window, by kind (``USED``/``ASKED``)."""

    total: dict[str, int] = field(default_factory=dict)
    by_user: dict[tuple[str, str], int] = field(default_factory=dict)      # (user, kind)
    by_project: dict[tuple[str, str], int] = field(default_factory=dict)   # (project, kind)


def consumption_by_queue(rows: Iterable[tuple[str, str, str, str, int]]
                         ) -> dict[str, QueueConsumption]:
    """Sum ``(queue, user, project, consumption_type, consumption)`` rows per queue."""
    found: dict[str, QueueConsumption] = {}
    for queue, user, project, kind, amount in rows:
        amount = int(amount or 0)
        q = found.get(queue)
        if q is None:
            q = found[queue] = QueueConsumption()
        q.total[kind] = q.total.get(kind, 0) + amount
        q.by_user[(user, kind)] = q.by_user.get((user, kind), 0) + amount
        q.by_project[(project, kind)] = q.by_project.get((project, kind), 0) + amount
    return found


def _share(part: int, total: int) -> float:
    return part / total if total > 0 else 0.0


def karma(params: KarmaParams, consumption: QueueConsumption | None, user: str,
          project: str) -> float:
    """The karma of a job of ``user`` and ``project`` in a queue (module docstring)."""
    c = consumption or QueueConsumption()
    used, asked = c.total.get("USED", 0), c.total.get("ASKED", 0)
    user_target = params.user_targets.get(user, 0.0)
    project_target = params.project_targets.get(project, 0.0)
    return (params.coef_project * (_share(c.by_project.get((project, "USED"), 0), used)
                                   - project_target)
            + params.coef_user * (_share(c.by_user.get((user, "USED"), 0), used) - user_target)
            + params.coef_user_ask * (_share(c.by_user.get((user, "ASKED"), 0), asked)
                                      - user_target))


def karma_order(jobs: Sequence[T], level: Callable[[T], Any],
                karma_of: Callable[[T], float | None], job_id: Callable[[T], int]
                ) -> list[T]:
    """``jobs`` (already in priority order) with each level's fairsharing jobs by karma.

    ``level(job)``: the job's priority level; ``karma_of(job)``: its karma, or None for a
    job of a queue that is not fairsharing (it keeps its place).  In each level, the jobs
    with a karma are sorted by (karma, job id) and put back in the places they held.
    """
    result = list(jobs)
    places: dict[Any, list[int]] = {}
    karmas: list[float | None] = []
    for index, job in enumerate(result):
        k = karma_of(job)
        karmas.append(k)
        if k is not None:
            places.setdefault(level(job), []).append(index)
    for indexes in places.values():
        ordered = sorted(indexes, key=lambda i: (karmas[i], job_id(result[i])))
        picked = [result[i] for i in ordered]
        for i, job in zip(indexes, picked):
            result[i] = job
    return result
