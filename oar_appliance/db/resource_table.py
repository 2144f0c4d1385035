"""Reading and writing rows of ``resources`` with their run-time property columns.

Properties are columns that admins add and remove while the system runs, so every
operation here asks the database for the current columns (one cheap catalogue query)
instead of trusting a model defined at import time: a property added by ``oarproperty``
is seen by every process at its next operation, without restart.
Column names reaching SQL are always checked against the live column list and quoted;
values are always bound parameters.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import peewee

from . import bulk
from .connection import backend_for, quote_identifier
from .models import Resource

#: columns of ``resources`` that belong to OAR itself and are never properties
SYSTEM_COLUMNS = frozenset(f.column_name for f in Resource._meta.sorted_fields)

MAX_PARAMETERS = bulk.MAX_PARAMETERS


def columns(db: peewee.Database) -> dict[str, str]:
    """Every column of ``resources`` -> kind ('int', 'float', 'str'), in table order."""
    return backend_for(db).columns(db, "resources")


def property_columns(db: peewee.Database) -> dict[str, str]:
    """The property columns only (what ``oarproperty -l`` lists)."""
    return {name: kind for name, kind in columns(db).items() if name not in SYSTEM_COLUMNS}


def _rows(cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def select(
    db: peewee.Database,
    where: str = "",
    params: Sequence[Any] = (),
    order_by: str = '"resource_id"',
    only: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The resources matching ``where`` (SQL built by this package only), with every
    column or ``only`` those (names already checked against the live columns)."""
    wanted = ", ".join(quote_identifier(name) for name in only) if only else "*"
    sql = f'SELECT {wanted} FROM "resources"'
    if where:
        sql += f" WHERE {where}"
    if order_by:
        sql += f" ORDER BY {order_by}"
    return _rows(db.execute_sql(sql, list(params)))


def ids_clause(db: peewee.Database, ids: Sequence[int]) -> tuple[str, list[int]]:
    """A WHERE fragment selecting resources by id, with its parameters."""
    return bulk.ids_clause(db, "resource_id", ids)


def existing_ids(db: peewee.Database, ids: Iterable[int]) -> set[int]:
    wanted = sorted(set(int(i) for i in ids))
    found: set[int] = set()
    for start in range(0, len(wanted), MAX_PARAMETERS):
        chunk = wanted[start : start + MAX_PARAMETERS]
        where, params = ids_clause(db, chunk)
        cursor = db.execute_sql(f'SELECT "resource_id" FROM "resources" WHERE {where}', params)
        found.update(r[0] for r in cursor.fetchall())
    return found


def insert(db: peewee.Database, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert resources (all rows with the same keys, already checked); return their ids."""
    return bulk.insert_returning(db, "resources", rows, "resource_id")


def update(db: peewee.Database, ids: Sequence[int], values: Mapping[str, Any]) -> None:
    """Set the same column values on every resource of ``ids`` (names already checked)."""
    bulk.update_by_ids(db, "resources", "resource_id", list(ids), values)


def delete(db: peewee.Database, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), MAX_PARAMETERS):
        where, params = ids_clause(db, list(ids[start : start + MAX_PARAMETERS]))
        db.execute_sql(f'DELETE FROM "resources" WHERE {where}', params)
