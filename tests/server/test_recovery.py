"""kill -9 of oar-server at several points, then a restart, on SQLite and PostgreSQL:
no job lost, none launched twice, every end recorded once."""

from __future__ import annotations

import os
import signal
import time

from tests.server.conftest import process_state, wait_for


def _script(lab, name: str, body: str) -> str:
    path = lab.top / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def _kill_pid_file(path) -> None:
    if path.exists():
        try:
            os.kill(int(path.read_text().strip()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _count(logs, state: str) -> int:
    return sum(1 for s, _, _ in logs if s == state)


def test_killed_mid_launch(lab):
    """The server dies while the job is Launching (in its server prologue, before oarexec):
    after the restart the job is in Error and its command never ran."""
    flag, pid_file = lab.top / "slow", lab.top / "prologue.pid"
    flag.write_text("")
    prologue = _script(lab, "prologue", f"if [ -e {flag} ]; then echo $$ > {pid_file}; sleep 30; fi")
    lab.write_conf(f'SERVER_PROLOGUE_EXEC_FILE="{prologue}"')
    lab.start_server()
    ran = lab.top / "ran"
    try:
        job_id = lab.oarsub(f"echo x >> {ran}")
        lab.wait_state(job_id, "Launching")
        wait_for(pid_file.exists, what="the prologue started")
        lab.stop_server(signal.SIGKILL)
    finally:
        _kill_pid_file(pid_file)
    flag.unlink()
    lab.start_server()
    assert lab.wait_state(job_id, "Error", "Terminated", "Running") == "Error"
    assert "LAUNCHING_OAREXEC_TIMEOUT" in lab.events(job_id)
    time.sleep(1)
    assert not ran.exists()
    logs = lab.state_logs(job_id)
    assert _count(logs, "Launching") == 1 and _count(logs, "Running") == 0
    # the restarted server runs new jobs
    other = lab.oarsub(f"echo y >> {ran}")
    assert lab.wait_state(other, "Terminated", "Error") == "Terminated"
    assert ran.read_text() == "y\n"


def test_killed_while_jobs_run_and_end(running_lab):
    """Jobs keep running while the server is down; those that ended meanwhile report when it
    is back (oarexec retries) and their end is recorded once."""
    lab = running_lab
    go = lab.top / "go"
    short = [lab.oarsub("-l", "/core=1", f"sleep 1; echo done-{i}") for i in range(2)]
    long = lab.oarsub("-l", "/core=1", f"echo $$ > {lab.top}/pid; while [ ! -e {go} ]; do sleep 0.1; done")
    for job_id in short + [long]:
        lab.wait_state(job_id, "Running")
    lab.stop_server(signal.SIGKILL)
    wait_for(lambda: all((lab.work / f"OAR.{j}.stdout").exists()
                         and "done" in (lab.work / f"OAR.{j}.stdout").read_text() for j in short),
             what="the short jobs' commands done")
    time.sleep(1)
    assert [lab.state(j) for j in short] == ["Running", "Running"]
    pid = int((lab.top / "pid").read_text())
    lab.start_server()
    for job_id in short:
        assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    # the long job kept running through the restart
    assert lab.state(long) == "Running" and process_state(pid) not in (None, "Z")
    go.write_text("")
    assert lab.wait_state(long, "Terminated", "Error") == "Terminated"
    for job_id in short + [long]:
        logs = lab.state_logs(job_id)
        assert [_count(logs, s) for s in ("Launching", "Running", "Finishing", "Terminated")] == [1, 1, 1, 1]
        assert lab.job(job_id)["exit_code"] == 0


def test_killed_while_a_job_is_finishing(lab):
    """The server dies in the server epilogue of a Finishing job: the restart completes the
    end once."""
    flag, pid_file = lab.top / "slow", lab.top / "epilogue.pid"
    flag.write_text("")
    epilogue = _script(lab, "epilogue", f"if [ -e {flag} ]; then echo $$ > {pid_file}; sleep 30; fi")
    lab.write_conf(f'SERVER_EPILOGUE_EXEC_FILE="{epilogue}"')
    lab.start_server()
    try:
        job_id = lab.oarsub("exit 5")
        lab.wait_state(job_id, "Finishing")
        wait_for(pid_file.exists, what="the epilogue started")
        lab.stop_server(signal.SIGKILL)
    finally:
        _kill_pid_file(pid_file)
    flag.unlink()
    assert lab.state(job_id) == "Finishing"
    lab.start_server()
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    assert lab.job(job_id)["exit_code"] == 5 << 8
    logs = lab.state_logs(job_id)
    assert _count(logs, "Finishing") == 1 and _count(logs, "Terminated") == 1


def test_many_restarts_launch_nothing_twice(lab):
    """Jobs submitted while the server is killed again and again each run exactly once."""
    runs = lab.top / "runs"
    lab.start_server()
    jobs = []
    for round_ in range(3):
        jobs += [lab.oarsub("-l", "/core=1", f"echo $OAR_JOB_ID >> {runs}") for _ in range(4)]
        time.sleep(0.3 * round_)
        lab.stop_server(signal.SIGKILL)
        lab.start_server()
    for job_id in jobs:
        assert lab.wait_state(job_id, "Terminated", "Error") in ("Terminated", "Error")
    ran = runs.read_text().split() if runs.exists() else []
    assert len(ran) == len(set(ran))                       # none ran twice
    terminated = [j for j in jobs if lab.state(j) == "Terminated"]
    assert sorted(map(int, ran)) == sorted(terminated)     # every Terminated job ran, once
    for job_id in jobs:
        assert _count(lab.state_logs(job_id), "Launching") <= 1
