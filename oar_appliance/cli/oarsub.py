"""oarsub: submit a job (or an array of jobs) to OAR."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
import time

from .. import interactive as interactive_mod
from .. import job_control, submission, waiting
from ..errors import ConflictError, OarError, ServerUnreachableError, UsageError
from ..job_request import JobRequest
from ..lang.request import parse_requests
from ..notify import notify_server
from .common import INTERRUPTED_EXIT, Context, error_line, make_parser, run_command

DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def build_parser():
    parser = make_parser(
        "oarsub",
        "Submit a job: a command (or a script with -S) run on the resources of -l, or an\n"
        "interactive shell (-I).  Prints OAR_JOB_ID=<id> (one line per job of an array,\n"
        "then OAR_ARRAY_ID=<id>); lines starting with '#' are information.\n"
        "-I and -r wait for the server's answer (interrupting oarsub then deletes the job):\n"
        "-I opens a shell on the job's first node once it runs, -r says whether the\n"
        "reservation is GRANTED (exit 0) or REJECTED (exit 7).  -C ID opens a shell in a\n"
        "running job.\n"
        "Example: oarsub -l /nodes=2/core=4,walltime=1:30:00 -p \"cluster='azur'\" ./run.sh",
    )
    what = parser.add_argument_group("what to run")
    what.add_argument("command", nargs=argparse.REMAINDER,
                      help="the command and its arguments (everything after it is the command's)")
    what.add_argument("-I", "--interactive", action="store_true", help="an interactive shell instead of a command: wait for the job to start, then "
                           "open a shell on its first node (the job ends with the shell)")
    what.add_argument("-C", "--connect", metavar="JOB_ID",
                      help="open a shell inside a running job of yours, on its first node")
    what.add_argument("-S", "--scanscript", action="store_true",
                      help="read '#OAR <option>' lines of the script (the command line wins)")
    what.add_argument("-d", "--directory", help="launching directory (default: the current one)")
    what.add_argument("--array", type=int, metavar="N", help="submit N identical jobs (an array)")
    what.add_argument("--array-param-file", metavar="FILE",
                      help="one job per line of FILE, the line's words appended to the command")
    where = parser.add_argument_group("resources and time")
    where.add_argument("-l", "--resource", action="append", default=[], metavar="REQUEST",
                       help="resources and walltime, e.g. /nodes=2/core=1,walltime=2:00:00; "
                            "several -l are alternatives (the first to finish wins)")
    where.add_argument("-p", "--property", metavar="EXPRESSION", help="restrict every group, e.g. \"switch = 'sw1'\"")
    where.add_argument("-q", "--queue", help="queue (default: chosen by the admission rules)")
    where.add_argument("-r", "--reservation", metavar="DATE", help="advance reservation at 'YYYY-MM-DD hh:mm:ss'; waits for the scheduler's answer")
    where.add_argument("-t", "--type", action="append", default=[], dest="types",
                       help="job type (besteffort, timesharing, deploy, cosystem, idempotent, container, "
                            "inner=ID, placeholder=NAME, allow=NAME, noop, token:NAME=N); repeatable")
    where.add_argument("-a", "--anterior", action="append", default=[], metavar="JOB_ID",
                       help="start only after this job; repeatable")
    where.add_argument("--hold", action="store_true", help="submit in the Hold state (oarresume releases it)")
    where.add_argument("--checkpoint", type=int, default=0, metavar="SECONDS",
                       help="send the checkpoint signal this long before the walltime")
    where.add_argument("--signal", type=int, default=12, metavar="NUMBER", help="checkpoint signal (default 12, SIGUSR2)")
    about = parser.add_argument_group("naming and notification")
    about.add_argument("-n", "--name", help="job name (letters, digits, '_', '.', '-')")
    about.add_argument("--project", help="project the job belongs to")
    about.add_argument("--notify", metavar="METHOD", help="'mail:ADDRESS' or 'exec:COMMAND', optionally after [TAGS]")
    about.add_argument("-O", "--stdout", metavar="FILE", help="stdout file (default OAR.%%jobid%%.stdout)")
    about.add_argument("-E", "--stderr", metavar="FILE", help="stderr file (default OAR.%%jobid%%.stderr)")
    about.add_argument("--resubmit", metavar="JOB_ID", help="submit again a job of yours, with its parameters")
    keys = parser.add_argument_group("job key (to reach the job's nodes from elsewhere)")
    keys.add_argument("-k", "--use-job-key", action="store_true", help="generate a job key")
    keys.add_argument("-i", "--import-job-key-from-file", metavar="FILE", help="use this private key as job key")
    keys.add_argument("--import-job-key-inline", metavar="KEY", help="use this private key text as job key")
    keys.add_argument("-e", "--export-job-key-to-file", metavar="FILE",
                      help="write the job key to FILE (%%jobid%% replaced)")
    stage = parser.add_argument_group("stage-in")
    stage.add_argument("-s", "--stagein", metavar="DIR_OR_TGZ", help="stage-in directory or archive")
    stage.add_argument("--stagein-md5sum", metavar="MD5", help="md5sum of the stage-in archive")
    output = parser.add_argument_group("output format").add_mutually_exclusive_group()
    output.add_argument("-J", "--json", dest="output", action="store_const", const="json", help="print JSON")
    output.add_argument("-Y", "--yaml", dest="output", action="store_const", const="yaml", help="print YAML")
    output.add_argument("-D", "--dumper", dest="output", action="store_const", const="dumper", help=argparse.SUPPRESS)
    output.add_argument("-X", "--xml", dest="output", action="store_const", const="xml", help=argparse.SUPPRESS)
    return parser


def parse_date(text: str) -> int:
    for fmt in DATE_FORMATS:
        try:
            return int(time.mktime(time.strptime(text.strip(), fmt)))
        except ValueError:
            continue
    raise UsageError(f"invalid date {text!r}: use 'YYYY-MM-DD hh:mm:ss'")


def _int(text: str, what: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UsageError(f"{what} must be a number, got {text!r}") from None
    if value < 1:
        raise UsageError(f"{what} must be positive, got {text!r}")
    return value


def _read(path: str, what: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None


def script_directives(path: str) -> list[str]:
    """The options given by the ``#OAR`` lines of a script."""
    argv: list[str] = []
    for number, line in enumerate(_read(path, "script").splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#OAR"):
            rest = stripped[4:]
            if rest and not rest[0].isspace():
                continue  # e.g. "#OARX": not a directive
            try:
                argv.extend(shlex.split(rest))
            except ValueError as exc:
                raise UsageError(f"{path}:{number}: malformed #OAR line: {exc}") from None
    return argv


def merge_directives(parser, args):
    """Options of the script's ``#OAR`` lines, under those of the command line."""
    script = args.command[0]
    directive_argv = script_directives(script)
    if not directive_argv:
        return args
    from_script = parser.parse_args(directive_argv)
    if from_script.command:
        raise UsageError(f"{script}: #OAR lines may give options only, not a command")
    defaults = parser.parse_args([])
    for name, value in vars(from_script).items():
        if getattr(args, name) == getattr(defaults, name) and value != getattr(defaults, name):
            setattr(args, name, value)
    return args


def build_request(args, ctx: Context) -> JobRequest:
    config = ctx.config
    command = " ".join(args.command)
    if args.interactive and command:
        raise UsageError("-I opens a shell: give no command")
    moldables = parse_requests(args.resource, config["HIERARCHY_LABELS"], config["OARSUB_NODES_RESOURCES"],
                               config["OARSUB_DEFAULT_RESOURCES"])
    job = JobRequest(
        user=ctx.user, command=command, job_type="INTERACTIVE" if args.interactive else "PASSIVE",
        queue=args.queue, moldables=moldables, properties=args.property, types=list(args.types),
        name=args.name, project=args.project,
        directory=os.path.abspath(args.directory) if args.directory else os.getcwd(),
        stdout=args.stdout, stderr=args.stderr, notify=args.notify,
        anterior=[_int(a, "-a") for item in args.anterior for a in item.split(",")],
        reservation=parse_date(args.reservation) if args.reservation else None,
        checkpoint=args.checkpoint, signal=args.signal, hold=args.hold,
        use_job_key=args.use_job_key, export_job_key_file=args.export_job_key_to_file,
        stagein=args.stagein, stagein_md5sum=args.stagein_md5sum,
        initial_request=shlex.join(["oarsub"] + list(args.raw_argv)),
    )
    if args.import_job_key_from_file:
        job.import_job_key = _read(args.import_job_key_from_file, "job key file")
    elif args.import_job_key_inline:
        job.import_job_key = args.import_job_key_inline
    if args.array_param_file:
        lines = [line.strip() for line in _read(args.array_param_file, "array parameter file").splitlines()]
        job.array_params = [line for line in lines if line and not line.startswith("#")]
        if not job.array_params:
            raise UsageError(f"{args.array_param_file} holds no parameter line")
        if args.array is not None and args.array != len(job.array_params):
            raise UsageError("--array and --array-param-file disagree on the number of jobs")
        job.array = len(job.array_params)
    elif args.array is not None:
        job.array = args.array
    if args.stagein is not None and not os.path.exists(args.stagein):
        raise UsageError(f"stage-in {args.stagein} does not exist")
    return job


def run(args, ctx: Context) -> int:
    if args.output in ("dumper", "xml"):
        raise UsageError("Perl dumper (-D) and XML (-X) output are not supported: use -J or -Y")
    if args.connect is not None:
        return connect(args, ctx)
    db = ctx.db
    if args.resubmit is not None:
        if args.command or args.resource or args.interactive:
            raise UsageError("--resubmit takes the job's own command and resources: give neither")
        job = submission.request_from_job(db, _int(args.resubmit, "--resubmit"), ctx.user)
    else:
        if args.scanscript:
            if not args.command:
                raise UsageError("-S needs a script")
            args = merge_directives(build_parser(), args)
        job = build_request(args, ctx)
    host, port = ctx.config["SERVER_HOSTNAME"], ctx.config["SERVER_PORT"]
    waits = job.reservation is not None or job.job_type == "INTERACTIVE"
    # listening before the job is written: the server may answer as soon as it sees the job
    listener = waiting.SubmitterSocket(host, port) if waits else None
    # SIGTERM and SIGHUP interrupt a waiting oarsub as Ctrl-C does (its job is then deleted)
    previous = _catch_termination() if waits else {}
    try:
        submitted = submission.submit(db, job, ctx.config, ctx.now,
                                      info_type=listener.address if listener else None)
        try:
            return _announce_and_wait(args, ctx, job, submitted, listener)
        except KeyboardInterrupt:
            if listener is None:
                raise
            _delete_waiting_job(ctx, submitted.job_ids[0])
            return INTERRUPTED_EXIT
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if listener is not None:
            listener.close()


def _announce_and_wait(args, ctx: Context, job, submitted, listener) -> int:
    """Print the job ids, notify the server and, for -I / -r, wait for its answer."""
    host, port = ctx.config["SERVER_HOSTNAME"], ctx.config["SERVER_PORT"]
    for message in job.messages:
        ctx.out(f"#INFO: {message}")
    if job.export_job_key_file and submitted.private_key:
        _export_key(job.export_job_key_file, submitted.job_ids[0], submitted.private_key)
    delivered = notify_server(host, port, "Qsub")
    if args.output:
        ctx.emit({"job_id": submitted.job_ids[0], "job_ids": submitted.job_ids,
                  "array_id": submitted.array_id}, args.output)
    else:
        for job_id in submitted.job_ids:
            ctx.out(f"OAR_JOB_ID={job_id}")
        if job.array > 1:
            ctx.out(f"OAR_ARRAY_ID={submitted.array_id}")
    job_id = submitted.job_ids[0]
    if not delivered:
        if job.job_type == "INTERACTIVE":
            # nobody would start it while its user waits: do not leave it behind
            _delete_job(ctx, job_id)
            raise ServerUnreachableError(f"the OAR server at {host}:{port} is not running: "
                                         f"interactive job {job_id} is deleted")
        what = "reservation" if listener is not None else "job"
        ctx.warn(f"the OAR server at {host}:{port} is not running: the {what} is registered "
                 "and will be scheduled when it runs" + (" (follow it with oarstat)" if listener else ""))
        return 0
    if listener is None:
        return 0
    return wait_for_server(ctx, listener, job_id, job.job_type == "INTERACTIVE")


# ----------------------------------------------------------------------------- waiting

class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP while waiting: handled as an interruption by the user."""


def _interrupt(signum, _frame):
    raise _Terminated()


def _catch_termination() -> dict:
    """Make SIGTERM and SIGHUP raise :class:`_Terminated`; the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # handlers can only be set there (oarsub run inside a thread: Ctrl-C only)
    return {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}


def _flush(ctx: Context) -> None:
    try:
        ctx.stdout.flush()
    except (AttributeError, OSError):
        pass


def wait_for_server(ctx: Context, listener, job_id: int, interactive: bool) -> int:
    """Wait for the server's answer about ``job_id`` and act on it (see waiting.py)."""
    if interactive:
        ctx.out("Interactive mode: waiting...")
        expected = ("STARTED", "ERROR", "REJECTED")
    else:
        ctx.out("Advance reservation request: waiting for approval from the scheduler...")
        expected = ("GRANTED", "REJECTED", "ERROR")
    _flush(ctx)
    answer = None
    while answer is None or answer.word not in expected:
        answer = listener.wait()  # KeyboardInterrupt (Ctrl-C, SIGTERM, SIGHUP): see run()
        if answer.word == "PREDICTION" and interactive and answer.detail.isdigit():
            ctx.out("Start prediction: "
                    + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(answer.detail))))
            _flush(ctx)
    if answer.word == "GRANTED":
        ctx.out("Advance reservation is GRANTED.")
        if answer.detail.isdigit():
            ctx.out("#INFO: the reservation starts at "
                    + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(answer.detail))))
        return 0
    if answer.word == "REJECTED":
        if not interactive:
            ctx.out("Advance reservation is REJECTED.")
        _flush(ctx)
        raise ConflictError(answer.detail or f"the scheduler rejected job {job_id}")
    if answer.word == "ERROR":
        _flush(ctx)
        raise ConflictError(answer.detail or f"job {job_id} could not start")
    shell = interactive_mod.JobShell(job_id, answer.detail or "localhost", ctx.user)
    argv = interactive_mod.shell_command(ctx.config, shell, interactive=True, terminal=sys.stdin.isatty())
    ctx.close()  # a shell may last hours: hold no database connection meanwhile
    ctx.out(f"Connect to OAR job {job_id} via the node {shell.head_host}")
    _flush(ctx)
    return interactive_mod.run_attached(argv)


def _delete_job(ctx: Context, job_id: int) -> str | None:
    """Request the deletion of the caller's own job; None, or why it failed."""
    try:
        with ctx.db.atomic():
            job_control.request_deletion(ctx.db, job_id, job_control.Caller(ctx.user), int(time.time()))
    except OarError as exc:
        return exc.message
    job_control.notify(ctx.config, "Qdel")  # an absent server finds the request when it starts
    return None


def _delete_waiting_job(ctx: Context, job_id: int) -> None:
    """The user gave up waiting: the job must not run (or be reserved) without them."""
    failure = _delete_job(ctx, job_id)
    if failure:
        print(error_line(f"interrupted; job {job_id} could not be deleted: {failure}"), file=sys.stderr)
    else:
        print(error_line(f"interrupted: job {job_id} is deleted"), file=sys.stderr)


# ----------------------------------------------------------------------------- -C

def connect(args, ctx: Context) -> int:
    """``oarsub -C JOB_ID``: a shell inside a running job of the caller's."""
    if args.command or args.interactive or args.reservation or args.resource or args.resubmit:
        raise UsageError("-C takes only a job id: give no command, -I, -r, -l or --resubmit")
    job_id = _int(args.connect, "-C")
    caller = job_control.Caller.of(ctx)
    shell = interactive_mod.connectable_job(ctx.db, job_id, ctx.user,
                                            caller.admin or caller.acts_for_everybody)
    argv = interactive_mod.shell_command(ctx.config, shell, interactive=False, terminal=sys.stdin.isatty())
    ctx.close()
    ctx.out(f"Connect to OAR job {job_id} via the node {shell.head_host}")
    _flush(ctx)
    return interactive_mod.run_attached(argv)


def _export_key(pattern: str, job_id: int, private_key: str) -> None:
    path = pattern.replace("%jobid%", str(job_id))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w") as f:
            f.write(private_key)
    except OSError as exc:
        raise ConflictError(f"job {job_id} is registered, but its key cannot be written to {path}: "
                            f"{exc.strerror}") from None


def main(argv=None) -> int:
    import sys

    raw = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()

    def body(args, ctx):
        args.raw_argv = raw
        return run(args, ctx)

    return run_command(parser, body, raw)


if __name__ == "__main__":
    raise SystemExit(main())
