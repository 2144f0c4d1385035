"""The multi-node test bed itself: hosts come up with their own names, reach each other by
name over ssh, and leave nothing behind."""

from __future__ import annotations

import os
import subprocess

import pytest

from oar_appliance.execution import SshConnector
from tests.testbed import SSH_PORT, Testbed, link_names, netns_names, sweep_stale


def test_three_hosts_answer_their_own_hostname(testbed):
    assert [host.name for host in testbed.hosts] == ["node1", "node2", "node3"]
    assert len({host.address for host in testbed.hosts}) == 3
    for host in testbed.hosts:
        result = subprocess.run(
            ["ssh", "-p", str(SSH_PORT), "-i", testbed.key, "-o", f"UserKnownHostsFile={testbed.known_hosts}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
             f"{testbed.account}@{host.address}", "hostname"],
            capture_output=True, text=True, timeout=20)
        assert (result.returncode, result.stdout.strip()) == (0, host.name), result.stderr


def test_each_host_is_its_own_network_namespace(testbed):
    own = os.readlink("/proc/self/ns/net")
    seen = {os.readlink(f"/proc/{host.sshd_pid}/ns/net") for host in testbed.hosts}
    assert len(seen) == 3 and own not in seen
    assert {host.netns for host in testbed.hosts} <= netns_names()
    # the machine's /etc/hosts is untouched: the names exist only inside the bed
    with open("/etc/hosts") as hosts:
        assert testbed.hosts[0].address not in hosts.read()


def test_hosts_reach_each_other_by_name(testbed):
    for source, target in (("node1", "node2"), ("node2", "node3"), ("node3", "node1")):
        result = testbed.ssh(source, f"hostname; ssh -F {testbed.ssh_config} {target} hostname")
        assert (result.returncode, result.stdout.split()) == (0, [source, target]), result.stderr


def test_only_key_logins_of_the_test_account(testbed):
    address = testbed.hosts[0].address
    as_root = subprocess.run(testbed.ssh_argv(address, "true")[:-2] + [f"root@{address}", "true"],
                             capture_output=True, text=True, timeout=20)
    assert as_root.returncode == 255
    no_key = subprocess.run(
        ["ssh", "-p", str(SSH_PORT), "-o", "IdentitiesOnly=yes", "-o", "IdentityFile=/dev/null",
         "-o", f"UserKnownHostsFile={testbed.known_hosts}", "-o", "BatchMode=yes",
         f"{testbed.account}@{address}", "true"], capture_output=True, text=True, timeout=20)
    assert no_key.returncode == 255


def test_teardown_leaves_nothing_even_after_a_failure(testbed_factory):
    mine = f"oartb{os.getpid()}-"
    before = {name for name in netns_names() if name.startswith(mine)}
    with pytest.raises(RuntimeError, match="test failure"):
        with testbed_factory(2) as bed:
            pids = [host.sshd_pid for host in bed.hosts]
            created = set(bed.created_netns)
            links = set(bed.created_links)
            assert created <= netns_names() and links <= link_names()
            assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
            raise RuntimeError("test failure")
    assert not created & netns_names()
    assert {name for name in netns_names() if name.startswith(mine)} <= before
    assert not links & link_names()
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
    assert not os.path.exists(bed.directory)


def test_a_failed_start_is_undone(testbed_registry, monkeypatch):
    bed = Testbed(2, registry=testbed_registry)

    def broken(host):
        raise RuntimeError("sshd cannot start")

    monkeypatch.setattr(bed, "_start_sshd", broken)
    with pytest.raises(RuntimeError, match="sshd cannot start"):
        bed.start()
    assert bed.created_netns and not set(bed.created_netns) & netns_names()
    assert not set(bed.created_links) & link_names()
    assert bed not in testbed_registry.beds


def test_ssh_connector_runs_commands_on_the_hosts(testbed):
    """The appliance's SshConnector, configured as OPENSSH_CMD="ssh -F <bed's config>" with
    the bed's account, runs node-side commands on the host it names."""
    connector = SshConnector(["ssh", "-F", testbed.ssh_config], user=testbed.account,
                             command_prefix=(), connect_timeout=5)
    for host in testbed.hosts:
        result = connector.run(host.name, ["sh", "-c", 'hostname; printf "%s" "$0"', "a b;$x"])
        assert (result.rc, result.stdout) == (0, f"{host.name}\na b;$x".encode()), result.stderr


def test_sweep_removes_what_a_dead_run_left(testbed_registry):
    """A namespace and a link named after a process that no longer exists (a crashed run)
    are swept; the live bed's are not."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    netns, link = f"oartb{dead.pid}-1-node1", f"otb{dead.pid}h1"
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=10)
    try:
        subprocess.run(["ip", "link", "add", link, "type", "bridge"], check=True, timeout=10)
        with Testbed(1, registry=testbed_registry) as live:
            assert sorted(sweep_stale()) == sorted([netns, link])
            assert set(live.created_netns) <= netns_names()
            assert set(live.created_links) <= link_names()
        assert netns not in netns_names() and link not in link_names()
    finally:
        subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)


def test_each_host_has_its_own_cgroup_tree_removed_at_teardown(testbed_factory):
    bed = testbed_factory(2)
    try:
        probe = os.path.join(bed.host_cgroup("node1", "cpuset"), "probe")
        os.mkdir(probe)
        for name, expected in (("node1", "yes"), ("node2", "no")):
            result = bed.ssh(name, "grep -c '^[0-9]*:cpuset:/$' /proc/self/cgroup; "
                                   "test -d /sys/fs/cgroup/cpuset/probe && echo yes || echo no")
            assert result.stdout.split() == ["1", expected], result.stderr
        own = [path for host in bed.hosts for path in host.cgroups]
        assert own and all(os.path.isdir(path) for path in own)
    finally:
        bed.close()
    assert not any(os.path.exists(path) for path in own)


def test_one_host_sshd_stops_and_starts_again(testbed_factory):
    bed = testbed_factory(2)
    try:
        bed.stop_sshd("node2")
        assert bed.ssh("node2", "true").returncode == 255
        assert bed.ssh("node1", "true").returncode == 0
        bed.start_sshd("node2")
        assert bed.ssh("node2", "hostname").stdout.strip() == "node2"
    finally:
        bed.close()
