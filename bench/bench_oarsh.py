"""Benchmark of oarsh: how long ``oarsh node2 true`` takes from inside a 2-node job.

    .venv/bin/python bench/bench_oarsh.py [--runs 10]      (root: builds a test bed)

A test bed of two hosts with the oar_node role's sshd and sudo rules (tests/testbed.py,
``oar_node=True``); a job started on both with oarexec through SshConnector, with real
cgroups; the same command timed three ways, each from a process of the job's user on
node1:

* ``true`` here (the cost of the harness itself);
* the server's path: ``ssh`` as the OAR account running ``true`` on node2 (sshd, the
  login program ``oarsh_shell``);
* ``oarsh node2 true``: the user part, sudo, the privileged half, ssh, the login program,
  sudo, oarsh_shell joining the job's cgroup as root, the user's ``true``.
"""

from __future__ import annotations

import argparse
import os
import pwd
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.multinode import test_oarsh as harness  # noqa: E402
from tests.nodeside.conftest import ReportServer  # noqa: E402
from tests.testbed import Testbed, ensure_account, missing_requirements  # noqa: E402

JOB = 990001


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    reason = missing_requirements()
    if reason:
        print(f"bench_oarsh: {reason}", file=sys.stderr)
        return 1
    with Testbed(2, oar_node=True) as bed:
        ensure_account(harness.USER)
        report = ReportServer(address=bed.gateway)
        workdir = tempfile.mkdtemp(prefix="work-", dir=bed.directory)
        account = pwd.getpwnam(harness.USER)
        os.chown(workdir, account.pw_uid, account.pw_gid)
        os.chmod(workdir, 0o755)
        jobs = harness.Jobs(bed, report, workdir)
        try:
            jobs.start(JOB, harness.USER, {"node1": [0], "node2": [1]})
            cases = [("true here", lambda: harness.in_job(bed, jobs, "node1", JOB, "true")),
                     ("server's ssh", lambda: harness.as_user(bed, "node1", bed.account,
                                                              f"ssh -F {bed.ssh_config} node2 true")),
                     ("oarsh node2 true", lambda: harness.in_job(bed, jobs, "node1", JOB, "oarsh node2 true"))]
            print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
            for name, run in cases:
                times = []
                for _ in range(args.runs):
                    start = time.monotonic()
                    result = run()
                    times.append(time.monotonic() - start)
                    if result.returncode != 0:
                        print(f"{name}: failed: {result.stderr.strip()}", file=sys.stderr)
                        return 1
                print(f"{name:18} median {statistics.median(times):.3f} s  max {max(times):.3f} s")
        finally:
            jobs.cleanup()
            report.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
