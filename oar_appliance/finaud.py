"""Finaud: the periodic check of the nodes that should be able to take jobs.

``oar-server`` calls :func:`run` every ``FINAUD_FREQUENCY`` seconds (0 turns finaud off).
A round checks, with ``check(hosts) -> bad hosts``:

* the **Alive nodes without jobs**: hosts (``network_address``) with an Alive resource and
  no resource held by a job (toLaunch ... Finishing).  Nodes running jobs are left alone:
  their jobs tell soon enough if they are broken;
* the **Suspected nodes that finaud itself suspected** (``finaud_decision = 'YES'``): a node
  suspected for another reason (a failed job, an admin) is not brought back by a ping.

A bad Alive node becomes Suspected at once (its resources' state and ``resource_logs``,
``finaud_decision = 'YES'``), with one ``PING_CHECKER_NODE_SUSPECTED`` event naming the bad
hosts in ``event_log_hostnames``; a good node among finaud's Suspected ones becomes Alive.
Resources with a pending state request (``next_state``) are left to NodeChangeState, and
the nodes are read again in the writing transaction: a node where a job started while it
was being checked is left alone this time.

The check
=========

:func:`command_check` builds the check from ``oar.conf``: ``PINGCHECKER_GENERIC_COMMAND``
is run with the host names appended to its arguments, and every line it prints on stderr
that is exactly one of those names marks that host bad (the exit status is not looked at:
a command that could not tell prints nothing).  Without a generic command, each host is
checked through the server's execution connector when :func:`run` is given one (``true``
run on the node: locally in the lab, over ssh on a site), else pinged once
(``ping -c 1 -W 3``); 16 at a time.  A check that cannot run or times out
raises :class:`CheckError`; the round then changes nothing (suspecting every node because
the checker is broken would stop the whole cluster).
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping, Sequence

import peewee

from . import resources
from .db import bulk, resource_table
from .db.models import EventLog, EventLogHostname

log = logging.getLogger(__name__)

PING_CHECKER_NODE_SUSPECTED = "PING_CHECKER_NODE_SUSPECTED"
#: seconds a check command may take
DEFAULT_CHECK_TIMEOUT = 60.0
#: concurrent pings of the fallback check
PING_FANOUT = 16

Check = Callable[[Sequence[str]], Collection[str]]


class CheckError(Exception):
    """The node check itself failed (could not run, timed out): nothing can be concluded."""


@dataclass
class FinaudReport:
    """What one round of finaud did."""

    #: hosts checked, sorted
    checked: list[str] = field(default_factory=list)
    #: Alive hosts found bad, now Suspected
    suspected_hosts: list[str] = field(default_factory=list)
    suspected_resources: list[int] = field(default_factory=list)
    #: hosts suspected by finaud found good again, now Alive
    revived_hosts: list[str] = field(default_factory=list)
    revived_resources: list[int] = field(default_factory=list)
    #: jobs that got a kill request (a job holding a resource that became Suspected: only
    #: possible when another process assigned it within the writing transaction)
    jobs_to_kill: list[int] = field(default_factory=list)
    #: the PING_CHECKER_NODE_SUSPECTED event, if any
    event_id: int | None = None
    #: why the round could not conclude (check failure), else None
    error: str | None = None

    @property
    def changed(self) -> bool:
        """Resource states changed: the scheduler should run again."""
        return bool(self.suspected_resources or self.revived_resources)


# ----------------------------------------------------------------------------- the checks

def generic_command_check(command: str, timeout: float = DEFAULT_CHECK_TIMEOUT) -> Check:
    """The check running ``command`` (a shell-like word list) with the hosts as arguments;
    the hosts printed alone on a stderr line are bad."""
    argv = shlex.split(command)
    if not argv:
        raise ValueError("empty PINGCHECKER_GENERIC_COMMAND")

    def check(hosts: Sequence[str]) -> set[str]:
        if not hosts:
            return set()
        try:
            done = subprocess.run([*argv, *hosts], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise CheckError(f"{argv[0]} did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise CheckError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        wanted = set(hosts)
        lines = done.stderr.decode("utf-8", "replace").splitlines()
        return {line.strip() for line in lines if line.strip() in wanted}

    return check


def ping_check(timeout: float = 3.0) -> Check:
    """The fallback check: one ``ping`` per host, :data:`PING_FANOUT` at a time."""

    def check(hosts: Sequence[str]) -> set[str]:
        ping = shutil.which("ping")
        if ping is None:
            raise CheckError("no PINGCHECKER_GENERIC_COMMAND and no ping command on this host")

        def bad(host: str) -> bool:
            try:
                return subprocess.run([ping, "-c", "1", "-W", str(max(1, int(timeout))), host],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, timeout=timeout + 2).returncode != 0
            except (subprocess.TimeoutExpired, OSError):
                return True

        with ThreadPoolExecutor(max_workers=PING_FANOUT) as pool:
            return {host for host, failed in zip(hosts, pool.map(bad, hosts)) if failed}

    return check


def connector_check(connector: Any, timeout: float = 10.0) -> Check:
    """The check through the server's execution connector: a host is bad when ``true``
    cannot be run on it (``connector.run(host, ["true"])`` fails or times out), which
    over ssh tests the node's OAR sshd; :data:`PING_FANOUT` hosts at a time."""

    def check(hosts: Sequence[str]) -> set[str]:
        def bad(host: str) -> bool:
            try:
                result = connector.run(host, ["true"], timeout=timeout)
            except Exception as exc:  # a connector failure is the node's failure
                log.info("finaud: %s: %s", host, exc)
                return True
            return getattr(result, "rc", None) != 0

        with ThreadPoolExecutor(max_workers=PING_FANOUT) as pool:
            return {host for host, failed in zip(hosts, pool.map(bad, hosts)) if failed}

    return check


def command_check(config: Mapping[str, Any], timeout: float = DEFAULT_CHECK_TIMEOUT,
                  connector: Any = None) -> Check:
    """The node check ``oar.conf`` asks for: ``PINGCHECKER_GENERIC_COMMAND``; else, with
    the server's ``connector``, :func:`connector_check`; else ping."""
    command = config.get("PINGCHECKER_GENERIC_COMMAND")
    if command:
        return generic_command_check(command, timeout)
    if connector is not None:
        return connector_check(connector)
    return ping_check()


# ----------------------------------------------------------------------------- the round

@dataclass
class _Node:
    alive: list[int] = field(default_factory=list)
    finaud_suspected: list[int] = field(default_factory=list)
    busy: bool = False


def _nodes(db: peewee.Database) -> dict[str, _Node]:
    """Host -> its Alive resources and finaud's Suspected ones (no pending request)."""
    rows = resource_table.select(
        db, "\"next_state\" = 'UnChanged' AND \"network_address\" <> '' AND \"desktop_computing\" = 'NO'",
        only=["resource_id", "network_address", "state", "finaud_decision"])
    nodes: dict[str, _Node] = {}
    for row in rows:
        node = nodes.setdefault(row["network_address"], _Node())
        if row["state"] == "Alive":
            node.alive.append(row["resource_id"])
        elif row["state"] == "Suspected" and row["finaud_decision"] == "YES":
            node.finaud_suspected.append(row["resource_id"])
    busy_resources = resources.jobs_on(db, [r["resource_id"] for r in rows])
    by_id = {row["resource_id"]: row["network_address"] for row in rows}
    for rid in busy_resources:
        nodes[by_id[rid]].busy = True
    return nodes


def candidates(db: peewee.Database) -> tuple[list[str], list[str]]:
    """(Alive hosts without jobs, hosts with resources Suspected by finaud), sorted."""
    nodes = _nodes(db)
    idle = sorted(h for h, n in nodes.items() if n.alive and not n.busy)
    suspected = sorted(h for h, n in nodes.items() if n.finaud_suspected)
    return idle, suspected


def run(db: peewee.Database, config: Mapping[str, Any], now: int, check: Any = None) -> FinaudReport:
    """One finaud round at ``now`` with ``check``: a :data:`Check` callable, or the
    server's execution connector (an object with ``run(host, argv, timeout=)``), which
    gives ``command_check(config, connector=...)``; None gives ``command_check(config)``.

    Never raises for a failed check: the report's ``error`` says why nothing changed.
    """
    report = FinaudReport()
    if int(config["FINAUD_FREQUENCY"]) <= 0:
        return report
    idle, suspected = candidates(db)
    report.checked = sorted(set(idle) | set(suspected))
    if not report.checked:
        return report
    if check is None:
        check = command_check(config)
    elif not callable(check) and hasattr(check, "run"):
        check = command_check(config, connector=check)
    try:
        bad = set(check(report.checked))
    except Exception as exc:  # CheckError, or any failure of a check given by the caller
        log.warning("finaud: node check failed, no state changed: %s", exc)
        report.error = str(exc) if isinstance(exc, CheckError) else f"{type(exc).__name__}: {exc}"
        return report
    to_suspect = [h for h in idle if h in bad]
    to_revive = [h for h in suspected if h not in bad]
    if not to_suspect and not to_revive:
        return report
    with db.atomic():
        nodes = _nodes(db)  # again, inside the writing transaction
        to_suspect = [h for h in to_suspect if h in nodes and nodes[h].alive and not nodes[h].busy]
        to_revive = [h for h in to_revive if h in nodes and nodes[h].finaud_suspected]
        suspect_ids = sorted(r for h in to_suspect for r in nodes[h].alive)
        revive_ids = sorted(r for h in to_revive for r in nodes[h].finaud_suspected)
        if suspect_ids:
            report.jobs_to_kill = resources.set_states(
                db, suspect_ids, "Suspected", now, finaud=True,
                reason="finaud: a node of the job does not answer its check")
            hosts = sorted(to_suspect)
            report.event_id = EventLog.insert(
                type=PING_CHECKER_NODE_SUSPECTED, job_id=0, date=now, to_check="NO",
                description=("finaud: node check failed on " + ", ".join(hosts))[:255]).execute()
            bulk.insert_rows(db, "event_log_hostnames",
                             [{"event_id": report.event_id, "hostname": h} for h in hosts])
            report.suspected_hosts = hosts
            report.suspected_resources = suspect_ids
        if revive_ids:
            resources.set_states(db, revive_ids, "Alive", now, finaud=True)
            report.revived_hosts = sorted(to_revive)
            report.revived_resources = revive_ids
    log.info("finaud: checked %d hosts; suspected %s; back to Alive %s",
             len(report.checked), report.suspected_hosts, report.revived_hosts)
    return report


def hostnames_of_event(event_id: int) -> list[str]:
    """The hosts an event names (``event_log_hostnames``), sorted."""
    return sorted(h for (h,) in EventLogHostname.select(EventLogHostname.hostname)
                  .where(EventLogHostname.event_id == event_id).tuples())


__all__ = ["run", "FinaudReport", "Check", "CheckError", "command_check", "generic_command_check",
           "connector_check",
           "ping_check", "candidates", "hostnames_of_event", "PING_CHECKER_NODE_SUSPECTED"]
