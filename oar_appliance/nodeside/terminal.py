"""A child process that owns the terminal: the shell of ``oarsub -I`` / ``-C``.

Shared by the submitting side (``oarsub`` starting the shell) and the node side
(``oarsh_shell`` running it): both must leave the terminal's keys to the shell and pass on
the signals that end a session.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def signals_passed_to(child: subprocess.Popen) -> Iterator[None]:
    """While the block runs, this process ignores the terminal's SIGINT and SIGQUIT (they
    are the child's) and passes SIGTERM and SIGHUP on to the child."""

    def forward(signum, _frame):
        try:
            child.send_signal(signum)
        except OSError:
            pass

    previous = {sig: signal.signal(sig, handler) for sig, handler in (
        (signal.SIGINT, signal.SIG_IGN), (signal.SIGQUIT, signal.SIG_IGN),
        (signal.SIGTERM, forward), (signal.SIGHUP, forward))}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def default_signal_dispositions() -> None:
    """Every signal back to its default action and none blocked, for a process about to
    exec the user's program.  An ignored signal stays ignored across exec: Python ignores
    SIGPIPE and SIGXFSZ, and whoever started this process may have ignored others (``nohup``
    ignores SIGHUP), which a job's commands or shell must not inherit."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # real-time signals the C library reserves for itself
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def exit_status(returncode: int) -> int:
    """A shell's exit status from a Popen return code: 128 + N when killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode
