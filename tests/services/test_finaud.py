"""Finaud on both backends, with a real PINGCHECKER_GENERIC_COMMAND script."""

from __future__ import annotations

import stat
import sys

import pytest

from oar_appliance import finaud, resources
from oar_appliance.db import resource_table
from tests.jobdata import add_job
from tests.services.helpers import T0, config, events, make_cluster, state_logs


@pytest.fixture
def checker(tmp_path):
    """A generic check command: reads the bad hosts from a file, logs its arguments.

    Prints each bad host given as argument on stderr, one per line, as OAR's generic
    pingchecker convention wants, and some noise that must be ignored.
    """
    bad_file = tmp_path / "bad_hosts"
    bad_file.write_text("")
    calls = tmp_path / "calls"
    script = tmp_path / "check_nodes"
    script.write_text(f"""#!{sys.executable}
import sys
hosts = sys.argv[2:]
with open({str(calls)!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
bad = set(open({str(bad_file)!r}).read().split())
sys.stderr.write("warning: something unrelated\\n")
for host in hosts:
    if host in bad:
        sys.stderr.write(host + "\\n")
print("node-1")  # stdout is not looked at
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)

    class Checker:
        command = f"{script} --fast"

        @staticmethod
        def set_bad(*hosts):
            bad_file.write_text("\n".join(hosts) + "\n")

        @staticmethod
        def calls():
            return calls.read_text().splitlines() if calls.exists() else []

    return Checker


def _states(db):
    return {r["resource_id"]: r["state"] for r in resource_table.select(db)}


def test_bad_idle_node_is_suspected_and_comes_back_when_good(db, db_url, checker):
    cluster = make_cluster(db, hosts=("node-1", "node-2", "node-3"))
    busy = add_job(db_url, state="Running", start_time=T0, resources=cluster["node-3"][:1])
    conf = config(PINGCHECKER_GENERIC_COMMAND=checker.command)
    check = finaud.command_check(conf)

    checker.set_bad("node-2", "node-3")
    report = finaud.run(db, conf, T0, check)
    # node-3 runs a job: not checked
    assert checker.calls() == ["--fast node-1 node-2"]
    assert report.checked == ["node-1", "node-2"]
    assert report.suspected_hosts == ["node-2"] and report.suspected_resources == cluster["node-2"]
    assert report.revived_hosts == [] and report.changed and report.error is None
    states = _states(db)
    assert {states[r] for r in cluster["node-2"]} == {"Suspected"}
    assert {states[r] for r in cluster["node-1"] + cluster["node-3"]} == {"Alive"}
    assert state_logs(cluster["node-2"][0])[-1] == ("Suspected", T0, 0, "YES")
    (event,) = events(kind="PING_CHECKER_NODE_SUSPECTED")
    assert event.event_id == report.event_id and event.job_id == 0
    assert finaud.hostnames_of_event(event.event_id) == ["node-2"]
    assert events(busy) == []

    # still bad: stays Suspected, no new event
    report = finaud.run(db, conf, T0 + 300, check)
    assert report.checked == ["node-1", "node-2"] and not report.changed
    assert len(events(kind="PING_CHECKER_NODE_SUSPECTED")) == 1

    # good again: Alive, by finaud's decision
    checker.set_bad()
    report = finaud.run(db, conf, T0 + 600, check)
    assert report.revived_hosts == ["node-2"] and report.revived_resources == cluster["node-2"]
    assert set(_states(db).values()) == {"Alive"}
    assert state_logs(cluster["node-2"][0])[-2:] == [("Suspected", T0, T0 + 600, "YES"),
                                                     ("Alive", T0 + 600, 0, "YES")]


def test_nodes_suspected_by_someone_else_are_not_revived(db, checker):
    cluster = make_cluster(db)
    with db.atomic():
        resources.request_state(db, cluster["node-1"], "Suspected")  # e.g. a failed job
        resources.apply_pending_states(db, T0)
    conf = config(PINGCHECKER_GENERIC_COMMAND=checker.command)
    report = finaud.run(db, conf, T0 + 10)
    assert report.checked == ["node-2"] and not report.changed
    assert {_states(db)[r] for r in cluster["node-1"]} == {"Suspected"}


def test_a_check_that_times_out_changes_nothing(db, tmp_path):
    make_cluster(db)
    script = tmp_path / "slow"
    script.write_text(f"#!{sys.executable}\nimport sys, time\nsys.stderr.write('node-1\\n')\ntime.sleep(30)\n")
    script.chmod(0o755)
    conf = config(PINGCHECKER_GENERIC_COMMAND=str(script))
    report = finaud.run(db, conf, T0, finaud.command_check(conf, timeout=0.5))
    assert report.error is not None and "0.5 s" in report.error
    assert not report.changed and set(_states(db).values()) == {"Alive"}


def test_a_missing_check_command_changes_nothing(db, tmp_path):
    make_cluster(db)
    conf = config(PINGCHECKER_GENERIC_COMMAND=str(tmp_path / "no-such-command"))
    report = finaud.run(db, conf, T0)
    assert report.error and "cannot run" in report.error
    assert set(_states(db).values()) == {"Alive"}


def test_finaud_frequency_zero_turns_it_off(db, checker):
    make_cluster(db)
    checker.set_bad("node-1")
    conf = config(PINGCHECKER_GENERIC_COMMAND=checker.command, FINAUD_FREQUENCY=0)
    report = finaud.run(db, conf, T0)
    assert report.checked == [] and checker.calls() == []


def test_a_check_that_raises_changes_nothing(db):
    make_cluster(db)

    def broken(hosts):
        raise OSError("no route to the checker")

    report = finaud.run(db, config(), T0, broken)
    assert report.error == "OSError: no route to the checker"
    assert not report.changed and set(_states(db).values()) == {"Alive"}


class HostsConnector:
    """Stands for the server's execution connector (oar_appliance.execution, another module):
    runs the command for real on this host, except that the hosts in ``down`` fail it, as
    an unreachable node's sshd would."""

    def __init__(self, down=()):
        self.down = set(down)
        self.calls = []

    def run(self, host, argv, stdin=None, timeout=30.0):
        import subprocess
        from types import SimpleNamespace

        self.calls.append((host, list(argv)))
        done = subprocess.run(["false"] if host in self.down else argv, capture_output=True, timeout=timeout)
        return SimpleNamespace(rc=done.returncode, stdout=done.stdout, stderr=done.stderr)


def test_the_servers_connector_checks_the_nodes_without_a_generic_command(db):
    cluster = make_cluster(db, hosts=("node-1", "node-2", "node-3"))
    connector = HostsConnector(down={"node-2"})
    report = finaud.run(db, config(), T0, connector)
    assert sorted(connector.calls) == [("node-1", ["true"]), ("node-2", ["true"]), ("node-3", ["true"])]
    assert report.suspected_hosts == ["node-2"] and report.suspected_resources == cluster["node-2"]
    connector.down.clear()
    assert finaud.run(db, config(), T0 + 300, connector).revived_hosts == ["node-2"]


def test_a_generic_command_wins_over_the_connector(db, checker):
    make_cluster(db)
    checker.set_bad("node-1")
    connector = HostsConnector()
    report = finaud.run(db, config(PINGCHECKER_GENERIC_COMMAND=checker.command), T0, connector)
    assert connector.calls == [] and report.suspected_hosts == ["node-1"]


def test_without_command_nor_connector_each_host_is_pinged(db, tmp_path, monkeypatch):
    """A ``ping`` of the test's own, first on PATH (this machine may have none): the host
    is its last argument; it fails for node-2."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "pings"
    ping = bin_dir / "ping"
    ping.write_text(f'#!/bin/sh\necho "$@" >> {log}\nfor last; do :; done\n[ "$last" != node-2 ]\n')
    ping.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    cluster = make_cluster(db)
    report = finaud.run(db, config(), T0)
    assert sorted(log.read_text().splitlines()) == ["-c 1 -W 3 node-1", "-c 1 -W 3 node-2"]
    assert report.suspected_resources == cluster["node-2"]

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    report = finaud.run(db, config(), T0 + 300)
    assert report.error and "no ping command" in report.error
