"""Shared fixtures: both database backends, for real.

Every test that asks for ``db_url``, ``db`` or ``oar_conf`` runs twice: on a SQLite file
and on a database of a throwaway PostgreSQL 15 cluster started once per test session.
A missing PostgreSQL is an error, never a skip: the suite must exercise both backends.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.pg_cluster import PgCluster

RO_LOGIN = "oar_ro"
RO_PASSWORD = "oar-ro-test-pw"


@pytest.fixture(scope="session")
def pg_cluster():
    try:
        cluster = PgCluster().start()
    except Exception as exc:  # the suite must not pass without PostgreSQL
        pytest.fail(f"cannot start the throwaway PostgreSQL cluster: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_name(request):
    return request.param


@pytest.fixture
def db_url(backend_name, tmp_path, request):
    """URL of an empty database of the current backend, removed after the test."""
    if backend_name == "sqlite":
        yield f"sqlite:///{tmp_path}/oar.sqlite"
        return
    cluster = request.getfixturevalue("pg_cluster")
    name = cluster.new_database()
    yield cluster.url(name)
    from oar_appliance.db.models import database_proxy

    if database_proxy.obj is not None and not database_proxy.obj.is_closed():
        database_proxy.obj.close()
    cluster.drop_database(name)


@pytest.fixture
def db(db_url):
    """An open database holding a freshly created OAR schema."""
    from oar_appliance.db import connection, schema

    database = connection.connect(db_url, create=True)
    schema.create(database, readonly_account=(RO_LOGIN, RO_PASSWORD))
    yield database
    database.close()


def conf_text_for(db_url: str, extra: str = "") -> str:
    """An oar.conf pointing at ``db_url``."""
    parts = urlsplit(db_url)
    if parts.scheme == "sqlite":
        lines = ["DB_TYPE=sqlite", f'DB_BASE_FILE="{parts.path}"']
    else:
        lines = [
            "DB_TYPE=Pg",
            f"DB_HOSTNAME={parts.hostname}",
            f"DB_PORT={parts.port}",
            f"DB_BASE_NAME={parts.path.lstrip('/')}",
            f"DB_BASE_LOGIN={parts.username}",
            f'DB_BASE_PASSWD="{parts.password}"',
            f"DB_BASE_LOGIN_RO={RO_LOGIN}",
            f'DB_BASE_PASSWD_RO="{RO_PASSWORD}"',
        ]
    lines += ['SERVER_HOSTNAME="127.0.0.1"', "SERVER_PORT=6666"]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def oar_conf(db_url, tmp_path, monkeypatch):
    """Write an oar.conf for the current backend and point OARCONFFILE at it."""
    path = tmp_path / "oar.conf"
    path.write_text(conf_text_for(db_url) + f'LOG_FILE="{tmp_path}/oar.log"\n')
    monkeypatch.setenv("OARCONFFILE", str(path))
    return path


@pytest.fixture
def hostname_is(monkeypatch):
    """Let a test choose what ``socket.gethostname()`` answers (the default node name)."""

    def set_name(name: str) -> None:
        monkeypatch.setattr("socket.gethostname", lambda: name)

    return set_name

