"""oar-database: create, upgrade, reset and check the OAR database."""

from __future__ import annotations

from ..errors import DatabaseError, UsageError
from .common import Context, make_parser, run_command


def build_parser():
    parser = make_parser(
        "oar-database",
        "Create, upgrade, reset or check the OAR database named by oar.conf\n"
        "(DB_TYPE=sqlite with DB_BASE_FILE, or DB_TYPE=Pg with DB_HOSTNAME, DB_PORT,\n"
        "DB_BASE_NAME, DB_BASE_LOGIN, DB_BASE_PASSWD; on PostgreSQL --create also gives\n"
        "DB_BASE_LOGIN_RO read access to every table except challenges).",
    )
    action = parser.add_argument_group("action (one of)").add_mutually_exclusive_group(required=True)
    action.add_argument("--create", action="store_true", help="create the schema in an empty database")
    action.add_argument("--upgrade", action="store_true", help="apply the schema migrations not applied yet")
    action.add_argument("--reset", action="store_true",
                        help="drop every OAR table and create them again (all jobs and resources are lost)")
    action.add_argument("--check", action="store_true",
                        help="check that every table, column and index exists; exit 4 if not")
    parser.add_argument("-y", "--yes", action="store_true", help="confirm --reset")
    return parser


def run(args, ctx: Context) -> int:
    from ..db import connection, schema

    ctx.require_admin()
    config = ctx.config
    readonly = None
    if config["DB_TYPE"] != "sqlite":
        readonly = (config["DB_BASE_LOGIN_RO"], config["DB_BASE_PASSWD_RO"])
    if args.reset and not args.yes:
        raise UsageError("--reset deletes every job and resource: add --yes to confirm")
    db = ctx.open_db(create=args.create or args.reset, check_schema=False)
    where = connection.backend_for(db).describe()
    if args.create:
        version = schema.create(db, readonly_account=readonly)
        ctx.out(f"OAR database created on {where} (schema version {version}).")
    elif args.upgrade:
        applied = schema.upgrade(db)
        if not applied:
            ctx.out(f"OAR database on {where} is up to date (schema version {schema.current_version(db)}).")
        for step in applied:
            ctx.out(f"Upgraded to schema version {step.version}: {step.description}.")
    elif args.reset:
        version = schema.reset(db, readonly_account=readonly)
        ctx.out(f"OAR database on {where} reset (schema version {version}).")
    else:
        problems = schema.check(db, readonly_login=readonly[0] if readonly else None)
        if problems:
            for problem in problems:
                ctx.out(f"PROBLEM: {problem}")
            raise DatabaseError(f"{len(problems)} problem(s) found in the OAR database on {where}")
        ctx.out(f"OAR database on {where} is complete (schema version {schema.current_version(db)}).")
    return 0


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
