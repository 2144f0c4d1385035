"""``oar-server``: OAR's Almighty automaton in one process (layer 5).

One thread runs the automaton; a bounded pool of threads runs what waits on nodes or
scripts (launches, ends of jobs, kills, suspend/resume, answers to waiting submitters);
APScheduler runs the periodic modules.  The database is the truth: every pass of the
automaton (:meth:`Server.loop`) decides from it, so a lost hint costs at most one period
of the timer (``SERVER_TIMER_PERIOD``), never a job.

One ZeroMQ ``ROUTER`` socket on ``SERVER_PORT`` receives

- hints (a ``DEALER`` sends one frame, a tag: ``Qsub``, ``Term``, ``ChState``...): they
  only wake the automaton up;
- oarexec's end reports (a ``REQ`` sends one JSON frame): recorded in the database
  (:func:`oar_appliance.job_lifecycle.record_end`), then acknowledged.  The sender retries
  until acknowledged; a repeated report changes nothing.

A pass of the automaton: NodeChangeState (requests, resource states), Leon (kills), the
``oarwalltime`` changes that can be granted (:mod:`oar_appliance.walltime_change`), a
metascheduler round when something changed or the timer says so (its reservation
decisions are answered to the waiting ``oarsub``), launches of the ``toLaunch`` jobs, and
the completion of the ``Finishing`` ones.

Recovery (:meth:`Server.initialize`, docs/execution.md): ``Launching`` jobs whose oarexec
is alive become ``Running``, the others ``Error`` (``LAUNCHING_OAREXEC_TIMEOUT``);
``Resuming`` jobs are resumed again; ``toLaunch`` and ``Finishing`` jobs are handled by the
first pass; ``Running`` jobs keep running and report their end when their oarexec retries.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Mapping

import peewee

from .. import job_lifecycle as lifecycle
from .. import launcher, leon
from ..sched import metasched

log = logging.getLogger("oar.server")

__all__ = ["Server", "PERIODIC_MODULES"]

#: seconds after a decision during which a restarted server answers the waiting ``oarsub``
#: again (an interactive job's start, an advance reservation's submission)
ANSWER_AGAIN_WINDOW = 600

#: hints whose work is done by the pass itself (NodeChangeState, Leon, walltime changes),
#: which asks for a metascheduler round only when it changed something; any other hint
#: (``Qsub``, an unknown tag) asks for a round
PASS_HINTS = frozenset({"Term", "Qdel", "ChState", "Walltime"})

#: periodic modules (docs/periodic.md): name -> how often, in seconds, from oar.conf
PERIODIC_MODULES = ("sarko", "finaud", "accounting")


class Server:
    """The automaton; ``initialize()``, then ``serve()`` (or ``loop(now)`` by hand)."""

    def __init__(self, config: Mapping[str, Any], db: peewee.Database, connector: Any = None,
                 clock: Callable[[], float] = time.time, env: Mapping[str, str] | None = None):
        self.config = config
        self.db = db
        self.clock = clock
        self.env = dict(env or {})
        self._connector = connector
        self.pool_size = max(1, int(config.get("LAUNCHER_POOL_SIZE", 10) or 10))
        self.timer_period = float(config.get("SERVER_TIMER_PERIOD", 5) or 5)
        self.pool: ThreadPoolExecutor | None = None
        self.busy: dict[tuple, Future] = {}
        self.busy_lock = threading.Lock()
        self.stopping = threading.Event()
        self.need_round = True
        self.last_round = 0.0
        self.last_fingerprint: tuple | None = None
        #: interactive job -> the start last told to its waiting oarsub
        self.predicted: dict[int, int] = {}
        #: when the timer last looked (a round, or a look that found nothing to do)
        self.last_tick = 0.0
        #: a round at least this often, whatever the database says
        self.full_round_period = max(60.0, 12 * self.timer_period)
        self.socket = None
        self.context = None
        self.scheduler = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # ------------------------------------------------------------------ plumbing

    @property
    def connector(self) -> Any:
        if self._connector is None:
            from ..execution import connector_for

            self._connector = connector_for(self.config)
        return self._connector

    def now(self) -> int:
        return int(self.clock())

    def wake(self) -> None:
        """Make the automaton run a pass soon (from any thread)."""
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _submit(self, key: tuple, fn: Callable, *args) -> bool:
        """Run ``fn(*args)`` in the pool unless a task of ``key`` is under way."""
        with self.busy_lock:
            if key in self.busy or self.pool is None:
                return False
            future = self.pool.submit(self._guarded, key, fn, *args)
            self.busy[key] = future
        return True

    def _guarded(self, key: tuple, fn: Callable, *args) -> Any:
        try:
            return fn(*args)
        except Exception:
            log.exception("task %s failed", key)
            return None
        finally:
            if not self.db.is_closed():
                try:
                    self.db.close()       # this thread's connection; the next task opens one
                except Exception:
                    pass
            with self.busy_lock:
                self.busy.pop(key, None)
            self.need_round = True
            self.wake()

    def in_flight(self, kind: str) -> set[int]:
        with self.busy_lock:
            return {k[1] for k in self.busy if k[0] == kind}

    def _answer(self, info_type: str | None, word: str, detail: str = "") -> None:
        if not info_type:
            return
        from .. import submitter

        self._submit(("answer", info_type, word, detail), submitter.answer, info_type, word, detail)

    def _notify_user(self, job_ids, tag: str, text: str) -> None:
        """``--notify`` of the jobs (judas delivers in its own threads); a failed delivery
        becomes an event of the job."""
        if not job_ids:
            return
        from .. import judas
        from ..db import bulk

        where, params = bulk.ids_clause(self.db, "job_id", list(job_ids))
        cursor = self.db.execute_sql(
            f'SELECT "job_id", "job_name", "job_user", "notify" FROM "jobs" WHERE {where} '
            'AND "notify" IS NOT NULL', params)
        names = [d[0] for d in cursor.description]
        for row in cursor.fetchall():
            job = dict(zip(names, row))
            future = judas.notify_job(self.config, job, tag, text)
            if future is not None:
                future.add_done_callback(lambda f, job_id=job["job_id"]: self._record_delivery(job_id, f))

    def _record_delivery(self, job_id: int, future: Future) -> None:
        from .. import judas

        try:
            judas.record_event(self.db, job_id, future.result(), self.now())
        except Exception:
            log.exception("notification outcome of job %s not recorded", job_id)
        finally:
            try:
                self.db.close()           # the judas thread's connection
            except Exception:
                pass

    # ------------------------------------------------------------------ life cycle

    def initialize(self, bind: bool = True) -> None:
        """Open the socket (a second server stops there), recover from a previous run, start
        the pool and the timers."""
        self.pool = ThreadPoolExecutor(max_workers=self.pool_size, thread_name_prefix="oar-task")
        if not self.config.get("DETACH_JOB_FROM_SERVER", True):
            log.warning("DETACH_JOB_FROM_SERVER=0 is not supported: jobs are detached from the server "
                        "all the same (their end comes through SERVER_PORT)")
        # the port first: a second oar-server stops there, before touching any job
        if bind:
            import zmq

            self.context = zmq.Context()
            self.socket = self.context.socket(zmq.ROUTER)
            self.socket.setsockopt(zmq.LINGER, 0)
            try:
                self.socket.bind(f"tcp://*:{int(self.config['SERVER_PORT'])}")
            except zmq.ZMQError as exc:
                from ..errors import ConflictError

                raise ConflictError(f"cannot listen on SERVER_PORT {self.config['SERVER_PORT']}: {exc} "
                                    "(is another oar-server running?)") from None
        self.recover()
        self._start_periodic()
        log.warning("oar-server started (port %s, pool of %s)", self.config["SERVER_PORT"], self.pool_size)

    def recover(self) -> None:
        """Bring the jobs left in passing states by a stopped server to a consistent state."""
        now = self.now()
        answered: set[int] = set()
        rows = self.db.execute_sql(
            'SELECT "job_id", "job_user" FROM "jobs" WHERE "state" = \'Launching\' ORDER BY "job_id"').fetchall()
        if rows:
            ids = [r[0] for r in rows]
            orders = {o.job_id: o for o in launcher.build_job_data(self.db, self.config, ids)}
            alive, dead = [], []
            for job_id, user in rows:
                order = orders.get(job_id)
                if order is not None and order.noop:
                    alive.append(job_id)
                    continue
                ok = bool(order is not None and order.head
                          and lifecycle.oarexec_alive(self.connector, self.config, order.head, job_id))
                (alive if ok else dead).append(job_id)
            with self.db.atomic():
                lifecycle.set_state(self.db, alive, "Running", now, from_states=("Launching",))
                lifecycle.add_events(self.db, [
                    (j, "LAUNCHING_OAREXEC_TIMEOUT", f"job {j} was being launched when the server stopped "
                                                     "and its oarexec is not running") for j in dead], now)
                lifecycle.set_state(self.db, dead, "Error", now, from_states=("Launching",),
                                    values={"stop_time": now})
            log.warning("recovery: %s Launching job(s) Running, %s Error", len(alive), len(dead))
            answered.update(alive + dead)
            for job_id in alive + dead:
                order = orders.get(job_id)
                if order is not None and order.info_type:
                    if job_id in alive and order.interactive:
                        self._answer(order.info_type, "STARTED", order.head)
                    elif job_id in dead:
                        self._answer(order.info_type, "ERROR", "the job could not be launched")
        for action in leon.resuming_actions(self.db, self.config):
            self._submit(("node", action.job_id, action.action), leon.run_node_action,
                         self.db, self.config, self.connector, action, self.now)
        self._answer_again(now, skip=answered)

    def _answer_again(self, now: int, skip: set[int] = frozenset()) -> None:
        """Answer again the waiting ``oarsub`` of the decisions of the last
        :data:`ANSWER_AGAIN_WINDOW` seconds: the previous run may have stopped before its
        answer went out.  A submitter that already had it has closed its socket (the
        connection is refused, nothing happens); one still listening gets it now."""
        from ..db.connection import backend_for

        since = now - ANSWER_AGAIN_WINDOW
        ph = backend_for(self.db).placeholder
        rows = self.db.execute_sql(
            'SELECT "job_id", "state", "info_type", "start_time" FROM "jobs" WHERE "info_type" IS NOT NULL '
            'AND "info_type" <> \'\' AND ((("state" = \'Running\' AND "job_type" = \'INTERACTIVE\') '
            f'AND "start_time" >= {ph}) OR ("state" = \'Waiting\' AND "reservation" = \'Scheduled\' '
            f'AND "submission_time" >= {ph})) ORDER BY "job_id"', [since, since]).fetchall()
        rows = [r for r in rows if r[0] not in skip]
        running = [r[0] for r in rows if r[1] == "Running"]
        heads = {o.job_id: o.head for o in launcher.build_job_data(self.db, self.config, running)} if running else {}
        for job_id, state, info_type, start in rows:
            if state == "Running":
                if heads.get(job_id):
                    self._answer(info_type, "STARTED", heads[job_id])
            else:
                self._answer(info_type, "GRANTED", str(start))
        if rows:
            log.warning("recovery: %s waiting submitter(s) answered again", len(rows))

    def _start_periodic(self) -> None:
        """APScheduler runs sarko, finaud and accounting (one instance each at a time; runs
        missed while one was late are coalesced); each wakes the automaton when done."""
        from apscheduler.schedulers.background import BackgroundScheduler

        from .. import finaud

        config = self.config
        frequencies = {
            "sarko": int(config.get("SARKO_FREQUENCY", 30) or 0),
            "finaud": int(config.get("FINAUD_FREQUENCY", 300) or 0),
            # accounting windows are long: a few updates per window are enough
            "accounting": max(60, int(config.get("ACCOUNTING_WINDOW", 86400) or 86400) // 24),
        }
        # without PINGCHECKER_GENERIC_COMMAND, nodes are checked through the connector (a
        # command run there), so that the lab's node names need not answer ping
        self._finaud_check = (finaud.command_check(config, connector=self.connector)
                              if frequencies["finaud"] > 0 else None)
        self.scheduler = BackgroundScheduler(daemon=True)
        for name in PERIODIC_MODULES:
            if frequencies[name] <= 0:
                log.info("periodic module %s is off", name)
                continue
            # accounting also runs at start-up: its period is long
            first = {"next_run_time": datetime.datetime.now()} if name == "accounting" else {}
            self.scheduler.add_job(self._periodic, "interval", seconds=frequencies[name], args=(name,),
                                   id=name, max_instances=1, coalesce=True, **first)
        self.scheduler.start()

    def _periodic(self, name: str) -> None:
        """Run one periodic module in the scheduler's thread, then wake the automaton."""
        from .. import accounting, finaud, sarko

        changed = False
        try:
            now = self.now()
            if name == "sarko":
                report = sarko.run(self.db, self.config, now)
                changed = report.anything
                if report.errors:
                    log.error("sarko: %s", "; ".join(report.errors))
                if report.dead_hosts:
                    self._notify_admin("Dead nodes", "Dead: " + ", ".join(report.dead_hosts))
            elif name == "finaud":
                report = finaud.run(self.db, self.config, now, self._finaud_check)
                changed = bool(report.suspected_resources or report.revived_resources)
                if report.suspected_hosts:
                    log.warning("finaud: suspected %s", ", ".join(report.suspected_hosts))
                    self._notify_admin("Suspected nodes", "Suspected: " + ", ".join(report.suspected_hosts))
            else:
                accounting.update(self.db, self.config, now)
        except Exception:
            log.exception("periodic module %s failed", name)
            changed = True
        finally:
            try:
                self.db.close()
            except Exception:
                pass
        # the pass after it runs Leon (sarko's kill requests); a round only if it changed something
        if changed:
            self.need_round = True
        self.wake()

    def _notify_admin(self, subject: str, body: str) -> None:
        from .. import judas

        judas.notify_admin(self.config, subject, body)

    def shutdown(self) -> None:
        """Stop taking messages, let the tasks under way end, release everything."""
        self.stopping.set()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.socket is not None:
            self.socket.close(0)
            self.socket = None
        if self.context is not None:
            self.context.term()
            self.context = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if not self.db.is_closed():
            self.db.close()
        log.warning("oar-server stopped")

    # ------------------------------------------------------------------ messages

    def handle_frames(self, frames: list[bytes]) -> list[bytes] | None:
        """One message from the socket; the reply frames for a REQ, None for a hint."""
        identity, rest = frames[0], frames[1:]
        if len(rest) >= 2 and rest[0] == b"":
            reply = self.handle_request(rest[1])
            return None if reply is None else [identity, b"", json.dumps(reply).encode()]
        tag = rest[0].decode(errors="replace") if rest else ""
        log.debug("hint %s", tag)
        if tag not in PASS_HINTS:
            self.need_round = True
        return None

    def handle_request(self, payload: bytes) -> dict[str, Any] | None:
        """A fact sent by REQ (oarexec's end report); the answer once it is committed, or
        None (no answer, the sender retries) when it could not be recorded now."""
        try:
            message = json.loads(payload.decode())
            if not isinstance(message, dict) or message.get("kind") != "oarexec_end":
                log.warning("message refused: not an end report")
                return {"ack": False, "error": "unknown message"}
            report = lifecycle.EndReport.from_message(message)
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("message refused: %s", exc)
            return {"ack": False, "error": str(exc)}
        try:
            ack, error = lifecycle.record_end(self.db, report, self.now())
        except peewee.DatabaseError as exc:
            # no answer: the sender retries (an "ack": false would make it give up)
            log.error("end report of job %s not recorded: %s", report.job_id, exc)
            return None
        if not ack:
            # a forged or stray report: the job is left as it is
            log.warning("end report of job %s from %s refused: %s", report.job_id, report.host or "?", error)
            return {"ack": False, "error": error}
        self.need_round = True
        return {"ack": True}

    def _drain(self, timeout_ms: int) -> None:
        import zmq

        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        events = dict(poller.poll(timeout_ms))
        if self._wake_r in events:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                reply = self.handle_frames(frames)
            except Exception:
                # a message must never stop the server: the sender of a fact retries
                log.exception("message %r not handled", frames[1:][:2])
                continue
            if reply is not None:
                self.socket.send_multipart(reply)

    def serve(self) -> None:
        """Run the automaton until :meth:`shutdown` is asked (``stopping`` set)."""
        while not self.stopping.is_set():
            try:
                self.loop(self.now())
            except peewee.DatabaseError as exc:
                log.error("automaton pass failed (database): %s", exc)
                time.sleep(0.5)
            except Exception:
                log.exception("automaton pass failed")
                time.sleep(0.5)
            if self.stopping.is_set():
                break
            wait = 0 if self.need_round else self.timer_period - (time.monotonic() - self.last_tick)
            try:
                self._drain(max(0, int(wait * 1000)))
            except Exception:
                log.exception("reading the socket failed")
                time.sleep(0.5)

    # ------------------------------------------------------------------ the automaton

    def loop(self, now: int) -> None:
        """One pass of the automaton (see the module docstring)."""
        db, config = self.db, self.config
        changes = leon.node_change_state(db, config, now)
        for action in changes.actions:
            self._node_action(action)
        killing = leon.run(db, config, now)
        for action in killing.actions:
            self._node_action(action)
        for info_type, word, detail in killing.answers:
            self._answer(info_type, word, detail)
        if killing.errors:
            self._notify_user(killing.errors, "ERROR", "job deleted")
        if changes.changed or killing.changed:
            self.need_round = True
        if self._walltime_changes(now):
            self.need_round = True
        if self.need_round or self._round_due(now):
            self.need_round = False
            self.last_round = self.last_tick = time.monotonic()
            # taken before the round: what the round writes itself makes one more round,
            # what others write meanwhile is never missed
            self.last_fingerprint = self._fingerprint()
            self._round(now)
        self._launch(now)
        self._finish()

    def _round_due(self, now: int) -> bool:
        """Whether the timer asks for a round: ``SERVER_TIMER_PERIOD`` has passed and the
        database changed since the last round (a lost hint), or a planned start has come;
        and in any case every :attr:`full_round_period` seconds."""
        if time.monotonic() - self.last_tick < self.timer_period:
            return False
        self.last_tick = time.monotonic()
        elapsed = self.last_tick - self.last_round
        if elapsed >= self.full_round_period or self.last_fingerprint is None:
            return True
        fingerprint = self._fingerprint()
        if fingerprint[:-1] != self.last_fingerprint[:-1]:
            return True
        next_start = fingerprint[-1]
        return next_start is not None and next_start <= now

    def _fingerprint(self) -> tuple:
        """What changes when anything the metascheduler reads changes (one query): new jobs,
        job states (every change is a ``job_state_logs`` row), events (requests), resources
        and their logged changes, active queues; and the first planned start still to come."""
        row = self.db.execute_sql(
            'SELECT (SELECT MAX("job_id") FROM "jobs"), (SELECT MAX("job_state_log_id") FROM "job_state_logs"), '
            '(SELECT MAX("event_id") FROM "event_logs"), (SELECT MAX("resource_id") FROM "resources"), '
            '(SELECT MAX("resource_log_id") FROM "resource_logs"), '
            '(SELECT COUNT(*) FROM "queues" WHERE "state" = \'Active\'), '
            '(SELECT SUM("priority") FROM "queues" WHERE "state" = \'Active\'), '
            '(SELECT MIN("start_time") FROM "gantt_jobs_predictions" WHERE "moldable_job_id" <> 0)').fetchone()
        return tuple(row)

    def _walltime_changes(self, now: int) -> bool:
        """Apply the pending ``oarwalltime`` requests that can be granted; whether any was."""
        from .. import walltime_change
        from ..job_control import format_signed
        from ..lang.request import format_duration

        applied = walltime_change.apply_pending(self.db, self.config, now)
        for change in applied:
            log.info("job %s: walltime %s, now %s s (%s s pending)", change.job_id,
                     format_signed(change.granted), change.walltime, change.pending)
            self._notify_user([change.job_id], "INFO",
                              f"walltime of job {change.job_id} changed by {format_signed(change.granted)}: "
                              f"now {format_duration(change.walltime)}")
        return bool(applied)

    def _node_action(self, action: leon.NodeAction) -> None:
        self._submit(("node", action.job_id, action.action), leon.run_node_action,
                     self.db, self.config, self.connector, action, self.now)

    def _round(self, now: int) -> None:
        log.debug("metascheduler round started")
        began = time.monotonic()
        report = metasched.run_round(self.db, self.config, now)
        log.debug("metascheduler round done in %.3f s: %s placed, %s to launch", time.monotonic() - began,
                  len(report.placed), len(report.to_launch))
        if report.besteffort_kills:
            # the kill requests of the round: Leon sends them at once
            for action in leon.run(self.db, self.config, now).actions:
                self._node_action(action)
        self._predict(report)
        decided = report.accepted_reservations + report.rejected_reservations
        if decided:
            from ..db import bulk

            where, params = bulk.ids_clause(self.db, "job_id", decided)
            rows = {r[0]: r[1:] for r in self.db.execute_sql(
                f'SELECT "job_id", "info_type", "start_time" FROM "jobs" WHERE {where}', params).fetchall()}
            for job_id in report.accepted_reservations:
                info_type, start = rows.get(job_id, (None, 0))
                self._answer(info_type, "GRANTED", str(start))
            for job_id in report.rejected_reservations:
                info_type, _ = rows.get(job_id, (None, 0))
                self._answer(info_type, "REJECTED", report.messages.get(job_id, "not schedulable"))

    def _predict(self, report) -> None:
        """Tell the waiting ``oarsub -I`` of the jobs placed in the future this round when
        they are planned to start (``PREDICTION <start>``), each time that changes."""
        launched = set(report.to_launch)
        placed = [j for j in report.placed if j not in launched]
        if not placed:
            self.predicted.clear()
            return
        from ..db import bulk

        rows = []
        step = bulk.MAX_PARAMETERS - 16
        for first in range(0, len(placed), step):
            where, params = bulk.ids_clause(self.db, "job_id", placed[first:first + step])
            rows += self.db.execute_sql(
                'SELECT j."job_id", j."info_type", p."start_time" FROM "jobs" j '
                'JOIN "moldable_job_descriptions" m ON m."moldable_job_id" = j."job_id" '
                'JOIN "gantt_jobs_predictions" p ON p."moldable_job_id" = m."moldable_id" '
                f'WHERE {where.replace(chr(34) + "job_id", "j." + chr(34) + "job_id")} '
                'AND j."job_type" = \'INTERACTIVE\' AND j."state" = \'Waiting\' '
                'AND j."info_type" IS NOT NULL AND j."info_type" <> \'\'', params).fetchall()
        seen = {}
        for job_id, info_type, start in rows:
            seen[job_id] = start
            if self.predicted.get(job_id) != start:
                self._answer(info_type, "PREDICTION", str(start))
        self.predicted = seen

    def _launch(self, now: int) -> None:
        running = self.in_flight("launch")
        free = self.pool_size - len(running)
        if free <= 0:
            return
        for order in launcher.claim(self.db, self.config, now, limit=free, exclude=running):
            self._submit(("launch", order.job_id), self._launch_one, order)

    def _launch_one(self, order: launcher.LaunchOrder) -> None:
        from .. import submitter

        state = launcher.launch(self.db, self.config, self.connector, order, self.now,
                                answer=submitter.answer, env=self.env)
        log.info("job %s: %s", order.job_id, state)
        if state == "Running":
            self._notify_user([order.job_id], "RUNNING", f"job {order.job_id} started on {order.head}")
        elif state == "Error":
            self._notify_user([order.job_id], "ERROR", f"job {order.job_id} could not be launched")

    def _finish(self) -> None:
        ending = self.in_flight("finish")
        for job_id in lifecycle.finishing_jobs(self.db):
            if job_id not in ending:
                self._submit(("finish", job_id), self._finish_one, job_id)

    def _finish_one(self, job_id: int) -> None:
        state = lifecycle.complete_end(self.db, self.config, self.connector, job_id, self.now, env=self.env)
        if state:
            log.info("job %s: %s", job_id, state)
            self._notify_user([job_id], "END" if state == "Terminated" else "ERROR",
                              f"job {job_id} ended: {state}")
