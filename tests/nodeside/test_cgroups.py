"""The job resource manager against the real cgroups of this host (root), and oarexec and
jobctl running jobs inside them.

Every cgroup a test makes is nested in the test's own cgroup of each hierarchy (a
relative base, ``oartest-<pid>-<n>/oar``), never in the host's ``/oar``: the job's cgroup
is then ``.../oartest-<pid>-<n>/oar/<user>_<jobid>`` and ends like a node's
``/oar/<user>_<jobid>``.  The v2 adapter runs in a private mount namespace where a cgroup2
hierarchy is mounted (``unshare -m``).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from oar_appliance.nodeside import cgroups
from oar_appliance.nodeside.cgroups import (
    CgroupV1Manager,
    ProcessGroupManager,
    cgroup_name,
    manager_for,
    memory_share,
    parse_cpu_list,
)
from oar_appliance.nodeside.runtime import JobFiles, pid_alive
from tests.nodeside.conftest import wait_for

_counter = itertools.count()
HIERARCHY = cgroups.detect()
ROOT = os.geteuid() == 0


def _base() -> str:
    return f"oartest-{os.getpid()}-{next(_counter)}/oar"


def needs_v1():
    if not ROOT:
        pytest.skip("real cgroups need root (this test runs as an ordinary user)")
    if HIERARCHY is None or HIERARCHY[0] != "v1":
        pytest.skip("this host has no cgroup v1 cpuset/memory/freezer hierarchies")


def _remove_bases(manager: CgroupV1Manager) -> None:
    """Remove the test's ``oartest-*/oar`` parents once the job's cgroup is gone."""
    for path in manager.paths.values():
        oar = os.path.dirname(path)
        for directory in (oar, os.path.dirname(oar)):
            try:
                os.rmdir(directory)
            except OSError:
                pass


def proc_cgroups(pid: int) -> dict[str, str]:
    found = {}
    with open(f"/proc/{pid}/cgroup", encoding="ascii") as stream:
        for line in stream:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                found[controller] = path
    return found


def status_field(pid: int, name: str) -> str:
    with open(f"/proc/{pid}/status", encoding="ascii") as stream:
        for line in stream:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def counter_value(path: Path) -> int:
    try:
        return int(path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return -1


COUNTER = "i=0; while :; do i=$((i+1)); echo $i > {path}; sleep 0.02; done"


@pytest.fixture
def v1_job(tmp_path):
    """A cgroup v1 manager for job 4242 of root, nested in the test's own cgroups; cleaned
    (and its parents removed) at the end."""
    needs_v1()
    files = JobFiles(str(tmp_path), 4242)
    manager = manager_for("cgroup", "root", 4242, [0], files, base=_base())
    assert isinstance(manager, CgroupV1Manager)
    started: list[subprocess.Popen] = []

    def start(command: str) -> subprocess.Popen:
        proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=tmp_path,
                                preexec_fn=lambda: manager.attach(os.getpid()))
        started.append(proc)
        return proc

    yield manager, start
    manager.clean()
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
    _remove_bases(manager)


# --------------------------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------------------------


def test_memory_share_is_proportional_to_the_cores():
    gib = 1 << 30
    assert memory_share(32 * gib, 4, 16) == 8 * gib
    assert memory_share(32 * gib, 16, 16) == 32 * gib
    assert memory_share(32 * gib, 32, 16) == 32 * gib  # never more than the node
    assert memory_share(10_000_000, 1, 3) % 4096 == 0  # whole pages
    assert memory_share(10_000_000, 1, 3) <= 10_000_000 // 3


def test_cpu_lists_and_names():
    assert parse_cpu_list("0-2,5,7-8") == [0, 1, 2, 5, 7, 8]
    assert cgroups.cpu_list([3, 1, 2, 1]) == "1,2,3"
    assert cgroup_name("alice", 42) == "alice_42"


def test_detect_reads_mountinfo(tmp_path):
    v1 = tmp_path / "v1"
    v1.write_text(textwrap.dedent("""\
        30 25 0:26 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
        31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
        32 25 0:28 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
        33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
        """))
    assert cgroups.detect(str(v1)) == ("v1", {"cpuset": "/sys/fs/cgroup/cpuset",
                                             "memory": "/sys/fs/cgroup/memory",
                                             "freezer": "/sys/fs/cgroup/freezer"})
    partial = tmp_path / "partial"
    partial.write_text("30 25 0:26 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n")
    assert cgroups.detect(str(partial)) is None
    assert cgroups.detect(str(tmp_path / "missing")) is None


def test_choice_without_cgroups(tmp_path):
    files = JobFiles(str(tmp_path), 7)
    assert isinstance(manager_for("none", "alice", 7, [0, 1], files), ProcessGroupManager)
    assert isinstance(manager_for("auto", "alice", 7, [], files), ProcessGroupManager)
    # hierarchies that cannot be written (not mounted here): auto falls back, cgroup refuses
    nowhere = ("v1", {"cpuset": "/nonexistent", "memory": "/nonexistent", "freezer": "/nonexistent"})
    assert isinstance(manager_for("auto", "alice", 7, [0], files, hierarchy=nowhere), ProcessGroupManager)
    with pytest.raises(cgroups.CgroupError):
        manager_for("cgroup", "alice", 7, [0], files, hierarchy=nowhere)
    with pytest.raises(cgroups.CgroupError):
        manager_for("sometimes", "alice", 7, [0], files)


def _rule(path: str, kind: str = "c") -> str:
    rdev = os.stat(path).st_rdev
    return f"{kind} {os.major(rdev)}:{os.minor(rdev)} rwm"


def test_device_rules_deny_the_node_devices_that_are_not_the_jobs(tmp_path):
    assert cgroups.device_rules(["/dev/full"], ["/dev/full", "/dev/zero"]) == [_rule("/dev/zero")]
    assert cgroups.device_rules([], ["/dev/full", "/dev/zero"]) == sorted([_rule("/dev/full"), _rule("/dev/zero")])
    assert cgroups.device_rules(["/dev/full"], ["/dev/full"]) == []
    assert cgroups.device_rules([], []) == []
    # the job's device under another name stays open to it
    (tmp_path / "mine").symlink_to("/dev/zero")
    assert cgroups.device_rules([str(tmp_path / "mine")], ["/dev/zero", "/dev/full"]) == [_rule("/dev/full")]
    block = next((str(p) for p in sorted(Path("/dev").glob("loop[0-9]*")) if p.is_block_device()), None)
    if block is not None:  # a block device is denied as "b"
        assert cgroups.device_rules([], [block]) == [_rule(block, "b")]
    # a device to deny that this node lacks, or a file that is no device: the node is wrong
    with pytest.raises(cgroups.CgroupError, match="/dev/no-such-gpu"):
        cgroups.device_rules([], ["/dev/no-such-gpu"])
    (tmp_path / "plain").write_text("")
    with pytest.raises(cgroups.CgroupError, match="not a device"):
        cgroups.device_rules([], [str(tmp_path / "plain")])


def test_devices_cannot_be_denied_without_cgroup_v1(tmp_path):
    """cgroup v2 has no devices files (a BPF program would be needed), a process group no
    confinement: a job with devices to deny is refused, and nothing is created (the v2
    tree is a plain directory here: v2 controllers are absent on this host)."""
    files = JobFiles(str(tmp_path), 7)
    with pytest.raises(cgroups.CgroupError, match="cgroup v2 has no devices"):
        cgroups.CgroupV2Manager(str(tmp_path / "v2" / "oar" / "alice_7")).init([0], None, [_rule("/dev/zero")])
    assert not (tmp_path / "v2").exists()
    with pytest.raises(cgroups.CgroupError, match="without cgroup v1"):
        ProcessGroupManager(files).init([], None, [_rule("/dev/zero")])
    ProcessGroupManager(files).init([], None, [])  # nothing to deny: fine
    # a v1 node without a devices hierarchy refuses before creating anything
    manager = CgroupV1Manager({"cpuset": str(tmp_path / "cpuset" / "alice_7")})
    with pytest.raises(cgroups.CgroupError, match="no cgroup v1 devices hierarchy"):
        manager.init([0], None, [_rule("/dev/zero")])
    assert not (tmp_path / "cpuset").exists()


# --------------------------------------------------------------------------------------------
# cgroup v1, for real
# --------------------------------------------------------------------------------------------


def test_v1_job_processes_are_in_their_cgroup_on_their_cpus(v1_job, tmp_path):
    manager, start = v1_job
    manager.init([0], 256 << 20)
    proc = start("sleep 60 & exec sleep 60")
    wait_for(lambda: len(manager.pids()) == 2, timeout=5, what="both processes in the cgroup")
    for pid in manager.pids():
        paths = proc_cgroups(pid)
        for controller in ("cpuset", "memory", "freezer"):
            assert paths[controller].endswith("/oar/root_4242"), paths
        assert status_field(pid, "Cpus_allowed_list") == "0"
    assert proc.pid in manager.pids()
    assert int(Path(manager.paths["memory"], "memory.limit_in_bytes").read_text()) == 256 << 20


DEVICE_PROBE = """import errno
for path in ('/dev/full', '/dev/zero'):
    try:
        with open(path, 'rb') as f: print(path, len(f.read(4)))
    except OSError as exc: print(path, errno.errorcode[exc.errno], exc.strerror)
"""


def probe_devices(manager: cgroups.JobResourceManager) -> list[str]:
    """What a process of the job's cgroup gets reading /dev/full and /dev/zero."""
    result = subprocess.run([sys.executable, "-c", DEVICE_PROBE], capture_output=True, text=True, timeout=30,
                            preexec_fn=lambda: manager.attach(os.getpid()))
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_v1_job_opens_its_device_and_not_the_others(tmp_path):
    """The job of the /dev/full resource, on a node whose resources are /dev/full and
    /dev/zero: it reads /dev/full, opening /dev/zero is not permitted, and this test
    process (not in the cgroup) still opens both."""
    needs_v1()
    if "devices" not in HIERARCHY[1]:
        pytest.skip("this host has no cgroup v1 devices hierarchy")
    files = JobFiles(str(tmp_path), 4243)
    denied = cgroups.device_rules(["/dev/full"], ["/dev/full", "/dev/zero"])
    manager = manager_for("auto", "root", 4243, [], files, base=_base(), devices=bool(denied))
    assert isinstance(manager, CgroupV1Manager) and "devices" in manager.paths  # no cpus: a cgroup all the same
    try:
        manager.init([], None, denied)
        assert Path(manager.paths["devices"], "devices.list").read_text().split("\n")[0] == "a *:* rwm"
        assert probe_devices(manager) == ["/dev/full 4", "/dev/zero EPERM Operation not permitted"]
        with open("/dev/zero", "rb") as stream:
            assert stream.read(1) == b"\0"
    finally:
        assert manager.clean()
        _remove_bases(manager)
    assert not any(os.path.exists(path) for path in manager.paths.values())


def test_v1_memory_limit_stops_a_hungry_process(v1_job):
    manager, start = v1_job
    manager.init([0], 64 << 20)
    hungry = start(f"exec {sys.executable} -c 'b = bytearray(512 << 20); b[::4096] = b\"x\" * (len(b) // 4096)'")
    assert hungry.wait(60) == -signal.SIGKILL  # the OOM killer of the cgroup
    oom = Path(manager.paths["memory"], "memory.oom_control").read_text()
    assert "oom_kill 1" in oom or int(oom.split("oom_kill")[1].split()[0]) >= 1, oom


def test_v1_freeze_and_thaw_really_stop_and_continue(v1_job, tmp_path):
    manager, start = v1_job
    manager.init([0], None)
    counter = tmp_path / "counter"
    start(COUNTER.format(path=counter))
    wait_for(lambda: counter_value(counter) > 3, what="the job to count")
    manager.freeze()
    assert Path(manager.paths["freezer"], "freezer.state").read_text().strip() == "FROZEN"
    frozen = counter_value(counter)
    time.sleep(0.5)
    assert counter_value(counter) == frozen
    manager.thaw()
    wait_for(lambda: counter_value(counter) > frozen + 3, timeout=5, what="the job to count again")


def test_v1_clean_kills_a_process_that_left_the_session(v1_job, tmp_path):
    manager, start = v1_job
    manager.init([0], None)
    start("setsid sh -c 'echo $$ > escaped; exec sleep 300' & wait")
    escaped_file = tmp_path / "escaped"
    wait_for(lambda: escaped_file.exists() and escaped_file.read_text().strip(), what="setsid")
    escaped = int(escaped_file.read_text())
    assert os.getsid(escaped) == escaped  # out of the job's session: a process group would miss it
    assert escaped in manager.pids()
    assert manager.clean()
    wait_for(lambda: not pid_alive(escaped), timeout=5, what="the escaped process to die")
    assert not any(os.path.exists(path) for path in manager.paths.values())
    assert manager.pids() == set()
    assert manager.clean()  # idempotent


# --------------------------------------------------------------------------------------------
# oarexec and jobctl with cgroups
# --------------------------------------------------------------------------------------------


def _cgroup_job(jobs, command: str, **overrides):
    base = _base()
    data = jobs.data(command, job_resource_manager="cgroup", cgroup_base=base, cpuset=[0], **overrides)
    return data


def test_oarexec_runs_the_job_in_its_cgroup_and_jobctl_cleans_it(jobs, report_server):
    needs_v1()
    command = ("setsid sleep 300 & echo $! > escaped; grep Cpus_allowed_list /proc/self/status > cpus;"
               " cat /proc/self/cgroup > cgroup; " + COUNTER.format(path="counter"))
    data = _cgroup_job(jobs, command)
    files = jobs.start(data)
    manager = cgroups.manager_from_files(files)
    assert isinstance(manager, CgroupV1Manager)
    try:
        counter = jobs.workdir / "counter"
        wait_for(lambda: counter_value(counter) > 3, what="the job to count")
        name = f"/oar/{data['user']}_{data['job_id']}"
        lines = (jobs.workdir / "cgroup").read_text().splitlines()
        for controller in ("cpuset", "memory", "freezer"):
            assert any(line.split(":")[1] == controller and line.endswith(name) for line in lines), lines
        assert (jobs.workdir / "cpus").read_text().split() == ["Cpus_allowed_list:", "0"]
        # one cpu of the node's: that share of its memory
        expected = memory_share(cgroups.node_memory(), 1, len(cgroups.node_cpus()))
        assert int(Path(manager.paths["memory"], "memory.limit_in_bytes").read_text()) == expected
        oarexec = int(Path(files.pid).read_text())
        assert oarexec not in manager.pids()  # oarexec is never frozen nor killed with the job

        assert jobs.jobctl(files, "suspend").returncode == 0
        assert manager.frozen()
        frozen = counter_value(counter)
        time.sleep(0.5)
        assert counter_value(counter) == frozen
        assert jobs.jobctl(files, "resume").returncode == 0
        wait_for(lambda: counter_value(counter) > frozen + 3, timeout=5, what="the job to count again")

        escaped = int((jobs.workdir / "escaped").read_text())
        assert escaped in manager.pids()
        result = jobs.jobctl(files, "kill")
        assert result.returncode == 0, result.stderr
        assert report_server.wait_report()["oarexec_code"] == 3
        wait_for(lambda: not pid_alive(escaped), timeout=10, what="the setsid process to die")
        result = jobs.jobctl(files, "clean")
        assert result.returncode == 0, result.stderr
        assert not any(os.path.exists(path) for path in manager.paths.values())
        assert not os.path.exists(files.manager)
    finally:
        manager.clean()
        _remove_bases(manager)


def test_oarexec_job_opens_its_device_and_not_the_others(jobs, report_server):
    """The head node from oarexec's job data: ``devices`` (the job's) and ``node_devices``
    (all of this node's)."""
    needs_v1()
    if "devices" not in HIERARCHY[1]:
        pytest.skip("this host has no cgroup v1 devices hierarchy")
    command = "head -c 4 /dev/full | wc -c > full; head -c 1 /dev/zero > /dev/null 2> zero; echo $? > rc"
    data = _cgroup_job(jobs, command, devices=["/dev/full"], node_devices=["/dev/full", "/dev/zero"])
    files = jobs.start(data)
    manager = cgroups.manager_from_files(files)
    try:
        assert report_server.wait_report()["oarexec_code"] == 0
        assert (jobs.workdir / "full").read_text().strip() == "4"
        assert "Operation not permitted" in (jobs.workdir / "zero").read_text()
        assert (jobs.workdir / "rc").read_text().strip() == "1"
    finally:
        manager.clean()
        _remove_bases(manager)


def test_clean_without_runtime_files_finds_the_cgroup(v1_job, tmp_path):
    """A node of the job that lost its runtime files: jobctl clean finds ``<base>/*_<jobid>``
    in each hierarchy (here the base of the cpuset hierarchy, which holds the task too)."""
    manager, start = v1_job
    manager.init([0], None)
    proc = start("exec sleep 300")
    wait_for(lambda: proc.pid in manager.pids(), what="the process in the cgroup")
    base = os.path.dirname(manager.paths["cpuset"])[len(HIERARCHY[1]["cpuset"]):]
    found = cgroups.manager_from_files(JobFiles(str(tmp_path / "gone"), 4242), base=base)
    assert isinstance(found, CgroupV1Manager)
    assert found.paths["cpuset"] == manager.paths["cpuset"]
    result = subprocess.run([sys.executable, "-m", "oar_appliance.nodeside.jobctl", "clean", "--job-id",
                             "4242", "--runtime-dir", str(tmp_path / "gone"), "--cgroup-base", base],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert proc.wait(10) == -signal.SIGKILL
    assert not os.path.exists(manager.paths["cpuset"])


def test_suspend_and_resume_scripts(jobs, report_server, tmp_path):
    """JUST_AFTER_SUSPEND_EXEC_FILE / JUST_BEFORE_RESUME_EXEC_FILE, with the process group
    manager (as in a lab) and their timeout."""
    log = tmp_path / "scripts.log"
    after = tmp_path / "after.sh"
    after.write_text(f"#!/bin/sh\necho after $1 $2 $OAR_JOB_ID >> {log}\n")
    before = tmp_path / "before.sh"
    before.write_text(f"#!/bin/sh\necho before $1 $2 >> {log}\n")
    slow = tmp_path / "slow.sh"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    for script in (after, before, slow):
        script.chmod(0o755)
    data = jobs.data("exec sleep 300", just_after_suspend_exec_file=str(after),
                     just_before_resume_exec_file=str(before), suspend_resume_script_timeout=1)
    files = jobs.start(data)
    wait_for(lambda: cgroups.manager_from_files(files).pids(), what="the job to start")
    assert jobs.jobctl(files, "suspend").returncode == 0
    assert jobs.jobctl(files, "resume").returncode == 0
    user, job_id = data["user"], data["job_id"]
    assert log.read_text().splitlines() == [f"after {job_id} {user} {job_id}", f"before {job_id} {user}"]

    # a resume script that does not end in time: the job stays suspended, exit code 70
    manager_file = Path(files.manager)
    described = json.loads(manager_file.read_text())
    described["just_before_resume_exec_file"] = str(slow)
    manager_file.write_text(json.dumps(described))
    assert jobs.jobctl(files, "suspend").returncode == 0
    started = time.monotonic()
    result = jobs.jobctl(files, "resume")
    assert result.returncode == 70 and "did not end within 1 s" in result.stderr
    assert time.monotonic() - started < 10
    oarexec = int(Path(files.pid).read_text())
    (command,) = cgroups.manager_from_files(files, exclude={oarexec}).pids()
    assert open(f"/proc/{command}/stat").read().rsplit(")", 1)[1].split()[0] == "T"
    assert jobs.jobctl(files, "kill").returncode == 0
    assert report_server.wait_report()["oarexec_code"] == 3


def test_a_cgroup_that_cannot_be_set_up_refuses_the_job(jobs):
    """The job's cpus do not exist on this node: oarexec stops before its ready line, runs
    nothing and leaves no cgroup behind."""
    from oar_appliance.execution import LaunchError

    needs_v1()
    base = _base()
    data = jobs.data("touch ran", job_resource_manager="cgroup", cgroup_base=base, cpuset=[4095])
    with pytest.raises(LaunchError) as caught:
        jobs.start(data)
    assert "cgroup" in str(caught.value)
    assert not os.path.exists(jobs.files(data).pid)
    assert not (jobs.workdir / "ran").exists()
    leftover = CgroupV1Manager.for_job(HIERARCHY[1], base, cgroup_name(data["user"], data["job_id"]))
    assert not any(os.path.exists(path) for path in leftover.paths.values())
    _remove_bases(leftover)


# --------------------------------------------------------------------------------------------
# cgroup v2, in a private mount namespace
# --------------------------------------------------------------------------------------------

V2_SCRIPT = r"""
import json, os, subprocess, sys, time
from oar_appliance.nodeside.cgroups import CgroupV2Manager
mount, base = sys.argv[1], sys.argv[2]
out = {}
manager = CgroupV2Manager.for_job(mount, base, "root_77")
manager.init([0], 64 << 20)
out["missing"] = manager.missing
out["controllers"] = open(os.path.join(manager.path, "cgroup.controllers")).read().split()
counter = os.path.join(sys.argv[3], "counter")
proc = subprocess.Popen(["/bin/sh", "-c", "setsid sleep 300 & echo $! > %s.escaped; "
                         "i=0; while :; do i=$((i+1)); echo $i > %s; sleep 0.02; done" % (counter, counter)],
                        preexec_fn=lambda: manager.attach(os.getpid()))
def value():
    try:
        return int(open(counter).read().split()[-1])
    except Exception:
        return -1
deadline = time.time() + 10
while value() < 3 and time.time() < deadline:
    time.sleep(0.02)
out["cgroup"] = open("/proc/%d/cgroup" % proc.pid).read().strip()
escaped = int(open(counter + ".escaped").read())
out["escaped_in"] = escaped in manager.pids()
out["escaped_sid"] = os.getsid(escaped) == escaped
manager.freeze()
out["frozen"] = manager.frozen()
before = value(); time.sleep(0.5); out["stopped"] = value() == before
manager.thaw()
deadline = time.time() + 5
while value() <= before + 2 and time.time() < deadline:
    time.sleep(0.05)
out["continued"] = value() > before + 2
out["clean"] = manager.clean()
proc.wait(5)
time.sleep(0.1)
out["escaped_alive"] = os.path.exists("/proc/%d" % escaped) and open("/proc/%d/stat" % escaped).read().rsplit(")", 1)[1].split()[0] != "Z"
out["removed"] = not os.path.exists(manager.path)
out["clean_again"] = manager.clean()
for d in (os.path.dirname(manager.path), os.path.dirname(os.path.dirname(manager.path))):
    try:
        os.rmdir(d)
    except OSError:
        pass
print(json.dumps(out))
"""


def _run_v2(tmp_path) -> dict:
    if not ROOT:
        pytest.skip("mounting a cgroup2 hierarchy needs root (this test runs as an ordinary user)")
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")
    mount = tmp_path / "cgroup2"
    mount.mkdir()
    script = tmp_path / "v2.py"
    script.write_text(V2_SCRIPT)
    base = f"oartest-{os.getpid()}-{next(_counter)}/oar"
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         'mount -t cgroup2 none "$0" || exit 99; exec "$1" "$2" "$0" "$3" "$4"',
         str(mount), sys.executable, str(script), base, str(tmp_path)],
        capture_output=True, text=True, timeout=90)
    if result.returncode == 99:
        pytest.skip(f"cannot mount cgroup2 in a private mount namespace here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_v2_adapter_in_a_mounted_cgroup2_hierarchy(tmp_path):
    out = _run_v2(tmp_path)
    assert out["cgroup"].endswith("/oar/root_77"), out
    assert out["escaped_in"] and out["escaped_sid"]
    assert out["frozen"] and out["stopped"] and out["continued"], out
    assert out["clean"] and out["removed"] and out["clean_again"], out
    assert not out["escaped_alive"], out


def test_v2_adapter_cpus_and_memory(tmp_path):
    out = _run_v2(tmp_path)
    if out["missing"]:
        pytest.skip(f"the cgroup2 hierarchy of this host offers no {' and no '.join(out['missing'])} "
                    f"controller (they are bound to cgroup v1 here; it has {out['controllers'] or 'none'}):"
                    " cpuset.cpus and memory.max cannot be tested on this host")
    assert "cpuset" in out["controllers"] and "memory" in out["controllers"]
