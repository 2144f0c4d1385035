"""oar-metasched on both backends: one round through the commands, checked in the DB and oarstat."""

from __future__ import annotations

import json
import time

import pytest

from tests.sqlutil import run_sql

SECURITY = 1        # SCHEDULER_JOB_SECURITY_TIME default
NODE = 8            # resources (cores) per node of the `cluster` fixture


def job_id_of(result) -> int:
    assert result.rc == 0, result.err
    ids = [int(line.split("=", 1)[1]) for line in result.lines if line.startswith("OAR_JOB_ID=")]
    assert ids, result.out
    return ids[0]


@pytest.fixture
def now():
    """A round date after every submission of the test (jobs are submitted at real time)."""
    return int(time.time()) + 100


def sub(oar, *argv) -> int:
    return job_id_of(oar("oarsub", *argv))


def round_at(oar, now):
    result = oar("oar-metasched", "--now", str(now))
    assert result.rc == 0, result.err
    return result.out.strip()


def job(db_url, job_id):
    row = run_sql(db_url, "SELECT state, message, reservation, assigned_moldable_job, start_time "
                          "FROM jobs WHERE job_id = %d" % job_id)[0]
    return dict(zip(("state", "message", "reservation", "moldable", "start"), row))


def stat(oar, job_id):
    result = oar("oarstat", "-f", "-j", str(job_id), "-J")
    assert result.rc == 0, result.err
    return json.loads(result.out)[str(job_id)]


def assigned(db_url, job_id):
    return sorted(r for (r,) in run_sql(
        db_url, "SELECT a.resource_id FROM assigned_resources a JOIN jobs j "
                "ON j.assigned_moldable_job = a.moldable_job_id WHERE j.job_id = %d" % job_id))


def prediction(db_url, job_id):
    rows = run_sql(db_url, "SELECT p.start_time FROM gantt_jobs_predictions p JOIN moldable_job_descriptions m "
                           "ON m.moldable_id = p.moldable_job_id WHERE m.moldable_job_id = %d" % job_id)
    return rows[0][0] if rows else None


def test_idle_cluster_starts_a_job_now(cluster, db_url, now):
    oar = cluster
    jid = sub(oar, "-l", "/nodes=1,walltime=2:00:00", "sleep 1")
    assert round_at(oar, now) == ("Scheduled 1 jobs: 1 to launch, 0 planned, 0 not schedulable, "
                                  "0 besteffort kills.")
    row = job(db_url, jid)
    assert (row["state"], row["start"], row["message"]) == ("toLaunch", now, "R=8,W=2:0:0,J=B,Q=default")
    assert assigned(db_url, jid) == list(range(1, 9))
    logs = run_sql(db_url, "SELECT job_state, date_stop FROM job_state_logs WHERE job_id = %d "
                           "ORDER BY job_state_log_id" % jid)
    assert [(s, stop) for s, stop in logs] == [("Waiting", now), ("toLaunch", 0)]
    assert run_sql(db_url, "SELECT start_time FROM gantt_jobs_predictions WHERE moldable_job_id = 0") == [(now,)]


def test_full_cluster_plans_the_next_job_after_the_running_one(cluster, db_url, now):
    oar = cluster
    first = sub(oar, "-l", "/nodes=4,walltime=1:00:00", "a")
    round_at(oar, now)
    assert job(db_url, first)["state"] == "toLaunch"
    second = sub(oar, "-l", "/nodes=1,walltime=1:00:00", "b")
    out = round_at(oar, now + 10)
    assert out.startswith("Scheduled 1 jobs: 0 to launch, 1 planned")
    assert job(db_url, second)["state"] == "Waiting"
    data = stat(oar, second)
    assert data["scheduled_start"] == now + 3600 + SECURITY
    assert sorted(data["scheduled_resources"]) == list(range(1, 9))


def test_backfilling_of_a_short_job(cluster, db_url, now):
    oar = cluster
    big = sub(oar, "-l", "/nodes=2,walltime=2:00:00", "a")
    whole = sub(oar, "-l", "/nodes=4,walltime=1:00:00", "b")
    short = sub(oar, "-l", "/nodes=2,walltime=1:00:00", "c")
    long_ = sub(oar, "-l", "/nodes=2,walltime=3:00:00", "d")
    round_at(oar, now)
    assert job(db_url, big)["state"] == "toLaunch"
    assert prediction(db_url, whole) == now + 7200 + SECURITY
    assert job(db_url, short)["state"] == "toLaunch"        # fits in the hole, before `whole`
    # a job too long for the hole goes after `whole`
    assert prediction(db_url, long_) == now + 7200 + SECURITY + 3600 + SECURITY


def test_property_constraint(cluster, db_url, now):
    oar = cluster
    result = oar("oarnodesetting", "-p", "switch=sw1", "-h", "node-3")
    assert result.rc == 0, result.err
    first = sub(oar, "-p", "switch = 'sw1'", "-l", "/nodes=1,walltime=1:00:00", "a")
    second = sub(oar, "-p", "switch = 'sw1'", "-l", "/core=1,walltime=1:00:00", "b")
    other = sub(oar, "-l", "/nodes=1,walltime=1:00:00", "c")
    round_at(oar, now)
    assert assigned(db_url, first) == list(range(17, 25))
    assert prediction(db_url, second) == now + 3600 + SECURITY
    assert stat(oar, second)["scheduled_resources"] == [17]
    assert assigned(db_url, other) == list(range(1, 9))


def test_dependency_chain_and_failed_dependency(cluster, db_url, now):
    oar = cluster
    first = sub(oar, "-l", "/nodes=1,walltime=1:00:00", "a")
    second = sub(oar, "-a", str(first), "-l", "/nodes=1,walltime=0:30:00", "b")
    third = sub(oar, "-a", str(second), "-l", "/nodes=1,walltime=0:10:00", "c")
    round_at(oar, now)
    assert job(db_url, first)["state"] == "toLaunch"
    assert prediction(db_url, second) == now + 3600
    assert prediction(db_url, third) == now + 3600 + 1800
    # the first job ends with exit code 1: the second is blocked, with the reason
    run_sql(db_url, "UPDATE jobs SET state = 'Terminated', exit_code = 1 WHERE job_id = %d" % first)
    out = round_at(oar, now + 60)
    assert "0 to launch" in out
    assert job(db_url, second)["message"] == f"dependency on job {first} which ended with exit code 1"
    assert prediction(db_url, second) is None
    assert prediction(db_url, third) is None
    assert job(db_url, second)["state"] == "Waiting"
    # a required job in Error is ignored (OAR 2)
    run_sql(db_url, "UPDATE jobs SET state = 'Error' WHERE job_id = %d" % first)
    round_at(oar, now + 120)
    assert job(db_url, second)["state"] == "toLaunch"


def test_besteffort_job_killed_for_a_normal_job(cluster, db_url, now):
    oar = cluster
    best = sub(oar, "-t", "besteffort", "-l", "/nodes=4,walltime=5:00:00", "be")
    round_at(oar, now)
    assert job(db_url, best)["state"] == "toLaunch"
    run_sql(db_url, "UPDATE jobs SET state = 'Running' WHERE job_id = %d" % best)
    normal = sub(oar, "-l", "/nodes=1,walltime=1:00:00", "n")
    out = round_at(oar, now + 10)
    assert out.endswith("1 besteffort kills.")
    assert job(db_url, normal)["state"] == "Waiting"        # until the besteffort job is gone
    assert run_sql(db_url, "SELECT frag_id_job, frag_state FROM frag_jobs") == [(best, "LEON")]
    assert run_sql(db_url, "SELECT job_id FROM event_logs WHERE type = 'BESTEFFORT_KILL'") == [(best,)]
    run_sql(db_url, "UPDATE jobs SET state = 'Error' WHERE job_id = %d" % best)
    assert round_at(oar, now + 20).endswith("0 besteffort kills.")
    assert job(db_url, normal)["state"] == "toLaunch"


def test_reservation_accepted_then_kept_and_rejected(cluster, db_url, now):
    oar = cluster
    start = now + 7200
    date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))
    accepted = sub(oar, "-r", date, "-l", "/nodes=4,walltime=1:00:00")
    round_at(oar, now)
    assert (job(db_url, accepted)["reservation"], job(db_url, accepted)["state"]) == ("Scheduled", "Waiting")
    assert prediction(db_url, accepted) == start
    rejected = sub(oar, "-r", date, "-l", "/nodes=1,walltime=1:00:00")
    batch = sub(oar, "-l", "/nodes=4,walltime=3:00:00", "x")     # must go after the reservation
    round_at(oar, now + 10)
    assert prediction(db_url, accepted) == start                  # kept its slot
    row = job(db_url, rejected)
    assert row["state"] == "Error" and row["message"].startswith("reservation rejected")
    logs = run_sql(db_url, "SELECT job_state FROM job_state_logs WHERE job_id = %d "
                           "ORDER BY job_state_log_id" % rejected)
    assert [s for (s,) in logs] == ["Waiting", "Error"]
    assert prediction(db_url, batch) == start + 3600 + SECURITY
    # its start has come: it is launched on its resources
    round_at(oar, start)
    assert job(db_url, accepted)["state"] == "toLaunch"
    assert assigned(db_url, accepted) == list(range(1, 33))


def test_broken_job_gets_a_message_and_others_are_scheduled(cluster, db_url, now):
    oar = cluster
    broken = sub(oar, "-l", "/nodes=1,walltime=1:00:00", "a")
    bad_expr = sub(oar, "-l", "/nodes=1,walltime=1:00:00", "b")
    fine = sub(oar, "-l", "/nodes=1,walltime=1:00:00", "c")
    run_sql(db_url, "DELETE FROM job_resource_descriptions WHERE res_job_group_id IN ("
                    "SELECT g.res_group_id FROM job_resource_groups g JOIN moldable_job_descriptions m "
                    "ON m.moldable_id = g.res_group_moldable_id WHERE m.moldable_job_id = %d)" % broken)
    run_sql(db_url, "UPDATE jobs SET properties = 'nosuch = 1' WHERE job_id = %d" % bad_expr)
    out = round_at(oar, now)
    assert "1 to launch" in out and "2 not schedulable" in out
    assert "no level" in job(db_url, broken)["message"]
    assert "nosuch" in job(db_url, bad_expr)["message"]
    assert job(db_url, fine)["state"] == "toLaunch"


def test_gantt_tables_replaced_each_round(cluster, db_url, now):
    oar = cluster
    for name in "abc":
        sub(oar, "-l", "/nodes=4,walltime=1:00:00", name)
    round_at(oar, now)
    round_at(oar, now + 5)
    for table in ("gantt_jobs_predictions", "gantt_jobs_predictions_visu"):
        rows = run_sql(db_url, f"SELECT moldable_job_id, start_time FROM {table} ORDER BY start_time")
        assert len(rows) == 3                              # two planned jobs + the reference date
        assert rows[0] == (0, now + 5)
    for table in ("gantt_jobs_resources", "gantt_jobs_resources_visu"):
        assert run_sql(db_url, f"SELECT COUNT(*) FROM {table}") == [(64,)]


def test_admin_only_and_bad_now(cluster, db_url, monkeypatch, now):
    oar = cluster
    result = oar("oar-metasched", "--now", "soon")
    assert result.rc == 2 and result.err.startswith("#ERROR: ")
    jid = sub(oar, "-l", "/nodes=1,walltime=1:00:00", "a")
    monkeypatch.setattr("oar_appliance.cli.common.caller_name", lambda environ=None: "bob")
    result = oar("oar-metasched", "--now", str(now))
    assert result.rc == 8 and "only oar or root" in result.err
    assert job(db_url, jid)["state"] == "Waiting"
