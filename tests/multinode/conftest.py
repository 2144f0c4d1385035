"""Fixtures of the multi-node test bed (see tests/testbed.py): test hosts as network
namespaces reached with ssh on port 6667.  Without root or sshd they skip, saying why."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests.testbed import Registry, Testbed, missing_requirements, sweep_stale


@pytest.fixture(scope="session")
def testbed_registry():
    """Every bed opened in the session; whatever a test leaves open is closed at the end.
    Names left by a crashed earlier run are swept first."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    sweep_stale()
    registry = Registry()
    try:
        yield registry
    finally:
        registry.close_all()


@pytest.fixture(scope="session")
def testbed_factory(testbed_registry):
    """Builds a started bed: ``testbed_factory(size)`` or ``testbed_factory(names=[...])``;
    the bed is closed at the end of the session at the latest (or earlier by the test)."""

    def build(size: int = 3, **options) -> Testbed:
        return Testbed(size, registry=testbed_registry, **options).start()

    return build


@pytest.fixture(scope="module")
def testbed(testbed_factory):
    """Three hosts, node1..node3, shared by the tests of a module."""
    bed = testbed_factory(3)
    try:
        yield bed
    finally:
        bed.close()


#: each host's memory (its cgroup tree's limit): a job of one core of two gets half
NODE_MEMORY = 512 * 1024 * 1024


@pytest.fixture(scope="module")
def site_bed(testbed_registry):
    """Three hosts for :class:`tests.multinode.site.Site`, each with its own runtime
    directory (a path of ``private_dirs``) and :data:`NODE_MEMORY` of memory, shared by
    the tests of a module."""
    from tests.multinode.site import missing_sudo, sweep_stale_sudoers

    reason = missing_sudo()
    if reason:
        pytest.skip(reason)
    sweep_stale_sudoers()
    runtime = tempfile.mkdtemp(prefix=f"oartb{os.getpid()}-runtime-")
    os.chmod(runtime, 0o755)
    bed = None
    try:
        bed = Testbed(3, registry=testbed_registry, private_dirs=[runtime], memory_limit=NODE_MEMORY).start()
        yield bed, runtime
    finally:
        if bed is not None:
            bed.close()
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def site(site_bed, request):
    """A started site (tests/multinode/site.py): database, resources of node1..node3 and a
    running ``oar-server`` with the ssh connector.  SQLite unless parametrized indirectly
    with ``"postgresql"``."""
    from tests.multinode.site import Site

    bed, runtime = site_bed
    backend = getattr(request, "param", "sqlite")
    cluster = name = None
    if backend == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        name = cluster.new_database()
        url = cluster.url(name)
    else:
        url = "sqlite:///"
    site = Site(bed, runtime, url)
    try:
        site.setup()
        site.start_server()
        yield site
    finally:
        site.close()
        if cluster is not None:
            cluster.drop_database(name)
