"""oarnotify: manage the scheduling queues and send tags to the OAR server."""

from __future__ import annotations

import re

from .. import queues
from ..errors import ServerUnreachableError, UsageError
from ..notify import notify_server
from .common import Context, make_parser, run_command

TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_:-]{0,63}$")


def build_parser():
    parser = make_parser(
        "oarnotify",
        "Manage the scheduling queues, or send a tag to the OAR server (default: Term,\n"
        "which asks for a scheduling round).",
    )
    parser.add_argument("tag", metavar="TAG", nargs="?", help="tag to send to the server (default Term)")
    parser.add_argument("-l", "--list", action="store_true", help="list every queue and its state")
    parser.add_argument("-e", "--enable", metavar="QUEUE", help="activate a queue")
    parser.add_argument("-d", "--disable", metavar="QUEUE", help="deactivate a queue")
    parser.add_argument("-E", "--enable-all", action="store_true", help="activate every queue")
    parser.add_argument("-D", "--disable-all", action="store_true", help="deactivate every queue")
    parser.add_argument("--add_queue", "--add-queue", dest="add_queue", metavar="NAME,PRIORITY[,POLICY]",
                        help='add a queue, e.g. "night,3,oar_sched_gantt_with_timesharing"')
    parser.add_argument("--remove_queue", "--remove-queue", dest="remove_queue", metavar="QUEUE",
                        help="remove a queue that has no unfinished job")
    parser.add_argument("-v", dest="short_version", action="version",
                        version="OAR appliance " + __import__("oar_appliance").__version__,
                        help="print the OAR version and exit")
    return parser


def run(args, ctx: Context) -> int:
    queue_actions = [args.enable, args.disable, args.enable_all, args.disable_all,
                     args.add_queue, args.remove_queue]
    if args.tag and (any(queue_actions) or args.list):
        raise UsageError("a tag cannot be combined with queue options")
    if any(queue_actions):
        ctx.require_admin()
        db = ctx.db
        with db.atomic():
            if args.add_queue:
                queues.add_queue(db, *queues.parse_queue_spec(args.add_queue))
            if args.remove_queue:
                queues.remove_queue(db, args.remove_queue)
            if args.enable:
                queues.set_active(db, args.enable, True)
            if args.disable:
                queues.set_active(db, args.disable, False)
            if args.enable_all:
                queues.set_active(db, None, True)
            if args.disable_all:
                queues.set_active(db, None, False)
        notify_server(ctx.config["SERVER_HOSTNAME"], ctx.config["SERVER_PORT"], "Term")
    if args.list:
        for q in queues.list_queues(ctx.db):
            ctx.out(f"queue_name={q['queue_name']}, priority={q['priority']}, "
                    f"policy={q['scheduler_policy']}, state={q['state']}")
    if not any(queue_actions) and not args.list:
        tag = args.tag or "Term"
        if not TAG.match(tag):
            raise UsageError(f"invalid tag {tag!r}")
        host, port = ctx.config["SERVER_HOSTNAME"], ctx.config["SERVER_PORT"]
        if not notify_server(host, port, tag):
            raise ServerUnreachableError(f"the OAR server at {host}:{port} did not take the tag {tag}")
    return 0


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
