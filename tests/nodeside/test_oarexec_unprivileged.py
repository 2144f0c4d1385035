"""oarexec run by an ordinary account (the one-host lab without root): it runs jobs of
that account only, as itself.

The test's Python lives under /root, which other accounts cannot reach, so oarexec runs
here with the system's Python of the same version and this tree plus the virtualenv's
packages on its path (the same files, another interpreter binary).  The end report goes
to a real zmq ROUTER in the test, standing in for the server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from oar_appliance.execution import LaunchError, LocalConnector
from oar_appliance.nodeside.runtime import JobFiles, ProcessGroupJobProcesses, pid_alive, read_pid
from tests.nodeside.conftest import wait_for

WORKTREE = str(Path(__file__).resolve().parents[2])
SYSTEM_PYTHON = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def unprivileged(job_account, tmp_path):
    """A LocalConnector whose oarexec runs as ``job_account``, and a directory it owns."""
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.fail(f"{SYSTEM_PYTHON} is missing", pytrace=False)
    account = pwd.getpwnam(job_account)
    top = Path(tempfile.mkdtemp(prefix="oarexec-unpriv-"))
    top.chmod(0o755)
    home = top / "lab"
    home.mkdir()
    os.chown(home, account.pw_uid, account.pw_gid)
    wrapper = tmp_path / "python-as-account"
    path = os.pathsep.join([WORKTREE, sysconfig.get_paths()["purelib"]])
    wrapper.write_text(f"#!/bin/sh\nexec runuser -u {job_account} -- env PYTHONPATH={path}"
                       f" {SYSTEM_PYTHON} \"$@\"\n")
    wrapper.chmod(0o755)
    yield LocalConnector(python=str(wrapper)), home, account
    runtime = str(home / "runtime")
    for pid_file in Path(runtime).glob("oarexec_*.pid"):  # what is left, by its pid files
        files = JobFiles(runtime, int(pid_file.stem.split("_")[1]))
        pid = read_pid(files.pid)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        ProcessGroupJobProcesses.from_files(files).kill_all(0)
    shutil.rmtree(top, ignore_errors=True)


def test_job_of_its_own_account(unprivileged, jobs, report_server):
    connector, home, account = unprivileged
    data = jobs.data("id -u > uid; echo $OAR_USER > user", user=account.pw_name,
                     launching_directory=str(home), runtime_dir=str(home / "runtime"))
    connector.start_oarexec("node-1", data, 30)
    report = report_server.wait_report(30)
    assert report["oarexec_code"] == 0 and report["user_status"] == 0
    assert (home / "uid").read_text().strip() == str(account.pw_uid)
    assert (home / "user").read_text().strip() == account.pw_name
    assert os.stat(home / "runtime" / f"job_{data['job_id']}.env").st_uid == account.pw_uid


def test_job_of_another_account_is_refused(unprivileged, jobs):
    connector, home, account = unprivileged
    data = jobs.data("touch ran", user="root", launching_directory=str(home),
                     runtime_dir=str(home / "runtime"))
    with pytest.raises(LaunchError) as caught:
        connector.start_oarexec("node-1", data, 30)
    assert caught.value.oarexec_code == 7
    assert f"runs as '{account.pw_name}'" in str(caught.value)
    assert not (home / "ran").exists()


def test_kill_through_jobctl_of_the_same_account(unprivileged, jobs, report_server):
    connector, home, account = unprivileged
    data = jobs.data("touch ready; sleep 300", user=account.pw_name,
                     launching_directory=str(home), runtime_dir=str(home / "runtime"))
    connector.start_oarexec("node-1", data, 30)
    wait_for(lambda: (home / "ready").exists(), what="the job to start")
    result = connector.jobctl("node-1", "kill", data["job_id"], str(home / "runtime"))
    assert result.rc == 0, result.stderr
    assert report_server.wait_report(30)["oarexec_code"] == 3


def test_an_ordinary_account_runs_jobs_without_cgroups(unprivileged, jobs, report_server):
    """``JOB_RESOURCE_MANAGER=auto`` (the default) for a job with cpus, as an ordinary
    account: no cgroup can be made, the job runs in its process group (the lab's way), and
    suspend/resume/clean still work through jobctl."""
    import json

    connector, home, account = unprivileged
    runtime = home / "runtime"
    data = jobs.data("cat /proc/self/cgroup > cgroup; touch ready; exec sleep 300", user=account.pw_name,
                     launching_directory=str(home), runtime_dir=str(runtime),
                     job_resource_manager="auto", cpuset=[0])
    connector.start_oarexec("node-1", data, 30)
    wait_for(lambda: (home / "ready").exists(), what="the job to start")
    described = json.loads((runtime / f"job_{data['job_id']}.manager").read_text())
    assert described["manager"] == {"kind": "process_group"}
    assert "/oar/" not in (home / "cgroup").read_text()
    for action in ("suspend", "resume", "kill"):
        result = connector.jobctl("node-1", action, data["job_id"], str(runtime))
        assert result.rc == 0, (action, result.stderr)
    assert report_server.wait_report(30)["oarexec_code"] == 3
    result = connector.jobctl("node-1", "clean", data["job_id"], str(runtime))
    assert result.rc == 0, result.stderr
    assert not (runtime / f"job_{data['job_id']}.manager").exists()


def test_an_ordinary_account_refuses_a_forced_cgroup(unprivileged, jobs):
    """``JOB_RESOURCE_MANAGER=cgroup`` and oarexec is not root: the job does not start."""
    connector, home, account = unprivileged
    data = jobs.data("touch ran", user=account.pw_name, launching_directory=str(home),
                     runtime_dir=str(home / "runtime"), job_resource_manager="cgroup", cpuset=[0])
    with pytest.raises(LaunchError) as caught:
        connector.start_oarexec("node-1", data, 30)
    assert "cgroup" in str(caught.value) and "not run as root" in str(caught.value)
    assert not (home / "ran").exists()
