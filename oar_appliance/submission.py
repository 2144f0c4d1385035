"""Submitting a job: admission rules, checks, and one transaction that writes it.

:func:`submit` takes a :class:`~oar_appliance.job_request.JobRequest` built by
``oarsub``, runs the admission rules, checks everything (queue, types, names,
notification, reservation date, dependencies, and that every moldable alternative fits
in the cluster's resources ignoring time), then writes the job — or every job of an
array — with all its rows in one transaction.  Any error leaves the database untouched.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import peewee

from . import admission
from .db import bulk, resource_table
from .db.models import File, Job, Queue
from .errors import ConflictError, NotFoundError, PermissionDeniedError, UsageError
from .job_request import JobRequest
from .lang.request import storage_rows

log = logging.getLogger(__name__)

JOB_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
NOTIFY = re.compile(r"^(\[[A-Z,]*\])?(mail:\S+|exec:.+)$")
NOTIFY_TAGS = {"RUNNING", "END", "ERROR", "INFO", "SUSPENDED", "RESUMING"}
#: -t values: name -> how its value is checked (None: no value allowed)
SIMPLE_TYPES = {"besteffort", "deploy", "cosystem", "idempotent", "noop", "no_quotas", "checkpoint"}
VALUE_TYPES = {"container": r"[A-Za-z0-9_.-]*", "inner": r"[A-Za-z0-9_.-]+",
               "placeholder": r"[A-Za-z0-9_.-]+", "allow": r"[A-Za-z0-9_.-]+",
               "timesharing": r"(user|\*),(name|\*)"}
TOKEN_TYPE = re.compile(r"^token:[A-Za-z0-9_-]+=[0-9]+$")
MAX_ARRAY = 100_000


@dataclass
class Submitted:
    """What ``oarsub`` prints: the job ids (one per array element) and the array id."""

    job_ids: list[int]
    array_id: int
    #: the private job key, when one was generated or imported (for ``-e``)
    private_key: str | None = None


# ----------------------------------------------------------------------------- checks

def check_types(types: Sequence[str]) -> None:
    for job_type in types:
        name, sep, value = job_type.partition("=")
        if TOKEN_TYPE.match(job_type):
            continue
        if name in SIMPLE_TYPES and not sep:
            continue
        if name in VALUE_TYPES:
            if name in ("container",) and not sep:
                continue
            if name == "timesharing" and not sep:
                continue
            if sep and re.fullmatch(VALUE_TYPES[name], value):
                continue
            raise UsageError(f"invalid value in job type {job_type!r}")
        raise UsageError(
            f"unknown job type {job_type!r} (known: besteffort, timesharing[=user|*,name|*], deploy, "
            "cosystem, idempotent, container[=name], inner=ID, placeholder=NAME, allow=NAME, noop, "
            "token:NAME=N, no_quotas, checkpoint)"
        )


def check_request_fields(job: JobRequest, now: int) -> None:
    """Checks that need no database."""
    if job.job_type not in ("PASSIVE", "INTERACTIVE"):
        raise UsageError(f"unknown job type {job.job_type!r}")
    if job.job_type == "PASSIVE" and not job.command.strip() and job.reservation is None:
        raise UsageError("no command given (use -I for an interactive job)")
    if job.name is not None and not JOB_NAME.match(job.name):
        raise UsageError(f"invalid job name {job.name!r}: only letters, digits, '_', '.' and '-'")
    if job.project is not None and (len(job.project) > 255 or not job.project.isprintable()):
        raise UsageError("invalid project name")
    if job.notify is not None:
        match = NOTIFY.match(job.notify)
        if not match:
            raise UsageError(f"invalid notification {job.notify!r}: use mail:ADDRESS or exec:COMMAND, "
                             "optionally after [TAG,...]")
        tags = set(filter(None, (match.group(1) or "[]")[1:-1].split(",")))
        if tags - NOTIFY_TAGS:
            raise UsageError(f"unknown notification tag {sorted(tags - NOTIFY_TAGS)[0]!r} "
                             f"(known: {', '.join(sorted(NOTIFY_TAGS))})")
    check_types(job.types)
    if job.job_type == "INTERACTIVE" and job.reservation is not None:
        raise UsageError("an interactive job (-I) cannot be an advance reservation (-r)")
    if job.reservation is not None and any(t.partition("=")[0] == "inner" for t in job.types):
        # containers may be reservations, their inner jobs may not (the spec)
        raise UsageError("an inner job (-t inner=...) cannot be an advance reservation (-r)")
    if job.array != 1 and job.job_type == "INTERACTIVE":
        raise UsageError("an array job cannot be interactive")
    if job.array != 1 and job.reservation is not None:
        raise UsageError("an array job cannot be an advance reservation")
    if not 1 <= job.array <= MAX_ARRAY:
        raise UsageError(f"an array has 1 to {MAX_ARRAY} jobs")
    if job.reservation is not None and job.reservation < now:
        raise UsageError("the reservation date is in the past")
    if not os.path.isabs(job.directory):
        raise UsageError(f"the launching directory must be absolute, got {job.directory!r}")
    if job.checkpoint < 0:
        raise UsageError("--checkpoint takes a positive number of seconds")
    if not 1 <= job.signal <= 64:
        raise UsageError(f"invalid signal number {job.signal}")
    if not job.moldables:
        raise UsageError("no resource request")
    for i, moldable in enumerate(job.moldables, 1):
        if moldable.walltime is None or moldable.walltime <= 0:
            raise UsageError(f"resource request #{i} has no walltime")


def _check_queue(job: JobRequest) -> None:
    queue = Queue.get_or_none(Queue.queue_name == job.queue)
    if queue is None:
        raise NotFoundError(f"queue {job.queue!r} does not exist")
    if queue.state != "Active":
        raise ConflictError(f"queue {job.queue!r} is not active")


def _check_dependencies(job: JobRequest) -> None:
    if not job.anterior:
        return
    found = {j.job_id for j in Job.select(Job.job_id).where(Job.job_id.in_(job.anterior))}
    missing = sorted(set(job.anterior) - found)
    if missing:
        raise NotFoundError(f"job {missing[0]} (given with -a) does not exist")


def check_resources(db: peewee.Database, job: JobRequest, labels: Sequence[str]) -> None:
    """Every alternative must fit in the cluster's non-Dead resources, ignoring time."""
    from .sched.hierarchy import ResourcePool, fit_request

    columns = resource_table.columns(db)
    for moldable in job.moldables:
        for group in moldable.groups:
            for level in group.levels:
                if level.label not in columns:
                    raise UsageError(f"resource label {level.label!r} is not a property of the resources")
    texts = {job.properties} | {g.constraint for m in job.moldables for g in m.groups}
    trees = _parse_expressions([t for t in texts if t], columns)
    used_labels = [label for label in labels if label in columns]
    needed = {"resource_id", "state", "type", *used_labels}
    for tree in trees.values():
        needed |= tree.columns
    rows = resource_table.select(db, only=[c for c in columns if c in needed])
    pool = ResourcePool(rows, used_labels)
    usable = pool.bits_where(lambda r: r["state"] != "Dead")
    bits_of: dict[str | None, int] = {}

    def constraint_bits(group_text: str | None) -> int:
        if group_text not in bits_of:
            parsed = [trees[t] for t in (job.properties, group_text) if t]
            predicates = [p.predicate for p in parsed]
            if not any("type" in p.columns for p in parsed):
                # as in OAR, a group asks for resources of type "default" unless it names a type
                predicates.append(lambda r: r["type"] == "default")
            bits_of[group_text] = pool.bits_where(lambda r: all(p(r) for p in predicates))
        return bits_of[group_text]

    for i, moldable in enumerate(job.moldables, 1):
        bits, reason = fit_request(pool, moldable, usable, usable, constraint_bits)
        if bits is None:
            where = f" #{i}" if len(job.moldables) > 1 else ""
            raise ConflictError(f"resource request{where} cannot be satisfied by this cluster: {reason}")


@dataclass(frozen=True)
class _Parsed:
    columns: frozenset[str]
    predicate: Any


def _parse_expressions(texts: Sequence[str], columns: Mapping[str, str]) -> dict[str, _Parsed]:
    """Parse and check each expression once; lark is imported only when there is one."""
    if not texts:
        return {}
    from .lang import properties as property_language

    parsed = {}
    for text in texts:
        tree = property_language.parse(text)
        property_language.validate(tree, columns, what="property")
        parsed[text] = _Parsed(property_language.columns_of(tree),
                               property_language.compile_predicate(tree, columns))
    return parsed


# ----------------------------------------------------------------------------- job key

def generate_job_key() -> tuple[str, str]:
    """A fresh ed25519 key pair (private, public) in OpenSSH format."""
    with tempfile.TemporaryDirectory(prefix="oar-key-") as top:
        path = os.path.join(top, "key")
        try:
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "oar job key", "-f", path],
                           check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ConflictError(f"cannot generate a job key with ssh-keygen: {exc}") from None
        with open(path) as f:
            private = f.read()
        with open(path + ".pub") as f:
            public = f.read().strip()
    return private, public


def public_key_of(private: str) -> str:
    """The public key of an imported private key (refuses what is not a key)."""
    with tempfile.TemporaryDirectory(prefix="oar-key-") as top:
        path = os.path.join(top, "key")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(private if private.endswith("\n") else private + "\n")
        done = subprocess.run(["ssh-keygen", "-y", "-f", path], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise UsageError("the imported job key is not a valid unencrypted ssh private key")
    return done.stdout.strip()


# ----------------------------------------------------------------------------- writing

def _job_rows(job: JobRequest, now: int, info_type: str | None = None) -> list[dict[str, Any]]:
    commands = [job.command] * job.array
    if job.array_params is not None:
        commands = [f"{job.command} {params}".strip() for params in job.array_params]
    stdout = job.stdout if job.stdout is not None else "OAR.%jobid%.stdout"
    stderr = job.stderr if job.stderr is not None else "OAR.%jobid%.stderr"
    return [{
        "array_index": index, "initial_request": job.initial_request,
        "job_name": job.name, "job_type": job.job_type, "info_type": info_type,
        "state": "Hold" if job.hold else "Waiting",
        "reservation": "toSchedule" if job.reservation is not None else "None",
        "message": "", "job_user": job.user, "project": job.project or "",
        "command": command, "queue_name": job.queue, "properties": job.properties or "",
        "launching_directory": job.directory, "submission_time": now,
        "start_time": job.reservation or 0, "stop_time": 0, "accounted": "NO",
        "notify": job.notify, "checkpoint": job.checkpoint, "checkpoint_signal": job.signal,
        "stdout_file": stdout, "stderr_file": stderr,
        "resubmit_job_id": job.resubmit or 0, "suspended": "NO", "job_env": None,
        "array_id": 0,
    } for index, command in enumerate(commands, 1)]


def _write(db: peewee.Database, job: JobRequest, now: int, key_pair: tuple[str, str] | None,
           info_type: str | None = None) -> list[int]:
    job_ids = bulk.insert_returning(db, "jobs", _job_rows(job, now, info_type), "job_id")
    linked: dict[str, Any] = {"array_id": job_ids[0]}
    if job.stagein is not None:
        linked["file_id"] = File.insert(
            location=os.path.abspath(job.stagein), md5sum=job.stagein_md5sum, method="stagein",
            size=os.path.getsize(job.stagein) if os.path.isfile(job.stagein) else 0,
        ).execute()
    bulk.update_by_ids(db, "jobs", "job_id", job_ids, linked)

    moldable_rows = [{"moldable_job_id": jid, "moldable_walltime": m.walltime}
                     for jid in job_ids for m in job.moldables]
    moldable_ids = bulk.insert_returning(db, "moldable_job_descriptions", moldable_rows, "moldable_id")
    per_moldable = [storage_rows(m) for m in job.moldables]
    group_rows, level_lists = [], []
    for index, moldable_id in enumerate(moldable_ids):
        for constraint, levels in per_moldable[index % len(job.moldables)]:
            group_rows.append({"res_group_moldable_id": moldable_id, "res_group_property": constraint})
            level_lists.append(levels)
    group_ids = bulk.insert_returning(db, "job_resource_groups", group_rows, "res_group_id")
    bulk.insert_rows(db, "job_resource_descriptions", [
        {"res_job_group_id": gid, "res_job_resource_type": label, "res_job_value": value, "res_job_order": order}
        for gid, levels in zip(group_ids, level_lists) for label, value, order in levels
    ])
    bulk.insert_rows(db, "job_types", [{"job_id": jid, "type": t} for jid in job_ids for t in job.types])
    bulk.insert_rows(db, "job_dependencies", [
        {"job_id": jid, "job_id_required": required} for jid in job_ids for required in job.anterior
    ])
    bulk.insert_rows(db, "job_state_logs", [
        {"job_id": jid, "job_state": "Hold" if job.hold else "Waiting", "date_start": now, "date_stop": 0}
        for jid in job_ids
    ])
    private, public = key_pair if key_pair else (None, None)
    bulk.insert_rows(db, "challenges", [
        {"job_id": jid, "challenge": secrets.token_urlsafe(32), "ssh_private_key": private,
         "ssh_public_key": public}
        for jid in job_ids
    ])
    return job_ids


def request_from_job(db: peewee.Database, job_id: int, user: str) -> JobRequest:
    """The parameters of an existing job, to submit it again (``oarsub --resubmit``)."""
    from .accounts import ADMIN_USERS
    from .db.models import JobDependency, JobResourceDescription, JobResourceGroup, JobType, MoldableJobDescription
    from .lang.request import from_storage

    old = Job.get_or_none(Job.job_id == job_id)
    if old is None:
        raise NotFoundError(f"job {job_id} does not exist")
    if old.job_user != user and user not in ADMIN_USERS:
        raise PermissionDeniedError(f"job {job_id} is not yours: only its owner, oar or root may resubmit it")
    if old.job_type == "INTERACTIVE" or old.reservation != "None":
        raise ConflictError(f"job {job_id} is interactive or a reservation: it cannot be resubmitted")
    moldables = list(MoldableJobDescription.select().where(MoldableJobDescription.moldable_job_id == job_id)
                     .order_by(MoldableJobDescription.moldable_id))
    groups = list(JobResourceGroup.select().where(
        JobResourceGroup.res_group_moldable_id.in_([m.moldable_id for m in moldables]))
        .order_by(JobResourceGroup.res_group_id))
    levels: dict[int, list[tuple[str, int, int]]] = {}
    for d in JobResourceDescription.select().where(
            JobResourceDescription.res_job_group_id.in_([g.res_group_id for g in groups])):
        levels.setdefault(d.res_job_group_id, []).append(
            (d.res_job_resource_type, d.res_job_value, d.res_job_order))
    requests = [
        from_storage(m.moldable_walltime, [
            (g.res_group_property, levels.get(g.res_group_id, []))
            for g in groups if g.res_group_moldable_id == m.moldable_id
        ])
        for m in moldables
    ]
    return JobRequest(
        user=user, command=old.command or "", job_type=old.job_type, queue=old.queue_name,
        moldables=requests, properties=old.properties or None,
        types=[t.type for t in JobType.select().where(JobType.job_id == job_id).order_by(JobType.job_type_id)],
        name=old.job_name, project=old.project or None, directory=old.launching_directory or "/",
        stdout=old.stdout_file, stderr=old.stderr_file, notify=old.notify,
        anterior=[d.job_id_required for d in JobDependency.select().where(JobDependency.job_id == job_id)],
        checkpoint=old.checkpoint, signal=old.checkpoint_signal or 12, resubmit=job_id,
        initial_request=old.initial_request or "",
    )


def submit(db: peewee.Database, job: JobRequest, config: Mapping[str, Any], now: int,
           info_type: str | None = None) -> Submitted:
    """Run the admission rules on ``job``, check it, and write it; all or nothing.

    ``info_type`` is the ``host:port`` where a waiting ``oarsub`` (``-I``, ``-r``) listens
    for the server's answer: written with the job, so the server never sees the job
    without the address to answer.
    """
    admission.run_rules(admission.load_rules(db), job, config, now)
    if job.queue is None:
        job.queue = "default"
    check_request_fields(job, now)
    key_pair = None
    force_key = bool(config.get("OARSUB_FORCE_JOB_KEY"))
    if job.import_job_key is not None:
        key_pair = (job.import_job_key, public_key_of(job.import_job_key))
    elif job.use_job_key or force_key:
        key_pair = generate_job_key()
    with db.atomic():
        _check_queue(job)
        _check_dependencies(job)
        check_resources(db, job, config["HIERARCHY_LABELS"])
        job_ids = _write(db, job, now, key_pair, info_type)
    return Submitted(job_ids=job_ids, array_id=job_ids[0], private_key=key_pair[0] if key_pair else None)
