"""A real oar-server running a job in its cgroup (root, cgroup v1), on SQLite and PostgreSQL:
``oarhold -r`` freezes it and runs ``JUST_AFTER_SUSPEND_EXEC_FILE``, ``oarresume`` runs
``JUST_BEFORE_RESUME_EXEC_FILE`` and thaws it, the end of the job removes the cgroup.

The jobs' cgroups are nested in the test's own cgroups (a relative
``JOB_RESOURCE_MANAGER_CGROUP_BASE`` unique to the test), never in the host's ``/oar``.
"""

from __future__ import annotations

import os

import pytest

from oar_appliance.nodeside import cgroups
from oar_appliance.nodeside.cgroups import CgroupV1Manager, cgroup_name
from tests.server.conftest import wait_for

HIERARCHY = cgroups.detect()


def _counter(path) -> int:
    try:
        return int(path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return -1


def test_a_job_in_its_cgroup_is_frozen_thawed_and_cleaned(lab):
    if os.geteuid() != 0:
        pytest.skip("real cgroups need root (this test runs as an ordinary user)")
    if HIERARCHY is None or HIERARCHY[0] != "v1":
        pytest.skip("this host has no cgroup v1 cpuset/memory/freezer hierarchies")
    base = f"oartest-server-{os.getpid()}-{abs(hash(str(lab.top))) % 10**8}/oar"
    log = lab.top / "scripts.log"
    after = lab.top / "after.sh"
    after.write_text(f"#!/bin/sh\necho after $1 >> {log}\n")
    before = lab.top / "before.sh"
    before.write_text(f"#!/bin/sh\necho before $1 >> {log}\n")
    for script in (after, before):
        script.chmod(0o755)
    lab.write_conf("JOB_RESOURCE_MANAGER=cgroup", f"JOB_RESOURCE_MANAGER_CGROUP_BASE={base}",
                   f'JUST_AFTER_SUSPEND_EXEC_FILE="{after}"', f'JUST_BEFORE_RESUME_EXEC_FILE="{before}"',
                   "SUSPEND_RESUME_SCRIPT_TIMEOUT=10")
    lab.start_server()
    counter, go = lab.top / "counter", lab.top / "go"
    job_id = lab.oarsub("-l", "/core=1", f"cat /proc/self/cgroup > {lab.top}/cgroup; i=0; "
                        f"while [ ! -e {go} ]; do i=$((i+1)); echo $i > {counter}; sleep 0.05; done")
    lab.wait_state(job_id, "Running")
    manager = CgroupV1Manager.for_job(HIERARCHY[1], base, cgroup_name(lab.job(job_id)["job_user"], job_id))
    try:
        wait_for(lambda: _counter(counter) > 2, what="the job to count")
        name = f"/oar/{lab.job(job_id)['job_user']}_{job_id}"
        paths = {line.split(":", 2)[1]: line.split(":", 2)[2]
                 for line in (lab.top / "cgroup").read_text().splitlines()}
        assert all(paths[c].endswith(name) for c in ("cpuset", "memory", "freezer")), paths
        assert manager.pids()

        assert lab.cmd("oarhold", "-r", str(job_id)).rc == 0
        assert lab.wait_state(job_id, "Suspended") == "Suspended"
        assert manager.frozen()
        wait_for(lambda: log.exists() and log.read_text() == f"after {job_id}\n", what="the suspend script")
        assert lab.cmd("oarresume", str(job_id)).rc == 0
        assert lab.wait_state(job_id, "Running") == "Running"
        assert not manager.frozen()
        assert log.read_text() == f"after {job_id}\nbefore {job_id}\n"
        frozen_at = _counter(counter)
        wait_for(lambda: _counter(counter) > frozen_at + 2, what="the job to count again")

        go.write_text("")
        assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
        wait_for(lambda: not any(os.path.exists(p) for p in manager.paths.values()),
                 what="the job's cgroup removed by the end of the job")
    finally:
        manager.clean()
        for path in manager.paths.values():
            for directory in (os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass
