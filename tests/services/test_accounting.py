"""Accounting windows on both backends, and the oaraccounting command."""

from __future__ import annotations

import pytest

from oar_appliance import accounting
from oar_appliance.db.models import Job
from tests.jobdata import add_job
from tests.services.helpers import config, make_cluster
from tests.sqlutil import run_sql

DAY = 86400
D0 = 19_700 * DAY  # a window boundary


def _rows(db_url):
    return sorted(tuple(r) for r in run_sql(
        db_url, 'SELECT "window_start", "window_stop", "accounting_user", "accounting_project", '
                '"queue_name", "consumption_type", "consumption" FROM "accounting"'))


def test_windows_split_an_interval_on_epoch_aligned_boundaries():
    assert list(accounting.windows(D0 - 100, D0 + 50, DAY)) == [(D0 - DAY, D0, 100), (D0, D0 + DAY, 50)]
    assert list(accounting.windows(D0, D0 + 2 * DAY, DAY)) == [(D0, D0 + DAY, DAY), (D0 + DAY, D0 + 2 * DAY, DAY)]
    assert list(accounting.windows(D0 + 5, D0 + 5, DAY)) == []


def test_a_job_across_two_windows(db, db_url):
    cluster = make_cluster(db)
    # 2 resources, from 1 h before midnight to 30 min after; asked 2 h
    job = add_job(db_url, job_user="alice", project="p1", state="Terminated", walltime=7200,
                  start_time=D0 - 3600, stop_time=D0 + 1800, resources=cluster["node-1"])
    report = accounting.update(db, config(), D0 + DAY)
    assert report.jobs == 1
    assert _rows(db_url) == sorted([
        (D0 - DAY, D0, "alice", "p1", "default", "ASKED", 2 * 3600),
        (D0, D0 + DAY, "alice", "p1", "default", "ASKED", 2 * 3600),
        (D0 - DAY, D0, "alice", "p1", "default", "USED", 2 * 3600),
        (D0, D0 + DAY, "alice", "p1", "default", "USED", 2 * 1800),
    ])
    assert Job.get_by_id(job).accounted == "YES"
    # nothing new: nothing changes
    assert accounting.update(db, config(), D0 + DAY).jobs == 0
    assert len(_rows(db_url)) == 4


def test_updates_add_up_per_user_project_queue_and_window(db, db_url):
    cluster = make_cluster(db)
    common = dict(state="Terminated", walltime=1000, resources=cluster["node-1"][:1])
    add_job(db_url, job_user="alice", start_time=D0 + 10, stop_time=D0 + 110, **common)
    add_job(db_url, job_user="alice", start_time=D0 + 500, stop_time=D0 + 520, **common)
    add_job(db_url, job_user="bob", state="Error", start_time=D0 + 10, stop_time=D0 + 20, walltime=60,
            queue_name="besteffort", resources=cluster["node-2"])
    never_started = add_job(db_url, job_user="carol", state="Error")
    running = add_job(db_url, job_user="dave", state="Running", start_time=D0, resources=cluster["node-2"])
    report = accounting.update(db, config(), D0 + DAY, batch_size=2)
    assert report.jobs == 4 and report.batches == 2
    assert _rows(db_url) == sorted([
        (D0, D0 + DAY, "alice", "", "default", "ASKED", 2000),
        (D0, D0 + DAY, "alice", "", "default", "USED", 120),
        (D0, D0 + DAY, "bob", "", "besteffort", "ASKED", 120),
        (D0, D0 + DAY, "bob", "", "besteffort", "USED", 20),
    ])
    assert Job.get_by_id(never_started).accounted == "YES"
    assert Job.get_by_id(running).accounted == "NO"

    # the running job ends: the next update adds it to its window
    run_sql(db_url, 'UPDATE "jobs" SET "state" = \'Terminated\', "stop_time" = ? WHERE "job_id" = ?'
            .replace("?", "%s" if not db_url.startswith("sqlite") else "?"), [D0 + 100, running])
    assert accounting.update(db, config(), D0 + DAY).jobs == 1
    assert (D0, D0 + DAY, "dave", "", "default", "USED", 200) in _rows(db_url)


def test_window_size_comes_from_the_configuration(db, db_url):
    cluster = make_cluster(db)
    add_job(db_url, state="Terminated", walltime=3600, start_time=D0, stop_time=D0 + 3600,
            resources=cluster["node-1"][:1])
    accounting.update(db, config(ACCOUNTING_WINDOW=1800), D0 + DAY)
    used = [r for r in _rows(db_url) if r[5] == "USED"]
    assert used == [(D0, D0 + 1800, "alice", "", "default", "USED", 1800),
                    (D0 + 1800, D0 + 3600, "alice", "", "default", "USED", 1800)]


# ----------------------------------------------------------------------------- oaraccounting

@pytest.fixture
def jobs_db(created, db_url):
    """A database made by the commands, with two ended jobs on one resource each."""
    run_sql(db_url, 'INSERT INTO "resources" ("network_address") VALUES (\'node-1\')')
    add_job(db_url, state="Terminated", walltime=100, start_time=D0 - DAY, stop_time=D0 - DAY + 50,
            resources=[1])
    add_job(db_url, state="Terminated", walltime=100, start_time=D0, stop_time=D0 + 60, resources=[1])
    return created


def test_oaraccounting_updates_reinitializes_and_deletes(jobs_db, db_url, monkeypatch):
    oar = jobs_db
    result = oar("oaraccounting")
    assert result.rc == 0, result.err
    assert result.out.startswith("2 jobs accounted")
    assert len(_rows(db_url)) == 4
    assert oar("oaraccounting").out.startswith("0 jobs accounted")

    # --delete_before: windows ended more than SECS ago (the first day's only)
    monkeypatch.setattr("time.time", lambda: D0 + DAY + 10)
    result = oar("oaraccounting", "--delete_before", str(DAY))
    assert result.rc == 0, result.err
    assert result.out.startswith("2 accounting rows")
    assert {r[0] for r in _rows(db_url)} == {D0}

    result = oar("oaraccounting", "--reinitialize")
    assert result.rc == 0, result.err
    assert _rows(db_url) == []
    assert {a for (a,) in run_sql(db_url, 'SELECT "accounted" FROM "jobs"')} == {"NO"}
    assert oar("oaraccounting").out.startswith("2 jobs accounted")
    assert len(_rows(db_url)) == 4


def test_oaraccounting_refuses_bad_options(jobs_db, db_url):
    oar = jobs_db
    result = oar("oaraccounting", "--delete_before", "soon")
    assert result.rc == 2 and result.err.startswith("#ERROR: ") and "seconds" in result.err
    result = oar("oaraccounting", "--reinitialize", "--delete_before", "5")
    assert result.rc == 2 and result.err.startswith("#ERROR: ")
    assert _rows(db_url) == []


def test_oaraccounting_is_for_administrators(jobs_db, db_url, snapshot, monkeypatch):
    """The caller's identity is the one thing substituted: 'alice' owns nothing here."""
    before = snapshot()
    monkeypatch.setattr("oar_appliance.cli.common.caller_name", lambda: "alice")
    for argv in ([], ["--reinitialize"], ["--delete_before", "0"]):
        result = jobs_db("oaraccounting", *argv)
        assert result.rc == 8
        assert result.err.strip() == "#ERROR: only oar or root may do this (you are alice)"
    assert snapshot() == before


def _many_ended_jobs(db, count: int, resource_ids: list[int]) -> None:
    """``count`` Terminated jobs of 100 s each on one resource, written in a few statements."""
    from oar_appliance.db import bulk

    with db.atomic():
        job_ids = bulk.insert_returning(db, "jobs", [
            {"job_user": f"u{i % 3}", "project": "", "queue_name": "default", "state": "Terminated",
             "start_time": D0 + i, "stop_time": D0 + i + 100, "launching_directory": "/tmp"}
            for i in range(count)], "job_id")
        moldables = bulk.insert_returning(db, "moldable_job_descriptions", [
            {"moldable_job_id": j, "moldable_walltime": 300} for j in job_ids], "moldable_id")
        db.execute_sql('UPDATE "jobs" SET "assigned_moldable_job" = (SELECT m."moldable_id" FROM '
                       '"moldable_job_descriptions" m WHERE m."moldable_job_id" = "jobs"."job_id") '
                       'WHERE "assigned_moldable_job" = 0')
        bulk.insert_rows(db, "assigned_resources", [
            {"moldable_job_id": m, "resource_id": resource_ids[k % len(resource_ids)]}
            for k, m in enumerate(moldables)])


def test_two_updates_at_once_count_each_job_once(db, db_url):
    """The server's update and an admin's oaraccounting may run together."""
    import threading

    cluster = make_cluster(db)
    _many_ended_jobs(db, 1500, cluster["node-1"])
    reports, errors, left = [], [], []

    def one():
        try:
            reports.append(accounting.update(db, config(), D0 + DAY, batch_size=50))
            # an update returns only when every ended job is accounted, by it or the other
            left.append(Job.select().where(Job.accounted == "NO").count())
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert left == [0, 0]
    assert sum(r.jobs for r in reports) == 1500
    used = sum(r[6] for r in _rows(db_url) if r[5] == "USED")
    asked = sum(r[6] for r in _rows(db_url) if r[5] == "ASKED")
    assert used == 1500 * 100 and asked == 1500 * 300
    assert {a for (a,) in run_sql(db_url, 'SELECT DISTINCT "accounted" FROM "jobs"')} == {"YES"}
