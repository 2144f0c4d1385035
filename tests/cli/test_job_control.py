"""oardel, oarhold, oarresume, oarwalltime: requests recorded for the server, on SQLite and PostgreSQL.

The caller is the one thing substituted (``caller_name``); a real zmq ROUTER socket on a
loopback port stands for the server's notification port.
"""

from __future__ import annotations

import socket
import time

import pytest

from oar_appliance import job_control
from oar_appliance.db.models import EventLog
from oar_appliance.errors import ConflictError
from tests.jobdata import add_job
from tests.sqlutil import run_sql

USAGE, EXPRESSION, NOT_FOUND, CONFLICT, PERMISSION, DISABLED = 2, 5, 6, 7, 8, 11


# --------------------------------------------------------------------------- fixtures and helpers

class Server:
    """A ROUTER socket (as oar-server's) where the commands' notifications arrive."""

    def __init__(self, pull):
        self.pull = pull

    def tags(self) -> list[str]:
        """Every tag received so far (waits up to 2 s for the first one)."""
        received = []
        while self.pull.poll(2000 if not received else 200):
            received.append(self.pull.recv_multipart()[-1].decode())
        return received

    def silent(self) -> bool:
        return not self.pull.poll(300)


@pytest.fixture
def server(oar_conf):
    import zmq

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    add_conf(oar_conf, f"SERVER_PORT={port}")
    pull = zmq.Context.instance().socket(zmq.ROUTER)
    pull.bind(f"tcp://127.0.0.1:{port}")
    try:
        yield Server(pull)
    finally:
        pull.close(linger=0)


@pytest.fixture
def run(cluster, server):
    """Runs a command on the cluster of 32 resources, with a listening server."""
    return cluster


def add_conf(path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


@pytest.fixture
def as_user(monkeypatch):
    def become(name: str) -> None:
        monkeypatch.setattr("oar_appliance.cli.common.caller_name", lambda: name)

    return become


def events(db_url):
    return run_sql(db_url, "SELECT type, job_id, description, to_check FROM event_logs ORDER BY event_id")


def frags(db_url):
    return run_sql(db_url, "SELECT frag_id_job, frag_state FROM frag_jobs ORDER BY frag_id_job")


def walltime_rows(db_url):
    return run_sql(db_url, "SELECT job_id, pending, force, delay_next_jobs, granted, granted_with_force, "
                           "granted_with_delaying_next_jobs FROM walltime_change ORDER BY job_id")


def job(db_url, **kwargs) -> int:
    kwargs.setdefault("job_user", "alice")
    if kwargs.get("state") in ("Running", "Suspended", "Resuming", "Finishing") and "resources" not in kwargs:
        kwargs["resources"] = [1]
        kwargs.setdefault("start_time", int(time.time()) - 600)
    return add_job(db_url, **kwargs)


# --------------------------------------------------------------------------- oardel

def test_owner_deletes_jobs(run, db_url, as_user, server):
    waiting = job(db_url, state="Waiting")
    running = job(db_url, state="Running")
    as_user("alice")
    before = int(time.time())
    result = run("oardel", str(waiting), str(running))
    assert result.rc == 0, result.err
    assert result.lines == [f"Deleting the job = {waiting} ...REGISTERED.",
                            f"Deleting the job = {running} ...REGISTERED."]
    assert result.err == ""
    assert frags(db_url) == [(waiting, "LEON"), (running, "LEON")]
    dates = run_sql(db_url, "SELECT frag_date FROM frag_jobs")
    assert all(before <= d <= int(time.time()) for (d,) in dates)
    assert events(db_url) == [
        ("FRAG_JOB_REQUEST", waiting, f"User alice requested to frag the job {waiting}", "NO"),
        ("FRAG_JOB_REQUEST", running, f"User alice requested to frag the job {running}", "NO"),
    ]
    assert server.tags() == ["Qdel"]
    # the jobs themselves are the server's business
    assert run_sql(db_url, "SELECT state FROM jobs ORDER BY job_id") == [("Waiting",), ("Running",)]


def test_oardel_goes_on_after_a_refused_job(run, db_url, as_user, server):
    mine = job(db_url, state="Waiting")
    bobs = job(db_url, job_user="bob", state="Waiting")
    done = job(db_url, state="Terminated")
    failed = job(db_url, state="Error")
    ending = job(db_url, state="Finishing")
    as_user("alice")
    result = run("oardel", "999", str(bobs), str(done), str(failed), str(ending), str(mine))
    assert result.rc == NOT_FOUND  # the first error met
    assert result.lines == [f"Deleting the job = {mine} ...REGISTERED."]
    assert result.err.splitlines() == [
        "#ERROR: job 999 does not exist",
        f"#ERROR: job {bobs} is not yours (you are alice): only its owner, oar or root may delete it",
        f"#ERROR: job {done} is already finished",
        f"#ERROR: job {failed} is already finished",
        f"#ERROR: job {ending} is already ending (Finishing)",
    ]
    assert frags(db_url) == [(mine, "LEON")]
    assert [e[1] for e in events(db_url)] == [mine]
    assert server.tags() == ["Qdel"]

    # a second deletion is an error of its own, and nothing is written twice
    again = run("oardel", str(mine))
    assert again.rc == CONFLICT
    assert again.err.strip() == f"#ERROR: job {mine} is already being deleted"
    assert again.out == ""
    assert frags(db_url) == [(mine, "LEON")]
    assert len(events(db_url)) == 1
    assert server.silent()  # nothing recorded, nobody woken up

    # the exit code is that of the first error, whatever comes next
    first_not_yours = run("oardel", str(bobs), "999")
    assert first_not_yours.rc == PERMISSION


def test_each_job_is_one_transaction(run, db_url, as_user, monkeypatch):
    """A failure after the frag_jobs row of a job is written takes that row back, only it."""
    first, second, third = (job(db_url, state="Waiting") for _ in range(3))
    real = EventLog.insert_many

    def failing_for_second(rows):
        rows = list(rows)
        if rows[0]["job_id"] == second:
            raise ConflictError("simulated failure")
        return real(rows)

    monkeypatch.setattr(EventLog, "insert_many", failing_for_second)
    as_user("alice")
    result = run("oardel", str(first), str(second), str(third))
    assert result.rc == CONFLICT
    assert result.err.splitlines() == ["#ERROR: simulated failure"]
    assert frags(db_url) == [(first, "LEON"), (third, "LEON")]
    assert [e[1] for e in events(db_url)] == [first, third]


def test_checkpoint_a_running_job(run, db_url, as_user, server):
    running = job(db_url, state="Running")
    waiting = job(db_url, state="Waiting")
    interactive = job(db_url, state="Running", job_type="INTERACTIVE")
    as_user("alice")
    result = run("oardel", "-c", str(running))
    assert result.rc == 0, result.err
    assert result.lines == [f"Checkpointing the job {running} ...REGISTERED."]
    assert events(db_url) == [("CHECKPOINT", running, f"User alice requested a checkpoint on the job {running}", "YES")]
    assert frags(db_url) == []
    assert server.tags() == ["ChState"]

    refused = run("oardel", "--checkpoint", str(waiting), str(interactive))
    assert refused.rc == CONFLICT
    assert refused.err.splitlines() == [
        f"#ERROR: job {waiting} is not running (Waiting): only a running job can be checkpointed",
        f"#ERROR: job {interactive} is interactive: only a batch job can be checkpointed",
    ]
    assert len(events(db_url)) == 1


def test_signal_a_running_job(run, db_url, as_user, server):
    running = job(db_url, state="Running")
    as_user("alice")
    for given, name in [("USR1", "SIGUSR1"), ("sigusr2", "SIGUSR2"), ("15", "SIGTERM"), ("SIGINT", "SIGINT")]:
        result = run("oardel", "-s", given, str(running))
        assert result.rc == 0, result.err
        assert result.lines == [f"Signaling the job {running} with {name} ...REGISTERED."]
        kind, job_id, description, to_check = events(db_url)[-1]
        assert (kind, job_id, to_check) == ("USER_SIGNAL", running, "YES")
        assert description == f"User alice requested the signal {name} on the job {running}"
        assert job_control.requested_signal(description) == name
        assert server.tags() == ["ChState"]
    assert len(events(db_url)) == 4
    assert frags(db_url) == []


BAD_USAGE = [
    (["-s", "BOGUS", "1"], "unknown signal 'BOGUS'"),
    (["-s", "0", "1"], "unknown signal '0'"),
    (["-s", "65", "1"], "unknown signal '65'"),
    (["-s", "USR1; rm -rf /", "1"], "unknown signal"),
    (["-c", "-s", "USR1", "1"], "not allowed with"),
    ([], "give job ids, --array or --sql"),
    (["abc"], "must be a number"),
    (["--array", "0"], "positive"),
]


def test_oardel_bad_usage(run, db_url, snapshot, server):
    job(db_url, state="Running")
    before = snapshot()
    for argv, word in BAD_USAGE:
        result = run("oardel", *argv)
        assert result.rc == USAGE, argv
        assert result.err.startswith("#ERROR: ") and word in result.err, (argv, result.err)
    assert snapshot() == before
    assert server.silent()


# --------------------------------------------------------------------------- oarhold / oarresume

def test_hold_and_resume_a_waiting_job(run, db_url, as_user, server):
    waiting = job(db_url, state="Waiting")
    resuming = job(db_url, state="Resuming")
    as_user("alice")
    result = run("oarhold", str(waiting), str(resuming))
    assert result.rc == 0, result.err
    assert result.lines == [f"[{waiting}] Hold request was sent to the OAR server.",
                            f"[{resuming}] Hold request was sent to the OAR server."]
    assert events(db_url) == [
        ("HOLD_WAITING_JOB", waiting, f"User alice launched oarhold on the job {waiting}", "YES"),
        ("HOLD_WAITING_JOB", resuming, f"User alice launched oarhold on the job {resuming}", "YES"),
    ]
    assert server.tags() == ["ChState"]

    # the server moves it to Hold; then it can be resumed by its owner
    run_sql(db_url, "UPDATE jobs SET state = 'Hold' WHERE job_id = %d" % waiting)
    result = run("oarresume", str(waiting))
    assert result.rc == 0, result.err
    assert result.lines == [f"[{waiting}] Resume request was sent to the OAR server."]
    assert events(db_url)[-1] == ("RESUME_JOB", waiting, f"User alice launched oarresume on the job {waiting}", "YES")
    assert server.tags() == ["ChState"]


def test_hold_refuses_other_states(run, db_url, as_user, server):
    running = job(db_url, state="Running")
    held = job(db_url, state="Hold")
    suspended = job(db_url, state="Suspended")
    launching = job(db_url, state="Launching", resources=[2])
    done = job(db_url, state="Terminated")
    deleted = job(db_url, state="Waiting")
    run_sql(db_url, f"INSERT INTO frag_jobs (frag_id_job, frag_date, frag_state) VALUES ({deleted}, 1, 'LEON')")
    as_user("alice")
    result = run("oarhold", str(running), str(held), str(suspended), str(launching), str(done), str(deleted))
    assert result.rc == CONFLICT
    assert result.out == ""
    assert result.err.splitlines() == [
        f"#ERROR: job {running} is running: use -r to suspend it",
        f"#ERROR: job {held} is already held",
        f"#ERROR: job {suspended} is already suspended",
        f"#ERROR: job {launching} is starting (Launching): it can be suspended once it is Running",
        f"#ERROR: job {done} is already finished",
        f"#ERROR: job {deleted} is being deleted",
    ]
    assert events(db_url) == []
    assert server.silent()


def test_suspend_needs_an_admin_or_the_setting(run, db_url, oar_conf, as_user, server):
    running = job(db_url, state="Running")
    as_user("alice")
    refused = run("oarhold", "-r", str(running))
    assert refused.rc == PERMISSION
    assert refused.err.strip() == ("#ERROR: only oar or root may suspend a running job "
                                   "(you are alice; USERS_ALLOWED_HOLD_RESUME is off)")
    assert events(db_url) == []

    # a waiting job is simply held, -r or not
    waiting = job(db_url, state="Waiting")
    assert run("oarhold", "-r", str(waiting)).rc == 0
    assert events(db_url) == [("HOLD_WAITING_JOB", waiting, f"User alice launched oarhold on the job {waiting}", "YES")]
    assert server.tags() == ["ChState"]

    as_user("oar")
    result = run("oarhold", "-r", str(running))
    assert result.rc == 0, result.err
    assert result.lines == [f"[{running}] Hold request was sent to the OAR server."]
    assert events(db_url)[-1] == ("HOLD_RUNNING_JOB", running, f"User oar launched oarhold on the job {running}", "YES")
    assert server.tags() == ["ChState"]

    add_conf(oar_conf, "USERS_ALLOWED_HOLD_RESUME=yes")
    as_user("alice")
    result = run("oarhold", "--running", str(running))
    assert result.rc == 0, result.err
    assert events(db_url)[-1] == ("HOLD_RUNNING_JOB", running, f"User alice launched oarhold on the job {running}", "YES")


def test_deploy_and_cosystem_jobs_cannot_be_suspended(run, db_url, server):
    deploy = job(db_url, state="Running", types=["deploy"])
    cosystem = job(db_url, state="Running", types=["cosystem"], resources=[2])
    result = run("oarhold", "-r", str(deploy), str(cosystem))  # as root
    assert result.rc == CONFLICT
    assert result.err.splitlines() == [
        f"#ERROR: job {deploy} is of the deploy type: it cannot be suspended",
        f"#ERROR: job {cosystem} is of the cosystem type: it cannot be suspended",
    ]
    assert events(db_url) == []


def test_resume_a_suspended_job(run, db_url, oar_conf, as_user, server):
    suspended = job(db_url, state="Suspended")
    waiting = job(db_url, state="Waiting")
    running = job(db_url, state="Running", resources=[2])
    as_user("alice")
    refused = run("oarresume", str(suspended), str(waiting), str(running))
    assert refused.rc == PERMISSION
    assert refused.err.splitlines() == [
        "#ERROR: only oar or root may resume a suspended job (you are alice; USERS_ALLOWED_HOLD_RESUME is off)",
        f"#ERROR: job {waiting} is Waiting: only Hold or Suspended jobs can be resumed",
        f"#ERROR: job {running} is Running: only Hold or Suspended jobs can be resumed",
    ]
    assert events(db_url) == []
    assert server.silent()

    as_user("root")
    result = run("oarresume", str(suspended))
    assert result.rc == 0, result.err
    assert result.lines == [f"[{suspended}] Resume request was sent to the OAR server."]
    assert events(db_url) == [("RESUME_JOB", suspended, f"User root launched oarresume on the job {suspended}", "YES")]
    assert server.tags() == ["ChState"]

    add_conf(oar_conf, "USERS_ALLOWED_HOLD_RESUME=yes")
    as_user("alice")
    assert run("oarresume", str(suspended)).rc == 0
    assert events(db_url)[-1][:3] == ("RESUME_JOB", suspended, f"User alice launched oarresume on the job {suspended}")


# --------------------------------------------------------------------------- ownership

OTHER_USER_CASES = [
    # command, arguments before the job id, state of alice's job, what bob is told he may not do
    ("oardel", [], "Waiting", "delete it"),
    ("oardel", ["-c"], "Running", "checkpoint it"),
    ("oardel", ["-s", "USR1"], "Running", "signal it"),
    ("oarhold", [], "Waiting", "hold it"),
    ("oarhold", ["-r"], "Running", "hold it"),
    ("oarresume", [], "Hold", "resume it"),
    ("oarwalltime", [], "Running", "see its walltime"),
    ("oarwalltime", ["+1:00"], "Running", "change its walltime"),
]


@pytest.mark.parametrize("command,argv,state,what", OTHER_USER_CASES)
def test_another_users_job_is_refused(run, db_url, oar_conf, snapshot, as_user, server, command, argv, state, what):
    add_conf(oar_conf, "WALLTIME_CHANGE_ENABLED=yes")
    alices = job(db_url, state=state)
    before = snapshot()
    as_user("bob")
    args = [str(alices), *argv] if command == "oarwalltime" else [*argv, str(alices)]
    result = run(command, *args)
    assert result.rc == PERMISSION
    assert result.err.strip() == f"#ERROR: job {alices} is not yours (you are bob): only its owner, oar or root may {what}"
    assert result.out == ""
    assert snapshot() == before
    assert server.silent()


@pytest.mark.parametrize("command", ["oardel", "oarhold", "oarresume"])
def test_nothing_but_not_yours_is_revealed(run, db_url, as_user, command):
    """Whatever the state of another user's job, the answer is the same."""
    jobs = [job(db_url, state=state) for state in ("Waiting", "Terminated", "Hold", "Suspended")]
    as_user("bob")
    result = run(command, *map(str, jobs))
    verb = {"oardel": "delete", "oarhold": "hold", "oarresume": "resume"}[command]
    assert result.err.splitlines() == [
        f"#ERROR: job {j} is not yours (you are bob): only its owner, oar or root may {verb} it" for j in jobs]


@pytest.mark.parametrize("admin", ["oar", "root"])
def test_admins_act_on_anybodys_job(run, db_url, as_user, server, admin):
    waiting = job(db_url, state="Waiting")
    held = job(db_url, job_user="bob", state="Hold")
    running = job(db_url, job_user="carol", state="Running")
    as_user(admin)
    for command, argv, tag in [("oarhold", [waiting], "ChState"), ("oarresume", [held], "ChState"),
                               ("oardel", ["-s", "TERM", running], "ChState"),
                               ("oardel", [waiting, held, running], "Qdel")]:
        result = run(command, *map(str, argv))
        assert result.rc == 0, result.err
        assert server.tags() == [tag]
    assert frags(db_url) == [(waiting, "LEON"), (held, "LEON"), (running, "LEON")]
    assert events(db_url) == [
        ("HOLD_WAITING_JOB", waiting, f"User {admin} launched oarhold on the job {waiting}", "YES"),
        ("RESUME_JOB", held, f"User {admin} launched oarresume on the job {held}", "YES"),
        ("USER_SIGNAL", running, f"User {admin} requested the signal SIGTERM on the job {running}", "YES"),
        ("FRAG_JOB_REQUEST", waiting, f"User {admin} requested to frag the job {waiting}", "NO"),
        ("FRAG_JOB_REQUEST", held, f"User {admin} requested to frag the job {held}", "NO"),
        ("FRAG_JOB_REQUEST", running, f"User {admin} requested to frag the job {running}", "NO"),
    ]


# --------------------------------------------------------------------------- --sql and --array

def test_sql_selects_the_callers_unfinished_jobs(run, db_url, as_user, server):
    a1 = job(db_url, state="Waiting", project="p1")
    a2 = job(db_url, state="Waiting", project="p1")
    job(db_url, state="Terminated", project="p1")
    job(db_url, state="Waiting", project="p2")
    b1 = job(db_url, job_user="bob", state="Waiting", project="p1")
    as_user("alice")
    result = run("oarhold", "--sql", "project = 'p1'")
    assert result.rc == 0, result.err
    assert result.lines == [f"[{a1}] Hold request was sent to the OAR server.",
                            f"[{a2}] Hold request was sent to the OAR server."]
    assert [(e[0], e[1]) for e in events(db_url)] == [("HOLD_WAITING_JOB", a1), ("HOLD_WAITING_JOB", a2)]
    assert server.tags() == ["ChState"]

    nothing = run("oardel", "--sql", "project = 'p3' OR job_user = 'bob'")
    assert nothing.rc == NOT_FOUND
    assert nothing.err.strip() == "#ERROR: no unfinished job of yours matches \"project = 'p3' OR job_user = 'bob'\""
    assert frags(db_url) == []

    as_user("root")  # an admin selects among every user's jobs
    result = run("oardel", "--sql", "project = 'p1' AND job_name IS NULL")
    assert result.rc == 0, result.err
    assert frags(db_url) == [(a1, "LEON"), (a2, "LEON"), (b1, "LEON")]
    assert server.tags() == ["Qdel"]


def test_array_selects_its_unfinished_jobs(run, db_url, as_user, server):
    first = job(db_url, state="Waiting", array_id=500, array_index=1)
    second = job(db_url, state="Running", array_id=500, array_index=2)
    job(db_url, state="Terminated", array_id=500, array_index=3)
    other = job(db_url, state="Waiting", array_id=600)
    as_user("alice")
    result = run("oardel", "--array", "500", "--array", "404")
    assert result.rc == NOT_FOUND
    assert result.lines == [f"Deleting the job = {first} ...REGISTERED.",
                            f"Deleting the job = {second} ...REGISTERED."]
    assert result.err.strip() == "#ERROR: array 404 does not exist"
    assert frags(db_url) == [(first, "LEON"), (second, "LEON")]
    assert server.tags() == ["Qdel"]

    result = run("oarhold", "--array", "600")
    assert result.rc == 0, result.err
    assert events(db_url)[-1][:2] == ("HOLD_WAITING_JOB", other)

    run_sql(db_url, f"UPDATE jobs SET state = 'Error' WHERE job_id = {other}")
    finished = run("oarresume", "--array", "600")
    assert finished.rc == CONFLICT
    assert finished.err.strip() == "#ERROR: every job of array 600 is already finished"


INJECTIONS = [
    ("1=1; DROP TABLE jobs", ";"),
    ("job_id = 1 OR 1 IN (SELECT job_id FROM challenges)", "SELECT"),
    ("pg_sleep(5) = 1", "pg_sleep"),
    ("challenge = 'x'", "unknown job field 'challenge'"),
    ("job_user = 'alice' -- comment", "--"),
    ("job_user = 'a' UNION SELECT challenge FROM challenges", "UNION"),
    ("", "empty"),
]


@pytest.mark.parametrize("command", ["oardel", "oarhold", "oarresume"])
def test_sql_injection_is_refused(run, db_url, snapshot, as_user, server, command):
    job(db_url, state="Waiting", project="p1")
    job(db_url, state="Hold", project="p1")
    before = snapshot()
    as_user("alice")
    for expression, word in INJECTIONS:
        result = run(command, "--sql", expression)
        assert result.rc == EXPRESSION, (expression, result.err)
        assert result.err.startswith("#ERROR: ") and len(result.err.strip().splitlines()) == 1
        assert word.lower() in result.err.lower(), (expression, result.err)
        assert result.out == ""
    assert snapshot() == before
    assert server.silent()


# --------------------------------------------------------------------------- oarwalltime

@pytest.fixture
def walltime_on(oar_conf):
    add_conf(oar_conf, "WALLTIME_CHANGE_ENABLED=yes")


def test_walltime_change_is_off_by_default(run, db_url, snapshot, server):
    running = job(db_url, state="Running")
    before = snapshot()
    for argv in ([str(running)], [str(running), "+1:00"], ["999", "+1"]):
        result = run("oarwalltime", *argv)
        assert result.rc == DISABLED
        assert result.err.strip() == "#ERROR: walltime change is disabled (WALLTIME_CHANGE_ENABLED)"
    assert snapshot() == before
    assert server.silent()
    help_text = run("oarwalltime", "--help").out
    assert "11  disabled error" in help_text


def test_walltime_change_requests(run, db_url, as_user, server, walltime_on):
    running = job(db_url, state="Running", walltime=3600)  # started 10 minutes ago
    as_user("alice")
    shown = run("oarwalltime", str(running))
    assert shown.rc == 0, shown.err
    assert shown.lines == [
        f"Walltime change status for job {running} (job is running):",
        "  Current walltime:     1:00:00",
        "  Possible increase:  UNLIMITED",
        "  Already granted:     +0:00:00",
        "  Pending/unsatisfied: +0:00:00",
    ]

    result = run("oarwalltime", str(running), "+1:00")
    assert result.rc == 0, result.err
    assert result.lines == [f"Accepted: walltime change request accepted for job {running}, it will be handled shortly."]
    assert walltime_rows(db_url) == [(running, 3600, "NO", "NO", 0, 0, 0)]
    assert events(db_url) == [("WALLTIME_REQUEST", running, f"User alice requested a walltime change of +1:00:00 "
                               f"for the job {running} (force: NO, delay next jobs: NO)", "NO")]
    assert server.tags() == ["Walltime"]

    # a new request replaces the pending one; a bare value is the new walltime
    result = run("oarwalltime", str(running), "2:30")
    assert result.rc == 0, result.err
    assert result.lines == [f"Accepted: walltime change request updated for job {running}, it will be handled shortly."]
    assert walltime_rows(db_url) == [(running, 5400, "NO", "NO", 0, 0, 0)]
    assert run("oarwalltime", str(running)).lines[-1] == "  Pending/unsatisfied: +1:30:00"

    # a decrease, as a negative argument
    result = run("oarwalltime", str(running), "-0:30")
    assert result.rc == 0, result.err
    assert walltime_rows(db_url) == [(running, -1800, "NO", "NO", 0, 0, 0)]

    # +0 cancels
    assert run("oarwalltime", str(running), "+0").rc == 0
    assert walltime_rows(db_url) == [(running, 0, "NO", "NO", 0, 0, 0)]
    assert run_sql(db_url, f"SELECT moldable_walltime FROM moldable_job_descriptions WHERE moldable_job_id = {running}") == [(3600,)]


def test_walltime_cannot_go_below_the_time_run(run, db_url, snapshot, as_user, walltime_on):
    running = job(db_url, state="Running", walltime=3600)  # has run 10 minutes
    before = snapshot()
    as_user("alice")
    for change in ("-0:55", "0:05"):
        result = run("oarwalltime", str(running), change)
        assert result.rc == CONFLICT
        assert result.err.strip().startswith(f"#ERROR: job {running} has already run 0:10:")
        assert result.err.strip().endswith("its walltime cannot become 0:05:00")
    assert snapshot() == before
    # suspended time does not count as run time
    run_sql(db_url, f"INSERT INTO job_state_logs (job_id, job_state, date_start, date_stop) "
                    f"VALUES ({running}, 'Suspended', {int(time.time()) - 500}, {int(time.time()) - 100})")
    assert run("oarwalltime", str(running), "-0:55").rc == 0
    assert walltime_rows(db_url) == [(running, -3300, "NO", "NO", 0, 0, 0)]


def test_walltime_options_and_states(run, db_url, snapshot, as_user, server, walltime_on):
    running = job(db_url, state="Running", walltime=3600)
    waiting = job(db_url, state="Waiting")
    container = job(db_url, state="Running", walltime=7200, types=["container"], resources=[2])
    before = snapshot()
    as_user("alice")
    cases = [
        ([str(running), "+1", "--force"], PERMISSION, "#ERROR: only oar or root may use --force (you are alice)"),
        ([str(running), "+1", "--delay-next-jobs"], PERMISSION,
         "#ERROR: only oar or root may use --delay-next-jobs (you are alice)"),
        ([str(waiting), "+1"], CONFLICT,
         f"#ERROR: job {waiting} is not running (Waiting): only the walltime of a running job can change"),
        ([str(container), "-1"], CONFLICT, f"#ERROR: job {container} is a container: its walltime cannot be reduced"),
        (["999", "+1"], NOT_FOUND, "#ERROR: job 999 does not exist"),
        ([str(running), "1:xx"], USAGE, "#ERROR: invalid walltime change '1:xx': expected [+|-]hours, "
                                        "hours:minutes or hours:minutes:seconds (e.g. +1:30)"),
        ([str(running), "0"], USAGE, "#ERROR: walltime change '0' is 0 seconds; it must be longer than 0"),
        ([str(running), "--force"], USAGE,
         "#ERROR: --force and --delay-next-jobs go with a walltime change (see oarwalltime --help)"),
        ([str(running), "+1", "+2"], USAGE, None),
    ]
    for argv, rc, message in cases:
        result = run("oarwalltime", *argv)
        assert result.rc == rc, (argv, result.err)
        if message is not None:
            assert result.err.strip() == message
    assert snapshot() == before
    assert server.silent()

    shown = run("oarwalltime", str(waiting))
    assert shown.lines == [f"Walltime change status for job {waiting} (job is not running yet):", "  N/A"]

    as_user("root")
    result = run("oarwalltime", str(running), "--force", "+1", "--delay-next-jobs")  # options anywhere
    assert result.rc == 0, result.err
    assert walltime_rows(db_url) == [(running, 3600, "YES", "YES", 0, 0, 0)]
    assert events(db_url)[-1][2] == (f"User root requested a walltime change of +1:00:00 for the job {running} "
                                     "(force: YES, delay next jobs: YES)")
    assert run("oarwalltime", str(running)).lines[-1] == "  Pending/unsatisfied: +1:00:00 (will possibly delay next jobs)"
    # force and delay apply to increases only
    assert run("oarwalltime", str(running), "-0:10", "--force").rc == 0
    assert walltime_rows(db_url) == [(running, -600, "NO", "NO", 0, 0, 0)]


def test_walltime_status_after_grants(run, db_url, walltime_on):
    finished = job(db_url, state="Terminated", walltime=5400, start_time=1_700_000_000, stop_time=1_700_003_000,
                   resources=[1])
    run_sql(db_url, "INSERT INTO walltime_change (job_id, pending, force, delay_next_jobs, granted, "
                    "granted_with_force, granted_with_delaying_next_jobs) "
                    f"VALUES ({finished}, 600, 'NO', 'NO', 1800, 1800, 0)")
    result = run("oarwalltime", str(finished))
    assert result.rc == 0, result.err
    assert result.lines == [
        f"Walltime change status for job {finished} (job is not running):",
        "  Walltime:     1:30:00",
        "  Granted:     +0:30:00 (forced: +0:30:00)",
        "  Unsatisfied: +0:10:00",
    ]


# --------------------------------------------------------------------------- the server

def test_unreachable_server_is_a_warning(cluster, db_url, oar_conf, as_user):
    add_conf(oar_conf, "SERVER_PORT=1")
    add_conf(oar_conf, "WALLTIME_CHANGE_ENABLED=yes")
    waiting = job(db_url, state="Waiting")
    running = job(db_url, state="Running")
    as_user("alice")
    for command, argv, tag in [("oarhold", [str(waiting)], "ChState"),
                               ("oardel", [str(waiting)], "Qdel"),
                               ("oarwalltime", [str(running), "+1"], "Walltime")]:
        result = cluster(command, *argv)
        assert result.rc == 0, result.err
        assert result.err.strip() == (f"#WARNING: the OAR server at 127.0.0.1:1 did not take the notification "
                                      f"{tag}: the request is recorded and will be carried out when the server runs")
    assert frags(db_url) == [(waiting, "LEON")]
    assert [e[0] for e in events(db_url)] == ["HOLD_WAITING_JOB", "FRAG_JOB_REQUEST", "WALLTIME_REQUEST"]
    assert walltime_rows(db_url) == [(running, 3600, "NO", "NO", 0, 0, 0)]


@pytest.mark.parametrize("command", ["oardel", "oarhold", "oarresume", "oarwalltime"])
def test_help_documents_the_command(command, capsys):
    import importlib

    module = importlib.import_module("oar_appliance.cli." + command)
    assert module.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "exit codes:" in text
    for line in ("  6  not found error", "  7  conflict error", "  8  permission error"):
        assert line in text
    assert "oar or root" in text
    assert " 11  disabled error" in text  # the shared table lists every class
