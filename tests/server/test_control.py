"""oardel, oarhold, oarresume carried out by a real oar-server, on SQLite and PostgreSQL;
besteffort jobs killed for a normal job, idempotent jobs resubmitted."""

from __future__ import annotations

import os
import time

from tests.server.conftest import process_state, wait_for


def _pid_of(lab, marker: str) -> int:
    """The pid the job wrote in ``marker`` (its shell's pid)."""
    path = lab.top / marker
    wait_for(lambda: path.exists() and path.read_text().strip(), what=f"{marker} written")
    return int(path.read_text().strip())


def test_oardel_kills_a_running_job(running_lab):
    lab = running_lab
    job_id = lab.oarsub(f"echo $$ > {lab.top}/pid; exec sleep 60")
    lab.wait_state(job_id, "Running")
    pid = _pid_of(lab, "pid")
    assert process_state(pid) is not None
    result = lab.cmd("oardel", str(job_id))
    assert result.rc == 0, result.err
    assert lab.wait_state(job_id, "Terminated", "Error") == "Error"
    wait_for(lambda: process_state(pid) in (None, "Z"), what="the job's process gone")
    assert lab.frag_state(job_id) == "FRAGGED"
    events = lab.events(job_id)
    assert events[:2] == ["FRAG_JOB_REQUEST", "SEND_KILL_JOB"]
    assert "EXTERMINATE_JOB" not in events
    assert [s for s, _, _ in lab.state_logs(job_id)][-3:] == ["Running", "Finishing", "Error"]


def test_oardel_of_a_waiting_job(running_lab):
    lab = running_lab
    blocker = lab.oarsub("-l", "/nodes=2", "sleep 60")
    lab.wait_state(blocker, "Running")
    waiting = lab.oarsub("-l", "/nodes=1", "true")
    assert lab.state(waiting) == "Waiting"
    assert lab.cmd("oardel", str(waiting)).rc == 0
    assert lab.wait_state(waiting, "Error") == "Error"
    assert lab.frag_state(waiting) == "FRAGGED"
    assert [s for s, _, _ in lab.state_logs(waiting)] == ["Waiting", "Error"]
    assert lab.job(waiting)["start_time"] == 0
    assert lab.cmd("oardel", str(blocker)).rc == 0
    assert lab.wait_state(blocker, "Error") == "Error"


def test_hold_and_resume_a_waiting_job(running_lab):
    lab = running_lab
    blocker = lab.oarsub("-l", "/nodes=2", f"while [ ! -e {lab.top}/go ]; do sleep 0.1; done")
    lab.wait_state(blocker, "Running")
    waiting = lab.oarsub("-l", "/nodes=1", "true")
    assert lab.cmd("oarhold", str(waiting)).rc == 0
    assert lab.wait_state(waiting, "Hold") == "Hold"
    (lab.top / "go").write_text("")
    assert lab.wait_state(blocker, "Terminated") == "Terminated"
    # held: not scheduled although the resources are free
    time.sleep(1.5)
    assert lab.state(waiting) == "Hold"
    assert lab.cmd("oarresume", str(waiting)).rc == 0
    assert lab.wait_state(waiting, "Terminated", "Error") == "Terminated"
    assert [s for s, _, _ in lab.state_logs(waiting)][:3] == ["Waiting", "Hold", "Waiting"]
    checked = lab.sql('SELECT "to_check" FROM "event_logs" WHERE "job_id" = ?', [waiting])
    assert checked and all(c == "NO" for (c,) in checked)


def test_submitted_on_hold_then_released(running_lab):
    lab = running_lab
    job_id = lab.oarsub("--hold", "true")
    assert lab.state(job_id) == "Hold"
    assert lab.cmd("oarresume", str(job_id)).rc == 0
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"


def test_suspend_and_resume_a_running_job(running_lab):
    lab = running_lab
    go = lab.top / "go"
    job_id = lab.oarsub(f"echo $$ > {lab.top}/pid; while [ ! -e {go} ]; do sleep 0.1; done")
    lab.wait_state(job_id, "Running")
    pid = _pid_of(lab, "pid")
    assert lab.cmd("oarhold", "-r", str(job_id)).rc == 0
    assert lab.wait_state(job_id, "Suspended") == "Suspended"
    assert process_state(pid) == "T"
    assert lab.job(job_id)["suspended"] == "YES"
    assert lab.cmd("oarresume", str(job_id)).rc == 0
    assert lab.wait_state(job_id, "Running") == "Running"
    wait_for(lambda: process_state(pid) in ("S", "R"), what="the job's shell running again")
    go.write_text("")
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    states = [s for s, _, _ in lab.state_logs(job_id)]
    assert states[3:] == ["Running", "Suspended", "Resuming", "Running", "Finishing", "Terminated"]


def test_besteffort_killed_for_a_normal_job_and_idempotent_resubmitted(running_lab):
    lab = running_lab
    plain = lab.oarsub("-t", "besteffort", "-l", "/nodes=1", "sleep 60")
    again = lab.oarsub("-t", "besteffort", "-t", "idempotent", "-l", "/nodes=1", "sleep 60")
    lab.wait_state(plain, "Running")
    lab.wait_state(again, "Running")
    normal = lab.oarsub("-l", "/nodes=2", "true")
    assert lab.wait_state(normal, "Terminated", "Error") == "Terminated"
    for job_id in (plain, again):
        # (a killed job is Finishing from its end report on, and its processes are gone:
        # the normal job may start and end before the cleaning ends the killed ones)
        assert lab.wait_state(job_id, "Error", "Terminated") == "Error"
        assert "BESTEFFORT_KILL" in lab.events(job_id)
    assert "RESUBMIT_JOB_AUTOMATICALLY" in lab.events(again)
    assert "RESUBMIT_JOB_AUTOMATICALLY" not in lab.events(plain)
    resubmitted = lab.sql('SELECT "job_id", "command", "queue_name" FROM "jobs" WHERE "resubmit_job_id" = ?',
                          [again])
    assert len(resubmitted) == 1
    new_id, command, queue = resubmitted[0]
    assert (command, queue) == ("sleep 60", "besteffort")
    assert lab.wait_state(new_id, "Running") == "Running"
    assert lab.cmd("oardel", str(new_id)).rc == 0
    lab.wait_state(new_id, "Error")


def test_idempotent_exit_99_is_resubmitted_once(running_lab):
    lab = running_lab
    marker = lab.top / "ran"
    # the first run asks to be run again (99); the resubmitted one succeeds
    job_id = lab.oarsub("-t", "idempotent", f"if [ -e {marker} ]; then exit 0; else touch {marker}; exit 99; fi")
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    assert lab.job(job_id)["exit_code"] == 99 << 8
    rows = wait_for(lambda: lab.sql('SELECT "job_id" FROM "jobs" WHERE "resubmit_job_id" = ?', [job_id]),
                    what="the resubmitted job")
    assert len(rows) == 1
    assert lab.wait_state(rows[0][0], "Terminated", "Error") == "Terminated"
    assert lab.sql('SELECT COUNT(*) FROM "jobs" WHERE "resubmit_job_id" = ?', [rows[0][0]]) == [(0,)]
    assert os.path.exists(marker)


def test_walltime_reached_the_job_is_killed(running_lab):
    """sarko (every SARKO_FREQUENCY s) asks for the kill, Leon sends it, the end is an Error."""
    lab = running_lab
    job_id = lab.oarsub("-l", "/core=1,walltime=0:0:2", "sleep 60")
    lab.wait_state(job_id, "Running")
    assert lab.wait_state(job_id, "Error", "Terminated") == "Error"
    events = lab.events(job_id)
    assert "WALLTIME" in events and "SEND_KILL_JOB" in events
    job = lab.job(job_id)
    assert 2 <= job["stop_time"] - job["start_time"] < 15


def test_a_kill_that_gets_no_end_exterminates_the_job(lab):
    """oarexec is gone (kill -9), so the kill brings no end report: after JOBDEL_WALLTIME
    the job is exterminated, its nodes suspected."""
    lab.write_conf("JOBDEL_WALLTIME=2")
    lab.start_server()
    job_id = lab.oarsub("-l", "/nodes=1", f"echo $$ > {lab.top}/pid; exec sleep 60")
    lab.wait_state(job_id, "Running")
    job_pid = _pid_of(lab, "pid")
    oarexec_pid = int((lab.runtime / f"oarexec_{job_id}.pid").read_text().strip())
    os.kill(oarexec_pid, 9)
    wait_for(lambda: process_state(oarexec_pid) in (None, "Z"), what="oarexec gone")
    assert lab.cmd("oardel", str(job_id)).rc == 0
    assert lab.wait_state(job_id, "Error", "Terminated") == "Error"
    assert "EXTERMINATE_JOB" in lab.events(job_id)
    assert lab.frag_state(job_id) == "FRAGGED"
    wait_for(lambda: process_state(job_pid) in (None, "Z"), what="the job's process gone")
    # the job's node (2 cores) is Suspected, the other one stays Alive
    wait_for(lambda: lab.sql('SELECT COUNT(*) FROM "resources" WHERE "state" = \'Suspected\'')[0][0] == 2,
             what="the job's node suspected")
    assert lab.sql('SELECT COUNT(*) FROM "resources" WHERE "state" = \'Alive\'')[0][0] == 2


def test_checkpoint_and_user_signal_reach_the_job(running_lab):
    lab = running_lab
    got, go = lab.top / "got", lab.top / "go"
    script = (f"trap 'echo USR2 >> {got}' USR2; trap 'echo USR1 >> {got}' USR1; "
              f"while [ ! -e {go} ]; do sleep 0.1; done")
    job_id = lab.oarsub(script)
    lab.wait_state(job_id, "Running")
    time.sleep(0.5)                      # the traps are set
    assert lab.cmd("oardel", "-c", str(job_id)).rc == 0
    wait_for(lambda: got.exists() and "USR2" in got.read_text(), what="the checkpoint signal")
    wait_for(lambda: "CHECKPOINT_SUCCESS" in lab.events(job_id), what="CHECKPOINT_SUCCESS")
    assert lab.cmd("oardel", "-s", "USR1", str(job_id)).rc == 0
    wait_for(lambda: "USR1" in got.read_text(), what="the user signal")
    go.write_text("")
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    checked = lab.sql('SELECT "to_check" FROM "event_logs" WHERE "job_id" = ? AND "type" IN '
                      '(\'CHECKPOINT\', \'USER_SIGNAL\')', [job_id])
    assert sorted(checked) == [("NO",), ("NO",)]


def test_oardel_of_a_suspended_job(running_lab):
    lab = running_lab
    job_id = lab.oarsub(f"echo $$ > {lab.top}/pid; exec sleep 60")
    lab.wait_state(job_id, "Running")
    pid = _pid_of(lab, "pid")
    assert lab.cmd("oarhold", "-r", str(job_id)).rc == 0
    lab.wait_state(job_id, "Suspended")
    started = time.monotonic()
    assert lab.cmd("oardel", str(job_id)).rc == 0
    assert lab.wait_state(job_id, "Error", "Terminated") == "Error"
    # continued then TERM: no wait for the KILL of JOBDEL_SOFTWALLTIME (20 s)
    assert time.monotonic() - started < 15
    wait_for(lambda: process_state(pid) in (None, "Z"), what="the job's process gone")
