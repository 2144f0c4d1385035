"""Jobs on a site of three test hosts (tests/multinode/site.py): a real oar-server reaching
them through ssh and sudo, oarexec on the head node, every node of a job prepared, frozen,
thawed, killed and cleaned at once, in per-node cgroup v1 trees."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time

import pytest

from oar_appliance.nodeside.cgroups import parse_cpu_list
from tests.multinode.conftest import NODE_MEMORY
from tests.multinode.site import WAIT, wait_for

CONTROLLERS = ("cpuset", "memory", "freezer")


def _read(path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _counter(path) -> int:
    text = _read(path).split()
    return int(text[-1]) if text and text[-1].isdigit() else -1


def _job_pids(site, host: str, job_id: int) -> set[int]:
    return {int(p) for p in _read(site.job_cgroup(host, "cpuset", job_id) / "cgroup.procs").split()}


def _nothing_left(site, job_id: int) -> None:
    """No cgroup of the job on any host, no process of the job's user, no job file."""
    for host in site.bed.hosts:
        for controller in CONTROLLERS:
            assert not site.job_cgroup(host.name, controller, job_id).exists(), (host.name, controller)
        private = site.bed.private_dir(host.name, site.runtime_dir)
        assert not [n for n in os.listdir(private) if n.startswith(f"job_{job_id}.")], host.name
    wait_for(lambda: not site.user_processes(), timeout=10, what="no process of the job's user")


def _counting_on(site, host: str, job_id: int, counter) -> subprocess.Popen:
    """A process of the job's user counting in ``counter``, moved into the job's cgroups
    on ``host`` (what oarsh will do; until then the test does it itself, as root)."""
    account = pwd.getpwnam(site.user)
    proc = subprocess.Popen(["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                             "--clear-groups", "sh", "-c",
                             f"read go; i=0; while :; do i=$((i+1)); echo $i > {counter}; sleep 0.05; done"],
                            stdin=subprocess.PIPE, start_new_session=True)
    for controller in CONTROLLERS:
        (site.job_cgroup(host, controller, job_id) / "cgroup.procs").write_text(str(proc.pid))
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    wait_for(lambda: _counter(counter) > 2, what=f"the process on {host} to count")
    return proc


def _counting_job(site, request: str, *options: str) -> tuple[int, object, object]:
    """A job counting in a file until a file ``go`` appears; (job id, counter, go)."""
    counter, go = site.work / "counter", site.work / "go"
    for path in (counter, go):
        if path.exists():
            path.unlink()
    job_id = site.oarsub("-l", request, *options,
                         f"i=0; while [ ! -e {go} ]; do i=$((i+1)); echo $i > {counter}; sleep 0.05; done")
    site.wait_state(job_id, "Running")
    wait_for(lambda: _counter(counter) > 2, what="the job to count")
    return job_id, counter, go


@pytest.mark.parametrize("site", ["sqlite", "postgresql"], indirect=True)
def test_a_two_node_job_runs_in_its_cpusets_and_leaves_nothing(site):
    work, go = site.work, site.work / "go"
    leftover = f"/tmp/oartest-leftover-{os.getpid()}"
    script = (f"sort -u $OAR_NODEFILE > {work}/nodes; id -un > {work}/user; "
              f"grep Cpus_allowed_list /proc/self/status > {work}/cpus; cat /proc/self/cgroup > {work}/cgroup; "
              f"touch {leftover}; (setsid sleep 300 &); touch {work}/ready; "
              f"while [ ! -e {go} ]; do sleep 0.05; done")
    job_id = site.oarsub("-l", "/nodes=2/core=1", script)
    site.wait_state(job_id, "Running")
    wait_for(lambda: (work / "ready").exists(), what="the job's first lines")
    try:
        assert _read(work / "nodes").split() == ["node1", "node2"]
        assert _read(work / "user") == site.user
        assert parse_cpu_list(_read(work / "cpus").split()[-1]) == [0]  # one core of two
        paths = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in _read(work / "cgroup").splitlines()}
        name = f"/oar/{site.user}_{job_id}"
        assert all(paths[c] == name for c in CONTROLLERS), paths  # the node's own tree
        # the head node: the script's processes (the escaped sleep too) in the job's cgroup
        head = _job_pids(site, "node1", job_id)
        assert len(head) >= 2
        for pid in head:
            assert os.stat(f"/proc/{pid}").st_uid != 0
        # both nodes have the cgroup with their cpus and memory (half the node: 1 core of 2)
        for host in ("node1", "node2"):
            assert _read(site.job_cgroup(host, "cpuset", job_id) / "cpuset.cpus") == "0"
            assert int(_read(site.job_cgroup(host, "memory", job_id) / "memory.limit_in_bytes")) == NODE_MEMORY // 2
            assert _read(site.job_cgroup(host, "freezer", job_id) / "freezer.state") == "THAWED"
        assert not site.job_cgroup("node3", "cpuset", job_id).exists()
        assert os.path.exists(leftover)
    finally:
        go.touch()
    assert site.wait_state(job_id, "Terminated", "Error") == "Terminated", site.log_tail()
    _nothing_left(site, job_id)
    assert not os.path.exists(leftover)  # the user had no other job: /tmp cleaned


def test_a_job_above_its_memory_share_is_killed_by_its_limit(site):
    # a line without end: tail keeps all of it in memory (1 GiB), the job may use 256 MiB
    job_id = site.oarsub("-l", "/nodes=1/core=1", "head -c 1073741824 /dev/zero | tr '\\\\0' a | tail -n 1 >/dev/null")
    assert site.wait_state(job_id, "Terminated", "Error", timeout=WAIT) == "Terminated"
    status = site.sql('SELECT "exit_code" FROM "jobs" WHERE "job_id" = ?', [job_id])[0][0]
    assert status >> 8 == 128 + 9, status  # tail was killed (SIGKILL from the OOM killer)
    _nothing_left(site, job_id)


def test_hold_freezes_every_node_resume_thaws_and_oardel_kills_everywhere(site):
    log = site.top / "scripts.log"
    for name, word in (("after.sh", "after"), ("before.sh", "before")):
        (site.top / name).write_text(f"#!/bin/sh\necho {word} $1 $(hostname) >> {log}\n")
        (site.top / name).chmod(0o755)
    site.stop_server()
    site.write_conf(f'JUST_AFTER_SUSPEND_EXEC_FILE="{site.top}/after.sh"',
                    f'JUST_BEFORE_RESUME_EXEC_FILE="{site.top}/before.sh"', "SUSPEND_RESUME_SCRIPT_TIMEOUT=10")
    site.start_server()
    job_id, counter, go = _counting_job(site, "nodes=2")
    counter2 = site.work / "counter2"
    other = _counting_on(site, "node2", job_id, counter2)
    try:
        assert site.cmd("oarhold", "-r", str(job_id)).rc == 0
        site.wait_state(job_id, "Suspended")
        for host in ("node1", "node2"):
            assert _read(site.job_cgroup(host, "freezer", job_id) / "freezer.state") == "FROZEN", host
        stopped = (_counter(counter), _counter(counter2))
        time.sleep(0.5)
        assert (_counter(counter), _counter(counter2)) == stopped  # really stopped, on both nodes
        assert sorted(_read(log).splitlines()) == [f"after {job_id} node1", f"after {job_id} node2"]

        assert site.cmd("oarresume", str(job_id)).rc == 0
        site.wait_state(job_id, "Running")
        for host in ("node1", "node2"):
            assert _read(site.job_cgroup(host, "freezer", job_id) / "freezer.state") == "THAWED", host
        wait_for(lambda: _counter(counter) > stopped[0] + 2 and _counter(counter2) > stopped[1] + 2,
                 what="both nodes to count again")
        assert sorted(_read(log).splitlines()) == [f"{word} {job_id} {host}" for word in ("after", "before")
                                                   for host in ("node1", "node2")]

        pids = _job_pids(site, "node1", job_id) | _job_pids(site, "node2", job_id)
        assert other.pid in pids
        assert site.cmd("oardel", str(job_id)).rc == 0
        assert site.wait_state(job_id, "Error") == "Error"
        assert other.wait(WAIT) in (-15, -9)  # killed on node2 too (TERM, KILL after the grace)
    finally:
        go.touch()
        if other.poll() is None:
            other.kill()
            other.wait()
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
    _nothing_left(site, job_id)


def test_walltime_expiry_kills_the_job_on_all_nodes(site):
    job_id = site.oarsub("-l", "nodes=2,walltime=0:0:3", "sleep 300")
    site.wait_state(job_id, "Running")
    assert site.job_cgroup("node2", "cpuset", job_id).exists()
    assert site.wait_state(job_id, "Error", timeout=WAIT) == "Error"
    assert "WALLTIME" in site.events(job_id)
    _nothing_left(site, job_id)


def test_an_unreachable_node_becomes_suspected_and_comes_back(site):
    job_id, _, go = _counting_job(site, "nodes=2", "-t", "idempotent")
    try:
        site.bed.stop_sshd("node2")
        go.touch()
        assert site.wait_state(job_id, "Error") == "Error", site.log_tail()
        assert "CPUSET_CLEAN_ERROR" in site.events(job_id)
        hosts = site.sql('SELECT h."hostname" FROM "event_log_hostnames" h JOIN "event_logs" e '
                         'ON e."event_id" = h."event_id" WHERE e."job_id" = ? AND e."type" = ?',
                         [job_id, "CPUSET_CLEAN_ERROR"])
        assert hosts == [("node2",)]
        assert site.node_states()["node2"] == {"Suspected"}
        # idempotent: submitted again
        again = site.sql('SELECT "job_id" FROM "jobs" WHERE "job_id" > ?', [job_id])
        assert again, site.events(job_id)
    finally:
        site.bed.start_sshd("node2")
    wait_for(lambda: site.node_states()["node2"] == {"Alive"}, what="finaud to bring node2 back")
    # the resubmitted job finds 'go' and ends; the left cgroup of node2 is cleaned by hand
    assert site.wait_state(again[0][0], "Terminated", "Error") == "Terminated"
    assert site.jobctl("node2", "clean", job_id).returncode == 0
    _nothing_left(site, job_id)


def test_a_forged_end_report_is_refused_and_the_job_goes_on(site):
    import zmq

    job_id, counter, go = _counting_job(site, "nodes=1")
    context = zmq.Context()
    try:
        sock = context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://{site.bed.gateway}:{site.port}")
        sock.send(json.dumps({"kind": "oarexec_end", "job_id": job_id, "challenge": "forged",
                              "oarexec_code": 0, "user_status": 0, "host": "node3"}).encode())
        assert sock.poll(int(WAIT * 1000)), "no answer from the server"
        answer = json.loads(sock.recv())
        sock.close()
        assert answer.get("ack") is False
        assert "BIPBIP_CHALLENGE" in site.events(job_id)
        assert f"end report of job {job_id} from node3 refused: bad challenge" in site.log.read_text()
        seen = _counter(counter)
        wait_for(lambda: _counter(counter) > seen + 2, what="the job to go on counting")
        assert site.state(job_id) == "Running"
    finally:
        context.term()
        go.touch()
    assert site.wait_state(job_id, "Terminated", "Error") == "Terminated"
    _nothing_left(site, job_id)


def test_taktuk_as_the_fanout_prepares_and_cleans_three_nodes(site):
    site.stop_server()
    site.write_conf("TAKTUK_CMD=taktuk")
    site.start_server()
    job_id, _, go = _counting_job(site, "nodes=3")
    try:
        for host in ("node1", "node2", "node3"):
            assert _read(site.job_cgroup(host, "cpuset", job_id) / "cpuset.cpus") == "0-1", host
    finally:
        go.touch()
    assert site.wait_state(job_id, "Terminated", "Error") == "Terminated", site.log_tail()
    _nothing_left(site, job_id)


def test_a_cosystem_job_runs_on_the_cosystem_host_and_nothing_is_done_on_its_nodes(site):
    site.stop_server()
    site.write_conf("COSYSTEM_HOSTNAME=node3")
    site.start_server()
    go, where = site.work / "go", site.work / "where"
    job_id = site.oarsub("-t", "cosystem", "-l", "nodes=1",
                         f"hostname > {where}; while [ ! -e {go} ]; do sleep 0.05; done")
    site.wait_state(job_id, "Running")
    try:
        wait_for(lambda: _read(where), what="the job's first line")
        assert _read(where) == "node3"
        assert not site.job_cgroup("node1", "cpuset", job_id).exists()  # its resource's host
    finally:
        go.touch()
    assert site.wait_state(job_id, "Terminated", "Error") == "Terminated", site.log_tail()
    _nothing_left(site, job_id)


def test_a_node_that_cannot_be_prepared_is_suspected_and_the_job_fails(site):
    # node2's runtime directory writable by others: jobctl prepare refuses it there
    private = site.bed.private_dir("node2", site.runtime_dir)
    os.chmod(private, 0o777)
    try:
        job_id = site.oarsub("-l", "nodes=3", "true")
        assert site.wait_state(job_id, "Error") == "Error", site.log_tail()
    finally:
        os.chmod(private, 0o755)
    assert "CPUSET_ERROR" in site.events(job_id)
    hosts = site.sql('SELECT h."hostname" FROM "event_log_hostnames" h JOIN "event_logs" e '
                     'ON e."event_id" = h."event_id" WHERE e."job_id" = ? AND e."type" = ?', [job_id, "CPUSET_ERROR"])
    assert hosts == [("node2",)]
    states = [r[0] for r in site.sql('SELECT "job_state" FROM "job_state_logs" WHERE "job_id" = ? '
                                     'ORDER BY "job_state_log_id"', [job_id])]
    assert states[-2:] == ["Launching", "Error"] and "Running" not in states
    _nothing_left(site, job_id)  # node1 and node3, prepared, were cleaned
    # suspected by the server as a node check: finaud brings node2 back once it answers
    wait_for(lambda: site.node_states()["node2"] == {"Alive"}, what="finaud to bring node2 back")
    assert site.sql('SELECT COUNT(*) FROM "resource_logs" r JOIN "resources" s ON s."resource_id" = r."resource_id" '
                    'WHERE s."network_address" = ? AND r."value" = ?', ["node2", "Suspected"])[0][0] == 2


def test_a_hold_that_cannot_reach_a_node_suspects_it_and_ends_the_job(site):
    job_id, counter, go = _counting_job(site, "nodes=2")
    try:
        site.bed.stop_sshd("node2")
        assert site.cmd("oarhold", "-r", str(job_id)).rc == 0
        assert site.wait_state(job_id, "Error") == "Error", site.log_tail()
        events = site.events(job_id)
        assert "HOLD_RUNNING_JOB_ERROR" in events and "FRAG_JOB_REQUEST" in events, events
        assert site.sql('SELECT COUNT(*) FROM "resource_logs" r JOIN "resources" s ON s."resource_id" = '
                        'r."resource_id" WHERE s."network_address" = ? AND r."value" = ?',
                        ["node2", "Suspected"])[0][0] == 2
        # never left frozen on node1 while node2 failed: the job was thawed, then killed
        assert _read(site.job_cgroup("node1", "freezer", job_id) / "freezer.state") in ("", "THAWED")
    finally:
        go.touch()
        site.bed.start_sshd("node2")
    wait_for(lambda: site.node_states()["node2"] == {"Alive"}, what="finaud to bring node2 back")
    assert site.jobctl("node2", "clean", job_id).returncode == 0
    _nothing_left(site, job_id)


DEVICES = {0: "/dev/full", 1: "/dev/zero"}  # each host's core 0 and core 1 (harmless devices)
#: "ok" or "denied" for each of DEVICES, in order
DEVICE_PROBE = ("for d in " + " ".join(DEVICES.values()) + "; do "
                "head -c 1 $d > /dev/null 2>> {errors} && echo ok || echo denied; done")


def _devices_seen_from(site, host: str, job_id: int) -> list[str]:
    """What a process put in the job's devices cgroup on ``host`` gets opening DEVICES."""
    procs = site.job_cgroup(host, "devices", job_id) / "cgroup.procs"
    probe = subprocess.run(["sh", "-c", DEVICE_PROBE.format(errors="/dev/null")], capture_output=True,
                           text=True, timeout=30, preexec_fn=lambda: procs.write_text(str(os.getpid())))
    return probe.stdout.split()


def test_a_job_opens_the_devices_of_its_resources_and_not_the_others(site):
    """The resources' gpu_device column (JOB_RESOURCE_MANAGER_DEVICES_DB_FIELD's default):
    on both nodes of the job, the device of its core opens, the other core's does not."""
    site.stop_server()
    assert site.admin("oarproperty", "-a", "gpu_device", "-c").rc == 0
    for resource_id, cpuset in site.sql('SELECT "resource_id", "cpuset" FROM "resources"'):
        result = site.admin("oarnodesetting", "-r", str(resource_id), "-p", f"gpu_device={DEVICES[int(cpuset)]}")
        assert result.rc == 0, result.err
    site.start_server()
    work, go = site.work, site.work / "go"
    job_id = site.oarsub("-l", "/nodes=2/core=1",
                         f"({DEVICE_PROBE.format(errors=work / 'head.err')}) > {work}/head; touch {work}/ready; while [ ! -e {go} ]; do sleep 0.05; done")
    site.wait_state(job_id, "Running")
    wait_for(lambda: (work / "ready").exists(), what="the job's first lines")
    try:
        mine = dict(site.sql('SELECT r."network_address", r."gpu_device" FROM "resources" r JOIN "assigned_resources" a '
                             'ON a."resource_id" = r."resource_id" JOIN "jobs" j ON j."assigned_moldable_job" = '
                             'a."moldable_job_id" WHERE j."job_id" = ?', [job_id]))
        assert sorted(mine) == ["node1", "node2"]

        def expected(host):
            return ["ok" if path == mine[host] else "denied" for path in DEVICES.values()]

        assert _read(work / "head").split() == expected("node1"), _read(work / "head.err")
        assert "Operation not permitted" in _read(work / "head.err")
        assert _devices_seen_from(site, "node2", job_id) == expected("node2")
        assert not site.job_cgroup("node3", "devices", job_id).exists()
    finally:
        go.touch()
    assert site.wait_state(job_id, "Terminated", "Error") == "Terminated", site.log_tail()
    _nothing_left(site, job_id)
    assert not any(site.job_cgroup(h.name, "devices", job_id).exists() for h in site.bed.hosts)
