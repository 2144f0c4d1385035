"""oaraccounting: fill the accounting table with the jobs ended since the last run."""

from __future__ import annotations

from .. import accounting
from ..errors import UsageError
from .common import Context, make_parser, run_command


def build_parser():
    parser = make_parser(
        "oaraccounting",
        "Account the jobs ended since the last run: for each window of ACCOUNTING_WINDOW\n"
        "seconds and each user, project and queue, the resource-seconds ASKED (walltimes)\n"
        "and USED (real durations).  oar-server does it periodically too.\n"
        "For oar and root only.",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--reinitialize", action="store_true",
                      help="empty the accounting table and mark every job unaccounted "
                           "(the next run counts them all again)")
    what.add_argument("--delete_before", "--delete-before", dest="delete_before", metavar="SECONDS",
                      help="remove the windows that ended more than SECONDS ago")
    return parser


def _seconds(text: str) -> int:
    value = str(text).strip()
    if not value.isdigit():
        raise UsageError(f"--delete_before takes a number of seconds, got {text!r}")
    return int(value)


def run(args, ctx: Context) -> int:
    seconds = _seconds(args.delete_before) if args.delete_before is not None else None
    ctx.require_admin()
    db = ctx.db
    if args.reinitialize:
        removed = accounting.reinitialize(db)
        ctx.out(f"Accounting reinitialized: {removed} rows removed, every job will be accounted again.")
    elif seconds is not None:
        removed = accounting.delete_before(db, ctx.now, seconds)
        ctx.out(f"{removed} accounting rows of windows ended before {ctx.now - seconds} removed.")
    else:
        report = accounting.update(db, ctx.config, ctx.now)
        ctx.out(f"{report.jobs} jobs accounted ({report.rows} accounting rows added or updated).")
    return 0


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
