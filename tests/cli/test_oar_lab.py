"""oar-lab: making a lab, its environment and status in-process; starting and stopping
its server with real processes.

A lab is SQLite by design, so these tests do not run on PostgreSQL.  The tests named
``..._stand_in_server`` run a few lines of Python in place of oar-server (it listens on
the lab's port and ends on TERM, or ignores TERM, or fails at once): they check what
oar-lab does with a process whatever the server's own behaviour.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from oar_appliance.cli import oar_lab
from oar_appliance.conf import load_config
from oar_appliance.lab import host_cores, resource_rows
from tests.sqlutil import run_sql

USAGE, DATABASE, NOT_FOUND, CONFLICT, SERVER = 2, 4, 6, 7, 9


@pytest.fixture
def lab_cmd(capsys):
    """``lab_cmd("init", "--dir", d)`` runs oar-lab's main() and returns rc, stdout, stderr."""

    def run(*argv):
        capsys.readouterr()
        rc = oar_lab.main(list(argv))
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return run


@pytest.fixture
def lab_dir(tmp_path):
    return tmp_path / "lab"


@pytest.fixture
def made(lab_cmd, lab_dir, hostname_is):
    hostname_is("labhost")
    rc, out, err = lab_cmd("init", "--dir", str(lab_dir))
    assert rc == 0, err
    return lab_dir


def command(module, conf, *argv):
    """An oar command's main() on the lab's oar.conf; its exit code."""
    import importlib

    return importlib.import_module("oar_appliance.cli." + module).main(["--conf", str(conf), *argv])


# ----------------------------------------------------------------------------- init

def test_init_makes_a_lab_of_this_hosts_cores(made, lab_cmd):
    conf = load_config(str(made / "oar.conf"), environ={})
    assert conf["DB_TYPE"] == "sqlite" and conf["DB_BASE_FILE"] == str(made / "oar.sqlite")
    assert (conf["SERVER_HOSTNAME"], conf.get("OAR_CONNECTOR")) == ("127.0.0.1", "local")
    assert conf["OAR_RUNTIME_DIRECTORY"] == str(made / "run") and (made / "run").is_dir()
    assert conf["LOG_FILE"] == str(made / "oar.log")
    with socket.socket() as probe:  # the port is free for the server
        probe.bind(("127.0.0.1", conf["SERVER_PORT"]))
    url = f"sqlite:///{made}/oar.sqlite"
    rows = run_sql(url, "SELECT network_address, host, cpu, core, cpuset, state FROM resources ORDER BY resource_id")
    affinity = sorted(os.sched_getaffinity(0))
    assert [r[4] for r in rows] == affinity
    assert [r[3] for r in rows] == list(range(1, len(affinity) + 1))
    assert all(r[:2] == ("labhost", "labhost") and r[2] >= 1 and r[5] == "Alive" for r in rows)
    assert command("oar_database", made / "oar.conf", "--check") == 0
    # bash reads the same file
    shown = subprocess.run(["bash", "-c", f'. "{made}/oar.conf"; echo "$DB_BASE_FILE $SERVER_PORT"'],
                           capture_output=True, text=True, timeout=10).stdout.split()
    assert shown == [str(made / "oar.sqlite"), str(conf["SERVER_PORT"])]


def test_cores_from_cpuinfo():
    cpuinfo = "".join(f"processor\t: {p}\nphysical id\t: {p // 2 + 3}\n\n" for p in range(4))
    cores = host_cores(cpuinfo, allowed=[1, 2, 3])
    assert cores == [(1, 3), (2, 4), (3, 4)]
    assert [(r["cpu"], r["core"], r["cpuset"]) for r in resource_rows("h", cores)] == [(1, 1, 1), (2, 2, 2), (2, 3, 3)]
    assert host_cores("", allowed=[0]) == [(0, 0)]


def test_init_refuses_an_existing_lab_unless_forced(made, lab_cmd):
    conf = made / "oar.conf"
    text = conf.read_text()
    assert command("oarsub", conf, "-l", "/core=1", "true") == 0
    rc, _, err = lab_cmd("init", "--dir", str(made))
    assert rc == CONFLICT and "a lab already exists" in err and "--force" in err
    assert conf.read_text() == text
    assert run_sql(f"sqlite:///{made}/oar.sqlite", "SELECT COUNT(*) FROM jobs") == [(1,)]
    rc, out, err = lab_cmd("init", "--dir", str(made), "--force")
    assert rc == 0, err
    assert run_sql(f"sqlite:///{made}/oar.sqlite", "SELECT COUNT(*) FROM jobs") == [(0,)]


def test_init_in_the_default_directory(lab_cmd, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    rc, out, err = lab_cmd("init")
    assert rc == 0, err
    assert (tmp_path / ".oar-lab" / "oar.conf").is_file()
    assert "Next: oar-lab start;" in out  # no --dir in the hints
    rc, out, _ = lab_cmd("env")
    assert out.splitlines()[0] == f"export OARCONFFILE={tmp_path}/.oar-lab/oar.conf"


def test_init_bad_directories(lab_cmd, tmp_path):
    rc, _, err = lab_cmd("init", "--dir", str(tmp_path / "it's"))
    assert rc == USAGE and "quote" in err
    assert not (tmp_path / "it's").exists()
    (tmp_path / "file").write_text("")
    rc, _, err = lab_cmd("init", "--dir", str(tmp_path / "file" / "lab"))
    assert rc == CONFLICT and err.startswith(f"#ERROR: cannot make the lab in {tmp_path}/file/lab: Not a directory") and err.count("\n") == 1


@pytest.fixture
def reachable_tmp():
    """A temporary directory other accounts can reach (pytest's own is private to root)."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="oar-lab-test-")
    os.chmod(path, 0o755)
    yield __import__("pathlib").Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_init_as_an_ordinary_user(reachable_tmp):
    """The lab needs no privilege: an unprivileged account makes one in its own home.

    Run as root, the test drops to ``nobody`` in a forked child (this machine's Python is
    not readable by other accounts, so everything is imported before the fork).
    """
    import pwd

    from oar_appliance import lab, resources  # noqa: F401  (imported before dropping privileges)
    from oar_appliance.db import connection, schema  # noqa: F401

    home = reachable_tmp / "home"
    home.mkdir()
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        entry = pwd.getpwnam("nobody")
        uid, gid = entry.pw_uid, entry.pw_gid
        os.chown(home, uid, gid)
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's outcome is its exit status)
        code = 99
        try:
            if os.getuid() == 0:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            os.environ["HOME"] = str(home)
            with open(home / "out.txt", "w") as sink:
                sys.stdout = sys.stderr = sink
                code = oar_lab.main(["init"]) * 10 + oar_lab.main(["status"])
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, (home / "out.txt").read_text()
    assert (home / ".oar-lab" / "oar.sqlite").stat().st_uid == uid
    assert run_sql(f"sqlite:///{home}/.oar-lab/oar.sqlite", "SELECT COUNT(*) FROM resources") == [
        (len(os.sched_getaffinity(0)),)]


# ----------------------------------------------------------------------------- env, status

def test_env_lines_for_eval(made, lab_cmd):
    rc, out, _ = lab_cmd("env", "--dir", str(made))
    assert rc == 0
    shown = subprocess.run(["bash", "-c", out + '\necho "$OARCONFFILE"'], capture_output=True, text=True,
                           timeout=10).stdout.strip()
    assert shown == str(made / "oar.conf")


@pytest.mark.parametrize("action", ["env", "status", "start", "stop"])
def test_missing_lab(lab_cmd, tmp_path, action):
    rc, out, err = lab_cmd(action, "--dir", str(tmp_path / "none"))
    assert (rc, out) == (NOT_FOUND, "")
    assert err == f"#ERROR: no lab in {tmp_path}/none: make one with oar-lab init --dir {tmp_path}/none\n"


def test_status_counts_jobs_and_resources(made, lab_cmd):
    conf = made / "oar.conf"
    for _ in range(2):
        assert command("oarsub", conf, "-l", "/core=1", "true") == 0
    assert command("oarhold", conf, "1") == 0
    rc, out, err = lab_cmd("status", "--dir", str(made))
    assert rc == 0, err
    cores = len(os.sched_getaffinity(0))
    assert out.splitlines() == [f"lab: {made}", "oar-server: not running", f"resources: Alive {cores}",
                                "jobs: Waiting 2"]
    run_sql(f"sqlite:///{made}/oar.sqlite", "UPDATE jobs SET state = 'Hold' WHERE job_id = 1")
    assert lab_cmd("status", "--dir", str(made))[1].splitlines()[-1] == "jobs: Hold 1, Waiting 1"


def test_status_without_database(made, lab_cmd):
    (made / "oar.sqlite").unlink()
    rc, out, err = lab_cmd("status", "--dir", str(made))
    assert rc == DATABASE and "database" in err and "oar-lab init --force" in err


# ----------------------------------------------------------------------------- start, stop

STAND_IN = """
import signal, socket, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "fail":
    print("stand-in: cannot work today", flush=True)
    sys.exit(4)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if mode == "slow":
    time.sleep(60)
listener.bind(("127.0.0.1", port))
listener.listen(16)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else (lambda *a: sys.exit(0)))
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def stand_in(made, monkeypatch):
    """Run the stand-in in place of oar-server; ends whatever is still running afterwards."""
    port = load_config(str(made / "oar.conf"), environ={})["SERVER_PORT"]
    mode = {"value": "serve"}
    monkeypatch.setattr(oar_lab, "server_argv", lambda paths: [
        sys.executable, "-c", STAND_IN, str(port), mode["value"], "--conf", paths.conf])
    started = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        started.append(process)
        return process

    monkeypatch.setattr(oar_lab.subprocess, "Popen", recording_popen)
    yield mode
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def pid_of(lab):
    return int((lab / "oar-server.pid").read_text())


def test_start_and_stop_a_stand_in_server(made, lab_cmd, stand_in):
    rc, out, err = lab_cmd("start", "--dir", str(made))
    assert rc == 0, err
    pid = pid_of(made)
    assert out.startswith(f"oar-server started (pid {pid}, port ")
    assert os.getsid(pid) == pid  # a session of its own: the terminal's signals do not reach it
    assert lab_cmd("status", "--dir", str(made))[1].splitlines()[1].startswith(f"oar-server: running (pid {pid}, port")
    rc, _, err = lab_cmd("start", "--dir", str(made))
    assert rc == CONFLICT and f"already running (pid {pid})" in err
    rc, out, err = lab_cmd("stop", "--dir", str(made))
    assert (rc, out) == (0, f"oar-server stopped (pid {pid})\n"), err
    assert not (made / "oar-server.pid").exists()
    assert oar_lab._process_state(pid) is None  # gone, and reaped
    rc, _, err = lab_cmd("stop", "--dir", str(made))
    assert rc == CONFLICT and "not running (no pid file" in err


def test_stop_kills_a_stand_in_server_that_ignores_term(made, lab_cmd, stand_in):
    stand_in["value"] = "stubborn"
    assert lab_cmd("start", "--dir", str(made))[0] == 0
    pid = pid_of(made)
    began = time.monotonic()
    rc, out, err = lab_cmd("stop", "--dir", str(made), "--timeout", "1")
    assert rc == 0 and "killed" in out, err
    assert 1 <= time.monotonic() - began < 10
    assert oar_lab._process_state(pid) is None


def test_start_reports_a_stand_in_server_that_fails(made, lab_cmd, stand_in):
    stand_in["value"] = "fail"
    rc, out, err = lab_cmd("start", "--dir", str(made))
    assert rc == SERVER and "exited at once (code 4): stand-in: cannot work today" in err
    assert not (made / "oar-server.pid").exists()


def test_start_gives_up_on_a_stand_in_server_that_never_answers(made, lab_cmd, stand_in):
    stand_in["value"] = "slow"
    rc, _, err = lab_cmd("start", "--dir", str(made), "--timeout", "1")
    assert rc == SERVER and "did not answer" in err and "was stopped" in err
    assert not (made / "oar-server.pid").exists()


def test_stale_pid_files_are_never_signalled(made, lab_cmd, stand_in):
    finished = subprocess.Popen(["true"])
    finished.wait()
    for stale in (finished.pid, os.getpid()):  # gone; alive but not the lab's server
        (made / "oar-server.pid").write_text(f"{stale}\n")
        status = lab_cmd("status", "--dir", str(made))[1]
        assert f"not running (stale pid file: pid {stale} " in status
        rc, _, err = lab_cmd("stop", "--dir", str(made))
        assert rc == CONFLICT and f"pid file named pid {stale}" in err and "pid file removed" in err
        assert not (made / "oar-server.pid").exists()
    (made / "oar-server.pid").write_text("garbage\n")
    rc, out, err = lab_cmd("start", "--dir", str(made))
    assert rc == 0 and "#WARNING: removed the stale pid file" in err
    assert lab_cmd("stop", "--dir", str(made))[0] == 0


def test_start_refuses_a_taken_port(made, lab_cmd, stand_in):
    port = load_config(str(made / "oar.conf"), environ={})["SERVER_PORT"]
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", port))
        other.listen(1)
        rc, _, err = lab_cmd("start", "--dir", str(made))
    assert rc == CONFLICT and f"port {port}" in err and "taken" in err
    assert not (made / "oar-server.pid").exists()


def test_init_refuses_while_the_server_runs(made, lab_cmd, stand_in):
    assert lab_cmd("start", "--dir", str(made))[0] == 0
    rc, _, err = lab_cmd("init", "--dir", str(made), "--force")
    assert rc == CONFLICT and "oar-lab stop first" in err
    assert lab_cmd("stop", "--dir", str(made))[0] == 0


# ----------------------------------------------------------------------------- the real thing

def run_command(argv, cwd, env, stdin_text=None, timeout=60):
    return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, env=env, input=stdin_text,
                          capture_output=True, text=True, timeout=timeout)


def _root_with_writable_cgroups() -> bool:
    if os.geteuid() != 0:
        return False
    if os.access("/sys/fs/cgroup/cpuset", os.W_OK):                 # v1
        return True
    try:                                                             # v2
        return "cpuset" in open("/sys/fs/cgroup/cgroup.controllers").read().split()
    except OSError:
        return False


def test_a_lab_runs_jobs_through_the_real_server(tmp_path):
    """init, start, a batch job to its end, an interactive job, a reservation, status, stop:
    every piece a process of its own, as a user types them."""
    lab = tmp_path / "lab"
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, OARCONFFILE=str(lab / "oar.conf"), SHELL="/bin/sh")

    def oar(module, *argv, stdin_text=None):
        return run_command([f"oar_appliance.cli.{module}", *argv], str(work), env, stdin_text)

    assert oar("oar_lab", "init", "--dir", str(lab)).returncode == 0
    started = oar("oar_lab", "start", "--dir", str(lab))
    assert started.returncode == 0, started.stderr
    pid = pid_of(lab)
    try:
        submitted = oar("oarsub", "-l", "core=1", "hostname; echo hi; cat /proc/self/cgroup > cgroups.txt")
        assert submitted.returncode == 0, submitted.stderr
        job_id = int(submitted.stdout.split("OAR_JOB_ID=")[1].split()[0])
        deadline = time.monotonic() + 180  # generous: a loaded machine
        while oar("oarstat", "-s", "-j", str(job_id)).stdout.strip() != f"{job_id}: Terminated":
            if time.monotonic() > deadline:
                pytest.fail(oar("oarstat", "-f", "-j", str(job_id)).stdout + (lab / "oar.log").read_text())
            time.sleep(1)
        assert (work / f"OAR.{job_id}.stdout").read_text() == f"{socket.gethostname()}\nhi\n"
        # a lab run by root on a host with writable cgroups confines its jobs (auto)
        confined = f"/oar/{getpass.getuser()}_{job_id}" in (work / "cgroups.txt").read_text()
        assert confined == _root_with_writable_cgroups(), \
            (work / "cgroups.txt").read_text()
        shell = oar("oarsub", "-I", "-l", "core=1", stdin_text="echo inside=$OAR_JOB_ID; exit 5\n")
        assert shell.returncode == 5, shell.stderr
        interactive_id = job_id + 1
        assert shell.stdout.splitlines()[1:] == [
            "Interactive mode: waiting...", f"Connect to OAR job {interactive_id} via the node {socket.gethostname()}",
            f"inside={interactive_id}"]
        reservation = oar("oarsub", "-r", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() + 7200)),
                          "-l", "core=1")
        assert reservation.returncode == 0 and "Advance reservation is GRANTED." in reservation.stdout
        deadline = time.monotonic() + 180
        while "Terminated 2" not in oar("oar_lab", "status", "--dir", str(lab)).stdout:
            if time.monotonic() > deadline:
                pytest.fail(oar("oarstat", "-f").stdout + (lab / "oar.log").read_text())
            time.sleep(1)
        status = oar("oar_lab", "status", "--dir", str(lab)).stdout.splitlines()
        assert status[1] == f"oar-server: running (pid {pid}, port {load_config(str(lab / 'oar.conf'), environ={})['SERVER_PORT']})"
        assert status[3] == "jobs: Terminated 2, Waiting 1"
        stopped = oar("oar_lab", "stop", "--dir", str(lab))
        assert stopped.returncode == 0 and stopped.stdout == f"oar-server stopped (pid {pid})\n", stopped.stderr
        assert not oar_lab._alive(pid)
    finally:
        if oar_lab._is_lab_server(pid, oar_lab.lab_mod.LabPaths(str(lab))):
            os.kill(pid, signal.SIGKILL)
