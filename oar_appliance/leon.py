"""Leon (kills) and NodeChangeState (requests and resource states) (layer 4).

Both are passes of the server's automaton: they decide from the database, commit, and
return the node actions to carry out (sending a kill, suspending...), which the server
runs in its pool of threads with :func:`run_node_action`.  Nothing here waits on a node.

Leon, over ``frag_jobs`` (REFERENCE.md, "Server and nodes"):

- ``LEON`` of a job that never started (Waiting, Hold, toLaunch, toAckReservation,
  toError): the job goes to ``Error`` at once, the request to ``FRAGGED``; a waiting
  ``oarsub`` is told ``ERROR``;
- ``LEON`` of a running job (Running, Suspended, Resuming): ``TIMER_ARMED``, a
  ``SEND_KILL_JOB`` event, and a ``kill`` node action (oarexec kills the job and reports
  with code 3); a ``Launching`` job is left until its launch ends;
- ``TIMER_ARMED`` for more than ``JOBDEL_WALLTIME`` seconds: ``LEON_EXTERMINATE``;
- ``LEON_EXTERMINATE``: an ``EXTERMINATE_JOB`` event, the job to ``Finishing`` without
  exit status and its resources to ``Suspected`` (what happened there is unknown); its
  end is then completed as any other (cleaning, ``Error``);
- a job that ended: ``FRAGGED`` (also done when its end is recorded).

NodeChangeState, over the requests of ``event_logs`` with ``to_check = 'YES'``
(:mod:`oar_appliance.job_control`), each marked checked in the transaction that handles it:

- ``HOLD_WAITING_JOB``: Waiting -> Hold; ``RESUME_JOB``: Hold -> Waiting;
- ``HOLD_RUNNING_JOB``: a ``suspend`` node action, then Running -> Suspended;
- ``RESUME_JOB`` of a Suspended job: Resuming, a ``resume`` node action, then Running;
- ``CHECKPOINT`` / ``USER_SIGNAL``: a node action, then ``CHECKPOINT_SUCCESS`` /
  ``CHECKPOINT_ERROR`` (signals: ``USER_SIGNAL_SUCCESS`` / ``USER_SIGNAL_ERROR``);
- resource state changes: :func:`oar_appliance.resources.apply_pending_states` (jobs on a
  resource leaving ``Alive`` get a kill request, handled by Leon).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import peewee

from . import job_lifecycle as lifecycle
from . import resources
from .db.connection import backend_for

log = logging.getLogger(__name__)

__all__ = ["NodeAction", "LeonReport", "run", "node_change_state", "run_node_action", "NOT_STARTED_STATES"]

#: a kill of a job in one of these states needs no node
NOT_STARTED_STATES = ("Waiting", "Hold", "toLaunch", "toAckReservation", "toError")
KILLABLE_STATES = ("Running", "Suspended", "Resuming")


@dataclass
class NodeAction:
    """A jobctl action on a job's head node (``host``; ``kill``, ``suspend`` and ``resume``
    also on its other nodes, ``others``, all at once), and what to record once it is done."""

    job_id: int
    action: str                   # kill, suspend, resume, checkpoint, signal
    host: str
    user: str
    args: tuple[str, ...] = ()
    event_id: int | None = None
    #: kill of a suspended job: its processes are continued first, so that TERM reaches them
    resume_first: bool = False
    others: tuple[str, ...] = ()

    @property
    def hosts(self) -> list[str]:
        return [self.host, *self.others]


#: actions done on every node of a job (checkpoint and signal go to oarexec only)
ALL_NODES_ACTIONS = ("kill", "suspend", "resume")


def _actions(db: peewee.Database, config: Mapping[str, Any],
             wanted: Sequence[tuple[int, str, str, tuple[str, ...], int | None, bool]]) -> list[NodeAction]:
    """NodeActions of ``(job id, action, user, args, event id, resume first)``, each on the
    job's head node and, for :data:`ALL_NODES_ACTIONS`, its other nodes (one query)."""
    hosts = lifecycle.execution_hosts(db, config, [w[0] for w in wanted]) if wanted else {}
    actions = []
    for job_id, action, user, args, event_id, resume_first in wanted:
        found = hosts.get(job_id)
        if found:
            others = tuple(found[1:]) if action in ALL_NODES_ACTIONS else ()
            actions.append(NodeAction(job_id, action, found[0], user or "", args, event_id, resume_first, others))
    return actions


@dataclass
class LeonReport:
    errors: list[int] = field(default_factory=list)          # never started: Error at once
    armed: list[int] = field(default_factory=list)
    exterminated: list[int] = field(default_factory=list)
    fragged: list[int] = field(default_factory=list)
    actions: list[NodeAction] = field(default_factory=list)
    #: (info_type, word, detail) for waiting submitters
    answers: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.errors or self.armed or self.exterminated or self.fragged)


def _ph(db: peewee.Database) -> str:
    return backend_for(db).placeholder


def _set_frag(db: peewee.Database, job_ids: Sequence[int], state: str, from_states: Sequence[str],
              date: int | None = None) -> None:
    if not job_ids:
        return
    ph = _ph(db)
    from .db import bulk

    where, params = bulk.ids_clause(db, "frag_id_job", job_ids)
    extra, extra_params = ("", [])
    if date is not None:
        extra, extra_params = (f', "frag_date" = {ph}', [date])
    db.execute_sql(f'UPDATE "frag_jobs" SET "frag_state" = {ph}{extra} WHERE {where} '
                   f'AND "frag_state" IN ({", ".join([ph] * len(from_states))})',
                   [state, *extra_params, *params, *from_states])


def _resources_of(db: peewee.Database, job_ids: Sequence[int]) -> list[int]:
    if not job_ids:
        return []
    from .db import bulk

    where, params = bulk.ids_clause(db, "job_id", job_ids)
    return sorted({r[0] for r in db.execute_sql(
        'SELECT a."resource_id" FROM "assigned_resources" a JOIN "jobs" j '
        'ON j."assigned_moldable_job" = a."moldable_job_id" WHERE j.' + where, params).fetchall()})


def run(db: peewee.Database, config: Mapping[str, Any], now: int) -> LeonReport:
    """One Leon pass; see the module docstring."""
    report = LeonReport()
    rows = db.execute_sql(
        'SELECT f."frag_id_job", f."frag_state", f."frag_date", j."state", j."info_type", j."job_user" '
        'FROM "frag_jobs" f LEFT JOIN "jobs" j ON j."job_id" = f."frag_id_job" '
        'WHERE f."frag_state" <> \'FRAGGED\' ORDER BY f."frag_id_job"').fetchall()
    if not rows:
        return report
    jobdel_walltime = int(config.get("JOBDEL_WALLTIME", 300) or 0)
    not_started, to_arm, to_exterminate, ended = [], [], [], []
    users: dict[int, str] = {}
    suspended: set[int] = set()
    for job_id, frag_state, frag_date, state, info_type, user in rows:
        users[job_id] = user or ""
        if state == "Suspended":
            suspended.add(job_id)
        if state is None or state in lifecycle.ENDED_STATES:
            ended.append(job_id)
        elif frag_state == "LEON" and state in NOT_STARTED_STATES:
            not_started.append((job_id, info_type))
        elif frag_state == "LEON" and state in KILLABLE_STATES:
            to_arm.append(job_id)
        elif frag_state == "TIMER_ARMED" and state in KILLABLE_STATES and now >= (frag_date or 0) + jobdel_walltime:
            to_exterminate.append(job_id)
        elif frag_state == "LEON_EXTERMINATE" and state in KILLABLE_STATES + ("Launching",):
            to_exterminate.append(job_id)
        # Launching: wait for the launch to end; Finishing: FRAGGED when the end is recorded
    with db.atomic():
        if ended:
            _set_frag(db, ended, "FRAGGED", ("LEON", "TIMER_ARMED", "LEON_EXTERMINATE"))
            report.fragged = ended
        if not_started:
            ids = [j for j, _ in not_started]
            moved = lifecycle.set_state(db, ids, "Error", now, from_states=NOT_STARTED_STATES,
                                        values={"stop_time": now})
            _set_frag(db, moved, "FRAGGED", ("LEON",))
            report.errors = moved
            for job_id, info_type in not_started:
                if job_id in moved and info_type:
                    report.answers.append((info_type, "ERROR", f"job {job_id} was deleted"))
        if to_arm:
            _set_frag(db, to_arm, "TIMER_ARMED", ("LEON",))
            lifecycle.add_events(db, [(j, "SEND_KILL_JOB", f"Leon sent the kill to job {j}") for j in to_arm], now)
            report.armed = to_arm
        if to_exterminate:
            _set_frag(db, to_exterminate, "LEON_EXTERMINATE", ("TIMER_ARMED", "LEON_EXTERMINATE"))
            moved = lifecycle.set_state(db, to_exterminate, "Finishing", now,
                                        from_states=KILLABLE_STATES + ("Launching",), values={"exit_code": None})
            lifecycle.add_events(db, [(j, "EXTERMINATE_JOB",
                                       f"job {j} did not end {jobdel_walltime} s after its kill: exterminated")
                                      for j in moved], now)
            report.exterminated = moved
            # what happened on the nodes is unknown: they are suspected (the admin or finaud
            # brings them back)
            suspects = _resources_of(db, moved)
            if suspects:
                resources.request_state(db, suspects, "Suspected")
    report.actions = _actions(db, config, [(j, "kill", users[j], (), None, j in suspended) for j in to_arm])
    return report


# ----------------------------------------------------------------------------- NodeChangeState

@dataclass
class ChangeReport:
    held: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    resuming: list[int] = field(default_factory=list)
    resource_changes: dict[int, str] = field(default_factory=dict)
    jobs_to_kill: list[int] = field(default_factory=list)
    actions: list[NodeAction] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.held or self.released or self.resuming or self.resource_changes
                    or self.jobs_to_kill or self.actions)


def node_change_state(db: peewee.Database, config: Mapping[str, Any], now: int) -> ChangeReport:
    """One NodeChangeState pass; see the module docstring."""
    from .job_control import requested_signal

    report = ChangeReport()
    with db.atomic():
        events = db.execute_sql(
            'SELECT e."event_id", e."type", e."job_id", e."description", j."state", j."job_user" '
            'FROM "event_logs" e LEFT JOIN "jobs" j ON j."job_id" = e."job_id" '
            'WHERE e."to_check" = \'YES\' ORDER BY e."event_id"').fetchall()
        checked: list[int] = []
        hold, release, resume, running_actions = [], [], [], []
        for event_id, kind, job_id, description, state, user in events:
            checked.append(event_id)
            if kind == "HOLD_WAITING_JOB" and state == "Waiting":
                hold.append(job_id)
            elif kind == "RESUME_JOB" and state == "Hold":
                release.append(job_id)
            elif kind == "RESUME_JOB" and state == "Suspended":
                resume.append((job_id, user))
            elif kind == "HOLD_RUNNING_JOB" and state == "Running":
                running_actions.append((job_id, user, "suspend", (), event_id))
            elif kind == "CHECKPOINT" and state == "Running":
                running_actions.append((job_id, user, "checkpoint", (), event_id))
            elif kind == "USER_SIGNAL" and state == "Running":
                name = requested_signal(description) or "SIGUSR2"
                running_actions.append((job_id, user, "signal", (name,), event_id))
            elif kind in ("HOLD_WAITING_JOB", "RESUME_JOB", "HOLD_RUNNING_JOB", "CHECKPOINT", "USER_SIGNAL"):
                log.info("event %s %s of job %s ignored: the job is %s", event_id, kind, job_id, state)
            else:
                # to_check events of other modules (finaud's PING_CHECKER_NODE_SUSPECTED...)
                # are left to them
                checked.pop()
        if checked:
            from .db import bulk

            bulk.update_by_ids(db, "event_logs", "event_id", checked, {"to_check": "NO"})
        report.held = lifecycle.set_state(db, hold, "Hold", now, from_states=("Waiting",))
        report.released = lifecycle.set_state(db, release, "Waiting", now, from_states=("Hold",))
        report.resuming = lifecycle.set_state(db, [j for j, _ in resume], "Resuming", now,
                                              from_states=("Suspended",))
        pending = resources.apply_pending_states(db, now)
        report.resource_changes = pending["changed"]
        report.jobs_to_kill = pending["jobs_to_kill"]
    users = dict(resume)
    report.actions = _actions(db, config, [(j, action, user, args, event_id, False)
                                           for j, user, action, args, event_id in running_actions]
                              + [(j, "resume", users.get(j) or "", (), None, False) for j in report.resuming])
    return report


def resuming_actions(db: peewee.Database, config: Mapping[str, Any]) -> list[NodeAction]:
    """Resume actions for the jobs left ``Resuming`` (after a restart of the server)."""
    rows = db.execute_sql('SELECT "job_id", "job_user" FROM "jobs" WHERE "state" = \'Resuming\'').fetchall()
    return _actions(db, config, [(job_id, "resume", user or "", (), None, False) for job_id, user in rows])


#: exit codes of a node action that say the node itself failed (not answering in time, ssh)
UNREACHABLE_CODES = (None, 255)


def _on_all_nodes(connector: Any, config: Mapping[str, Any], action: NodeAction,
                  timeout: float) -> tuple[bool, str, list[str]]:
    """``action`` on every node of the job at once: done when the head node did it and
    each other node did it or has no process of the job (exit code 6: no oarexec runs
    there, and a job without a cgroup may have nothing there yet).  Also returns the
    nodes that did not answer.  A suspend that failed somewhere is undone where it was
    done: a job is never left half frozen."""
    results = lifecycle.jobctl_nodes(connector, config, action.hosts, action.action, action.job_id,
                                     *action.args, timeout=timeout)
    failed = [(host, why) for host, (ok, code, why) in results.items()
              if not ok and (host == action.host or code != 6)]
    if failed and action.action == "suspend":
        frozen = [host for host, (ok, _, _) in results.items() if ok]
        lifecycle.jobctl_nodes(connector, config, frozen, "resume", action.job_id, timeout=timeout)
    unreachable = sorted(host for host, (ok, code, _) in results.items() if not ok and code in UNREACHABLE_CODES)
    return not failed, "; ".join(f"{host}: {why}" for host, why in failed), unreachable


def run_node_action(db: peewee.Database, config: Mapping[str, Any], connector: Any, action: NodeAction,
                    now_fn: Callable[[], int]) -> bool:
    """Carry out one node action and record its outcome; True when the nodes did it.

    A node of the job that did not answer (ssh failure, timeout) becomes Suspected, which
    asks for the job's kill: the job ends instead of staying half suspended or half killed."""
    timeout = float(config.get("SERVER_PROLOGUE_EPILOGUE_TIMEOUT", 60) or 60)
    if action.resume_first:
        lifecycle.jobctl_nodes(connector, config, action.hosts, "resume", action.job_id, timeout=timeout)
    unreachable: list[str] = []
    if action.action in ALL_NODES_ACTIONS and action.others:
        ok, why, unreachable = _on_all_nodes(connector, config, action, timeout)
    else:
        ok, code, why = lifecycle.jobctl(connector, config, action.host, action.action, action.job_id,
                                         *action.args, timeout=timeout)
        if not ok and code in UNREACHABLE_CODES and action.action in ALL_NODES_ACTIONS:
            unreachable = [action.host]
    now = now_fn()
    if not ok:
        log.warning("%s of job %s on %s failed: %s", action.action, action.job_id, action.host, why)
    with db.atomic():
        if unreachable:
            resources.suspect_hosts(db, unreachable, now, f"{action.action} of job {action.job_id}: "
                                                          f"{', '.join(unreachable)} did not answer")
        if action.action == "suspend" and ok:
            lifecycle.set_state(db, [action.job_id], "Suspended", now, from_states=("Running",),
                                values={"suspended": "YES"})
        elif action.action == "resume":
            if ok:
                lifecycle.set_state(db, [action.job_id], "Running", now, from_states=("Resuming",),
                                    values={"suspended": "NO"})
            else:
                # the job could not be woken up: back to Suspended, the admin decides
                lifecycle.set_state(db, [action.job_id], "Suspended", now, from_states=("Resuming",))
                lifecycle.add_events(db, [(action.job_id, "RESUME_JOB_ERROR", why)], now)
        elif action.action == "checkpoint":
            lifecycle.add_events(db, [(action.job_id, "CHECKPOINT_SUCCESS" if ok else "CHECKPOINT_ERROR",
                                       f"checkpoint of job {action.job_id}" + ("" if ok else f": {why}"))], now)
        elif action.action == "signal":
            lifecycle.add_events(db, [(action.job_id, "USER_SIGNAL_SUCCESS" if ok else "USER_SIGNAL_ERROR",
                                       f"signal {' '.join(action.args)} to job {action.job_id}"
                                       + ("" if ok else f": {why}"))], now)
        elif action.action == "suspend" and not ok:
            lifecycle.add_events(db, [(action.job_id, "HOLD_RUNNING_JOB_ERROR", why)], now)
    return ok
