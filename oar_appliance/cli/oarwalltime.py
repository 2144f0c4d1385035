"""oarwalltime: show or change the walltime of a running job."""

from __future__ import annotations

import re
import sys

from .. import job_control
from ..errors import UsageError
from .common import Context, make_parser, parse_int_list, run_command

#: a negative walltime change, which is not an option
_CHANGE = re.compile(r"^-[0-9]+(:[0-9]*){0,2}$")
_OPTIONS_WITH_VALUE = ("--conf",)


def build_parser():
    parser = make_parser(
        "oarwalltime",
        "Show the walltime of a job and its pending change request, or ask for a change:\n"
        "'+1:30' adds 1 h 30 min, '-0:20' removes 20 minutes, a value without a sign is the\n"
        "new walltime (a duration is hours, hours:minutes or hours:minutes:seconds; a bare\n"
        "number is hours).  Only a Running job's walltime may change, never below the\n"
        "time it has already run.  A request replaces the pending one ('+0' cancels it);\n"
        "the server grants it when the resources stay free long enough, or at once and\n"
        "even if it delays other jobs with --force and --delay-next-jobs (oar and root\n"
        "only).  Only the owner of a job, oar or root may see or change its walltime.\n"
        "Disabled unless WALLTIME_CHANGE_ENABLED=yes in oar.conf (exit code 11).  If the\n"
        "server cannot be reached, a '#WARNING:' line says so: the request stays\n"
        "recorded (exit 0).",
    )
    parser.add_argument("job_id", metavar="JOB_ID", help="the job")
    parser.add_argument("change", metavar="[+|-]WALLTIME", nargs="?",
                        help="the new walltime, or with + or - the change (e.g. +1:00:00)")
    parser.add_argument("--force", action="store_true",
                        help="grant an increase at once if the resources allow it (oar and root only)")
    parser.add_argument("--delay-next-jobs", action="store_true",
                        help="let an increase delay the next jobs, including other users' (oar and root only)")
    return parser


def _status_lines(status: job_control.WalltimeStatus) -> list[str]:
    """As OAR 2.5 prints it."""
    from ..lang.request import format_duration

    signed = job_control.format_signed
    head = f"Walltime change status for job {status.job_id}"
    if status.walltime is None:
        return [f"{head} (job is not running yet):", "  N/A"]
    granted_with = [f"{what}: {signed(value)}" for what, value in
                    (("forced", status.granted_with_force),
                     ("delaying next jobs", status.granted_with_delaying_next_jobs)) if value]
    granted_detail = f" ({', '.join(granted_with)})" if granted_with else ""
    delaying = " (will possibly delay next jobs)" if status.delay_next_jobs == "YES" else ""
    if status.state == "Running":
        return [
            f"{head} (job is running):",
            f"  Current walltime: {format_duration(status.walltime):>11}",
            f"  Possible increase: {'UNLIMITED':>10}",
            f"  Already granted: {signed(status.granted):>12}{granted_detail}",
            f"  Pending/unsatisfied: {signed(status.pending):>8}{delaying}",
        ]
    return [
        f"{head} (job is not running):",
        f"  Walltime: {format_duration(status.walltime):>11}",
        f"  Granted: {signed(status.granted):>12}{granted_detail}",
        f"  Unsatisfied: {signed(status.pending):>8}{delaying}",
    ]


def run(args, ctx: Context) -> int:
    ids = parse_int_list([args.job_id], "a job id")
    if len(ids) != 1:
        raise UsageError("give one job id")
    job_id = ids[0]
    if args.change is None and (args.force or args.delay_next_jobs):
        raise UsageError("--force and --delay-next-jobs go with a walltime change (see oarwalltime --help)")
    enabled = ctx.config["WALLTIME_CHANGE_ENABLED"]
    job_control.require_walltime_change_enabled(enabled)  # before opening the database
    caller = job_control.Caller.of(ctx)
    if args.change is None:
        with ctx.db.atomic():
            status = job_control.walltime_status(ctx.db, job_id, caller, ctx.now, enabled=enabled)
        for line in _status_lines(status):
            ctx.out(line)
        return 0
    with ctx.db.atomic():
        request = job_control.request_walltime_change(
            ctx.db, job_id, caller, args.change, ctx.now, enabled=enabled,
            force=args.force, delay_next_jobs=args.delay_next_jobs)
    done = "updated" if request.updated else "accepted"
    ctx.out(f"Accepted: walltime change request {done} for job {job_id}, it will be handled shortly.")
    warning = job_control.notify(ctx.config, "Walltime")
    if warning:
        ctx.warn(warning)
    return 0


def positionals_last(argv: list[str]) -> list[str]:
    """``42 --force -1:30`` -> ``--force -- 42 -1:30``.

    argparse takes the positionals met before the first option as all of them (a walltime
    after ``--force`` would be "unrecognized"), and reads ``-1:30`` as an option: so
    options come first, then ``--``, then the job and the change.
    """
    positionals, options, words = [], [], iter(argv)
    for word in words:
        if word == "--":
            positionals.extend(words)
        elif word in _OPTIONS_WITH_VALUE:
            options.append(word)
            following = next(words, None)
            if following is not None:
                options.append(following)
        elif word.startswith("-") and not _CHANGE.match(word):
            options.append(word)
        else:
            positionals.append(word)
    return options + ["--"] + positionals


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command(build_parser(), run, positionals_last(argv))


if __name__ == "__main__":
    raise SystemExit(main())
