"""Judas: notifications to users (``oarsub --notify``) and to the administrator.

A job submitted with ``--notify METHOD`` is told about the steps of its life.  METHOD is

* ``mail:ADDRESS``: a mail to ADDRESS through ``MAIL_SMTP_SERVER`` (``host`` or
  ``host:port``, port 25 by default), from ``MAIL_SENDER`` (default ``oar@<this host>``),
  with the subject ``[OAR] Job <id> (<name>) on <server>: <TAG>`` and the text as body;
* ``exec:COMMAND ARGS``: COMMAND run with its ARGS followed by four arguments: the job id,
  the job name, the tag and the text (OAR's *job_id, job_name, tag, comments*).  It runs on
  the server, as the job's user when the server runs as root, in its own session, with a
  minimal environment, for at most :data:`EXEC_TIMEOUT` seconds (then its process group is
  killed).

Either may start with ``[TAG,TAG...]``: only those tags are notified (without it, all).  The
tags are those of :data:`TAGS`: ``RUNNING`` (the job started), ``END`` (it ended normally),
``ERROR`` (it ended in Error), ``INFO`` (something the user should know, e.g. a walltime
change), ``SUSPENDED``, ``RESUMING``.

When ``MAIL_SMTP_SERVER`` and ``MAIL_RECIPIENT`` are set, :func:`notify_admin` mails the
administrator (the server uses it for nodes becoming Suspected or Dead).

Notifications never stop the server: :func:`notify_job` hands the work to a small pool of
threads and returns at once; every failure is logged (``log.warning``) and described in
the :class:`Delivery` the returned future gives, with the event type OAR records for it
(``USER_MAIL_NOTIFICATION``, ``USER_EXEC_NOTIFICATION_ERROR``, ``MAIL_NOTIFICATION_ERROR``)
so that the caller may write it to ``event_logs`` (:func:`record_event`).  :func:`deliver`
does the same work synchronously.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shlex
import signal
import smtplib
import socket
import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Mapping

log = logging.getLogger(__name__)

TAGS = ("RUNNING", "END", "ERROR", "INFO", "SUSPENDED", "RESUMING")
#: seconds an exec: notification may run
EXEC_TIMEOUT = 30.0
#: seconds for the SMTP connection and each of its exchanges
SMTP_TIMEOUT = 10.0
#: notifications delivered at the same time
WORKERS = 4

USER_MAIL_NOTIFICATION = "USER_MAIL_NOTIFICATION"
USER_EXEC_NOTIFICATION_ERROR = "USER_EXEC_NOTIFICATION_ERROR"
MAIL_NOTIFICATION_ERROR = "MAIL_NOTIFICATION_ERROR"

_NOTIFY = re.compile(r"^\s*(?:\[(?P<tags>[A-Za-z, ]*)\])?\s*(?P<method>mail|exec):(?P<target>.+)$", re.S)


@dataclass(frozen=True)
class Method:
    """A parsed ``--notify`` value."""

    #: the tags to notify; None: all of them
    tags: frozenset[str] | None
    kind: str  # "mail" or "exec"
    target: str

    def wants(self, tag: str) -> bool:
        return self.tags is None or tag.upper() in self.tags


def parse_notify(text: str) -> Method:
    """``"[END,ERROR]mail:a@b.c"`` -> ``Method({'END', 'ERROR'}, 'mail', 'a@b.c')``;
    ValueError for anything else."""
    found = _NOTIFY.match(text or "")
    if found is None or not found.group("target").strip():
        raise ValueError(f"invalid notification method {text!r}: expected [TAGS]mail:ADDRESS or [TAGS]exec:COMMAND")
    tags = None
    if found.group("tags") is not None:
        tags = frozenset(t.strip().upper() for t in found.group("tags").split(",") if t.strip())
    return Method(tags, found.group("method"), found.group("target").strip())


@dataclass(frozen=True)
class Delivery:
    """The outcome of one notification."""

    kind: str  # "mail", "exec" or "admin mail"
    target: str
    tag: str
    ok: bool
    #: why it failed, for logs and events
    error: str | None = None
    #: the event type OAR records for this failure (None when it succeeded)
    event_type: str | None = None


# ----------------------------------------------------------------------------- job fields

def _field(job: Any, *names: str) -> Any:
    for name in names:
        if isinstance(job, Mapping):
            if name in job:
                return job[name]
        elif hasattr(job, name):
            return getattr(job, name)
    return None


def _job(job: Any) -> tuple[int, str, str, str | None]:
    """(id, name, user, notify) of a job given as a mapping or an object (``name`` or
    ``job_name``, ``user`` or ``job_user``)."""
    return (int(_field(job, "job_id")), _field(job, "name", "job_name") or "",
            _field(job, "user", "job_user") or "", _field(job, "notify"))


# ----------------------------------------------------------------------------- mail

def smtp_address(config: Mapping[str, Any]) -> tuple[str, int] | None:
    """(host, port) of ``MAIL_SMTP_SERVER`` (``host``, ``host:port``, ``[v6]:port``), or None."""
    value = (config.get("MAIL_SMTP_SERVER") or "").strip()
    if not value:
        return None
    bracketed = re.fullmatch(r"\[(.+)\](?::(\d+))?", value)
    if bracketed:
        return bracketed.group(1), int(bracketed.group(2) or 25)
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return value, 25


def server_name() -> str:
    return socket.gethostname()


def sender(config: Mapping[str, Any]) -> str:
    return config.get("MAIL_SENDER") or f"oar@{server_name()}"


def send_mail(config: Mapping[str, Any], recipients: list[str], subject: str, body: str) -> None:
    """Send one mail through ``MAIL_SMTP_SERVER``; OSError / smtplib errors on failure."""
    address = smtp_address(config)
    if address is None:
        raise smtplib.SMTPException("MAIL_SMTP_SERVER is not set in oar.conf")
    message = EmailMessage()
    message["From"] = sender(config)
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=server_name())
    message.set_content(body)
    with smtplib.SMTP(address[0], address[1], timeout=SMTP_TIMEOUT) as smtp:
        smtp.send_message(message)


def mail_subject(job_id: int, name: str, tag: str) -> str:
    return f"[OAR] Job {job_id} ({name}) on {server_name()}: {tag}"


def mail_body(job_id: int, name: str, user: str, tag: str, text: str) -> str:
    return (f"{text}\n\n"
            f"Job id:  {job_id}\n"
            f"Name:    {name}\n"
            f"User:    {user}\n"
            f"Event:   {tag}\n"
            f"Server:  {server_name()}\n")


# ----------------------------------------------------------------------------- exec

def _account(user: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        return None


def run_exec(command: str, args: list[str], user: str, timeout: float | None = None) -> None:
    """Run ``command`` (a shell-like word list) with ``args`` appended, as ``user`` when
    running as root; RuntimeError with the reason when it cannot run, fails or times out."""
    timeout = EXEC_TIMEOUT if timeout is None else timeout
    argv = shlex.split(command) + args
    if not argv:
        raise RuntimeError("empty exec: command")
    kwargs: dict[str, Any] = {}
    account = _account(user) if user else None
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    if account is not None:
        env.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
    if os.geteuid() == 0 and user != "root":
        if account is None:
            raise RuntimeError(f"user {user!r} does not exist on the server")
        kwargs.update(user=account.pw_uid, group=account.pw_gid,
                      extra_groups=os.getgrouplist(account.pw_name, account.pw_gid))
    cwd = account.pw_dir if account is not None and os.path.isdir(account.pw_dir) else "/"
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True,
                                   **kwargs)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"cannot run {argv[0]}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()
        raise RuntimeError(f"{argv[0]} did not end within {timeout:g} s: killed") from None
    if process.returncode != 0:
        detail = err.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"{argv[0]} exited with status {process.returncode}"
                           + (f": {detail[-1]}" if detail else ""))


# ----------------------------------------------------------------------------- delivery

def deliver(config: Mapping[str, Any], job: Any, tag: str, text: str) -> Delivery | None:
    """Notify the job's user of ``tag`` now; None when the job asks for no notification of
    this tag.  Never raises: a failure is logged and returned."""
    try:
        job_id, name, user, notify = _job(job)
    except (TypeError, ValueError) as exc:
        log.warning("judas: cannot notify a job without a valid job_id (%s)", exc)
        return None
    if not notify:
        return None
    tag = tag.upper()
    try:
        method = parse_notify(notify)
    except ValueError as exc:
        log.warning("judas: job %s: %s", job_id, exc)
        return Delivery("?", notify, tag, False, str(exc), USER_EXEC_NOTIFICATION_ERROR)
    if not method.wants(tag):
        return None
    try:
        if method.kind == "mail":
            send_mail(config, [method.target], mail_subject(job_id, name, tag),
                      mail_body(job_id, name, user, tag, text))
        else:
            run_exec(method.target, [str(job_id), name, tag, text], user)
    except Exception as exc:  # anything: a notification never stops the server
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)
        event = USER_MAIL_NOTIFICATION if method.kind == "mail" else USER_EXEC_NOTIFICATION_ERROR
        log.warning("judas: job %s: %s notification %s to %s failed: %s",
                    job_id, tag, method.kind, method.target, error)
        return Delivery(method.kind, method.target, tag, False, error, event)
    log.info("judas: job %s: %s notified by %s to %s", job_id, tag, method.kind, method.target)
    return Delivery(method.kind, method.target, tag, True)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="judas")
        return _pool


def notify_job(config: Mapping[str, Any], job: Any, tag: str, text: str) -> Future | None:
    """Notify the job's user of ``tag`` (see the module's documentation) in the background.

    ``job`` has at least ``job_id``, ``name`` (or ``job_name``), ``user`` (or ``job_user``)
    and ``notify``, as a mapping or attributes.  Returns None when there is nothing to do,
    else a future whose result is the :class:`Delivery` (it never raises).
    """
    notify = _field(job, "notify")
    if not notify:
        return None
    try:
        if not parse_notify(notify).wants(tag):
            return None
    except ValueError:
        pass  # deliver() logs it
    return _executor().submit(deliver, config, job, tag, text)


def record_event(db: Any, job_id: int, delivery: Delivery | None, now: int) -> None:
    """Write a failed delivery's event (``event_logs``, to_check NO) for the job; nothing
    for a success or None.  For the server, in its own transaction."""
    if delivery is None or delivery.ok or delivery.event_type is None:
        return
    from .db.models import EventLog  # judas itself needs no database

    EventLog.insert(type=delivery.event_type, job_id=job_id, date=now, to_check="NO",
                    description=f"{delivery.tag} {delivery.kind} notification failed: {delivery.error}"[:255]
                    ).execute()


def notify_admin(config: Mapping[str, Any], subject: str, body: str, wait: bool = False) -> Future | Delivery | None:
    """Mail the administrator (``MAIL_RECIPIENT``) when mail is configured, else do nothing
    (None).  In the background unless ``wait``; the outcome is a :class:`Delivery`."""
    recipient = config.get("MAIL_RECIPIENT")
    if not recipient or smtp_address(config) is None:
        return None

    def send() -> Delivery:
        try:
            send_mail(config, [r for r in re.split(r"[,\s]+", recipient) if r], f"[OAR] {subject}", body)
        except Exception as exc:  # never raised to the server
            error = f"{type(exc).__name__}: {exc}"
            log.warning("judas: mail to the administrator %s failed: %s", recipient, error)
            return Delivery("admin mail", recipient, "", False, error, MAIL_NOTIFICATION_ERROR)
        return Delivery("admin mail", recipient, "", True)

    return send() if wait else _executor().submit(send)


__all__ = ["notify_job", "deliver", "notify_admin", "record_event", "parse_notify", "Method", "Delivery", "TAGS",
           "send_mail", "run_exec", "smtp_address", "mail_subject",
           "USER_MAIL_NOTIFICATION", "USER_EXEC_NOTIFICATION_ERROR", "MAIL_NOTIFICATION_ERROR"]
