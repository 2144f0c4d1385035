"""A throwaway PostgreSQL cluster for the tests.

initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` account
(or ``nobody`` where there is none); otherwise to the current user.  It listens on a free
loopback port only, with password authentication, and is removed at the end of the run.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

SUPERUSER = "oar_test_admin"
SUPERPASS = "oar-test-admin-pw"
OAR_LOGIN = "oar"
OAR_PASSWORD = "oar-test-pw"


def _find(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    for version in ("17", "16", "15", "14"):
        candidate = f"/usr/lib/postgresql/{version}/bin/{binary}"
        if os.path.exists(candidate):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url(dbname)`` names a database."""

    def __init__(self):
        self.initdb = _find("initdb")
        self.pg_ctl = _find("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.owner = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self.owner = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
        self.top = tempfile.mkdtemp(prefix="oar-pg-")
        self.data = os.path.join(self.top, "data")
        self.port = _free_port()
        self._counter = 0

    def _run(self, argv: list[str], timeout: int = 60) -> None:
        if self.owner is not None:
            argv = ["runuser", "-u", self.owner.pw_name, "--"] + argv
        subprocess.run(argv, check=True, timeout=timeout, capture_output=True, cwd=self.top)

    def start(self) -> "PgCluster":
        pwfile = os.path.join(self.top, "pw")
        with open(pwfile, "w") as f:
            f.write(SUPERPASS + "\n")
        if self.owner is not None:
            os.chown(self.top, self.owner.pw_uid, self.owner.pw_gid)
            os.chown(pwfile, self.owner.pw_uid, self.owner.pw_gid)
        self._run([
            self.initdb, "-D", self.data, "-U", SUPERUSER, "--pwfile", pwfile,
            "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C",
        ], timeout=120)
        self._run([
            self.pg_ctl, "-D", self.data, "-l", os.path.join(self.top, "log"), "-w", "-t", "60",
            "-o", f"-p {self.port} -k {self.top} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c synchronous_commit=off -c full_page_writes=off",
            "start",
        ], timeout=90)
        with self.admin() as conn:
            conn.execute(
                f"CREATE ROLE {OAR_LOGIN} LOGIN CREATEROLE PASSWORD '{OAR_PASSWORD}'"
            )
        return self

    def admin(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, password=SUPERPASS,
            dbname=dbname, autocommit=True, connect_timeout=10,
        )

    def new_database(self) -> str:
        """Create an empty database owned by the ``oar`` role; return its name."""
        self._counter += 1
        name = f"oar_test_{os.getpid()}_{self._counter}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER {OAR_LOGIN}')
            # the public schema of a new database belongs to the database owner on PG >= 15
        with self.admin(name) as conn:
            conn.execute(f"ALTER SCHEMA public OWNER TO {OAR_LOGIN}")
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url(self, dbname: str, login: str = OAR_LOGIN, password: str = OAR_PASSWORD) -> str:
        return f"postgresql://{login}:{password}@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        try:
            self._run([self.pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop"], timeout=60)
        except (subprocess.SubprocessError, OSError):
            pass
        # give the postmaster a moment to release its files before removing them
        time.sleep(0.1)
        shutil.rmtree(self.top, ignore_errors=True)
