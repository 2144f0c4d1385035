"""oar-metasched on both backends: fairsharing (karma order), quotas, energy saving."""

from __future__ import annotations

import time

import pytest

from tests.cli.test_metasched import SECURITY, assigned, job, prediction, round_at
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


# ----------------------------------------------------------------------------- quotas

NODE1 = (("network_address", 1),)


def quotas_conf(oar_conf, tmp_path, text):
    path = tmp_path / "scheduler_quotas.conf"
    path.write_text(text)
    with open(oar_conf, "a") as conf:
        conf.write(f'QUOTAS="yes"\nQUOTAS_CONF_FILE="{path}"\n')
    return path


def test_quotas_count_inner_jobs_and_timesharing_not_containers(cluster, db_url, oar_conf,
                                                                 tmp_path, now):
    oar = cluster
    quotas_conf(oar_conf, tmp_path, '{"rules": {"*,*,*,/": [8, -1, -1]}}')
    box = add_job(db_url, job_user="alice", state="Running", types=["container"],
                  resources=range(1, 17), start_time=now - 10, walltime=3 * 3600,
                  levels=(("network_address", 2),))
    inner = [f"inner={box}"]
    a1 = add_job(db_url, job_user="alice", levels=NODE1, types=inner)
    a2 = add_job(db_url, job_user="alice", levels=NODE1, types=inner)
    b1 = add_job(db_url, job_user="bob", levels=NODE1, types=inner)
    # carol's timesharing jobs could share one node, but her quota holds the second back
    t1 = add_job(db_url, job_user="carol", levels=NODE1, types=["timesharing=*,*"])
    t2 = add_job(db_url, job_user="carol", levels=NODE1, types=["timesharing=*,*"])
    round_at(oar, now)
    # the container's 16 resources count for nobody; alice's inner jobs do
    assert job(db_url, a1)["state"] == job(db_url, b1)["state"] == "toLaunch"
    assert assigned(db_url, a1) + assigned(db_url, b1) == list(range(1, 17))
    assert prediction(db_url, a2) == now + 3600 + SECURITY
    assert job(db_url, t1)["state"] == "toLaunch"
    assert prediction(db_url, t2) == now + 3600 + SECURITY   # carol: 8 + 8 > 8


def test_quota_per_user_delays_the_second_job(cluster, db_url, oar_conf, tmp_path, now):
    oar = cluster
    quotas_conf(oar_conf, tmp_path, '{"rules": {"*,*,*,/": [8, -1, -1], "*,*,*,*": [-1, 2, -1]}}')
    a1 = add_job(db_url, job_user="alice", levels=NODE1)
    a2 = add_job(db_url, job_user="alice", levels=NODE1, walltime=600)
    b1 = add_job(db_url, job_user="bob", levels=NODE1)
    b2 = add_job(db_url, job_user="bob", levels=NODE1, walltime=1200)
    out = round_at(oar, now)
    assert out.startswith("Scheduled 4 jobs: 2 to launch, 2 planned")
    assert job(db_url, a1)["state"] == "toLaunch" and job(db_url, b1)["state"] == "toLaunch"
    # 2 nodes stay free, but each user may hold 8 resources at once: after their first job
    assert prediction(db_url, a2) == now + 3600 + SECURITY
    assert prediction(db_url, b2) == now + 3600 + SECURITY
    # the running jobs count in the next round too
    run_sql(db_url, f"UPDATE jobs SET state = 'Running' WHERE job_id IN ({a1}, {b1})")
    c = add_job(db_url, job_user="carol", levels=NODE1)
    round_at(oar, now + 10)
    # at most 2 jobs at once: carol waits for the end of a2 (planned after the running ones)
    assert prediction(db_url, a2) == prediction(db_url, b2) == now + 3600 + SECURITY
    assert prediction(db_url, c) == now + 3600 + SECURITY + 600 + SECURITY
    assert job(db_url, c)["state"] == "Waiting"


def test_quota_off_by_default(cluster, db_url, now):
    oar = cluster
    a1 = add_job(db_url, job_user="alice", levels=NODE1)
    a2 = add_job(db_url, job_user="alice", levels=NODE1)
    round_at(oar, now)
    assert job(db_url, a1)["state"] == job(db_url, a2)["state"] == "toLaunch"


def test_quota_never_satisfiable_gets_a_message(cluster, db_url, oar_conf, tmp_path, now):
    oar = cluster
    quotas_conf(oar_conf, tmp_path, '{"rules": {"default,*,*,alice": [4, -1, -1]}}')
    a = add_job(db_url, job_user="alice", levels=NODE1)
    b = add_job(db_url, job_user="bob", levels=NODE1)
    round_at(oar, now)
    assert job(db_url, a)["message"] == "cannot be satisfied: moldable %d: no slot within the quotas" % (
        run_sql(db_url, f"SELECT moldable_id FROM moldable_job_descriptions WHERE moldable_job_id = {a}")[0][0])
    assert job(db_url, b)["state"] == "toLaunch"


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"rules": {"*,*,/": [1, 1, 1]}}', "must be 'queue,project,job_type,user'"),
    (None, "cannot read it"),
])
def test_bad_quotas_file_is_a_clear_error(cluster, db_url, oar_conf, tmp_path, now, snapshot,
                                          text, message):
    oar = cluster
    path = quotas_conf(oar_conf, tmp_path, text or "")
    if text is None:
        path.unlink()
    add_job(db_url, job_user="alice", levels=NODE1)
    before = snapshot()
    result = oar("oar-metasched", "--now", str(now))
    assert result.rc == 3
    assert result.err.startswith("#ERROR: ") and message in result.err and str(path) in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert snapshot() == before


# ----------------------------------------------------------------------------- energy saving

def energy_conf(oar_conf, text='ENERGY_SAVING_INTERNAL="yes"\n'):
    with open(oar_conf, "a") as conf:
        conf.write(text)


def lines_after_summary(out):
    return out.splitlines()[1:]


def test_wake_up_absent_nodes_and_launch_once_alive(cluster, db_url, oar_conf, now):
    oar = cluster
    energy_conf(oar_conf)
    run_sql(db_url, "UPDATE resources SET state = 'Absent' WHERE network_address IN ('node-1', 'node-2', 'node-3')")
    # node-3 may never be woken up (available_upto 0, as for maintenance)
    run_sql(db_url, "UPDATE resources SET available_upto = 0 WHERE network_address = 'node-3'")
    jid = add_job(db_url, levels=(("network_address", 2),))
    out = round_at(oar, now)
    assert out.splitlines()[0].startswith("Scheduled 1 jobs: 0 to launch, 1 planned")
    assert lines_after_summary(out) == ["Nodes to wake up: node-1 node-2", "Nodes to halt: node-4"]
    row = job(db_url, jid)
    assert row["state"] == "Waiting" and prediction(db_url, jid) == now
    # the nodes came up: the job starts on them
    run_sql(db_url, "UPDATE resources SET state = 'Alive' WHERE network_address IN ('node-1', 'node-2')")
    out = round_at(oar, now + 60)
    assert out.splitlines()[0].startswith("Scheduled 1 jobs: 1 to launch")
    assert lines_after_summary(out) == ["Nodes to halt: node-4"]
    assert job(db_url, jid)["state"] == "toLaunch"


def test_halt_only_idle_nodes_without_planned_jobs(cluster, db_url, oar_conf, now):
    oar = cluster
    energy_conf(oar_conf, 'SCHEDULER_NODE_MANAGER_SLEEP_CMD="/bin/true"\n'
                          "SCHEDULER_NODE_MANAGER_IDLE_TIME=600\nSCHEDULER_NODE_MANAGER_SLEEP_TIME=600\n")
    # node-1: a job ended 100 s ago; node-2: last_job_date 100 s ago; node-3: running job
    add_job(db_url, state="Terminated", resources=range(1, 9), start_time=now - 500, stop_time=now - 100)
    run_sql(db_url, f"UPDATE resources SET last_job_date = {now - 100} WHERE network_address = 'node-2'")
    add_job(db_url, state="Running", resources=range(17, 25), start_time=now - 10)
    out = round_at(oar, now)
    assert lines_after_summary(out) == ["Nodes to halt: node-4"]
    # later: node-1 and node-2 idle long enough; a reservation on node-4 in 300 s keeps it up
    later = now + 700
    resa = add_job(db_url, reservation="Scheduled", predicted_start=later + 300,
                   resources=range(25, 33), start_time=later + 300)
    out = round_at(oar, later)
    assert lines_after_summary(out) == ["Nodes to halt: node-1 node-2"]
    assert prediction(db_url, resa) == later + 300
    # with the reservation further than SLEEP_TIME, node-4 may sleep too
    run_sql(db_url, f"UPDATE gantt_jobs_predictions SET start_time = {later + 700} WHERE moldable_job_id = "
                    f"(SELECT moldable_id FROM moldable_job_descriptions WHERE moldable_job_id = {resa})")
    out = round_at(oar, later)
    assert lines_after_summary(out) == ["Nodes to halt: node-1 node-2 node-4"]


def test_no_energy_decisions_by_default_but_no_launch_on_absent(cluster, db_url, now):
    oar = cluster
    run_sql(db_url, "UPDATE resources SET state = 'Absent' WHERE network_address = 'node-1'")
    jid = add_job(db_url, levels=(("network_address", 4),))
    out = round_at(oar, now)
    assert out == "Scheduled 1 jobs: 0 to launch, 1 planned, 0 not schedulable, 0 besteffort kills."
    assert job(db_url, jid)["state"] == "Waiting"


def test_due_reservation_waits_for_its_nodes_to_wake_up(cluster, db_url, oar_conf, now):
    oar = cluster
    energy_conf(oar_conf)
    run_sql(db_url, "UPDATE resources SET state = 'Absent' WHERE network_address = 'node-1'")
    resa = add_job(db_url, reservation="Scheduled", predicted_start=now - 5, start_time=now - 5,
                   resources=range(1, 9), levels=NODE1)
    out = round_at(oar, now)
    assert "Nodes to wake up: node-1" in lines_after_summary(out)
    row = job(db_url, resa)
    assert row["state"] == "Waiting" and "not Alive yet" in row["message"]
    assert prediction(db_url, resa) == now - 5                 # its slot is kept
    run_sql(db_url, "UPDATE resources SET state = 'Alive' WHERE network_address = 'node-1'")
    round_at(oar, now + 30)
    assert job(db_url, resa)["state"] == "toLaunch"
    assert assigned(db_url, resa) == list(range(1, 9))


def test_nothing_planned_past_available_upto(cluster, db_url, now):
    oar = cluster
    run_sql(db_url, f"UPDATE resources SET available_upto = {now + 1800} WHERE network_address = 'node-1'")
    long_ = add_job(db_url, levels=NODE1, walltime=3600)
    short = add_job(db_url, levels=NODE1, walltime=600)
    whole = add_job(db_url, levels=(("network_address", 4),), walltime=600)
    round_at(oar, now)
    assert assigned(db_url, long_) == list(range(9, 17))     # node-1 goes away in 30 min
    assert assigned(db_url, short) == list(range(1, 9))
    # 4 nodes: node-2 is busy until node-1 is gone: never
    assert prediction(db_url, whole) is None
    (moldable,), = run_sql(db_url, "SELECT moldable_id FROM moldable_job_descriptions "
                                   f"WHERE moldable_job_id = {whole}")
    assert job(db_url, whole)["message"] == (f"cannot be satisfied: moldable {moldable}: no slot "
                                             "before the end of availability of the resources")
    assert job(db_url, whole)["state"] == "Waiting"
    # node-1 back for good: the 4 nodes job goes after the long one
    run_sql(db_url, "UPDATE resources SET available_upto = 2147483647 WHERE network_address = 'node-1'")
    round_at(oar, now + 5)
    assert prediction(db_url, whole) == now + 3600 + SECURITY


def test_quotas_policy_queue_without_the_quotas_key(cluster, db_url, oar_conf, tmp_path, now):
    oar = cluster
    path = tmp_path / "scheduler_quotas.conf"
    path.write_text('{"rules": {"*,*,*,/": [8, -1, -1]}}')
    with open(oar_conf, "a") as conf:
        conf.write(f'QUOTAS_CONF_FILE="{path}"\n')
    assert oar("oarnotify", "--add_queue", f"limited,2,{FAIR}_and_quotas").rc == 0
    # default queue: not refused, but counted (quotas are global)
    d1 = add_job(db_url, job_user="alice", levels=NODE1)
    d2 = add_job(db_url, job_user="alice", levels=NODE1)
    q1 = add_job(db_url, job_user="alice", levels=NODE1, queue_name="limited")
    q2 = add_job(db_url, job_user="bob", levels=NODE1, queue_name="limited")
    round_at(oar, now)
    assert job(db_url, d1)["state"] == job(db_url, d2)["state"] == "toLaunch"
    assert job(db_url, q2)["state"] == "toLaunch"
    # alice holds 16 resources through the default queue: her job in `limited` waits for
    # both of them to end
    assert prediction(db_url, q1) == now + 3600 + SECURITY
    # a broken file matters only when a queue applies it
    path.write_text("{")
    assert oar("oar-metasched", "--now", str(now + 1)).rc == 3
    run_sql(db_url, "UPDATE queues SET scheduler_policy = 'oar_sched_gantt_with_timesharing' "
                    "WHERE queue_name = 'limited'")
    assert oar("oar-metasched", "--now", str(now + 1)).rc == 0
