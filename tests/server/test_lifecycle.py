"""A job's way through a real oar-server, on SQLite and PostgreSQL: submit, launch, run,
end; failing commands; dependencies; end reports sent again or with a bad challenge."""

from __future__ import annotations

import json

from tests.server.conftest import WAIT

FULL_PATH = ["Waiting", "toLaunch", "Launching", "Running", "Finishing", "Terminated"]


def test_job_end_to_end(running_lab):
    lab = running_lab
    job_id = lab.oarsub("-l", "/nodes=1/core=2", "-n", "first",
                        "echo hello; env | grep ^OAR_ | sort; cat $OAR_NODEFILE | sed 's/^/NODE /'; echo oops >&2")
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated", lab.events(job_id)
    job = lab.job(job_id)
    assert job["exit_code"] == 0
    assert job["start_time"] > 0 and job["stop_time"] >= job["start_time"]
    out = (lab.work / f"OAR.{job_id}.stdout").read_text()
    err = (lab.work / f"OAR.{job_id}.stderr").read_text()
    assert out.startswith("hello\n")
    assert err == "oops\n"
    env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("OAR_"))
    assert env["OAR_JOB_ID"] == env["OAR_JOBID"] == str(job_id)
    assert env["OAR_JOB_NAME"] == "first"
    assert env["OAR_USER"] == job["job_user"]
    assert env["OAR_WORKDIR"] == str(lab.work)
    assert env["OAR_JOB_WALLTIME_SECONDS"] == "7200"
    # one node file line per core, on one node
    nodes = [line.split()[1] for line in out.splitlines() if line.startswith("NODE ")]
    assert len(nodes) == 2 and len(set(nodes)) == 1 and nodes[0] in ("node-1", "node-2")
    # every state, each interval closed when the next one opened
    logs = lab.state_logs(job_id)
    assert [s for s, _, _ in logs] == FULL_PATH
    for (_, _, stop), (_, start, _) in zip(logs, logs[1:]):
        assert stop == start
    assert logs[-1][2] == 0
    assert lab.events(job_id) == []


def test_output_files_named_by_the_user(running_lab):
    lab = running_lab
    job_id = lab.oarsub("-n", "named", "-O", "out.%jobid%.%jobname%", "-E", str(lab.top / "err.%jobid%"),
                        "echo to-out; echo to-err >&2")
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    assert (lab.work / f"out.{job_id}.named").read_text() == "to-out\n"
    assert (lab.top / f"err.{job_id}").read_text() == "to-err\n"


def test_failing_command_ends_terminated_with_its_exit_code(running_lab):
    lab = running_lab
    job_id = lab.oarsub("exit 3")
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    # OAR stores the raw wait status: exit 3 -> 768 (oarstat shows "768 (3,0,0)")
    assert lab.job(job_id)["exit_code"] == 3 << 8


def test_missing_working_directory_is_an_error(running_lab):
    lab = running_lab
    job_id = lab.oarsub("-d", str(lab.top / "nowhere"), "true")
    assert lab.wait_state(job_id, "Terminated", "Error") == "Error"
    assert "WORKING_DIRECTORY" in lab.events(job_id)
    assert lab.job(job_id)["stop_time"] > 0


def test_dependency_chain_runs_in_order(running_lab):
    lab = running_lab
    trace = lab.top / "trace"
    first = lab.oarsub(f"sleep 1; echo a >> {trace}")
    second = lab.oarsub("-a", str(first), f"echo b >> {trace}")
    third = lab.oarsub("-a", str(second), f"echo c >> {trace}")
    assert lab.wait_state(third, "Terminated", "Error", timeout=WAIT) == "Terminated"
    assert trace.read_text() == "a\nb\nc\n"
    a, b, c = (lab.job(j) for j in (first, second, third))
    assert a["stop_time"] <= b["start_time"] and b["stop_time"] <= c["start_time"]


def test_end_report_repeated_or_with_a_bad_challenge(running_lab):
    """oarexec's retry after a lost acknowledgement changes nothing; a bad challenge is refused."""
    import zmq

    lab = running_lab
    job_id = lab.oarsub("exit 1")
    assert lab.wait_state(job_id, "Terminated") == "Terminated"
    logs_before = lab.state_logs(job_id)
    (challenge,) = lab.sql('SELECT "challenge" FROM "challenges" WHERE "job_id" = ?', [job_id])[0]

    def send(message: dict) -> dict:
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 5000)
        try:
            sock.connect(f"tcp://127.0.0.1:{lab.port}")
            sock.send(json.dumps(message).encode())
            return json.loads(sock.recv())
        finally:
            sock.close()

    report = {"kind": "oarexec_end", "job_id": job_id, "challenge": challenge, "oarexec_code": 0,
              "user_status": 0, "host": "node-1"}
    assert send(report) == {"ack": True}
    assert lab.state_logs(job_id) == logs_before
    assert lab.job(job_id)["exit_code"] == 1 << 8
    answer = send(dict(report, challenge="not-the-challenge"))
    assert answer["ack"] is False
    assert "BIPBIP_CHALLENGE" in lab.events(job_id)
    assert lab.state_logs(job_id) == logs_before


def test_server_stops_cleanly_on_sigterm(running_lab):
    import signal

    lab = running_lab
    assert lab.stop_server(signal.SIGTERM) == 0
    assert "oar-server stopped" in lab.log.read_text()
