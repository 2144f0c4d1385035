"""oarhold: keep waiting jobs from being scheduled, or suspend running ones."""

from __future__ import annotations

import sys

from .. import job_control
from ..errors import UsageError
from .common import Context, error_line, make_parser, parse_int_list, run_command


def build_parser():
    parser = make_parser(
        "oarhold",
        "Put jobs on hold: a Waiting job goes to the Hold state and is not scheduled until\n"
        "oarresume; with -r a Running job is suspended (its processes are frozen and its\n"
        "resources may be given to other jobs), which only oar and root may do unless\n"
        "USERS_ALLOWED_HOLD_RESUME is on.  Jobs are given by id, by --array or by --sql\n"
        "(your own unfinished jobs matching the expression; every user's for oar and\n"
        "root).  Only the owner of a job, oar or root may hold it.  The command records\n"
        "each request and wakes the server up, which carries it out.  Each job is handled\n"
        "on its own: a refused one is an '#ERROR:' line on stderr and the others go on;\n"
        "the exit code is that of the first error met (0 if none).  If the server cannot\n"
        "be reached, a '#WARNING:' line says so: the requests stay recorded (exit 0).",
    )
    parser.add_argument("job_ids", metavar="JOB_ID", nargs="*", help="jobs to hold (also comma-separated)")
    parser.add_argument("-r", "--running", action="store_true",
                        help="also suspend Running jobs (oar and root, or everybody with "
                             "USERS_ALLOWED_HOLD_RESUME=yes)")
    parser.add_argument("--array", metavar="ARRAY_ID", action="append", default=[],
                        help="every unfinished job of this array; repeatable")
    parser.add_argument("--sql", metavar="EXPRESSION",
                        help="the unfinished jobs matching this expression on the jobs table, "
                             "e.g. \"project = 'p1'\"")
    return parser


def run(args, ctx: Context) -> int:
    ids = parse_int_list(args.job_ids, "a job id")
    arrays = parse_int_list(args.array, "an array id")
    if not (ids or arrays or args.sql is not None):
        raise UsageError("give job ids, --array or --sql (see oarhold --help)")
    caller = job_control.Caller.of(ctx)
    allowed = ctx.config["USERS_ALLOWED_HOLD_RESUME"]

    def action(job_id):
        return job_control.request_hold(ctx.db, job_id, caller, ctx.now, running=args.running,
                                        users_allowed_hold_resume=allowed)

    batch = job_control.process(ctx.db, caller, action, ids, arrays, args.sql)
    for error in batch.selection_errors:
        print(error_line(error.message), file=sys.stderr)
    for outcome in batch.outcomes:
        if outcome.error is not None:
            print(error_line(outcome.error.message), file=sys.stderr)
        else:
            ctx.out(f"[{outcome.job_id}] Hold request was sent to the OAR server.")
    if batch.recorded:
        warning = job_control.notify(ctx.config, "ChState")
        if warning:
            ctx.warn(warning)
    return batch.exit_code


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
