"""oarsub -I, -r and -C on both backends, with real processes and real sockets.

``oarsub`` runs as a process of its own; the server's side is played by
:class:`tests.server_answers.Answerer` (which answers with the server's own
``submitter.answer`` at the ``info_type`` read from the database) and a
:class:`~tests.server_answers.NotificationSink` that takes the notifications.  oarexec's
part, the job's env file, is written by the test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.server_answers import Answerer, NotificationSink, always
from tests.sqlutil import run_sql

USAGE, NOT_FOUND, CONFLICT, PERMISSION = 2, 6, 7, 8
INTERRUPTED = 130
TIMEOUT = 60


@pytest.fixture
def sink():
    with NotificationSink() as server:
        yield server


@pytest.fixture
def lab(cluster, oar_conf, sink, tmp_path):
    """The cluster fixture, with a listening server stand-in and a runtime directory."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    oar_conf.write_text(oar_conf.read_text() + f"SERVER_PORT={sink.port}\n"
                        f'OAR_RUNTIME_DIRECTORY="{runtime}"\nOAR_CONNECTOR=local\n')
    return cluster


def start_oarsub(oar_conf, *argv, stdin=subprocess.DEVNULL, extra_env=None):
    env = dict(os.environ, OARCONFFILE=str(oar_conf), **(extra_env or {}))
    return subprocess.Popen([sys.executable, "-m", "oar_appliance.cli.oarsub", *argv], env=env,
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, stdin_text=None):
    try:
        out, err = proc.communicate(stdin_text, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out, err


def future_date(seconds=86400):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() + seconds))


def info_type_of(db_url, job_id):
    return run_sql(db_url, "SELECT info_type FROM jobs WHERE job_id = %d" % job_id)[0][0]


# ----------------------------------------------------------------------------- -r

def test_reservation_granted(lab, oar_conf, db_url, sink):
    start = int(time.time()) + 86400
    with Answerer(db_url, always("GRANTED", str(start))) as server:
        rc, out, err = finish(start_oarsub(oar_conf, "-r", future_date(), "-l", "/core=1"))
    assert rc == 0, err
    job_id = int(out.splitlines()[0].split("=")[1])
    assert out.splitlines()[1:3] == ["Advance reservation request: waiting for approval from the scheduler...",
                                     "Advance reservation is GRANTED."]
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)) in out.splitlines()[3]
    # the address the server answered is the one stored with the job, on loopback in a lab
    assert list(server.seen) == [job_id] and server.delivered == {job_id: True}
    assert server.seen[job_id] == info_type_of(db_url, job_id)
    assert info_type_of(db_url, job_id).startswith("127.0.0.1:")
    assert "Qsub" in sink.tags and err == ""


def test_reservation_rejected(lab, oar_conf, db_url):
    with Answerer(db_url, always("REJECTED", "no room at this date for /core=1")):
        rc, out, err = finish(start_oarsub(oar_conf, "-r", future_date(), "-l", "/core=1"))
    assert rc == CONFLICT
    assert out.splitlines()[-1] == "Advance reservation is REJECTED."
    assert err.strip() == "#ERROR: no room at this date for /core=1"


def test_interactive_error(lab, oar_conf, db_url):
    with Answerer(db_url, always("ERROR", "prologue failed on node-1")):
        rc, out, err = finish(start_oarsub(oar_conf, "-I", "-l", "/core=1"))
    assert rc == CONFLICT
    assert out.splitlines()[1] == "Interactive mode: waiting..."
    assert err.strip() == "#ERROR: prologue failed on node-1"


def test_only_the_server_is_heard(lab, oar_conf, db_url):
    """A line from another address, or a line that is no answer, is not the answer."""

    def reply(job_id, info_type):
        host, port = info_type.rsplit(":", 1)
        with socket.socket() as other:  # another loopback address than the server's
            other.bind(("127.0.0.2", 0))
            other.connect((host, int(port)))
            other.sendall(b"REJECTED spoofed\n")
        with socket.create_connection((host, int(port))) as same:
            same.sendall(b"HELLO there\n")
        with socket.create_connection((host, int(port))):
            pass  # connects and says nothing
        return ("GRANTED", "0")

    with Answerer(db_url, reply):
        rc, out, err = finish(start_oarsub(oar_conf, "-r", future_date(), "-l", "/core=1"))
    assert rc == 0, err
    assert "Advance reservation is GRANTED." in out.splitlines()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_oarsub_deletes_its_job(lab, oar_conf, db_url, sink, sig):
    proc = start_oarsub(oar_conf, "-I", "-l", "/core=1")
    with Answerer(db_url, lambda job_id, info_type: None) as server:  # a server that never answers
        try:
            server.wait_seen()
            time.sleep(0.3)  # the notification goes out after the job is written
            proc.send_signal(sig)
            rc, out, err = finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    (job_id,) = server.seen
    assert rc == INTERRUPTED
    assert f"#ERROR: interrupted: job {job_id} is deleted" in err
    assert run_sql(db_url, "SELECT frag_state FROM frag_jobs WHERE frag_id_job = %d" % job_id) == [("LEON",)]
    sink.wait_tag("Qdel")


# ----------------------------------------------------------------------------- shells

def write_job_env(runtime, job_id, workdir):
    """What oarexec writes for the job on its head node."""
    lines = [f"OAR_JOB_ID={job_id}", f"OAR_JOBID={job_id}", f"OAR_WORKDIR={workdir}",
             "OAR_NODEFILE=/nonexistent/nodefile", "OAR_JOB_NAME=with spaces = and more"]
    (runtime / f"job_{job_id}.env").write_text("\n".join(lines) + "\n")


SCRIPT = 'echo "job=$OAR_JOB_ID name=$OAR_JOB_NAME"; pwd; exit 3\n'


def test_interactive_job_gets_its_shell(lab, oar_conf, db_url, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()

    def reply(job_id, info_type):  # oarexec has written the env, the server says STARTED
        write_job_env(tmp_path / "run", job_id, workdir)
        return ("STARTED", "node-2")

    with Answerer(db_url, reply):
        proc = start_oarsub(oar_conf, "-I", "-l", "/core=1", stdin=subprocess.PIPE,
                            extra_env={"SHELL": "/bin/sh"})
        rc, out, err = finish(proc, SCRIPT)
    assert rc == 3, err
    lines = out.splitlines()
    job_id = int(lines[0].split("=")[1])
    assert lines[1:] == ["Interactive mode: waiting...", f"Connect to OAR job {job_id} via the node node-2",
                         f"job={job_id} name=with spaces = and more", str(workdir)]
    # the shell's status, for oarexec to end the job
    assert (tmp_path / "run" / f"job_{job_id}.shell.status").read_text() == "3\n"


def make_running(db_url, job_id, resource_ids):
    """What the launcher does to a started job: Running on its assigned resources."""
    (moldable_id,) = run_sql(db_url, "SELECT moldable_id FROM moldable_job_descriptions "
                                     "WHERE moldable_job_id = %d" % job_id)[0]
    run_sql(db_url, "UPDATE jobs SET state = 'Running', assigned_moldable_job = %d WHERE job_id = %d"
            % (moldable_id, job_id))
    for resource_id in resource_ids:
        run_sql(db_url, "INSERT INTO assigned_resources (moldable_job_id, resource_id, assigned_resource_index) "
                        "VALUES (%d, %d, 'CURRENT')" % (moldable_id, resource_id))


def submitted(oar, *argv):
    result = oar("oarsub", *argv)
    assert result.rc == 0, result.err
    return int(result.lines[-1].split("=")[1])


def test_connect_to_a_running_job(lab, oar_conf, db_url, tmp_path):
    job_id = submitted(lab, "-l", "/nodes=2/core=1", "sleep 100")
    make_running(db_url, job_id, [17, 9])  # first cores of node-3 and node-2
    write_job_env(tmp_path / "run", job_id, tmp_path)
    proc = start_oarsub(oar_conf, "-C", str(job_id), stdin=subprocess.PIPE, extra_env={"SHELL": "/bin/sh"})
    rc, out, err = finish(proc, SCRIPT)
    assert rc == 3, err
    assert out.splitlines() == [f"Connect to OAR job {job_id} via the node node-2",
                                f"job={job_id} name=with spaces = and more", str(tmp_path)]
    assert not (tmp_path / "run" / f"job_{job_id}.shell.status").exists()  # not the job's own shell


def test_connect_refusals(lab, db_url, monkeypatch):
    job_id = submitted(lab, "-l", "/core=1", "sleep 100")
    result = lab("oarsub", "-C", "999")
    assert (result.rc, result.err.strip()) == (NOT_FOUND, "#ERROR: job 999 does not exist")
    result = lab("oarsub", "-C", str(job_id))
    assert result.rc == CONFLICT and f"job {job_id} is not running (Waiting)" in result.err
    assert lab("oarsub", "-C", str(job_id), "-I").rc == USAGE
    assert lab("oarsub", "-C", "abc").rc == USAGE
    make_running(db_url, job_id, [1])
    monkeypatch.setattr("oar_appliance.cli.common.caller_name", lambda: "alice")
    result = lab("oarsub", "-C", str(job_id))
    assert result.rc == PERMISSION and "is not yours" in result.err
