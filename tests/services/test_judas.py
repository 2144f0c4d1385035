"""Judas: user notifications by mail (a real local SMTP server) and by exec (a real script)."""

from __future__ import annotations

import os
import pwd
import logging
import socket
import stat
import sys
import time

import pytest

from oar_appliance import judas
from tests.services.helpers import config
from tests.smtp import smtp_server  # noqa: F401 (a fixture)

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _job(notify, **extra):
    return {"job_id": 42, "name": "my_run", "user": "alice", "notify": notify, **extra}


def test_mail_notification_reaches_the_smtp_server(smtp_server):
    conf = config(MAIL_SMTP_SERVER=smtp_server.address, MAIL_SENDER="oar@cluster.example")
    future = judas.notify_job(conf, _job("mail:alice@example.org"), "END", "Job 42 ended (exit code 0).")
    delivery = future.result(timeout=30)
    assert delivery.ok and delivery.kind == "mail" and delivery.event_type is None
    ((mail_from, rcpt, message),) = smtp_server.messages
    assert mail_from == "oar@cluster.example" and rcpt == ["alice@example.org"]
    assert message["Subject"] == f"[OAR] Job 42 (my_run) on {socket.gethostname()}: END"
    assert message["To"] == "alice@example.org"
    assert "Job 42 ended (exit code 0)." in message.get_payload()


def test_tags_filter_what_is_notified(smtp_server):
    conf = config(MAIL_SMTP_SERVER=smtp_server.address)
    job = _job("[END,ERROR]mail:alice@example.org")
    assert judas.notify_job(conf, job, "RUNNING", "started") is None
    assert judas.deliver(conf, job, "RUNNING", "started") is None
    assert judas.deliver(conf, job, "ERROR", "it failed").ok
    assert [m["Subject"].rsplit(": ", 1)[1] for _, _, m in smtp_server.messages] == ["ERROR"]
    # a job without --notify: nothing
    assert judas.notify_job(conf, _job(None), "END", "x") is None


def test_unreachable_smtp_server_is_logged_not_raised(caplog):
    conf = config(MAIL_SMTP_SERVER=f"127.0.0.1:{_free_port()}")  # nobody listens there
    with caplog.at_level(logging.WARNING, logger="oar_appliance.judas"):
        delivery = judas.notify_job(conf, _job("mail:alice@example.org"), "END", "x").result(timeout=30)
    assert not delivery.ok and delivery.event_type == judas.USER_MAIL_NOTIFICATION
    assert "ConnectionRefusedError" in delivery.error
    assert any("job 42" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)


def test_mail_without_smtp_server_configured_is_a_logged_failure(caplog):
    with caplog.at_level(logging.WARNING, logger="oar_appliance.judas"):
        delivery = judas.deliver(config(), _job("mail:alice@example.org"), "END", "x")
    assert not delivery.ok and "MAIL_SMTP_SERVER" in delivery.error


@pytest.fixture
def script(tmp_path):
    """An exec: notification script writing its arguments, one per line, to a file."""
    out = tmp_path / "notified"
    path = tmp_path / "notify me.py"
    path.write_text(f"#!{sys.executable}\nimport sys\n"
                    f"open(sys.argv[1], 'a').write('\\n'.join(sys.argv[2:]) + '\\n--\\n')\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path, out


def test_exec_notification_gets_id_name_tag_and_text(script):
    path, out = script
    import shlex

    job = _job(f"exec:{shlex.quote(str(path))} {out}", user="root")
    delivery = judas.notify_job(config(), job, "RUNNING", "Job 42 started on node-1").result(timeout=30)
    assert delivery.ok and delivery.kind == "exec"
    assert out.read_text().split("\n--\n")[0].splitlines() == ["42", "my_run", "RUNNING", "Job 42 started on node-1"]


@pytest.fixture
def open_dir():
    """A directory another account can reach (pytest's tmp_path is private to its owner)."""
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory(prefix="judas-") as name:
        path = pathlib.Path(name)
        path.chmod(0o755)
        yield path


def test_exec_runs_as_the_job_user_when_the_server_is_root(open_dir):
    """As root the script runs as the job's user; otherwise as the server's own user."""
    out_dir = open_dir / "out"
    out_dir.mkdir()
    out_dir.chmod(0o777)
    script = open_dir / "whoami"
    script.write_text(f"#!/bin/sh\nid -u > {out_dir}/uid\necho \"$HOME $USER\" > {out_dir}/env\n")
    script.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    delivery = judas.deliver(config(), _job(f"exec:{script}", user="nobody"), "END", "x")
    assert delivery.ok, delivery.error
    expected = nobody.pw_uid if os.geteuid() == 0 else os.geteuid()
    assert int((out_dir / "uid").read_text()) == expected
    assert (out_dir / "env").read_text().split() == [nobody.pw_dir, "nobody"]


def test_exec_failures_and_timeouts_are_reported(tmp_path, monkeypatch, caplog):
    failing = tmp_path / "fail"
    failing.write_text("#!/bin/sh\necho 'no luck' >&2\nexit 3\n")
    failing.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="oar_appliance.judas"):
        delivery = judas.deliver(config(), _job(f"exec:{failing}", user="root"), "END", "x")
    assert not delivery.ok and delivery.event_type == judas.USER_EXEC_NOTIFICATION_ERROR
    assert "status 3" in delivery.error and "no luck" in delivery.error

    slow = tmp_path / "slow"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(judas, "EXEC_TIMEOUT", 0.5)
    started = time.monotonic()
    delivery = judas.deliver(config(), _job(f"exec:{slow}", user="root"), "END", "x")
    assert time.monotonic() - started < 10
    assert not delivery.ok and "did not end within" in delivery.error

    missing = judas.deliver(config(), _job(f"exec:{tmp_path}/nothing-here", user="root"), "END", "x")
    assert not missing.ok and "cannot run" in missing.error


def test_parse_notify():
    assert judas.parse_notify("mail:a@b.c") == judas.Method(None, "mail", "a@b.c")
    method = judas.parse_notify("[END, error]exec:/bin/x y")
    assert method.tags == {"END", "ERROR"} and method.kind == "exec" and method.target == "/bin/x y"
    assert method.wants("end") and not method.wants("RUNNING")
    with pytest.raises(ValueError):
        judas.parse_notify("sms:0612")


def test_admin_mail_when_configured(smtp_server):
    assert judas.notify_admin(config(MAIL_SMTP_SERVER=smtp_server.address), "s", "b") is None  # no recipient
    conf = config(MAIL_SMTP_SERVER=smtp_server.address, MAIL_RECIPIENT="admin@example.org")
    delivery = judas.notify_admin(conf, "node-2 is Suspected", "finaud: node check failed", wait=True)
    assert delivery.ok
    ((_, rcpt, message),) = smtp_server.messages
    assert rcpt == ["admin@example.org"] and message["Subject"] == "[OAR] node-2 is Suspected"


def test_a_failed_delivery_is_recorded_as_the_jobs_event(db):
    from tests.services.helpers import events

    conf = config(MAIL_SMTP_SERVER=f"127.0.0.1:{_free_port()}")
    failed = judas.deliver(conf, _job("mail:alice@example.org"), "END", "x")
    with db.atomic():
        judas.record_event(db, 42, failed, 1_700_000_000)
        judas.record_event(db, 42, None, 1_700_000_000)
    (event,) = events(42)
    assert event.type == "USER_MAIL_NOTIFICATION" and event.to_check == "NO"
    assert event.description.startswith("END mail notification failed: ")


def test_a_silent_smtp_server_does_not_hold_the_caller(monkeypatch):
    """A server that accepts connections but never greets: notify_job returns at once and
    the delivery fails after SMTP_TIMEOUT."""
    monkeypatch.setattr(judas, "SMTP_TIMEOUT", 1.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        conf = config(MAIL_SMTP_SERVER=f"127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        future = judas.notify_job(conf, _job("mail:alice@example.org"), "END", "x")
        assert time.monotonic() - started < 0.5
        delivery = future.result(timeout=30)
    assert not delivery.ok and "timed out" in delivery.error


def test_a_job_row_with_the_schemas_names_is_accepted(script):
    """The server passes rows of ``jobs`` (``job_name``, ``job_user``) as dicts or objects."""
    from types import SimpleNamespace

    path, out = script
    row = SimpleNamespace(job_id=7, job_name="sim", job_user="root", notify=f"[INFO]exec:'{path}' {out}")
    assert judas.notify_job(config(), row, "END", "ignored") is None
    assert judas.notify_job(config(), row, "INFO", "walltime extended").result(timeout=30).ok
    assert out.read_text().split("\n--\n")[0].splitlines() == ["7", "sim", "INFO", "walltime extended"]
