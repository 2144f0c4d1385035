"""oarsh: ssh to a node of one of your jobs, landing inside that job (its cgroup, its
environment, as you).

    oarsh [ssh options] HOST [COMMAND...]

Run from inside a job (a job's command, or its shell of ``oarsub -I``/``-C``), oarsh
reaches the nodes of that job only: it runs its privileged half through sudo as the OAR
account (``oarsh --privileged OAR_CONF -- ...``, the one command the nodes' sudo rule lets
every user run), which learns who you are from sudo and which job you are in from your
cgroup, and connects with the OAR account's key to the node's dedicated sshd.  With a job
key (``oarsub -k``/``-i``/``-e``), ``OAR_JOB_KEY_FILE=FILE`` or ``-i FILE`` connects with
that key instead, from anywhere.

Only harmless ssh options pass (``-4 -6 -C -n -N -q -t -T -v -x``, ``-o`` with a few
settings); the rest is refused.  Errors are one ``#ERROR:`` line: exit 2 usage, 3
configuration, 6 a job key that cannot be read, 8 not inside a job of yours; once
connected, the exit code is the remote command's (255: ssh failed, 6/8 from the node: the
job has no resources there or is not yours).
"""

from __future__ import annotations

import os
import pwd
import sys
from typing import Mapping

from ..conf import DEFAULT_CONF_PATH, load_config
from ..errors import ConfigError, OarError, PermissionDeniedError, UsageError
from .. import oarsh
from .common import error_line

PRIVILEGED = "--privileged"


def _account() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def user_side(argv: list[str], environ: Mapping[str, str], program: str) -> list[str]:
    """The command the caller's oarsh runs: ssh with a job key, or its privileged half
    through sudo."""
    conf_path = os.path.abspath(environ.get("OARCONFFILE") or DEFAULT_CONF_PATH)
    config = load_config(conf_path, environ=dict(environ))
    request = oarsh.parse_arguments(argv, _account())
    key = request.identity or environ.get("OAR_JOB_KEY_FILE")
    if key:
        return oarsh.job_key_argv(config, request, key)
    oar = config["NODE_SSH_USER"]
    if not oar:
        raise ConfigError("oarsh needs NODE_SSH_USER (the OAR account) in oar.conf")
    return ["sudo", "-n", "-u", str(oar), os.path.join(os.path.dirname(program), "oarsh"),
            PRIVILEGED, conf_path, "--", *argv]


def privileged_side(argv: list[str], environ: Mapping[str, str]) -> list[str]:
    """The OAR account's half: the caller from sudo, the job from the caller's cgroup (or
    session), then ssh with the OAR account's key to the node, naming the job."""
    # sudo matches the rule on the words joined by spaces: one word holding a space could
    # pass for the pinned oar.conf followed by more
    if len(argv) < 2 or not os.path.isabs(argv[0]) or argv[1] != "--" or any(c.isspace() for c in argv[0]):
        raise UsageError(f"usage: oarsh {PRIVILEGED} OAR_CONF -- [ssh options] HOST [COMMAND...]")
    config = load_config(argv[0], environ={})
    oar = str(config["NODE_SSH_USER"] or "")
    caller = environ.get("SUDO_USER", "")
    if _account() != oar or not caller:
        raise PermissionDeniedError(f"oarsh {PRIVILEGED} runs as {oar or 'the OAR account'} through sudo only")
    request = oarsh.parse_arguments(argv[2:], caller)
    if request.identity:
        raise UsageError("oarsh: -i is for job keys, which need no privileges")
    with open("/proc/self/cgroup", encoding="utf-8") as stream:
        job_id = oarsh.job_from_cgroups(stream, caller)
    if job_id is None:
        job_id = oarsh.job_from_sessions(str(config["OAR_RUNTIME_DIRECTORY"]), caller, os.getpid())
    if job_id is None:
        raise PermissionDeniedError(f"oarsh: {caller} is not inside a job here: run oarsh from a job "
                                    "of yours, or give its job key (OAR_JOB_KEY_FILE or -i)")
    return oarsh.node_argv(config, request, job_id, caller)


def main(argv=None, environ: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    try:
        if argv[:1] == [PRIVILEGED]:
            command = privileged_side(argv[1:], environ)
        else:
            command = user_side(argv, environ, os.path.abspath(sys.argv[0]))
        os.execvp(command[0], command)
    except OarError as exc:
        print(error_line(exc.message), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(error_line(f"oarsh: {exc.strerror or exc}"), file=sys.stderr)
        return 70
    return 70


if __name__ == "__main__":
    raise SystemExit(main())
