"""oarsub on both backends: what the spec's examples store, and what bad input does not."""

from __future__ import annotations

import json
import time

import pytest

from tests.sqlutil import run_sql

USAGE, CONFIG, DATABASE, EXPRESSION, NOT_FOUND, CONFLICT, PERMISSION, SERVER, ADMISSION = 2, 3, 4, 5, 6, 7, 8, 9, 10


@pytest.fixture
def spec_cluster(created, oar_conf):
    """12 nodes x 3 cpus x 2 cores on switch sw1, plus 2 nodes on sw2: room for the spec's examples."""
    oar_conf.write_text(oar_conf.read_text() + "HIERARCHY_LABELS=resource_id,network_address,switch,cpu,core\n")
    oar = created
    assert oar("oar-resources-add", "-H", "12", "-C", "3", "-c", "2", "-p", "switch=sw1").rc == 0
    assert oar("oar-resources-add", "-H", "2", "--offset", "13", "-C", "3", "-c", "2", "-p", "switch=sw2").rc == 0
    return oar


def job_id_of(result) -> int:
    assert result.rc == 0, result.err
    ids = [int(line.split("=", 1)[1]) for line in result.lines if line.startswith("OAR_JOB_ID=")]
    assert ids, result.out
    return ids[0]


def stored(db_url, job_id):
    """The job as stored: its row, its moldables with their groups and levels, its types."""
    job = dict(zip(
        ["state", "queue_name", "command", "job_user", "properties", "reservation", "job_type",
         "stdout_file", "stderr_file", "job_name", "project", "launching_directory", "start_time", "array_id"],
        run_sql(db_url, "SELECT state, queue_name, command, job_user, properties, reservation, job_type, "
                        "stdout_file, stderr_file, job_name, project, launching_directory, start_time, array_id "
                        "FROM jobs WHERE job_id = %d" % job_id)[0]))
    moldables = []
    for moldable_id, walltime in run_sql(db_url, "SELECT moldable_id, moldable_walltime FROM moldable_job_descriptions "
                                                 "WHERE moldable_job_id = %d ORDER BY moldable_id" % job_id):
        groups = []
        for group_id, prop in run_sql(db_url, "SELECT res_group_id, res_group_property FROM job_resource_groups "
                                              "WHERE res_group_moldable_id = %d ORDER BY res_group_id" % moldable_id):
            levels = run_sql(db_url, "SELECT res_job_resource_type, res_job_value FROM job_resource_descriptions "
                                     "WHERE res_job_group_id = %d ORDER BY res_job_order" % group_id)
            groups.append((prop, [tuple(level) for level in levels]))
        moldables.append((walltime, groups))
    job["moldables"] = moldables
    job["types"] = sorted(t for (t,) in run_sql(db_url, "SELECT type FROM job_types WHERE job_id = %d" % job_id))
    return job


# --------------------------------------------------------------------------- the spec's examples

def test_spec_whole_nodes(spec_cluster, db_url):
    job = stored(db_url, job_id_of(spec_cluster("oarsub", "-l", "/node=4", "test.sh")))
    assert job["moldables"] == [(7200, [(None, [("network_address", 4)])])]
    assert (job["state"], job["queue_name"], job["command"], job["job_type"]) == ("Waiting", "default", "test.sh", "PASSIVE")
    assert job["stdout_file"] == "OAR.%jobid%.stdout" and job["stderr_file"] == "OAR.%jobid%.stderr"


def test_spec_output_files(spec_cluster, db_url):
    result = spec_cluster("oarsub", "--stdout=test12.%jobid%.stdout", "--stderr=test12.%jobid%.stderr",
                          "-l", "/nodes=4", "test.sh")
    job = stored(db_url, job_id_of(result))
    assert (job["stdout_file"], job["stderr_file"]) == ("test12.%jobid%.stdout", "test12.%jobid%.stderr")


def test_spec_nodes_cpus_walltime_and_property(spec_cluster, db_url):
    result = spec_cluster("oarsub", "-q", "default", "-l", "/node=10/cpu=3,walltime=2:15:00",
                          "-p", "switch = 'sw1'", "/home/users/toto/prog")
    job = stored(db_url, job_id_of(result))
    assert job["moldables"] == [(8100, [(None, [("network_address", 10), ("cpu", 3)])])]
    assert job["properties"] == "switch = 'sw1'"
    assert job["command"] == "/home/users/toto/prog"


def test_spec_reservation(spec_cluster, db_url):
    # the spec's date (2009) is past: the same request, in the future
    date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() + 86400))
    result = spec_cluster("oarsub", "-r", date, "-l", "/node=12/cpu=2")
    job = stored(db_url, job_id_of(result))
    assert job["reservation"] == "toSchedule"
    assert job["start_time"] == int(time.mktime(time.strptime(date, "%Y-%m-%d %H:%M:%S")))
    assert job["moldables"] == [(7200, [(None, [("network_address", 12), ("cpu", 2)])])]
    assert "#WARNING" in result.err


def test_spec_interactive(spec_cluster, db_url):
    # no server runs here: the job is stored, then deleted rather than left to nobody
    result = spec_cluster("oarsub", "-I")
    assert result.rc == SERVER and "is not running: interactive job" in result.err
    job_id = int(result.lines[0].split("=")[1])
    assert run_sql(db_url, "SELECT frag_state FROM frag_jobs WHERE frag_id_job = %d" % job_id) == [("LEON",)]
    job = stored(db_url, job_id)
    assert job["job_type"] == "INTERACTIVE" and job["command"] == ""
    assert job["moldables"] == [(7200, [(None, [("resource_id", 1)])])]


def test_spec_complete_syntax_with_groups(spec_cluster, db_url):
    request = "{switch='sw1'}/switch=1/network_address=3+{switch='sw2'}/network_address=1/cpu=2,walltime=1:00:00"
    job = stored(db_url, job_id_of(spec_cluster("oarsub", "-l", request, "prog")))
    assert job["moldables"] == [(3600, [
        ("switch='sw1'", [("switch", 1), ("network_address", 3)]),
        ("switch='sw2'", [("network_address", 1), ("cpu", 2)]),
    ])]


def test_moldable_alternatives_and_everything_else(spec_cluster, db_url):
    first = job_id_of(spec_cluster("oarsub", "-l", "/nodes=1", "sleep 1"))
    result = spec_cluster(
        "oarsub", "-l", "/nodes=2,walltime=1", "-l", "/core=4,walltime=3:00", "-t", "idempotent",
        "-t", "timesharing=user,*", "-n", "my.job-1", "--project", "p1", "-a", str(first),
        "--notify", "[END,ERROR]mail:me@example.org", "--checkpoint", "60", "--signal", "10",
        "-d", "/tmp", "--hold", "run", "--fast",
    )
    job_id = job_id_of(result)
    job = stored(db_url, job_id)
    assert job["moldables"] == [(3600, [(None, [("network_address", 2)])]), (10800, [(None, [("core", 4)])])]
    assert job["types"] == ["idempotent", "timesharing=user,*"]
    assert (job["state"], job["job_name"], job["project"], job["launching_directory"]) == ("Hold", "my.job-1", "p1", "/tmp")
    assert job["command"] == "run --fast"
    assert run_sql(db_url, f"SELECT job_id_required FROM job_dependencies WHERE job_id = {job_id}") == [(first,)]
    assert run_sql(db_url, f"SELECT notify, checkpoint, checkpoint_signal FROM jobs WHERE job_id = {job_id}") == [
        ("[END,ERROR]mail:me@example.org", 60, 10)]
    assert run_sql(db_url, f"SELECT job_state FROM job_state_logs WHERE job_id = {job_id}") == [("Hold",)]


def test_owner_is_the_caller(spec_cluster, db_url, monkeypatch):
    monkeypatch.setattr("oar_appliance.cli.common.caller_name", lambda: "alice")
    job = stored(db_url, job_id_of(spec_cluster("oarsub", "-l", "/core=1", "true")))
    assert job["job_user"] == "alice"


def test_array_and_parameter_file(spec_cluster, db_url, tmp_path):
    result = spec_cluster("oarsub", "--array", "3", "-l", "/core=1", "work")
    ids = [int(l.split("=")[1]) for l in result.lines if l.startswith("OAR_JOB_ID=")]
    assert len(ids) == 3 and result.lines[-1] == f"OAR_ARRAY_ID={ids[0]}"
    assert run_sql(db_url, f"SELECT array_id, array_index FROM jobs WHERE array_id = {ids[0]} ORDER BY job_id") == [
        (ids[0], 1), (ids[0], 2), (ids[0], 3)]
    params = tmp_path / "params"
    params.write_text("a 1\n\n# comment\nb 2\n")
    result = spec_cluster("oarsub", "--array-param-file", str(params), "-l", "/core=1", "work")
    ids = [int(l.split("=")[1]) for l in result.lines if l.startswith("OAR_JOB_ID=")]
    commands = run_sql(db_url, "SELECT command FROM jobs WHERE job_id IN (%d, %d) ORDER BY job_id" % tuple(ids))
    assert commands == [("work a 1",), ("work b 2",)]


def test_script_directives_under_the_command_line(spec_cluster, db_url, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#OAR -l /nodes=2,walltime=0:30:00\n#OAR -n from_script\n#OAR --project 'p 2'\necho hi\n")
    job_id = job_id_of(spec_cluster("oarsub", "-S", "-n", "from_cli", str(script)))
    job = stored(db_url, job_id)
    assert job["moldables"] == [(1800, [(None, [("network_address", 2)])])]
    assert (job["job_name"], job["project"], job["command"]) == ("from_cli", "p 2", str(script))


def test_job_key_generated_exported_and_never_shown(spec_cluster, db_url, tmp_path):
    target = tmp_path / "key.%jobid%"
    job_id = job_id_of(spec_cluster("oarsub", "-k", "-e", str(target), "-l", "/core=1", "true"))
    exported = tmp_path / f"key.{job_id}"
    assert exported.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert oct(exported.stat().st_mode & 0o777) == "0o600"
    private, public, challenge = run_sql(
        db_url, f"SELECT ssh_private_key, ssh_public_key, challenge FROM challenges WHERE job_id = {job_id}")[0]
    assert private == exported.read_text() and public.startswith("ssh-ed25519 ")
    assert len(challenge) >= 40
    # import the same key for another job
    again = job_id_of(spec_cluster("oarsub", "-i", str(exported), "-l", "/core=1", "true"))
    assert run_sql(db_url, f"SELECT ssh_public_key FROM challenges WHERE job_id = {again}") == [(public,)]


def test_forced_job_key_and_stagein(spec_cluster, db_url, oar_conf, tmp_path):
    oar_conf.write_text(oar_conf.read_text() + "OARSUB_FORCE_JOB_KEY=yes\n")
    archive = tmp_path / "input.tgz"
    archive.write_bytes(b"x" * 1234)
    job_id = job_id_of(spec_cluster("oarsub", "-s", str(archive), "--stagein-md5sum", "abc123",
                                    "-l", "/core=1", "true"))
    (public,) = run_sql(db_url, f"SELECT ssh_public_key FROM challenges WHERE job_id = {job_id}")[0]
    assert public.startswith("ssh-ed25519 ")
    assert run_sql(db_url, f'SELECT location, md5sum, size FROM files f JOIN jobs j ON j.file_id = f."idFile" '
                           f"WHERE j.job_id = {job_id}") == [(str(archive), "abc123", 1234)]


def test_challenges_differ(spec_cluster, db_url):
    result = spec_cluster("oarsub", "--array", "20", "-l", "/core=1", "true")
    assert result.rc == 0
    challenges = [c for (c,) in run_sql(db_url, "SELECT challenge FROM challenges")]
    assert len(challenges) == 20 == len(set(challenges))


def test_default_admission_rules(spec_cluster, db_url, monkeypatch):
    job = stored(db_url, job_id_of(spec_cluster("oarsub", "-t", "besteffort", "-l", "/core=1", "true")))
    assert job["queue_name"] == "besteffort" and job["properties"] == "besteffort = 'YES'"
    capped = spec_cluster("oarsub", "-I", "-l", "/core=1,walltime=20:00:00")
    assert "#INFO: [ADMISSION RULE] walltime too big for an interactive job" in capped.out
    capped_id = int(next(line for line in capped.lines if line.startswith("OAR_JOB_ID=")).split("=")[1])
    assert stored(db_url, capped_id)["moldables"][0][0] == 12 * 3600
    assert job_id_of(spec_cluster("oarsub", "-q", "admin", "-l", "/core=1", "true"))  # root may
    monkeypatch.setattr("oar_appliance.cli.common.caller_name", lambda: "alice")
    refused = spec_cluster("oarsub", "-q", "admin", "-l", "/core=1", "true")
    assert refused.rc == ADMISSION
    assert refused.err.strip() == "#ERROR: [ADMISSION RULE] only oar and root may submit jobs to the admin queue"


def test_admin_adds_a_rule(spec_cluster, db_url, tmp_path, monkeypatch):
    rule = tmp_path / "rule.py"
    rule.write_text("# No job named 'forbidden'\nif job.name == 'forbidden':\n    raise AdmissionError('that name is forbidden')\n")
    added = spec_cluster("oaradmissionrules", "-n", str(rule))
    assert added.rc == 0 and added.lines == ["Admission rule 6 added."]
    assert "No job named 'forbidden'" in spec_cluster("oaradmissionrules").out
    refused = spec_cluster("oarsub", "-n", "forbidden", "-l", "/core=1", "true")
    assert refused.rc == ADMISSION and "that name is forbidden" in refused.err
    assert spec_cluster("oaradmissionrules", "-D", "6").rc == 0
    assert spec_cluster("oarsub", "-n", "forbidden", "-l", "/core=1", "true").rc == 0
    assert spec_cluster("oaradmissionrules", "-S", "6").out == rule.read_text()
    broken = tmp_path / "broken.py"
    broken.write_text("if job.name ==\n")
    assert spec_cluster("oaradmissionrules", "-n", str(broken)).rc == USAGE
    assert spec_cluster("oaradmissionrules", "-d", "6").rc == 0


def test_rule_time_limit(spec_cluster, tmp_path, monkeypatch, snapshot):
    rule = tmp_path / "slow.py"
    rule.write_text("while True:\n    pass\n")
    assert spec_cluster("oaradmissionrules", "-n", str(rule)).rc == 0
    monkeypatch.setattr("oar_appliance.admission.RULE_TIME_LIMIT", 0.3)
    before = snapshot()
    result = spec_cluster("oarsub", "-l", "/core=1", "true")
    assert result.rc == ADMISSION and "ran longer than 0.3 s" in result.err
    assert snapshot() == before


def test_json_output_and_server_warning(spec_cluster):
    result = spec_cluster("oarsub", "-J", "-l", "/core=1", "true")
    data = json.loads(result.out)
    assert data["job_ids"] == [data["job_id"]] and data["array_id"] == data["job_id"]
    assert "#WARNING: the OAR server at 127.0.0.1:6666 is not running" in result.err


def test_resubmit_copies_the_job(spec_cluster, db_url, monkeypatch, snapshot):
    first = job_id_of(spec_cluster("oarsub", "-l", "{switch='sw1'}/nodes=2/cpu=1,walltime=1:00:00",
                                   "-l", "/core=3", "-t", "idempotent", "-n", "again", "-p", "cpu > 0", "work 1"))
    second = job_id_of(spec_cluster("oarsub", "--resubmit", str(first)))
    old, new = stored(db_url, first), stored(db_url, second)
    for key in ("moldables", "types", "command", "job_name", "properties", "queue_name", "launching_directory"):
        assert new[key] == old[key], key
    assert run_sql(db_url, f"SELECT resubmit_job_id FROM jobs WHERE job_id = {second}") == [(first,)]
    monkeypatch.setattr("oar_appliance.cli.common.caller_name", lambda: "alice")
    before = snapshot()
    refused = spec_cluster("oarsub", "--resubmit", str(first))
    assert refused.rc == PERMISSION and "not yours" in refused.err
    assert spec_cluster("oarsub", "--resubmit", "999").rc == NOT_FOUND
    assert snapshot() == before


# --------------------------------------------------------------------------- bad input

def _past():
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 3600))


BAD = [
    (["-l", "/nodes=2,walltime=abc", "x"], USAGE, "walltime"),
    (["-l", "/nodes=2,walltime=-1", "x"], USAGE, "walltime"),
    (["-l", "/nodes=2,walltime=1:2:3:4", "x"], USAGE, "walltime"),
    (["-l", "/nodes=2,walltime=0", "x"], USAGE, "walltime"),
    (["-l", "/nodes=2,walltime=1,walltime=2", "x"], USAGE, "walltime"),
    (["-l", "/gpux=1", "x"], USAGE, "gpux"),
    (["-l", "/nodes=0", "x"], USAGE, "positive"),
    (["-l", "/nodes=x", "x"], USAGE, "count"),
    (["-l", "/nodes=2/cpu=ALL", "x"], USAGE, "single level"),
    (["-l", "{switch='sw1'/nodes=1", "x"], USAGE, "{"),
    (["-l", "switch='sw1'}/nodes=1", "x"], USAGE, "}"),
    (["-l", "/nodes=2+", "x"], USAGE, "+"),
    (["-l", "/nodes", "x"], USAGE, "="),
    (["-l", "/nodes=1,cpu=2", "x"], USAGE, "walltime"),
    (["-l", "/nodes=15", "x"], CONFLICT, "cannot be satisfied"),
    (["-l", "/nodes=1/cpu=4", "x"], CONFLICT, "cannot be satisfied"),
    (["-l", "{switch='sw9'}/nodes=1", "x"], CONFLICT, "cannot be satisfied"),
    (["-l", "/nodes=1", "-l", "/nodes=99", "x"], CONFLICT, "#2"),
    (["-p", "1=1; DROP TABLE jobs", "-l", "/core=1", "x"], EXPRESSION, ";"),
    (["-p", "(SELECT 1) = 1", "-l", "/core=1", "x"], EXPRESSION, "SELECT"),
    (["-p", "pg_sleep(10) = 1", "-l", "/core=1", "x"], EXPRESSION, "pg_sleep"),
    (["-p", "nosuch = 1", "-l", "/core=1", "x"], EXPRESSION, "nosuch"),
    (["-l", "{cpu = 1 OR 1=1 --}/core=1", "x"], EXPRESSION, "comment"),
    (["-l", "{host IN (SELECT host FROM jobs)}/core=1", "x"], EXPRESSION, "SELECT"),
    (["-q", "nosuch", "-l", "/core=1", "x"], NOT_FOUND, "nosuch"),
    (["-r", "2009-04-27 11:00:00", "-l", "/core=1"], USAGE, "past"),
    (["-r", "tomorrow", "-l", "/core=1"], USAGE, "invalid date"),
    (["-I", "-r", "2099-01-01 10:00:00"], USAGE, "interactive"),
    (["-I", "some-command"], USAGE, "-I"),
    (["-n", "bad name!", "-l", "/core=1", "x"], USAGE, "job name"),
    (["-S", "/nonexistent/script.sh"], USAGE, "cannot read script"),
    (["-S"], USAGE, "-S needs a script"),
    (["--array", "3", "-I"], USAGE, "array"),
    (["--array", "0", "-l", "/core=1", "x"], USAGE, "array"),
    (["-t", "nosuchtype", "-l", "/core=1", "x"], USAGE, "unknown job type"),
    (["-t", "timesharing=bob", "-l", "/core=1", "x"], USAGE, "timesharing"),
    (["--notify", "pigeon:me", "-l", "/core=1", "x"], USAGE, "notification"),
    (["--notify", "[NEVER]mail:me@x", "-l", "/core=1", "x"], USAGE, "NEVER"),
    (["-a", "999", "-l", "/core=1", "x"], NOT_FOUND, "999"),
    (["-a", "abc", "-l", "/core=1", "x"], USAGE, "-a"),
    (["--checkpoint", "-5", "-l", "/core=1", "x"], USAGE, "checkpoint"),
    (["--signal", "99", "-l", "/core=1", "x"], USAGE, "signal"),
    (["-i", "/nonexistent/key", "-l", "/core=1", "x"], USAGE, "cannot read job key file"),
    (["--import-job-key-inline", "not a key", "-l", "/core=1", "x"], USAGE, "not a valid"),
    (["-D", "-l", "/core=1", "x"], USAGE, "not supported"),
    (["--bogus", "x"], USAGE, "unrecognized"),
    ([], USAGE, "no command"),
    (["-l", "/core=1"], USAGE, "no command"),
]


@pytest.mark.parametrize("argv,code,word", BAD, ids=[" ".join(b[0]) or "(nothing)" for b in BAD])
def test_bad_submission_is_one_line_and_changes_nothing(spec_cluster, snapshot, argv, code, word):
    before = snapshot()
    result = spec_cluster("oarsub", *argv)
    assert result.rc == code, result.err
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("#ERROR: "), result.err
    assert word in lines[0]
    assert "OAR_JOB_ID" not in result.out
    assert snapshot() == before


def test_inactive_queue_and_unsatisfiable_array(spec_cluster, snapshot):
    assert spec_cluster("oarnotify", "-d", "default").rc == 0
    before = snapshot()
    result = spec_cluster("oarsub", "--array", "5", "-l", "/core=1", "x")
    assert result.rc == CONFLICT and "not active" in result.err
    assert snapshot() == before


def test_empty_parameter_file(spec_cluster, tmp_path, snapshot):
    params = tmp_path / "empty"
    params.write_text("\n# nothing\n")
    before = snapshot()
    result = spec_cluster("oarsub", "--array-param-file", str(params), "-l", "/core=1", "x")
    assert result.rc == USAGE and "no parameter line" in result.err
    assert snapshot() == before


def test_dead_resources_do_not_count(spec_cluster, snapshot):
    assert spec_cluster("oarnodesetting", "--sql", "switch = 'sw2'", "-s", "Dead", "-n").rc == 0
    before = snapshot()
    result = spec_cluster("oarsub", "-l", "{switch='sw2'}/nodes=1", "x")
    assert result.rc == CONFLICT
    assert snapshot() == before
