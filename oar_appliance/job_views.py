"""Jobs as users see them: batched reads for ``oarstat`` (and the web views).

Every function here reads a whole selection of jobs with **one query per table**, never
one query per job: the selection is fetched first, then each related table is read once
for all its jobs (``IN`` lists cut in chunks of :data:`MAX_PARAMETERS` ids), and the rows
are put together in Python.  Nothing here ever reads the ``challenges`` table.

The full record of a job (``oarstat -f``, ``-J``, ``-Y``) has the fields of
:data:`EXTRA_FIELDS` after every column of ``jobs``; see :func:`full_records`.  The
fields of :data:`PRIVATE_FIELDS` are given only to the job's owner and the
administrators; anybody else gets them with the value ``None`` so that the field set is
the same for everybody.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .db.bulk import placeholders
from .db.connection import backend_for, quote_identifier
from .db.models import JOB_STATES
from .db.resource_table import MAX_PARAMETERS
from .errors import DatabaseError, UsageError

#: stored codes of the symbolic counts (as :data:`oar_appliance.lang.request.COUNT_CODES`,
#: repeated here so that a plain listing does not import the request grammar)
COUNT_NAMES = {-1: "ALL", -2: "BEST", -3: "HALF_BEST"}

#: states of a job that is over; every other state is shown by a plain ``oarstat``
FINISHED_STATES = ("Terminated", "Error")
NOT_FINISHED_STATES = tuple(s for s in JOB_STATES if s not in FINISHED_STATES)

#: the one-letter state of the ``oarstat`` table, as OAR 2.5 and OAR 3 print it
STATE_LETTERS = {
    "Waiting": "W",
    "Hold": "H",
    "toLaunch": "L",
    "Launching": "L",
    "Running": "R",
    "Suspended": "S",
    "Resuming": "S",
    "Finishing": "F",
    "Terminated": "T",
    "Error": "E",
    "toError": "E",
    "toAckReservation": "W",
}

#: columns of ``jobs`` read for the plain table (and for ``-s``)
SUMMARY_COLUMNS = ("job_id", "job_name", "job_user", "submission_time", "state", "queue_name")

#: job fields only the owner, ``oar`` and ``root`` may read (others get None)
PRIVATE_FIELDS = (
    "command", "launching_directory", "job_env", "stdout_file", "stderr_file",
    "notify", "initial_request", "info_type",
)

#: fields of a full record after the columns of ``jobs`` (additive only: never remove one)
EXTRA_FIELDS = (
    "types",                # list of the job's types (oarsub -t)
    "dependencies",         # list of the ids of the jobs it waits for (oarsub -a)
    "walltime",             # seconds: of the assigned alternative, else the planned one, else the first
    "resource_request",     # list: the text of each moldable alternative (oarsub -l)
    "scheduled_start",      # predicted start (gantt_jobs_predictions) or None
    "scheduled_resources",  # resource ids: assigned once started, else planned by the scheduler
    "assigned_hostnames",   # sorted distinct network addresses of the assigned resources
    "events",               # list of {type, date, description}, oldest first
)

#: dates in the ``jobs`` table (seconds since the epoch, 0 when not reached)
DATE_COLUMNS = ("submission_time", "start_time", "stop_time")

#: accepted forms of a date given on the command line (local time)
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


# ----------------------------------------------------------------------------- helpers

def format_date(seconds: int | None) -> str:
    """``YYYY-MM-DD hh:mm:ss`` in local time, as OAR prints dates; '' for None or 0."""
    if not seconds:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(seconds)))


def parse_date(text: str) -> int:
    """Seconds since the epoch of ``YYYY-MM-DD[ hh:mm[:ss]]`` in local time."""
    cleaned = " ".join(str(text).split())
    for fmt in DATE_FORMATS:
        try:
            return int(time.mktime(time.strptime(cleaned, fmt)))
        except (ValueError, OverflowError):
            continue
    raise UsageError(f"malformed date {text.strip()!r}: use YYYY-MM-DD hh:mm:ss or YYYY-MM-DD")


def parse_window(text: str) -> tuple[int, int]:
    """``"d1,d2"`` -> (start, stop) in seconds; the start must not be after the stop."""
    parts = str(text).split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise UsageError(f"expected two dates \"d1,d2\", got {text!r}")
    start, stop = parse_date(parts[0]), parse_date(parts[1])
    if start > stop:
        raise UsageError(f"the window {text!r} ends before it starts")
    return start, stop


def format_duration(seconds: int | None) -> str:
    """``H:MM:SS`` (hours may exceed 24), as oarsub's walltime; '' for None."""
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def natural_key(text: str | None) -> list:
    """Sort ``node-2`` before ``node-10``."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text or "")]


def _chunks(values: Sequence[Any], size: int = MAX_PARAMETERS) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _rows(cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _by_job_ids(db, sql: str, job_ids: Sequence[int], params: Sequence[Any] = ()) -> list[tuple]:
    """Run ``sql`` (with one ``{ids}`` slot) for every chunk of ``job_ids``; all rows."""
    rows: list[tuple] = []
    for chunk in _chunks(list(job_ids)):
        cursor = db.execute_sql(sql.format(ids=placeholders(db, len(chunk))), [*params, *chunk])
        rows.extend(cursor.fetchall())
    return rows


# ----------------------------------------------------------------------------- selection

@dataclass
class JobFilter:
    """Which jobs to show; every given criterion must hold (AND)."""

    #: only these job ids
    ids: Sequence[int] | None = None
    #: only the jobs of this user
    user: str | None = None
    #: a property expression on the columns of ``jobs`` (``--sql``)
    expression: str | None = None
    #: only the jobs of this array
    array_id: int | None = None
    #: only jobs in these states (None: any state)
    states: Sequence[str] | None = None


def job_columns(db) -> dict[str, str]:
    """Every column of ``jobs`` -> kind ('int', 'float', 'str'), in table order."""
    return backend_for(db).columns(db, "jobs")


def _where(db, flt: JobFilter) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if flt.expression is not None:
        from .lang import properties as property_language  # ~50 ms: only when needed

        columns = job_columns(db)
        tree = property_language.parse(flt.expression)
        property_language.validate(tree, columns, what="job field")
        sql, values = property_language.to_sql(tree, columns, backend_for(db).dialect)
        clauses.append(f"({sql})")
        params.extend(values)
    if flt.states is not None:
        clauses.append(f'"state" IN ({placeholders(db, len(flt.states))})')
        params.extend(flt.states)
    if flt.user is not None:
        clauses.append('"job_user" = ' + backend_for(db).placeholder)
        params.append(flt.user)
    if flt.array_id is not None:
        clauses.append('"array_id" = ' + backend_for(db).placeholder)
        params.append(int(flt.array_id))
    return clauses, params


def select_jobs(db, flt: JobFilter, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The jobs matching ``flt``, sorted by id: every column of ``jobs``, or ``columns``."""
    if flt.states is not None and not flt.states:
        return []
    if flt.ids is not None and not flt.ids:
        return []
    what = "*" if columns is None else ", ".join(quote_identifier(c) for c in columns)
    clauses, params = _where(db, flt)
    base = f'SELECT {what} FROM "jobs"'
    if flt.ids is None:
        sql = base + (" WHERE " + " AND ".join(clauses) if clauses else "") + ' ORDER BY "job_id"'
        return _rows(db.execute_sql(sql, params))
    found: list[dict[str, Any]] = []
    ids = sorted(set(int(i) for i in flt.ids))
    for chunk in _chunks(ids):
        where = " AND ".join([*clauses, f'"job_id" IN ({placeholders(db, len(chunk))})'])
        found.extend(_rows(db.execute_sql(f"{base} WHERE {where}", [*params, *chunk])))
    found.sort(key=lambda r: r["job_id"])
    return found


def existing_job_ids(db, ids: Iterable[int]) -> set[int]:
    """Those of ``ids`` that are jobs of the database."""
    wanted = sorted(set(int(i) for i in ids))
    return {row[0] for row in _by_job_ids(db, 'SELECT "job_id" FROM "jobs" WHERE "job_id" IN ({ids})', wanted)}


# ----------------------------------------------------------------------------- details

def may_see_private(viewer: str, owner: str, admins: Iterable[str]) -> bool:
    return viewer == owner or viewer in set(admins)


def request_text(groups: Sequence[Mapping[str, Any]], walltime: int | None) -> str:
    """``{constraint}/label=count/label=count+.../...,walltime=H:MM:SS`` from stored rows.

    ``groups`` are ``{"constraint": text or None, "levels": [(label, stored count, order)]}``.
    The text is :func:`oar_appliance.lang.request.request_to_text` of the stored request
    (what oarsub would accept); rows that no request can give are shown as they are.
    """
    from .lang import request  # imports the property language: only for full records

    rows = [(g.get("constraint"), g["levels"]) for g in groups]
    try:
        return request.request_to_text(request.from_storage(walltime, rows))
    except DatabaseError:
        pass
    parts = []
    for constraint, levels in rows:
        text = f"{{{constraint}}}" if constraint else ""
        for label, count, _order in sorted(levels, key=lambda level: level[2]):
            text += f"/{label}={COUNT_NAMES.get(count, count)}"
        parts.append(text)
    result = "+".join(parts)
    if walltime:
        result += ("," if result else "") + f"walltime={format_duration(walltime)}"
    return result


def events_of(db, job_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Job id -> its events ``{type, date, description}``, oldest first (one query)."""
    result: dict[int, list[dict[str, Any]]] = {}
    rows = _by_job_ids(
        db,
        'SELECT "job_id", "type", "date", "description", "event_id" FROM "event_logs" '
        'WHERE "job_id" IN ({ids})',
        job_ids,
    )
    for job_id, type_, date, description, event_id in sorted(rows, key=lambda r: (r[2], r[4])):
        result.setdefault(job_id, []).append({"type": type_, "date": date, "description": description})
    return result


def _current_or_all(rows: Iterable[tuple], value_at: int, index_at: int) -> dict[int, list[Any]]:
    """Job id (column 0) -> values: the CURRENT rows of a job if it has any, else all of them
    (OAR marks the rows of a finished job as LOG)."""
    current: dict[int, list[Any]] = {}
    every: dict[int, list[Any]] = {}
    for row in rows:
        every.setdefault(row[0], []).append(row[value_at])
        if row[index_at] == "CURRENT":
            current.setdefault(row[0], []).append(row[value_at])
    return {job_id: current.get(job_id, values) for job_id, values in every.items()}


def full_records(db, jobs: Sequence[Mapping[str, Any]], viewer: str,
                 admins: Iterable[str]) -> dict[int, dict[str, Any]]:
    """Job id -> full record, for jobs read with every column by :func:`select_jobs`.

    The record holds every column of ``jobs`` in table order, then :data:`EXTRA_FIELDS`.
    :data:`PRIVATE_FIELDS` are None unless ``viewer`` owns the job or is in ``admins``.
    One query per related table for the whole selection, whatever its size.
    """
    admins = set(admins)
    job_ids = [int(j["job_id"]) for j in jobs]
    if not job_ids:
        return {}

    types = _current_or_all(_by_job_ids(
        db,
        'SELECT "job_id", "type", "type_index", "job_type_id" FROM "job_types" '
        'WHERE "job_id" IN ({ids}) ORDER BY "job_type_id"',
        job_ids,
    ), 1, 2)
    dependencies = _current_or_all(_by_job_ids(
        db,
        'SELECT "job_id", "job_id_required", "job_dependency_index" FROM "job_dependencies" '
        'WHERE "job_id" IN ({ids}) ORDER BY "job_id_required"',
        job_ids,
    ), 1, 2)

    # moldable alternatives with their Gantt prediction
    moldables: dict[int, list[dict[str, Any]]] = {}
    for job_id, moldable_id, walltime, predicted in sorted(_by_job_ids(
        db,
        'SELECT m."moldable_job_id", m."moldable_id", m."moldable_walltime", p."start_time" '
        'FROM "moldable_job_descriptions" m '
        'LEFT JOIN "gantt_jobs_predictions" p ON p."moldable_job_id" = m."moldable_id" '
        'WHERE m."moldable_job_id" IN ({ids})',
        job_ids,
    ), key=lambda r: r[1]):
        moldables.setdefault(job_id, []).append(
            {"id": moldable_id, "walltime": walltime, "predicted": predicted, "groups": {}})

    # resource groups and their levels
    levels: dict[int, dict[int, dict[str, Any]]] = {}
    for moldable_id, group_id, constraint, label, value, order in sorted(_by_job_ids(
        db,
        'SELECT g."res_group_moldable_id", g."res_group_id", g."res_group_property", '
        'd."res_job_resource_type", d."res_job_value", d."res_job_order" '
        'FROM "job_resource_groups" g '
        'JOIN "moldable_job_descriptions" m ON m."moldable_id" = g."res_group_moldable_id" '
        'LEFT JOIN "job_resource_descriptions" d ON d."res_job_group_id" = g."res_group_id" '
        'WHERE m."moldable_job_id" IN ({ids})',
        job_ids,
    ), key=lambda r: (r[0], r[1], -1 if r[5] is None else r[5])):
        group = levels.setdefault(moldable_id, {}).setdefault(
            group_id, {"constraint": constraint, "levels": []})
        if label is not None:
            group["levels"].append((label, value, order))

    # resources planned by the scheduler (per moldable) and assigned (per moldable)
    planned: dict[int, list[int]] = {}
    for moldable_id, resource_id in _by_job_ids(
        db,
        'SELECT r."moldable_job_id", r."resource_id" FROM "gantt_jobs_resources" r '
        'JOIN "moldable_job_descriptions" m ON m."moldable_id" = r."moldable_job_id" '
        'WHERE m."moldable_job_id" IN ({ids})',
        job_ids,
    ):
        planned.setdefault(moldable_id, []).append(resource_id)
    assigned: dict[int, list[tuple[int, str | None]]] = {}
    for moldable_id, resource_id, host in _by_job_ids(
        db,
        'SELECT a."moldable_job_id", a."resource_id", s."network_address" FROM "assigned_resources" a '
        'JOIN "moldable_job_descriptions" m ON m."moldable_id" = a."moldable_job_id" '
        'LEFT JOIN "resources" s ON s."resource_id" = a."resource_id" '
        'WHERE m."moldable_job_id" IN ({ids})',
        job_ids,
    ):
        assigned.setdefault(moldable_id, []).append((resource_id, host))

    events = events_of(db, job_ids)

    records: dict[int, dict[str, Any]] = {}
    for job in jobs:
        job_id = int(job["job_id"])
        record = dict(job)
        if not may_see_private(viewer, job.get("job_user"), admins):
            for name in PRIVATE_FIELDS:
                if name in record:
                    record[name] = None
        alternatives = moldables.get(job_id, [])
        assigned_id = job.get("assigned_moldable_job") or 0
        chosen = next((m for m in alternatives if m["id"] == assigned_id), None)
        predicted = next((m for m in alternatives if m["predicted"] is not None), None)
        shown = chosen or predicted or (alternatives[0] if alternatives else None)
        if chosen is not None:
            resources = sorted(r for r, _ in assigned.get(chosen["id"], []))
            hosts = sorted({h for _, h in assigned.get(chosen["id"], []) if h is not None}, key=natural_key)
        else:
            resources = sorted(planned.get(predicted["id"], [])) if predicted is not None else []
            hosts = []
        start = (chosen or predicted or {}).get("predicted")
        record.update({
            "types": list(types.get(job_id, [])),
            "dependencies": list(dependencies.get(job_id, [])),
            "walltime": shown["walltime"] if shown is not None else None,
            "resource_request": [
                request_text([levels.get(m["id"], {})[g] for g in sorted(levels.get(m["id"], {}))], m["walltime"])
                for m in alternatives
            ],
            "scheduled_start": start,
            "scheduled_resources": resources,
            "assigned_hostnames": hosts,
            "events": events.get(job_id, []),
        })
        records[job_id] = record
    return records


# ----------------------------------------------------------------------------- Gantt history

#: states in which a job has not started yet but may have a place in the Gantt
PLANNED_STATES = ("Waiting", "toAckReservation", "toLaunch")


def gantt(db, start: int, stop: int, now: int, flt: JobFilter | None = None) -> list[dict[str, Any]]:
    """Jobs that occupy (or are planned to occupy) resources during ``[start, stop]``.

    A started job spans ``[start_time, stop_time]``, or up to the later of ``now`` and
    its planned end (start + walltime) while it has not stopped; a job that has not
    started spans its predicted start + walltime (``gantt_jobs_predictions``).  Each
    entry gives ``job_id, job_user, job_name, state, queue_name, start, stop,
    predicted`` (True for a prediction), ``resources`` (ids) and ``hostnames``.
    """
    flt = flt or JobFilter()
    clauses, params = _where(db, flt)
    mark = backend_for(db).placeholder
    columns = ('j."job_id", j."job_user", j."job_name", j."state", j."queue_name", '
               'j."start_time", j."stop_time", m."moldable_id", m."moldable_walltime"')
    # the filter's clauses name the bare columns of jobs: apply them through a sub-selection
    selection = ""
    if clauses:
        selection = f' AND j."job_id" IN (SELECT "job_id" FROM "jobs" WHERE {" AND ".join(clauses)})'
    if flt.ids is None:
        id_chunks: list[Sequence[int]] = [()]
    else:
        id_chunks = list(_chunks(sorted(set(int(i) for i in flt.ids))))
    rows: list[tuple] = []
    for chunk in id_chunks:
        by_id = f' AND j."job_id" IN ({placeholders(db, len(chunk))})' if chunk else ""
        rows += db.execute_sql(
            f'SELECT {columns}, NULL FROM "jobs" j '
            'LEFT JOIN "moldable_job_descriptions" m ON m."moldable_id" = j."assigned_moldable_job" '
            f'WHERE j."start_time" > 0 AND j."start_time" <= {mark} '
            f'AND (j."stop_time" = 0 OR j."stop_time" >= {mark}){selection}{by_id}',
            [stop, start, *params, *chunk],
        ).fetchall()
        rows += db.execute_sql(
            f'SELECT {columns}, p."start_time" FROM "jobs" j '
            'JOIN "moldable_job_descriptions" m ON m."moldable_job_id" = j."job_id" '
            'JOIN "gantt_jobs_predictions" p ON p."moldable_job_id" = m."moldable_id" '
            f'WHERE j."start_time" = 0 AND j."state" IN ({placeholders(db, len(PLANNED_STATES))}) '
            f'AND p."start_time" <= {mark} AND p."start_time" + m."moldable_walltime" >= {mark}'
            f'{selection}{by_id}',
            [*PLANNED_STATES, stop, start, *params, *chunk],
        ).fetchall()

    entries: dict[int, dict[str, Any]] = {}
    rows.sort(key=lambda r: (r[0], r[7] or 0))  # by job, then moldable: the first alternative wins
    for job_id, user, name, state, queue, t_start, t_stop, moldable_id, walltime, predicted in rows:
        if job_id in entries:
            continue
        if predicted is not None:
            begin, end = predicted, predicted + (walltime or 0)
        else:
            begin = t_start
            end = t_stop if t_stop else max(now, t_start + (walltime or 0))
            if end < start:
                continue
        entries[job_id] = {
            "job_id": job_id, "job_user": user, "job_name": name, "state": state, "queue_name": queue,
            "start": begin, "stop": end, "predicted": predicted is not None,
            "resources": [], "hostnames": [], "_moldable": moldable_id,
        }
    if not entries:
        return []
    by_moldable = {e["_moldable"]: e for e in entries.values() if e["_moldable"] is not None}
    planned_moldables = sorted(m for m, e in by_moldable.items() if e["predicted"])
    started_moldables = sorted(m for m, e in by_moldable.items() if not e["predicted"])
    hosts: dict[int, set[str]] = {}
    for table, wanted in (("gantt_jobs_resources", planned_moldables), ("assigned_resources", started_moldables)):
        for moldable_id, resource_id, host in _by_job_ids(
            db,
            f'SELECT r."moldable_job_id", r."resource_id", s."network_address" FROM "{table}" r '
            'LEFT JOIN "resources" s ON s."resource_id" = r."resource_id" '
            'WHERE r."moldable_job_id" IN ({ids})',
            wanted,
        ):
            entry = by_moldable[moldable_id]
            entry["resources"].append(resource_id)
            if host is not None:
                hosts.setdefault(entry["job_id"], set()).add(host)
    result = []
    for job_id in sorted(entries):
        entry = entries[job_id]
        del entry["_moldable"]
        entry["resources"].sort()
        entry["hostnames"] = sorted(hosts.get(job_id, ()), key=natural_key)
        result.append(entry)
    return result


# ----------------------------------------------------------------------------- accounting

def accounting(db, start: int, stop: int, user: str | None = None) -> list[dict[str, Any]]:
    """Consumption of the accounting windows that intersect ``[start, stop]``.

    One entry per (user, project, queue), sorted: ``user, project, queue, asked, used``
    (seconds summed over the windows: ASKED from the walltimes, USED from the real
    durations), ``first_window_start`` and ``last_window_stop``.
    """
    mark = backend_for(db).placeholder
    sql = ('SELECT "accounting_user", "accounting_project", "queue_name", "consumption_type", '
           '"consumption", "window_start", "window_stop" FROM "accounting" '
           f'WHERE "window_stop" > {mark} AND "window_start" < {mark}')
    params: list[Any] = [start, stop]
    if user is not None:
        sql += f' AND "accounting_user" = {mark}'
        params.append(user)
    totals: dict[tuple[str, str, str], dict[str, Any]] = {}
    for who, project, queue, kind, consumption, w_start, w_stop in db.execute_sql(sql, params).fetchall():
        entry = totals.setdefault((who, project, queue), {
            "user": who, "project": project, "queue": queue, "asked": 0, "used": 0,
            "first_window_start": w_start, "last_window_stop": w_stop,
        })
        entry["asked" if kind == "ASKED" else "used"] += int(consumption or 0)
        entry["first_window_start"] = min(entry["first_window_start"], w_start)
        entry["last_window_stop"] = max(entry["last_window_stop"], w_stop)
    return [totals[key] for key in sorted(totals)]


__all__ = [
    "FINISHED_STATES", "NOT_FINISHED_STATES", "STATE_LETTERS", "SUMMARY_COLUMNS", "PRIVATE_FIELDS",
    "EXTRA_FIELDS", "JobFilter", "select_jobs", "existing_job_ids", "full_records", "events_of",
    "gantt", "accounting", "format_date", "parse_date", "parse_window", "format_duration",
    "request_text", "natural_key",
]
