"""The service tests use the command runner of the CLI tests for the few commands here."""

from tests.cli.conftest import created, oar, snapshot  # noqa: F401  (fixtures)
