"""Admission rules: Python code, stored in ``admission_rules``, run on every submission.

Rules run in order of ``priority`` then ``id``, only the ``enabled`` ones.  Each is
executed with these names:

``job``
    the :class:`~oar_appliance.job_request.JobRequest`; a rule may change it
    (``job.queue = "default"``, ``job.set_default_walltime(7200)``, ``job.cap_walltime(s)``,
    ``job.add_property("besteffort = 'YES'")``, ``job.types.append(...)``...).
``config``
    the oar.conf values (read only), e.g. ``config["DEFAULT_JOB_WALLTIME"]``.
``now``
    the submission time (epoch seconds).
``AdmissionError``
    raise it to refuse the submission: ``raise AdmissionError("only oar may use admin")``.
``info(text)``
    a message shown to the submitter (``#INFO: [ADMISSION RULE] text``).
``duration(text)``
    ``"12:00:00"`` -> 43200.

A rule that raises anything else, or runs longer than the time limit, refuses the
submission too, with a message naming the rule.  Rules are written by administrators
and run inside ``oarsub``; they are trusted code, like OAR's Perl rules.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import peewee

from .db.models import AdmissionRule
from .errors import AdmissionRefused, NotFoundError, UsageError
from .job_request import JobRequest

log = logging.getLogger(__name__)

#: seconds one rule may run
RULE_TIME_LIMIT = 5.0


class AdmissionError(Exception):
    """Raised by a rule to refuse a submission; its message is shown to the submitter."""


@dataclass(frozen=True)
class Rule:
    id: int
    priority: int
    enabled: bool
    code: str

    @property
    def title(self) -> str:
        """The rule's first comment line, as a short description."""
        for line in self.code.splitlines():
            line = line.strip()
            if line.startswith("#"):
                return line.lstrip("# ").strip()
            if line:
                break
        return ""


def load_rules(db: peewee.Database, enabled_only: bool = True) -> list[Rule]:
    query = AdmissionRule.select().order_by(AdmissionRule.priority, AdmissionRule.id)
    if enabled_only:
        query = query.where(AdmissionRule.enabled == "YES")
    return [Rule(r.id, r.priority, r.enabled == "YES", r.rule) for r in query]


def check_code(code: str, name: str = "<admission rule>") -> None:
    """Refuse code that does not even compile, before it is stored."""
    try:
        compile(code, name, "exec")
    except SyntaxError as exc:
        raise UsageError(f"the rule does not compile: {exc.msg} (line {exc.lineno})") from None


class _TimeLimit:
    """Interrupt a rule that runs too long (only possible in the main thread)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.armed = False

    def _expired(self, signum, frame):
        raise TimeoutError

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGALRM, self._expired)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
            self.armed = True
        return self

    def __exit__(self, *exc):
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
        return False


def run_rules(rules: Sequence[Rule], job: JobRequest, config: Mapping[str, Any], now: int,
              time_limit: float | None = None) -> None:
    """Run the rules on ``job``; raise :class:`AdmissionRefused` when one refuses."""
    from .lang.request import parse_duration

    time_limit = RULE_TIME_LIMIT if time_limit is None else time_limit

    def info(text: str) -> None:
        job.messages.append(f"[ADMISSION RULE] {text}")

    for rule in rules:
        namespace = {
            "job": job, "config": config, "now": now, "AdmissionError": AdmissionError,
            "info": info, "duration": parse_duration, "__builtins__": __builtins__,
        }
        try:
            code = compile(rule.code, f"<admission rule {rule.id}>", "exec")
            with _TimeLimit(time_limit):
                exec(code, namespace)
        except AdmissionError as exc:
            raise AdmissionRefused(f"[ADMISSION RULE] {exc}") from None
        except TimeoutError:
            raise AdmissionRefused(f"admission rule {rule.id} ran longer than {time_limit:g} s") from None
        except Exception as exc:  # an admin's rule is broken: refuse, say which one
            log.warning("admission rule %s failed", rule.id, exc_info=True)
            raise AdmissionRefused(f"admission rule {rule.id} failed: {type(exc).__name__}: {exc}") from None


def add_rule(db: peewee.Database, code: str, priority: int | None = None) -> int:
    check_code(code)
    if priority is None:
        last = AdmissionRule.select(peewee.fn.MAX(AdmissionRule.priority)).scalar()
        priority = (last or 0) + 1
    return AdmissionRule.insert(rule=code, priority=priority, enabled="YES").execute()


def _get(rule_id: int) -> AdmissionRule:
    rule = AdmissionRule.get_or_none(AdmissionRule.id == rule_id)
    if rule is None:
        raise NotFoundError(f"admission rule {rule_id} does not exist")
    return rule


def get_rule(db: peewee.Database, rule_id: int) -> Rule:
    r = _get(rule_id)
    return Rule(r.id, r.priority, r.enabled == "YES", r.rule)


def update_rule(db: peewee.Database, rule_id: int, code: str | None = None,
                priority: int | None = None, enabled: bool | None = None) -> None:
    rule = _get(rule_id)
    if code is not None:
        check_code(code)
        rule.rule = code
    if priority is not None:
        rule.priority = priority
    if enabled is not None:
        rule.enabled = "YES" if enabled else "NO"
    rule.save()


def remove_rule(db: peewee.Database, rule_id: int) -> None:
    _get(rule_id)
    AdmissionRule.delete().where(AdmissionRule.id == rule_id).execute()
