"""oarsh on a site (tests/multinode/site.py) whose hosts run the oar_node role's sshd and
sudo rules: jobs started by a real oar-server over ssh (every node prepared, oarexec on
the head node), oarsh from the job's own command to its other node, job keys from oarsub."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pexpect
import pytest

from tests.multinode.conftest import NODE_MEMORY
from tests.multinode.site import Site, missing_sudo, wait_for
from tests.multinode.test_oarsh import as_user


@pytest.fixture(scope="module")
def oarsh_site(testbed_registry):
    """A site whose hosts' sshd run the node role's configuration (``oar_node=True``), each
    host's oar.conf naming the site's runtime directory."""
    from tests.testbed import Testbed

    reason = missing_sudo()
    if reason:
        pytest.skip(reason)
    runtime = tempfile.mkdtemp(prefix=f"oartb{os.getpid()}-runtime-")
    os.chmod(runtime, 0o755)
    bed = site = None
    try:
        bed = Testbed(3, registry=testbed_registry, private_dirs=[runtime], memory_limit=NODE_MEMORY,
                      oar_node=True).start()
        for host in bed.hosts:
            bed.write_oar_conf(host.name, OAR_RUNTIME_DIRECTORY=runtime)
        site = Site(bed, runtime, "sqlite:///")
        site.setup()
        site.start_server()
        yield site
    finally:
        if site is not None:
            site.close()
        if bed is not None:
            bed.close()
        shutil.rmtree(runtime, ignore_errors=True)


def job_hosts(site, job_id: int) -> list[str]:
    return sorted(host for (host,) in site.sql(
        'SELECT DISTINCT r."network_address" FROM "resources" r JOIN "assigned_resources" a '
        'ON a."resource_id" = r."resource_id" JOIN "jobs" j ON j."assigned_moldable_job" = a."moldable_job_id" '
        'WHERE j."job_id" = ?', [job_id]))


def oarsh_line(site, command: str) -> str:
    """A shell line of the job running oarsh on the job's other node (its oar.conf: the
    one of the host it runs on)."""
    return (f"OARCONFFILE={site.bed.directory}/$(hostname)/oar.conf {site.bed.venv_dir}/bin/oarsh "
            f"$(sort -u $OAR_NODEFILE | grep -v \"^$(hostname)$\" | head -1) '{command}'")


def test_oarsh_from_a_job_of_the_server_to_its_prepared_node(oarsh_site):
    site = oarsh_site
    out = site.work / "oarsh.out"
    job_id = site.oarsub("-l", "/nodes=2/core=1",
                         oarsh_line(site, "id -un; hostname; echo job=$OAR_JOB_ID; "
                                          "grep Cpus_allowed_list /proc/self/status; grep cpuset /proc/self/cgroup")
                         + f" > {out} 2>&1; echo rc=$? >> {out}")
    site.wait_state(job_id, "Terminated", "Error")
    lines = out.read_text().splitlines()
    assert lines[-1] == "rc=0", lines
    user, host, job, cpus, cpuset = lines[:5]
    head, other = job_hosts(site, job_id)  # oarexec runs on the first: oarsh went to the other
    assert (user, host, job) == (site.user, other, f"job={job_id}")
    assert cpus.startswith("Cpus_allowed_list:\t")
    assert cpuset.endswith(f":cpuset:/oar/{site.user}_{job_id}")
    assert site.state(job_id) == "Terminated"


def test_job_key_of_oarsub_reaches_every_node_and_is_removed(oarsh_site):
    site = oarsh_site
    key = site.work / "job.key"
    job_id = site.oarsub("-l", "/nodes=2/core=1", "-k", "-e", str(key), "sleep 300")
    site.wait_state(job_id, "Running")
    hosts = job_hosts(site, job_id)
    outside = next(h.name for h in site.bed.hosts if h.name not in hosts)
    for host in hosts:  # from a host outside the job, with the key only
        result = as_user(site.bed, outside, site.user, f"oarsh {host} 'echo $OAR_JOB_ID; id -un'",
                         OAR_JOB_KEY_FILE=str(key))
        assert (result.returncode, result.stdout) == (0, f"{job_id}\n{site.user}\n"), (host, result.stderr)
    assert site.cmd("oardel", str(job_id)).rc == 0
    site.wait_state(job_id, "Terminated", "Error")
    for host in hosts:
        private = site.bed.private_dir(host, site.runtime_dir)
        wait_for(lambda: not os.path.exists(os.path.join(private, f"job_{job_id}.key.pub")),
                 what=f"the job key removed from {host}")
        gone = as_user(site.bed, outside, site.user, f"oarsh {host} true", OAR_JOB_KEY_FILE=str(key))
        assert gone.returncode == 255 and "Permission denied" in gone.stderr


def test_oarsub_interactive_through_the_server(oarsh_site):
    """oarsub -I on the site: the server launches the job, oarsub connects to the head
    node's sshd as the OAR account and the shell runs there inside the job; its exit ends
    the job."""
    site = oarsh_site
    env = dict(os.environ, OARCONFFILE=str(site.conf), PYTHONPATH=os.getcwd())
    shell = pexpect.spawn(sys.executable, ["-m", "oar_appliance.cli.oarsub", "-I", "-l", "/nodes=1/core=1"],
                          env=env, cwd=str(site.work), timeout=60, encoding="utf-8", dimensions=(24, 200))
    try:
        shell.expect(r"Connect to OAR job (\d+) via the node (node\d)")
        job_id, head = int(shell.match.group(1)), shell.match.group(2)
        shell.sendline("echo at=$(hostname) job=$OAR_JOB_ID; grep cpuset /proc/self/cgroup")
        shell.expect(f"at={head} job={job_id}")
        shell.expect(f"cpuset:/oar/root_{job_id}")
        shell.sendline("exit 3")
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    assert shell.exitstatus == 3
    site.wait_state(job_id, "Terminated", "Error")
    assert site.sql('SELECT "exit_code" FROM "jobs" WHERE "job_id" = ?', [job_id]) == [(3 << 8,)]
