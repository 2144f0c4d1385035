"""The layer-4 pieces of the server called directly on the database (both backends):
claims are taken once, end reports recorded once, final states from the database."""

from __future__ import annotations

import time

from oar_appliance import job_lifecycle as lifecycle
from oar_appliance import launcher, leon
from oar_appliance.conf import load_config
from oar_appliance.db import connection
from oar_appliance.execution import LocalConnector
from oar_appliance.sched import metasched


def _setup(lab):
    config = load_config(str(lab.conf))
    db = connection.connect(lab.db_url)
    return config, db


def test_claimed_once_and_ended_once(lab):
    job_id = lab.oarsub("-l", "/nodes=1", "true")
    config, db = _setup(lab)
    try:
        now = int(time.time())
        assert metasched.run_round(db, config, now).to_launch == [job_id]
        orders = launcher.claim(db, config, now)
        assert [o.job_id for o in orders] == [job_id]
        assert launcher.claim(db, config, now) == []            # never twice
        data = orders[0].data
        assert data["hosts"] == [orders[0].head]
        assert len(data["node_file_lines"]) == 2 and set(data["node_file_lines"]) == {orders[0].head}
        assert sorted(data["cpuset"]) == [0, 1]
        assert data["stdout_file"] == f"{lab.work}/OAR.{job_id}.stdout"
        assert data["server"] == {"host": "127.0.0.1", "port": lab.port}
        # oar.conf of the node's job resource manager and suspend/resume scripts
        assert data["job_resource_manager"] == "none" and data["cgroup_base"] == "/oar"
        assert (data["just_after_suspend_exec_file"], data["just_before_resume_exec_file"]) == (None, None)
        assert data["suspend_resume_script_timeout"] == 60
        (challenge,) = db.execute_sql(
            'SELECT "challenge" FROM "challenges" WHERE "job_id" = ' + connection.backend_for(db).placeholder,
            [job_id]).fetchone()
        wrong = lifecycle.EndReport(job_id, "wrong", 0, 0, "node-1")
        assert lifecycle.record_end(db, wrong, now) == (False, "bad challenge")
        assert lab.state(job_id) == "Launching"
        report = lifecycle.EndReport(job_id, challenge, 0, 256, "node-1")
        assert lifecycle.record_end(db, report, now + 1) == (True, None)
        assert lab.state(job_id) == "Finishing"
        # the end came before the launcher saw the start: Running is logged all the same
        states = [s for s, _, _ in lab.state_logs(job_id)]
        assert states == ["Waiting", "toLaunch", "Launching", "Running", "Finishing"]
        assert lifecycle.record_end(db, report, now + 2) == (True, None)
        assert [s for s, _, _ in lab.state_logs(job_id)] == states
        assert lifecycle.complete_end(db, config, LocalConnector(), job_id, lambda: now + 3) == "Terminated"
        assert lifecycle.complete_end(db, config, LocalConnector(), job_id, lambda: now + 4) is None
        job = lab.job(job_id)
        assert (job["state"], job["exit_code"], job["stop_time"]) == ("Terminated", 256, now + 3)
    finally:
        db.close()


def test_job_data_carries_the_suspend_resume_scripts(lab):
    lab.write_conf('JUST_AFTER_SUSPEND_EXEC_FILE="/usr/local/sbin/after"',
                   'JUST_BEFORE_RESUME_EXEC_FILE="/usr/local/sbin/before"',
                   "SUSPEND_RESUME_SCRIPT_TIMEOUT=7", "JOB_RESOURCE_MANAGER=cgroup",
                   "JOB_RESOURCE_MANAGER_CGROUP_BASE=site/oar")
    job_id = lab.oarsub("true")
    config, db = _setup(lab)
    try:
        (order,) = launcher.build_job_data(db, config, [job_id])
        data = order.data
        assert data["just_after_suspend_exec_file"] == "/usr/local/sbin/after"
        assert data["just_before_resume_exec_file"] == "/usr/local/sbin/before"
        assert data["suspend_resume_script_timeout"] == 7
        assert (data["job_resource_manager"], data["cgroup_base"]) == ("cgroup", "site/oar")
    finally:
        db.close()


def test_oarexec_failure_codes_make_errors(lab):
    job_id = lab.oarsub("true")
    config, db = _setup(lab)
    try:
        now = int(time.time())
        metasched.run_round(db, config, now)
        launcher.claim(db, config, now)
        (challenge,) = db.execute_sql(
            'SELECT "challenge" FROM "challenges" WHERE "job_id" = ' + connection.backend_for(db).placeholder,
            [job_id]).fetchone()
        lifecycle.record_end(db, lifecycle.EndReport(job_id, challenge, 1, None, "node-1"), now)
        assert lifecycle.final_state(db, job_id) == "Error"
        assert "PROLOGUE_ERROR" in lab.events(job_id)
    finally:
        db.close()


def test_leon_errors_jobs_that_never_started(lab):
    waiting = lab.oarsub("true")
    held = lab.oarsub("--hold", "true")
    for job_id in (waiting, held):
        assert lab.cmd("oardel", str(job_id)).rc == 0
    config, db = _setup(lab)
    try:
        report = leon.run(db, config, int(time.time()))
        assert sorted(report.errors) == sorted([waiting, held])
        assert report.actions == []
        assert [lab.state(j) for j in (waiting, held)] == ["Error", "Error"]
        assert [lab.frag_state(j) for j in (waiting, held)] == ["FRAGGED", "FRAGGED"]
        assert leon.run(db, config, int(time.time())).errors == []      # done once
    finally:
        db.close()


def test_job_data_carries_the_job_key(lab):
    with_key, without = lab.oarsub("-k", "true"), lab.oarsub("true")
    config, db = _setup(lab)
    try:
        orders = {order.job_id: order.data for order in launcher.build_job_data(db, config, [with_key, without])}
        (public,) = db.execute_sql(
            'SELECT "ssh_public_key" FROM "challenges" WHERE "job_id" = ' + connection.backend_for(db).placeholder,
            (with_key,)).fetchone()
        assert public.startswith("ssh-") and orders[with_key]["job_key"] == public
        assert orders[without]["job_key"] is None
    finally:
        db.close()


def test_job_data_carries_the_devices_of_its_nodes(lab):
    """Each node's data: the devices of the job's resources there, and of all the node's
    resources (the node denies the difference); none without the column or with
    ``JOB_RESOURCE_MANAGER=none``."""
    assert lab.cmd("oarproperty", "-a", "gpu_device", "-c").rc == 0
    rows = lab.sql('SELECT "resource_id", "network_address" FROM "resources" ORDER BY "resource_id"')
    for resource_id, _ in rows:  # node-1: /dev/gpu1, /dev/gpu2; node-2: /dev/gpu3, none
        if resource_id != rows[-1][0]:
            assert lab.cmd("oarnodesetting", "-r", str(resource_id), "-p",
                           f"gpu_device=/dev/gpu{resource_id}").rc == 0
    first, second = rows[0][1], rows[-1][1]
    job_id = lab.oarsub("-l", "/nodes=2/core=1", "true")
    config, db = _setup(lab)
    config = {**config, "JOB_RESOURCE_MANAGER": "auto"}  # the lab's is none
    try:
        now = int(time.time())
        assert metasched.run_round(db, config, now).to_launch == [job_id]
        (order,) = launcher.build_job_data(db, config, [job_id])
        setup = order.node_setup
        assert set(setup["node_devices"]) == {first, second} == set(setup["devices"])
        assert setup["node_devices"] == {first: ["/dev/gpu1", "/dev/gpu2"], second: ["/dev/gpu3"]}
        # one core on each node: one of the node's devices (or none: node-2's 2nd core)
        assert len(setup["devices"][first]) == 1 and set(setup["devices"][first]) < {"/dev/gpu1", "/dev/gpu2"}
        assert set(setup["devices"][second]) <= {"/dev/gpu3"}
        head = order.head
        assert (order.data["devices"], order.data["node_devices"]) == (setup["devices"][head],
                                                                       setup["node_devices"][head])
        for off in ({"JOB_RESOURCE_MANAGER": "none"}, {"JOB_RESOURCE_MANAGER_DEVICES_DB_FIELD": "no_such"}):
            (order,) = launcher.build_job_data(db, {**config, **off}, [job_id])
            assert order.node_setup["node_devices"] == {first: [], second: []}
            assert order.data["devices"] == [] and order.data["node_devices"] == []
    finally:
        db.close()
