"""Walltime changes asked by ``oarwalltime``, applied by the server (layer 4).

``oarwalltime`` records a request in ``walltime_change`` (``pending``: the change in
seconds, relative to the current walltime; ``force``; ``delay_next_jobs``) and a
``WALLTIME_REQUEST`` event.  Each pass of the server calls :func:`apply_pending`, which
moves what can be granted from ``pending`` to ``granted`` and changes the job's
``moldable_walltime`` -- the walltime sarko kills at and the Gantt occupies -- so that
``oarwalltime JOB`` shows the applied change (``Already granted``, ``Pending/unsatisfied``).

- A reduction is granted at once and in full (the request was checked against the time
  the job has already run; if it has run longer meanwhile, sarko ends it at its next pass).
- An increase is granted as far as the jobs planned after this one on its resources allow:
  up to the start of the first of them in the last Gantt (``gantt_jobs_predictions``,
  ``gantt_jobs_resources``), minus ``SCHEDULER_JOB_SECURITY_TIME``.  With
  ``delay_next_jobs`` (administrators, ``--delay-next-jobs``) waiting jobs do not limit it
  -- the next metascheduler round plans them after the new end -- but accepted advance
  reservations still do: their start is a promise.  What cannot be granted stays pending
  and is tried again at every pass, so it is granted as soon as the way is free.
- ``force`` (administrators, ``--force``): the increase is applied without waiting for a
  time window before the job's end; this server applies every change as soon as it can, so
  ``force`` only shows in ``granted_with_force``.

Only ``Running`` jobs are changed; a request of a job that has ended stays as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import peewee

from .db import bulk
from .db.connection import backend_for

__all__ = ["Applied", "apply_pending", "pending_jobs"]


@dataclass(frozen=True)
class Applied:
    """A change granted by one call of :func:`apply_pending`."""

    job_id: int
    #: seconds added to (or, negative, taken from) the walltime
    granted: int
    walltime: int
    #: what is still pending after it
    pending: int


def pending_jobs(db: peewee.Database) -> list[tuple]:
    """``(job_id, pending, force, delay_next_jobs, start_time, moldable_id, walltime)`` of
    the Running jobs with a pending change (one query)."""
    return db.execute_sql(
        'SELECT w."job_id", w."pending", w."force", w."delay_next_jobs", j."start_time", '
        'j."assigned_moldable_job", m."moldable_walltime" FROM "walltime_change" w '
        'JOIN "jobs" j ON j."job_id" = w."job_id" '
        'JOIN "moldable_job_descriptions" m ON m."moldable_id" = j."assigned_moldable_job" '
        'WHERE w."pending" <> 0 AND j."state" = \'Running\' ORDER BY w."job_id"').fetchall()


def _next_starts(db: peewee.Database, moldable_ids: Sequence[int]) -> dict[int, list[tuple[int, str]]]:
    """Moldable id of a running job -> ``(start, reservation)`` of the waiting jobs planned
    on any of its resources in the last Gantt (one query per chunk of ids)."""
    result: dict[int, list[tuple[int, str]]] = {}
    for start in range(0, len(moldable_ids), bulk.MAX_PARAMETERS - 16):
        chunk = list(moldable_ids[start:start + bulk.MAX_PARAMETERS - 16])
        where, params = bulk.ids_clause(db, "moldable_job_id", chunk)
        where = where.replace('"moldable_job_id"', 'a."moldable_job_id"')
        rows = db.execute_sql(
            'SELECT DISTINCT a."moldable_job_id", p."start_time", j."reservation" '
            'FROM "assigned_resources" a '
            'JOIN "gantt_jobs_resources" g ON g."resource_id" = a."resource_id" '
            'AND g."moldable_job_id" <> a."moldable_job_id" '
            'JOIN "gantt_jobs_predictions" p ON p."moldable_job_id" = g."moldable_job_id" '
            'JOIN "moldable_job_descriptions" m ON m."moldable_id" = g."moldable_job_id" '
            'JOIN "jobs" j ON j."job_id" = m."moldable_job_id" '
            f'WHERE {where} AND j."state" = \'Waiting\'', params).fetchall()
        for mine, when, reservation in rows:
            result.setdefault(mine, []).append((int(when), reservation or "None"))
    return result


def apply_pending(db: peewee.Database, config: Mapping[str, Any], now: int) -> list[Applied]:
    """Grant what can be granted of the pending walltime changes (see the module's
    documentation), in one transaction; the changes granted."""
    security = int(config.get("SCHEDULER_JOB_SECURITY_TIME", 1) or 0)
    ph = backend_for(db).placeholder
    applied: list[Applied] = []
    with db.atomic():
        rows = pending_jobs(db)
        if not rows:
            return []
        increases = [r[5] for r in rows if r[1] > 0]
        planned = _next_starts(db, increases) if increases else {}
        walltimes: list[tuple[int, int]] = []
        changes: list[tuple[int, int, int, int, int]] = []
        for job_id, pending, force, delay, start, moldable_id, walltime in rows:
            pending, walltime, start = int(pending), int(walltime), int(start or now)
            if pending < 0:
                grant = pending
            else:
                end = start + walltime
                limits = [when for when, reservation in planned.get(moldable_id, [])
                          if delay != "YES" or reservation == "Scheduled"]
                room = min(limits) - security - end if limits else pending
                grant = max(0, min(pending, room))
            if grant == 0:
                continue
            walltimes.append((walltime + grant, moldable_id))
            changes.append((grant, grant if force == "YES" else 0,
                            grant if delay == "YES" and grant > 0 else 0, grant, job_id))
            applied.append(Applied(job_id, grant, walltime + grant, pending - grant))
        if not changes:
            return []
        cursor = db.cursor()
        cursor.executemany(f'UPDATE "moldable_job_descriptions" SET "moldable_walltime" = {ph} '
                           f'WHERE "moldable_id" = {ph}', walltimes)
        cursor.executemany(
            f'UPDATE "walltime_change" SET "granted" = "granted" + {ph}, '
            f'"granted_with_force" = "granted_with_force" + {ph}, '
            f'"granted_with_delaying_next_jobs" = "granted_with_delaying_next_jobs" + {ph}, '
            f'"pending" = "pending" - {ph} WHERE "job_id" = {ph}', changes)
    return applied
