"""oarnodes: show resources, their states, properties and jobs."""

from __future__ import annotations

import re

from .. import resources
from ..db.resource_table import SYSTEM_COLUMNS
from ..errors import NotFoundError
from .common import Context, add_output_formats, make_parser, parse_int_list, run_command

#: system columns shown among the properties (the others are the server's bookkeeping)
SHOWN_SYSTEM_COLUMNS = ("type", "besteffort", "deploy", "desktop_computing", "available_upto", "drain")


def build_parser():
    parser = make_parser(
        "oarnodes",
        "Show OAR resources: by default a table of every resource with its state and jobs.",
    )
    parser.add_argument("hosts", metavar="HOST", nargs="*", help="only the resources of these hosts")
    view = parser.add_argument_group("what to show").add_mutually_exclusive_group()
    view.add_argument("-a", "--all", action="store_true",
                      help="every resource with all its properties")
    view.add_argument("-s", "--state", action="store_true", help="only the states, host by host")
    view.add_argument("-l", "--list", action="store_true", help="only the host names, sorted")
    parser.add_argument("-r", "--resource", metavar="ID", action="append", default=[],
                        help="only this resource (with all its properties); repeatable")
    parser.add_argument("--sql", metavar="EXPRESSION",
                        help="only the resources matching this property expression, e.g. \"cpu = 1\"")
    add_output_formats(parser)
    return parser


def natural_key(text: str):
    """Sort ``node-2`` before ``node-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text or "")]


def _properties(row: dict) -> dict:
    return {k: v for k, v in row.items()
            if k not in SYSTEM_COLUMNS or k in SHOWN_SYSTEM_COLUMNS}


def _table(rows: list[dict]) -> list[str]:
    header = ("network_address", "resource_id", "state", "jobs")
    cells = [header] + [
        (r["network_address"], str(r["resource_id"]), r["state"], ",".join(str(j) for j in r["jobs"]))
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(header))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _block(row: dict) -> list[str]:
    props = ", ".join(f"{k}={'' if v is None else v}" for k, v in sorted(_properties(row).items()))
    return [
        f"network_address : {row['network_address']}",
        f"resource_id : {row['resource_id']}",
        f"state : {row['state']}",
        f"properties : {props}",
        f"jobs : {' '.join(str(j) for j in row['jobs'])}",
        "",
    ]


def run(args, ctx: Context) -> int:
    db = ctx.db
    ids = parse_int_list(args.resource, "a resource id") or None
    rows = resources.select(db, expression=args.sql, ids=ids, hosts=args.hosts or None)
    if ids and not rows:
        raise NotFoundError(f"resource {ids[0]} does not exist")
    jobs = resources.jobs_on(db, [r["resource_id"] for r in rows])
    for row in rows:
        row["jobs"] = jobs.get(row["resource_id"], [])
    fmt = args.output

    if args.list:
        hosts = sorted({r["network_address"] for r in rows}, key=natural_key)
        if fmt:
            ctx.emit(hosts, fmt)
        else:
            for host in hosts:
                ctx.out(host)
        return 0
    if args.state:
        states: dict[str, dict[str, str]] = {}
        for row in sorted(rows, key=lambda r: (natural_key(r["network_address"]), r["resource_id"])):
            states.setdefault(row["network_address"], {})[str(row["resource_id"])] = row["state"]
        if fmt:
            ctx.emit(states, fmt)
        else:
            for host, by_id in states.items():
                ctx.out(host)
                for rid, state in by_id.items():
                    ctx.out(f"    {rid} : {state}")
        return 0
    if fmt:
        ctx.emit({str(r["resource_id"]): r for r in rows}, fmt)
    elif args.all or ids:
        for row in rows:
            for line in _block(row):
                ctx.out(line)
    else:
        for line in _table(rows):
            ctx.out(line)
    return 0


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
