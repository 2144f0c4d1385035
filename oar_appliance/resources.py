"""Resource administration: properties, registration, states, maintenance, removal.

The rules behind ``oarproperty``, ``oarnodesetting``, ``oarremoveresource``,
``oarnodes`` and ``oar-resources-add``.  Every function works inside the caller's
transaction and takes the current time as ``now``; each change of a state or property is
recorded in ``resource_logs`` as an interval (``date_stop`` = 0 while it holds).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable, Mapping, Sequence

import peewee

from .db import bulk, resource_table
from .db.connection import backend_for
from .db.models import (
    STATE_NUMBERS,
    AssignedResource,
    EventLog,
    FragJob,
    GanttJobResource,
    GanttJobResourceVisu,
    Job,
    MoldableJobDescription,
    ResourceLog,
)
from .errors import ConflictError, NotFoundError, UsageError

log = logging.getLogger(__name__)

PROPERTY_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: system columns an admin may set with ``oarnodesetting -p`` (the others have their own
#: option or belong to the server)
SETTABLE_SYSTEM_COLUMNS = frozenset({
    "type", "network_address", "besteffort", "deploy", "scheduler_priority",
    "available_upto", "expiry_date", "desktop_computing", "cm_availability",
})
YES_NO_COLUMNS = frozenset({"besteffort", "deploy", "desktop_computing"})

#: job states in which a job holds its resources
ACTIVE_JOB_STATES = ("toLaunch", "Launching", "Running", "Suspended", "Resuming", "Finishing")
#: the subset of those a state change must kill (a Finishing job is already ending)
KILLABLE_JOB_STATES = ("toLaunch", "Launching", "Running", "Suspended", "Resuming")

MAX_AVAILABLE_UPTO = 2147483647


# ----------------------------------------------------------------------------- properties

def list_properties(db: peewee.Database) -> dict[str, str]:
    """Property name -> kind ('int' or 'str')."""
    return resource_table.property_columns(db)


def _check_property_name(name: str) -> None:
    if not PROPERTY_NAME.match(name):
        raise UsageError(
            f"invalid property name {name!r}: use lowercase letters, digits and '_', "
            "starting with a letter or '_' (at most 63 characters)"
        )
    if name in resource_table.SYSTEM_COLUMNS:
        raise ConflictError(f"{name!r} is a system column of resources, not a property")
    from .lang.properties import KEYWORDS  # the parser costs ~50 ms: only when needed

    if name in KEYWORDS:
        raise UsageError(f"{name!r} is a keyword of the property language")


def add_property(db: peewee.Database, name: str, kind: str = "int") -> None:
    """Add a property column (``kind``: 'int' or 'str' for VARCHAR(255))."""
    _check_property_name(name)
    if kind not in ("int", "str"):
        raise UsageError(f"unknown property kind {kind!r}")
    if name in resource_table.columns(db):
        raise ConflictError(f"property {name!r} already exists")
    backend_for(db).add_column(db, "resources", name, kind)


def _require_property(db: peewee.Database, name: str) -> None:
    if name in resource_table.SYSTEM_COLUMNS:
        raise ConflictError(f"{name!r} is a system column of resources, not a property")
    if name not in resource_table.property_columns(db):
        raise NotFoundError(f"property {name!r} does not exist")


def delete_property(db: peewee.Database, name: str) -> None:
    _require_property(db, name)
    backend_for(db).drop_column(db, "resources", name)
    ResourceLog.delete().where(ResourceLog.attribute == name).execute()


def rename_property(db: peewee.Database, old: str, new: str) -> None:
    _require_property(db, old)
    _check_property_name(new)
    if new in resource_table.columns(db):
        raise ConflictError(f"property {new!r} already exists")
    backend_for(db).rename_column(db, "resources", old, new)
    ResourceLog.update(attribute=new).where(ResourceLog.attribute == old).execute()


# ----------------------------------------------------------------------------- values

def coerce_value(name: str, kind: str, text: Any) -> Any:
    """The value to store in column ``name`` of ``kind``, from user text."""
    if text is None:
        return None
    if name in YES_NO_COLUMNS:
        value = str(text).upper()
        if value not in ("YES", "NO"):
            raise UsageError(f"{name} must be YES or NO, got {text!r}")
        return value
    if kind == "int":
        try:
            return int(str(text).strip())
        except ValueError:
            raise UsageError(f"property {name} is an integer, got {text!r}") from None
    if kind == "float":
        try:
            return float(str(text).strip())
        except ValueError:
            raise UsageError(f"property {name} is a number, got {text!r}") from None
    value = str(text)
    if len(value) > 255:
        raise UsageError(f"value of {name} is longer than 255 characters")
    return value


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["cpu=1", "switch=sw2"]`` -> ``{"cpu": "1", "switch": "sw2"}``."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"expected NAME=VALUE, got {item!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        result[name] = value
    return result


def _checked_values(live: Mapping[str, str], values: Mapping[str, Any],
                    allowed_system: Iterable[str]) -> dict[str, Any]:
    """``values`` checked against the live columns (name -> kind) and coerced."""
    allowed = set(allowed_system)
    checked: dict[str, Any] = {}
    for name, text in values.items():
        if name not in live:
            raise NotFoundError(f"property {name!r} does not exist (add it with: oarproperty -a {name})")
        if name in resource_table.SYSTEM_COLUMNS and name not in allowed:
            raise ConflictError(f"{name!r} cannot be set this way")
        checked[name] = coerce_value(name, live[name], text)
    return checked


# ----------------------------------------------------------------------------- logs

def _log_values(db, ids: Sequence[int], values: Mapping[str, Any], now: int, finaud: bool = False) -> None:
    """Close the open log interval of each (resource, attribute) and open a new one."""
    if not ids or not values:
        return
    for name in values:
        for start in range(0, len(ids), resource_table.MAX_PARAMETERS):
            chunk = ids[start : start + resource_table.MAX_PARAMETERS]
            (ResourceLog.update(date_stop=now)
             .where((ResourceLog.attribute == name) & (ResourceLog.date_stop == 0)
                    & ResourceLog.resource_id.in_(chunk))
             .execute())
    decision = "YES" if finaud else "NO"
    bulk.insert_rows(db, "resource_logs", [
        {"resource_id": rid, "attribute": name, "value": "" if value is None else str(value),
         "date_start": now, "date_stop": 0, "finaud_decision": decision}
        for rid in ids for name, value in values.items()
    ])


# ----------------------------------------------------------------------------- resources

def add_resources(db, rows: Sequence[Mapping[str, Any]], now: int) -> list[int]:
    """Register resources; every row gives ``network_address`` and any properties."""
    if not rows:
        return []
    prepared: list[dict[str, Any]] = []
    keys = None
    allowed = SETTABLE_SYSTEM_COLUMNS | {"state"}
    live = resource_table.columns(db)
    for row in rows:
        values = _checked_values(live, row, allowed)
        if not values.get("network_address"):
            raise UsageError("a resource needs a network address (-h HOST)")
        state = values.setdefault("state", "Alive")
        if state not in STATE_NUMBERS:
            raise UsageError(f"unknown state {state!r} (Alive, Absent, Dead)")
        values["state_num"] = STATE_NUMBERS[state]
        if keys is None:
            keys = list(values)
        elif list(values) != keys:
            raise UsageError("every resource of one registration must set the same properties")
        prepared.append(values)
    ids = resource_table.insert(db, prepared)
    states: dict[str, list[int]] = {}
    for rid, values in zip(ids, prepared):
        states.setdefault(values["state"], []).append(rid)
    for state, state_ids in states.items():
        _log_values(db, state_ids, {"state": state}, now)
    return ids


def register_cluster(
    db, hosts: Sequence[str], cpus: int, cores: int, now: int,
    extra: Mapping[str, Any] | None = None,
) -> list[int]:
    """Register ``hosts`` x ``cpus`` x ``cores`` resources, as OAR's oar_resources_add does.

    ``cpu`` and ``core`` numbers are global to the cluster and continue after those
    already registered; ``cpuset`` is the core's index inside its host.
    """
    if not hosts or cpus < 1 or cores < 1:
        raise UsageError("need at least one host, one cpu and one core")
    if len(set(hosts)) != len(hosts):
        raise UsageError("a host is named twice")
    live = resource_table.columns(db)
    for needed in ("host", "cpu", "core", "cpuset"):
        if needed not in live:
            raise NotFoundError(f"property {needed!r} does not exist (add it with: oarproperty -a {needed})")
    taken = select(db, hosts=list(hosts))
    if taken:
        raise ConflictError(f"host {taken[0]['network_address']} already has resources")
    row = db.execute_sql('SELECT MAX("cpu"), MAX("core") FROM "resources"').fetchone()
    next_cpu, next_core = (row[0] or 0) + 1, (row[1] or 0) + 1
    rows = []
    for host in hosts:
        for cpu_in_host in range(cpus):
            for core_in_cpu in range(cores):
                rows.append({
                    "network_address": host, "host": host,
                    "cpu": next_cpu, "core": next_core,
                    "cpuset": cpu_in_host * cores + core_in_cpu,
                    **(extra or {}),
                })
                next_core += 1
            next_cpu += 1
    return add_resources(db, rows, now)


def select(db, expression: str | None = None, ids: Sequence[int] | None = None,
           hosts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Resources with every column, filtered by a property expression, ids and hosts."""
    live = resource_table.columns(db)
    clauses, params = [], []
    if expression:
        from .lang import properties as property_language  # ~50 ms: only when needed

        tree = property_language.parse(expression)
        property_language.validate(tree, live, what="property")
        sql, values = property_language.to_sql(tree, live, backend_for(db).dialect)
        clauses.append(f"({sql})")
        params.extend(values)
    if ids is not None:
        if not ids:
            return []
        sql, values = resource_table.ids_clause(db, ids)
        clauses.append(sql)
        params.extend(values)
    if hosts is not None:
        if not hosts:
            return []
        clauses.append(f'"network_address" IN ({", ".join([backend_for(db).placeholder] * len(hosts))})')
        params.extend(hosts)
    return resource_table.select(db, " AND ".join(clauses), params)


def resolve(db, ids: Sequence[int] = (), hosts: Sequence[str] = (), expression: str | None = None) -> list[int]:
    """Resource ids named by ``-r`` ids, ``-h`` hosts and ``--sql``; unknown ones are errors."""
    found: set[int] = set()
    if ids:
        existing = resource_table.existing_ids(db, ids)
        missing = sorted(set(int(i) for i in ids) - existing)
        if missing:
            raise NotFoundError(f"resource {missing[0]} does not exist")
        found |= existing
    if hosts:
        rows = select(db, hosts=list(hosts))
        known = {r["network_address"] for r in rows}
        for host in hosts:
            if host not in known:
                raise NotFoundError(f"host {host!r} has no resource")
        found |= {r["resource_id"] for r in rows}
    if expression:
        rows = select(db, expression=expression)
        if not rows:
            raise NotFoundError(f"no resource matches {expression!r}")
        found |= {r["resource_id"] for r in rows}
    return sorted(found)


def set_properties(db, ids: Sequence[int], values: Mapping[str, str], now: int) -> None:
    checked = _checked_values(resource_table.columns(db), values, SETTABLE_SYSTEM_COLUMNS)
    resource_table.update(db, ids, checked)
    _log_values(db, list(ids), checked, now)


def jobs_on(db, ids: Sequence[int], states: Sequence[str] = ACTIVE_JOB_STATES) -> dict[int, list[int]]:
    """Resource id -> ids of the jobs in ``states`` holding it (one query).

    The query starts from the jobs in ``states`` (index on ``state``) and reaches their
    resources through their moldable descriptions; the resources are filtered here, not
    with an ``IN`` list, which lets SQLite walk the whole history of ``assigned_resources``
    (3,200 ids among 1,000,000 rows: 5 s instead of 0.06 s).
    """
    if not ids:
        return {}
    query = (
        Job.select(AssignedResource.resource_id, Job.job_id)
        .join(MoldableJobDescription, on=(MoldableJobDescription.moldable_job_id == Job.job_id))
        .join(AssignedResource, on=(AssignedResource.moldable_job_id == MoldableJobDescription.moldable_id))
        .where(Job.state.in_(list(states)) & (AssignedResource.assigned_resource_index == "CURRENT"))
        .order_by(Job.job_id)
    )
    wanted = set(ids)
    result: dict[int, list[int]] = {}
    for resource_id, job_id in db.execute(query).fetchall():  # plain rows: peewee's wrappers cost 5x
        if resource_id in wanted:
            result.setdefault(resource_id, []).append(job_id)
    return result


def request_state(db, ids: Sequence[int], state: str, finaud: bool = False) -> None:
    """Ask for a state change; :func:`apply_pending_states` carries it out."""
    if state not in STATE_NUMBERS:
        raise UsageError(f"unknown state {state!r} (Alive, Absent, Dead, Suspected)")
    resource_table.update(db, ids, {"next_state": state, "next_finaud_decision": "YES" if finaud else "NO"})


def apply_pending_states(db, now: int) -> dict[str, Any]:
    """Carry out the requested state changes (the resource part of NodeChangeState).

    Returns ``{"changed": {resource_id: state}, "jobs_to_kill": [job ids]}``: jobs that
    hold a resource leaving the Alive state get a kill request (``frag_jobs``).
    """
    pending = resource_table.select(db, "\"next_state\" <> 'UnChanged'")
    changed: dict[int, str] = {}
    by_state: dict[tuple[str, str], list[int]] = {}
    for row in pending:
        if row["next_state"] != row["state"]:
            by_state.setdefault((row["next_state"], row["next_finaud_decision"]), []).append(row["resource_id"])
            changed[row["resource_id"]] = row["next_state"]
    for (state, finaud), ids in by_state.items():
        resource_table.update(db, ids, {"state": state, "state_num": STATE_NUMBERS[state], "finaud_decision": finaud})
        _log_values(db, ids, {"state": state}, now, finaud=finaud == "YES")
    if pending:
        resource_table.update(db, [r["resource_id"] for r in pending],
                              {"next_state": "UnChanged", "next_finaud_decision": "NO"})
    leaving = [rid for rid, state in changed.items() if state != "Alive"]
    victims = sorted({j for jobs in jobs_on(db, leaving, KILLABLE_JOB_STATES).values() for j in jobs})
    request_kill(db, victims, now, reason="resources of the job changed state")
    return {"changed": changed, "jobs_to_kill": victims}


def set_states(db, ids: Sequence[int], state: str, now: int, finaud: bool = False,
               reason: str = "resources of the job changed state") -> list[int]:
    """Change the state of resources at once, with its ``resource_logs`` interval.

    For the server's own periodic decisions (finaud, sarko), which need no request to be
    carried out later.  ``finaud`` marks the change as finaud's (``finaud_decision``).
    Jobs holding a resource that leaves Alive get a kill request; returns their ids.
    """
    if state not in STATE_NUMBERS:
        raise UsageError(f"unknown state {state!r} (Alive, Absent, Dead, Suspected)")
    ids = sorted(set(ids))
    if not ids:
        return []
    leaving: list[int] = []
    if state != "Alive":
        for start in range(0, len(ids), resource_table.MAX_PARAMETERS):
            chunk = ids[start : start + resource_table.MAX_PARAMETERS]
            leaving += [r["resource_id"] for r in resource_table.select(
                db, *resource_table.ids_clause(db, chunk), only=["resource_id", "state"]) if r["state"] == "Alive"]
    resource_table.update(db, ids, {"state": state, "state_num": STATE_NUMBERS[state],
                                    "finaud_decision": "YES" if finaud else "NO"})
    _log_values(db, ids, {"state": state}, now, finaud=finaud)
    if not leaving:
        return []
    # the jobs of resources already out of Alive got their kill request when they left it
    victims = sorted({j for jobs in jobs_on(db, leaving, KILLABLE_JOB_STATES).values() for j in jobs})
    request_kill(db, victims, now, reason=reason)
    return victims


def suspect_hosts(db, hosts: Sequence[str], now: int, reason: str) -> list[int]:
    """The Alive resources of ``hosts`` become Suspected at once, as a decision of the node
    checks (``finaud_decision`` YES: finaud brings a host back when it answers again);
    returns the jobs that got a kill request (:func:`set_states`)."""
    ids = [r["resource_id"] for r in select(db, hosts=list(hosts)) if r["state"] == "Alive"]
    return set_states(db, ids, "Suspected", now, finaud=True, reason=reason)


def request_kill(db, job_ids: Sequence[int], now: int, reason: str) -> None:
    """Record kill requests for Leon (``frag_jobs`` and a FRAG_JOB_REQUEST event)."""
    if not job_ids:
        return
    query = FragJob.select(FragJob.frag_id_job).where(FragJob.frag_id_job.in_(list(job_ids)))
    already = {f.frag_id_job for f in query}
    new = [j for j in job_ids if j not in already]
    if not new:
        return
    FragJob.insert_many([{"frag_id_job": j, "frag_date": now, "frag_state": "LEON"} for j in new]).execute()
    EventLog.insert_many([
        {"type": "FRAG_JOB_REQUEST", "job_id": j, "date": now, "description": reason, "to_check": "NO"}
        for j in new
    ]).execute()


def set_maintenance(db, ids: Sequence[int], on: bool, now: int) -> None:
    """Maintenance on: Absent and never woken up (available_upto 0); off: back to Alive."""
    where, params = resource_table.ids_clause(db, ids)
    if on:
        # keep the admin's available_upto to restore it when maintenance ends
        db.execute_sql(
            'UPDATE "resources" SET "last_available_upto" = "available_upto", "available_upto" = 0 '
            f'WHERE "available_upto" <> 0 AND {where}', params)
        request_state(db, ids, "Absent")
    else:
        db.execute_sql(
            'UPDATE "resources" SET "available_upto" = CASE WHEN "last_available_upto" = 0 '
            f'THEN {MAX_AVAILABLE_UPTO} ELSE "last_available_upto" END '
            f'WHERE "available_upto" = 0 AND {where}', params)
        request_state(db, ids, "Alive")
    _log_values(db, list(ids), {"maintenance": "on" if on else "off"}, now)


def set_drain(db, ids: Sequence[int], on: bool, now: int) -> None:
    """Drain on: running jobs go on, no new job is scheduled on these resources."""
    value = "YES" if on else "NO"
    resource_table.update(db, ids, {"drain": value})
    _log_values(db, list(ids), {"drain": value}, now)


def remove(db, ids: Sequence[int]) -> None:
    """Remove Dead resources and their history; all or nothing."""
    rows = resource_table.select(db, *resource_table.ids_clause(db, ids)) if ids else []
    found = {r["resource_id"]: r for r in rows}
    for rid in ids:
        if rid not in found:
            raise NotFoundError(f"resource {rid} does not exist")
        if found[rid]["state"] != "Dead":
            raise ConflictError(
                f"resource {rid} is {found[rid]['state']}, not Dead "
                f"(first run: oarnodesetting -s Dead -r {rid})"
            )
    busy = jobs_on(db, list(ids))
    if busy:
        rid, jobs = sorted(busy.items())[0]
        raise ConflictError(f"resource {rid} is still used by job {jobs[0]}")
    ResourceLog.delete().where(ResourceLog.resource_id.in_(list(ids))).execute()
    AssignedResource.delete().where(AssignedResource.resource_id.in_(list(ids))).execute()
    GanttJobResource.delete().where(GanttJobResource.resource_id.in_(list(ids))).execute()
    GanttJobResourceVisu.delete().where(GanttJobResourceVisu.resource_id.in_(list(ids))).execute()
    resource_table.delete(db, list(ids))
