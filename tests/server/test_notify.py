"""``oarsub --notify`` carried out by a real oar-server (judas), on SQLite and PostgreSQL:
mails reach a real SMTP server (aiosmtpd on a free loopback port), an ``exec:`` script is
run with the job id, name, tag and text, a failed delivery is an event of the job."""

from __future__ import annotations

import socket
import stat

from tests.helpers import free_port
from tests.server.conftest import WAIT, wait_for
from tests.smtp import smtp_server  # noqa: F401 (a fixture)


def _tags(messages):
    return [m["Subject"].rsplit(": ", 1)[1] for _, _, m in messages]


def test_mail_running_and_end_reach_the_smtp_server(lab, smtp_server):
    lab.write_conf(f'MAIL_SMTP_SERVER="{smtp_server.address}"', 'MAIL_SENDER="oar@cluster.example"')
    lab.start_server()
    job_id = lab.oarsub("-n", "mailed", "--notify", "mail:user@example.org", "true")
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    try:
        wait_for(lambda: len(smtp_server.messages) >= 2, what="two mails")
    except AssertionError as exc:  # say why: a failed delivery is an event and a log line
        raise AssertionError(f"{exc}; received {_tags(smtp_server.messages)}, events "
                             f"{lab.events(job_id)}, server log:\n{lab.log_tail()}") from None
    assert sorted(_tags(smtp_server.messages)) == ["END", "RUNNING"]
    for mail_from, rcpt, message in smtp_server.messages:
        assert mail_from == "oar@cluster.example" and rcpt == ["user@example.org"]
        assert message["Subject"].startswith(f"[OAR] Job {job_id} (mailed) on {socket.gethostname()}: ")
    assert lab.events(job_id) == []


def test_only_the_tags_asked_are_mailed(lab, smtp_server):
    lab.write_conf(f'MAIL_SMTP_SERVER="{smtp_server.address}"')
    lab.start_server()
    job_id = lab.oarsub("--notify", "[END,ERROR]mail:user@example.org", "true")
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    wait_for(lambda: smtp_server.messages, what="the END mail")
    assert _tags(smtp_server.messages) == ["END"]


def test_exec_notification_runs_with_the_job_arguments(running_lab):
    lab = running_lab
    record = lab.top / "notified"
    script = lab.top / "notify.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> "{record}"\necho >> "{record}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    job_id = lab.oarsub("-n", "execd", "--notify", f"exec:{script} extra", "true")
    assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    lines = wait_for(lambda: record.exists() and len(record.read_text().splitlines()) >= 2
                     and record.read_text().splitlines(), what="two exec notifications")
    calls = sorted(line.split("|")[:4] for line in lines)
    assert [c[:3] for c in calls] == [["extra", str(job_id), "execd"]] * 2
    assert sorted(c[3] for c in calls) == ["END", "RUNNING"]


def test_failed_deliveries_are_events_of_the_job(lab):
    # nobody listens on this port: both mails fail
    lab.write_conf(f'MAIL_SMTP_SERVER="127.0.0.1:{free_port()}"')
    lab.start_server()
    mailed = lab.oarsub("--notify", "mail:user@example.org", "true")
    execd = lab.oarsub("--notify", f"exec:{lab.top / 'missing-script'}", "true")
    for job_id in (mailed, execd):
        assert lab.wait_state(job_id, "Terminated", "Error") == "Terminated"
    wait_for(lambda: len(lab.events(mailed)) >= 2 and len(lab.events(execd)) >= 2, timeout=WAIT,
             what="the failure events")
    assert lab.events(mailed) == ["USER_MAIL_NOTIFICATION"] * 2
    assert lab.events(execd) == ["USER_EXEC_NOTIFICATION_ERROR"] * 2
