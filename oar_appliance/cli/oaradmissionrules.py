"""oaradmissionrules: list, show, add, change, enable, disable and remove admission rules."""

from __future__ import annotations

import sys

from .. import admission
from ..errors import UsageError
from .common import Context, make_parser, parse_int_list, run_command


def build_parser():
    parser = make_parser(
        "oaradmissionrules",
        "Manage the admission rules: Python code run by oarsub on every submission, in\n"
        "order of priority.  A rule reads and changes `job` (queue, moldables, types,\n"
        "properties...), reads `config` and `now`, calls `info(text)` to tell the user,\n"
        "and raises `AdmissionError(message)` to refuse the job.  Without option: list.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("-S", "--show", metavar="ID", help="print the code of a rule")
    action.add_argument("-n", "--new", metavar="FILE", help="add a rule read from FILE ('-': standard input)")
    action.add_argument("-m", "--modify", nargs=2, metavar=("ID", "FILE"), help="replace the code of a rule")
    action.add_argument("-d", "--delete", metavar="ID", help="remove a rule")
    action.add_argument("-e", "--enable", metavar="ID", help="enable a rule")
    action.add_argument("-D", "--disable", metavar="ID", help="disable a rule")
    action.add_argument("--set-priority", nargs=2, metavar=("ID", "PRIORITY"), help="change a rule's priority")
    parser.add_argument("--priority", type=int, help="priority of a new rule (default: after the others)")
    return parser


def _one_id(text: str) -> int:
    ids = parse_int_list([text], "a rule id")
    if len(ids) != 1:
        raise UsageError(f"expected one rule id, got {text!r}")
    return ids[0]


def _code(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def run(args, ctx: Context) -> int:
    changes = (args.new, args.modify, args.delete, args.enable, args.disable, args.set_priority)
    if any(c is not None for c in changes):
        ctx.require_admin()
    if args.priority is not None and args.new is None:
        raise UsageError("--priority goes with -n")
    db = ctx.db
    with db.atomic():
        if args.new is not None:
            rule_id = admission.add_rule(db, _code(args.new), args.priority)
            ctx.out(f"Admission rule {rule_id} added.")
        elif args.modify is not None:
            rule_id = _one_id(args.modify[0])
            admission.update_rule(db, rule_id, code=_code(args.modify[1]))
            ctx.out(f"Admission rule {rule_id} changed.")
        elif args.delete is not None:
            admission.remove_rule(db, _one_id(args.delete))
            ctx.out(f"Admission rule {args.delete} removed.")
        elif args.enable is not None or args.disable is not None:
            rule_id = _one_id(args.enable if args.enable is not None else args.disable)
            admission.update_rule(db, rule_id, enabled=args.enable is not None)
            ctx.out(f"Admission rule {rule_id} {'enabled' if args.enable is not None else 'disabled'}.")
        elif args.set_priority is not None:
            rule_id = _one_id(args.set_priority[0])
            try:
                priority = int(args.set_priority[1])
            except ValueError:
                raise UsageError(f"priority must be an integer, got {args.set_priority[1]!r}") from None
            admission.update_rule(db, rule_id, priority=priority)
            ctx.out(f"Admission rule {rule_id} has priority {priority}.")
        elif args.show is not None:
            ctx.stdout.write(admission.get_rule(db, _one_id(args.show)).code)
        else:
            for rule in admission.load_rules(db, enabled_only=False):
                state = "enabled " if rule.enabled else "disabled"
                ctx.out(f"{rule.id:>4}  priority {rule.priority:>3}  {state}  {rule.title}")
    return 0


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
