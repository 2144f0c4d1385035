"""When oar-server runs a metascheduler round, on SQLite and PostgreSQL: not every
SERVER_TIMER_PERIOD when nothing changed; at once on a ``Qsub``; at the next tick of the
timer when a job came without its hint (the database is the truth)."""

from __future__ import annotations

import time


STARTED = "metascheduler round started"


def _rounds(lab) -> int:
    return lab.log.read_text().count(STARTED)


def test_idle_server_does_not_rerun_the_round(running_lab):
    lab = running_lab
    job_id = lab.oarsub("true")
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    time.sleep(2)                     # the rounds that follow the job's end
    before = _rounds(lab)
    # SERVER_TIMER_PERIOD=1, sarko every second, finaud every 3 s: nothing changes
    time.sleep(6)
    assert _rounds(lab) - before == 0, lab.log_tail()
    # a submission (with its Qsub hint) is scheduled at once
    job_id = lab.oarsub("true")
    assert lab.wait_state(job_id, "Terminated", "Error", timeout=10) == "Terminated"
    assert _rounds(lab) > before


def test_a_job_without_its_hint_is_scheduled_at_the_next_tick(running_lab):
    lab = running_lab
    time.sleep(2)
    # the job's submitter cannot reach the server: no hint, only the database
    silent = lab.top / "silent.conf"
    silent.write_text(lab.conf.read_text().replace(f"SERVER_PORT={lab.port}", "SERVER_PORT=1"))
    lab.monkeypatch.setenv("OARCONFFILE", str(silent))
    result = lab.cmd("oarsub", "true")
    lab.monkeypatch.setenv("OARCONFFILE", str(lab.conf))
    assert result.rc == 0 and "#WARNING" in result.err, result.err
    job_id = int(result.out.split("=")[1])
    # within a few ticks of the 1 s timer, well before the full round of every 60 s
    assert lab.wait_state(job_id, "Terminated", "Error", timeout=10) == "Terminated"
