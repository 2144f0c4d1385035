"""Resource administration commands, run in-process on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time

import yaml

from oar_appliance.db import connection
from tests.sqlutil import run_sql


# --------------------------------------------------------------------------- the admin's day

def test_site_admin_registers_a_cluster_and_sees_it(cluster, db_url):
    oar = cluster
    assert oar("oarproperty", "-a", "gpu_model", "-c").rc == 0
    assert oar("oarproperty", "-a", "mem_gb").rc == 0
    listed = oar("oarproperty", "-l").lines
    assert {"host", "cpu", "core", "cpuset", "switch", "gpu_model", "mem_gb"} <= set(listed)

    # 4 nodes x 2 cpus x 4 cores: 32 resources, global cpu/core numbers, local cpusets
    table = oar("oarnodes")
    assert table.rc == 0
    assert len(table.lines) == 2 + 32
    data = json.loads(oar("oarnodes", "-J").out)
    assert len(data) == 32
    node2 = sorted((r for r in data.values() if r["network_address"] == "node-2"), key=lambda r: r["resource_id"])
    assert [r["cpu"] for r in node2] == [3, 3, 3, 3, 4, 4, 4, 4]
    assert [r["core"] for r in node2] == list(range(9, 17))
    assert [r["cpuset"] for r in node2] == list(range(8))
    assert all(r["state"] == "Alive" and r["host"] == "node-2" for r in node2)

    # states and properties
    assert oar("oarnodesetting", "-s", "Absent", "-h", "node-2").rc == 0
    assert oar("oarnodesetting", "-r", "1", "-p", "gpu_model=A100", "-p", "mem_gb=256").rc == 0
    assert oar("oarnodesetting", "--sql", "host = 'node-4'", "-s", "Dead", "-n").rc == 0
    states = json.loads(oar("oarnodes", "-s", "-J").out)
    assert set(states["node-2"].values()) == {"Absent"}
    assert set(states["node-4"].values()) == {"Dead"}
    assert set(states["node-1"].values()) == {"Alive"}

    # JSON and YAML carry the same fields: resource_id, network_address, state, every property
    by_json = json.loads(oar("oarnodes", "-r", "1", "-J").out)
    by_yaml = yaml.safe_load(oar("oarnodes", "-r", "1", "-Y").out)
    assert by_json == by_yaml
    one = by_json["1"]
    assert one["gpu_model"] == "A100" and one["mem_gb"] == 256
    assert {"resource_id", "network_address", "state", "cpu", "core", "cpuset", "host", "jobs"} <= set(one)

    # the --sql filter of the issue: cpu 1 has cores 1-4, so cores 1 and 2
    selected = json.loads(oar("oarnodes", "--sql", "cpu = 1 AND core < 3", "-J").out)
    assert sorted(int(k) for k in selected) == [1, 2]
    text = oar("oarnodes", "--sql", "cpu = 1 AND core < 3")
    assert [line.split()[1] for line in text.lines[2:]] == ["1", "2"]


def test_state_changes_are_logged(cluster, db_url):
    oar = cluster
    assert oar("oarnodesetting", "-r", "5", "-s", "Absent").rc == 0
    assert oar("oarnodesetting", "-r", "5", "-s", "Alive").rc == 0
    log = run_sql(db_url, "SELECT value, date_stop FROM resource_logs "
                       "WHERE resource_id = 5 AND attribute = 'state' ORDER BY resource_log_id")
    assert [v for v, _ in log] == ["Alive", "Absent", "Alive"]
    assert log[0][1] > 0 and log[1][1] > 0 and log[2][1] == 0
    assert run_sql(db_url, "SELECT state, next_state, state_num FROM resources WHERE resource_id = 5") == [
        ("Alive", "UnChanged", 1)]


def test_add_one_resource_with_properties(created, db_url):
    oar = created
    result = oar("oarnodesetting", "-a", "-h", "gpu-1", "-p", "cpu=7", "-p", "switch=sw3")
    assert result.rc == 0, result.err
    assert result.lines[0] == "New resource added: 1"
    assert run_sql(db_url, 'SELECT network_address, cpu, switch, state, type FROM resources') == [
        ("gpu-1", 7, "sw3", "Alive", "default")]


def test_default_host_is_this_host(created, hostname_is):
    oar = created
    hostname_is("frontal")
    assert oar("oarnodesetting", "-a").rc == 0
    assert oar("oarnodesetting", "-s", "Absent").rc == 0
    assert json.loads(oar("oarnodes", "-s", "-J").out) == {"frontal": {"1": "Absent"}}


def test_maintenance_and_drain(cluster, db_url):
    oar = cluster
    assert oar("oarnodesetting", "-h", "node-1", "-p", "available_upto=1900000000").rc == 0
    assert oar("oarnodesetting", "-h", "node-1", "-m", "on").rc == 0
    assert set(run_sql(db_url, "SELECT state, available_upto FROM resources WHERE host = 'node-1'")) == {("Absent", 0)}
    assert oar("oarnodesetting", "-h", "node-1", "-m", "off").rc == 0
    assert set(run_sql(db_url, "SELECT state, available_upto FROM resources WHERE host = 'node-1'")) == {
        ("Alive", 1900000000)}
    assert oar("oarnodesetting", "-r", "3", "-d", "on").rc == 0
    assert run_sql(db_url, "SELECT drain FROM resources WHERE resource_id = 3") == [("YES",)]
    assert run_sql(db_url, "SELECT value FROM resource_logs WHERE resource_id = 3 AND attribute = 'drain'") == [("YES",)]


def _running_job_on(db_url, resource_id, job_id=42):
    for sql in (
        f"INSERT INTO jobs (job_id, state, job_user, queue_name) VALUES ({job_id}, 'Running', 'alice', 'default')",
        f"INSERT INTO moldable_job_descriptions (moldable_id, moldable_job_id, moldable_walltime) VALUES ({job_id}, {job_id}, 3600)",
        f"INSERT INTO assigned_resources (moldable_job_id, resource_id) VALUES ({job_id}, {resource_id})",
    ):
        run_sql(db_url, sql)


def test_dead_node_kills_its_jobs_and_no_wait_returns(cluster, db_url):
    oar = cluster
    _running_job_on(db_url, 9)
    result = oar("oarnodesetting", "-h", "node-2", "-s", "Dead", "-n")
    assert result.rc == 0
    assert "Jobs to kill: 42" in result.out
    assert run_sql(db_url, "SELECT frag_id_job, frag_state FROM frag_jobs") == [(42, "LEON")]
    assert run_sql(db_url, "SELECT type, job_id FROM event_logs") == [("FRAG_JOB_REQUEST", 42)]


def test_absent_waits_for_the_end_of_jobs(cluster, db_url):
    oar = cluster
    _running_job_on(db_url, 9)

    def job_ends():
        time.sleep(1.0)
        run_sql(db_url, "UPDATE jobs SET state = 'Terminated' WHERE job_id = 42")

    ender = threading.Thread(target=job_ends)
    started = time.monotonic()
    ender.start()
    result = oar("oarnodesetting", "-h", "node-2", "-s", "Absent")
    ender.join()
    assert result.rc == 0, result.err
    assert "Waiting for the end of jobs: 42" in result.out
    assert time.monotonic() - started >= 1.0


def test_wait_timeout_gives_up_with_an_error(cluster, db_url):
    oar = cluster
    _running_job_on(db_url, 9)
    result = oar("oarnodesetting", "-h", "node-2", "-s", "Absent", "--wait-timeout", "1")
    assert result.rc == 7
    assert result.err.startswith("#ERROR: jobs still hold the resources: 42")
    # the state change itself was made: the admin asked for it and the kill is recorded
    assert set(run_sql(db_url, "SELECT state FROM resources WHERE host = 'node-2'")) == {("Absent",)}


def test_remove_dead_resources(cluster, db_url):
    oar = cluster
    assert oar("oarnodesetting", "-h", "node-4", "-s", "Dead").rc == 0
    ids = [str(r[0]) for r in run_sql(db_url, "SELECT resource_id FROM resources WHERE host = 'node-4' ORDER BY 1")]
    result = oar("oarremoveresource", *ids)
    assert result.rc == 0, result.err
    assert result.lines[0] == f"Resource {ids[0]} removed."
    assert run_sql(db_url, "SELECT COUNT(*) FROM resources") == [(24,)]
    assert run_sql(db_url, f"SELECT COUNT(*) FROM resource_logs WHERE resource_id = {ids[0]}") == [(0,)]


def test_property_rename_and_delete(cluster, db_url):
    oar = cluster
    assert oar("oarproperty", "-a", "cpu_freq").rc == 0
    assert oar("oarnodesetting", "-r", "1", "-p", "cpu_freq=2400").rc == 0
    result = oar("oarproperty", "-r", "cpu_freq,freq")
    assert result.rc == 0 and result.lines == ["Renamed property: cpu_freq to freq"]
    assert json.loads(oar("oarnodes", "-r", "1", "-J").out)["1"]["freq"] == 2400
    assert run_sql(db_url, "SELECT attribute FROM resource_logs WHERE resource_id = 1 AND value = '2400'") == [("freq",)]
    assert oar("oarproperty", "-d", "freq").rc == 0
    assert "freq" not in oar("oarproperty", "-l").lines


def test_new_property_is_seen_without_reconnecting(cluster, db_url):
    """A property added by one process is usable by another already connected."""
    from oar_appliance import resources

    backend = connection.backend_for_url(db_url)
    other = backend.open()
    other.connect()
    other.oar_backend = backend
    try:
        assert "rack" not in resources.list_properties(other)
        assert cluster("oarproperty", "-a", "rack").rc == 0
        assert cluster("oarnodesetting", "-r", "2", "-p", "rack=12").rc == 0
        assert "rack" in resources.list_properties(other)
        found = resources.select(other, expression="rack = 12")
        assert [r["resource_id"] for r in found] == [2]
    finally:
        other.close()


def test_nodes_views(cluster):
    oar = cluster
    assert oar("oarnodesetting", "-a", "-h", "node-10").rc == 0
    # natural order: node-2 before node-10
    assert oar("oarnodes", "-l").lines == ["node-1", "node-2", "node-3", "node-4", "node-10"]
    states = oar("oarnodes", "-s", "node-10").lines
    assert states == ["node-10", "    33 : Alive"]
    block = oar("oarnodes", "-r", "33").lines
    assert block[:3] == ["network_address : node-10", "resource_id : 33", "state : Alive"]
    assert block[3].startswith("properties : ")
    everything = oar("oarnodes", "-a").out
    assert everything.count("resource_id : ") == 33
    listed = yaml.safe_load(oar("oarnodes", "-l", "-Y").out)
    assert listed == ["node-1", "node-2", "node-3", "node-4", "node-10"]
    assert "!!" not in oar("oarnodes", "-Y").out  # plain YAML, no language-specific tags


def test_queues(created, db_url):
    oar = created
    assert oar("oarnotify", "--add_queue", "night,3,oar_sched_gantt_with_timesharing").rc == 0
    assert oar("oarnotify", "-d", "night").rc == 0
    listed = oar("oarnotify", "-l").lines
    assert listed[0] == "queue_name=admin, priority=10, policy=oar_sched_gantt_with_timesharing, state=Active"
    assert "queue_name=night, priority=3, policy=oar_sched_gantt_with_timesharing, state=notActive" in listed
    assert oar("oarnotify", "-D").rc == 0
    assert set(run_sql(db_url, "SELECT state FROM queues")) == {("notActive",)}
    assert oar("oarnotify", "-E").rc == 0
    assert set(run_sql(db_url, "SELECT state FROM queues")) == {("Active",)}
    run_sql(db_url, "INSERT INTO jobs (job_id, state, queue_name) VALUES (7, 'Waiting', 'night')")
    refused = oar("oarnotify", "--remove_queue", "night")
    assert refused.rc == 7 and "unfinished jobs (job 7)" in refused.err
    run_sql(db_url, "UPDATE jobs SET state = 'Terminated' WHERE job_id = 7")
    assert oar("oarnotify", "--remove_queue", "night").rc == 0
    assert run_sql(db_url, "SELECT COUNT(*) FROM queues WHERE queue_name = 'night'") == [(0,)]


def test_check_command_reports_problems(created, db_url, backend_name):
    oar = created
    good = oar("oar-database", "--check")
    assert good.rc == 0 and "is complete" in good.out
    run_sql(db_url, 'DROP TABLE "files"')
    bad = oar("oar-database", "--check")
    assert bad.rc == 4
    assert "PROBLEM: table files is missing" in bad.out
    assert bad.err.startswith("#ERROR: 1 problem(s) found")


def test_reset_needs_confirmation(cluster, db_url):
    oar = cluster
    refused = oar("oar-database", "--reset")
    assert refused.rc == 2 and "--yes" in refused.err
    assert run_sql(db_url, "SELECT COUNT(*) FROM resources") == [(32,)]
    assert oar("oar-database", "--reset", "--yes").rc == 0
    assert run_sql(db_url, "SELECT COUNT(*) FROM resources") == [(0,)]
