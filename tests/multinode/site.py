"""A site on the multi-node test bed: a database, resources for the bed's hosts and a real
``oar-server`` reaching them with ``OAR_CONNECTOR=ssh``.

What :class:`Site` sets up (and :meth:`Site.close` removes, even after a failed test):

* a database (SQLite file, or a PostgreSQL database of the session's throwaway cluster)
  with ``oar-database --create`` and 2 cores per host (``cpuset`` 0 and 1, the cpus of this
  machine) registered with ``oar-resources-add node1 node2 node3 -c 2``;
* ``oar.conf``: ``OAR_CONNECTOR=ssh``, ``OPENSSH_CMD="ssh -F <bed ssh_config>"``,
  ``NODE_SSH_USER`` = the bed's account, ``NODE_PYTHON`` = a root-owned wrapper that runs
  this virtualenv's python with the checkout on ``PYTHONPATH`` (the hosts share the
  machine's filesystem), ``NODE_COMMAND_PREFIX="sudo -n"``, ``SERVER_HOSTNAME`` = the
  bed's gateway address (where oarexec's end report goes), ``JOB_RESOURCE_MANAGER=cgroup``;
* a sudoers rule ``/etc/sudoers.d/oartb<pid>_<n>`` giving the bed's account exactly the
  two node-side commands as root (removed at close);
* the ``oar-server`` process (ended at close by its pid).

Jobs belong to :data:`JOB_ACCOUNT`, an ordinary account: user commands run as that account
(``runuser``), so that the job's user is not root on the nodes.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import conf_text_for
from tests.helpers import Result, free_port
from tests.sqlutil import raw_database
from tests.testbed import Testbed

#: an ordinary account for the jobs (the same as the node-side tests')
JOB_ACCOUNT = "oarexectest"
#: a bound for every wait
WAIT = 30.0
SUDOERS_DIR = "/etc/sudoers.d"
CHECKOUT = str(Path(__file__).resolve().parents[2])
#: runs a command's main() as another account (argv: module uid gid name args...)
USER_COMMAND = """
import importlib, os, pkgutil, sys
import oar_appliance
for info in pkgutil.walk_packages(oar_appliance.__path__, "oar_appliance."):
    if not info.name.startswith(("oar_appliance.web", "oar_appliance.nodeside")):
        importlib.import_module(info.name)
for name in ("psycopg", "zmq", "yaml", "encodings.idna"):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
module, uid, gid, user, *argv = sys.argv[1:]
main = importlib.import_module(module).main
os.setgroups([])
os.setgid(int(gid))
os.setuid(int(uid))
os.environ.update(USER=user, LOGNAME=user, HOME="/")
sys.exit(main(argv))
"""
OAREXEC, JOBCTL = "oar_appliance.nodeside.oarexec", "oar_appliance.nodeside.jobctl"


def ensure_job_account() -> str:
    try:
        pwd.getpwnam(JOB_ACCOUNT)
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/bin/bash", "--home-dir", "/nonexistent",
                        "--no-create-home", JOB_ACCOUNT], check=True, capture_output=True, timeout=30)
    return JOB_ACCOUNT


def missing_sudo() -> str | None:
    if shutil.which("sudo") is None or shutil.which("visudo") is None:
        return "sudo is missing (apt-get install sudo; scripts/run-tests installs it)"
    return None


def sweep_stale_sudoers() -> list[str]:
    """Remove the sudoers rules left by a crashed run (``oartb<pid>_*`` of a dead pid)."""
    from tests.testbed import pid_alive

    removed = []
    for name in os.listdir(SUDOERS_DIR):
        found = re.match(r"^oartb(\d+)_\d+$", name)
        if found and not pid_alive(int(found.group(1))):
            os.unlink(os.path.join(SUDOERS_DIR, name))
            removed.append(name)
    return removed


class Site:
    """One test's site on ``bed``; ``runtime_dir`` is a path each host of the bed sees as
    a directory of its own (``Testbed(private_dirs=[runtime_dir])``)."""

    def __init__(self, bed: Testbed, runtime_dir: str, db_url: str):
        self.bed = bed
        self.runtime_dir = runtime_dir
        self.db_url = db_url
        self.user = ensure_job_account()
        self.server: subprocess.Popen | None = None
        self.sudoers: str | None = None
        # readable by the job's account (its commands read oar.conf), never writable by it
        self.top = Path(tempfile.mkdtemp(prefix="site-", dir=bed.directory))
        self.top.chmod(0o755)
        self.work = self.top / "work"  # the jobs' launching directory, the user's
        self.work.mkdir()
        account = pwd.getpwnam(self.user)
        os.chown(self.work, account.pw_uid, account.pw_gid)
        self.dbdir = self.top / "db"  # a SQLite database is written by the user's commands
        self.dbdir.mkdir()
        os.chown(self.dbdir, account.pw_uid, account.pw_gid)
        if db_url.startswith("sqlite"):
            self.db_url = f"sqlite:///{self.dbdir}/oar.sqlite"
        self.conf = self.top / "oar.conf"
        self.log = self.top / "oar.log"
        self.port = free_port()
        self.extra: list[str] = []
        self.node_python = self.top / "node-python"
        self.node_python.write_text(f'#!/bin/sh\nPYTHONPATH={CHECKOUT} exec {sys.executable} "$@"\n')
        self.node_python.chmod(0o755)

    # ---------------------------------------------------------------- set up

    def setup(self) -> Site:
        self._install_sudoers()
        self.write_conf()
        result = self.admin("oar-database", "--create")
        assert result.rc == 0, result.err
        result = self.admin("oar-resources-add", *[h.name for h in self.bed.hosts], "-c", "2")
        assert result.rc == 0, result.err
        if self.db_url.startswith("sqlite"):
            account = pwd.getpwnam(self.user)
            for path in self.dbdir.iterdir():
                os.chown(path, account.pw_uid, account.pw_gid)
        return self

    def _install_sudoers(self) -> None:
        # oarexec takes no argument (its job data comes on stdin); jobctl takes an action
        commands = f"{self.node_python} -m {OAREXEC}, {self.node_python} -m {JOBCTL} *"
        rule = f"{self.bed.account} ALL=(root) NOPASSWD: {commands}\n"
        path = os.path.join(SUDOERS_DIR, f"oartb{os.getpid()}_{abs(hash(str(self.top))) % 10**6}")
        candidate = self.top / "sudoers"
        candidate.write_text(rule)
        checked = subprocess.run(["visudo", "-cf", str(candidate)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with open(path, "w") as out:
            out.write(rule)
        os.chmod(path, 0o440)
        self.sudoers = path

    def write_conf(self, *lines: str) -> None:
        self.extra.extend(lines)
        text = conf_text_for(self.db_url).replace("SERVER_PORT=6666", f"SERVER_PORT={self.port}")
        self.conf.write_text(text + "\n".join([
            f'LOG_FILE="{self.log}"', "LOG_LEVEL=3",
            "OAR_CONNECTOR=ssh", f'OPENSSH_CMD="ssh -F {self.bed.ssh_config}"',
            f"NODE_SSH_USER={self.bed.account}", f'NODE_PYTHON="{self.node_python}"',
            'NODE_COMMAND_PREFIX="sudo -n"', f"SERVER_HOSTNAME={self.bed.gateway}",
            f'OAR_RUNTIME_DIRECTORY="{self.runtime_dir}"', "SERVER_TIMER_PERIOD=1",
            "JOB_RESOURCE_MANAGER=cgroup", "JOBDEL_WALLTIME=15", "JOBDEL_SOFTWALLTIME=2",
            "SARKO_FREQUENCY=1", "FINAUD_FREQUENCY=2", "OAREXEC_START_TIMEOUT=20",
            *self.extra]) + "\n")
        self.conf.chmod(0o644)

    # ---------------------------------------------------------------- commands

    def _command(self, module: str, argv: list[str], user: str | None) -> Result:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OARCONFFILE": str(self.conf),
               "PYTHONPATH": CHECKOUT, "LANG": "C.UTF-8"}
        if user is None:
            command = [sys.executable, "-m", module, *argv]
        else:
            # this python lives where the job's account cannot read: it starts as root,
            # loads the command's modules, then becomes the account for good
            account = pwd.getpwnam(user)
            command = [sys.executable, "-c", USER_COMMAND, module, str(account.pw_uid),
                       str(account.pw_gid), user, *argv]
        done = subprocess.run(command, env=env, cwd=self.work, capture_output=True, text=True, timeout=WAIT)
        return Result(done.returncode, done.stdout, done.stderr)

    def admin(self, command: str, *argv: str) -> Result:
        """An administration command, as root."""
        return self._command("oar_appliance.cli." + command.replace("-", "_"), list(argv), None)

    def cmd(self, command: str, *argv: str) -> Result:
        """A user command (oarsub, oardel, oarhold...) as the job's account."""
        return self._command("oar_appliance.cli." + command.replace("-", "_"), list(argv), self.user)

    def oarsub(self, *argv: str) -> int:
        result = self.cmd("oarsub", *argv)
        assert result.rc == 0, result.err
        found = re.search(r"^OAR_JOB_ID=(\d+)$", result.out, re.M)
        assert found, result.out
        return int(found.group(1))

    # ---------------------------------------------------------------- server

    def start_server(self) -> subprocess.Popen:
        assert self.server is None or self.server.poll() is not None
        started = f"oar-server started (port {self.port}"
        before = self.log.read_text().count(started) if self.log.exists() else 0
        env = dict(os.environ, PYTHONPATH=CHECKOUT)
        self.server = subprocess.Popen(
            self.bed.in_view([sys.executable, "-m", "oar_appliance.cli.oar_server", "--conf", str(self.conf)]),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise AssertionError(f"oar-server exited: {self.server.stderr.read().decode()}")
            if self.log.exists() and self.log.read_text().count(started) > before:
                return self.server
            time.sleep(0.05)
        raise AssertionError("oar-server did not start")

    def stop_server(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        self.server.stderr.close()

    def close(self) -> None:
        """Stop the server, clean every job left on every host, remove the sudoers rule."""
        try:
            self.stop_server()
        finally:
            try:
                for host in self.bed.hosts:
                    private = self.bed.private_dir(host.name, self.runtime_dir)
                    for name in os.listdir(private):
                        found = re.match(r"job_(\d+)\.", name) or re.match(r"oarexec_(\d+)\.pid$", name)
                        if found:
                            self.jobctl(host.name, "clean", int(found.group(1)))
            finally:
                if self.sudoers and os.path.exists(self.sudoers):
                    os.unlink(self.sudoers)

    # ---------------------------------------------------------------- nodes

    def jobctl(self, host: str, action: str, job_id: int) -> subprocess.CompletedProcess:
        return self.bed.ssh(host, f"sudo -n {self.node_python} -m oar_appliance.nodeside.jobctl {action} "
                                  f"--job-id {int(job_id)} --runtime-dir {self.runtime_dir}", timeout=WAIT)

    def job_cgroup(self, host: str, controller: str, job_id: int) -> Path:
        """The job's cgroup on ``host`` as seen from here (``/oar/<user>_<jobid>`` in the
        host's own tree)."""
        return Path(self.bed.host_cgroup(host, controller)) / "oar" / f"{self.user}_{job_id}"

    def user_processes(self) -> list[int]:
        uid = pwd.getpwnam(self.user).pw_uid
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}").st_uid == uid:
                        found.append(int(entry))
                except OSError:
                    pass
        return found

    # ---------------------------------------------------------------- database

    def sql(self, sql: str, params=()) -> list[tuple]:
        with raw_database(self.db_url) as db:
            sql = sql.replace("?", "%s") if not self.db_url.startswith("sqlite") else sql
            cursor = db.execute_sql(sql, list(params))
            return cursor.fetchall() if cursor.description else []

    def state(self, job_id: int) -> str | None:
        rows = self.sql('SELECT "state" FROM "jobs" WHERE "job_id" = ?', [job_id])
        return rows[0][0] if rows else None

    def wait_state(self, job_id: int, *states: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.state(job_id)
            if state in states:
                return state
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} is {state}, not {'/'.join(states)} after {timeout} s\n"
                             + self.log_tail())

    def events(self, job_id: int) -> list[str]:
        return [r[0] for r in self.sql('SELECT "type" FROM "event_logs" WHERE "job_id" = ? '
                                       'ORDER BY "event_id"', [job_id])]

    def node_states(self) -> dict[str, set[str]]:
        states: dict[str, set[str]] = {}
        for host, state in self.sql('SELECT "network_address", "state" FROM "resources"'):
            states.setdefault(host, set()).add(state)
        return states

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text().splitlines()[-lines:])


def wait_for(predicate, timeout: float = WAIT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached after {timeout} s")
