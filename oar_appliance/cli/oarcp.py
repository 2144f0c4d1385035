"""oarcp: copy files to or from a node of one of your jobs (scp through oarsh).

    oarcp [scp options] SOURCE... TARGET

The transfer goes the way oarsh does (the same checks, the same job keys:
``OAR_JOB_KEY_FILE`` or ``-i FILE``), with scp's own protocol (``-O``) since the node runs
every connection's command inside the job.  ``-S`` (another ssh program) is refused.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from .common import error_line


#: scp options that take a value
VALUED = "cDFiJloPX"


def scp_argv(argv: Sequence[str], program: str) -> list[str]:
    """``scp -O -S <oarsh next to this program> ARGS``."""
    words = iter(argv)
    for word in words:
        if word == "--" or not word.startswith("-") or word == "-":
            break
        for position, letter in enumerate(word[1:], start=1):
            if letter == "S":
                raise ValueError("oarcp: -S is not allowed (oarcp always goes through oarsh)")
            if letter in VALUED:
                if position == len(word) - 1:
                    next(words, None)
                break
    return ["scp", "-O", "-S", os.path.join(os.path.dirname(program), "oarsh"), *argv]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    try:
        command = scp_argv(argv, os.path.abspath(sys.argv[0]))
        os.execvp(command[0], command)
    except ValueError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return 2
    except OSError as exc:
        print(error_line(f"oarcp: cannot run scp: {exc.strerror or exc}"), file=sys.stderr)
        return 70
    return 70


if __name__ == "__main__":
    raise SystemExit(main())
