"""oarsh_shell: the user's shell inside a job, from the env file oarexec writes (no database).

Every test runs the module as a process of its own, with a real shell reading its
commands from stdin (no terminal).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys

import pytest

NOT_FOUND, USAGE, SHELL_START_FAILED, PERMISSION = 6, 2, 7, 8
JOB = 42


@pytest.fixture
def runtime(tmp_path):
    directory = tmp_path / "run"
    directory.mkdir()
    return directory


def write_env(runtime, workdir, job_id=JOB):
    (runtime / f"job_{job_id}.env").write_text(
        f"OAR_JOB_ID={job_id}\nOAR_WORKDIR={workdir}\nOAR_NODEFILE={runtime}/nodes\n"
        "OAR_PROJECT_NAME=a=b c\nnot a variable line\n")


def shell(runtime, *options, script="", shell_path="/bin/sh", cwd=None, job_id=JOB):
    env = dict(os.environ, SHELL=shell_path)
    env.pop("OAR_JOB_ID", None)
    done = subprocess.run(
        [sys.executable, "-m", "oar_appliance.nodeside.oarsh_shell", "--runtime-dir", str(runtime),
         *options, str(job_id)],
        input=script, capture_output=True, text=True, timeout=60, env=env, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


def status_file(runtime, job_id=JOB):
    return runtime / f"job_{job_id}.shell.status"


def test_shell_has_the_job_environment_and_directory(runtime, tmp_path):
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    write_env(runtime, workdir)
    rc, out, err = shell(runtime, script='echo "$OAR_JOB_ID|$OAR_PROJECT_NAME"; pwd; exit 3\n')
    assert (rc, err) == (3, "")
    assert out.splitlines() == [f"{JOB}|a=b c", str(workdir)]
    assert not status_file(runtime).exists()  # only the interactive job's own shell reports


def test_interactive_shell_writes_its_status(runtime, tmp_path):
    write_env(runtime, tmp_path)
    rc, out, _ = shell(runtime, "--interactive", script="echo $OAR_JOB_ID; exit 3\n")
    assert rc == 3 and out == f"{JOB}\n"
    assert status_file(runtime).read_text() == "3\n"
    assert sorted(p.name for p in runtime.iterdir()) == [f"job_{JOB}.env", f"job_{JOB}.shell.status"]


def test_shell_killed_by_a_signal(runtime, tmp_path):
    write_env(runtime, tmp_path)
    rc, _, _ = shell(runtime, "--interactive", script="kill -TERM $$\necho never\n")
    assert rc == 128 + 15
    assert status_file(runtime).read_text() == "143\n"


def test_uses_bash_without_shell_variable(runtime, tmp_path):
    write_env(runtime, tmp_path)
    rc, out, _ = shell(runtime, script='echo "$BASH_VERSION" | cut -c1\n', shell_path="")
    assert rc == 0 and out.strip().isdigit()


def test_missing_env_file(runtime):
    rc, out, err = shell(runtime, "--interactive", script="exit 0\n", job_id=7)
    assert rc == NOT_FOUND and out == ""
    assert err.startswith("#ERROR: job 7 has no environment on this node") and err.count("\n") == 1
    # oarexec must not wait for a shell that never started
    assert status_file(runtime, 7).read_text() == f"{SHELL_START_FAILED}\n"


def test_shell_that_cannot_start(runtime, tmp_path):
    write_env(runtime, tmp_path)
    rc, _, err = shell(runtime, "--interactive", shell_path=str(tmp_path / "no-such-shell"))
    assert rc == SHELL_START_FAILED and err.startswith("#ERROR: cannot start the shell")
    assert status_file(runtime).read_text() == f"{SHELL_START_FAILED}\n"


def test_missing_workdir_starts_in_the_current_directory(runtime, tmp_path):
    write_env(runtime, tmp_path / "gone")
    rc, out, err = shell(runtime, script="pwd\n", cwd=str(tmp_path))
    assert rc == 0 and out.strip() == str(tmp_path)
    assert err.startswith("#WARNING: the job's directory")


def test_bad_usage(runtime):
    rc, _, err = shell(runtime, job_id="abc")
    assert rc == USAGE and err.startswith("#ERROR:")


def test_shell_is_hung_up_when_the_job_ends(runtime, tmp_path):
    """oarexec (here a sleep standing for it) ends under the shell: the shell is closed."""
    write_env(runtime, tmp_path)
    oarexec = subprocess.Popen(["sleep", "60"])
    shell_process = None
    try:
        (runtime / f"oarexec_{JOB}.pid").write_text(f"{oarexec.pid}\n")
        shell_process = subprocess.Popen(
            [sys.executable, "-m", "oar_appliance.nodeside.oarsh_shell", "--runtime-dir", str(runtime),
             "--interactive", str(JOB)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, SHELL="/bin/sh"))
        shell_process.stdin.write("echo started\n")
        shell_process.stdin.flush()  # stdin stays open: the shell waits for more
        assert shell_process.stdout.readline() == "started\n"
        oarexec.kill()
        oarexec.wait()
        shell_process.wait(timeout=30)  # stdin still open: only the hang-up ends the shell
        err = shell_process.stderr.read()
        shell_process.stdin.close()
    finally:
        oarexec.kill()
        oarexec.wait()
        if shell_process is not None and shell_process.poll() is None:
            shell_process.kill()
            shell_process.wait()
    assert shell_process.returncode == 128 + 1  # SIGHUP
    assert "#WARNING: the job has ended: closing its shell" in err
    assert not status_file(runtime).exists()  # nobody waits for it any more


def test_shell_lives_while_the_job_runs(runtime, tmp_path):
    write_env(runtime, tmp_path)
    oarexec = subprocess.Popen(["sleep", "60"])
    try:
        (runtime / f"oarexec_{JOB}.pid").write_text(f"{oarexec.pid}\n")
        rc, out, _ = shell(runtime, "--interactive", script="sleep 1.2; echo still; exit 4\n")
    finally:
        oarexec.kill()
        oarexec.wait()
    assert (rc, out) == (4, "still\n")
    assert status_file(runtime).read_text() == "4\n"


# ----------------------------------------------------------------------------- as root (--user)
# How oarsh connections and site shells enter a job: oarsh_shell runs as root, checks the
# job is the user's, joins its cgroup (here a process-group job: nothing to join; the
# cgroup case is in tests/multinode/test_oarsh.py) and runs the shell or command as the user.


def write_manager(runtime, user, job_id=JOB):
    (runtime / f"job_{job_id}.manager").write_text(
        json.dumps({"manager": {"kind": "process_group"}, "user": user}))


def test_root_mode_runs_as_the_user_on_a_node_without_env_file(runtime, job_account):
    write_manager(runtime, job_account)  # what the preparation of a node leaves there
    rc, out, err = shell(runtime, "--user", job_account,
                         '--command=id -un; echo "$OAR_JOB_ID $OAR_USER $HOME"; echo "$SHELL" | grep -c .')
    home = pwd.getpwnam(job_account).pw_dir
    assert (rc, out.splitlines()) == (0, [job_account, f"{JOB} {job_account} {home}", "1"]), err


def test_root_mode_writes_the_status_in_a_root_owned_directory(runtime, job_account):
    write_env(runtime, "/")
    write_manager(runtime, job_account)
    assert os.stat(runtime).st_uid == 0 and not os.stat(runtime).st_mode & 0o022
    rc, out, err = shell(runtime, "--user", job_account, "--interactive", script="id -un; exit 4\n")
    assert (rc, out) == (4, f"{job_account}\n"), err
    assert status_file(runtime).read_text() == "4\n"
    assert os.stat(status_file(runtime)).st_uid == 0


def test_root_mode_refusals(runtime, job_account):
    rc, _, err = shell(runtime, "--user", job_account, "--command=true")
    assert (rc, err) == (NOT_FOUND, f"#ERROR: job {JOB} is not running on this node\n")
    write_manager(runtime, "root")
    rc, _, err = shell(runtime, "--user", job_account, "--command=true")
    assert (rc, err) == (PERMISSION, f"#ERROR: job {JOB} is not {job_account}'s\n")
    write_manager(runtime, job_account)
    os.chmod(runtime, 0o777)
    try:
        rc, _, err = shell(runtime, "--user", job_account, "--command=true")
    finally:
        os.chmod(runtime, 0o755)
    assert rc == PERMISSION and "is writable by others" in err
