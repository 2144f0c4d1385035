"""kill -9 of oar-server during a large metascheduler round (hundreds of waiting jobs),
then a restart, on SQLite and PostgreSQL: the round's writes are all or nothing, every job
is planned once and launched at most once, no resource is given to two jobs at a time."""

from __future__ import annotations

import re
import signal
import time

from tests.server.conftest import WAIT, wait_for

JOBS = 400
STARTED, DONE = "metascheduler round started", "metascheduler round done"


def _rounds(lab) -> list[str]:
    """The round lines of the log, in order."""
    text = lab.log.read_text() if lab.log.exists() else ""
    return [line for line in text.splitlines() if STARTED in line or DONE in line]


def _kill_during_a_round(lab, attempts: int = 6) -> int:
    """Start the server, kill it (-9) while a round runs; retried when the round ended
    between the look and the kill; how many attempts it took."""
    for attempt in range(1, attempts + 1):
        before = len(_rounds(lab))
        lab.start_server()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            lines = _rounds(lab)[before:]
            if lines and STARTED in lines[-1]:
                lab.stop_server(signal.SIGKILL)
                break
            time.sleep(0.005)
        else:
            raise AssertionError("no round started\n" + lab.log_tail())
        if STARTED in _rounds(lab)[-1]:
            return attempt
    raise AssertionError(f"no kill landed inside a round in {attempts} attempts")


def test_killed_during_a_large_round(lab):
    runs = lab.top / "runs"
    # every job takes every resource: the round plans them one after the other
    result = lab.cmd("oarsub", "--array", str(JOBS), "-l", "/nodes=2/core=2,walltime=0:05:00",
                     f"echo $OAR_JOB_ID >> {runs}")
    assert result.rc == 0, result.err
    ids = [int(i) for i in re.findall(r"^OAR_JOB_ID=(\d+)$", result.out, re.M)]
    assert len(ids) == JOBS
    attempts = _kill_during_a_round(lab)
    # nothing half-written: no prediction, or one per waiting job (the round committed)
    planned = lab.sql('SELECT COUNT(*) FROM "gantt_jobs_predictions" WHERE "moldable_job_id" <> 0')[0][0]
    waiting = lab.sql('SELECT COUNT(*) FROM "jobs" WHERE "state" = \'Waiting\'')[0][0]
    assert planned in (0, waiting) or planned == waiting + 1, (planned, waiting)
    # a new server plans every job and runs them, each once
    lab.start_server()
    wait_for(lambda: lab.sql('SELECT COUNT(*) FROM "jobs" WHERE "state" = \'Terminated\'')[0][0] >= 5,
             what="five jobs run after the restart")
    lab.stop_server()
    seconds = [float(m) for m in re.findall(r"round done in ([0-9.]+) s", lab.log.read_text())]
    states = dict(lab.sql('SELECT "state", COUNT(*) FROM "jobs" GROUP BY "state"'))
    # (the server stopped: the job it had started, if any, keeps running)
    active = {"toLaunch", "Launching", "Running", "Finishing"}
    assert set(states) <= {"Waiting", "Terminated"} | active, states
    assert sum(states.values()) == JOBS and sum(states.get(s, 0) for s in active) <= 1
    ran = [int(x) for x in runs.read_text().split()]
    assert len(ran) == len(set(ran))
    terminated = {r[0] for r in lab.sql('SELECT "job_id" FROM "jobs" WHERE "state" = \'Terminated\'')}
    started = terminated | {r[0] for r in lab.sql('SELECT "job_id" FROM "jobs" WHERE "state" <> \'Waiting\'')}
    assert terminated <= set(ran) <= started
    # every job waiting is planned once, after the others and on all the resources
    planned = lab.sql('SELECT m."moldable_job_id", COUNT(DISTINCT p."start_time"), COUNT(g."resource_id") '
                      'FROM "gantt_jobs_predictions" p '
                      'JOIN "moldable_job_descriptions" m ON m."moldable_id" = p."moldable_job_id" '
                      'JOIN "gantt_jobs_resources" g ON g."moldable_job_id" = p."moldable_job_id" '
                      'JOIN "jobs" j ON j."job_id" = m."moldable_job_id" WHERE j."state" = \'Waiting\' '
                      'GROUP BY m."moldable_job_id"')
    assert len(planned) == states.get("Waiting", 0)
    assert all(starts == 1 and resources == 4 for _, starts, resources in planned)
    # each job went through each state at most once; the ended ones ran one after the other
    logs = lab.sql('SELECT "job_id", "job_state", COUNT(*) FROM "job_state_logs" GROUP BY "job_id", "job_state"')
    assert all(count == 1 for _, _, count in logs), [r for r in logs if r[2] != 1]
    spans = sorted(tuple(r) for r in lab.sql(
        'SELECT "start_time", "stop_time" FROM "jobs" WHERE "state" = \'Terminated\''))
    for (_, stop), (start, _) in zip(spans, spans[1:]):
        assert start >= stop
    print(f"\nkilled inside a round of {JOBS} jobs after {attempts} attempt(s); "
          f"rounds took {', '.join(f'{s:.2f}' for s in seconds[:3]) or '-'} s")
