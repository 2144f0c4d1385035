"""oar-metasched: run one scheduling round (the metascheduler) and exit."""

from __future__ import annotations

from ..errors import UsageError
from ..sched.metasched import run_round
from .common import Context, make_parser, run_command


def build_parser():
    parser = make_parser(
        "oar-metasched",
        "Run one scheduling round: plan every waiting job in the Gantt, move the jobs that "
        "can start now to toLaunch, accept or reject advance reservations, and request the "
        "kill of besteffort jobs in the way (fairsharing queues by karma, quotas when "
        "configured). With energy saving on, the nodes to wake up and to halt follow the "
        "summary line. Administrators only.",
    )
    parser.add_argument("--now", metavar="EPOCH", default=None,
                        help="the date of the round in seconds since the epoch (default: now)")
    return parser


def run(args, ctx: Context) -> int:
    ctx.require_admin()
    now = ctx.now
    if args.now is not None:
        text = str(args.now).strip()
        if not text.isdigit():
            raise UsageError(f"--now takes a number of seconds since the epoch, got {args.now!r}")
        now = int(text)
    report = run_round(ctx.db, ctx.config, now)
    ctx.out(report.summary())
    if report.nodes_to_wake:
        ctx.out("Nodes to wake up: " + " ".join(report.nodes_to_wake))
    if report.nodes_to_halt:
        ctx.out("Nodes to halt: " + " ".join(report.nodes_to_halt))
    return 0


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
