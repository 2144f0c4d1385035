"""``jobctl prepare`` (a node of a job set up without oarexec, real cgroup v1 as root) and
the leftovers ``jobctl clean`` removes (the job's files; the user's files and System V IPC
objects when the user has no other job on the node)."""

from __future__ import annotations

import io
import json
import os
import pwd
import subprocess
import sys

import pytest

from oar_appliance.nodeside import cgroups, jobctl, node_setup
from oar_appliance.nodeside.runtime import JobFiles
from tests.nodeside.test_cgroups import HIERARCHY, _base, _remove_bases, needs_v1, probe_devices


def _jobctl(argv: list[str], stdin: str = "") -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "oar_appliance.nodeside.jobctl", *argv], input=stdin,
                          capture_output=True, text=True, timeout=30)
    return done.returncode, done.stderr


def test_prepare_makes_the_cgroup_of_this_node_and_clean_removes_it(tmp_path, job_account):
    needs_v1()
    runtime = tmp_path / "runtime"
    data = {"user": job_account, "cpusets": {"here": [0], "elsewhere": [1]}, "job_resource_manager": "cgroup",
            "cgroup_base": _base(), "just_after_suspend_exec_file": None,
            "just_before_resume_exec_file": None, "suspend_resume_script_timeout": 5}
    rc, err = _jobctl(["prepare", "--job-id", "41", "--runtime-dir", str(runtime), "--host", "here"],
                      json.dumps(data))
    assert rc == 0, err
    files = JobFiles(str(runtime), 41)
    manager = cgroups.manager_from_files(files)
    try:
        assert isinstance(manager, cgroups.CgroupV1Manager)
        assert manager.paths["cpuset"].endswith(f"/oar/{job_account}_41")
        with open(os.path.join(manager.paths["cpuset"], "cpuset.cpus")) as cpus:
            assert cpus.read().strip() == "0"
        with open(os.path.join(manager.paths["memory"], "memory.limit_in_bytes")) as limit:
            expected = cgroups.memory_share(cgroups.node_memory(), 1, len(cgroups.node_cpus()))
            assert int(limit.read()) == expected
        # an empty cgroup is frozen all the same (a node where nothing of the job runs yet)
        assert _jobctl(["suspend", "--job-id", "41", "--runtime-dir", str(runtime)])[0] == 0
        assert manager.frozen()
        assert _jobctl(["resume", "--job-id", "41", "--runtime-dir", str(runtime)])[0] == 0
        rc, err = _jobctl(["clean", "--job-id", "41", "--runtime-dir", str(runtime)])
        assert rc == 0, err
        assert not any(os.path.exists(p) for p in manager.paths.values())
        assert not list(runtime.iterdir())
    finally:
        manager.clean()
        _remove_bases(manager)


def test_prepare_denies_the_devices_of_this_node_that_are_not_the_jobs(tmp_path, job_account):
    """This node ("here") has the /dev/full and /dev/zero resources, the job the first."""
    needs_v1()
    if "devices" not in HIERARCHY[1]:
        pytest.skip("this host has no cgroup v1 devices hierarchy")
    runtime = tmp_path / "runtime"
    data = {"user": job_account, "cpusets": {"here": [0]}, "job_resource_manager": "cgroup",
            "cgroup_base": _base(), "devices": {"here": ["/dev/full"], "elsewhere": ["/dev/gpu9"]},
            "node_devices": {"here": ["/dev/full", "/dev/zero"], "elsewhere": ["/dev/gpu8", "/dev/gpu9"]}}
    rc, err = _jobctl(["prepare", "--job-id", "43", "--runtime-dir", str(runtime), "--host", "here"],
                      json.dumps(data))
    assert rc == 0, err
    manager = cgroups.manager_from_files(JobFiles(str(runtime), 43))
    try:
        assert isinstance(manager, cgroups.CgroupV1Manager)
        assert manager.paths["devices"].endswith(f"/oar/{job_account}_43")
        assert probe_devices(manager) == ["/dev/full 4", "/dev/zero EPERM Operation not permitted"]
        rc, err = _jobctl(["clean", "--job-id", "43", "--runtime-dir", str(runtime)])
        assert rc == 0, err
        assert not any(os.path.exists(p) for p in manager.paths.values())
    finally:
        manager.clean()
        _remove_bases(manager)


def test_prepare_refuses_devices_it_cannot_deny(tmp_path, job_account):
    """A device to deny that this node lacks: code 70, nothing left (the server suspects the
    node); the same with a manager that cannot deny devices (none without cgroups)."""
    runtime = tmp_path / "runtime"
    for manager in ("cgroup", "none"):
        data = {"user": job_account, "cpusets": {"here": [0]}, "job_resource_manager": manager,
                "cgroup_base": _base(), "devices": {"here": []},
                "node_devices": {"here": ["/dev/no-such-gpu" if manager == "cgroup" else "/dev/zero"]}}
        rc, err = _jobctl(["prepare", "--job-id", "44", "--runtime-dir", str(runtime), "--host", "here"],
                          json.dumps(data))
        assert rc == 70 and err.startswith("#ERROR: cannot set up the job's cgroup: "), err
        assert ("/dev/no-such-gpu" if manager == "cgroup" else "without cgroup v1") in err
        assert not (runtime / "job_44.manager").exists()


@pytest.mark.parametrize("data, code", [
    ({"user": "root", "cpusets": {}, "node_devices": {"here": "/dev/zero"}}, 2),
    ({"user": "root", "cpusets": {}, "devices": {"here": ["dev/zero"]}}, 2),

    ({"user": "no-such-user-oartest", "cpusets": {}}, 7),
    ({"user": "root", "cpusets": {"here": "0-1"}}, 2),
    ({"cpusets": {}}, 2),
])
def test_prepare_refuses_bad_job_data(tmp_path, data, code):
    rc, err = _jobctl(["prepare", "--job-id", "42", "--runtime-dir", str(tmp_path / "rt"), "--host", "here"],
                      json.dumps(data))
    assert rc == code and err.startswith("#ERROR: "), err
    rc, err = _jobctl(["prepare", "--job-id", "42", "--runtime-dir", str(tmp_path / "rt")], "not json")
    assert rc == 2 and err.startswith("#ERROR: bad job data"), err


def test_leftovers_go_when_the_user_has_no_other_job(tmp_path, job_account):
    account = pwd.getpwnam(job_account)
    runtime, tmp, shm = tmp_path / "runtime", tmp_path / "tmp", tmp_path / "shm"
    for directory in (runtime, tmp, shm):
        directory.mkdir()
    mine = [tmp / "file", tmp / "dir", shm / "segment"]
    (tmp / "dir").mkdir()
    (tmp / "dir" / "inner").write_text("x")
    for path in (tmp / "file", shm / "segment"):
        path.write_text("x")
    for path in mine:
        os.chown(path, account.pw_uid, account.pw_gid)
    (tmp / "roots").write_text("x")
    ipc = subprocess.run(["runuser", "-u", job_account, "--", "ipcmk", "-M", "4096"],
                         capture_output=True, text=True, timeout=10)
    assert ipc.returncode == 0, ipc.stderr
    shm_id = int(ipc.stdout.split()[-1])
    files = JobFiles(str(runtime), 7)
    (runtime / "job_7.key").write_text("key")
    other = JobFiles(str(runtime), 8)
    try:
        with open(cgroups.manager_file(other), "w") as out:
            json.dump({"manager": {"kind": "process_group"}, "user": job_account}, out)
        # another job of the user on the node: only the job's own files go
        removed = node_setup.remove_leftovers(files, job_account, dirs=(str(tmp), str(shm)))
        assert removed == [str(runtime / "job_7.key")]
        assert all(p.exists() for p in mine)
        os.unlink(cgroups.manager_file(other))
        removed = node_setup.remove_leftovers(files, job_account, dirs=(str(tmp), str(shm)))
        assert not any(p.exists() for p in mine) and (tmp / "roots").exists()
        assert f"ipc shm {shm_id}" in removed
        assert shm_id not in node_setup._ipc_ids("shm", account.pw_uid)
    finally:
        subprocess.run(["ipcrm", "-m", str(shm_id)], capture_output=True, timeout=10)


def test_read_job_data_wants_an_object():
    assert node_setup.read_job_data(io.StringIO('{"user": "x"}')) == {"user": "x"}
    with pytest.raises(jobctl.UsageError):
        node_setup.read_job_data(io.StringIO("[1]"))
