"""oarstat, run in-process on SQLite and PostgreSQL, on jobs written by tests/jobdata.py."""

from __future__ import annotations

import json
import time

import peewee
import pytest
import yaml

from oar_appliance import job_views
from oar_appliance.db.models import JOB_STATES
from tests.jobdata import add_job
from tests.sqlutil import raw_database, run_sql

USAGE, EXPRESSION, NOT_FOUND = 2, 5, 6
T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC


@pytest.fixture
def utc(monkeypatch):
    """Dates printed in UTC, so that the expected texts are written out in full."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def caller(monkeypatch):
    """``caller("bob")``: the commands now run as bob (as the other CLI tests do it)."""

    def set_caller(name: str) -> None:
        monkeypatch.setattr("oar_appliance.cli.common.caller_name", lambda environ=None: name)

    return set_caller


@pytest.fixture
def statements(monkeypatch):
    """Record every SQL statement run through peewee (what the commands use)."""
    seen: list[str] = []
    original = peewee.Database.execute_sql

    def recording(self, sql, params=None, *args, **kwargs):
        seen.append(sql)
        return original(self, sql, params, *args, **kwargs)

    monkeypatch.setattr(peewee.Database, "execute_sql", recording)
    return seen


def job_columns(db_url) -> list[str]:
    with raw_database(db_url) as db:
        return [c.name for c in db.get_columns("jobs")]


def add_moldable(db_url, job_id, walltime, levels=(("resource_id", 2),), predicted_start=None, resources=()):
    """A further moldable alternative for a job (add_job writes the first one)."""
    with raw_database(db_url) as db, db.atomic():
        mark = "?" if db_url.startswith("sqlite") else "%s"
        db.execute_sql(f"INSERT INTO moldable_job_descriptions (moldable_job_id, moldable_walltime) "
                       f"VALUES ({mark}, {mark})", [job_id, walltime])
        moldable = db.execute_sql("SELECT MAX(moldable_id) FROM moldable_job_descriptions").fetchone()[0]
        db.execute_sql(f"INSERT INTO job_resource_groups (res_group_moldable_id) VALUES ({mark})", [moldable])
        group = db.execute_sql("SELECT MAX(res_group_id) FROM job_resource_groups").fetchone()[0]
        for order, (label, count) in enumerate(levels):
            db.execute_sql(
                "INSERT INTO job_resource_descriptions (res_job_group_id, res_job_resource_type, "
                f"res_job_value, res_job_order) VALUES ({mark}, {mark}, {mark}, {mark})",
                [group, label, count, order])
        if predicted_start is not None:
            db.execute_sql("INSERT INTO gantt_jobs_predictions (moldable_job_id, start_time) "
                           f"VALUES ({mark}, {mark})", [moldable, predicted_start])
            for rid in resources:
                db.execute_sql(f"INSERT INTO gantt_jobs_resources (moldable_job_id, resource_id) "
                               f"VALUES ({mark}, {mark})", [moldable, rid])
        return moldable


def add_event(db_url, job_id, type_, date, description):
    mark = "?" if db_url.startswith("sqlite") else "%s"
    run_sql(db_url, f"INSERT INTO event_logs (type, job_id, date, description, to_check) "
                    f"VALUES ({mark}, {mark}, {mark}, {mark}, 'NO')", [type_, job_id, date, description])


def one_error_line(result) -> str:
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("#ERROR: "), result.err
    assert "Traceback" not in result.out + result.err
    return lines[0]


# --------------------------------------------------------------------------- the default table

def test_default_table_lists_unfinished_jobs_with_oar_letters(cluster, db_url, utc):
    oar = cluster
    ids = {state: add_job(db_url, state=state, job_user=f"u{i}", job_name=f"n_{state}",
                          submission_time=T0 + i, resources=[i + 1])
           for i, state in enumerate(JOB_STATES)}
    result = oar("oarstat")
    assert result.rc == 0, result.err
    assert result.lines[0] == "Job id     Name           User           Submission Date     S Queue"
    assert result.lines[1] == "---------- -------------- -------------- ------------------- - ----------"
    rows = result.lines[2:]
    shown = [int(line.split()[0]) for line in rows]
    assert shown == sorted(ids[s] for s in JOB_STATES if s not in ("Terminated", "Error"))
    letters = {int(line.split()[0]): line[61] for line in rows}
    expected = {"Waiting": "W", "Hold": "H", "toLaunch": "L", "toError": "E", "toAckReservation": "W",
                "Launching": "L", "Running": "R", "Suspended": "S", "Resuming": "S", "Finishing": "F"}
    assert letters == {ids[s]: letter for s, letter in expected.items()}
    # the exact OAR 2.5 line: fixed widths, local date, queue
    running = ids["Running"]
    assert f"{running:<10} n_Running      u6             2023-11-14 22:13:26 R default   " in rows
    assert job_views.STATE_LETTERS["Terminated"] == "T" and job_views.STATE_LETTERS["Error"] == "E"
    assert set(job_views.STATE_LETTERS) == set(JOB_STATES)


def test_no_job_prints_nothing(cluster):
    result = cluster("oarstat")
    assert (result.rc, result.out, result.err) == (0, "", "")


def test_long_names_are_cut_as_oar_does(cluster, db_url):
    job = add_job(db_url, job_name="a_very_long_job_name_indeed", job_user="someone_with_a_long_login")
    line = cluster("oarstat").lines[2]
    assert line.startswith(f"{job:<10} a_very_long_jo someone_with_a ")


# --------------------------------------------------------------------------- full details

def test_full_details_of_a_running_job(cluster, db_url, utc):
    oar = cluster
    first = add_job(db_url, state="Terminated", start_time=T0 + 10, stop_time=T0 + 20, resources=[1])
    job = add_job(
        db_url, state="Running", job_name="sim", project="p1", resources=[9, 10, 11, 12, 13],
        levels=(("network_address", 1), ("core", 4)), constraint="host = 'node-2'",
        types=["besteffort", "timesharing=*,*"], dependencies=[first], start_time=T0 + 60,
        walltime=5400, exit_code=256, message="FIFO scheduling OK",
    )
    add_event(db_url, job, "WALLTIME", T0 + 300, "the job reached its walltime")
    add_event(db_url, job, "FRAG_JOB_REQUEST", T0 + 200, "user asked to delete it")
    result = oar("oarstat", "-f", "-j", str(job))
    assert result.rc == 0, result.err
    lines = result.lines
    assert lines[0] == f"Job_Id: {job}"
    fields = dict(line.strip().split(" = ", 1) for line in lines[1:] if " = " in line)
    assert fields["job_name"] == "sim"
    assert fields["project"] == "p1"
    assert fields["state"] == "Running"
    assert fields["types"] == "besteffort, timesharing=*,*"
    assert fields["dependencies"] == str(first)
    assert fields["walltime"] == "1:30:00"
    assert fields["resource_request"] == "-l \"{host = 'node-2'}/network_address=1/core=4,walltime=1:30:00\""
    assert fields["scheduled_resources"] == "9+10+11+12+13"
    assert fields["assigned_hostnames"] == "node-2"
    assert fields["submission_time"] == "2023-11-14 22:13:20"
    assert fields["start_time"] == "2023-11-14 22:14:20"
    assert fields["exit_code"] == "256 (1,0,0)"
    assert fields["message"] == "FIFO scheduling OK"
    assert fields["scheduled_start"] == "no prediction"
    assert fields["command"] == "sleep 60"  # the caller (root) is an administrator
    # every field of the documented set, in order, events last with one line each
    keys = [line.strip().split(" =", 1)[0] for line in lines[1:]
            if line.startswith("    ") and not line.startswith("        ")]
    assert keys == job_columns(db_url) + list(job_views.EXTRA_FIELDS)
    events_at = lines.index("    events =")
    assert lines[events_at + 1:events_at + 3] == [
        "        2023-11-14 22:16:40> FRAG_JOB_REQUEST: user asked to delete it",
        "        2023-11-14 22:18:20> WALLTIME: the job reached its walltime",
    ]


def test_full_details_of_every_unfinished_job_by_default(cluster, db_url):
    oar = cluster
    a = add_job(db_url, state="Waiting")
    b = add_job(db_url, state="Running", resources=[1])
    add_job(db_url, state="Terminated")
    result = oar("oarstat", "-f")
    assert [line for line in result.lines if line.startswith("Job_Id:")] == [f"Job_Id: {a}", f"Job_Id: {b}"]


def test_waiting_job_prediction_and_alternatives(cluster, db_url, utc):
    oar = cluster
    planned = add_job(db_url, state="Waiting", walltime=600, predicted_start=T0 + 3600, resources=[5, 6])
    unplanned = add_job(db_url, state="Waiting", walltime=600)
    add_moldable(db_url, unplanned, 7200, levels=(("network_address", 2), ("cpu", -1)))
    # a job whose second alternative is the one the scheduler planned
    second = add_job(db_url, state="Waiting", walltime=600)
    add_moldable(db_url, second, 1800, predicted_start=T0 + 60, resources=[7, 8])

    data = json.loads(oar("oarstat", "-J", "-j", f"{planned},{unplanned},{second}").out)
    assert data[str(planned)]["scheduled_start"] == T0 + 3600
    assert data[str(planned)]["scheduled_resources"] == [5, 6]
    assert data[str(planned)]["assigned_hostnames"] == []
    assert data[str(planned)]["walltime"] == 600

    assert data[str(unplanned)]["scheduled_start"] is None
    assert data[str(unplanned)]["scheduled_resources"] == []
    assert data[str(unplanned)]["walltime"] == 600  # the first alternative
    assert data[str(unplanned)]["resource_request"] == [
        "/resource_id=1,walltime=0:10:00", "/network_address=2/cpu=ALL,walltime=2:00:00"]

    assert data[str(second)]["walltime"] == 1800  # the planned alternative
    assert data[str(second)]["scheduled_start"] == T0 + 60
    assert data[str(second)]["scheduled_resources"] == [7, 8]

    text = oar("oarstat", "-f", "-j", str(planned))
    assert "    scheduled_start = 2023-11-14 23:13:20" in text.lines
    assert "    scheduled_resources = 5+6" in text.lines


def test_a_corrupt_request_does_not_hide_the_jobs(cluster, db_url):
    """Rows no oarsub can write (a group without levels) are shown as they are, not a failure."""
    oar = cluster
    broken = add_job(db_url, state="Waiting", walltime=120)
    fine = add_job(db_url, state="Waiting", levels=(("core", -2),))
    run_sql(db_url, "DELETE FROM job_resource_descriptions WHERE res_job_group_id IN (SELECT res_group_id "
                    "FROM job_resource_groups JOIN moldable_job_descriptions ON moldable_id = res_group_moldable_id "
                    f"WHERE moldable_job_id = {broken})")
    result = oar("oarstat", "-J")
    assert result.rc == 0, result.err
    data = json.loads(result.out)
    assert data[str(broken)]["resource_request"] == ["walltime=0:02:00"]
    assert data[str(fine)]["resource_request"] == ["/core=BEST,walltime=1:00:00"]


def test_count_codes_match_the_request_language():
    from oar_appliance.lang import request

    assert job_views.COUNT_NAMES == request.COUNT_NAMES


# --------------------------------------------------------------------------- JSON and YAML

def test_json_and_yaml_carry_the_documented_field_set(cluster, db_url, caller):
    oar = cluster
    mine = add_job(db_url, job_user="alice", state="Running", resources=[1, 2], types=["deploy"])
    other = add_job(db_url, job_user="bob", state="Waiting", predicted_start=T0, resources=[3])
    caller("alice")
    by_json = json.loads(oar("oarstat", "-J").out)
    result = oar("oarstat", "-Y")
    assert "!!" not in result.out  # no language tags
    by_yaml = yaml.safe_load(result.out)
    assert by_json == by_yaml
    assert list(by_json) == [str(mine), str(other)]
    expected = job_columns(db_url) + list(job_views.EXTRA_FIELDS)
    for record in by_json.values():
        assert list(record) == expected
    assert by_json[str(mine)]["types"] == ["deploy"]
    assert by_json[str(mine)]["assigned_hostnames"] == ["node-1"]
    assert by_json[str(mine)]["scheduled_resources"] == [1, 2]
    # -f changes nothing to -J
    assert json.loads(oar("oarstat", "-J", "-f").out) == by_json


def test_empty_selection_in_json_is_an_empty_object(cluster):
    result = cluster("oarstat", "-J")
    assert result.rc == 0 and json.loads(result.out) == {}


# --------------------------------------------------------------------------- privacy

def test_private_fields_only_for_owner_and_admins(cluster, db_url, caller):
    oar = cluster
    job = add_job(db_url, job_user="alice", state="Running", resources=[1], job_name="visible",
                  command="./secret_tool --token=XYZ", launching_directory="/home/alice/private",
                  job_env="TOKEN=XYZ", stdout_file="/home/alice/out", stderr_file="/home/alice/err",
                  notify="mail:alice@example.org", info_type="frontend:1234",
                  initial_request="oarsub ./secret_tool --token=XYZ", project="pX",
                  properties="host = 'node-1'", message="hello")

    caller("mallory")
    seen = json.loads(oar("oarstat", "-J", "-j", str(job)).out)[str(job)]
    for name in job_views.PRIVATE_FIELDS:
        assert name in seen and seen[name] is None, name
    for name, value in [("job_name", "visible"), ("job_user", "alice"), ("state", "Running"),
                        ("queue_name", "default"), ("project", "pX"), ("properties", "host = 'node-1'"),
                        ("message", "hello"), ("submission_time", T0), ("walltime", 3600),
                        ("scheduled_resources", [1]), ("assigned_hostnames", ["node-1"])]:
        assert seen[name] == value, name
    assert list(seen) == job_columns(db_url) + list(job_views.EXTRA_FIELDS)
    for args in (["-f", "-j", str(job)], ["-Y", "-j", str(job)], ["-f"], ["-J"]):
        out = oar("oarstat", *args).out
        for secret in ("XYZ", "/home/alice", "alice@example.org", "frontend:1234"):
            assert secret not in out, (args, secret)
    text = oar("oarstat", "-f", "-j", str(job)).lines
    assert "    command =" in text and "    job_env =" in text

    for viewer in ("alice", "oar", "root"):
        caller(viewer)
        seen = json.loads(oar("oarstat", "-J", "-j", str(job)).out)[str(job)]
        assert seen["command"] == "./secret_tool --token=XYZ"
        assert seen["job_env"] == "TOKEN=XYZ"
        assert seen["initial_request"] == "oarsub ./secret_tool --token=XYZ"
        assert seen["launching_directory"] == "/home/alice/private"
        assert seen["notify"] == "mail:alice@example.org"
        assert seen["info_type"] == "frontend:1234"
        assert seen["stdout_file"] == "/home/alice/out" and seen["stderr_file"] == "/home/alice/err"


def test_challenges_are_never_read_nor_shown(cluster, db_url, statements, utc):
    oar = cluster
    jobs = [add_job(db_url, state=s, resources=[i + 1], predicted_start=T0 if s == "Waiting" else None,
                    start_time=T0 if s != "Waiting" else 0, stop_time=T0 + 5 if s == "Terminated" else 0)
            for i, s in enumerate(("Waiting", "Running", "Terminated"))]
    for job in jobs:
        assert run_sql(db_url, f"SELECT challenge FROM challenges WHERE job_id = {job}") == [(f"secret-{job}",)]
    ids = ",".join(map(str, jobs))
    statements.clear()  # from here on, only what oarstat runs
    outputs = []
    for args in ([], ["-f"], ["-J"], ["-Y"], ["-s"], ["-e", "-j", ids], ["-f", "-j", ids], ["-J", "-j", ids],
                 ["--sql", "1=1", "-J"], ["-g", "2023-11-01,2023-12-01"], ["-g", "2023-11-01,2023-12-01", "-J"]):
        result = oar("oarstat", *args)
        assert result.rc == 0, (args, result.err)
        outputs.append(result.out)
    assert all("secret-" not in out for out in outputs)
    assert str(jobs[2]) in json.loads(outputs[-1])  # the history did show the finished job
    assert statements and not any("challenge" in sql.lower() for sql in statements)


# --------------------------------------------------------------------------- -s, -j, -u, --array

def test_state_view(cluster, db_url):
    oar = cluster
    a = add_job(db_url, state="Waiting")
    b = add_job(db_url, state="Running", resources=[1])
    c = add_job(db_url, state="Error")
    assert oar("oarstat", "-s").lines == [f"{a}: Waiting", f"{b}: Running"]
    assert oar("oarstat", "-s", "-j", str(c), "-j", str(a)).lines == [f"{a}: Waiting", f"{c}: Error"]
    assert json.loads(oar("oarstat", "-s", "-J", "-j", f"{a},{c}").out) == {str(a): "Waiting", str(c): "Error"}


def test_select_jobs_by_id_in_any_state(cluster, db_url):
    oar = cluster
    done = add_job(db_url, state="Terminated")
    failed = add_job(db_url, state="Error")
    waiting = add_job(db_url, state="Waiting")
    result = oar("oarstat", "-j", str(failed), "-j", f"{done},{waiting}")
    assert result.rc == 0
    assert [int(line.split()[0]) for line in result.lines[2:]] == [done, failed, waiting]
    assert [line[61] for line in result.lines[2:]] == ["T", "E", "W"]


def test_unknown_job(cluster, db_url, snapshot):
    oar = cluster
    job = add_job(db_url, state="Terminated")
    before = snapshot()
    for args in (["-j", "999"], ["-f", "-j", "999"], ["-s", "-j", "999"], ["-J", "-j", "999"]):
        result = oar("oarstat", *args)
        assert result.rc == NOT_FOUND
        assert one_error_line(result) == "#ERROR: unknown job 999"
        assert result.out == ""
    result = oar("oarstat", "-j", "998,999")
    assert result.rc == NOT_FOUND and one_error_line(result) == "#ERROR: unknown jobs 998, 999"
    # a list with some known ids: those are shown, the others named in a warning
    result = oar("oarstat", "-s", "-j", f"{job},999")
    assert result.rc == 0
    assert result.lines == [f"{job}: Terminated"]
    assert result.err == "#WARNING: unknown job 999\n"
    # a known job filtered out by another criterion is not "unknown": an empty answer
    result = oar("oarstat", "-s", "-j", str(job), "-u", "nobody")
    assert (result.rc, result.out, result.err) == (0, "", "")
    assert snapshot() == before


def test_jobs_of_a_user(cluster, db_url, caller):
    oar = cluster
    a1 = add_job(db_url, job_user="alice", state="Running", resources=[1])
    add_job(db_url, job_user="alice", state="Terminated")
    b1 = add_job(db_url, job_user="bob", state="Waiting")
    b2 = add_job(db_url, job_user="bob", state="Hold")
    add_job(db_url, job_user="bob", state="Error")
    assert [int(x.split()[0]) for x in oar("oarstat", "-u", "bob").lines[2:]] == [b1, b2]
    assert list(json.loads(oar("oarstat", "-u", "alice", "-J").out)) == [str(a1)]
    caller("bob")
    assert oar("oarstat", "-u", "-s").lines == [f"{b1}: Waiting", f"{b2}: Hold"]
    assert oar("oarstat", "-s", "-u").lines == [f"{b1}: Waiting", f"{b2}: Hold"]


def test_jobs_of_an_array(cluster, db_url):
    oar = cluster
    first = add_job(db_url, state="Terminated")
    run_sql(db_url, f"UPDATE jobs SET array_id = {first}, array_index = 1 WHERE job_id = {first}")
    second = add_job(db_url, state="Running", resources=[1], array_id=first, array_index=2)
    add_job(db_url, state="Running", resources=[2])
    data = json.loads(oar("oarstat", "--array", str(first), "-J").out)
    assert list(data) == [str(first), str(second)]
    assert [d["array_index"] for d in data.values()] == [1, 2]
    assert oar("oarstat", "--array", "abc").rc == USAGE


# --------------------------------------------------------------------------- --sql

def test_sql_selects_on_job_columns_in_any_state(cluster, db_url):
    oar = cluster
    p1 = add_job(db_url, project="p1", state="Terminated")
    p1b = add_job(db_url, project="p1", state="Waiting", job_user="bob")
    add_job(db_url, project="p2", state="Waiting")
    assert list(json.loads(oar("oarstat", "--sql", "project = 'p1'", "-J").out)) == [str(p1), str(p1b)]
    assert oar("oarstat", "--sql", "project = 'p1' AND state = 'Waiting'", "-s").lines == [f"{p1b}: Waiting"]
    assert oar("oarstat", "--sql", "project = 'p1'", "-u", "bob", "-s").lines == [f"{p1b}: Waiting"]
    assert oar("oarstat", "--sql", "job_id IN (1, 2) AND job_user LIKE 'ali%'", "-s").lines == [f"{p1}: Terminated"]
    # a quote inside a value is only a character of the value
    result = oar("oarstat", "--sql", "job_user = 'x'' OR ''1''=''1'", "-s")
    assert (result.rc, result.out) == (0, "")


SQL_REFUSALS = [
    ("1=1; DROP TABLE jobs", ";"),
    ("job_id = 1 UNION SELECT challenge FROM challenges", "UNION"),
    ("job_id IN (SELECT job_id FROM challenges)", "SELECT"),
    ("pg_sleep(5) = 1", "pg_sleep"),
    ("job_user = 'a' -- comment", "comment"),
    ("challenge = 'secret-1'", "challenge"),
    ("nosuch = 1", "nosuch"),
    ("job_id = 'abc'", "job_id"),
    ("", "empty"),
]


def test_sql_refusals(cluster, db_url, snapshot):
    oar = cluster
    add_job(db_url, state="Waiting")
    before = snapshot()
    for expression, word in SQL_REFUSALS:
        for view in ([], ["-J"], ["-s"], ["-g", "2023-11-01,2023-12-01"]):
            result = oar("oarstat", "--sql", expression, *view)
            assert result.rc == EXPRESSION, (expression, view, result.err)
            assert word in one_error_line(result), (expression, result.err)
            assert result.out == ""
    assert snapshot() == before


# --------------------------------------------------------------------------- events

def test_events_of_the_selected_jobs(cluster, db_url, utc):
    oar = cluster
    a = add_job(db_url, state="Error")
    b = add_job(db_url, state="Running", resources=[1])
    add_event(db_url, a, "PROLOGUE_ERROR", T0 + 20, "prologue exited with 1")
    add_event(db_url, b, "CHECKPOINT", T0 + 10, "checkpoint signal sent")
    add_event(db_url, a, "EXTERMINATE_JOB", T0 + 30, "cleaned up")
    result = oar("oarstat", "-e", "-j", f"{a},{b}")
    assert result.rc == 0
    assert result.lines == [
        f"2023-11-14 22:13:30> [{b}] CHECKPOINT: checkpoint signal sent",
        f"2023-11-14 22:13:40> [{a}] PROLOGUE_ERROR: prologue exited with 1",
        f"2023-11-14 22:13:50> [{a}] EXTERMINATE_JOB: cleaned up",
    ]
    data = json.loads(oar("oarstat", "--events", "-J", "-j", f"{a},{b}").out)
    assert data == {
        str(a): [{"type": "PROLOGUE_ERROR", "date": T0 + 20, "description": "prologue exited with 1"},
                 {"type": "EXTERMINATE_JOB", "date": T0 + 30, "description": "cleaned up"}],
        str(b): [{"type": "CHECKPOINT", "date": T0 + 10, "description": "checkpoint signal sent"}],
    }
    # without -j: the jobs not finished
    assert oar("oarstat", "-e").lines == [f"2023-11-14 22:13:30> [{b}] CHECKPOINT: checkpoint signal sent"]
    full = json.loads(oar("oarstat", "-J", "-j", str(a)).out)[str(a)]
    assert [e["type"] for e in full["events"]] == ["PROLOGUE_ERROR", "EXTERMINATE_JOB"]


# --------------------------------------------------------------------------- Gantt history

def test_gantt_history_of_a_window(cluster, db_url, utc):
    oar = cluster
    day = 86400
    before = add_job(db_url, state="Terminated", start_time=T0 - 2 * day, stop_time=T0 - day, resources=[1])
    across = add_job(db_url, state="Terminated", start_time=T0 - 600, stop_time=T0 + 600, resources=[2, 3])
    running = add_job(db_url, state="Running", start_time=T0 + 100, walltime=7200, resources=[9, 10, 11],
                      job_user="bob")
    planned = add_job(db_url, state="Waiting", predicted_start=T0 + 1800, walltime=3600, resources=[17, 18])
    late = add_job(db_url, state="Waiting", predicted_start=T0 + 3 * day, walltime=3600, resources=[4])
    unplanned = add_job(db_url, state="Waiting")
    window = "2023-11-14 22:13:20, 2023-11-15 00:00:00"
    data = json.loads(oar("oarstat", "-g", window, "-J").out)
    assert list(data) == [str(across), str(running), str(planned)]
    assert data[str(across)] == {
        "job_id": across, "job_user": "alice", "job_name": None, "state": "Terminated",
        "queue_name": "default", "start": T0 - 600, "stop": T0 + 600, "predicted": False,
        "resources": [2, 3], "hostnames": ["node-1"],
    }
    assert data[str(running)]["resources"] == [9, 10, 11]
    assert data[str(running)]["hostnames"] == ["node-2"]
    assert data[str(running)]["stop"] >= T0 + 100 + 7200
    assert data[str(planned)]["predicted"] is True
    assert (data[str(planned)]["start"], data[str(planned)]["stop"]) == (T0 + 1800, T0 + 5400)
    assert data[str(planned)]["resources"] == [17, 18] and data[str(planned)]["hostnames"] == ["node-3"]
    assert yaml.safe_load(oar("oarstat", "-g", window, "-Y").out) == data

    text = oar("oarstat", "-g", window)
    assert text.rc == 0
    rows = {int(line.split()[0]): line for line in text.lines[2:-1]}
    assert set(rows) == {across, running, planned}
    assert rows[across] == f"{across:<10} alice          Terminated 2023-11-14 22:03:20  2023-11-14 22:23:20 2-3"
    assert rows[planned].startswith(f"{planned:<10} alice          Waiting    2023-11-14 22:43:20* ")
    assert rows[running].endswith(" 9-11")
    assert text.lines[-1] == "(* predicted start)"
    # a day-only window, and the filters of the listing
    assert list(json.loads(oar("oarstat", "-g", "2023-11-12,2023-11-13", "-J").out)) == [str(before)]
    assert list(json.loads(oar("oarstat", "-g", window, "-u", "bob", "-J").out)) == [str(running)]
    assert str(late) not in data and str(unplanned) not in data


MALFORMED_WINDOWS = ["2023-11-14", "2023-11-14,", "yesterday,today", "2023-13-01,2023-12-01",
                     "2023-11-14 25:00:00,2023-11-15", "2023-11-15,2023-11-14", "a,b,c"]


def test_malformed_windows(cluster):
    for option in ("-g", "--accounting"):
        for window in MALFORMED_WINDOWS:
            result = cluster("oarstat", option, window)
            assert result.rc == USAGE, (option, window)
            line = one_error_line(result)
            assert "date" in line or "window" in line, line


# --------------------------------------------------------------------------- accounting

def test_accounting_summary(cluster, db_url, utc):
    oar = cluster
    day = 86400
    rows = [
        # window_start, window_stop, user, project, queue, type, consumption
        (T0, T0 + day, "alice", "p1", "default", "ASKED", 7200),
        (T0, T0 + day, "alice", "p1", "default", "USED", 3000),
        (T0 + day, T0 + 2 * day, "alice", "p1", "default", "ASKED", 3600),
        (T0 + day, T0 + 2 * day, "alice", "p1", "default", "USED", 3600),
        (T0, T0 + day, "alice", "p2", "besteffort", "USED", 50),
        (T0, T0 + day, "bob", "p1", "default", "ASKED", 100),
        (T0 + 30 * day, T0 + 31 * day, "bob", "p1", "default", "ASKED", 999999),  # outside
    ]
    mark = "?" if db_url.startswith("sqlite") else "%s"
    for row in rows:
        run_sql(db_url, "INSERT INTO accounting (window_start, window_stop, accounting_user, accounting_project, "
                        f"queue_name, consumption_type, consumption) VALUES ({', '.join([mark] * 7)})", row)
    window = "2023-11-14 22:13:20,2023-11-17"
    data = json.loads(oar("oarstat", "--accounting", window, "-J").out)
    assert data == [
        {"user": "alice", "project": "p1", "queue": "default", "asked": 10800, "used": 6600,
         "first_window_start": T0, "last_window_stop": T0 + 2 * day},
        {"user": "alice", "project": "p2", "queue": "besteffort", "asked": 0, "used": 50,
         "first_window_start": T0, "last_window_stop": T0 + day},
        {"user": "bob", "project": "p1", "queue": "default", "asked": 100, "used": 0,
         "first_window_start": T0, "last_window_stop": T0 + day},
    ]
    assert yaml.safe_load(oar("oarstat", "--accounting", window, "-Y").out) == data
    text = oar("oarstat", "--accounting", window)
    assert text.rc == 0
    assert text.lines[2].split() == ["alice", "p1", "default", "2023-11-14", "22:13:20",
                                     "2023-11-16", "22:13:20", "10800", "6600"]
    assert len(text.lines) == 5
    only_bob = json.loads(oar("oarstat", "--accounting", window, "-u", "bob", "-J").out)
    assert [r["user"] for r in only_bob] == ["bob"]
    assert json.loads(oar("oarstat", "--accounting", "2024-06-01,2024-06-02", "-J").out) == []
    result = oar("oarstat", "--accounting", window, "-j", "1")
    assert result.rc == USAGE and "--accounting" in one_error_line(result)


# --------------------------------------------------------------------------- bad options

BAD_OPTIONS = [
    (["-D"], "not supported"),
    (["-X"], "not supported"),
    (["--bogus"], "unrecognized arguments"),
    (["-f", "-s"], "not allowed with"),
    (["-e", "-g", "2023-11-01,2023-12-01"], "not allowed with"),
    (["-j", "abc"], "must be a number"),
    (["-J", "-Y"], "not allowed with"),
    (["-g"], "expected one argument"),
]


def test_bad_options(cluster, snapshot):
    before = snapshot()
    for argv, word in BAD_OPTIONS:
        result = cluster("oarstat", *argv)
        assert result.rc == USAGE, argv
        assert word in one_error_line(result), (argv, result.err)
        assert result.out == ""
    assert snapshot() == before


def test_help_documents_fields_letters_and_exit_codes(oar):
    result = oar("oarstat", "--help")
    assert result.rc == 0
    text = " ".join(result.out.split())
    for words in ("scheduled_start", "resource_request", "assigned_hostnames", "W Waiting/toAckReservation",
                  "only the jobs of USER", "5 expression error", "6 not found error", "2 usage error"):
        assert words in text, words


# --------------------------------------------------------------------------- no per-job query

def _bulk_jobs(db_url, count):
    """``count`` jobs of varied kinds (types, dependencies, events, predictions, resources),
    written as add_job writes them but in one transaction."""
    from oar_appliance.db import models as m

    states = ("Waiting", "Running", "Hold", "Waiting", "Terminated")
    ids: list[int] = []
    with raw_database(db_url) as db, db.bind_ctx(m.ALL_MODELS), db.atomic():
        for i in range(count):
            state = states[i % len(states)]
            job = m.Job.create(job_user=f"user{i % 3}", state=state, queue_name="default", submission_time=T0,
                               start_time=T0 if state in ("Running", "Terminated") else 0, command="date")
            moldable = m.MoldableJobDescription.create(moldable_job_id=job.job_id, moldable_walltime=60)
            group = m.JobResourceGroup.create(res_group_moldable_id=moldable.moldable_id)
            m.JobResourceDescription.create(res_job_group_id=group.res_group_id,
                                            res_job_resource_type="resource_id", res_job_value=1)
            m.JobStateLog.create(job_id=job.job_id, job_state=state, date_start=T0)
            if i % 2:
                m.JobType.create(job_id=job.job_id, type="besteffort")
            if ids and i % 4 == 0:
                m.JobDependency.create(job_id=job.job_id, job_id_required=ids[-1])
            if i % 3 == 0:
                m.EventLog.create(type="CHECKPOINT", job_id=job.job_id, date=T0 + i, description="signal")
            if state in ("Running", "Terminated"):
                m.Job.update(assigned_moldable_job=moldable.moldable_id).where(m.Job.job_id == job.job_id).execute()
                m.AssignedResource.create(moldable_job_id=moldable.moldable_id, resource_id=i % 32 + 1)
            elif state == "Waiting":
                m.GanttJobPrediction.create(moldable_job_id=moldable.moldable_id, start_time=T0 + i)
                m.GanttJobResource.create(moldable_job_id=moldable.moldable_id, resource_id=i % 32 + 1)
            m.Challenge.create(job_id=job.job_id, challenge=f"secret-{job.job_id}")
            ids.append(job.job_id)
    return ids


def test_query_count_does_not_grow_with_the_jobs(cluster, db_url, statements):
    oar = cluster
    _bulk_jobs(db_url, 5)
    counts = {}
    for label in ("few", "many"):
        if label == "many":
            _bulk_jobs(db_url, 200)
        counts[label] = {}
        for args in ([], ["-J"], ["-f"], ["-Y", "--sql", "1=1"], ["-s"], ["-e"], ["-g", "2023-11-01,2023-12-01"]):
            statements.clear()
            result = oar("oarstat", *args)
            assert result.rc == 0, result.err
            counts[label][" ".join(args)] = len(statements)
    assert len(json.loads(oar("oarstat", "-J").out)) > 150
    assert counts["few"] == counts["many"]
    # and a full listing is a handful of queries: schema check, jobs, one per related table
    assert counts["many"]["-J"] <= 12
