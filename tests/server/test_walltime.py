"""``oarwalltime`` requests applied by a real oar-server, on SQLite and PostgreSQL: a
reduction at once (sarko then ends the job at its new walltime), an increase only as far
as the next planned job allows (the rest stays pending until the way is free), all of it
with ``--delay-next-jobs``, never over an accepted reservation."""

from __future__ import annotations

import time

from tests.server.conftest import WAIT, wait_for


def _walltime(lab, job_id) -> int:
    return lab.sql('SELECT m."moldable_walltime" FROM "jobs" j JOIN "moldable_job_descriptions" m '
                   'ON m."moldable_id" = j."assigned_moldable_job" WHERE j."job_id" = ?', [job_id])[0][0]


def _change(lab, job_id) -> tuple:
    return lab.sql('SELECT "pending", "granted", "granted_with_force", "granted_with_delaying_next_jobs" '
                   'FROM "walltime_change" WHERE "job_id" = ?', [job_id])[0]


def _oarwalltime(lab, *argv):
    result = lab.cmd("oarwalltime", *argv)
    assert result.rc == 0, result.err
    return result.out


def _start(lab, *argv) -> int:
    lab.write_conf("WALLTIME_CHANGE_ENABLED=1")
    lab.start_server()
    job_id = lab.oarsub(*argv)
    lab.wait_state(job_id, "Running")
    return job_id


def test_reduction_is_applied_and_sarko_ends_the_job(lab):
    job_id = _start(lab, "-l", "/nodes=1/core=1,walltime=1:00:00", "sleep 120")
    assert "Accepted" in _oarwalltime(lab, str(job_id), "0:00:06")
    wait_for(lambda: _walltime(lab, job_id) == 6, what="the reduced walltime")
    assert _change(lab, job_id) == (0, 6 - 3600, 0, 0)
    out = _oarwalltime(lab, str(job_id))
    assert "Current walltime:     0:00:06" in out and "Already granted:     -0:59:54" in out, out
    assert "Pending/unsatisfied: +0:00:00" in out, out
    # sarko kills it at its new walltime, well before the old one
    assert lab.wait_state(job_id, "Terminated", "Error", timeout=WAIT) == "Error"
    job = lab.job(job_id)
    assert job["stop_time"] - job["start_time"] < 30
    assert "WALLTIME_REQUEST" in lab.events(job_id)


def _blocked_increase(lab, *options):
    """A job on every resource, a second one planned after it; +10 min asked for the first."""
    first = _start(lab, "-l", "/nodes=2/core=2,walltime=0:01:00", "sleep 120")
    second = lab.oarsub("-l", "/nodes=2/core=2,walltime=0:01:00", "true")
    wait_for(lambda: lab.sql('SELECT p."start_time" FROM "gantt_jobs_predictions" p JOIN "jobs" j '
                             'ON j."job_id" = ? JOIN "moldable_job_descriptions" m ON m."moldable_job_id" = j."job_id" '
                             'WHERE p."moldable_job_id" = m."moldable_id"', [second]), what="the second job planned")
    _oarwalltime(lab, *options, str(first), "+0:10:00")
    return first, second


def test_increase_waits_for_the_next_job_then_is_granted(lab):
    first, second = _blocked_increase(lab)
    # several passes (SERVER_TIMER_PERIOD=1): nothing can be granted, the second job is right after
    time.sleep(3)
    assert _walltime(lab, first) == 60
    assert _change(lab, first) == (600, 0, 0, 0)
    assert "Pending/unsatisfied: +0:10:00" in _oarwalltime(lab, str(first))
    # the way is free: granted in full
    assert lab.cmd("oardel", str(second)).rc == 0
    wait_for(lambda: _walltime(lab, first) == 660, what="the granted increase")
    assert _change(lab, first) == (0, 600, 0, 0)
    assert lab.state(first) == "Running"


def test_increase_delaying_next_jobs_and_forced(lab):
    first, second = _blocked_increase(lab, "--force", "--delay-next-jobs")
    wait_for(lambda: _walltime(lab, first) == 660, what="the granted increase")
    assert _change(lab, first) == (0, 600, 600, 600)
    out = _oarwalltime(lab, str(first))
    assert "(forced: +0:10:00, delaying next jobs: +0:10:00)" in out, out
    # the next round plans the second job after the new end
    start = lab.job(first)["start_time"]
    wait_for(lambda: lab.sql('SELECT p."start_time" FROM "gantt_jobs_predictions" p JOIN "moldable_job_descriptions" m '
                             'ON m."moldable_id" = p."moldable_job_id" WHERE m."moldable_job_id" = ? '
                             'AND p."start_time" >= ?', [second, start + 660]), what="the second job delayed")
    assert lab.state(second) == "Waiting"


def test_an_accepted_reservation_is_never_delayed(lab):
    first = _start(lab, "-l", "/nodes=2/core=2,walltime=0:01:00", "sleep 120")
    start = lab.job(first)["start_time"]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start + 60 + 120))
    resa = lab.oarsub("-r", when, "-l", "/nodes=1/core=1,walltime=0:01:00", "true")
    wait_for(lambda: lab.job(resa)["reservation"] == "Scheduled", what="the reservation accepted")
    _oarwalltime(lab, "--delay-next-jobs", str(first), "+0:10:00")
    # granted up to the reservation's start, minus the security time; the rest stays pending
    wait_for(lambda: _walltime(lab, first) > 60, what="a partial increase")
    assert _walltime(lab, first) == 60 + 120 - 1
    assert _change(lab, first)[:2] == (600 - 119, 119)
