"""Writing many rows in few statements.

peewee builds SQL at about 80 us a row (NOTES.md); these helpers send multi-row
``INSERT ... RETURNING`` (SQLite >= 3.35 and PostgreSQL both have it) with bound
parameters, chunked under SQLite's parameter limit.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import peewee

from .connection import backend_for, quote_identifier

#: largest number of bound parameters put in one statement (SQLite's limit is 32766)
MAX_PARAMETERS = 30000


def insert_returning(db: peewee.Database, table: str, rows: Sequence[Mapping[str, Any]],
                     id_column: str) -> list[int]:
    """Insert rows (all with the same keys) and return their new ids in insertion order.

    The ids come from an auto-increment key, which both backends hand out in increasing
    order within a statement, so sorting them gives the order of ``rows``.
    """
    if not rows:
        return []
    names = list(rows[0].keys())
    column_sql = ", ".join(quote_identifier(n) for n in names)
    placeholder = backend_for(db).placeholder
    one_row = "(" + ", ".join([placeholder] * len(names)) + ")"
    per_statement = max(1, MAX_PARAMETERS // max(1, len(names)))
    ids: list[int] = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        params = [row[n] for row in chunk for n in names]
        sql = (
            f"INSERT INTO {quote_identifier(table)} ({column_sql}) VALUES "
            + ", ".join([one_row] * len(chunk))
            + f" RETURNING {quote_identifier(id_column)}"
        )
        ids.extend(sorted(r[0] for r in db.execute_sql(sql, params).fetchall()))
    return ids


def insert_rows(db: peewee.Database, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows (all with the same keys) with one executemany."""
    if not rows:
        return
    names = list(rows[0].keys())
    placeholder = backend_for(db).placeholder
    sql = (f"INSERT INTO {quote_identifier(table)} ({', '.join(quote_identifier(n) for n in names)}) "
           f"VALUES ({', '.join([placeholder] * len(names))})")
    db.cursor().executemany(sql, [tuple(row[n] for n in names) for row in rows])


def ids_clause(db: peewee.Database, id_column: str, ids: Sequence[int]) -> tuple[str, list[int]]:
    """``"id" IN (?, ?, ...)`` and its parameters (at most MAX_PARAMETERS ids)."""
    marks = ", ".join([backend_for(db).placeholder] * len(ids))
    return f"{quote_identifier(id_column)} IN ({marks})", [int(i) for i in ids]


def placeholders(db, count: int) -> str:
    """``count`` bound-parameter marks of the database's driver, comma-separated (for ``IN``)."""
    return ", ".join([backend_for(db).placeholder] * count)


def update_by_ids(db: peewee.Database, table: str, id_column: str, ids: Sequence[int],
                  values: Mapping[str, Any]) -> None:
    """Set the same values on every row of ``ids``, in chunks of bound parameters."""
    if not ids or not values:
        return
    placeholder = backend_for(db).placeholder
    assignments = ", ".join(f"{quote_identifier(n)} = {placeholder}" for n in values)
    step = MAX_PARAMETERS - len(values)
    for start in range(0, len(ids), step):
        where, params = ids_clause(db, id_column, ids[start : start + step])
        db.execute_sql(f"UPDATE {quote_identifier(table)} SET {assignments} WHERE {where}",
                       list(values.values()) + params)
