"""A one-host lab for the server tests: a database of each backend, a real ``oar-server``
process (``sys.executable -m oar_appliance.cli.oar_server``) on a free loopback port,
``OAR_CONNECTOR=local``, jobs submitted through the real ``oarsub`` main().

Every process a test starts is ended by the test by its pid: the server, and at the end
whatever is left of the jobs (``jobctl clean`` on each oarexec pid file of the runtime
directory, which kills oarexec and the job's process group).
"""

from __future__ import annotations

import glob
import importlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import conf_text_for
from tests.helpers import Result, free_port
from tests.sqlutil import raw_database

#: a bound for every wait of these tests
WAIT = 30.0


class Lab:
    """The lab of one test: configuration, commands, the server process, the database."""

    def __init__(self, db_url: str, top: Path, capsys, monkeypatch):
        self.db_url = db_url
        self.top = top
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.port = free_port()
        self.runtime = top / "runtime"
        self.work = top / "work"
        self.work.mkdir()
        self.log = top / "oar.log"
        self.conf = top / "oar.conf"
        self.extra: list[str] = []
        self.server: subprocess.Popen | None = None
        self.write_conf()
        monkeypatch.setenv("OARCONFFILE", str(self.conf))
        monkeypatch.chdir(self.work)

    def write_conf(self, *lines: str) -> None:
        self.extra.extend(lines)
        self.conf.write_text(conf_text_for(self.db_url).replace("SERVER_PORT=6666", f"SERVER_PORT={self.port}") + "\n".join([
            f'LOG_FILE="{self.log}"', "LOG_LEVEL=3", "OAR_CONNECTOR=local",
            f'OAR_RUNTIME_DIRECTORY="{self.runtime}"', "SERVER_TIMER_PERIOD=1",
            "JOBDEL_WALLTIME=10", "SARKO_FREQUENCY=1",
            # never the host's /oar cgroups (tests/nodeside/test_cgroups.py tests them)
            "JOB_RESOURCE_MANAGER=none",
            # finaud checks the idle nodes through the local connector
            "FINAUD_FREQUENCY=3", *self.extra]) + "\n")

    # ---------------------------------------------------------------- commands

    def cmd(self, command: str, *argv: str) -> Result:
        module = importlib.import_module("oar_appliance.cli." + command.replace("-", "_"))
        self.capsys.readouterr()
        rc = module.main(list(argv))
        captured = self.capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    def oarsub(self, *argv: str) -> int:
        result = self.cmd("oarsub", *argv)
        assert result.rc == 0, result.err
        found = re.search(r"^OAR_JOB_ID=(\d+)$", result.out, re.M)
        assert found, result.out
        return int(found.group(1))

    # ---------------------------------------------------------------- server

    def start_server(self) -> subprocess.Popen:
        assert self.server is None or self.server.poll() is not None
        started = f"oar-server started (port {self.port}"
        # a restart waits for its own line, not the previous run's
        before = self.log.read_text().count(started) if self.log.exists() else 0
        self.server = subprocess.Popen([sys.executable, "-m", "oar_appliance.cli.oar_server", "--conf",
                                        str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise AssertionError(f"oar-server exited: {self.server.stderr.read().decode()}")
            if self.log.exists() and self.log.read_text().count(started) > before:
                return self.server
            time.sleep(0.05)
        raise AssertionError("oar-server did not start")

    def stop_server(self, sig: int = signal.SIGTERM) -> int | None:
        if self.server is None or self.server.poll() is not None:
            return None
        self.server.send_signal(sig)
        try:
            rc = self.server.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.server.kill()
            rc = self.server.wait()
        self.server.stderr.close()
        log_before = self.log.read_text() if self.log.exists() else ""
        self.log.write_text(log_before + f"---- server stopped with signal {sig}\n")
        return rc

    def cleanup(self) -> None:
        self.stop_server(signal.SIGKILL)
        for path in glob.glob(str(self.runtime / "oarexec_*.pid")):
            job_id = re.search(r"oarexec_(\d+)\.pid$", path).group(1)
            subprocess.run([sys.executable, "-m", "oar_appliance.nodeside.jobctl", "clean", "--job-id", job_id,
                            "--runtime-dir", str(self.runtime)], timeout=WAIT, capture_output=True)

    # ---------------------------------------------------------------- database

    def sql(self, sql: str, params=()) -> list[tuple]:
        with raw_database(self.db_url) as db:
            sql = sql.replace("?", "%s") if not self.db_url.startswith("sqlite") else sql
            cursor = db.execute_sql(sql, list(params))
            return cursor.fetchall() if cursor.description else []

    def state(self, job_id: int) -> str | None:
        rows = self.sql('SELECT "state" FROM "jobs" WHERE "job_id" = ?', [job_id])
        return rows[0][0] if rows else None

    def job(self, job_id: int) -> dict:
        with raw_database(self.db_url) as db:
            mark = "?" if self.db_url.startswith("sqlite") else "%s"
            cursor = db.execute_sql(f'SELECT * FROM "jobs" WHERE "job_id" = {mark}', [job_id])
            names = [d[0] for d in cursor.description]
            return dict(zip(names, cursor.fetchone()))

    def wait_state(self, job_id: int, *states: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.state(job_id)
            if state in states:
                return state
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} is {state}, not {'/'.join(states)} after {timeout} s\n"
                             + self.log_tail())

    def state_logs(self, job_id: int) -> list[tuple[str, int, int]]:
        return self.sql('SELECT "job_state", "date_start", "date_stop" FROM "job_state_logs" '
                        'WHERE "job_id" = ? ORDER BY "job_state_log_id"', [job_id])

    def events(self, job_id: int) -> list[str]:
        return [r[0] for r in self.sql('SELECT "type" FROM "event_logs" WHERE "job_id" = ? '
                                       'ORDER BY "event_id"', [job_id])]

    def frag_state(self, job_id: int) -> str | None:
        rows = self.sql('SELECT "frag_state" FROM "frag_jobs" WHERE "frag_id_job" = ?', [job_id])
        return rows[0][0] if rows else None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text().splitlines()[-lines:])


@pytest.fixture
def lab(db_url, tmp_path, capsys, monkeypatch):
    """A created database with 2 hosts x 1 cpu x 2 cores (4 resources), no server yet."""
    lab = Lab(db_url, tmp_path, capsys, monkeypatch)
    result = lab.cmd("oar-database", "--create")
    assert result.rc == 0, result.err
    result = lab.cmd("oar-resources-add", "-H", "2", "-C", "1", "-c", "2")
    assert result.rc == 0, result.err
    try:
        yield lab
    finally:
        lab.cleanup()


@pytest.fixture
def running_lab(lab):
    """The lab with its server running."""
    lab.start_server()
    return lab


def process_state(pid: int) -> str | None:
    """The state letter of a process (R, S, T...) or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait_for(predicate, timeout: float = WAIT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached after {timeout} s")


__all__ = ["Lab", "WAIT", "process_state", "wait_for", "free_port"]
