"""Accounting: what each user, project and queue consumed, window by window.

The ``accounting`` table holds, for every window of ``ACCOUNTING_WINDOW`` seconds (aligned
on the epoch: ``[k * W, (k + 1) * W)``, ``window_stop`` being the first second after the
window) and every (user, project, queue), two consumptions:

* ``ASKED``: the job's walltime, from its start: ``[start_time, start_time + walltime)``;
* ``USED``: what it really ran: ``[start_time, stop_time)``.

A consumption is counted in **resource-seconds**: the seconds of the interval that fall in
the window, times the number of resources assigned to the job, so that a 2-node job for an
hour weighs as two 1-node jobs for an hour (the fair-sharing scheduler compares these).
A job crossing windows is split between them.

:func:`update` accounts the ended jobs (Terminated, Error) not accounted yet
(``jobs.accounted = 'NO'``), in batches of :data:`BATCH_SIZE` jobs, each batch in one
transaction that also marks its jobs ``accounted = 'YES'``; so an interrupted update loses
nothing and counts nothing twice, and jobs that never started are just marked.  Jobs are
claimed with ``UPDATE ... RETURNING``, so two updates running at once (the server's and
an admin's ``oaraccounting``) never count a job twice.  :func:`reinitialize` empties the
table and marks every job unaccounted; :func:`delete_before` drops old windows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import peewee

from .db.bulk import placeholders
from .db.connection import backend_for
from .errors import ConfigError

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
ENDED_STATES = ("Terminated", "Error")

Key = tuple[int, int, str, str, str, str]  # window start, stop, user, project, queue, type


@dataclass
class AccountingReport:
    """What one :func:`update` did."""

    #: ended jobs newly marked accounted (with or without consumption)
    jobs: int = 0
    #: accounting rows inserted or increased
    rows: int = 0
    batches: int = 0


def windows(start: int, stop: int, size: int) -> Iterable[tuple[int, int, int]]:
    """``(window_start, window_stop, seconds)`` of ``[start, stop)`` cut into windows of
    ``size`` seconds aligned on the epoch; nothing for an empty interval."""
    if size <= 0:
        raise ConfigError(f"ACCOUNTING_WINDOW must be a positive number of seconds, got {size}")
    t = start
    while t < stop:
        window_start = t - t % size
        window_stop = window_start + size
        end = min(stop, window_stop)
        yield window_start, window_stop, end - t
        t = end


def consumptions(jobs: Iterable[Mapping[str, Any]], size: int) -> dict[Key, int]:
    """The accounting rows of ``jobs`` (dicts with ``job_user``, ``project``,
    ``queue_name``, ``start_time``, ``stop_time``, ``walltime``, ``nb_resources``)."""
    totals: dict[Key, int] = {}
    for job in jobs:
        start = int(job["start_time"] or 0)
        if start <= 0 or not job["nb_resources"]:
            continue
        who = (job["job_user"] or "", job["project"] or "", job["queue_name"] or "")
        for kind, stop in (("ASKED", start + int(job["walltime"] or 0)),
                           ("USED", max(start, int(job["stop_time"] or 0)))):
            for w_start, w_stop, seconds in windows(start, stop, size):
                key = (w_start, w_stop, *who, kind)
                totals[key] = totals.get(key, 0) + seconds * int(job["nb_resources"])
    return totals


def _claim(db: peewee.Database, limit: int) -> tuple[int, list[int]]:
    """Mark up to ``limit`` ended, unaccounted jobs accounted; return how many were found
    and those this transaction marked (a concurrent update's jobs are not returned: on
    PostgreSQL its UPDATE waits for the other transaction, then finds them accounted)."""
    mark = backend_for(db).placeholder
    ids = [row[0] for row in db.execute_sql(
        f'SELECT "job_id" FROM "jobs" WHERE "accounted" = {mark} AND "state" IN ({placeholders(db, 2)}) '
        f'ORDER BY "job_id" LIMIT {int(limit)}', ["NO", *ENDED_STATES]).fetchall()]
    if not ids:
        return 0, []
    return len(ids), sorted(row[0] for row in db.execute_sql(
        f'UPDATE "jobs" SET "accounted" = {mark} WHERE "accounted" = {mark} '
        f'AND "job_id" IN ({placeholders(db, len(ids))}) RETURNING "job_id"', ["YES", "NO", *ids]).fetchall())


def _load(db: peewee.Database, ids: list[int]) -> list[dict[str, Any]]:
    """The jobs' data for :func:`consumptions` (two queries)."""
    marks = placeholders(db, len(ids))
    rows = db.execute_sql(
        'SELECT j."job_id", j."job_user", j."project", j."queue_name", j."start_time", j."stop_time", '
        'j."assigned_moldable_job", m."moldable_walltime" FROM "jobs" j '
        'LEFT JOIN "moldable_job_descriptions" m ON m."moldable_id" = j."assigned_moldable_job" '
        f'WHERE j."job_id" IN ({marks})', ids).fetchall()
    moldables = [r[6] for r in rows if r[6]]
    counts: dict[int, int] = {}
    if moldables:
        counts = dict(db.execute_sql(
            'SELECT "moldable_job_id", COUNT(*) FROM "assigned_resources" '
            f'WHERE "moldable_job_id" IN ({placeholders(db, len(moldables))}) GROUP BY "moldable_job_id"',
            moldables).fetchall())
    return [{"job_id": r[0], "job_user": r[1], "project": r[2], "queue_name": r[3], "start_time": r[4],
             "stop_time": r[5], "walltime": r[7], "nb_resources": counts.get(r[6], 0)} for r in rows]


def _add(db: peewee.Database, totals: Mapping[Key, int]) -> None:
    """Add ``totals`` to the table: a new row, or the consumption added to the existing one."""
    if not totals:
        return
    sql = ('INSERT INTO "accounting" ("window_start", "window_stop", "accounting_user", '
           '"accounting_project", "queue_name", "consumption_type", "consumption") '
           f'VALUES ({placeholders(db, 7)}) '
           'ON CONFLICT ("window_start", "window_stop", "accounting_user", "queue_name", '
           '"accounting_project", "consumption_type") '
           'DO UPDATE SET "consumption" = "accounting"."consumption" + excluded."consumption"')
    db.cursor().executemany(sql, [(*key, value) for key, value in sorted(totals.items())])


def update(db: peewee.Database, config: Mapping[str, Any], now: int | None = None,
           batch_size: int = BATCH_SIZE) -> AccountingReport:
    """Account every ended job not accounted yet (see the module's documentation).

    ``now`` is not needed by the computation (jobs carry their dates); it is accepted so
    that every periodic module has the same call.
    """
    size = int(config["ACCOUNTING_WINDOW"])
    if size <= 0:
        raise ConfigError(f"ACCOUNTING_WINDOW must be a positive number of seconds, got {size}")
    report = AccountingReport()
    while True:
        with db.atomic():
            found, ids = _claim(db, batch_size)
            if ids:
                totals = consumptions(_load(db, ids), size)
                _add(db, totals)
                report.jobs += len(ids)
                report.rows += len(totals)
                report.batches += 1
        if not found:
            break
    if report.jobs:
        log.info("accounting: %d jobs accounted, %d rows", report.jobs, report.rows)
    return report


def reinitialize(db: peewee.Database) -> int:
    """Empty the table and mark every job unaccounted (the next update counts them all
    again); returns the number of rows removed."""
    mark = backend_for(db).placeholder
    with db.atomic():
        removed = db.execute_sql('DELETE FROM "accounting"').rowcount
        db.execute_sql(f'UPDATE "jobs" SET "accounted" = {mark} WHERE "accounted" = {mark}', ["NO", "YES"])
    return max(0, removed or 0)


def delete_before(db: peewee.Database, now: int, seconds: int) -> int:
    """Remove the windows that ended more than ``seconds`` before ``now``; returns how many
    rows."""
    mark = backend_for(db).placeholder
    with db.atomic():
        removed = db.execute_sql(f'DELETE FROM "accounting" WHERE "window_stop" <= {mark}',
                                 [int(now) - int(seconds)]).rowcount
    return max(0, removed or 0)


__all__ = ["update", "reinitialize", "delete_before", "windows", "consumptions", "AccountingReport",
           "BATCH_SIZE"]
