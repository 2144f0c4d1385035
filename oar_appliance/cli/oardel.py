"""oardel: delete jobs, or ask for their checkpoint or a signal."""

from __future__ import annotations

import sys

from .. import job_control
from ..errors import UsageError
from .common import Context, error_line, make_parser, parse_int_list, run_command


def build_parser():
    parser = make_parser(
        "oardel",
        "Delete jobs (a waiting job is removed from the queue, a running one is killed), or\n"
        "with -c ask a running job to checkpoint itself (its oarsub --signal, by default\n"
        "SIGUSR2), or with -s send a signal to its processes.  Jobs are given by id, by\n"
        "--array or by --sql (your own unfinished jobs matching the expression; every\n"
        "user's for oar and root).  Only the owner of a job, oar or root may act on it.\n"
        "The command records each request and wakes the server up, which carries it out:\n"
        "'Deleting the job = 42 ...REGISTERED.' means the job will be killed shortly.\n"
        "Each job is handled on its own: a refused one is an '#ERROR:' line on stderr and\n"
        "the others go on; the exit code is that of the first error met (0 if none).  A job\n"
        "already finished or already being deleted is an error (7).  If the server cannot\n"
        "be reached, a '#WARNING:' line says so: the requests stay recorded (exit 0).",
    )
    parser.add_argument("job_ids", metavar="JOB_ID", nargs="*", help="jobs to act on (also comma-separated)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("-c", "--checkpoint", action="store_true",
                      help="ask the running jobs to checkpoint themselves instead of deleting them")
    mode.add_argument("-s", "--signal", metavar="SIGNAL",
                      help="send SIGNAL (SIGUSR1, USR1 or 10...) to the running jobs instead of deleting them")
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
        raise UsageError("give job ids, --array or --sql (see oardel --help)")
    caller = job_control.Caller.of(ctx)
    if args.checkpoint:
        def action(job_id):
            job_control.request_checkpoint(ctx.db, job_id, caller, ctx.now)

        done, tag = "Checkpointing the job {} ...REGISTERED.", "ChState"
    elif args.signal is not None:
        name = job_control.parse_signal(args.signal)

        def action(job_id):
            job_control.request_signal(ctx.db, job_id, caller, name, ctx.now)

        done, tag = "Signaling the job {} with " + name + " ...REGISTERED.", "ChState"
    else:
        def action(job_id):
            job_control.request_deletion(ctx.db, job_id, caller, ctx.now)

        done, tag = "Deleting the job = {} ...REGISTERED.", "Qdel"
    batch = job_control.process(ctx.db, caller, action, ids, arrays, args.sql)
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


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
