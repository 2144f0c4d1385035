"""oarhold: keep waiting jobs from being scheduled, or suspend running ones."""

from __future__ import annotations

from .. import job_control
from .common import Context, make_parser, run_command
from .job_selection import act_on_jobs, add_job_selection


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
    add_job_selection(parser, "hold")
    parser.add_argument("-r", "--running", action="store_true",
                        help="also suspend Running jobs (oar and root, or everybody with "
                             "USERS_ALLOWED_HOLD_RESUME=yes)")
    return parser


def run(args, ctx: Context) -> int:
    allowed = ctx.config["USERS_ALLOWED_HOLD_RESUME"]

    def action(job_id, caller):
        return job_control.request_hold(ctx.db, job_id, caller, ctx.now, running=args.running,
                                        users_allowed_hold_resume=allowed)

    return act_on_jobs(args, ctx, "oarhold", action, "[{}] Hold request was sent to the OAR server.", "ChState")


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
