"""The fan-out (oar_appliance/execution/fanout.py) against the test bed's real sshd: one
command on every node at once, each node's output, exit code and name, stdin for all, an
unreachable node and a node too slow, with ClusterShell and with TakTuk."""

from __future__ import annotations

import shutil
import time

import pytest

from oar_appliance.execution import LocalConnector, SshConnector, connector_for
from oar_appliance.execution.fanout import HOST, ClusterShellFanOut, TaktukFanOut

SCRIPT = ["sh", "-c", 'echo "$(hostname) $0"; cat; echo warn >&2; [ "$0" = node2 ] && exit 3; exit 0', HOST]


def _connector(bed) -> SshConnector:
    return SshConnector(["ssh", "-F", bed.ssh_config], user=bed.account, command_prefix=[])


def _fanouts(bed):
    connector = _connector(bed)
    yield ClusterShellFanOut(connector)
    if shutil.which("taktuk") is None:
        pytest.fail("taktuk is missing (apt-get install taktuk; scripts/run-tests installs it)")
    yield TaktukFanOut(connector, "taktuk")


def test_every_node_runs_the_command_with_its_name_and_stdin(testbed):
    for fanout in _fanouts(testbed):
        results = fanout.run(["node3", "node1", "node2"], SCRIPT, stdin=b"job data\n", timeout=20)
        assert sorted(results) == ["node1", "node2", "node3"], type(fanout).__name__
        for host, result in results.items():
            assert result.stdout.decode().split("\n")[:2] == [f"{host} {host}", "job data"], (fanout, result)
            assert result.stderr.strip() == b"warn"
            assert result.rc == (3 if host == "node2" else 0)


def test_an_unreachable_node_fails_alone_and_a_slow_one_times_out(testbed_factory):
    bed = testbed_factory(2)
    try:
        bed.stop_sshd("node2")
        for fanout in _fanouts(bed):
            results = fanout.run(["node1", "node2"], ["true"], timeout=20)
            assert (results["node1"].rc, results["node2"].rc) == (0, 255), (fanout, results)
        began = time.monotonic()
        results = ClusterShellFanOut(_connector(bed)).run(["node1"], ["sleep", "30"], timeout=2)
        assert results["node1"].rc is None and time.monotonic() - began < 10
    finally:
        bed.close()


def test_the_fanout_is_chosen_once_from_the_configuration():
    ssh = {"OAR_CONNECTOR": "ssh", "OPENSSH_CMD": "ssh", "NODE_SSH_USER": "oar", "NODE_PYTHON": "python3",
           "NODE_COMMAND_PREFIX": "sudo -n"}

    class Config(dict):
        def source(self, key):
            return key

    assert isinstance(connector_for(Config(ssh)).fanout, ClusterShellFanOut)
    assert isinstance(connector_for(Config(ssh, TAKTUK_CMD="taktuk -s")).fanout, TaktukFanOut)
    # TakTuk needs ssh: with the local connector, every node is this host
    local = connector_for(Config(ssh, OAR_CONNECTOR="local", TAKTUK_CMD="taktuk"))
    assert isinstance(local, LocalConnector) and isinstance(local.fanout, ClusterShellFanOut)
