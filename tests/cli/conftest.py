"""Running commands in-process, and snapshots of the whole database."""

from __future__ import annotations

import importlib

import pytest

from tests.helpers import Result
from tests.sqlutil import raw_database





@pytest.fixture
def oar(oar_conf, capsys):
    """``oar("oarnodes", "-s")`` runs a command's main() and returns rc, stdout, stderr."""

    def run(command: str, *argv: str) -> Result:
        module = importlib.import_module("oar_appliance.cli." + command.replace("-", "_"))
        capsys.readouterr()
        rc = module.main(list(argv))
        captured = capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    return run


@pytest.fixture
def created(oar):
    """A created database (through the command, as an admin would)."""
    result = oar("oar-database", "--create")
    assert result.rc == 0, result.err
    return oar


@pytest.fixture
def cluster(created):
    """4 nodes x 2 cpus x 4 cores, registered as an admin would."""
    result = created("oar-resources-add", "-H", "4", "-C", "2", "-c", "4")
    assert result.rc == 0, result.err
    return created


@pytest.fixture
def snapshot(db_url):
    """``snapshot()`` returns every table's columns and rows, to compare before/after."""

    def take():
        with raw_database(db_url) as db:
            state = {}
            for table in sorted(db.get_tables()):
                columns = tuple(c.name for c in db.get_columns(table))
                rows = db.execute_sql(f'SELECT * FROM "{table}"').fetchall()
                state[table] = (columns, sorted(map(repr, rows)))
            return state

    return take
