"""oarresume: resume held or suspended jobs."""

from __future__ import annotations

from .. import job_control
from .common import Context, make_parser, run_command
from .job_selection import act_on_jobs, add_job_selection


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
    add_job_selection(parser, "resume")
    return parser


def run(args, ctx: Context) -> int:
    allowed = ctx.config["USERS_ALLOWED_HOLD_RESUME"]

    def action(job_id, caller):
        return job_control.request_resume(ctx.db, job_id, caller, ctx.now, users_allowed_hold_resume=allowed)

    return act_on_jobs(args, ctx, "oarresume", action, "[{}] Resume request was sent to the OAR server.", "ChState")


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
