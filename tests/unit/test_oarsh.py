"""The pieces of oarsh that need no root: option allow-list, job from cgroup lines, the
node's decision about a connection, job keys for sshd, the commands built.  The whole path
(sudo, sshd, cgroups) is in tests/multinode/test_oarsh.py."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys

import pytest

from oar_appliance import oarsh
from oar_appliance.cli import oarcp
from oar_appliance.cli import oarsh as oarsh_cli
from oar_appliance.errors import PermissionDeniedError, UsageError
from oar_appliance.nodeside import oarsh_login
from oar_appliance.nodeside.oarsh_login import Entry

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0mHf5vd1yn6XBkCqkMrhb8v3BFn2tOcWXCJ2yWkSxO"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMXrYdh3dGcSZbzfYu6sbc0l0EvzDjlR3R5QX2jKe0Ja"
CONFIG = {"OPENSSH_CMD": "ssh", "OARSH_OPENSSH_DEFAULT_OPTIONS": "-oProxyCommand=none -oPermitLocalCommand=no",
          "NODE_SSH_USER": "oar", "NODE_PYTHON": "python3", "NODE_COMMAND_PREFIX": "sudo -n"}


# ---------------------------------------------------------------- ssh options


def test_plain_host_and_command():
    request = oarsh.parse_arguments(["node2", "ls", "-l", "/"])
    assert (request.host, request.command, request.options, request.identity) == ("node2", ["ls", "-l", "/"], [], None)


def test_safe_options_pass_as_given():
    request = oarsh.parse_arguments(["-tq", "-o", "ConnectTimeout=5", "-oServerAliveInterval=10", "-i", "key",
                                     "--", "node2", "hostname"])
    assert request.options == ["-t", "-q", "-oConnectTimeout=5", "-oServerAliveInterval=10"]
    assert (request.identity, request.host, request.command) == ("key", "node2", ["hostname"])


def test_what_scp_adds_is_accepted():
    argv = ["-x", "-oPermitLocalCommand=no", "-oClearAllForwardings=yes", "-oRemoteCommand=none",
            "-oRequestTTY=no", "-oForwardAgent=no", "-l", "alice", "--", "node2", "scp -t /tmp/x"]
    request = oarsh.parse_arguments(argv, caller="alice")
    assert (request.host, request.command) == ("node2", ["scp -t /tmp/x"])


@pytest.mark.parametrize("argv", [
    ["-p", "22", "node2"], ["-p22", "node2"], ["-F", "/dev/null", "node2"], ["-E", "/tmp/log", "node2"],
    ["-L", "1:a:2", "node2"], ["-R", "1:a:2", "node2"], ["-D", "1080", "node2"], ["-J", "x", "node2"],
    ["-W", "a:1", "node2"], ["-A", "node2"], ["-S", "/tmp/ctl", "node2"], ["-o", "ProxyCommand=sh", "node2"],
    ["-o", "Port=22", "node2"], ["-o", "SetEnv=OAR_JOB_ID=1", "node2"], ["-oForwardAgent=yes", "node2"],
    ["-o", "ConnectTimeout=x", "node2"], ["-tL", "1:a:2", "node2"], ["-o"], [], ["-t"],
    ["-l", "root", "node2"], ["root@node2"], ["-node2"], ["node2;reboot"],
])
def test_refused_arguments(argv):
    with pytest.raises(UsageError, match="^oarsh: "):
        oarsh.parse_arguments(argv, caller="alice")


def test_own_login_is_accepted_and_dropped():
    assert oarsh.parse_arguments(["alice@node2", "true"], caller="alice").host == "node2"


# ---------------------------------------------------------------- the job of the caller


def test_job_from_cgroup_lines():
    lines = ["12:pids:/user.slice", "5:cpuset:/oar/alice_42\n", "4:memory:/oar/alice_42", "0::/user.slice"]
    assert oarsh.job_from_cgroups(lines, "alice") == 42
    assert oarsh.job_from_cgroups(lines, "bob") is None  # another user's cgroup name is not theirs
    assert oarsh.job_from_cgroups(["3:cpuset:/oartb1_node1/ali_ce_7"], "ali_ce") == 7
    assert oarsh.job_from_cgroups(["3:cpuset:/oar/alice_42x", "2:memory:/alice_42/sub"], "alice") == 42
    assert oarsh.job_from_cgroups(["3:cpuset:/"], "alice") is None


def test_job_from_sessions_follows_the_ancestors(tmp_path):
    import json

    me = pwd.getpwuid(os.getuid()).pw_name
    session = os.getsid(0)
    (tmp_path / "job_7.pgid").write_text(f"{os.getpgid(0)} {session}\n")
    (tmp_path / "job_7.manager").write_text(json.dumps({"manager": {"kind": "process_group"}, "user": me}))
    (tmp_path / "job_8.pgid").write_text(f"1 {session}\n")  # another user's job: never chosen
    (tmp_path / "job_8.manager").write_text(json.dumps({"manager": {}, "user": me + "x"}))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert oarsh.job_from_sessions(str(tmp_path), me, child.pid) == 7
        assert oarsh.job_from_sessions(str(tmp_path), me + "x", os.getpid()) == 8
        assert oarsh.job_from_sessions(str(tmp_path), "nobody-here", child.pid) is None
    finally:
        child.kill()
        child.wait()
    assert oarsh.job_from_sessions(str(tmp_path / "missing"), me, os.getpid()) is None


# ---------------------------------------------------------------- commands built


def test_node_argv_names_the_job_with_setenv():
    request = oarsh.parse_arguments(["-t", "node2", "hostname"])
    argv = oarsh.node_argv(CONFIG, request, 42, "alice")
    assert argv == ["ssh", "-p", "6667", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-l", "oar",
                    "-oProxyCommand=none", "-oPermitLocalCommand=no",
                    "-o", "SetEnv=OAR_JOB_ID=42 OAR_JOB_USER=alice", "-t", "--", "node2", "hostname"]
    with pytest.raises(UsageError, match="bad user name"):
        oarsh.node_argv(CONFIG, request, 42, "alice OAR_JOB_ID=1")
    shell = oarsh.job_shell_argv(dict(CONFIG, OPENSSH_CMD="ssh -p 2222"), "node1", 5, "bob", True, True)
    assert shell[:2] == ["ssh", "-p"] and shell.count("-p") == 1
    assert "SetEnv=OAR_JOB_ID=5 OAR_JOB_USER=bob OAR_SHELL_MODE=interactive" in shell and "-t" in shell


def test_job_key_argv(tmp_path):
    key = tmp_path / "key"
    key.write_text("secret")
    argv = oarsh.job_key_argv(CONFIG, oarsh.parse_arguments(["node2"]), str(key))
    assert argv[argv.index("-i") + 1] == str(key) and "IdentitiesOnly=yes" in argv and argv[-2:] == ["--", "node2"]
    with pytest.raises(Exception, match="cannot read the job key"):
        oarsh.job_key_argv(CONFIG, oarsh.parse_arguments(["node2"]), str(tmp_path / "missing"))


def test_user_side_goes_through_sudo_or_the_job_key(tmp_path):
    conf = tmp_path / "oar.conf"
    conf.write_text('NODE_SSH_USER="oar"\n')
    environ = {"OARCONFFILE": str(conf)}
    argv = oarsh_cli.user_side(["node2", "true"], environ, "/opt/oar/bin/oarsh")
    assert argv == ["sudo", "-n", "-u", "oar", "/opt/oar/bin/oarsh", "--privileged", str(conf), "--", "node2", "true"]
    key = tmp_path / "key"
    key.write_text("k")
    keyed = oarsh_cli.user_side(["node2", "true"], dict(environ, OAR_JOB_KEY_FILE=str(key)), "/x/oarsh")
    assert keyed[0] == "ssh" and str(key) in keyed and "sudo" not in keyed


def test_privileged_side_needs_sudo_and_a_plain_conf_path(tmp_path):
    conf = tmp_path / "oar.conf"
    conf.write_text('NODE_SSH_USER="oar"\n')
    with pytest.raises(PermissionDeniedError, match="through sudo only"):
        oarsh_cli.privileged_side([str(conf), "--", "node2"], {"SUDO_USER": "alice"})
    for argv in ([f"{conf} x", "--", "node2"], ["oar.conf", "--", "node2"], [str(conf), "node2"]):
        with pytest.raises(UsageError):
            oarsh_cli.privileged_side(argv, {"SUDO_USER": "alice"})


def test_oarsh_main_prints_one_error_line(tmp_path, capsys):
    conf = tmp_path / "oar.conf"
    conf.write_text("")
    assert oarsh_cli.main(["-p", "22", "node2"], {"OARCONFFILE": str(conf)}) == 2
    assert capsys.readouterr().err == "#ERROR: oarsh: the ssh option -p is not allowed\n"
    assert oarsh_cli.main([], {"OARCONFFILE": str(conf)}) == 2
    assert capsys.readouterr().err.startswith("#ERROR: oarsh: which host?")
    assert oarsh_cli.main(["--help"], {}) == 0 and "oarsh [ssh options] HOST" in capsys.readouterr().out


def test_oarcp_goes_through_oarsh_only():
    assert oarcp.scp_argv(["-r", "-P", "2", "a", "node2:b"], "/opt/oar/bin/oarcp") == [
        "scp", "-O", "-S", "/opt/oar/bin/oarsh", "-r", "-P", "2", "a", "node2:b"]
    assert oarcp.scp_argv(["-o", "Stuff=1", "-iS", "a", "b"], "/x/oarcp")[-3:] == ["-iS", "a", "b"]  # values
    for argv in (["-S", "/bin/sh", "a", "b"], ["-rS/bin/sh", "a", "b"], ["-pqS", "x", "a", "b"]):
        with pytest.raises(ValueError, match="-S is not allowed"):
            oarcp.scp_argv(argv, "/x/oarcp")


# ---------------------------------------------------------------- the node's side


def test_decide_server_oarsh_and_job_key():
    keys = {tuple(KEY.split()): 42}
    assert oarsh_login.decide({"SSH_ORIGINAL_COMMAND": "python3 -m x"}, [], keys) == Entry("server", "python3 -m x")
    sent = {"SSH_ORIGINAL_COMMAND": "hostname", "OAR_JOB_ID": "7", "OAR_JOB_USER": "alice"}
    assert oarsh_login.decide(sent, [tuple(OTHER_KEY.split())], keys) == Entry("job", "hostname", 7, "alice", "connect")
    assert oarsh_login.decide(dict(sent, OAR_SHELL_MODE="interactive"), [], keys).mode == "interactive"
    # a job key wins over whatever the client sent: its job, its user
    assert oarsh_login.decide(sent, [tuple(KEY.split())], keys) == Entry("job", "hostname", 42, None, "connect")
    for bad in ({"OAR_JOB_ID": "7;x", "OAR_JOB_USER": "alice"}, {"OAR_JOB_ID": "7", "OAR_JOB_USER": "a b"},
                {"OAR_JOB_ID": "7", "OAR_JOB_USER": ""}, {"OAR_JOB_ID": "7", "OAR_JOB_USER": "a", "OAR_SHELL_MODE": "x"}):
        with pytest.raises(UsageError):
            oarsh_login.decide(bad, [], keys)


def test_used_keys_and_authorized_keys(tmp_path):
    assert oarsh_login.used_keys(f"password\npublickey {KEY}\npublickey garbage\n") == [tuple(KEY.split())]
    (tmp_path / "job_42.key.pub").write_text(KEY + "\n")
    (tmp_path / "job_43.key.pub").write_text("not a key\n")
    (tmp_path / "job_44.env").write_text(KEY)
    assert oarsh_login.job_keys(str(tmp_path)) == {tuple(KEY.split()): 42}
    assert oarsh_login.authorized_keys(str(tmp_path)) == [f"restrict,pty {KEY} oar-job-42"]
    assert oarsh_login.job_keys(str(tmp_path / "missing")) == {}


def test_enter_argv_keeps_the_command_one_word():
    config = {"NODE_COMMAND_PREFIX": "sudo -n", "NODE_PYTHON": "/opt/oar/bin/python3"}
    argv = oarsh_login.enter_argv(config, "/run/oar", Entry("job", "-rf x", 7, None, "connect"), "alice")
    assert argv == ["sudo", "-n", "/opt/oar/bin/python3", "-m", "oar_appliance.nodeside.oarsh_shell",
                    "--runtime-dir", "/run/oar", "--user", "alice", "--command=-rf x", "7"]
    shell = oarsh_login.enter_argv(config, "/run/oar", Entry("job", "", 7, "alice", "interactive"), "alice")
    assert shell[-2:] == ["--interactive", "7"]


def test_login_program_lists_keys_for_its_own_account_only(tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    (tmp_path / "job_42.key.pub").write_text(KEY + "\n")
    conf = tmp_path / "oar.conf"
    conf.write_text(f'OAR_RUNTIME_DIRECTORY="{tmp_path}"\n')
    run = [sys.executable, "-m", "oar_appliance.nodeside.oarsh_login", "--config", str(conf), "--authorized-keys"]
    mine = subprocess.run([*run, me], capture_output=True, text=True, timeout=30)
    assert (mine.returncode, mine.stdout) == (0, f"restrict,pty {KEY} oar-job-42\n")
    other = subprocess.run([*run, me + "x"], capture_output=True, text=True, timeout=30)
    assert (other.returncode, other.stdout) == (0, "")


def test_login_program_runs_the_server_command_and_refuses_an_absent_job(tmp_path):
    conf = tmp_path / "oar.conf"
    conf.write_text(f'OAR_RUNTIME_DIRECTORY="{tmp_path}"\n')
    run = [sys.executable, "-m", "oar_appliance.nodeside.oarsh_login", "--config", str(conf)]
    env = {"PATH": os.environ["PATH"], "SSH_ORIGINAL_COMMAND": "echo server $((1 + 1))"}
    server = subprocess.run(run, env=env, capture_output=True, text=True, timeout=30)
    assert (server.returncode, server.stdout) == (0, "server 2\n")
    absent = subprocess.run(run, env=dict(env, OAR_JOB_ID="9", OAR_JOB_USER="alice"),
                            capture_output=True, text=True, timeout=30)
    assert absent.returncode == 6 and absent.stderr.startswith("#ERROR: oarsh: job 9 has no resources on ")
    (tmp_path / "job_9.env").write_text("OAR_USER=bob\n")
    other = subprocess.run(run, env=dict(env, OAR_JOB_ID="9", OAR_JOB_USER="alice"),
                           capture_output=True, text=True, timeout=30)
    assert (other.returncode, other.stderr) == (8, "#ERROR: oarsh: job 9 is not alice's\n")
    # a node prepared for the job (no oarexec, no env file): its manager file names the user
    (tmp_path / "job_10.manager").write_text('{"manager": {"kind": "process_group"}, "user": "carol"}')
    prepared = subprocess.run(run, env=dict(env, OAR_JOB_ID="10", OAR_JOB_USER="alice"),
                              capture_output=True, text=True, timeout=30)
    assert (prepared.returncode, prepared.stderr) == (8, "#ERROR: oarsh: job 10 is not alice's\n")
