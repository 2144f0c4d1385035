"""oarexec for real: started through LocalConnector, its job a real shell command, its end
report received by a real zmq ROUTER in the test (standing in for oar-server)."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import time

import pytest

from oar_appliance.execution import LaunchError
from oar_appliance.nodeside.oarexec import READY_LINE
from oar_appliance.nodeside.runtime import pid_alive, read_pid
from tests.helpers import free_port
from tests.nodeside.conftest import ReportServer, wait_for


def read_env_dump(path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep:
            env[name] = value
    return env


def test_environment_node_file_and_report(jobs, report_server):
    work = jobs.workdir
    data = jobs.data(
        "env > env.dump; cat \"$OAR_NODEFILE\" > nodes.copy;"
        " cat \"$OAR_RESOURCE_PROPERTIES_FILE\" > props.copy; pwd > pwd.txt",
        name="envjob", project="myproj", walltime=5400, cpuset=[2, 3], array_id=77, array_index=4,
    )
    files = jobs.start(data)
    report = report_server.wait_report()
    assert report == {"kind": "oarexec_end", "job_id": data["job_id"], "challenge": "secret-challenge",
                      "oarexec_code": 0, "user_status": 0, "host": "node-1"}
    env = read_env_dump(work / "env.dump")
    job_id = str(data["job_id"])
    user = pwd.getpwuid(os.getuid()).pw_name
    assert env["OAR_JOB_ID"] == env["OAR_JOBID"] == job_id
    assert env["OAR_NODEFILE"] == env["OAR_NODE_FILE"] == env["OAR_FILE_NODES"] == files.nodefile
    assert env["OAR_RESOURCE_PROPERTIES_FILE"] == env["OAR_RESOURCE_FILE"] == files.resources
    assert env["OAR_JOB_NAME"] == "envjob"
    assert env["OAR_PROJECT_NAME"] == "myproj"
    assert env["OAR_JOB_WALLTIME"] == "1:30:00"
    assert env["OAR_JOB_WALLTIME_SECONDS"] == "5400"
    assert env["OAR_WORKDIR"] == env["OAR_O_WORKDIR"] == env["OAR_WORKING_DIRECTORY"] == str(work)
    assert env["OAR_USER"] == env["USER"] == user
    assert env["OAR_CPUSET"] == f"/oar/{user}_{job_id}"
    assert env["OAR_ARRAY_ID"] == "77" and env["OAR_ARRAY_INDEX"] == "4"
    assert env["OAR_JOB_INTERACTIVE"] == "0"
    assert "secret-challenge" not in (work / "env.dump").read_text()
    assert (work / "nodes.copy").read_text() == "node-1\nnode-1\nnode-2\n"
    assert (work / "props.copy").read_text() == "resource_id = '1', network_address = 'node-1'\n"
    assert (work / "pwd.txt").read_text().strip() == str(work)


def test_output_files_with_jobid_and_defaults(jobs, report_server):
    data = jobs.data("echo to-out; echo to-err >&2",
                     stdout_file=str(jobs.workdir / "out.%jobid%.txt"),
                     stderr_file=str(jobs.workdir / "err.%jobname%.%jobid%.txt"), name="nm")
    jobs.start(data)
    assert report_server.wait_report()["oarexec_code"] == 0
    job_id = data["job_id"]
    assert (jobs.workdir / f"out.{job_id}.txt").read_text() == "to-out\n"
    assert (jobs.workdir / f"err.nm.{job_id}.txt").read_text() == "to-err\n"

    data = jobs.data("echo default-out; echo default-err >&2")
    jobs.start(data)
    assert report_server.wait_report()["oarexec_code"] == 0
    assert (jobs.workdir / f"OAR.{data['job_id']}.stdout").read_text() == "default-out\n"
    assert (jobs.workdir / f"OAR.{data['job_id']}.stderr").read_text() == "default-err\n"


def test_missing_working_directory_is_code_10_and_nothing_runs(jobs, report_server):
    data = jobs.data("touch ran", launching_directory=str(jobs.tmp_path / "missing"))
    with pytest.raises(LaunchError) as caught:
        jobs.start(data)
    assert caught.value.oarexec_code == 10
    assert "missing" in str(caught.value)
    files = jobs.files(data)
    for path in (files.pid, files.env, files.nodefile):
        assert not os.path.exists(path)
    with pytest.raises(AssertionError):
        report_server.wait_report(timeout=1)


def test_working_directory_not_a_directory_is_code_10(jobs):
    (jobs.tmp_path / "plain").write_text("x")
    with pytest.raises(LaunchError) as caught:
        jobs.start(jobs.data("true", launching_directory=str(jobs.tmp_path / "plain")))
    assert caught.value.oarexec_code == 10


def test_stdout_and_stderr_file_errors(jobs):
    with pytest.raises(LaunchError) as caught:
        jobs.start(jobs.data("true", stdout_file=str(jobs.tmp_path / "nodir" / "out")))
    assert caught.value.oarexec_code == 20
    with pytest.raises(LaunchError) as caught:
        jobs.start(jobs.data("true", stderr_file=str(jobs.tmp_path / "nodir" / "err")))
    assert caught.value.oarexec_code == 22


def test_failing_command_status(jobs, report_server):
    jobs.start(jobs.data("echo partial; exit 7"))
    report = report_server.wait_report()
    assert report["oarexec_code"] == 0
    assert os.WIFEXITED(report["user_status"]) and os.WEXITSTATUS(report["user_status"]) == 7


def test_command_killed_by_a_signal_reports_its_wait_status(jobs, report_server):
    jobs.start(jobs.data("kill -SEGV $$"))
    status = report_server.wait_report()["user_status"]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV


def test_pid_and_env_files_while_running_and_after(jobs, report_server):
    data = jobs.data("echo started > started; sleep 30")
    files = jobs.start(data)
    pid = read_pid(files.pid)
    assert pid_alive(pid)
    with open(f"/proc/{pid}/cmdline", "rb") as stream:
        assert b"oar_appliance.nodeside.oarexec" in stream.read()
    assert os.getsid(pid) == pid_session(pid) != os.getsid(0)  # detached: its own session
    env_lines = open(files.env).read().splitlines()
    assert f"OAR_JOB_ID={data['job_id']}" in env_lines
    assert f"OAR_NODEFILE={files.nodefile}" in env_lines
    assert all("=" in line for line in env_lines)
    assert "secret-challenge" not in open(files.env).read()
    wait_for(lambda: (jobs.workdir / "started").exists(), what="the command to start")
    pgid, sid = (int(w) for w in open(files.pgid).read().split())
    assert sid == os.getsid(pid) and pgid != pid
    assert jobs.jobctl(files, "kill").returncode == 0
    assert report_server.wait_report()["oarexec_code"] == 3
    wait_for(lambda: not os.path.exists(files.pid), what="the pid file to go")
    wait_for(lambda: not pid_alive(pid), what="oarexec to exit")


def pid_session(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as stream:
        data = stream.read()
    return int(data[data.rfind(b")") + 2:].split()[3])


def test_kill_reaches_children_and_term_ignoring_processes(jobs, report_server):
    command = ("sleep 300 & echo $! > child1;"
               " (trap '' TERM; exec sleep 301) & echo $! > child2; wait")
    files = jobs.start(jobs.data(command, kill_grace=1))
    work = jobs.workdir
    wait_for(lambda: (work / "child1").exists() and (work / "child2").exists(), what="children")
    children = [int((work / name).read_text()) for name in ("child1", "child2")]
    assert all(pid_alive(pid) for pid in children)
    started = time.monotonic()
    result = jobs.jobctl(files, "kill")
    assert result.returncode == 0, result.stderr
    report = report_server.wait_report()
    assert report["oarexec_code"] == 3
    wait_for(lambda: not any(pid_alive(pid) for pid in children), timeout=10, what="children to die")
    assert time.monotonic() - started < 15


def test_checkpoint_signal_reaches_the_job(jobs, report_server):
    command = ("trap 'echo got > ckpt; exit 0' USR1; touch ready;"
               " while :; do sleep 0.1; done")
    files = jobs.start(jobs.data(command, checkpoint_signal=10))  # 10 = SIGUSR1, as oarsub --signal
    wait_for(lambda: (jobs.workdir / "ready").exists(), what="the job to be ready")
    result = jobs.jobctl(files, "checkpoint")
    assert result.returncode == 0, result.stderr
    report = report_server.wait_report()
    assert (jobs.workdir / "ckpt").read_text() == "got\n"
    assert report["oarexec_code"] == 40
    assert os.WEXITSTATUS(report["user_status"]) == 0


def test_checkpoint_of_a_job_without_command_is_41(jobs, report_server):
    files = jobs.start(jobs.data("", interactive=True))
    assert jobs.jobctl(files, "checkpoint").returncode == 0
    time.sleep(0.5)
    with open(files.shell_status, "w") as stream:
        stream.write("0\n")
    assert report_server.wait_report()["oarexec_code"] == 41


def test_user_signal(jobs, report_server):
    command = "trap 'echo got-usr1 > sig; exit 0' USR1; touch ready; while :; do sleep 0.1; done"
    files = jobs.start(jobs.data(command))
    wait_for(lambda: (jobs.workdir / "ready").exists(), what="the job to be ready")
    result = jobs.jobctl(files, "signal", "SIGUSR1")
    assert result.returncode == 0, result.stderr
    report = report_server.wait_report()
    assert (jobs.workdir / "sig").read_text() == "got-usr1\n"
    assert report["oarexec_code"] == 42
    assert not os.path.exists(files.signal)


def test_report_retried_until_a_late_server_starts(jobs):
    port = free_port()
    data = jobs.data("true")
    data["server"] = {"host": "127.0.0.1", "port": port}
    files = jobs.start(data)
    time.sleep(2.5)  # several tries go unanswered
    assert pid_alive(read_pid(files.pid))
    server = ReportServer(port=port)
    try:
        report = server.wait_report()
        assert report["job_id"] == data["job_id"] and report["oarexec_code"] == 0
        wait_for(lambda: not os.path.exists(files.pid), what="oarexec to end after the ack")
    finally:
        server.stop()


def test_refused_report_is_not_retried(jobs):
    server = ReportServer(answer=lambda msg: {"ack": False, "error": "wrong challenge"})
    try:
        data = jobs.data("true")
        data["server"]["port"] = server.port
        files = jobs.start(data)
        assert server.wait_report()["challenge"] == "secret-challenge"
        wait_for(lambda: not os.path.exists(files.pid), what="oarexec to give up")
        with pytest.raises(AssertionError):
            server.wait_report(timeout=2)
    finally:
        server.stop()


def test_interactive_job_reports_the_shell_status(jobs, report_server):
    files = jobs.start(jobs.data("", interactive=True))
    assert open(files.env).read().count("OAR_JOB_INTERACTIVE=1") == 1
    with pytest.raises(AssertionError):
        report_server.wait_report(timeout=1)  # nothing ends before the shell
    with open(files.shell_status + ".tmp", "w") as stream:
        stream.write("2\n")  # the shell's exit status, as $? gives it
    os.rename(files.shell_status + ".tmp", files.shell_status)
    report = report_server.wait_report()
    assert report["oarexec_code"] == 0
    assert os.WIFEXITED(report["user_status"]) and os.WEXITSTATUS(report["user_status"]) == 2


def test_interactive_job_killed(jobs, report_server):
    files = jobs.start(jobs.data("", interactive=True))
    assert jobs.jobctl(files, "kill").returncode == 0
    report = report_server.wait_report()
    assert report["oarexec_code"] == 3 and report["user_status"] is None


def test_prologue_and_epilogue(jobs, report_server, tmp_path):
    log = tmp_path / "scripts.log"
    prologue = tmp_path / "prologue"
    prologue.write_text(f"#!/bin/sh\necho prologue \"$@\" >> {log}\n")
    epilogue = tmp_path / "epilogue"
    epilogue.write_text(f"#!/bin/sh\necho epilogue \"$@\" >> {log}\nexit 3\n")
    for script in (prologue, epilogue):
        script.chmod(0o755)
    data = jobs.data(f"echo command >> {log}", prologue=str(prologue), epilogue=str(epilogue))
    files = jobs.start(data)
    report = report_server.wait_report()
    assert report["oarexec_code"] == 2  # the epilogue failed
    user = pwd.getpwuid(os.getuid()).pw_name
    assert log.read_text().splitlines() == [
        f"prologue {data['job_id']} {user} {files.nodefile}",
        "command",
        f"epilogue {data['job_id']} {user} {files.nodefile}",
    ]


def test_failing_or_slow_prologue_is_code_1_and_the_command_does_not_run(jobs, report_server, tmp_path):
    prologue = tmp_path / "prologue"
    prologue.write_text("#!/bin/sh\nexit 1\n")
    prologue.chmod(0o755)
    jobs.start(jobs.data("touch ran", prologue=str(prologue)))
    assert report_server.wait_report()["oarexec_code"] == 1
    prologue.write_text("#!/bin/sh\nsleep 30\n")
    started = time.monotonic()
    jobs.start(jobs.data("touch ran", prologue=str(prologue), prologue_timeout=1))
    assert report_server.wait_report()["oarexec_code"] == 1
    assert time.monotonic() - started < 15
    assert not (jobs.workdir / "ran").exists()


@pytest.fixture
def open_dir():
    """A directory every account can reach (pytest's own temporary tree is root-only)."""
    import shutil
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix="oarexec-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to the job's user needs root")
def test_job_runs_as_its_user_when_oarexec_is_root(jobs, report_server, open_dir, job_account):
    shared = open_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    account = pwd.getpwnam(job_account)
    data = jobs.data("id -u > uid.txt; echo $HOME $USER > who.txt", user=job_account,
                     launching_directory=str(shared))
    jobs.start(data)
    report_server.wait_report()
    assert (shared / "uid.txt").read_text().strip() == str(account.pw_uid)
    assert (shared / "who.txt").read_text().split() == [account.pw_dir, job_account]
    assert os.stat(shared / f"OAR.{data['job_id']}.stdout").st_uid == account.pw_uid


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory its user cannot enter")
def test_working_directory_the_user_cannot_enter_is_code_12(jobs, open_dir, job_account):
    closed = open_dir / "closed"
    closed.mkdir()
    closed.chmod(0o700)
    with pytest.raises(LaunchError) as caught:
        jobs.start(jobs.data("true", user=job_account, launching_directory=str(closed)))
    assert caught.value.oarexec_code == 12
    (closed / "inside").mkdir()  # exists, but behind a directory the user cannot cross
    with pytest.raises(LaunchError) as caught:
        jobs.start(jobs.data("true", user=job_account, launching_directory=str(closed / "inside")))
    assert caught.value.oarexec_code == 12


def test_unknown_user_is_code_7(jobs):
    if os.geteuid() == 0:
        user = "no-such-user-here"
    else:
        user = "root"  # not root: oarexec can only run jobs of its own account
    with pytest.raises(LaunchError) as caught:
        jobs.start(jobs.data("true", user=user))
    assert caught.value.oarexec_code == 7


def run_oarexec(stdin_data: bytes | None, *args: str, timeout: float = 20):
    """Run oarexec with ``stdin_data`` on stdin (None: stdin stays open and empty)."""
    proc = subprocess.Popen([sys.executable, "-m", "oar_appliance.nodeside.oarexec", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if stdin_data is not None:
            out, err = proc.communicate(stdin_data, timeout=timeout)
        else:
            proc.wait(timeout)
            out, err = proc.stdout.read(), proc.stderr.read()
            proc.stdin.close()
            proc.stdout.close()
            proc.stderr.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(), err.decode()


def test_job_data_timeout_is_code_30():
    started = time.monotonic()
    rc, out, err = run_oarexec(None, "--stdin-timeout", "0.5")  # stdin open, nothing written
    assert rc == 30
    assert READY_LINE not in out
    assert err.startswith("#ERROR: no job data")
    assert time.monotonic() - started < 10


def test_malformed_job_data_is_code_30():
    rc, out, err = run_oarexec(b"{not json")
    assert rc == 30 and "not valid JSON" in err
    rc, out, err = run_oarexec(b'{"job_id": 1}')
    assert rc == 30 and "lacks" in err


def test_debug_mode_writes_a_log(jobs, report_server):
    files = jobs.start(jobs.data("exit 0", debug=True))
    report_server.wait_report()
    wait_for(lambda: os.path.exists(files.debug_log) and "acknowledged" in open(files.debug_log).read(),
             what="the debug log")
    assert "end of job: code 0" in open(files.debug_log).read()
    files_without = jobs.start(jobs.data("exit 0"))
    report_server.wait_report()
    assert not os.path.exists(files_without.debug_log)


def test_login_shell_only_when_asked(jobs, report_server, open_dir, job_account):
    shared = open_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    command = 'echo "$0" > argv0.$OAR_JOB_ID; shopt -q login_shell && echo login >> argv0.$OAR_JOB_ID'
    plain = jobs.data(command, user=job_account, launching_directory=str(shared))
    jobs.start(plain)
    login = jobs.data(command, user=job_account, launching_directory=str(shared), login_shell=True)
    jobs.start(login)
    report_server.wait_report()
    report_server.wait_report()
    assert (shared / f"argv0.{plain['job_id']}").read_text() == "bash\n"
    assert (shared / f"argv0.{login['job_id']}").read_text() == "-bash\nlogin\n"


def test_the_command_gets_default_signal_dispositions(jobs, report_server):
    """Python ignores SIGPIPE; a job must not inherit that (``yes | head`` must end), nor
    a SIGHUP ignored by whoever started oarexec (``nohup``: oarexec inherits it here)."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        jobs.start(jobs.data("grep -E '^Sig(Ign|Blk)' /proc/self/status > sigs; yes | head -1 > /dev/null"))
    finally:
        signal.signal(signal.SIGHUP, previous)
    report = report_server.wait_report()
    assert os.WEXITSTATUS(report["user_status"]) == 0
    for line in (jobs.workdir / "sigs").read_text().splitlines():
        assert int(line.split()[1], 16) == 0, line


def test_unsafe_runtime_directory_is_code_8(jobs, tmp_path):
    shared = tmp_path / "shared-runtime"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could plant or swap pid files there
    with pytest.raises(LaunchError) as caught:
        jobs.start(jobs.data("touch ran", runtime_dir=str(shared)))
    assert caught.value.oarexec_code == 8 and "writable by others" in str(caught.value)
    link = tmp_path / "link-runtime"
    link.symlink_to(tmp_path)
    with pytest.raises(LaunchError) as caught:
        jobs.start(jobs.data("touch ran", runtime_dir=str(link)))
    assert caught.value.oarexec_code == 8
    assert not (jobs.workdir / "ran").exists()


def test_walltime_and_signal_names():
    from oar_appliance.nodeside.oarexec import walltime_hms
    from oar_appliance.nodeside.runtime import signal_number

    assert [walltime_hms(s) for s in (0, 59, 3600, 5400, 90061)] == [
        "0:00:00", "0:00:59", "1:00:00", "1:30:00", "25:01:01"]
    assert signal_number("SIGUSR2") == signal_number("usr2") == signal_number("12") == signal_number(12) == 12
    for bad in ("SIGNOPE", "999", ""):
        with pytest.raises(ValueError):
            signal_number(bad)


def test_a_failure_of_oarexec_after_ready_is_still_reported(jobs, report_server):
    """An internal failure cannot be caused from outside (the job data is checked before
    the ready line), so it is simulated: a detached oarexec whose job phase raises."""
    data = jobs.data("touch ran")
    script = (
        "import json, sys\n"
        "from oar_appliance.nodeside import job_runner, oarexec\n"
        "def broken(self):\n"
        "    raise RuntimeError('simulated failure')\n"
        "job_runner.JobRunner._run_job = broken\n"
        "sys.exit(oarexec.main())\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(data).encode(),
                          capture_output=True, timeout=30)
    assert proc.returncode == 0 and READY_LINE.encode() in proc.stdout
    jobs.started.append(jobs.files(data))
    report = report_server.wait_report()
    assert report["oarexec_code"] == 70 and report["user_status"] is None
    assert not (jobs.workdir / "ran").exists()


def test_job_data_of_the_wrong_type_is_code_30(jobs):
    for key, value in (("walltime", "1:00:00"), ("prologue", 5), ("interactive", 1),
                       ("node_file_lines", "node-1"), ("array_id", True), ("node_devices", "/dev/zero"),
                       ("devices", ["dev/full"])):
        with pytest.raises(LaunchError) as caught:
            jobs.start(jobs.data("true", **{key: value}))
        assert caught.value.oarexec_code == 30 and key in str(caught.value), key


def test_an_unexpected_error_before_ready_is_one_line(jobs):
    """A bug before the ready line (simulated: nothing outside can cause one) gives one
    #ERROR line and exit code 70, never a traceback."""
    script = (
        "import sys\n"
        "from oar_appliance.nodeside import oarexec\n"
        "def broken(data, environ):\n"
        "    raise RuntimeError('simulated failure')\n"
        "oarexec.prepare = broken\n"
        "sys.exit(oarexec.main())\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(jobs.data("true")).encode(),
                          capture_output=True, timeout=30)
    assert proc.returncode == 70
    assert proc.stderr.decode() == "#ERROR: oarexec failed: RuntimeError: simulated failure\n"



def test_kill_sends_term_once_then_kill(jobs, report_server):
    command = "trap 'echo term >> terms' TERM; touch ready; while :; do sleep 0.1; done"
    files = jobs.start(jobs.data(command, kill_grace=1))
    wait_for(lambda: (jobs.workdir / "ready").exists(), what="the job to be ready")
    assert jobs.jobctl(files, "kill").returncode == 0
    report = report_server.wait_report()
    assert report["oarexec_code"] == 3
    # the shell survived TERM (its trap), so KILL ended it after the grace time
    assert os.WIFSIGNALED(report["user_status"]) and os.WTERMSIG(report["user_status"]) == signal.SIGKILL
    assert (jobs.workdir / "terms").read_text() == "term\n"


JOB_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0mHf5vd1yn6XBkCqkMrhb8v3BFn2tOcWXCJ2yWkSxO oarsub-k"


def test_job_key_is_written_for_the_nodes_sshd(jobs, report_server):
    files = jobs.start(jobs.data("exit 0", job_key=JOB_KEY))
    with open(files.job_key) as stream:
        assert stream.read() == " ".join(JOB_KEY.split()[:2]) + "\n"  # the comment is not kept
    assert os.stat(files.job_key).st_mode & 0o777 == 0o644  # sshd's key lister runs as oar
    assert report_server.wait_report()["oarexec_code"] == 0
    assert files.job_key in files.job_files()  # jobctl clean removes it with the others


def test_a_job_key_that_is_not_a_key_is_code_30(jobs):
    for bad in ("ssh-ed25519", "ssh-ed25519 AAAA\nssh-rsa BBBB", "command=\"x\" ssh-ed25519 AAAA"):
        with pytest.raises(LaunchError) as failure:
            jobs.start(jobs.data("exit 0", job_key=bad))
        assert failure.value.oarexec_code == 30 and "job_key" in failure.value.stderr
