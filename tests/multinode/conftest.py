"""Fixtures of the multi-node test bed (see tests/testbed.py): test hosts as network
namespaces reached with ssh on port 6667.  Without root or sshd they skip, saying why."""

from __future__ import annotations

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
