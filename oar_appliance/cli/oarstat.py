"""oarstat: show jobs, their details, events, Gantt history and accounting.

What it prints
==============

``oarstat``
    A table of the jobs not finished (every state but Terminated and Error), sorted by
    id, as OAR 2.5 prints it::

        Job id     Name           User           Submission Date     S Queue
        ---------- -------------- -------------- ------------------- - ----------
        42         my_run         alice          2024-01-02 10:00:00 R default

    The state letters are OAR's: ``W`` Waiting and toAckReservation, ``H`` Hold,
    ``L`` toLaunch and Launching, ``R`` Running, ``S`` Suspended and Resuming,
    ``F`` Finishing, ``T`` Terminated, ``E`` Error and toError.
``-f``
    Every field of each job, as a block ``Job_Id: 42`` followed by ``    key = value``
    lines (dates as ``YYYY-MM-DD hh:mm:ss`` in local time, walltime as ``H:MM:SS``).
``-s``
    ``42: Running`` lines.
``-e``
    The events of the selected jobs: ``date> [job id] TYPE: description``.
``-g "d1,d2"``
    The Gantt history of a window: every job that runs, ran, or is planned to run
    (predicted start + walltime) during it, with its resources.
``--accounting "d1,d2"``
    Consumption recorded by the accounting in the window, per user, project and queue:
    ASKED (walltimes) and USED (real durations), in seconds.
``-J`` / ``-Y``
    The same data in JSON / YAML (plain types only).  For job listings: an object keyed
    by the job id (a string), each value the full record below, whatever ``-f``.

Which jobs
==========

``-j ID`` (repeatable, or ``-j 1,2,3``) selects jobs in any state; ``--sql EXPR`` (a
property expression on the columns of ``jobs``, e.g. ``"project = 'p1'"``) and
``--array ID`` select among every job too; ``-u [USER]`` keeps the jobs of USER (no
value: yours).  Without ``-j``, ``--sql`` or ``--array`` only the jobs not finished are
shown.  Criteria combine (AND).  An unknown id is an error when no asked id exists (exit
6); otherwise a ``#WARNING:`` line names the unknown ones.

The full record (``-f``, ``-J``, ``-Y``)
=========================================

Additive only: fields are added, never removed or renamed.  Every column of the
``jobs`` table, in table order (``job_id``, ``array_id``, ``array_index``,
``initial_request``, ``job_name``, ``cpuset_name``, ``job_type``, ``info_type``,
``state``, ``reservation``, ``message``, ``scheduler_info``, ``job_user``, ``project``,
``job_group``, ``command``, ``exit_code``, ``queue_name``, ``properties``,
``launching_directory``, ``submission_time``, ``start_time``, ``stop_time``,
``file_id``, ``accounted``, ``notify``, ``assigned_moldable_job``, ``checkpoint``,
``checkpoint_signal``, ``stdout_file``, ``stderr_file``, ``resubmit_job_id``,
``suspended``, ``job_env``, ``last_karma``, and any column a later schema adds), then:

* ``types``: list of the job's types;
* ``dependencies``: list of the ids of the jobs it depends on;
* ``walltime``: seconds, of the alternative the scheduler assigned, else of the one it
  planned, else of the first one;
* ``resource_request``: list, the text of each moldable alternative
  (``{constraint}/label=count/...+...,walltime=H:MM:SS``);
* ``scheduled_start``: the predicted start (seconds) of the job, or null;
* ``scheduled_resources``: resource ids, assigned once the job started, else planned;
* ``assigned_hostnames``: sorted distinct network addresses of the assigned resources;
* ``events``: list of ``{type, date, description}``, oldest first.

Dates are seconds since the epoch in JSON/YAML (0: not reached).  ``command``,
``launching_directory``, ``job_env``, ``stdout_file``, ``stderr_file``, ``notify``,
``initial_request`` and ``info_type`` are shown only to the job's owner, ``oar`` and
``root``: for anybody else they are null.  The job's secret (``challenges``) is never
read.
"""

from __future__ import annotations


from .. import job_views as views
from ..errors import NotFoundError, UsageError
from .common import ADMIN_USERS, Context, add_output_formats, make_parser, parse_int_list, run_command

#: marker of ``-u`` given without a user name
YOURSELF = object()

FIELD_HELP = """\
full record (-f, -J, -Y; additive only): every column of the jobs table, then
  types, dependencies, walltime (seconds), resource_request (one text per
  alternative), scheduled_start, scheduled_resources, assigned_hostnames, events.
  command, launching_directory, job_env, stdout_file, stderr_file, notify,
  initial_request and info_type are null unless you own the job (or are oar/root).
state letters: W Waiting/toAckReservation, H Hold, L toLaunch/Launching, R Running,
  S Suspended/Resuming, F Finishing, T Terminated, E Error/toError.
dates: "YYYY-MM-DD hh:mm:ss" or "YYYY-MM-DD" (local time).

"""


def build_parser():
    parser = make_parser(
        "oarstat",
        "Show OAR jobs: by default a table of the jobs not finished.\n\n" + FIELD_HELP,
    )
    select = parser.add_argument_group("which jobs")
    select.add_argument("-j", "--job", metavar="ID", action="append", default=[],
                        help="this job, in any state (repeatable, or a comma list)")
    select.add_argument("-u", "--user", metavar="USER", nargs="?", const=YOURSELF,
                        help="only the jobs of USER (no value: yours)")
    select.add_argument("--array", metavar="ID", help="the jobs of this array, in any state")
    select.add_argument("--sql", metavar="EXPRESSION",
                        help="jobs matching this expression on the columns of jobs, "
                             "e.g. \"project = 'p1'\" (any state)")
    view = parser.add_argument_group("what to show").add_mutually_exclusive_group()
    view.add_argument("-f", "--full", action="store_true", help="every field of each job")
    view.add_argument("-s", "--state", action="store_true", help="only the state of each job")
    view.add_argument("-e", "--events", action="store_true", help="the events of the jobs")
    view.add_argument("-g", "--gantt", metavar='"D1,D2"',
                      help="jobs running or planned between two dates, with their resources")
    view.add_argument("--accounting", metavar='"D1,D2"',
                      help="consumption per user, project and queue between two dates")
    add_output_formats(parser)
    legacy = parser.add_argument_group("formats of OAR 2 that are not supported")
    legacy.add_argument("-D", "--dumper", action="store_true", help="Perl Dumper: refused, use -J or -Y")
    legacy.add_argument("-X", "--xml", action="store_true", help="XML: refused, use -J or -Y")
    return parser


def _one_int(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    values = parse_int_list([text], what)
    if len(values) != 1:
        raise UsageError(f"give one {what}, got {text!r}")
    return values[0]


# ----------------------------------------------------------------------------- text views

def _table(jobs) -> list[str]:
    """OAR 2.5's table (nothing at all when there is no job)."""
    if not jobs:
        return []
    lines = [
        "Job id     Name           User           Submission Date     S Queue",
        "---------- -------------- -------------- ------------------- - ----------",
    ]
    letters = views.STATE_LETTERS
    fmt = views.format_date
    for j in jobs:
        lines.append("%-10.10s %-14.14s %-14.14s %-19.19s %1.1s %-10.10s" % (
            j["job_id"], j["job_name"] or "", j["job_user"] or "", fmt(j["submission_time"]),
            letters.get(j["state"], "-"), j["queue_name"] or ""))
    return lines


def _text(value) -> str:
    if value is None:
        return ""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n")


def _value(name: str, value) -> str:
    """One field of a full record as ``oarstat -f`` prints it."""
    if name in views.DATE_COLUMNS:
        return views.format_date(value)
    if name == "scheduled_start":
        return views.format_date(value) if value is not None else "no prediction"
    if name == "walltime":
        return views.format_duration(value)
    if name == "exit_code" and value is not None:
        code = int(value)
        return f"{code} ({code >> 8},{code & 127},{code & 128})"
    if name == "types":
        return ", ".join(value)
    if name == "dependencies":
        return " ".join(str(v) for v in value)
    if name in ("scheduled_resources", "assigned_hostnames"):
        return "+".join(str(v) for v in value)
    if name == "resource_request":
        return " ".join(f'-l "{_text(v)}"' for v in value)
    return _text(value)


def _block(record) -> list[str]:
    lines = [f"Job_Id: {record['job_id']}"]
    for name, value in record.items():
        if name == "events":
            lines.append("    events =")
            lines += [f"        {views.format_date(e['date'])}> {e['type']}: {_text(e['description'])}"
                      for e in value]
        else:
            lines.append(f"    {name} = {_value(name, value)}".rstrip())
    lines.append("")
    return lines


def _ranges(ids) -> str:
    """``[1, 2, 3, 7]`` -> ``1-3,7``."""
    parts, run = [], []
    for i in ids:
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def _gantt_table(entries) -> list[str]:
    """One line per job; a ``*`` after the start marks a prediction of the scheduler."""
    lines = [
        "Job id     User           State      Start                Stop                Resources",
        "---------- -------------- ---------- -------------------- ------------------- ---------",
    ]
    for e in entries:
        lines.append(("%-10.10s %-14.14s %-10.10s %-19s%1s %-19s %s" % (
            e["job_id"], e["job_user"] or "", e["state"], views.format_date(e["start"]),
            "*" if e["predicted"] else "", views.format_date(e["stop"]), _ranges(e["resources"]))).rstrip())
    if any(e["predicted"] for e in entries):
        lines.append("(* predicted start)")
    return lines


def _accounting_table(rows) -> list[str]:
    lines = [
        "User       Project        Queue      First window starts Last window ends    "
        "Asked (seconds)  Used (seconds)",
        "---------- -------------- ---------- ------------------- ------------------- "
        "---------------- ----------------",
    ]
    for r in rows:
        lines.append("%-10s %-14s %-10s %-19s %-19s %16d %16d" % (
            r["user"], r["project"] or "", r["queue"], views.format_date(r["first_window_start"]),
            views.format_date(r["last_window_stop"]), r["asked"], r["used"]))
    return lines


# ----------------------------------------------------------------------------- run

def _filter(args, ctx: Context) -> views.JobFilter:
    ids = parse_int_list(args.job, "a job id") or None
    user = ctx.user if args.user is YOURSELF else args.user
    array_id = _one_int(args.array, "array id")
    any_state = ids is not None or args.sql is not None or array_id is not None
    return views.JobFilter(
        ids=ids, user=user, expression=args.sql, array_id=array_id,
        states=None if any_state else views.NOT_FINISHED_STATES,
    )


def _check_ids(ctx: Context, db, flt: views.JobFilter, found) -> None:
    """No asked id exists: an error; some do not: a warning."""
    if not flt.ids:
        return
    missing = sorted(set(flt.ids) - {j["job_id"] for j in found})
    if missing and (flt.user is not None or flt.expression is not None or flt.array_id is not None):
        missing = sorted(set(missing) - views.existing_job_ids(db, missing))
    if not missing:
        return
    names = ", ".join(str(i) for i in missing)
    plural = "s" if len(missing) > 1 else ""
    if len(missing) == len(set(flt.ids)):
        raise NotFoundError(f"unknown job{plural} {names}")
    ctx.warn(f"unknown job{plural} {names}")


def run(args, ctx: Context) -> int:
    if args.dumper or args.xml:
        which = "-D (Perl Dumper)" if args.dumper else "-X (XML)"
        raise UsageError(f"{which} output is not supported: use -J (JSON) or -Y (YAML)")
    fmt = args.output
    db = ctx.db

    if args.accounting is not None:
        if args.job or args.sql is not None or args.array is not None:
            raise UsageError("--accounting takes only -u (not -j, --sql or --array)")
        start, stop = views.parse_window(args.accounting)
        user = ctx.user if args.user is YOURSELF else args.user
        rows = views.accounting(db, start, stop, user)
        if fmt:
            ctx.emit(rows, fmt)
        else:
            for line in _accounting_table(rows):
                ctx.out(line)
        return 0

    flt = _filter(args, ctx)
    if args.gantt is not None:
        start, stop = views.parse_window(args.gantt)
        if flt.states is not None:
            flt.states = None  # the history shows finished jobs too
        entries = views.gantt(db, start, stop, ctx.now, flt)
        if fmt:
            ctx.emit({str(e["job_id"]): e for e in entries}, fmt)
        else:
            for line in _gantt_table(entries):
                ctx.out(line)
        return 0

    if args.state:
        jobs = views.select_jobs(db, flt, columns=("job_id", "state"))
        _check_ids(ctx, db, flt, jobs)
        if fmt:
            ctx.emit({str(j["job_id"]): j["state"] for j in jobs}, fmt)
        else:
            for j in jobs:
                ctx.out(f"{j['job_id']}: {j['state']}")
        return 0

    if args.events:
        jobs = views.select_jobs(db, flt, columns=("job_id",))
        _check_ids(ctx, db, flt, jobs)
        events = views.events_of(db, [j["job_id"] for j in jobs])
        if fmt:
            ctx.emit({str(j["job_id"]): events.get(j["job_id"], []) for j in jobs}, fmt)
        else:
            merged = sorted(((e["date"], job_id, e) for job_id, evs in events.items() for e in evs),
                            key=lambda t: (t[0], t[1]))
            for date, job_id, e in merged:
                ctx.out(f"{views.format_date(date)}> [{job_id}] {e['type']}: {_text(e['description'])}")
        return 0

    if not (fmt or args.full):
        jobs = views.select_jobs(db, flt, columns=views.SUMMARY_COLUMNS)
        _check_ids(ctx, db, flt, jobs)
        for line in _table(jobs):
            ctx.out(line)
        return 0

    jobs = views.select_jobs(db, flt)
    _check_ids(ctx, db, flt, jobs)
    records = views.full_records(db, jobs, viewer=ctx.user, admins=ADMIN_USERS)
    if fmt:
        ctx.emit({str(job_id): record for job_id, record in records.items()}, fmt)
    else:
        for record in records.values():
            for line in _block(record):
                ctx.out(line)
    return 0


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
