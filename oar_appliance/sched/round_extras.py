"""What a scheduling round loads for fairsharing, quotas and energy saving (layer 4).

Each function reads what it needs with a few batched queries (never one per job) and
hands plain data to the pure modules :mod:`~oar_appliance.sched.karma`,
:mod:`~oar_appliance.sched.quotas` and :mod:`~oar_appliance.sched.energy`.  They are
called by :func:`oar_appliance.sched.metasched.run_round`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import peewee

from ..db.connection import backend_for
from ..errors import ConfigError
from . import energy as energy_mod
from . import karma as karma_mod
from . import quotas as quotas_mod

__all__ = ["queue_policies", "job_owners", "karma_ordered", "load_quota_rules", "build_quotas",
           "quota_queues", "is_quotas_policy",
           "energy_decisions"]


def _rows(db: peewee.Database, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    return db.execute_sql(sql, list(params)).fetchall()


def queue_policies(db: peewee.Database) -> dict[str, str]:
    """queue name -> its ``scheduler_policy``."""
    return {q: p or "" for q, p in _rows(db, 'SELECT "queue_name", "scheduler_policy" FROM "queues"')}


def job_owners(db: peewee.Database, states: Sequence[str]) -> dict[int, tuple[str, str]]:
    """job id -> (user, project) of the jobs in ``states`` (one query)."""
    marks = ", ".join([backend_for(db).placeholder] * len(states))
    return {j: (u or "", p or "") for j, u, p in _rows(
        db, f'SELECT "job_id", "job_user", "project" FROM "jobs" WHERE "state" IN ({marks})',
        states)}


def consumption(db: peewee.Database, start: int, stop: int
                ) -> dict[str, karma_mod.QueueConsumption]:
    """Accounting sums per queue, user, project and kind over the rows overlapping
    ``[start, stop)`` (one grouped query)."""
    ph = backend_for(db).placeholder
    rows = _rows(db, 'SELECT "queue_name", "accounting_user", "accounting_project", '
                     '"consumption_type", SUM("consumption") FROM "accounting" '
                     f'WHERE "window_stop" > {ph} AND "window_start" < {ph} '
                     'GROUP BY "queue_name", "accounting_user", "accounting_project", '
                     '"consumption_type"', [start, stop])
    return karma_mod.consumption_by_queue(rows)


def karma_ordered(db: peewee.Database, config: Mapping[str, Any], waiting: Sequence[Any],
                  priority: Mapping[str, int], now: int,
                  policies: Mapping[str, str] | None = None,
                  owners: Mapping[int, tuple[str, str]] | None = None) -> list[Any]:
    """``waiting`` (jobs with ``job_id`` and ``queue``, in priority order) with the jobs of
    fairsharing queues ordered by karma within their priority level.

    Nothing is read (and the order is unchanged) when no queue of a waiting job is a
    fairsharing one.
    """
    if policies is None:
        policies = queue_policies(db)
    fair = {q for q, p in policies.items() if karma_mod.is_fairsharing(p)}
    if not any(j.queue in fair for j in waiting):
        return list(waiting)
    params = karma_mod.params_from_config(config)
    if owners is None:
        owners = job_owners(db, ("Waiting",))
    used = consumption(db, now - params.window, now)
    cache: dict[tuple[str, str, str], float] = {}

    def karma_of(job: Any) -> float | None:
        if job.queue not in fair:
            return None
        user, project = owners.get(job.job_id, ("", ""))
        key = (job.queue, user, project)
        if key not in cache:
            cache[key] = karma_mod.karma(params, used.get(job.queue), user, project)
        return cache[key]

    return karma_mod.karma_order(waiting, lambda j: priority.get(j.queue, 0), karma_of,
                                 lambda j: j.job_id)


def is_quotas_policy(policy: str | None) -> bool:
    """True for a queue's ``scheduler_policy`` that applies the quotas
    (``oar_sched_gantt_with_timesharing_and_fairsharing_and_quotas``)."""
    return bool(policy) and policy.endswith("_quotas")


def quota_queues(config: Mapping[str, Any], policies: Mapping[str, str]) -> set[str] | None:
    """The queues whose jobs the quotas may refuse: None for every queue (``QUOTAS`` on),
    else the queues with a quotas policy (an empty set: no quotas at all)."""
    if config.get("QUOTAS", False):
        return None
    return {q for q, p in policies.items() if is_quotas_policy(p)}


def load_quota_rules(config: Mapping[str, Any], queues: set[str] | None = None
                     ) -> quotas_mod.QuotaRules | None:
    """The rules of ``QUOTAS_CONF_FILE`` when ``QUOTAS`` is on or a queue applies quotas
    (``queues``, see :func:`quota_queues`), else None.

    A missing, unreadable or malformed file is a :class:`ConfigError` naming the file.
    """
    if not config.get("QUOTAS", False) and not queues:
        return None
    path = config.get("QUOTAS_CONF_FILE") or "/etc/oar/scheduler_quotas.conf"
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"QUOTAS_CONF_FILE {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"QUOTAS_CONF_FILE {path}: not UTF-8 text") from None
    return quotas_mod.parse_rules(text, path)


def build_quotas(rules: quotas_mod.QuotaRules, jobs: Mapping[int, Any],
                 owners: Mapping[int, tuple[str, str]], occupations: Iterable[Any],
                 now: int, queues: set[str] | None = None) -> quotas_mod.Quotas:
    """A :class:`Quotas` knowing every loaded job and counting the ``occupations``.

    ``jobs``: job id -> object with ``queue``, ``types`` and ``besteffort``; ``queues``:
    the queues whose jobs may be refused (None: all; the others are counted all the same,
    quotas are global); the periods are read in the server's local time at ``now``.
    """
    kinds = {}
    for job_id, job in jobs.items():
        user, project = owners.get(job_id, ("", ""))
        kinds[job_id] = quotas_mod.JobKind(job.queue, project, user, tuple(job.types),
                                           bool(job.besteffort),
                                           checked=queues is None or job.queue in queues)
    offset = datetime.fromtimestamp(now).astimezone().utcoffset()
    quotas = quotas_mod.Quotas(rules, kinds, int(offset.total_seconds()) if offset else 0)
    for occ in occupations:
        quotas.add(occ.job_id, occ.start, occ.end, occ.bits)
    return quotas


def energy_decisions(db: peewee.Database, params: energy_mod.EnergyParams, pool: Any,
                     planned: Sequence[tuple[int, int]], busy: Sequence[tuple[int, int, int]],
                     now: int) -> tuple[list[str], list[str]]:
    """``(nodes to wake up, nodes to halt)`` after a round (two queries at most).

    ``pool``: the round's resource pool (``position_of`` resource ids); ``planned``:
    ``(start, bits)`` of the placements and accepted reservations; ``busy``: ``(start,
    end, bits)`` of everything running or planned.
    """
    if not (params.wake or params.halt):
        return [], []
    last: dict[int, int] = {}
    if params.halt:
        ph = backend_for(db).placeholder
        last = dict(_rows(
            db, 'SELECT a."resource_id", MAX(j."stop_time") FROM "assigned_resources" a '
                'JOIN "jobs" j ON j."assigned_moldable_job" = a."moldable_job_id" '
                f'WHERE j."stop_time" >= {ph} GROUP BY a."resource_id"',
            [now - params.idle_time]))
    rows = []
    for rid, name, state, upto, last_job in _rows(
            db, 'SELECT "resource_id", "network_address", "state", "available_upto", '
                '"last_job_date" FROM "resources"'):
        position = pool.position_of.get(rid)
        if position is None:
            continue
        rows.append((position, name, state, upto, max(last_job or 0, last.get(rid) or 0)))
    rows.sort()                         # nodes in the scheduling order of their resources
    nodes = energy_mod.nodes_of([(1 << p, *rest) for p, *rest in rows], now)
    wake = energy_mod.nodes_to_wake(nodes, planned, now, params.wakeup_time) if params.wake else []
    halt = (energy_mod.nodes_to_halt(nodes, busy, now, params.idle_time, params.sleep_time)
            if params.halt else [])
    return wake, halt
