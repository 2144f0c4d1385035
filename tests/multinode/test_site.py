"""Jobs on a site of three test hosts run by a real oar-server through ssh, sudo and
oarexec, in per-node cgroups (cgroup v1)."""

from __future__ import annotations

import pytest

from tests.multinode.site import WAIT, wait_for


@pytest.mark.parametrize("site", ["sqlite", "postgresql"], indirect=True)
def test_a_two_node_job_runs_over_ssh(site):
    out = site.work / "out"
    job_id = site.oarsub("-l", "nodes=2", f"sort -u $OAR_NODEFILE > {out}; id -un >> {out}")
    assert site.wait_state(job_id, "Terminated", "Error", timeout=WAIT) == "Terminated", site.log_tail()
    assert out.read_text().split() == ["node1", "node2", site.user]
