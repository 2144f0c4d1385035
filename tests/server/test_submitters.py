"""The server's answers to a waiting oarsub (-r, -I), on SQLite and PostgreSQL.

The waiting side of oarsub is not this module's: a listening socket of the test stands for
it, its address stored in ``jobs.info_type`` as oarsub stores it, before the server starts.
"""

from __future__ import annotations

import socket
import time

from tests.server.conftest import WAIT, wait_for


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


def _interactive(lab, *resources: str) -> int:
    """A job as ``oarsub -I`` stores it, submitted while the server is down (a real
    ``oarsub -I`` refuses that and would wait in this process): a passive submission made
    interactive (``job_type``, no command)."""
    job_id = lab.oarsub(*resources, "true")
    lab.sql('UPDATE "jobs" SET "job_type" = \'INTERACTIVE\', "command" = \'\' WHERE "job_id" = ?', [job_id])
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
    job_id = _interactive(lab, "-l", "/core=1")
    waiting = Submitter()
    try:
        _waiting_for(lab, job_id, waiting)
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
    job_id = _interactive(lab, "-l", "/core=1")
    waiting = Submitter()
    try:
        _waiting_for(lab, job_id, waiting)
        lab.start_server()
        lab.wait_state(blocker, "Running")
        assert lab.state(job_id) == "Waiting"
        # planned after the blocker (its walltime, 2 h, and the security time)
        # (the blocker's start_time is the one of its launch: a round before it may plan
        # from a second earlier, then the new start is sent again)
        blocker_start = lab.job(blocker)["start_time"]
        word, start = waiting.line().split()
        assert word == "PREDICTION" and blocker_start + 7200 - 3 <= int(start) <= blocker_start + 7200 + 1
        assert lab.cmd("oardel", str(job_id)).rc == 0
        line = waiting.line()
        while line.startswith("PREDICTION "):
            line = waiting.line()
        assert line.startswith("ERROR ")
    finally:
        waiting.close()
    assert lab.wait_state(job_id, "Error") == "Error"
    assert lab.cmd("oardel", str(blocker)).rc == 0
    lab.wait_state(blocker, "Error")


def test_answers_lost_in_a_crash_are_sent_again(lab):
    """The server is killed after its decisions: the restarted one answers the submitters
    still listening again (an interactive job Running, an accepted reservation)."""
    import signal

    start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() + 3600))
    resa = lab.oarsub("-r", start, "-l", "/nodes=1,walltime=1")
    interactive = _interactive(lab, "-l", "/core=1")
    granted, started = Submitter(), Submitter()
    try:
        _waiting_for(lab, resa, granted)
        _waiting_for(lab, interactive, started)
        lab.start_server()
        first = (granted.line(), started.line())
        lab.wait_state(interactive, "Running")
        lab.stop_server(signal.SIGKILL)
        # both submitters still listen, as if the answers had been lost
        lab.start_server()
        again = (granted.line(), started.line())
    finally:
        granted.close()
        started.close()
    assert first == again
    assert again[0] == f"GRANTED {lab.job(resa)['start_time']}"
    assert again[1] in ("STARTED node-1", "STARTED node-2")
    wait_for(lambda: "2 waiting submitter(s) answered again" in lab.log.read_text(), what="the recovery logged")
    # nothing else changed: the interactive job still runs, once
    assert lab.state(interactive) == "Running" and lab.state(resa) == "Waiting"
    assert [s for s, _, _ in lab.state_logs(interactive)].count("Running") == 1
    (lab.runtime / f"job_{interactive}.shell.status").write_text("0\n")
    assert lab.wait_state(interactive, "Terminated", "Error") == "Terminated"


def test_real_oarsub_interactive_prints_the_start_prediction(running_lab):
    """A real ``oarsub -I`` (its own process) behind a job holding every resource prints
    the server's start prediction while it waits; deleted, it ends with one #ERROR line."""
    import os
    import selectors
    import subprocess
    import sys

    lab = running_lab
    blocker = lab.oarsub("-l", "/nodes=2", "sleep 60")
    lab.wait_state(blocker, "Running")
    waiting = subprocess.Popen([sys.executable, "-m", "oar_appliance.cli.oarsub", "-I", "-l", "/core=1"],
                               cwd=lab.work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=dict(os.environ))
    lines: list[str] = []
    try:
        selector = selectors.DefaultSelector()
        selector.register(waiting.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + WAIT
        buffer = b""
        while time.monotonic() < deadline and not any(l.startswith("Start prediction:") for l in lines):
            if selector.select(timeout=0.2):
                chunk = os.read(waiting.stdout.fileno(), 4096)
                if not chunk:
                    break
                buffer += chunk
                *done, buffer = buffer.split(b"\n")
                lines += [d.decode() for d in done]
        job_id = int(next(l for l in lines if l.startswith("OAR_JOB_ID=")).split("=")[1])
        assert lab.cmd("oardel", str(job_id)).rc == 0
        out, err = waiting.communicate(timeout=WAIT)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    predicted = [l for l in lines if l.startswith("Start prediction: ")]
    assert lines.index("Interactive mode: waiting...") < lines.index(predicted[0]), lines
    start = time.mktime(time.strptime(predicted[0].split(": ", 1)[1], "%Y-%m-%d %H:%M:%S"))
    blocker_end = lab.job(blocker)["start_time"] + 7200
    assert blocker_end - 3 <= start <= blocker_end + 1, (predicted, blocker_end)
    assert waiting.returncode == 7 and err.decode().startswith("#ERROR: "), err
    assert lab.cmd("oardel", str(blocker)).rc == 0
    lab.wait_state(blocker, "Error")
