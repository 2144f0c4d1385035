"""SshConnector against a real sshd on a loopback port (started by the test, as the nodes'
dedicated sshd would run), with oarexec reporting to a zmq ROUTER in the test that stands
in for oar-server."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import time

import pytest

from oar_appliance.conf import Config
from oar_appliance.execution import LaunchError, SshConnector, connector_for
from tests.helpers import free_port
from tests.nodeside.conftest import wait_for

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
WORKTREE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A dedicated sshd on 127.0.0.1:<free port> accepting one key for the current account."""
    if not os.path.exists(SSHD):
        pytest.fail("sshd is missing (apt-get install openssh-server)", pytrace=False)
    if os.geteuid() != 0:
        pytest.skip("sshd needs root to log users in")
    base = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)],
                       check=True, timeout=30)
    (base / "authorized_keys").write_text((base / "client_key.pub").read_text())
    port = free_port()
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base}/host_key\n"
        f"PidFile {base}/sshd.pid\nAuthorizedKeysFile {base}/authorized_keys\n"
        "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "KexAlgorithms curve25519-sha256\n")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(base / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(base / "sshd.log", "wb"))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("sshd did not start: " + (base / "sshd.log").read_text())
                time.sleep(0.1)
        yield {"port": port, "key": str(base / "client_key")}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ssh_connector(sshd, port=None) -> SshConnector:
    ssh = ["ssh", "-p", str(port or sshd["port"]), "-i", sshd["key"], "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    # this tree on the "node": the same files, as on a cluster sharing /opt or /home
    python = ["env", f"PYTHONPATH={WORKTREE}", sys.executable]
    return SshConnector(ssh, user=pwd.getpwuid(os.getuid()).pw_name, node_python=python,
                        command_prefix=(), connect_timeout=5)


def test_from_config_defaults_and_port():
    connector = connector_for(Config.from_text("OAR_CONNECTOR=ssh\n", "oar.conf"))
    assert isinstance(connector, SshConnector)
    assert connector.ssh_argv[:3] == ["ssh", "-p", "6667"]
    assert connector.ssh_argv[-2:] == ["-l", "oar"]
    assert connector.node_command("n", "m") == ["sudo", "-n", "python3", "-m", "m"]
    connector = connector_for(Config.from_text(
        'OAR_CONNECTOR=ssh\nOPENSSH_CMD="/usr/bin/ssh -p 2222"\nNODE_SSH_USER=""\n'
        'NODE_COMMAND_PREFIX=""\nNODE_PYTHON=/opt/oar/bin/python\n', "oar.conf"))
    assert connector.ssh_argv.count("-p") == 1 and "2222" in connector.ssh_argv
    assert "-l" not in connector.ssh_argv
    assert connector.node_command("n", "m") == ["/opt/oar/bin/python", "-m", "m"]


def test_run_over_ssh_quotes_arguments(sshd):
    result = ssh_connector(sshd).run("127.0.0.1", ["sh", "-c", "cat; printf '%s|' \"$0\"; exit 3",
                                                   "a b;$HOME"], stdin=b"in ")
    assert (result.rc, result.stdout) == (3, b"in a b;$HOME|"), result.stderr


def test_job_over_ssh(sshd, jobs, report_server):
    jobs.connector, jobs.host = ssh_connector(sshd), "127.0.0.1"
    data = jobs.data("echo $OAR_JOB_ID > id.txt; sleep 300")
    files = jobs.start(data)
    # generous: every ssh login runs the account's shell start-up files on a loaded machine
    wait_for(lambda: (jobs.workdir / "id.txt").exists(), timeout=40, what="the job to start")
    assert (jobs.workdir / "id.txt").read_text().strip() == str(data["job_id"])
    result = jobs.connector.jobctl("127.0.0.1", "kill", data["job_id"], files.runtime_dir)
    assert result.rc == 0, result.stderr
    report = report_server.wait_report(timeout=40)
    assert report["oarexec_code"] == 3 and report["host"] == "127.0.0.1"


def test_launch_error_code_over_ssh(sshd, jobs):
    jobs.connector, jobs.host = ssh_connector(sshd), "127.0.0.1"
    with pytest.raises(LaunchError) as caught:
        jobs.start(jobs.data("true", launching_directory="/nonexistent/dir"))
    assert caught.value.oarexec_code == 10


def test_unreachable_node(sshd, jobs):
    jobs.connector = ssh_connector(sshd, port=free_port())  # nothing listens there
    jobs.host = "127.0.0.1"
    started = time.monotonic()
    with pytest.raises(LaunchError) as caught:
        jobs.start(jobs.data("true"))
    assert caught.value.oarexec_code is None and "cannot reach" in str(caught.value)
    assert time.monotonic() - started < 15
