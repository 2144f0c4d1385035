"""Sarko on both backends: walltime kills, checkpoints, stuck kills, the Dead switch."""

from __future__ import annotations

from oar_appliance import resources, sarko
from oar_appliance.db import resource_table
from oar_appliance.db.models import EventLog, FragJob, JobStateLog
from tests.jobdata import add_job
from tests.services.helpers import T0, config, events, frag_state, make_cluster, state_logs


def test_walltime_reached_gives_a_kill_request_and_a_walltime_event(db, db_url):
    cluster = make_cluster(db)
    late = add_job(db_url, state="Running", walltime=600, start_time=T0, resources=cluster["node-1"])
    on_time = add_job(db_url, state="Running", walltime=3600, start_time=T0, resources=cluster["node-2"])

    before = sarko.run(db, config(), T0 + 599)
    assert before.walltime_kills == [] and frag_state(late) is None

    report = sarko.run(db, config(), T0 + 600)
    assert report.walltime_kills == [late]
    assert report.leon_needed
    assert frag_state(late) == "LEON" and frag_state(on_time) is None
    assert FragJob.get(FragJob.frag_id_job == late).frag_date == T0 + 600
    walltime_events = events(late, "WALLTIME")
    assert len(walltime_events) == 1 and walltime_events[0].to_check == "NO"
    assert len(events(late, "FRAG_JOB_REQUEST")) == 1
    assert events(on_time) == []

    # a later round does not ask again
    again = sarko.run(db, config(), T0 + 700)
    assert again.walltime_kills == [] and not again.leon_needed
    assert len(events(late, "WALLTIME")) == 1


def test_time_spent_suspended_extends_the_deadline(db, db_url):
    cluster = make_cluster(db)
    job = add_job(db_url, state="Running", walltime=600, start_time=T0, resources=cluster["node-1"])
    with db.atomic():
        JobStateLog.insert_many([
            {"job_id": job, "job_state": "Suspended", "date_start": T0 + 100, "date_stop": T0 + 250},
            {"job_id": job, "job_state": "Resuming", "date_start": T0 + 250, "date_stop": T0 + 300},
        ]).execute()
    assert sarko.run(db, config(), T0 + 799).walltime_kills == []
    assert sarko.run(db, config(), T0 + 800).walltime_kills == [job]


def test_a_job_already_being_killed_gets_no_second_request(db, db_url):
    cluster = make_cluster(db)
    job = add_job(db_url, state="Running", walltime=60, start_time=T0, resources=cluster["node-1"])
    with db.atomic():
        resources.request_kill(db, [job], T0 + 10, reason="user")
    report = sarko.run(db, config(), T0 + 100)
    assert report.walltime_kills == []
    assert events(job, "WALLTIME") == []


def test_checkpoint_request_once_before_the_walltime(db, db_url):
    cluster = make_cluster(db)
    job = add_job(db_url, state="Running", walltime=1000, start_time=T0, resources=cluster["node-1"],
                  checkpoint=120, checkpoint_signal=12)
    plain = add_job(db_url, state="Running", walltime=1000, start_time=T0, resources=cluster["node-2"])

    assert sarko.run(db, config(), T0 + 879).checkpoints == []
    assert events(job, "CHECKPOINT") == []

    report = sarko.run(db, config(), T0 + 880)
    assert report.checkpoints == [job] and report.walltime_kills == []
    (event,) = events(job, "CHECKPOINT")
    assert event.to_check == "YES" and event.date == T0 + 880
    assert event.description.startswith(sarko.CHECKPOINT_DESCRIPTION_PREFIX)
    assert events(plain) == []

    # once, even after the server handled it (to_check back to NO)
    with db.atomic():
        EventLog.update(to_check="NO").where(EventLog.event_id == event.event_id).execute()
    assert sarko.run(db, config(), T0 + 950).checkpoints == []
    assert len(events(job, "CHECKPOINT")) == 1
    # at the walltime it is killed as any other job
    assert sarko.run(db, config(), T0 + 1000).walltime_kills == [job, plain]


def test_a_users_checkpoint_does_not_replace_the_automatic_one(db, db_url):
    cluster = make_cluster(db)
    job = add_job(db_url, state="Running", walltime=1000, start_time=T0, resources=cluster["node-1"],
                  checkpoint=100)
    with db.atomic():
        EventLog.insert(type="CHECKPOINT", job_id=job, date=T0 + 10, to_check="NO",
                        description=f"User alice requested a checkpoint on the job {job}").execute()
    assert sarko.run(db, config(), T0 + 950).checkpoints == [job]


def test_interactive_jobs_are_not_checkpointed(db, db_url):
    cluster = make_cluster(db)
    job = add_job(db_url, state="Running", walltime=1000, start_time=T0, resources=cluster["node-1"],
                  checkpoint=100, job_type="INTERACTIVE")
    batch = add_job(db_url, state="Running", walltime=1000, start_time=T0, resources=cluster["node-2"],
                    checkpoint=100)
    assert sarko.run(db, config(), T0 + 950).checkpoints == [batch]
    assert events(job, "CHECKPOINT") == []


def test_an_armed_kill_older_than_jobdel_walltime_is_exterminated(db, db_url):
    cluster = make_cluster(db)
    stuck = add_job(db_url, state="Running", walltime=6000, start_time=T0, resources=cluster["node-1"])
    young = add_job(db_url, state="Running", walltime=6000, start_time=T0, resources=cluster["node-2"])
    ended = add_job(db_url, state="Terminated", walltime=6000, start_time=T0, stop_time=T0 + 5)
    with db.atomic():
        FragJob.insert_many([
            {"frag_id_job": stuck, "frag_date": T0 + 100, "frag_state": "TIMER_ARMED"},
            {"frag_id_job": young, "frag_date": T0 + 300, "frag_state": "TIMER_ARMED"},
            {"frag_id_job": ended, "frag_date": T0 + 100, "frag_state": "TIMER_ARMED"},
        ]).execute()
    conf = config(JOBDEL_WALLTIME=300)
    assert sarko.run(db, conf, T0 + 399).exterminations == []
    report = sarko.run(db, conf, T0 + 400)
    assert report.exterminations == [stuck] and report.leon_needed
    assert frag_state(stuck) == "LEON_EXTERMINATE"
    assert frag_state(young) == "TIMER_ARMED"
    assert frag_state(ended) == "TIMER_ARMED"  # the job ended: nothing to exterminate
    assert sarko.run(db, conf, T0 + 600).exterminations == [young]


def _suspect(db, ids, when):
    with db.atomic():
        resources.request_state(db, ids, "Suspected")
        resources.apply_pending_states(db, when)


def test_suspected_resources_become_dead_after_dead_switch_time(db):
    cluster = make_cluster(db)
    first, second = cluster["node-1"], cluster["node-2"]
    _suspect(db, first, T0)
    _suspect(db, second, T0 + 100)
    conf = config(DEAD_SWITCH_TIME=600)

    assert sarko.run(db, conf, T0 + 599).dead_resources == []
    report = sarko.run(db, conf, T0 + 600)
    assert report.dead_resources == first and report.dead_hosts == ["node-1"]
    states = {r["resource_id"]: r["state"] for r in resource_table.select(db)}
    assert all(states[r] == "Dead" for r in first)
    assert all(states[r] == "Suspected" for r in second)
    # the Suspected interval is closed when Dead begins
    assert state_logs(first[0])[-2:] == [("Suspected", T0, T0 + 600, "NO"), ("Dead", T0 + 600, 0, "NO")]

    assert sarko.run(db, conf, T0 + 700).dead_resources == second
    assert sarko.run(db, conf, T0 + 800).dead_resources == []


def test_dead_switch_time_zero_means_never(db):
    cluster = make_cluster(db)
    _suspect(db, cluster["node-1"], T0)
    assert sarko.run(db, config(DEAD_SWITCH_TIME=0), T0 + 10**7).dead_resources == []
    assert {r["state"] for r in resource_table.select(db)} == {"Alive", "Suspected"}


def test_a_pending_state_request_is_left_to_node_change_state(db):
    cluster = make_cluster(db)
    _suspect(db, cluster["node-1"], T0)
    with db.atomic():
        resources.request_state(db, cluster["node-1"], "Alive")
    assert sarko.run(db, config(DEAD_SWITCH_TIME=60), T0 + 100).dead_resources == []


def test_expired_desktop_computing_nodes_are_suspected_and_their_jobs_killed(db, db_url):
    cluster = make_cluster(db, hosts=("desk-1", "desk-2", "node-3"))
    with db.atomic():
        resources.set_properties(db, cluster["desk-1"], {"desktop_computing": "YES", "expiry_date": T0 + 50}, T0)
        resources.set_properties(db, cluster["desk-2"], {"desktop_computing": "YES", "expiry_date": T0 + 500}, T0)
        resources.set_properties(db, cluster["node-3"], {"expiry_date": T0 + 50}, T0)  # not desktop
    job = add_job(db_url, state="Running", walltime=6000, start_time=T0, resources=cluster["desk-1"][:1])
    assert sarko.run(db, config(), T0 + 50).expired_resources == []
    report = sarko.run(db, config(), T0 + 51)
    assert report.expired_resources == cluster["desk-1"] and report.expired_jobs == [job]
    assert report.leon_needed and frag_state(job) == "LEON"
    states = {r["resource_id"]: r["state"] for r in resource_table.select(db)}
    assert {states[r] for r in cluster["desk-1"]} == {"Suspected"}
    assert {states[r] for r in cluster["desk-2"] + cluster["node-3"]} == {"Alive"}


def test_a_failing_part_is_reported_and_the_others_still_run(db, db_url, monkeypatch):
    cluster = make_cluster(db)
    job = add_job(db_url, state="Running", walltime=60, start_time=T0, resources=cluster["node-1"])
    _suspect(db, cluster["node-2"], T0)

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sarko, "check_walltimes", broken)  # stands for any failure of a part
    report = sarko.run(db, config(DEAD_SWITCH_TIME=10), T0 + 100)
    assert report.errors == ["walltime: RuntimeError: disk full"]
    assert report.walltime_kills == [] and frag_state(job) is None
    assert report.dead_resources == cluster["node-2"]
