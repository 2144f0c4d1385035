"""oardel: delete jobs, or ask for their checkpoint or a signal."""

from __future__ import annotations

from .. import job_control
from .common import Context, make_parser, run_command
from .job_selection import act_on_jobs, add_job_selection


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
    add_job_selection(parser, "act on")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("-c", "--checkpoint", action="store_true",
                      help="ask the running jobs to checkpoint themselves instead of deleting them")
    mode.add_argument("-s", "--signal", metavar="SIGNAL",
                      help="send SIGNAL (SIGUSR1, USR1 or 10...) to the running jobs instead of deleting them")
    return parser


def run(args, ctx: Context) -> int:
    if args.checkpoint:
        def action(job_id, caller):
            job_control.request_checkpoint(ctx.db, job_id, caller, ctx.now)

        done, tag = "Checkpointing the job {} ...REGISTERED.", "ChState"
    elif args.signal is not None:
        name = job_control.parse_signal(args.signal)

        def action(job_id, caller):
            job_control.request_signal(ctx.db, job_id, caller, name, ctx.now)

        done, tag = "Signaling the job {} with " + name + " ...REGISTERED.", "ChState"
    else:
        def action(job_id, caller):
            job_control.request_deletion(ctx.db, job_id, caller, ctx.now)

        done, tag = "Deleting the job = {} ...REGISTERED.", "Qdel"
    return act_on_jobs(args, ctx, "oardel", action, done, tag)


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
