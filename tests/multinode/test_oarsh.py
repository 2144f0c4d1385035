"""oarsh, oarcp and the shells of oarsub -I/-C across test hosts (tests/testbed.py with
``oar_node=True``: each host's sshd runs the oar_node role's rendered configuration, the
role's sudo rules are installed, the bed's account plays the OAR account).

Jobs are started the way the server starts them: oarexec through SshConnector on each of
the job's hosts (one oarexec per host stands in for the per-node preparation), with a real
cgroup (cpuset, memory, freezer) per host under a base of the test's own.  "Inside the job"
is a process of the job's user put into the job's cgroup on its host, as oarexec does for
the job's command, in the namespaces of the host's sshd.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile

import pexpect
import pytest

from oar_appliance.execution import SshConnector
from oar_appliance.nodeside import cgroups
from tests.nodeside.conftest import ReportServer, wait_for
from tests.testbed import ensure_account

USER, OTHER = "oartbu1", "oartbu2"
TIMEOUT = 60
NOT_FOUND, PERMISSION = 6, 8


@pytest.fixture(scope="module")
def bed(testbed_factory):
    if cgroups.detect() is None:
        pytest.skip("no cgroup hierarchy with cpuset, memory and freezer on this machine")
    if not (shutil.which("sudo") and shutil.which("visudo")):
        pytest.skip("sudo is missing (apt-get install sudo): oarsh runs through the node role's sudo rules")
    node_bed = testbed_factory(3, oar_node=True)
    for name in (USER, OTHER):
        ensure_account(name)
    try:
        yield node_bed
    finally:
        node_bed.close()


@pytest.fixture(scope="module")
def report(bed):
    server = ReportServer(address=bed.gateway)
    yield server
    server.stop()


class Jobs:
    """Jobs started on the bed's hosts, cleaned (jobctl clean, cgroup bases removed) at
    the end even when the test failed."""

    def __init__(self, bed, report, workdir):
        self.bed, self.report, self.workdir = bed, report, workdir
        self.connector = SshConnector(ssh_command=["ssh", "-F", bed.ssh_config],
                                      node_python=[os.path.join(bed.venv_dir, "bin", "python3")])
        self.started: list[tuple[str, int]] = []
        self.base = f"/oartb{os.getpid()}"

    def runtime(self, host: str) -> str:
        return os.path.join(self.bed.host(host).directory, "runtime")

    def start(self, job_id: int, user: str, hosts: dict[str, list[int]], **extra) -> None:
        for host, cpus in hosts.items():
            data = {"job_id": job_id, "user": user, "command": "sleep 600", "launching_directory": self.workdir,
                    "challenge": "c", "server": {"host": self.bed.gateway, "port": self.report.port},
                    "runtime_dir": self.runtime(host), "cpuset": cpus, "hosts": sorted(hosts),
                    "node_file_lines": sorted(hosts), "walltime": 600, "kill_grace": 1,
                    "job_resource_manager": "cgroup", "cgroup_base": f"{self.base}_{host}",
                    "stdout_file": "/dev/null", "stderr_file": "/dev/null", **extra}
            self.started.append((host, job_id))
            self.connector.start_oarexec(host, data, timeout=TIMEOUT)

    def clean(self, host: str, job_id: int) -> None:
        result = self.connector.jobctl(host, "clean", job_id, self.runtime(host))
        assert result.rc == 0, result.stderr

    def cleanup(self) -> None:
        for host, job_id in self.started:
            self.connector.jobctl(host, "clean", job_id, self.runtime(host))
        for mount in (cgroups.detect() or ("", {}))[1].values():
            for host in self.bed.names:
                path = os.path.join(mount, f"{self.base}_{host}".lstrip("/"))
                if os.path.isdir(path):
                    os.rmdir(path)

    def cgroup_paths(self, host: str, job_id: int) -> list[str]:
        with open(os.path.join(self.runtime(host), f"job_{job_id}.manager")) as stream:
            described = json.load(stream)["manager"]
        return list(described.get("paths", {}).values()) or [described["path"]]


@pytest.fixture
def jobs(bed, report):
    # the job's user must reach its directory: not under pytest's private tmp_path
    workdir = tempfile.mkdtemp(prefix="work-", dir=bed.directory)
    account = pwd.getpwnam(USER)
    os.chown(workdir, account.pw_uid, account.pw_gid)
    os.chmod(workdir, 0o755)
    manager = Jobs(bed, report, workdir)
    try:
        yield manager
    finally:
        manager.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


JOB_IDS = iter(range(os.getpid() % 10000 * 100 + 1, 10**9))


def user_env(bed, host: str, **extra) -> dict[str, str]:
    return {"PATH": f"{bed.venv_dir}/bin:/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8",
            "OARCONFFILE": bed.conf_path(host), **extra}


def as_user(bed, host: str, user: str, command: str, cgroups_to_join=(), **extra_env):
    """Run ``command`` (sh -c) as ``user`` on ``host`` (the namespaces of its sshd: network,
    mounts, hostname, cgroups), inside the cgroups given (a process of a job, as oarexec
    puts the job's command there) or outside any job."""
    account = pwd.getpwnam(user)
    join = "".join(f"echo $$ > {shlex.quote(path)}/cgroup.procs && " for path in cgroups_to_join)
    script = (join + f"exec setpriv --reuid={account.pw_uid} --regid={account.pw_gid} --clear-groups "
              f"-- sh -c {shlex.quote(command)}")
    argv = ["nsenter", "-t", str(bed.host(host).sshd_pid), "--net", "--mount", "--uts", "--cgroup",
            "--", "sh", "-c", script]
    return subprocess.run(argv, env=user_env(bed, host, **extra_env), cwd="/",
                          capture_output=True, text=True, timeout=TIMEOUT)


def in_job(bed, jobs, host, job_id, command, user=USER, **extra_env):
    return as_user(bed, host, user, command, jobs.cgroup_paths(host, job_id), **extra_env)


def last_error(stderr: str) -> str:
    return [line for line in stderr.splitlines() if line.strip()][-1]


PROBE = "id -un; hostname; echo job=$OAR_JOB_ID; grep Cpus_allowed_list /proc/self/status; cat /proc/self/cgroup"


def test_oarsh_lands_inside_the_job_on_another_node(bed, jobs):
    job = next(JOB_IDS)
    jobs.start(job, USER, {"node1": [0], "node2": [1]})
    result = in_job(bed, jobs, "node1", job, f"oarsh node2 '{PROBE}'")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [USER, "node2", f"job={job}", "Cpus_allowed_list:\t1"]
    cpuset = next(line for line in lines[4:] if ":cpuset:" in line)
    assert cpuset.endswith(f":cpuset:{jobs.base}_node2/{USER}_{job}")
    # the node1 side's own job cgroup is a different one: the connection really moved
    assert not any(f"{jobs.base}_node1" in line for line in lines[4:])
    # the remote command's exit status comes back
    assert in_job(bed, jobs, "node1", job, "oarsh node2 'exit 7'").returncode == 7


def test_oarsh_refusals(bed, jobs):
    job, other_job = next(JOB_IDS), next(JOB_IDS)
    jobs.start(job, USER, {"node1": [0], "node2": [1]})
    jobs.start(other_job, OTHER, {"node1": [1]})

    # a node outside the job
    outside = in_job(bed, jobs, "node1", job, "oarsh node3 true")
    assert (outside.returncode, last_error(outside.stderr)) == (
        NOT_FOUND, f"#ERROR: oarsh: job {job} has no resources on node3")
    # another user, from their own job: the job's nodes are not theirs
    other = in_job(bed, jobs, "node1", other_job, "oarsh node2 true", user=OTHER)
    assert (other.returncode, last_error(other.stderr)) == (
        NOT_FOUND, f"#ERROR: oarsh: job {other_job} has no resources on node2")
    # ... and from no job at all
    nojob = as_user(bed, "node1", OTHER, "oarsh node2 true")
    assert nojob.returncode == PERMISSION
    assert last_error(nojob.stderr).startswith(f"#ERROR: oarsh: {OTHER} is not inside a job here")
    # the OAR account's key is not theirs, nor is another oar.conf for the privileged half
    direct = as_user(bed, "node1", OTHER, f"ssh -F {bed.ssh_config} node2 true")
    assert direct.returncode == 255
    forged = as_user(bed, "node1", OTHER, f"sudo -n -u {bed.account} {bed.venv_dir}/bin/oarsh --privileged "
                                          f"{bed.conf_path('node3')}x -- node2 true")
    assert forged.returncode != 0 and "password is required" in forged.stderr
    # options that would change where or how the OAR account's ssh connects
    for option in ("-p 22", "-o ProxyCommand=true", "-F /dev/null", "-L 1:a:2", "-E /tmp/log"):
        refused = in_job(bed, jobs, "node1", job, f"oarsh {option} node2 true")
        assert refused.returncode == 2 and last_error(refused.stderr).startswith("#ERROR: oarsh:"), option


def test_job_key_reaches_the_job_and_is_gone_after_the_end(bed, jobs):
    holder = pwd.getpwnam(OTHER)  # whoever holds the key, even outside any job
    keys = tempfile.mkdtemp(prefix="keys-", dir=bed.directory)
    os.chown(keys, holder.pw_uid, holder.pw_gid)
    key = os.path.join(keys, "job_key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True, timeout=30)
    os.chown(key, holder.pw_uid, holder.pw_gid)
    job = next(JOB_IDS)
    with open(key + ".pub") as public:
        jobs.start(job, USER, {"node1": [0], "node2": [1]}, job_key=public.read())
    result = as_user(bed, "node3", OTHER, f"oarsh node2 '{PROBE}'", OAR_JOB_KEY_FILE=key)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [USER, "node2", f"job={job}"]
    assert any(line.endswith(f":cpuset:{jobs.base}_node2/{USER}_{job}") for line in lines)
    # -i works too; the key is the job's only: naming another job and user changes nothing
    again = as_user(bed, "node3", OTHER, f"oarsh -i {key} node1 'echo $OAR_JOB_ID; id -un'")
    assert (again.returncode, again.stdout) == (0, f"{job}\n{USER}\n"), again.stderr
    forged = as_user(bed, "node3", OTHER, f"ssh -F {bed.ssh_config} -i {key} -o IdentitiesOnly=yes "
                                          f"-o 'SetEnv=OAR_JOB_ID=1 OAR_JOB_USER=root' node1 'echo $OAR_JOB_ID; id -un'")
    assert (forged.returncode, forged.stdout) == (0, f"{job}\n{USER}\n"), forged.stderr

    jobs.clean("node2", job)
    assert not os.path.exists(os.path.join(jobs.runtime("node2"), f"job_{job}.key.pub"))
    gone = as_user(bed, "node3", OTHER, "oarsh node2 true", OAR_JOB_KEY_FILE=key)
    assert gone.returncode == 255 and "Permission denied" in gone.stderr


def test_oarcp_copies_both_ways(bed, jobs):
    job = next(JOB_IDS)
    jobs.start(job, USER, {"node1": [0], "node2": [1]})
    source = os.path.join(jobs.workdir, "source")
    result = in_job(bed, jobs, "node1", job,
                    f"printf 'line 1\\nline 2\\n' > {source} && oarcp {source} node2:{jobs.workdir}/copied "
                    f"&& oarcp node2:{jobs.workdir}/copied {jobs.workdir}/back")
    assert result.returncode == 0, result.stderr
    for name in ("copied", "back"):
        path = os.path.join(jobs.workdir, name)
        with open(path) as stream:
            assert stream.read() == "line 1\nline 2\n"
        assert pwd.getpwuid(os.stat(path).st_uid).pw_name == USER
    refused = in_job(bed, jobs, "node1", job, f"oarcp -S /bin/true {source} node2:/tmp/x")
    assert refused.returncode == 2 and "-S is not allowed" in refused.stderr


def spawn(argv, env, cwd="/"):
    return pexpect.spawn(argv[0], argv[1:], env=env, cwd=cwd, timeout=30, encoding="utf-8",
                         dimensions=(24, 200))


def site_conf(bed, tmp_path, db_url, runtime_of_head, server_port=6666):
    from tests.conftest import conf_text_for

    path = tmp_path / "oar.conf"
    path.write_text(conf_text_for(db_url) + f'LOG_FILE="{tmp_path}/oar.log"\nOAR_CONNECTOR=ssh\n'
                    f'OPENSSH_CMD="ssh -F {bed.ssh_config}"\nNODE_SSH_USER={bed.account}\n'
                    f'OAR_RUNTIME_DIRECTORY="{runtime_of_head}"\nSERVER_PORT={server_port}\n')
    return path


def test_oarsub_connect_gives_a_shell_in_the_job(bed, jobs, tmp_path):
    """oarsub -C on a site (OAR_CONNECTOR=ssh): a terminal shell on the head node, as the
    job's user, inside its cgroup, with its environment."""
    from tests.jobdata import add_job

    db_url = f"sqlite:///{tmp_path}/oar.sqlite"
    conf = site_conf(bed, tmp_path, db_url, jobs.runtime("node1"))
    env = dict(os.environ, OARCONFFILE=str(conf))
    for argv in (["oar-database", "--create"], ["oar-resources-add", "node1", "node2"]):
        done = subprocess.run([sys.executable, "-m", f"oar_appliance.cli.{argv[0].replace('-', '_')}", *argv[1:]],
                              env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr
    job = add_job(db_url, job_user=USER, state="Running", resources=[1, 2], launching_directory=jobs.workdir)
    jobs.start(job, USER, {"node1": [0], "node2": [1]})

    shell = spawn([sys.executable, "-m", "oar_appliance.cli.oarsub", "-C", str(job)], env)
    try:
        shell.expect(f"Connect to OAR job {job} via the node node1")
        shell.sendline("echo me=$(id -un) at=$(hostname) job=$OAR_JOB_ID; tty; grep cpuset /proc/self/cgroup")
        shell.expect(f"me={USER} at=node1 job={job}")
        shell.expect("/dev/pts/")
        shell.expect(f"cpuset:{jobs.base}_node1/{USER}_{job}")
        shell.sendline("exit 5")
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    assert shell.exitstatus == 5
    # not the job's own shell: the job goes on
    assert not os.path.exists(os.path.join(jobs.runtime("node1"), f"job_{job}.shell.status"))


def test_oarsub_interactive_shell_ends_its_job(bed, jobs, report, tmp_path, request):
    """oarsub -I on a site: once the server says STARTED, the shell on the head node; its
    exit status (written by the root side of oarsh_shell in the root-owned runtime
    directory) ends the job through oarexec's report."""
    from tests.server_answers import Answerer, NotificationSink

    sink = NotificationSink().__enter__()  # takes oarsub's notification, as the server would
    request.addfinalizer(sink.stop)
    db_url = f"sqlite:///{tmp_path}/oar.sqlite"
    conf = site_conf(bed, tmp_path, db_url, jobs.runtime("node1"), sink.port)
    env = dict(os.environ, OARCONFFILE=str(conf))
    for argv in (["oar_database", "--create"], ["oar_resources_add", "node1"]):
        done = subprocess.run([sys.executable, "-m", f"oar_appliance.cli.{argv[0]}", *argv[1:]],
                              env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr
    user = pwd.getpwuid(os.getuid()).pw_name  # oarsub's caller owns the job

    def reply(job_id, info_type):  # what the launcher does, then the server's answer
        jobs.start(job_id, user, {"node1": [0]}, command="", interactive=True)
        return ("STARTED", "node1")

    with Answerer(db_url, reply):
        shell = spawn([sys.executable, "-m", "oar_appliance.cli.oarsub", "-I", "-l", "/resource_id=1"], env,
                      cwd=jobs.workdir)
        try:
            shell.expect(r"Connect to OAR job (\d+) via the node node1")
            job = int(shell.match.group(1))
            shell.sendline("echo job=$OAR_JOB_ID interactive=$OAR_JOB_INTERACTIVE; grep cpuset /proc/self/cgroup")
            shell.expect(f"job={job} interactive=1")
            shell.expect(f"cpuset:{jobs.base}_node1/{user}_{job}")
            shell.sendline("exit 3")
            shell.expect(pexpect.EOF)
        finally:
            shell.close(force=True)
    assert shell.exitstatus == 3
    status = os.path.join(jobs.runtime("node1"), f"job_{job}.shell.status")
    assert os.stat(jobs.runtime("node1")).st_uid == 0
    message = report.wait_report()
    while message["job_id"] != job:  # a report of an earlier test's job
        message = report.wait_report()
    assert (message["job_id"], message["oarexec_code"], message["user_status"]) == (job, 0, 3 << 8)
    with open(status) as stream:
        assert stream.read() == "3\n"
    wait_for(lambda: not os.path.exists(os.path.join(jobs.runtime("node1"), f"oarexec_{job}.pid")),
             what="oarexec's end")


def test_oarsh_from_a_job_without_cgroups(bed, jobs):
    """JOB_RESOURCE_MANAGER=none: the job is found from the session oarexec recorded for
    it (job_<id>.pgid), which the job's command and its children are in."""
    job = next(JOB_IDS)
    out = os.path.join(jobs.workdir, "from-the-job")
    command = (f"OARCONFFILE={bed.conf_path('node1')} {bed.venv_dir}/bin/oarsh node2 "
               f"'id -un; hostname; echo job=$OAR_JOB_ID' > {out} 2>&1; echo rc=$? >> {out}; sleep 600")
    jobs.start(job, USER, {"node2": []}, job_resource_manager="none")
    jobs.start(job, USER, {"node1": []}, job_resource_manager="none", command=command)
    wait_for(lambda: os.path.exists(out) and "rc=" in open(out).read(), timeout=TIMEOUT, what="oarsh's output")
    with open(out) as stream:
        assert stream.read().splitlines() == [USER, "node2", f"job={job}", "rc=0"]
    # a process of the user outside the job's session is not in the job
    outside = as_user(bed, "node1", USER, "oarsh node2 true")
    assert outside.returncode == PERMISSION, outside.stderr
