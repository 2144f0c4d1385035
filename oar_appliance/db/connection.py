"""Connecting to the OAR database, and what differs between SQLite and PostgreSQL.

Everything that depends on the backend lives in the two adapter classes below; the rest
of the code asks the adapter (``backend_for(db)``) instead of testing the backend itself.
A database is named by a URL: ``sqlite:///abs/path/oar.sqlite`` or
``postgresql://login:password@host:port/name`` (see :meth:`Config.database_url`).
"""

from __future__ import annotations

import logging
import os
import re
from urllib.parse import unquote, urlsplit

import peewee

from ..errors import DatabaseError
from .models import database_proxy

log = logging.getLogger(__name__)

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_identifier(name: str) -> str:
    """Quote a column or table name that has already been checked against IDENTIFIER."""
    if not IDENTIFIER.match(name):
        raise DatabaseError(f"invalid SQL identifier {name!r}")
    return '"%s"' % name


def column_kind(data_type: str) -> str:
    """Map a backend's column type to the property kinds 'int', 'float' or 'str'."""
    t = data_type.upper()
    if "INT" in t:
        return "int"
    if any(k in t for k in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return "float"
    return "str"


SQL_TYPES = {"int": "INTEGER", "str": "VARCHAR(255)"}


class Backend:
    """What the rest of the code needs to know of one database backend."""

    #: name understood by :func:`oar_appliance.lang.properties.to_sql`
    dialect = ""
    #: placeholder of the DB-API driver
    placeholder = "?"

    def __init__(self, url: str):
        self.url = url

    def open(self, create: bool = False) -> peewee.Database:
        raise NotImplementedError

    def describe(self) -> str:
        """The URL without its password, for messages."""
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", self.url)

    def columns(self, db: peewee.Database, table: str) -> dict[str, str]:
        """Column name -> kind ('int', 'float', 'str'), in table order."""
        return {c.name: column_kind(c.data_type) for c in db.get_columns(table)}

    def add_column(self, db: peewee.Database, table: str, name: str, kind: str) -> None:
        db.execute_sql(
            f"ALTER TABLE {quote_identifier(table)} ADD COLUMN {quote_identifier(name)} {SQL_TYPES[kind]}"
        )

    def drop_column(self, db: peewee.Database, table: str, name: str) -> None:
        db.execute_sql(f"ALTER TABLE {quote_identifier(table)} DROP COLUMN {quote_identifier(name)}")

    def rename_column(self, db: peewee.Database, table: str, old: str, new: str) -> None:
        db.execute_sql(
            f"ALTER TABLE {quote_identifier(table)} RENAME COLUMN {quote_identifier(old)} TO {quote_identifier(new)}"
        )

    def create_readonly_account(self, db, login: str, password: str, secret_tables) -> str | None:
        """Give ``login`` read access to every table but ``secret_tables``; None if n/a."""
        return None

    def drop_readonly_account(self, db, login: str) -> None:
        return None


class SqliteBackend(Backend):
    """SQLite in WAL mode; every transaction takes the write lock at BEGIN (NOTES.md)."""

    dialect = "sqlite"
    placeholder = "?"

    def __init__(self, url: str):
        super().__init__(url)
        path = unquote(urlsplit(url).path)
        if url.startswith("sqlite:////"):
            path = "/" + path.lstrip("/")
        if not path or path == "/":
            raise DatabaseError(f"no database file in {url!r}")
        self.path = path

    def open(self, create: bool = False) -> peewee.Database:
        if not create and not os.path.exists(self.path):
            raise DatabaseError(
                f"database file {self.path} does not exist (create it with: oar-database --create)"
            )
        if create:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        return peewee.SqliteDatabase(
            self.path,
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 0,
                # LIKE must be case-sensitive, as on PostgreSQL and in the scheduler
                "case_sensitive_like": 1,
            },
            timeout=30,
            lock_type="IMMEDIATE",
        )


def _postgresql_class() -> type:
    """``peewee.PostgresqlDatabase`` always on psycopg 3, imported here rather than by peewee.

    Peewee imports psycopg (0.2 to 0.4 s) when it is itself imported; the package keeps it
    out (``oar_appliance/__init__.py``) so that commands on SQLite do not pay for it.  This
    adapter takes the driver's module and constants from psycopg imported now, whichever
    way peewee was imported.
    """
    import psycopg
    from psycopg.pq import TransactionStatus
    from psycopg.types.json import Json, Jsonb

    class Psycopg3(peewee.Psycopg3Adapter):
        txn_idle = TransactionStatus.IDLE
        txn_inerror = TransactionStatus.INERROR
        txn_unknown = TransactionStatus.UNKNOWN

        def __init__(self):
            super().__init__()
            self.json_type, self.jsonb_type = Json, Jsonb

        def check_driver(self):
            pass

        def get_binary_type(self):
            return psycopg.Binary

        def connect(self, db, **params):
            if db._encoding:
                params.setdefault("client_encoding", db._encoding)
            if db.database.startswith("postgresql://"):
                params.setdefault("conninfo", db.database)
            else:
                params.setdefault("dbname", db.database)
            return psycopg.connect(**params)

        def server_side_cursor(self, conn):
            import uuid

            in_txn = self.txn_status(conn) == TransactionStatus.INTRANS
            return conn.cursor(name=str(uuid.uuid1()), withhold=not in_txn)

    class PostgresqlDatabase(peewee.PostgresqlDatabase):
        # peewee picks one of the two by the drivers it saw at its import: both are ours
        psycopg2_adapter = psycopg3_adapter = Psycopg3

    return PostgresqlDatabase


class PostgresBackend(Backend):
    """PostgreSQL through psycopg 3."""

    dialect = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str):
        super().__init__(url)
        parts = urlsplit(url)
        self.params = {
            "host": parts.hostname or "localhost",
            "port": parts.port or 5432,
            "user": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
        }
        self.name = unquote(parts.path.lstrip("/"))
        if not self.name:
            raise DatabaseError(f"no database name in {self.describe()}")

    def open(self, create: bool = False) -> peewee.Database:
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise DatabaseError(
                "PostgreSQL needs psycopg 3: install oar-appliance[postgres]"
            ) from exc
        return _postgresql_class()(self.name, **self.params, connect_timeout=10)

    def create_readonly_account(self, db, login: str, password: str, secret_tables) -> str:
        from psycopg import sql

        role = quote_identifier(login)
        exists = db.execute_sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
        # DDL takes no bind parameters: psycopg quotes the password as a literal itself
        statement = sql.SQL("{} ROLE {} WITH LOGIN PASSWORD {}").format(
            sql.SQL("ALTER" if exists else "CREATE"), sql.Identifier(login), sql.Literal(password)
        )
        db.execute_sql(statement.as_string(db.connection()))
        dbname = db.execute_sql("SELECT current_database()").fetchone()[0]
        grant = sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), sql.Identifier(login))
        db.execute_sql(grant.as_string(db.connection()))
        db.execute_sql(f"GRANT USAGE ON SCHEMA public TO {role}")
        db.execute_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        for table in secret_tables:
            db.execute_sql(f"REVOKE ALL ON {quote_identifier(table)} FROM {role}")
        return login

    def drop_readonly_account(self, db, login: str) -> None:
        exists = db.execute_sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
        if exists:
            db.execute_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quote_identifier(login)}")


def backend_for_url(url: str) -> Backend:
    """The adapter for a database URL; the one place that chooses a backend."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return SqliteBackend(url)
    if scheme in ("postgresql", "postgres", "pg"):
        return PostgresBackend(url)
    raise DatabaseError(f"unsupported database URL scheme {scheme!r} (sqlite or postgresql)")


def backend_for(db: peewee.Database) -> Backend:
    """The adapter a database was opened with."""
    return db.oar_backend


def connect(url: str, create: bool = False) -> peewee.Database:
    """Open the database named by ``url`` and bind the models to it."""
    backend = backend_for_url(url)
    db = backend.open(create=create)
    try:
        db.connect(reuse_if_open=True)
    except peewee.OperationalError as exc:
        raise DatabaseError(f"cannot connect to {backend.describe()}: {first_line(exc)}") from exc
    db.oar_backend = backend
    database_proxy.initialize(db)
    return db


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
