"""oarnodesetting: add resources, change their state and properties."""

from __future__ import annotations

import socket
import time

from .. import resources
from ..errors import ConflictError, UsageError
from ..notify import notify_server
from .common import Context, make_parser, parse_int_list, run_command

ADMIN_STATES = ("Alive", "Absent", "Dead")


def build_parser():
    parser = make_parser(
        "oarnodesetting",
        "Add a resource, or change the state, properties, maintenance or drain mode of\n"
        "resources chosen by -r, -h or --sql (by default: every resource of this host).\n"
        "All changes of one call are made together, or none of them.  A resource leaving\n"
        "the Alive state has its jobs killed; the command then waits for them to end\n"
        "unless -n is given.",
        short_help=False,  # -h names a host, as in OAR
    )
    parser.add_argument("-a", "--add", action="store_true",
                        help="add a new resource on the host of -h (default: this host)")
    parser.add_argument("-s", "--state", choices=ADMIN_STATES, help="state to give the resources")
    parser.add_argument("-h", "--hostname", metavar="HOST", action="append", default=[],
                        help="every resource of this host (default: this host's name); repeatable")
    parser.add_argument("-r", "--resource", metavar="ID", action="append", default=[],
                        help="a resource id (or a comma-separated list); repeatable")
    parser.add_argument("--sql", metavar="EXPRESSION",
                        help="the resources matching this property expression, e.g. \"cpu = 1\"")
    parser.add_argument("-p", "--property", metavar="NAME=VALUE", action="append", default=[],
                        help="set a property; repeatable")
    parser.add_argument("-n", "--no-wait", action="store_true",
                        help="do not wait for the end of the jobs of resources leaving the Alive state")
    parser.add_argument("-m", "--maintenance", choices=("on", "off"),
                        help="maintenance mode: on = Absent and never woken up; off = Alive again")
    parser.add_argument("-d", "--drain", choices=("on", "off"),
                        help="drain mode: on = no new job starts there; running jobs go on")
    parser.add_argument("--wait-timeout", type=int, default=0, metavar="SECONDS",
                        help="give up waiting for jobs after this many seconds (default: wait forever)")
    return parser


def _compact(ids: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"``."""
    parts, start, prev = [], None, None
    for i in ids + [None]:
        if start is None:
            start = prev = i
        elif i is not None and i == prev + 1:
            prev = i
        else:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = i
    return ",".join(parts)


def run(args, ctx: Context) -> int:
    ids_wanted = parse_int_list(args.resource, "a resource id")
    assignments = resources.parse_assignments(args.property)
    if args.add and (ids_wanted or args.sql):
        raise UsageError("-a adds a resource: it cannot be combined with -r or --sql")
    if args.add and len(args.hostname) > 1:
        raise UsageError("-a adds one resource: give one -h")
    if args.maintenance and args.state:
        raise UsageError("-m sets the state itself: it cannot be combined with -s")
    if not args.add and not (args.state or assignments or args.maintenance or args.drain):
        raise UsageError("nothing to do: give -a, -s, -p, -m or -d (see oarnodesetting --help)")
    ctx.require_admin()
    hosts = args.hostname
    if not (hosts or ids_wanted or args.sql):
        hosts = [socket.gethostname()]
    db = ctx.db
    with db.atomic():
        if args.add:
            row = dict(assignments, network_address=hosts[0], state=args.state or "Alive")
            ids = resources.add_resources(db, [row], ctx.now)
        else:
            ids = resources.resolve(db, ids_wanted, hosts, args.sql)
            if assignments:
                resources.set_properties(db, ids, assignments, ctx.now)
            if args.drain:
                resources.set_drain(db, ids, args.drain == "on", ctx.now)
            if args.maintenance:
                resources.set_maintenance(db, ids, args.maintenance == "on", ctx.now)
            if args.state:
                resources.request_state(db, ids, args.state)
        outcome = resources.apply_pending_states(db, ctx.now)
    notify_server(ctx.config["SERVER_HOSTNAME"], ctx.config["SERVER_PORT"], "ChState")
    if args.add:
        ctx.out(f"New resource added: {ids[0]}")
    if args.state or args.maintenance:
        new_state = args.state or ("Absent" if args.maintenance == "on" else "Alive")
        ctx.out(f"Resources {_compact(ids)}: state {new_state}.")
    if assignments:
        ctx.out(f"Resources {_compact(ids)}: " + ", ".join(f"{k}={v}" for k, v in assignments.items()) + ".")
    if args.drain:
        ctx.out(f"Resources {_compact(ids)}: drain {args.drain}.")
    if outcome["jobs_to_kill"]:
        ctx.out("Jobs to kill: " + " ".join(str(j) for j in outcome["jobs_to_kill"]))
    leaving = [rid for rid, state in outcome["changed"].items() if state != "Alive"]
    if leaving and not args.no_wait:
        return _wait_for_jobs(ctx, leaving, args.wait_timeout)
    return 0


def _wait_for_jobs(ctx: Context, ids: list[int], timeout: int) -> int:
    """Wait until no job holds these resources (what OAR does without -n)."""
    deadline = time.monotonic() + timeout if timeout > 0 else None
    announced: set[int] = set()
    while True:
        busy = resources.jobs_on(ctx.db, ids)
        jobs = sorted({j for js in busy.values() for j in js})
        if not jobs:
            return 0
        new = [j for j in jobs if j not in announced]
        if new:
            ctx.out("Waiting for the end of jobs: " + " ".join(str(j) for j in new))
            ctx.stdout.flush()
            announced.update(new)
        if deadline is not None and time.monotonic() > deadline:
            raise ConflictError("jobs still hold the resources: " + " ".join(str(j) for j in jobs))
        time.sleep(0.5)


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
