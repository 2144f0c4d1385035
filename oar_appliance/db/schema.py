"""Creating, upgrading, resetting and checking the OAR schema.

The schema is built by an ordered list of :class:`Migration`; the ``schema`` table records
the last one applied.  ``create`` applies them all to an empty database, ``upgrade``
applies those not yet applied, each in its own transaction, so an interrupted upgrade
leaves the database at the last complete version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

import peewee

from ..errors import ConflictError, DatabaseError
from .connection import Backend, backend_for
from .models import ALL_MODELS, SECRET_TABLES, AdmissionRule, Queue, Schema

log = logging.getLogger(__name__)

#: properties every new database has (name -> kind), as the OAR documentation lists them
#: (switch, cpu, cpuset) plus those the default HIERARCHY_LABELS and node files use
DEFAULT_PROPERTIES = {
    "host": "str",
    "switch": "str",
    "cpu": "int",
    "core": "int",
    "cpuset": "int",
    "mem": "int",
}

#: queues of a new database: name -> (priority, scheduler policy)
DEFAULT_QUEUES = {
    "admin": (10, "oar_sched_gantt_with_timesharing"),
    "default": (2, "oar_sched_gantt_with_timesharing"),
    "besteffort": (0, "oar_sched_gantt_with_timesharing"),
}


#: admission rules of a new database: OAR's documented examples, in Python (the names
#: they use are described in oar_appliance/admission.py)
DEFAULT_ADMISSION_RULES: tuple[str, ...] = (
    '''# Default queue: "default"
if job.queue is None:
    job.queue = "besteffort" if job.has_type("besteffort") else "default"
''',
    '''# Only oar and root may submit to the admin queue
if job.queue == "admin" and job.user not in ("oar", "root"):
    raise AdmissionError("only oar and root may submit jobs to the admin queue")
''',
    '''# Besteffort jobs go to the besteffort queue, on resources that accept them
if job.queue == "besteffort" and not job.has_type("besteffort"):
    job.types.append("besteffort")
if job.has_type("besteffort"):
    job.queue = "besteffort"
    job.add_property("besteffort = 'YES'")
''',
    '''# Interactive jobs may not ask for more than 12 hours
limit = duration("12:00:00")
if job.job_type == "INTERACTIVE" and job.cap_walltime(limit):
    info(f"walltime too big for an interactive job: set to {limit} s")
''',
    '''# Default walltime: DEFAULT_JOB_WALLTIME (2 hours)
job.set_default_walltime(config["DEFAULT_JOB_WALLTIME"])
''',
)


@dataclass(frozen=True)
class Migration:
    """One step of the schema's history."""

    version: int
    description: str
    apply: Callable[[peewee.Database, Backend], None]


def _initial_schema(db: peewee.Database, backend: Backend) -> None:
    db.create_tables(ALL_MODELS, safe=False)
    for name, kind in DEFAULT_PROPERTIES.items():
        backend.add_column(db, "resources", name, kind)
    Queue.insert_many(
        [
            {"queue_name": name, "priority": prio, "scheduler_policy": policy, "state": "Active"}
            for name, (prio, policy) in DEFAULT_QUEUES.items()
        ]
    ).execute()
    AdmissionRule.insert_many(
        [{"rule": code, "priority": i, "enabled": "YES"} for i, code in enumerate(DEFAULT_ADMISSION_RULES, 1)]
    ).execute()


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial OAR schema, default properties, queues and admission rules", _initial_schema),
)


def latest_version(migrations: Iterable[Migration] = MIGRATIONS) -> int:
    return max(m.version for m in migrations)


def current_version(db: peewee.Database) -> int | None:
    """The version recorded in the database, or None when it holds no OAR schema."""
    if "schema" not in db.get_tables():
        return None
    row = Schema.select(Schema.version).order_by(Schema.version.desc()).first()
    return row.version if row else 0


def require_schema(db: peewee.Database, migrations: Iterable[Migration] = MIGRATIONS) -> None:
    """Fail with a clear message unless the database holds the current schema."""
    version = current_version(db)
    if version is None:
        raise DatabaseError("the database holds no OAR schema (create it with: oar-database --create)")
    latest = latest_version(migrations)
    if version < latest:
        raise DatabaseError(
            f"the database schema is at version {version}, this OAR needs {latest} "
            "(run: oar-database --upgrade)"
        )
    if version > latest:
        raise DatabaseError(
            f"the database schema (version {version}) is newer than this OAR ({latest})"
        )


def _record_version(version: int, description: str) -> None:
    Schema.delete().execute()
    Schema.insert(version=version, name=description).execute()


def create(
    db: peewee.Database,
    readonly_account: tuple[str, str] | None = None,
    migrations: Iterable[Migration] = MIGRATIONS,
) -> int:
    """Create the whole schema in an empty database; return the version reached."""
    if current_version(db) is not None or "resources" in db.get_tables():
        raise ConflictError("the database already holds an OAR schema (use --upgrade or --reset)")
    backend = backend_for(db)
    steps = sorted(migrations, key=lambda m: m.version)
    with db.atomic():
        for step in steps:
            step.apply(db, backend)
        _record_version(steps[-1].version, steps[-1].description)
        if readonly_account:
            backend.create_readonly_account(db, *readonly_account, SECRET_TABLES)
    log.info("created OAR schema version %d on %s", steps[-1].version, backend.describe())
    return steps[-1].version


def upgrade(db: peewee.Database, migrations: Iterable[Migration] = MIGRATIONS) -> list[Migration]:
    """Apply the migrations the database has not had yet; return them."""
    version = current_version(db)
    if version is None:
        raise DatabaseError("the database holds no OAR schema (create it with: oar-database --create)")
    backend = backend_for(db)
    pending = sorted((m for m in migrations if m.version > version), key=lambda m: m.version)
    for step in pending:
        with db.atomic():
            step.apply(db, backend)
            _record_version(step.version, step.description)
        log.info("upgraded OAR schema to version %d: %s", step.version, step.description)
    return pending


def drop_all(db: peewee.Database, readonly_login: str | None = None) -> None:
    """Remove every OAR table (and the read-only account's grants)."""
    backend = backend_for(db)
    with db.atomic():
        if readonly_login:
            backend.drop_readonly_account(db, readonly_login)
        db.drop_tables(ALL_MODELS, safe=True)


def reset(
    db: peewee.Database,
    readonly_account: tuple[str, str] | None = None,
    migrations: Iterable[Migration] = MIGRATIONS,
) -> int:
    """Drop every OAR table and create the schema again: all jobs and resources are lost."""
    drop_all(db, readonly_account[0] if readonly_account else None)
    return create(db, readonly_account, migrations)


def check(
    db: peewee.Database,
    readonly_login: str | None = None,
    migrations: Iterable[Migration] = MIGRATIONS,
) -> list[str]:
    """Compare the database with the models; return the problems found (empty: all good)."""
    problems: list[str] = []
    version = current_version(db)
    latest = latest_version(migrations)
    if version is None:
        return ["no OAR schema (table 'schema' missing)"]
    if version != latest:
        problems.append(f"schema version is {version}, expected {latest}")
    tables = set(db.get_tables())
    for model in ALL_MODELS:
        table = model._meta.table_name
        if table not in tables:
            problems.append(f"table {table} is missing")
            continue
        live_columns = {c.name for c in db.get_columns(table)}
        for field in model._meta.sorted_fields:
            if field.column_name not in live_columns:
                problems.append(f"column {table}.{field.column_name} is missing")
        live_indexes = {tuple(ix.columns) for ix in db.get_indexes(table)}
        for columns, _unique in model._meta.indexes:
            wanted = tuple(model._meta.fields[c].column_name for c in columns)
            if wanted not in live_indexes:
                problems.append(f"index on {table}({', '.join(wanted)}) is missing")
    if readonly_login and backend_for(db).dialect == "postgresql":
        problems.extend(_check_readonly_account(db, readonly_login, tables))
    return problems


def _check_readonly_account(db: peewee.Database, login: str, tables: set[str]) -> list[str]:
    role = db.execute_sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
    if not role:
        return [f"read-only account {login} does not exist"]
    problems = []
    for model in ALL_MODELS:
        table = model._meta.table_name
        if table not in tables:
            continue  # already reported missing
        can_read = db.execute_sql(
            "SELECT has_table_privilege(%s, %s, 'SELECT')", (login, f"public.{table}")
        ).fetchone()[0]
        if table in SECRET_TABLES and can_read:
            problems.append(f"read-only account {login} can read the secret table {table}")
        if table not in SECRET_TABLES and not can_read:
            problems.append(f"read-only account {login} cannot read {table}")
    return problems
