"""The server's answers to a waiting oarsub (-r, -I), on SQLite and PostgreSQL.

The waiting side of oarsub is not this module's (tests/cli/test_oarsub_waiting.py): a
listening socket of the test stands for it, its address stored in ``jobs.info_type`` as
oarsub stores it, before the server starts.  An interactive job is written through the
submission service with that address, as a waiting ``oarsub -I`` writes it (``oarsub -I``
itself would wait for a server, and give up when none runs).
"""

from __future__ import annotations

import os
import pwd
import socket
import time

from oar_appliance import submission
from oar_appliance.conf import load_config
from oar_appliance.db.connection import connect
from oar_appliance.job_request import JobRequest
from oar_appliance.lang.request import parse_requests
from tests.server.conftest import WAIT


class Submitter:
    """A listening TCP socket, as a waiting oarsub opens; ``line()`` is the server's answer."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(WAIT)

    @property
    def address(self) -> str:
        return "127.0.0.1:%d" % self.sock.getsockname()[1]

    def line(self) -> str:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(WAIT)
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(1024)
                if not chunk:
                    break
                data += chunk
        return data.decode().strip()

    def close(self):
        self.sock.close()


def _waiting_for(lab, job_id: int, submitter: Submitter) -> None:
    lab.sql('UPDATE "jobs" SET "info_type" = ? WHERE "job_id" = ?', [submitter.address, job_id])


def _interactive_job(lab, submitter: Submitter, request: str) -> int:
    """An ``oarsub -I -l request`` job waiting for its answer at ``submitter``."""
    config = load_config(str(lab.conf), environ={})
    moldables = parse_requests([request], config["HIERARCHY_LABELS"],
                               config["OARSUB_NODES_RESOURCES"], config["OARSUB_DEFAULT_RESOURCES"])
    job = JobRequest(user=pwd.getpwuid(os.getuid()).pw_name, job_type="INTERACTIVE",
                     moldables=moldables, directory=str(lab.runtime.parent))
    db = connect(config.database_url())
    try:
        (job_id,) = submission.submit(db, job, config, int(time.time()),
                                      info_type=submitter.address).job_ids
    finally:
        db.close()
    return job_id


def test_reservations_granted_and_rejected(lab):
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() + 3600))
    granted = lab.oarsub("-r", start, "-l", "/nodes=2,walltime=1")
    rejected = lab.oarsub("-r", start, "-l", "/nodes=1,walltime=1")
    yes, no = Submitter(), Submitter()
    try:
        _waiting_for(lab, granted, yes)
        _waiting_for(lab, rejected, no)
        lab.start_server()
        assert yes.line() == f"GRANTED {lab.job(granted)['start_time']}"
        assert no.line().startswith("REJECTED ")
    finally:
        yes.close()
        no.close()
    assert lab.job(granted)["reservation"] == "Scheduled" and lab.state(granted) == "Waiting"
    assert lab.state(rejected) == "Error"


def test_interactive_job_started_then_ended_by_its_shell(lab):
    waiting = Submitter()
    try:
        job_id = _interactive_job(lab, waiting, "/core=1")
        lab.start_server()
        answer = waiting.line()
    finally:
        waiting.close()
    assert lab.state(job_id) == "Running"
    assert answer in ("STARTED node-1", "STARTED node-2")
    # the user's shell ends (oarsh_shell writes its status): the job ends with it
    (lab.runtime / f"job_{job_id}.shell.status").write_text("0\n")
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    assert lab.job(job_id)["exit_code"] == 0


def test_interactive_job_deleted_while_waiting_is_told(lab):
    blocker = lab.oarsub("-l", "/nodes=2", "sleep 60")
    waiting = Submitter()
    try:
        job_id = _interactive_job(lab, waiting, "/core=1")
        lab.start_server()
        lab.wait_state(blocker, "Running")
        assert lab.state(job_id) == "Waiting"
        assert lab.cmd("oardel", str(job_id)).rc == 0
        assert waiting.line().startswith("ERROR ")
    finally:
        waiting.close()
    assert lab.wait_state(job_id, "Error") == "Error"
    assert lab.cmd("oardel", str(blocker)).rc == 0
    lab.wait_state(blocker, "Error")
