"""jobctl against real jobs started by oarexec (see conftest: real processes, a zmq ROUTER
in the test standing in for the server)."""

from __future__ import annotations

import os
import time

from oar_appliance.nodeside.runtime import pid_alive, read_pid
from tests.nodeside.conftest import wait_for


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as stream:
        data = stream.read()
    return data[data.rfind(b")") + 2:].split()[0].decode()


def counter_value(path) -> int:
    try:
        return int(path.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return -1


def test_suspend_and_resume(jobs, report_server):
    command = "echo $$ > shell.pid; i=0; while :; do i=$((i+1)); echo $i > counter; sleep 0.05; done"
    files = jobs.start(jobs.data(command))
    counter = jobs.workdir / "counter"
    wait_for(lambda: counter_value(counter) > 2, what="the job to count")
    shell = int((jobs.workdir / "shell.pid").read_text())
    oarexec = read_pid(files.pid)

    result = jobs.jobctl(files, "suspend")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: proc_state(shell) == "T", timeout=5, what="the shell to stop")
    assert proc_state(oarexec) != "T"  # oarexec itself keeps running
    frozen = counter_value(counter)
    time.sleep(0.6)
    assert counter_value(counter) == frozen

    result = jobs.jobctl(files, "resume")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: counter_value(counter) > frozen + 2, timeout=10, what="the job to count again")

    # a suspended job can still be killed
    assert jobs.jobctl(files, "suspend").returncode == 0
    assert jobs.jobctl(files, "kill").returncode == 0
    assert report_server.wait_report()["oarexec_code"] == 3
    wait_for(lambda: not pid_alive(shell), timeout=10, what="the suspended shell to die")


def test_clean_kills_what_the_job_left_and_removes_its_files(jobs, report_server):
    command = "sleep 300 & echo $! > leftover; exit 0"
    files = jobs.start(jobs.data(command))
    assert report_server.wait_report()["oarexec_code"] == 0
    leftover = int((jobs.workdir / "leftover").read_text())
    assert pid_alive(leftover)  # the command ended, its background child did not
    wait_for(lambda: not os.path.exists(files.pid), what="oarexec to end")
    result = jobs.jobctl(files, "clean")
    assert result.returncode == 0, result.stderr
    assert not pid_alive(leftover)
    for path in files.job_files():
        assert not os.path.exists(path), path
    # cleaning again: nothing left, still a success
    assert jobs.jobctl(files, "clean").returncode == 0


def test_clean_of_a_running_job_kills_oarexec_too(jobs):
    files = jobs.start(jobs.data("sleep 300"))
    oarexec = read_pid(files.pid)
    wait_for(lambda: open(files.pgid).read().split()[0] != "-", what="the command to start")
    pgid = int(open(files.pgid).read().split()[0])
    assert jobs.jobctl(files, "clean").returncode == 0
    wait_for(lambda: not pid_alive(oarexec), timeout=5, what="oarexec to die")
    assert not pid_alive(pgid)


def test_actions_without_oarexec_say_not_found(jobs, tmp_path):
    from oar_appliance.nodeside.runtime import JobFiles

    files = JobFiles(str(tmp_path / "runtime"), 4242)
    for action in (["status"], ["kill"], ["checkpoint"], ["signal", "USR1"], ["suspend"], ["resume"]):
        result = jobs.jobctl(files, *action)
        assert result.returncode == 6, (action, result.stderr)
        assert result.stderr.startswith("#ERROR: ") and "4242" in result.stderr


def test_kill_without_oarexec_still_kills_the_job_processes(jobs, report_server):
    files = jobs.start(jobs.data("sleep 300 & echo $! > leftover; wait"))
    wait_for(lambda: (jobs.workdir / "leftover").exists(), what="the child")
    leftover = int((jobs.workdir / "leftover").read_text())
    os.kill(read_pid(files.pid), 9)  # oarexec lost (e.g. killed by the OOM killer)
    result = jobs.jobctl(files, "kill")
    assert result.returncode == 6 and "no oarexec" in result.stderr
    wait_for(lambda: not pid_alive(leftover), timeout=10, what="the job's processes to die")


def test_bad_usage(jobs, tmp_path):
    from oar_appliance.nodeside.runtime import JobFiles

    files = JobFiles(str(tmp_path), 1)
    assert jobs.jobctl(files, "explode").returncode == 2
    result = jobs.jobctl(files, "signal", "SIGNOTHING")
    assert result.returncode == 2 and "unknown signal" in result.stderr
    assert jobs.jobctl(files, "signal").returncode == 2


def test_status_probes_oarexec_without_touching_the_job(jobs, report_server):
    files = jobs.start(jobs.data("touch ready; sleep 300"))
    wait_for(lambda: (jobs.workdir / "ready").exists(), what="the job to start")
    result = jobs.jobctl(files, "status")
    assert result.returncode == 0 and result.stdout.strip() == str(read_pid(files.pid))
    assert jobs.jobctl(files, "kill").returncode == 0
    assert report_server.wait_report()["oarexec_code"] == 3  # not 42: status sent nothing
    wait_for(lambda: not os.path.exists(files.pid), what="oarexec to end")
    assert jobs.jobctl(files, "status").returncode == 6


def test_unsafe_runtime_directory_is_refused(jobs, tmp_path):
    from oar_appliance.nodeside.runtime import JobFiles

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "oarexec_5.pid").write_text(f"{os.getpid()}\n")  # planted: would name this process
    result = jobs.jobctl(JobFiles(str(shared), 5), "kill")
    assert result.returncode == 8 and "writable by others" in result.stderr
