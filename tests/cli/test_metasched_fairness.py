"""oar-metasched on both backends: fairsharing (karma order), quotas, energy saving."""

from __future__ import annotations

import time

import pytest

from tests.cli.test_metasched import SECURITY, job, prediction, round_at
from tests.jobdata import add_job
from tests.sqlutil import run_sql

FAIR = "oar_sched_gantt_with_timesharing_and_fairsharing"
WHOLE = (("resource_id", 32),)         # the whole `cluster` fixture (4 nodes x 8 cores)


@pytest.fixture
def now():
    return int(time.time()) + 100


def account(db_url, now, user, project, queue, used, asked, age=3600):
    """One accounting window of ``user`` ending ``age`` seconds before ``now``."""
    for kind, amount in (("USED", used), ("ASKED", asked)):
        run_sql(db_url, "INSERT INTO accounting (window_start, window_stop, accounting_user, "
                        "accounting_project, queue_name, consumption_type, consumption) VALUES "
                        f"({now - age - 3600}, {now - age}, '{user}', '{project}', '{queue}', "
                        f"'{kind}', {amount})")


def starts(db_url, ids):
    return [prediction(db_url, j) for j in ids]


def test_fairsharing_queue_orders_by_karma(cluster, db_url, now):
    oar = cluster
    assert oar("oarnotify", "--add_queue", f"fair,2,{FAIR}").rc == 0
    account(db_url, now, "alice", "p1", "fair", used=9000, asked=9000)
    account(db_url, now, "bob", "p2", "fair", used=1000, asked=2000)
    # an old window (out of SCHEDULER_FAIRSHARING_WINDOW_SIZE, 30 h) does not count
    account(db_url, now, "carol", "p3", "fair", used=10**9, asked=10**9, age=31 * 3600)
    a = add_job(db_url, job_user="alice", project="p1", queue_name="fair", levels=WHOLE)
    b = add_job(db_url, job_user="bob", project="p2", queue_name="fair", levels=WHOLE)
    c = add_job(db_url, job_user="carol", project="p3", queue_name="fair", levels=WHOLE)
    round_at(oar, now)
    # carol consumed nothing in the window, then bob (10 %), then alice (90 %)
    assert job(db_url, c)["state"] == "toLaunch"
    step = 3600 + SECURITY
    assert starts(db_url, [b, a]) == [now + step, now + 2 * step]


def test_targets_change_the_order(cluster, db_url, oar_conf, now):
    oar = cluster
    with open(oar_conf, "a") as conf:
        conf.write('SCHEDULER_FAIRSHARING_USER_TARGETS="alice:100"\n')
    assert oar("oarnotify", "--add_queue", f"fair,2,{FAIR}").rc == 0
    account(db_url, now, "alice", "p1", "fair", used=5000, asked=5000)
    account(db_url, now, "bob", "p1", "fair", used=1000, asked=1000)
    b = add_job(db_url, job_user="bob", project="p1", queue_name="fair", levels=WHOLE)
    a = add_job(db_url, job_user="alice", project="p1", queue_name="fair", levels=WHOLE)
    round_at(oar, now)
    # alice is below her 100 % target: she goes first although bob submitted first
    assert job(db_url, a)["state"] == "toLaunch"
    assert prediction(db_url, b) == now + 3600 + SECURITY


def test_fifo_queue_ignores_consumption(cluster, db_url, now):
    oar = cluster
    account(db_url, now, "alice", "p1", "default", used=9000, asked=9000)
    a = add_job(db_url, job_user="alice", project="p1", levels=WHOLE)
    b = add_job(db_url, job_user="bob", project="p2", levels=WHOLE)
    round_at(oar, now)
    assert job(db_url, a)["state"] == "toLaunch"
    assert prediction(db_url, b) == now + 3600 + SECURITY


def test_bad_targets_is_a_clear_error(cluster, db_url, oar_conf, now):
    oar = cluster
    with open(oar_conf, "a") as conf:
        conf.write('SCHEDULER_FAIRSHARING_PROJECT_TARGETS="p1 75"\n')
    assert oar("oarnotify", "--add_queue", f"fair,2,{FAIR}").rc == 0
    add_job(db_url, job_user="alice", project="p1", queue_name="fair", levels=WHOLE)
    result = oar("oar-metasched", "--now", str(now))
    assert result.rc == 3
    assert result.err.startswith("#ERROR: SCHEDULER_FAIRSHARING_PROJECT_TARGETS: cannot read")
    assert "Traceback" not in result.err
