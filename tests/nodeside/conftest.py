"""Fixtures for the node side: a stand-in server and jobs started through LocalConnector.

The server side of the end report is a real zmq ROUTER socket in a thread of the test
(the real oar-server is not part of these tests); it records each report and answers it
as the test says.  Every oarexec a test starts is killed at the end, by its pid file, with
whatever is left of its job.
"""

from __future__ import annotations

import json
import os
import pwd
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import pytest

from oar_appliance.execution import LocalConnector
from oar_appliance.nodeside.runtime import JobFiles, ProcessGroupJobProcesses, pid_alive, read_pid

REPORT_WAIT = 20.0
#: an ordinary account with a real shell, for the tests that run a job as another user
JOB_ACCOUNT = "oarexectest"


class ReportServer:
    """A zmq ROUTER standing in for oar-server: records reports, answers ``answer(msg)``."""

    def __init__(self, port: int | None = None,
                 answer: Callable[[dict], dict] = lambda msg: {"ack": True}, address: str = "127.0.0.1"):
        import zmq

        self.answer = answer
        self.reports: queue.Queue = queue.Queue()
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if port is None:
            self.port = self.sock.bind_to_random_port(f"tcp://{address}")
        else:
            self.sock.bind(f"tcp://{address}:{port}")
            self.port = port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import zmq

        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            frames = self.sock.recv_multipart()
            identity, body = frames[0], frames[-1]
            message = json.loads(body)
            self.reports.put(message)
            self.sock.send_multipart([identity, b"", json.dumps(self.answer(message)).encode()])

    def wait_report(self, timeout: float = REPORT_WAIT) -> dict:
        try:
            return self.reports.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no end report within {timeout} s") from None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        self.context.term()


@pytest.fixture
def report_server():
    server = ReportServer()
    yield server
    server.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Jobs:
    """Starts jobs through LocalConnector and kills what is left of them at the end."""

    def __init__(self, tmp_path, server_port_getter):
        self.tmp_path = tmp_path
        self.runtime_dir = str(tmp_path / "runtime")
        self.workdir = tmp_path / "work"
        self.workdir.mkdir()
        self.connector = LocalConnector()
        self.host = "node-1"  # the head node's name given to the connector
        self._server_port = server_port_getter
        self.started: list[JobFiles] = []
        self.next_id = 100

    def data(self, command: str = "true", **overrides: Any) -> dict[str, Any]:
        self.next_id += 1
        data = {
            "job_id": self.next_id,
            "user": pwd.getpwuid(os.getuid()).pw_name,
            "name": "testjob",
            "project": "proj",
            "queue": "default",
            "types": [],
            "command": command,
            "interactive": False,
            "launching_directory": str(self.workdir),
            "stdout_file": None,
            "stderr_file": None,
            "walltime": 5400,
            "hosts": ["node-1", "node-2"],
            "node_file_lines": ["node-1", "node-1", "node-2"],
            "resource_properties": ["resource_id = '1', network_address = 'node-1'"],
            "cpuset": [],
            "array_id": self.next_id,
            "array_index": 1,
            "checkpoint_signal": None,
            "challenge": "secret-challenge",
            "server": {"host": "127.0.0.1", "port": self._server_port()},
            "runtime_dir": self.runtime_dir,
            "prologue": None,
            "epilogue": None,
            "prologue_timeout": 10,
            "kill_grace": 1,
            # these tests are about oarexec, not cgroups (tests/nodeside/test_cgroups.py):
            # never the host's /oar cgroups
            "job_resource_manager": "none",
            "report_try_timeout": 1,
            "report_max_backoff": 1,
        }
        data.update(overrides)
        return data

    def files(self, data: dict) -> JobFiles:
        return JobFiles(data["runtime_dir"], data["job_id"])

    def start(self, data: dict, timeout: float = 20.0) -> JobFiles:
        files = self.files(data)
        self.started.append(files)
        self.connector.start_oarexec(self.host, data, timeout)
        return files

    def oarexec_pid(self, files: JobFiles) -> int:
        return read_pid(files.pid)

    def jobctl(self, files: JobFiles, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "oar_appliance.nodeside.jobctl", *args,
             "--job-id", str(files.job_id), "--runtime-dir", files.runtime_dir],
            capture_output=True, text=True, timeout=30)

    def cleanup(self) -> None:
        for files in self.started:
            pid = read_pid(files.pid)
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            ProcessGroupJobProcesses.from_files(files).kill_all(0)


@pytest.fixture
def jobs(tmp_path, report_server):
    manager = Jobs(tmp_path, lambda: report_server.port)
    yield manager
    manager.cleanup()


@pytest.fixture(scope="session")
def job_account() -> str:
    """An ordinary account with a login shell (created once when missing; root only)."""
    if os.geteuid() != 0:
        pytest.skip("running a job as another account needs root")
    try:
        pwd.getpwnam(JOB_ACCOUNT)
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/bin/bash", "--home-dir", "/nonexistent",
                        "--no-create-home", JOB_ACCOUNT], check=True, capture_output=True, timeout=30)
    return JOB_ACCOUNT
