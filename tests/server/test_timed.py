"""What the server does at a given time, on SQLite and PostgreSQL: the ``--checkpoint``
signal before the walltime, the walltime kill after it, and an advance reservation that
starts at its date."""

from __future__ import annotations

import time

from tests.server.conftest import wait_for


def _event_dates(lab, job_id: int) -> dict[str, int]:
    rows = lab.sql('SELECT "type", "date" FROM "event_logs" WHERE "job_id" = ? '
                   'ORDER BY "event_id"', [job_id])
    dates: dict[str, int] = {}
    for kind, date in rows:
        dates.setdefault(kind, date)
    return dates


def test_checkpoint_signal_comes_before_the_walltime_kill(running_lab):
    lab = running_lab
    got = lab.top / "got"
    # walltime 8 s, checkpoint 5 s before it: the signal about 3 s after the start
    script = f"trap 'echo USR2 $(date +%s) >> {got}' USR2; while true; do sleep 0.2; done"
    job_id = lab.oarsub("--checkpoint", "5", "-l", "/core=1,walltime=0:00:08", script)
    lab.wait_state(job_id, "Running")
    start = lab.job(job_id)["start_time"]
    wait_for(lambda: got.exists() and "USR2" in got.read_text(), what="the checkpoint signal",
             timeout=30)
    signalled = int(got.read_text().split()[1])
    assert start + 3 - 2 <= signalled < start + 8, (start, signalled)
    assert lab.wait_state(job_id, "Terminated", "Error", timeout=60) == "Error"
    dates = _event_dates(lab, job_id)
    assert "CHECKPOINT" in dates and "WALLTIME" in dates, dates
    assert dates["CHECKPOINT"] < dates["WALLTIME"]
    assert dates["WALLTIME"] >= start + 8
    # the signal reached the job while it ran, once
    assert got.read_text().count("USR2") == 1


def test_reservation_starts_at_its_date(running_lab):
    lab = running_lab
    date = int(time.time()) + 6
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(date))
    job_id = lab.oarsub("-r", text, "-l", "/nodes=1,walltime=0:01:00", "sleep 30")
    assert lab.job(job_id)["reservation"] == "Scheduled"
    assert lab.state(job_id) == "Waiting"
    lab.wait_state(job_id, "Running", timeout=60)
    start = lab.job(job_id)["start_time"]
    # not before its date; within a timer period or two after it
    assert date <= start <= date + 3, (date, start)
    assert lab.cmd("oardel", str(job_id)).rc == 0
    lab.wait_state(job_id, "Error", "Terminated")
