"""oarremoveresource: remove Dead resources from the database."""

from __future__ import annotations

from .. import resources
from .common import Context, make_parser, parse_int_list, run_command


def build_parser():
    parser = make_parser(
        "oarremoveresource",
        "Remove resources, with their history, from the database.\n"
        "A resource must be Dead first (oarnodesetting -s Dead -r ID) and used by no job.\n"
        "Several ids are removed together, or none of them.",
    )
    parser.add_argument("resource_ids", metavar="RESOURCE_ID", nargs="+", help="resource to remove")
    return parser


def run(args, ctx: Context) -> int:
    ids = parse_int_list(args.resource_ids, "a resource id")
    ctx.require_admin()
    db = ctx.db
    with db.atomic():
        resources.remove(db, ids)
    for rid in ids:
        ctx.out(f"Resource {rid} removed.")
    return 0


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
