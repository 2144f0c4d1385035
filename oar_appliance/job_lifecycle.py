"""Job state changes and the end of a job (layer 4).

Every state change goes through :func:`set_state`: one guarded ``UPDATE ... RETURNING``
per batch (only the jobs still in the expected states move, so two actors can never move
a job twice) and, for each moved job, the open ``job_state_logs`` interval is closed and a
new one opened.

The end of a job has two steps, so that the fact is recorded at once and the slow work
(nodes, scripts) is done after:

1. :func:`record_end` (oarexec's report, checked against the job's challenge): the job goes
   to ``Finishing`` with ``exit_code`` = the user command's raw wait status (as OAR stores
   it: ``exit 3`` gives 768), and an event of the spec's types for an OAR-side failure
   (``PROLOGUE_ERROR``, ``WORKING_DIRECTORY``, ``OUTPUT_FILES``...).  A repeated report of a
   job already ``Finishing``, ``Terminated`` or ``Error`` changes nothing.
2. :func:`complete_end` (any time later, also after a restart of the server): clean every
   node of the job at once (``jobctl clean`` through the connector's fan-out; a node that
   fails is Suspected with a ``CPUSET_CLEAN_ERROR`` event), run the server epilogue,
   then ``Terminated`` or ``Error`` with ``stop_time``.  The final state is derived from
   the database only (:func:`final_state`): ``Error`` when the job was killed (a
   ``frag_jobs`` row), has no exit status (never ran, exterminated) or has an event of
   :data:`ERROR_EVENTS`; ``Terminated`` otherwise.  In the same transaction the kill
   request becomes ``FRAGGED`` and an ``idempotent`` job is resubmitted when OAR says so
   (exit code 99; or ``besteffort`` killed for a normal job; or checkpointed and exit 0).
"""

from __future__ import annotations

import logging
import os
import signal as signal_module
import subprocess
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import peewee

from .db import bulk
from .db.connection import backend_for

log = logging.getLogger(__name__)

__all__ = [
    "ACTIVE_STATES", "RUNNING_STATES", "ENDED_STATES", "ERROR_EVENTS", "OAREXEC_EVENTS",
    "set_state", "add_events", "job_hosts", "EndReport", "record_end", "final_state",
    "complete_end", "finishing_jobs", "jobctl", "jobctl_nodes", "execution_hosts", "oarexec_alive",
    "run_server_script", "resubmit_if_idempotent", "signal_name", "NODE_FAILURE_EVENTS",
]

#: states in which a job holds resources
ACTIVE_STATES = ("toLaunch", "Launching", "Running", "Suspended", "Resuming", "Finishing")
#: states in which an oarexec may be alive for the job
RUNNING_STATES = ("Launching", "Running", "Suspended", "Resuming")
ENDED_STATES = ("Terminated", "Error")

#: oarexec exit code -> (event type, OAR-side failure?) (REFERENCE.md, "Server and nodes")
OAREXEC_EVENTS: dict[int, tuple[str | None, bool]] = {
    0: (None, False),
    1: ("PROLOGUE_ERROR", True),
    2: ("EPILOGUE_ERROR", False),   # the user command ran: Terminated, with the event
    3: (None, True),                # killed (Leon): the kill request makes it an Error
    5: ("CAN_NOT_WRITE_NODE_FILE", True),
    6: ("CAN_NOT_WRITE_PID_FILE", True),
    7: ("USER_SHELL", True),
    8: ("CANNOT_CREATE_TMP_DIRECTORY", True),
    10: ("WORKING_DIRECTORY", True),
    12: ("WORKING_DIRECTORY", True),
    20: ("OUTPUT_FILES", True),
    22: ("OUTPUT_FILES", True),
    30: ("SSH_TRANSFER_TIMEOUT", True),
    40: (None, False),              # checkpointed
    41: ("CHECKPOINT_ERROR", False),
    42: (None, False),              # user signal sent
}
#: events that make the end of a job an ``Error``
ERROR_EVENTS = tuple(sorted({e for e, failure in OAREXEC_EVENTS.values() if e and failure} | {
    "EXIT_VALUE_OAREXEC", "EXTERMINATE_JOB", "LAUNCHING_OAREXEC_TIMEOUT",
    "SERVER_PROLOGUE_TIMEOUT", "SERVER_PROLOGUE_EXIT_CODE_ERROR", "SERVER_PROLOGUE_ERROR",
    "BIPBIP_BAD_JOBID", "RESERVATION_NO_NODE", "CPUSET_ERROR", "CPUSET_CLEAN_ERROR",
}))
#: events saying a node of the job failed: an ``idempotent`` job is submitted again
NODE_FAILURE_EVENTS = frozenset({"CPUSET_ERROR", "CPUSET_CLEAN_ERROR"})
#: exit code of an idempotent job that asks to be submitted again
RESUBMIT_EXIT_CODE = 99

DESCRIPTION_MAX = 255


def _ph(db: peewee.Database) -> str:
    return backend_for(db).placeholder


def _chunks(ids: Sequence[int], size: int = bulk.MAX_PARAMETERS - 16) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


# ----------------------------------------------------------------------------- states

def set_state(db: peewee.Database, job_ids: Sequence[int], state: str, now: int, *,
              from_states: Sequence[str], values: Mapping[str, Any] | None = None) -> list[int]:
    """Move the jobs still in ``from_states`` to ``state``; log each change; return them.

    ``values`` are other columns set in the same statement (``stop_time``...).  Works inside
    the caller's transaction (opens one if there is none).
    """
    if not job_ids:
        return []
    ph = _ph(db)
    assignments = ['"state" = ' + ph] + [f'"{name}" = {ph}' for name in (values or {})]
    moved: list[int] = []
    with db.atomic():
        for chunk in _chunks(list(job_ids)):
            where, params = bulk.ids_clause(db, "job_id", chunk)
            sql = (f'UPDATE "jobs" SET {", ".join(assignments)} WHERE {where} '
                   f'AND "state" IN ({", ".join([ph] * len(from_states))}) RETURNING "job_id"')
            rows = db.execute_sql(sql, [state, *(values or {}).values(), *params, *from_states]).fetchall()
            moved.extend(r[0] for r in rows)
        log_states(db, moved, state, now)
    return sorted(moved)


def log_states(db: peewee.Database, job_ids: Sequence[int], state: str, now: int) -> None:
    """Close the open ``job_state_logs`` interval of each job and open one in ``state``."""
    if not job_ids:
        return
    ph = _ph(db)
    for chunk in _chunks(list(job_ids)):
        where, params = bulk.ids_clause(db, "job_id", chunk)
        db.execute_sql(f'UPDATE "job_state_logs" SET "date_stop" = {ph} '
                       f'WHERE "date_stop" = 0 AND {where}', [now, *params])
    bulk.insert_rows(db, "job_state_logs", [
        {"job_id": j, "job_state": state, "date_start": now, "date_stop": 0} for j in job_ids])


def add_events(db: peewee.Database, events: Sequence[tuple[int, str, str]], now: int,
               hosts: Mapping[int, Sequence[str]] | None = None) -> None:
    """Insert ``(job_id, type, description)`` events (already handled: ``to_check`` NO).

    ``hosts`` (index in ``events`` -> hostnames) fills ``event_log_hostnames``.
    """
    if not events:
        return
    rows = [{"type": kind, "job_id": job_id, "date": now,
             "description": (text or "")[:DESCRIPTION_MAX], "to_check": "NO"}
            for job_id, kind, text in events]
    if not hosts:
        bulk.insert_rows(db, "event_logs", rows)
        return
    ids = bulk.insert_returning(db, "event_logs", rows, "event_id")
    bulk.insert_rows(db, "event_log_hostnames", [
        {"event_id": ids[i], "hostname": h} for i, names in hosts.items() for h in sorted(set(names))])


def job_hosts(db: peewee.Database, job_ids: Sequence[int]) -> dict[int, list[str]]:
    """Job id -> sorted distinct ``network_address`` of its assigned resources (one query)."""
    result: dict[int, list[str]] = {}
    for chunk in _chunks(list(job_ids)):
        where, params = bulk.ids_clause(db, "job_id", chunk)
        where = where.replace('"job_id"', 'j."job_id"')
        rows = db.execute_sql(
            'SELECT DISTINCT j."job_id", r."network_address" FROM "jobs" j '
            'JOIN "assigned_resources" a ON a."moldable_job_id" = j."assigned_moldable_job" '
            'JOIN "resources" r ON r."resource_id" = a."resource_id" '
            f'WHERE {where}', params).fetchall()
        for job_id, host in rows:
            result.setdefault(job_id, []).append(host)
    return {j: sorted(set(h)) for j, h in result.items()}


# ----------------------------------------------------------------------------- nodes

def signal_name(number: int | None, default: str = "SIGUSR2") -> str:
    try:
        return signal_module.Signals(int(number)).name if number else default
    except ValueError:
        return default


def jobctl(connector: Any, config: Mapping[str, Any], host: str, action: str, job_id: int,
           *extra: str, timeout: float = 30.0) -> tuple[bool, int | None, str]:
    """Run ``jobctl action`` (kill, checkpoint, signal SIG, suspend, resume, clean) for a
    job on ``host`` through the connector; ``(ok, exit code, what went wrong)``; never
    raises (a connector failure is a failed node action, exit code None)."""
    try:
        result = connector.jobctl(host, action, job_id, str(config["OAR_RUNTIME_DIRECTORY"]), *extra,
                                  timeout=timeout)
    except Exception as exc:
        return False, None, f"{type(exc).__name__}: {exc}"
    if result.rc == 0:
        return True, 0, ""
    err = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else str(result.stderr)
    why = "timed out" if result.rc is None else f"exit code {result.rc}"
    return False, result.rc, f"{why}: {err.strip()[-200:]}"


def jobctl_nodes(connector: Any, config: Mapping[str, Any], hosts: Sequence[str], action: str, job_id: int,
                 *extra: str, stdin: bytes | None = None,
                 timeout: float = 30.0) -> dict[str, tuple[bool, int | None, str]]:
    """:func:`jobctl` on every one of ``hosts`` at once (the connector's fan-out; an
    ``extra`` argument ``%h`` is each node's name); host -> ``(ok, exit code, why)``."""
    hosts = sorted(set(hosts))
    if not hosts:
        return {}
    runtime_dir = str(config["OAR_RUNTIME_DIRECTORY"])
    try:
        results = connector.jobctl_all(hosts, action, job_id, runtime_dir, *extra, stdin=stdin, timeout=timeout)
    except Exception as exc:  # the fan-out failing is every node's failure
        return {host: (False, None, f"{type(exc).__name__}: {exc}") for host in hosts}
    outcome = {}
    for host in hosts:
        result = results.get(host)
        if result is None:
            outcome[host] = (False, None, "no answer")
        elif result.rc == 0:
            outcome[host] = (True, 0, "")
        else:
            err = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else str(result.stderr)
            why = "timed out" if result.rc is None else f"exit code {result.rc}"
            outcome[host] = (False, result.rc, f"{why}: {err.strip()[-200:]}")
    return outcome


def execution_hosts(db: peewee.Database, config: Mapping[str, Any], job_ids: Sequence[int]) -> dict[int, list[str]]:
    """Job id -> the hosts the server acts on: ``[head, *other nodes]``.  A ``deploy`` or
    ``cosystem`` job has only ``[DEPLOY_HOSTNAME]`` / ``[COSYSTEM_HOSTNAME]``, where its
    oarexec runs (nothing is done on its nodes)."""
    hosts = job_hosts(db, job_ids)
    special: dict[int, str] = {}
    for chunk in _chunks(list(job_ids)):
        where, params = bulk.ids_clause(db, "job_id", chunk)
        for job_id, kind in db.execute_sql(f'SELECT "job_id", "type" FROM "job_types" WHERE {where} '
                                           'AND "type_index" = \'CURRENT\'', params).fetchall():
            name = kind.split("=", 1)[0]
            if name == "deploy":
                special[job_id] = config.get("DEPLOY_HOSTNAME") or ""
            elif name == "cosystem" and special.get(job_id) is None:
                special[job_id] = config.get("COSYSTEM_HOSTNAME") or ""
    result = {}
    for job_id in job_ids:
        nodes = hosts.get(job_id, [])
        if special.get(job_id):
            result[job_id] = [special[job_id]]
        elif nodes:
            result[job_id] = nodes
    return result


def oarexec_alive(connector: Any, config: Mapping[str, Any], host: str, job_id: int) -> bool:
    """Whether the job's oarexec runs on ``host``.

    Probed with ``jobctl status`` (exit code 6 when there is none), which changes nothing."""
    ok, code, _ = jobctl(connector, config, host, "status", job_id, timeout=30.0)
    return ok


def run_server_script(path: str | None, job_id: int, timeout: float, env: Mapping[str, str]) -> str | None:
    """Run the server prologue/epilogue ``path JOB_ID``; None if fine, else the event suffix
    (``TIMEOUT``, ``EXIT_CODE_ERROR``, ``ERROR`` when it cannot be run)."""
    if not path:
        return None
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return "ERROR"
    try:
        done = subprocess.run([path, str(job_id)], env={**env, "OAR_JOB_ID": str(job_id)},
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return "TIMEOUT"
    except OSError:
        return "ERROR"
    return None if done.returncode == 0 else "EXIT_CODE_ERROR"


# ----------------------------------------------------------------------------- end reports

@dataclass(frozen=True)
class EndReport:
    """oarexec's end-of-job report (docs/execution.md, "Messages to the server")."""

    job_id: int
    challenge: str
    oarexec_code: int
    user_status: int | None
    host: str = ""

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> "EndReport":
        """From the decoded JSON frame; ValueError when a field is missing or malformed."""
        try:
            status = message.get("user_status")
            return cls(int(message["job_id"]), str(message["challenge"]), int(message["oarexec_code"]),
                       None if status is None else int(status), str(message.get("host") or ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed end report: {exc}") from None


def record_end(db: peewee.Database, report: EndReport, now: int) -> tuple[bool, str | None]:
    """Record oarexec's report once; ``(ack, error)`` for the sender.

    A wrong challenge is refused (and logged as a ``BIPBIP_CHALLENGE`` event); a job that
    already ended (or is Finishing) is acknowledged again without any change.
    """
    ph = _ph(db)
    with db.atomic():
        row = db.execute_sql(
            'SELECT j."state", c."challenge" FROM "jobs" j LEFT JOIN "challenges" c '
            f'ON c."job_id" = j."job_id" WHERE j."job_id" = {ph}', [report.job_id]).fetchone()
        if row is None:
            return False, f"job {report.job_id} does not exist"
        state, challenge = row
        if not challenge or not _same(challenge, report.challenge):
            add_events(db, [(report.job_id, "BIPBIP_CHALLENGE",
                             f"end report from {report.host or 'unknown host'} with a bad challenge")], now)
            return False, "bad challenge"
        if state not in RUNNING_STATES:
            log.info("end report of job %s in state %s: already recorded", report.job_id, state)
            return True, None
        if state == "Launching":
            # oarexec ended before the launcher saw it start: it did run
            set_state(db, [report.job_id], "Running", now, from_states=("Launching",))
        moved = set_state(db, [report.job_id], "Finishing", now, from_states=("Running", "Suspended", "Resuming"),
                          values={"exit_code": report.user_status})
        if not moved:
            return True, None
        kind, _ = OAREXEC_EVENTS.get(report.oarexec_code, ("EXIT_VALUE_OAREXEC", True))
        if report.oarexec_code == 0 and report.user_status is None:
            kind = "EXIT_VALUE_OAREXEC"
        if kind:
            add_events(db, [(report.job_id, kind,
                             f"oarexec of job {report.job_id} on {report.host or '?'} ended with code "
                             f"{report.oarexec_code}")], now,
                       hosts={0: [report.host]} if report.host else None)
    return True, None


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def finishing_jobs(db: peewee.Database) -> list[int]:
    return [r[0] for r in db.execute_sql(
        'SELECT "job_id" FROM "jobs" WHERE "state" = \'Finishing\' ORDER BY "job_id"').fetchall()]


def final_state(db: peewee.Database, job_id: int) -> str:
    """``Terminated`` or ``Error`` for a Finishing job, from the database only."""
    ph = _ph(db)
    exit_code = db.execute_sql(f'SELECT "exit_code" FROM "jobs" WHERE "job_id" = {ph}', [job_id]).fetchone()
    if exit_code is None or exit_code[0] is None:
        return "Error"
    if db.execute_sql(f'SELECT 1 FROM "frag_jobs" WHERE "frag_id_job" = {ph}', [job_id]).fetchone():
        return "Error"
    marks = ", ".join([ph] * len(ERROR_EVENTS))
    if db.execute_sql(f'SELECT 1 FROM "event_logs" WHERE "job_id" = {ph} AND "type" IN ({marks})',
                      [job_id, *ERROR_EVENTS]).fetchone():
        return "Error"
    return "Terminated"


def complete_end(db: peewee.Database, config: Mapping[str, Any], connector: Any, job_id: int,
                 now_fn, env: Mapping[str, str] | None = None) -> str | None:
    """Clean the nodes, run the server epilogue, end the job; its final state (None if the
    job was not Finishing any more).  Safe to run again after a crash at any point."""
    ph = _ph(db)
    row = db.execute_sql(f'SELECT "state" FROM "jobs" WHERE "job_id" = {ph}', [job_id]).fetchone()
    if row is None or row[0] != "Finishing":
        return None
    hosts = execution_hosts(db, config, [job_id]).get(job_id, [])
    events: list[tuple[int, str, str]] = []
    event_hosts: dict[int, list[str]] = {}
    timeout = float(config.get("SERVER_PROLOGUE_EPILOGUE_TIMEOUT", 60) or 60)
    failed = []
    for host, (ok, _, why) in jobctl_nodes(connector, config, hosts, "clean", job_id, timeout=timeout).items():
        if not ok:
            failed.append(host)
            event_hosts[len(events)] = [host]
            events.append((job_id, "CPUSET_CLEAN_ERROR", f"cleaning job {job_id} on {host}: {why}"))
    failure = run_server_script(config.get("SERVER_EPILOGUE_EXEC_FILE"), job_id, timeout, env or {})
    if failure:
        events.append((job_id, f"SERVER_EPILOGUE_{failure}",
                       f"server epilogue {config.get('SERVER_EPILOGUE_EXEC_FILE')} of job {job_id}: {failure}"))
    now = now_fn()
    with db.atomic():
        add_events(db, events, now, hosts=event_hosts)
        if failed:
            from . import resources

            resources.suspect_hosts(db, failed, now, f"job {job_id}: CPUSET_CLEAN_ERROR")
        state = final_state(db, job_id)
        if not set_state(db, [job_id], state, now, from_states=("Finishing",), values={"stop_time": now}):
            return None
        db.execute_sql(f'UPDATE "frag_jobs" SET "frag_state" = \'FRAGGED\' WHERE "frag_id_job" = {ph}', [job_id])
        new_id = resubmit_if_idempotent(db, config, job_id, now)
    if new_id:
        log.info("job %s resubmitted as job %s", job_id, new_id)
    return state


def resubmit_if_idempotent(db: peewee.Database, config: Mapping[str, Any], job_id: int, now: int) -> int | None:
    """Submit an ended idempotent job again when OAR says so (also when a node of the job
    failed: :data:`NODE_FAILURE_EVENTS`); the new job id or None."""
    ph = _ph(db)
    types = {r[0] for r in db.execute_sql(
        f'SELECT "type" FROM "job_types" WHERE "job_id" = {ph} AND "type_index" = \'CURRENT\'', [job_id])}
    if "idempotent" not in types:
        return None
    exit_code, user = db.execute_sql(
        f'SELECT "exit_code", "job_user" FROM "jobs" WHERE "job_id" = {ph}', [job_id]).fetchone()
    kinds = {r[0] for r in db.execute_sql(f'SELECT "type" FROM "event_logs" WHERE "job_id" = {ph}', [job_id])}
    user_code = (exit_code >> 8) & 0xFF if exit_code is not None and exit_code & 0x7F == 0 else None
    reason = None
    if user_code == RESUBMIT_EXIT_CODE:
        reason = f"exit code {RESUBMIT_EXIT_CODE}"
    elif "besteffort" in types and "BESTEFFORT_KILL" in kinds:
        reason = "besteffort job killed for a normal job"
    elif "CHECKPOINT" in kinds and user_code == 0:
        reason = "checkpointed and ended with exit code 0"
    elif kinds & NODE_FAILURE_EVENTS:
        reason = "a node of the job failed"
    if reason is None:
        return None
    from . import submission
    from .errors import OarError

    try:
        with db.atomic():
            request = submission.request_from_job(db, job_id, user)
            new_id = submission.submit(db, request, config, now).job_ids[0]
            db.execute_sql(f'UPDATE "job_dependencies" SET "job_id_required" = {ph} '
                           f'WHERE "job_id_required" = {ph} AND "job_id" <> {ph}', [new_id, job_id, new_id])
            add_events(db, [(job_id, "RESUBMIT_JOB_AUTOMATICALLY",
                             f"idempotent job {job_id} ({reason}) resubmitted as job {new_id}")], now)
    except OarError as exc:
        add_events(db, [(job_id, "RESUBMIT_JOB_AUTOMATICALLY",
                         f"idempotent job {job_id} ({reason}) could not be resubmitted: {exc.message}")], now)
        return None
    return new_id
