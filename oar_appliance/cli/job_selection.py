"""What oardel, oarhold and oarresume share: choosing jobs, and reporting per job."""

from __future__ import annotations

import sys
from typing import Callable

from .. import job_control
from ..errors import UsageError
from .common import Context, error_line, parse_int_list


def add_job_selection(parser, verb: str) -> None:
    """Jobs by id, by ``--array`` or by ``--sql``."""
    parser.add_argument("job_ids", metavar="JOB_ID", nargs="*", help=f"jobs to {verb} (also comma-separated)")
    parser.add_argument("--array", metavar="ARRAY_ID", action="append", default=[],
                        help="every unfinished job of this array; repeatable")
    parser.add_argument("--sql", metavar="EXPRESSION",
                        help="the unfinished jobs matching this expression on the jobs table, "
                             "e.g. \"project = 'p1'\"")


def act_on_jobs(args, ctx: Context, command: str, action: Callable, done: str, tag: str) -> int:
    """Run ``action(job_id, caller)`` on each selected job, each on its own; print
    ``done`` (formatted with the job id) or an ``#ERROR:`` line per job, notify the
    server with ``tag`` if anything was recorded, and return the first error's code."""
    ids = parse_int_list(args.job_ids, "a job id")
    arrays = parse_int_list(args.array, "an array id")
    if not (ids or arrays or args.sql is not None):
        raise UsageError(f"give job ids, --array or --sql (see {command} --help)")
    caller = job_control.Caller.of(ctx)
    batch = job_control.process(ctx.db, caller, lambda job_id: action(job_id, caller), ids, arrays, args.sql)
    for error in batch.selection_errors:
        print(error_line(error.message), file=sys.stderr)
    for outcome in batch.outcomes:
        if outcome.error is not None:
            print(error_line(outcome.error.message), file=sys.stderr)
        else:
            ctx.out(done.format(outcome.job_id))
    if batch.recorded:
        warning = job_control.notify(ctx.config, tag)
        if warning:
            ctx.warn(warning)
    return batch.exit_code
