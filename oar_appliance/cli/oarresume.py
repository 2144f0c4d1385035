"""oarresume: resume held or suspended jobs."""

from __future__ import annotations

import sys

from .. import job_control
from ..errors import UsageError
from .common import Context, error_line, make_parser, parse_int_list, run_command


def build_parser():
    parser = make_parser(
        "oarresume",
        "Resume jobs: a Hold job goes back to Waiting and is scheduled again; a Suspended\n"
        "job is resumed (Resuming, then Running when its resources are free), which only\n"
        "oar and root may ask unless USERS_ALLOWED_HOLD_RESUME is on.  Jobs are given by\n"
        "id, by --array or by --sql (your own unfinished jobs matching the expression;\n"
        "every user's for oar and root).  Only the owner of a job, oar or root may resume\n"
        "it.  The command records each request and wakes the server up, which carries it\n"
        "out.  Each job is handled on its own: a refused one is an '#ERROR:' line on\n"
        "stderr and the others go on; the exit code is that of the first error met (0 if\n"
        "none).  If the server cannot be reached, a '#WARNING:' line says so: the requests\n"
        "stay recorded (exit 0).",
    )
    parser.add_argument("job_ids", metavar="JOB_ID", nargs="*", help="jobs to resume (also comma-separated)")
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
        raise UsageError("give job ids, --array or --sql (see oarresume --help)")
    caller = job_control.Caller.of(ctx)
    allowed = ctx.config["USERS_ALLOWED_HOLD_RESUME"]

    def action(job_id):
        return job_control.request_resume(ctx.db, job_id, caller, ctx.now, users_allowed_hold_resume=allowed)

    batch = job_control.process(ctx.db, caller, action, ids, arrays, args.sql)
    for error in batch.selection_errors:
        print(error_line(error.message), file=sys.stderr)
    for outcome in batch.outcomes:
        if outcome.error is not None:
            print(error_line(outcome.error.message), file=sys.stderr)
        else:
            ctx.out(f"[{outcome.job_id}] Resume request was sent to the OAR server.")
    if batch.recorded:
        warning = job_control.notify(ctx.config, "ChState")
        if warning:
            ctx.warn(warning)
    return batch.exit_code


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
