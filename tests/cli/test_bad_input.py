"""Bad input: one clear line, the documented exit code, and the database unchanged."""

from __future__ import annotations

import os
import pwd

import pytest

USAGE, CONFIG, DATABASE, EXPRESSION, NOT_FOUND, CONFLICT, PERMISSION = 2, 3, 4, 5, 6, 7, 8

CASES = [
    # command, arguments, exit code, a word the message must contain
    ("oarnodes", ["--bogus"], USAGE, "unrecognized arguments"),
    ("oarnodes", ["-s", "-l"], USAGE, "not allowed with"),
    ("oarproperty", [], USAGE, "nothing to do"),
    ("oarproperty", ["-a", "Bad-Name"], USAGE, "invalid property name"),
    ("oarproperty", ["-a", "x; DROP TABLE jobs"], USAGE, "invalid property name"),
    ("oarproperty", ["-a", "state"], CONFLICT, "system column"),
    ("oarproperty", ["-a", "cpu"], CONFLICT, "already exists"),
    ("oarproperty", ["-a", "good_one", "-a", "cpu"], CONFLICT, "already exists"),
    ("oarproperty", ["-d", "nope"], NOT_FOUND, "does not exist"),
    ("oarproperty", ["-d", "network_address"], CONFLICT, "system column"),
    ("oarproperty", ["-r", "cpu"], USAGE, "OLD,NEW"),
    ("oarproperty", ["-r", "cpu,core"], CONFLICT, "already exists"),
    ("oarproperty", ["-c"], USAGE, "-c goes with -a"),
    ("oarnodesetting", ["-r", "999", "-s", "Absent"], NOT_FOUND, "resource 999"),
    ("oarnodesetting", ["-r", "abc", "-s", "Absent"], USAGE, "must be a number"),
    ("oarnodesetting", ["-r", "1", "-s", "Broken"], USAGE, "invalid choice"),
    ("oarnodesetting", ["-r", "1", "-p", "cpu=abc"], USAGE, "integer"),
    ("oarnodesetting", ["-r", "1", "-p", "nosuch=1"], NOT_FOUND, "nosuch"),
    ("oarnodesetting", ["-r", "1", "-p", "state=Dead"], CONFLICT, "cannot be set"),
    ("oarnodesetting", ["-r", "1", "-p", "cpu"], USAGE, "NAME=VALUE"),
    ("oarnodesetting", ["-r", "1", "-r", "2", "-p", "cpu=9", "-p", "besteffort=MAYBE"], USAGE, "YES or NO"),
    ("oarnodesetting", ["--sql", "1=1; DROP TABLE jobs", "-s", "Dead"], EXPRESSION, ";"),
    ("oarnodesetting", ["--sql", "(SELECT 1)", "-s", "Dead"], EXPRESSION, "SELECT"),
    ("oarnodesetting", ["--sql", "pg_sleep(10) = 1", "-s", "Dead"], EXPRESSION, "pg_sleep"),
    ("oarnodesetting", ["--sql", "nosuch = 1", "-s", "Dead"], EXPRESSION, "nosuch"),
    ("oarnodesetting", ["--sql", "cpu = 99", "-s", "Dead"], NOT_FOUND, "no resource matches"),
    ("oarnodesetting", ["-h", "nohost", "-s", "Dead"], NOT_FOUND, "nohost"),
    ("oarnodesetting", ["-r", "1"], USAGE, "nothing to do"),
    ("oarnodesetting", ["-a", "-h", "x", "-p", "cpu=notanint"], USAGE, "integer"),
    ("oarnodesetting", ["-a", "-r", "1"], USAGE, "cannot be combined"),
    ("oarnodesetting", ["-r", "1", "-m", "maybe"], USAGE, "invalid choice"),
    ("oarremoveresource", ["1"], CONFLICT, "not Dead"),
    ("oarremoveresource", ["999"], NOT_FOUND, "resource 999"),
    ("oarremoveresource", ["abc"], USAGE, "must be a number"),
    ("oarremoveresource", [], USAGE, "required"),
    ("oarnodes", ["--sql", "cpu = 1 --"], EXPRESSION, "comment"),
    ("oarnodes", ["--sql", "core < 3 UNION SELECT * FROM challenges"], EXPRESSION, "UNION"),
    ("oarnodes", ["--sql", "cpu = 'abc'"], EXPRESSION, "cpu"),
    ("oarnodes", ["--sql", "host = 'a"], EXPRESSION, "unterminated string"),
    ("oarnodes", ["-r", "999"], NOT_FOUND, "resource 999"),
    ("oarnotify", ["--add_queue", "x"], USAGE, "NAME,PRIORITY"),
    ("oarnotify", ["--add_queue", "q,abc"], USAGE, "integer"),
    ("oarnotify", ["--add_queue", "admin,5"], CONFLICT, "already exists"),
    ("oarnotify", ["--add_queue", "bad name!,5"], USAGE, "invalid queue name"),
    ("oarnotify", ["-e", "nosuch"], NOT_FOUND, "nosuch"),
    ("oarnotify", ["--remove_queue", "nosuch"], NOT_FOUND, "nosuch"),
    ("oarnotify", ["Term", "-l"], USAGE, "cannot be combined"),
    ("oarnotify", ["bad tag!"], USAGE, "invalid tag"),
    ("oar-database", ["--create"], CONFLICT, "already holds"),
    ("oar-database", [], USAGE, "required"),
    ("oar-database", ["--create", "--check"], USAGE, "not allowed with"),
    ("oar-resources-add", ["-H", "2", "-C", "0"], USAGE, "at least 1"),
    ("oar-resources-add", ["node-[1-"], USAGE, "invalid node set"),
    ("oar-resources-add", ["node-1"], CONFLICT, "already has resources"),
    ("oar-resources-add", [], USAGE, "name the hosts"),
    ("oar-resources-add", ["n-[1-2]", "n-2"], USAGE, "named twice"),
]


@pytest.mark.parametrize("command,argv,code,word", CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(cluster, snapshot, command, argv, code, word):
    oar = cluster
    assert oar("oarnodesetting", "-h", "node-3", "-s", "Dead", "-n").rc == 0  # one Dead host
    before = snapshot()
    result = oar(command, *argv)
    assert result.rc == code, result.err
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("#ERROR: "), result.err
    assert word in lines[0]
    assert "Traceback" not in result.out + result.err
    assert snapshot() == before


def test_remove_is_all_or_nothing(cluster, snapshot):
    oar = cluster
    assert oar("oarnodesetting", "-r", "2", "-s", "Dead", "-n").rc == 0
    before = snapshot()
    result = oar("oarremoveresource", "2", "1")
    assert result.rc == CONFLICT and "resource 1 is Alive" in result.err
    assert snapshot() == before


@pytest.mark.parametrize("line,word", [
    ("DB_TYPE=$(rm -rf /tmp/nothing)", "command substitution"),
    ("SERVER_PORT=abc", "SERVER_PORT"),
    ("DB_TYPE=mysql", "MySQL"),
    ('LOG_FILE="/var/log/oar.log', "quote"),
    ("if true; then X=1; fi", "oar.conf"),
])
def test_malformed_oar_conf(oar, oar_conf, line, word):
    text = oar_conf.read_text()
    oar_conf.write_text(text + line + "\n")
    line_number = len(text.splitlines()) + 1
    result = oar("oarnodes")
    assert result.rc == CONFIG
    err = result.err.splitlines()
    assert len(err) == 1 and err[0].startswith("#ERROR: ")
    assert word in err[0]
    assert f"oar.conf:{line_number}" in err[0]


@pytest.mark.parametrize("backend_name", ["sqlite"])
def test_missing_database_file(oar):
    result = oar("oarnodes")
    assert result.rc == DATABASE
    assert "oar-database --create" in result.err


def test_schema_missing(oar, db_url):
    from oar_appliance.db import connection

    connection.connect(db_url, create=True).close()
    result = oar("oarnodes")
    assert result.rc == DATABASE
    assert "no OAR schema" in result.err


def test_unreachable_server_for_a_tag(created, oar_conf):
    oar = created
    oar_conf.write_text(oar_conf.read_text() + "SERVER_PORT=1\n")
    result = oar("oarnotify", "Term")
    assert result.rc == 9
    assert result.err.startswith("#ERROR: the OAR server at 127.0.0.1:1 did not take the tag Term")


def test_tag_reaches_a_listening_server(created, oar_conf):
    """A real zmq ROUTER socket on loopback stands for oar-server's notification port."""
    import socket

    import zmq

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    oar_conf.write_text(oar_conf.read_text() + f"SERVER_PORT={port}\n")
    ctx = zmq.Context.instance()
    pull = ctx.socket(zmq.ROUTER)
    pull.bind(f"tcp://127.0.0.1:{port}")
    try:
        result = created("oarnotify", "Qsub")
        assert result.rc == 0, result.err
        assert pull.poll(2000)
        assert pull.recv_multipart()[1:] == [b"Qsub"]
    finally:
        pull.close(linger=0)


@pytest.mark.parametrize("command,argv", [
    ("oarproperty", ["-a", "x"]),
    ("oarnodesetting", ["-r", "1", "-s", "Dead"]),
    ("oarremoveresource", ["1"]),
    ("oarnotify", ["-D"]),
    ("oar-resources-add", ["-H", "1"]),
    ("oar-database", ["--reset", "--yes"]),
])
def test_non_admin_cannot_administer(cluster, snapshot, monkeypatch, command, argv):
    """The caller's identity is the one thing substituted: 'alice' owns nothing here."""
    before = snapshot()
    monkeypatch.setattr("oar_appliance.cli.common.caller_name", lambda: "alice")
    result = cluster(command, *argv)
    assert result.rc == PERMISSION
    assert result.err.strip() == "#ERROR: only oar or root may do this (you are alice)"
    assert snapshot() == before


def test_non_admin_may_look(cluster, monkeypatch):
    monkeypatch.setattr("oar_appliance.cli.common.caller_name", lambda: "alice")
    assert cluster("oarnodes", "-l").rc == 0
    assert cluster("oarproperty", "-l").rc == 0
    assert cluster("oarnotify", "-l").rc == 0


def test_caller_identity():
    from oar_appliance.cli.common import caller_name

    me = pwd.getpwuid(os.getuid()).pw_name
    assert caller_name({}) == me
    # sudo's caller counts only when sudo ran the command as oar; root stays root
    expected = "alice" if me == "oar" else me
    assert caller_name({"SUDO_USER": "alice"}) == expected
