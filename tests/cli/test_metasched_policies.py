"""oar-metasched policies on both backends: timesharing, placeholder/allow, containers,
resource availability, SCHEDULER_TIMEOUT and reservations at their start."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.cli.test_metasched import NODE, SECURITY, assigned, job, prediction, round_at, sub
from tests.jobdata import add_job
from tests.sqlutil import run_sql

HOUR = 3600


@pytest.fixture
def now():
    """A round date after every submission of the test (jobs are submitted at real time)."""
    return int(time.time()) + 100


def add_conf(path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


def node(n: int) -> list[int]:
    return list(range((n - 1) * NODE + 1, n * NODE + 1))


def running(db_url, now, resources, **kw):
    return add_job(db_url, state="Running", start_time=now - 10, resources=resources, **kw)


def planned_on(db_url, job_id):
    """The resources of the job's slot in the Gantt."""
    return sorted(r for (r,) in run_sql(
        db_url, "SELECT r.resource_id FROM gantt_jobs_resources r JOIN moldable_job_descriptions m "
                "ON m.moldable_id = r.moldable_job_id WHERE m.moldable_job_id = %d" % job_id))


def events(db_url, kind):
    return [j for (j,) in run_sql(db_url, "SELECT job_id FROM event_logs WHERE type = '%s' "
                                          "ORDER BY job_id" % kind)]


# ----------------------------------------------------------------------------- timesharing

def test_timesharing_user_mode_shares_only_with_the_same_user(cluster, db_url, now):
    oar = cluster
    nodes1 = (("network_address", 1),)
    running(db_url, now, node(1), job_user="alice", walltime=HOUR, levels=nodes1,
            types=["timesharing=user,*"])
    alice = add_job(db_url, job_user="alice", job_name="other", walltime=600, levels=nodes1,
                    types=["timesharing=user,*"])
    bob = add_job(db_url, job_user="bob", walltime=600, levels=nodes1, types=["timesharing=user,*"])
    plain = add_job(db_url, job_user="alice", walltime=600, levels=(("network_address", 3),))
    round_at(oar, now)
    assert job(db_url, alice)["state"] == "toLaunch"
    assert assigned(db_url, alice) == node(1)               # shares alice's running job
    assert assigned(db_url, bob) == node(2)                 # not alice's node
    # a job that is not timesharing shares nothing: node-2 frees after bob's job
    assert job(db_url, plain)["state"] == "Waiting"
    assert prediction(db_url, plain) == now + 600 + SECURITY


def test_timesharing_name_mode_through_oarsub(cluster, db_url, now):
    oar = cluster
    first = sub(oar, "-t", "timesharing=*,name", "-n", "sim", "-l", "/nodes=4,walltime=1:00:00", "a")
    same = sub(oar, "-t", "timesharing=*,name", "-n", "sim", "-l", "/nodes=2,walltime=1:00:00", "b")
    other = sub(oar, "-t", "timesharing=*,name", "-n", "post", "-l", "/nodes=1,walltime=1:00:00", "c")
    anyone = sub(oar, "-t", "timesharing", "-n", "sim", "-l", "/nodes=1,walltime=1:00:00", "d")
    round_at(oar, now)
    assert job(db_url, first)["state"] == job(db_url, same)["state"] == "toLaunch"
    assert assigned(db_url, same) == node(1) + node(2)
    for jid in (other, anyone):                             # other name / other mode
        assert job(db_url, jid)["state"] == "Waiting"
        assert prediction(db_url, jid) == now + HOUR + SECURITY


# ----------------------------------------------------------------------------- placeholder

def test_placeholder_resources_go_to_allow_jobs(cluster, db_url, now):
    oar = cluster
    holder = sub(oar, "-t", "placeholder=night", "-l", "/nodes=2,walltime=2:00:00", "sleep 1")
    round_at(oar, now)
    assert assigned(db_url, holder) == node(1) + node(2)
    run_sql(db_url, "UPDATE jobs SET state = 'Running' WHERE job_id = %d" % holder)
    normal = sub(oar, "-l", "/nodes=3,walltime=1:00:00", "n")
    allowed = sub(oar, "-t", "allow=night", "-l", "/nodes=2,walltime=1:00:00", "a")
    stranger = sub(oar, "-t", "allow=day", "-l", "/nodes=3,walltime=1:00:00", "s")
    round_at(oar, now + 10)
    assert prediction(db_url, normal) == now + 2 * HOUR + SECURITY
    assert job(db_url, allowed)["state"] == "toLaunch"
    assert assigned(db_url, allowed) == node(1) + node(2)
    assert prediction(db_url, stranger) == now + 2 * HOUR + SECURITY + HOUR + SECURITY


# ----------------------------------------------------------------------------- containers

def test_inner_jobs_in_a_running_container(cluster, db_url, now):
    oar = cluster
    container = sub(oar, "-t", "container", "-l", "/nodes=2,walltime=2:00:00", "c")
    round_at(oar, now)
    assert assigned(db_url, container) == node(1) + node(2)
    run_sql(db_url, "UPDATE jobs SET state = 'Running' WHERE job_id = %d" % container)
    inner = sub(oar, "-t", f"inner={container}", "-l", "/nodes=2,walltime=1:00:00", "i")
    later = sub(oar, "-t", f"inner={container}", "-l", "/nodes=1,walltime=0:30:00", "l")
    too_big = sub(oar, "-t", f"inner={container}", "-l", "/nodes=3,walltime=0:10:00", "b")
    too_long = sub(oar, "-t", f"inner={container}", "-l", "/nodes=1,walltime=2:00:00", "t")
    lost = sub(oar, "-t", "inner=999999", "-l", "/nodes=1,walltime=0:10:00", "x")
    outside = sub(oar, "-l", "/nodes=2,walltime=1:00:00", "o")
    out = round_at(oar, now + 10)
    assert "3 not schedulable" in out
    assert job(db_url, inner)["state"] == "toLaunch"
    assert assigned(db_url, inner) == node(1) + node(2)
    assert prediction(db_url, later) == now + 10 + HOUR + SECURITY
    assert "in container job %d" % container in job(db_url, too_big)["message"]
    assert "in container job %d" % container in job(db_url, too_long)["message"]
    assert "container job 999999 is not a running or waiting container" in job(db_url, lost)["message"]
    assert assigned(db_url, outside) == node(3) + node(4)   # the round went on
    # the running inner job holds its part of the container in the next rounds
    run_sql(db_url, "UPDATE jobs SET state = 'Running' WHERE job_id = %d" % inner)
    again = sub(oar, "-t", f"inner={container}", "-l", "/nodes=1,walltime=0:10:00", "g")
    round_at(oar, now + 20)
    assert prediction(db_url, again) == now + 10 + HOUR + SECURITY


def test_container_and_inner_job_placed_in_the_same_round(cluster, db_url, now):
    oar = cluster
    big = sub(oar, "-l", "/nodes=3,walltime=1:00:00", "a")
    container = sub(oar, "-t", "container=box", "-l", "/nodes=2,walltime=3:00:00", "c")
    by_name = sub(oar, "-t", "inner=box", "-l", "/nodes=1,walltime=1:00:00", "i")
    round_at(oar, now)
    assert job(db_url, big)["state"] == "toLaunch"
    start = prediction(db_url, container)
    assert start == now + HOUR + SECURITY
    assert prediction(db_url, by_name) == start
    by_id = sub(oar, "-t", f"inner={container}", "-l", "/nodes=1,walltime=1:00:00", "j")
    run_sql(db_url, "UPDATE jobs SET state = 'Hold' WHERE job_id = %d" % container)
    round_at(oar, now + 5)                      # a held container: its inner jobs wait
    assert "no unfinished container job named 'box'" in job(db_url, by_name)["message"]
    assert "container job %d is not a running or waiting container" % container in job(db_url, by_id)["message"]
    assert prediction(db_url, by_name) is None and prediction(db_url, by_id) is None


# ----------------------------------------------------------------------------- availability

def test_available_upto_is_a_horizon(cluster, db_url, now):
    oar = cluster
    run_sql(db_url, "UPDATE resources SET available_upto = %d WHERE network_address = 'node-1'"
            % (now + 1800))
    run_sql(db_url, "UPDATE resources SET state = 'Absent', available_upto = %d "
                    "WHERE network_address = 'node-4'" % (now + 100 * HOUR))
    run_sql(db_url, "UPDATE resources SET state = 'Absent', available_upto = %d "
                    "WHERE network_address = 'node-3'" % (now - 10))
    whole = sub(oar, "-l", "/nodes=2,walltime=1:00:00", "w")
    short = sub(oar, "-l", "/nodes=1,walltime=0:20:00", "s")
    never = sub(oar, "-l", "/nodes=3,walltime=1:00:00", "n")
    round_at(oar, now)
    # planned on node-4 (Absent, to be woken up), which is not Alive: it is not launched
    assert planned_on(db_url, whole) == node(2) + node(4)   # not node-1 (ends), not node-3
    assert prediction(db_url, whole) == now and job(db_url, whole)["state"] == "Waiting"
    assert assigned(db_url, short) == node(1)
    assert "end of availability" in job(db_url, never)["message"]


def test_suspended_job_resources_of_listed_types(cluster, db_url, oar_conf, now):
    oar = cluster
    add_job(db_url, state="Suspended", start_time=now - 10, resources=node(1) + node(2),
            walltime=HOUR, levels=(("network_address", 2),))
    waiting = sub(oar, "-l", "/nodes=4,walltime=1:00:00", "w")
    round_at(oar, now)
    assert prediction(db_url, waiting) == now - 10 + HOUR + SECURITY
    add_conf(oar_conf, 'SCHEDULER_AVAILABLE_SUSPENDED_RESOURCE_TYPE="default licence"')
    round_at(oar, now + 1)
    assert job(db_url, waiting)["state"] == "toLaunch"


def test_always_assigned_resources(cluster, db_url, oar_conf, now):
    oar = cluster
    result = oar("oar-resources-add", "front-1", "-C", "1", "-c", "1")
    assert result.rc == 0, result.err
    run_sql(db_url, "UPDATE resources SET type = 'frontend' WHERE network_address = 'front-1'")
    front = run_sql(db_url, "SELECT resource_id FROM resources WHERE network_address = 'front-1'")[0][0]
    add_conf(oar_conf, 'SCHEDULER_RESOURCES_ALWAYS_ASSIGNED_TYPE="frontend"')
    first = sub(oar, "-l", "/nodes=1,walltime=1:00:00", "a")
    second = sub(oar, "-l", "/core=2,walltime=1:00:00", "b")
    round_at(oar, now)
    assert assigned(db_url, first) == node(1) + [front]
    assert assigned(db_url, second) == node(2)[:2] + [front]
    assert job(db_url, first)["message"].startswith("R=9,")


def test_gantt_hole_minimum_time(cluster, db_url, oar_conf, now):
    oar = cluster
    # an accepted reservation of the whole cluster 200 s from now leaves a 200 s hole
    add_job(db_url, reservation="Scheduled", start_time=now + 200, predicted_start=now + 200,
            resources=list(range(1, 33)), walltime=HOUR, levels=(("network_address", 4),))
    short = sub(oar, "-l", "/nodes=1,walltime=0:01:40", "s")
    round_at(oar, now)                                       # default: 300 s holes at least
    assert prediction(db_url, short) == now + 200 + HOUR + SECURITY
    add_conf(oar_conf, "SCHEDULER_GANTT_HOLE_MINIMUM_TIME=100")
    round_at(oar, now + 1)
    assert job(db_url, short)["state"] == "toLaunch"


# ----------------------------------------------------------------------------- timeout

def test_scheduler_timeout_stops_the_round(cluster, db_url, monkeypatch, now):
    oar = cluster
    ids = [sub(oar, "-l", "/nodes=1,walltime=1:00:00", str(i)) for i in range(5)]
    # a slow round cannot be produced reliably on a shared machine: the round's clock is
    # replaced by one that advances 4 s per reading (SCHEDULER_TIMEOUT=10 by default)
    ticks = itertools.count(0, 4)
    monkeypatch.setattr("oar_appliance.sched.metasched_policies._clock", lambda: next(ticks))
    out = round_at(oar, now)
    assert out.endswith("Stopped at SCHEDULER_TIMEOUT.")
    assert [job(db_url, j)["state"] for j in ids] == ["toLaunch"] * 2 + ["Waiting"] * 3
    for jid in ids[2:]:
        assert "SCHEDULER_TIMEOUT" in job(db_url, jid)["message"]
        assert prediction(db_url, jid) is None


# ----------------------------------------------------------------------------- reservations

def reserve(oar, start, resources):
    date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))
    return sub(oar, "-r", date, "-l", f"{resources},walltime=1:00:00")


def test_reservation_waits_then_starts_on_fewer_resources(cluster, db_url, now):
    oar = cluster
    start = now + 7200
    resv = reserve(oar, start, "/nodes=2")
    round_at(oar, now)
    assert job(db_url, resv)["reservation"] == "Scheduled"
    run_sql(db_url, "UPDATE resources SET state = 'Suspected' WHERE network_address = 'node-2'")
    round_at(oar, start + 10)
    row = job(db_url, resv)
    assert row["state"] == "Waiting" and "waiting for 8 missing resources" in row["message"]
    assert prediction(db_url, resv) == start
    round_at(oar, start + 300)                  # RESERVATION_WAITING_RESOURCES_TIMEOUT=300
    assert job(db_url, resv)["state"] == "toLaunch"
    assert assigned(db_url, resv) == node(1)
    assert events(db_url, "SCHEDULER_REDUCE_NB_NODES_FOR_RESERVATION") == [resv]


def test_reservation_whose_start_passed_by_its_walltime_goes_to_error(cluster, db_url, now):
    oar = cluster
    start = now + 7200
    resv = reserve(oar, start, "/nodes=1")
    round_at(oar, now)
    assert job(db_url, resv)["reservation"] == "Scheduled"
    round_at(oar, start + HOUR + 1)
    row = job(db_url, resv)
    assert row["state"] == "Error" and row["message"].startswith("reservation expired")
    assert events(db_url, "RESERVATION_EXPIRED") == [resv]
    logs = run_sql(db_url, "SELECT job_state FROM job_state_logs WHERE job_id = %d "
                           "ORDER BY job_state_log_id" % resv)
    assert [s for (s,) in logs] == ["Waiting", "Error"]


def test_reservation_starting_kills_besteffort_jobs_on_its_resources(cluster, db_url, now):
    oar = cluster
    start = now + 7200
    best = running(db_url, now, node(1), queue_name="besteffort", types=["besteffort"],
                   walltime=10 * HOUR, levels=(("network_address", 1),))
    resv = reserve(oar, start, "/nodes=1")
    round_at(oar, now)
    assert job(db_url, resv)["reservation"] == "Scheduled"      # besteffort does not block it
    out = round_at(oar, start)
    assert out.endswith("1 besteffort kills.")
    assert job(db_url, resv)["state"] == "Waiting"              # until it is gone
    assert run_sql(db_url, "SELECT frag_id_job FROM frag_jobs") == [(best,)]
    assert events(db_url, "BESTEFFORT_KILL") == [best]
    run_sql(db_url, "UPDATE jobs SET state = 'Error' WHERE job_id = %d" % best)
    assert round_at(oar, start + 10).endswith("0 besteffort kills.")
    assert job(db_url, resv)["state"] == "toLaunch" and assigned(db_url, resv) == node(1)
