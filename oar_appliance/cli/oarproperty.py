"""oarproperty: list, add, delete and rename resource properties."""

from __future__ import annotations

from .. import resources
from ..errors import UsageError
from .common import Context, make_parser, run_command


def build_parser():
    parser = make_parser(
        "oarproperty",
        "Manage the properties of OAR resources (columns of the resources table).\n"
        "Property names are lowercase identifiers; system columns cannot be changed.\n"
        "All the changes of one call are made together, or none of them.",
    )
    parser.add_argument("-l", "--list", action="store_true", help="list the properties")
    parser.add_argument("-a", "--add", metavar="NAME", action="append", default=[],
                        help="add a property (an integer unless -c is given); repeatable")
    parser.add_argument("-c", "--varchar", action="store_true",
                        help="the properties added are character strings (VARCHAR(255))")
    parser.add_argument("-d", "--delete", metavar="NAME", action="append", default=[],
                        help="delete a property; repeatable")
    parser.add_argument("-r", "--rename", metavar="OLD,NEW", action="append", default=[],
                        help="rename the property OLD into NEW; repeatable")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return parser


def run(args, ctx: Context) -> int:
    if args.varchar and not args.add:
        raise UsageError("-c goes with -a")
    if not (args.list or args.add or args.delete or args.rename):
        raise UsageError("nothing to do: give -l, -a, -d or -r (see oarproperty --help)")
    renames = []
    for item in args.rename:
        parts = [p.strip() for p in item.split(",")]
        if len(parts) != 2 or not all(parts):
            raise UsageError(f"-r takes OLD,NEW, got {item!r}")
        renames.append(parts)
    changes = args.add or args.delete or renames
    if changes:
        ctx.require_admin()
    db = ctx.db
    messages = []
    with db.atomic():
        for name in args.add:
            resources.add_property(db, name, "str" if args.varchar else "int")
            messages.append(f"Added property: {name}")
        for name in args.delete:
            resources.delete_property(db, name)
            messages.append(f"Deleted property: {name}")
        for old, new in renames:
            resources.rename_property(db, old, new)
            messages.append(f"Renamed property: {old} to {new}")
    if not args.quiet:
        for message in messages:
            ctx.out(message)
    if args.list:
        for name in resources.list_properties(db):
            ctx.out(name)
    return 0


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
