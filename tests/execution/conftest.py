"""The node-side fixtures (stand-in server, jobs started and cleaned up) serve here too."""

from tests.nodeside.conftest import jobs, report_server  # noqa: F401  (pytest fixtures)
