"""Queue administration: the rules behind ``oarnotify``'s queue options."""

from __future__ import annotations

import re

import peewee

from .db.models import Job, Queue
from .errors import ConflictError, NotFoundError, UsageError

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
UNFINISHED_JOB_STATES = (
    "Waiting", "Hold", "toLaunch", "toError", "toAckReservation", "Launching",
    "Running", "Suspended", "Resuming", "Finishing",
)


def list_queues(db: peewee.Database) -> list[dict]:
    """Every queue, highest priority first."""
    query = Queue.select().order_by(Queue.priority.desc(), Queue.queue_name)
    return [
        {"queue_name": q.queue_name, "priority": q.priority,
         "scheduler_policy": q.scheduler_policy, "state": q.state}
        for q in query
    ]


def _get(name: str) -> Queue:
    queue = Queue.get_or_none(Queue.queue_name == name)
    if queue is None:
        raise NotFoundError(f"queue {name!r} does not exist")
    return queue


def parse_queue_spec(text: str) -> tuple[str, int, str]:
    """``"name,priority,policy"`` (policy optional) -> its three parts, checked."""
    parts = [p.strip().strip('"').strip("'") for p in text.split(",")]
    if len(parts) not in (2, 3) or not parts[0]:
        raise UsageError(f"expected NAME,PRIORITY[,POLICY], got {text!r}")
    name, priority = parts[0], parts[1]
    policy = parts[2] if len(parts) == 3 and parts[2] else "oar_sched_gantt_with_timesharing"
    if not QUEUE_NAME.match(name):
        raise UsageError(f"invalid queue name {name!r}: letters, digits, '_', '.', '-' only")
    try:
        prio = int(priority)
    except ValueError:
        raise UsageError(f"queue priority must be an integer, got {priority!r}") from None
    if prio < 0:
        raise UsageError("queue priority must not be negative")
    if not re.match(r"^[A-Za-z0-9_./-]{1,100}$", policy):
        raise UsageError(f"invalid scheduler policy {policy!r}")
    return name, prio, policy


def add_queue(db: peewee.Database, name: str, priority: int, policy: str) -> None:
    if Queue.get_or_none(Queue.queue_name == name) is not None:
        raise ConflictError(f"queue {name!r} already exists")
    Queue.create(queue_name=name, priority=priority, scheduler_policy=policy, state="Active")


def remove_queue(db: peewee.Database, name: str) -> None:
    _get(name)
    waiting = (Job.select(Job.job_id)
               .where((Job.queue_name == name) & Job.state.in_(UNFINISHED_JOB_STATES))
               .first())
    if waiting is not None:
        raise ConflictError(f"queue {name!r} still has unfinished jobs (job {waiting.job_id})")
    Queue.delete().where(Queue.queue_name == name).execute()


def set_active(db: peewee.Database, name: str | None, active: bool) -> None:
    """Activate or deactivate one queue, or every queue when ``name`` is None."""
    query = Queue.update(state="Active" if active else "notActive")
    if name is not None:
        _get(name)
        query = query.where(Queue.queue_name == name)
    query.execute()
