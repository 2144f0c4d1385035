"""Plain SQL on a test database, through a connection of the test's own."""

from contextlib import contextmanager


@contextmanager
def raw_database(db_url):
    """A connection of its own to the test database, outside the commands' binding."""
    from oar_appliance.db import connection

    db = connection.backend_for_url(db_url).open()
    db.connect()
    try:
        yield db
    finally:
        db.close()


def run_sql(db_url, sql, params=()):
    """Run one statement in its own transaction; return its rows (empty for writes)."""
    with raw_database(db_url) as db:
        with db.atomic():
            cursor = db.execute_sql(sql, list(params))
            return cursor.fetchall() if cursor.description else []
