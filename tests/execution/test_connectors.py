"""Connectors: the choice from oar.conf, LocalConnector's run and its launch failures."""

from __future__ import annotations

import os
import sys
import time

import pytest

from oar_appliance.conf import Config
from oar_appliance.errors import ConfigError
from oar_appliance.execution import (
    READY_LINE,
    LaunchError,
    LocalConnector,
    SshConnector,
    connector_for,
)
from oar_appliance.nodeside import oarexec


def test_ready_line_is_the_one_oarexec_prints():
    assert READY_LINE == oarexec.READY_LINE


def test_connector_for_config():
    assert isinstance(connector_for(Config.from_text("OAR_CONNECTOR=local\n", "oar.conf")),
                      LocalConnector)
    assert isinstance(connector_for(Config.from_text("", "oar.conf")), SshConnector)  # the default
    with pytest.raises(ConfigError) as caught:
        connector_for(Config.from_text("OAR_CONNECTOR=telnet\n", "oar.conf"))
    assert "oar.conf:1" in str(caught.value) and "telnet" in str(caught.value)


def test_run_gives_exit_code_and_output():
    connector = LocalConnector()
    result = connector.run("node-1", ["sh", "-c", "cat; echo err >&2; exit 4"], stdin=b"hello")
    assert (result.rc, result.stdout, result.stderr) == (4, b"hello", b"err\n")
    assert not result.ok
    assert connector.run("node-1", ["true"]).ok


def test_run_timeout_kills_the_command_and_its_children(tmp_path):
    pid_file = tmp_path / "child"
    started = time.monotonic()
    result = LocalConnector().run(
        "node-1", ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"], timeout=1)
    assert result.rc is None
    assert time.monotonic() - started < 10
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{child}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{child}")


def test_run_of_a_missing_program():
    result = LocalConnector().run("node-1", ["/nonexistent/program"])
    assert result.rc == 127


def test_jobctl_argv(tmp_path):
    result = LocalConnector().jobctl("node-1", "suspend", 99, str(tmp_path))
    assert result.rc == 6 and b"job 99" in result.stderr


def test_launch_timeout(tmp_path):
    """A stand-in for a node's python that never answers: the launcher must not hang."""
    slow = tmp_path / "slow-python"
    slow.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/pid\nexec sleep 300\n")
    slow.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(LaunchError) as caught:
        LocalConnector(python=str(slow)).start_oarexec("node-1", {"job_id": 1}, timeout=1)
    assert caught.value.timed_out and caught.value.oarexec_code is None
    assert time.monotonic() - started < 10
    assert not os.path.exists(f"/proc/{int((tmp_path / 'pid').read_text())}")


def test_launch_of_a_missing_program():
    with pytest.raises(LaunchError) as caught:
        LocalConnector(python="/nonexistent/python").start_oarexec("node-1", {"job_id": 1}, 5)
    assert "cannot start oarexec" in str(caught.value)


def test_launch_error_carries_oarexec_code_and_reason():
    with pytest.raises(LaunchError) as caught:
        LocalConnector(python=sys.executable).start_oarexec("node-1", {"job_id": 1}, 20)
    assert caught.value.oarexec_code == 30
    assert "lacks" in str(caught.value)


def test_an_exit_code_that_is_not_oarexec_s_verdict(tmp_path):
    """A stand-in for a node's python that fails like a missing module (exit code 1): that
    is not oarexec's prologue error (1), so no oarexec code."""
    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\necho 'No module named oar_appliance' >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(LaunchError) as caught:
        LocalConnector(python=str(broken)).start_oarexec("node-1", {"job_id": 1}, 20)
    assert caught.value.oarexec_code is None and caught.value.rc == 1
    assert "No module named" in str(caught.value)
