"""The launcher (OAR's bipbip): ``toLaunch`` -> ``Launching`` -> ``Running`` (layer 4).

Two steps, so that nothing is ever launched twice:

1. :func:`claim` moves ``toLaunch`` jobs to ``Launching`` in a transaction of its own, which
   is committed before anything is started, and builds each job's data (the JSON object
   oarexec reads on stdin, docs/execution.md "oarexec") with one query per table for the
   whole batch.  A job that another pass (or a restarted server) already claimed is not
   returned: the state change is guarded by the job's current state.
2. :func:`launch` (run by the server's pool of launch threads) runs the server prologue
   (``SERVER_PROLOGUE_EXEC_FILE``), prepares every node of the job at once (``jobctl
   prepare`` through the connector's fan-out: the job's cgroup with that node's cpus),
   then ``connector.start_oarexec`` on the head node.
   Success: ``Running`` with ``start_time``; failure: ``Error`` with an event
   (``SERVER_PROLOGUE_*``, ``CPUSET_ERROR``, ``LAUNCHING_OAREXEC_TIMEOUT`` or
   ``EXIT_VALUE_OAREXEC``).  Nodes that could not be prepared become ``Suspected`` (finaud
   brings them back), the nodes already prepared are cleaned, and an ``idempotent`` job
   is submitted again.
   An interactive ``oarsub`` waiting for its job is told ``STARTED <head host>`` or
   ``ERROR <reason>`` (:mod:`oar_appliance.submitter`).

Job types: ``noop`` jobs start nothing (they are Running at once); ``deploy`` and
``cosystem`` jobs run oarexec on ``DEPLOY_HOSTNAME`` / ``COSYSTEM_HOSTNAME`` and nothing is
done on their nodes.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import peewee

from . import job_lifecycle as lifecycle
from . import resources
from .db import bulk, resource_table
from .db.connection import backend_for, quote_identifier
from .execution.fanout import HOST

log = logging.getLogger(__name__)

__all__ = ["LaunchOrder", "claim", "launch", "build_job_data", "expand_output_path"]

#: columns of ``resources`` not written to OAR_RESOURCE_PROPERTIES_FILE (OAR's own state)
HIDDEN_RESOURCE_COLUMNS = frozenset({
    "state", "next_state", "finaud_decision", "next_finaud_decision", "state_num",
    "suspended_jobs", "scheduler_priority", "expiry_date", "desktop_computing",
    "last_job_date", "available_upto", "last_available_upto", "drain", "cm_availability",
})


@dataclass
class LaunchOrder:
    """One claimed job: what :func:`launch` needs."""

    job_id: int
    head: str
    data: dict[str, Any]
    info_type: str | None = None
    interactive: bool = False
    noop: bool = False
    hosts: list[str] = field(default_factory=list)
    #: the nodes to prepare and clean (none for deploy and cosystem jobs)
    nodes: list[str] = field(default_factory=list)
    #: what ``jobctl prepare`` reads on each node (``cpusets``: host -> its cpus; the job key)
    node_setup: dict[str, Any] = field(default_factory=dict)


def expand_output_path(template: str | None, job_id: int, name: str | None, directory: str,
                       default: str) -> str:
    """``-O``/``-E`` with ``%jobid%`` and ``%jobname%`` replaced, made absolute."""
    text = template if template else default
    text = text.replace("%jobid%", str(job_id)).replace("%jobname%", name or "")
    return text if os.path.isabs(text) else os.path.join(directory or "/", text)


def _node_devices(db: peewee.Database, config: Mapping[str, Any], columns: Sequence[str], jwhere: str,
                  params: Sequence[Any]) -> dict[str, list[str]]:
    """host -> the device paths (``JOB_RESOURCE_MANAGER_DEVICES_DB_FIELD``) of all the
    resources of that host, for every host of the batch's jobs, in one query; empty when the
    field is not set, is not a column, or ``JOB_RESOURCE_MANAGER`` is ``none`` (nothing
    confines the jobs, devices neither)."""
    field = config.get("JOB_RESOURCE_MANAGER_DEVICES_DB_FIELD") or ""
    if not field or field not in columns or str(config.get("JOB_RESOURCE_MANAGER") or "auto") == "none":
        return {}
    column = quote_identifier(field)
    found: dict[str, set[str]] = {}
    for r in _fetch(db, f'SELECT DISTINCT n."network_address", n.{column} AS "device" FROM "resources" n '
                        f'WHERE n.{column} IS NOT NULL AND n."network_address" IN ('
                        'SELECT r."network_address" FROM "jobs" j '
                        'JOIN "assigned_resources" a ON a."moldable_job_id" = j."assigned_moldable_job" '
                        'JOIN "resources" r ON r."resource_id" = a."resource_id" '
                        f'WHERE {jwhere})', params):
        if str(r["device"]):
            found.setdefault(r["network_address"], set()).add(str(r["device"]))
    return {host: sorted(paths) for host, paths in found.items()}


def _fetch(db: peewee.Database, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    cursor = db.execute_sql(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def build_job_data(db: peewee.Database, config: Mapping[str, Any], job_ids: Sequence[int]) -> list[LaunchOrder]:
    """The launch orders of ``job_ids`` (one query per table for the whole batch)."""
    if not job_ids:
        return []
    where, params = bulk.ids_clause(db, "job_id", job_ids)
    jwhere = where.replace('"job_id"', 'j."job_id"')
    jobs = _fetch(db, 'SELECT j.*, m."moldable_walltime" FROM "jobs" j LEFT JOIN "moldable_job_descriptions" m '
                      f'ON m."moldable_id" = j."assigned_moldable_job" WHERE {jwhere}', params)
    challenges = {r["job_id"]: r for r in _fetch(
        db, f'SELECT "job_id", "challenge", "ssh_public_key" FROM "challenges" WHERE {where}', params)}
    types: dict[int, list[str]] = {}
    for r in _fetch(db, f'SELECT "job_id", "type" FROM "job_types" WHERE {where} '
                        'AND "type_index" = \'CURRENT\' ORDER BY "job_type_id"', params):
        types.setdefault(r["job_id"], []).append(r["type"])
    columns = resource_table.columns(db)
    resources: dict[int, list[dict[str, Any]]] = {}
    for r in _fetch(db, 'SELECT j."job_id" AS "oar_job_id", r.* FROM "jobs" j '
                        'JOIN "assigned_resources" a ON a."moldable_job_id" = j."assigned_moldable_job" '
                        'JOIN "resources" r ON r."resource_id" = a."resource_id" '
                        f'WHERE {jwhere} ORDER BY r."resource_id"', params):
        resources.setdefault(r.pop("oar_job_id"), []).append(r)
    node_devices = _node_devices(db, config, columns, jwhere, params)
    devices_field = config.get("JOB_RESOURCE_MANAGER_DEVICES_DB_FIELD") or ""

    node_field = config.get("NODE_FILE_DB_FIELD", "network_address")
    distinct_field = config.get("NODE_FILE_DB_FIELD_DISTINCT_VALUES", "resource_id")
    cpuset_field = config.get("JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD", "cpuset")
    shown = [c for c in columns if c not in HIDDEN_RESOURCE_COLUMNS]
    orders = []
    for job in jobs:
        job_id = job["job_id"]
        rows = resources.get(job_id, [])
        job_types = types.get(job_id, [])
        hosts = sorted({r["network_address"] for r in rows})
        head = hosts[0] if hosts else ""
        nodes = hosts
        if any(t == "deploy" or t.startswith("deploy=") for t in job_types):
            head = config.get("DEPLOY_HOSTNAME") or head
            nodes = []
        elif any(t == "cosystem" or t.startswith("cosystem=") for t in job_types):
            head = config.get("COSYSTEM_HOSTNAME") or head
            nodes = []
        # one node file line per distinct value of the DISTINCT field (a core), naming the
        # node by NODE_FILE_DB_FIELD
        seen: dict[Any, str] = {}
        for r in rows:
            key = r.get(distinct_field, r["resource_id"])
            if key not in seen:
                seen[key] = str(r.get(node_field) if r.get(node_field) is not None else r["network_address"])
        node_file_lines = sorted(seen.values())
        cpusets: dict[str, list[int]] = {}
        for r in rows:
            value = r.get(cpuset_field)
            if value not in (None, "") and str(value).lstrip("-").isdigit():
                cpusets.setdefault(r["network_address"], []).append(int(value))
        cpusets = {host: sorted(set(cpus)) for host, cpus in cpusets.items()}
        cpuset = cpusets.get(head, [])
        devices: dict[str, list[str]] = {}
        if node_devices:
            for r in rows:
                if r.get(devices_field) not in (None, ""):
                    devices.setdefault(r["network_address"], []).append(str(r[devices_field]))
        properties = [" , ".join(f"{c} = '{'' if r.get(c) is None else r.get(c)}'" for c in shown)
                      for r in rows]
        directory = job["launching_directory"] or "/"
        interactive = job["job_type"] == "INTERACTIVE"
        data = {
            "job_id": job_id, "user": job["job_user"], "name": job["job_name"] or "",
            "project": job["project"] or "", "queue": job["queue_name"], "types": job_types,
            "command": "" if interactive else (job["command"] or ""),
            "interactive": interactive, "launching_directory": directory,
            "stdout_file": expand_output_path(job["stdout_file"], job_id, job["job_name"], directory,
                                              "OAR.%jobid%.stdout"),
            "stderr_file": expand_output_path(job["stderr_file"], job_id, job["job_name"], directory,
                                              "OAR.%jobid%.stderr"),
            "walltime": int(job["moldable_walltime"] or 0), "hosts": hosts,
            "node_file_lines": node_file_lines, "resource_properties": properties,
            "cpuset": cpuset,
            # the job's devices on the head node, and all of its resources' (the others denied)
            "devices": sorted(set(devices.get(head, []))), "node_devices": node_devices.get(head, []),
            "array_id": job["array_id"], "array_index": job["array_index"],
            "checkpoint_signal": lifecycle.signal_name(job["checkpoint_signal"]),
            "checkpoint": job["checkpoint"] or 0,
            "challenge": challenges.get(job_id, {}).get("challenge") or "",
            # oarsub -k/-i: the nodes let the key's holder into the job (oarsh)
            "job_key": challenges.get(job_id, {}).get("ssh_public_key") or None,
            "server": {"host": config["SERVER_HOSTNAME"], "port": int(config["SERVER_PORT"])},
            "runtime_dir": str(config["OAR_RUNTIME_DIRECTORY"]),
            "prologue": config.get("PROLOGUE_EXEC_FILE") or None,
            "epilogue": config.get("EPILOGUE_EXEC_FILE") or None,
            "prologue_timeout": int(config.get("PROLOGUE_EPILOGUE_TIMEOUT", 60) or 60),
            "debug": bool(config.get("OAREXEC_DEBUG_MODE")),
            # a killed job gets TERM, then KILL this long after (OAR's soft kill delay)
            "kill_grace": int(config.get("JOBDEL_SOFTWALLTIME", 20) or 0),
            # the node's job resource manager (cgroups) and the suspend/resume scripts
            "job_resource_manager": str(config.get("JOB_RESOURCE_MANAGER") or "auto"),
            "cgroup_base": str(config.get("JOB_RESOURCE_MANAGER_CGROUP_BASE") or "/oar"),
            "just_after_suspend_exec_file": config.get("JUST_AFTER_SUSPEND_EXEC_FILE") or None,
            "just_before_resume_exec_file": config.get("JUST_BEFORE_RESUME_EXEC_FILE") or None,
            "suspend_resume_script_timeout": int(config.get("SUSPEND_RESUME_SCRIPT_TIMEOUT", 60) or 60),
        }
        node_setup = {key: data[key] for key in (
            "user", "job_resource_manager", "cgroup_base", "just_after_suspend_exec_file",
            "just_before_resume_exec_file", "suspend_resume_script_timeout", "job_key")}
        node_setup["cpusets"] = {host: cpusets.get(host, []) for host in nodes}
        node_setup["devices"] = {host: sorted(set(devices.get(host, []))) for host in nodes}
        node_setup["node_devices"] = {host: node_devices.get(host, []) for host in nodes}
        orders.append(LaunchOrder(job_id, head, data, job["info_type"], interactive,
                                  noop="noop" in job_types, hosts=hosts, nodes=nodes,
                                  node_setup=node_setup))
    orders.sort(key=lambda o: o.job_id)
    return orders


def claim(db: peewee.Database, config: Mapping[str, Any], now: int, limit: int | None = None,
          exclude: Sequence[int] = ()) -> list[LaunchOrder]:
    """Move up to ``limit`` toLaunch jobs to Launching (committed before returning) and
    build their launch orders."""
    sql = 'SELECT "job_id" FROM "jobs" WHERE "state" = \'toLaunch\' ORDER BY "job_id"'
    candidates = [r[0] for r in db.execute_sql(sql).fetchall() if r[0] not in set(exclude)]
    if limit is not None:
        candidates = candidates[:max(0, limit)]
    if not candidates:
        return []
    with db.atomic():
        claimed = lifecycle.set_state(db, candidates, "Launching", now, from_states=("toLaunch",))
    return build_job_data(db, config, claimed)


def launch(db: peewee.Database, config: Mapping[str, Any], connector: Any, order: LaunchOrder,
           now_fn: Callable[[], int], answer: Callable[..., Any] | None = None,
           env: Mapping[str, str] | None = None) -> str:
    """Start one claimed job; returns its new state (``Running`` or ``Error``) or the
    state it was found in when another actor moved it meanwhile."""
    job_id = order.job_id
    timeout = float(config.get("SERVER_PROLOGUE_EPILOGUE_TIMEOUT", 60) or 60)
    failure: tuple[str, str] | None = None
    bad_nodes: list[str] = []
    prepared = False
    script = config.get("SERVER_PROLOGUE_EXEC_FILE")
    problem = lifecycle.run_server_script(script, job_id, timeout, env or {})
    if problem:
        failure = (f"SERVER_PROLOGUE_{problem}", f"server prologue {script} of job {job_id}: {problem}")
    elif not order.noop:
        if not order.head:
            failure = ("BIPBIP_BAD_JOBID", f"job {job_id} has no assigned resources")
        else:
            failure, bad_nodes = _prepare_nodes(config, connector, order, timeout)
            prepared = True
        if failure is None:
            try:
                connector.start_oarexec(order.head, order.data,
                                        float(config.get("OAREXEC_START_TIMEOUT", 30) or 30))
            except Exception as exc:       # LaunchError, or the connector failing: the job fails
                failure = (_launch_event(exc),
                           f"cannot start oarexec of job {job_id} on {order.head}: {str(exc) or type(exc).__name__}")
    now = now_fn()
    if failure is None:
        moved = lifecycle.set_state(db, [job_id], "Running", now, from_states=("Launching",),
                                    values={"start_time": now})
        if moved and order.interactive and answer is not None:
            answer(order.info_type, "STARTED", order.head)
        return "Running" if moved else _state_of(db, job_id)
    log.warning("%s", failure[1])
    if prepared:
        # undo the set-up on the nodes that answered (the failed ones are Suspected)
        lifecycle.jobctl_nodes(connector, config, [h for h in order.nodes if h not in bad_nodes],
                               "clean", job_id, timeout=timeout)
    with db.atomic():
        lifecycle.add_events(db, [(job_id, failure[0], failure[1])], now,
                             hosts={0: bad_nodes or ([order.head] if order.head else [])})
        if bad_nodes:
            resources.suspect_hosts(db, bad_nodes, now, f"job {job_id}: {failure[0]}")
        moved = lifecycle.set_state(db, [job_id], "Error", now, from_states=("Launching",),
                                    values={"stop_time": now, "message": failure[1][:255]})
        if moved:
            lifecycle.resubmit_if_idempotent(db, config, job_id, now)
    if moved and answer is not None and order.info_type:
        answer(order.info_type, "ERROR", failure[1])
    return "Error" if moved else _state_of(db, job_id)


def _prepare_nodes(config: Mapping[str, Any], connector: Any, order: LaunchOrder,
                   timeout: float) -> tuple[tuple[str, str] | None, list[str]]:
    """``jobctl prepare`` on every node of the job at once; ``(failure, bad nodes)``."""
    if not order.nodes:
        return None, []
    results = lifecycle.jobctl_nodes(connector, config, order.nodes, "prepare", order.job_id, "--host", HOST,
                                     stdin=json.dumps(order.node_setup).encode(), timeout=timeout)
    bad = sorted(host for host, (ok, _, _) in results.items() if not ok)
    if not bad:
        return None, []
    why = "; ".join(f"{host}: {results[host][2]}" for host in bad)
    return ("CPUSET_ERROR", f"cannot set up job {order.job_id} on its nodes ({why})"), bad


def _launch_event(exc: Exception) -> str:
    """The event type of a failed start: oarexec's own code when it gave one."""
    if getattr(exc, "timed_out", False):
        return "LAUNCHING_OAREXEC_TIMEOUT"
    code = getattr(exc, "oarexec_code", None)
    kind, failure = lifecycle.OAREXEC_EVENTS.get(code, (None, True)) if code is not None else (None, True)
    return kind if kind and failure else "EXIT_VALUE_OAREXEC"


def _state_of(db: peewee.Database, job_id: int) -> str:
    row = db.execute_sql(f'SELECT "state" FROM "jobs" WHERE "job_id" = {backend_for(db).placeholder}',
                         [job_id]).fetchone()
    return row[0] if row else "unknown"
