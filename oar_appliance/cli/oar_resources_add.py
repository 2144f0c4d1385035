"""oar-resources-add: register a whole cluster of hosts x cpus x cores in one go."""

from __future__ import annotations

from .. import resources
from ..errors import UsageError
from .common import Context, make_parser, run_command


def build_parser():
    parser = make_parser(
        "oar-resources-add",
        "Register one resource per core of each host, with the properties host,\n"
        "cpu and core (numbered across the whole cluster, after those already registered)\n"
        "and cpuset (the core's index inside its host, for the cgroup of jobs).\n"
        "Hosts are named by node sets (node-[1-4],gpu-1) or by -H with a prefix.\n"
        "Example: oar-resources-add -H 4 -C 2 -c 4   (node-1..node-4, 32 resources)",
    )
    parser.add_argument("nodesets", metavar="HOSTS", nargs="*", help="host names or node sets")
    parser.add_argument("-H", "--hosts", type=int, metavar="N", help="register N hosts named PREFIX<i>SUFFIX")
    parser.add_argument("--host-prefix", default="node-", help="prefix of generated host names (default node-)")
    parser.add_argument("--host-suffix", default="", help="suffix of generated host names")
    parser.add_argument("--offset", type=int, default=1, help="index of the first generated host (default 1)")
    parser.add_argument("-C", "--cpus", type=int, default=1, metavar="N", help="cpus per host (default 1)")
    parser.add_argument("-c", "--cores", type=int, default=1, metavar="N", help="cores per cpu (default 1)")
    parser.add_argument("-p", "--property", metavar="NAME=VALUE", action="append", default=[],
                        help="set this property on every new resource; repeatable")
    parser.add_argument("--state", choices=("Alive", "Absent", "Dead"), default="Alive",
                        help="state of the new resources (default Alive)")
    return parser


def host_names(args) -> list[str]:
    names: list[str] = []
    if args.nodesets:
        from ClusterShell.NodeSet import NodeSet, NodeSetParseError

        for text in args.nodesets:
            try:
                names.extend(NodeSet(text))
            except NodeSetParseError as exc:
                raise UsageError(f"invalid node set {text!r}: {exc}") from None
    if args.hosts is not None:
        if args.hosts < 1:
            raise UsageError("-H needs at least one host")
        names.extend(f"{args.host_prefix}{i}{args.host_suffix}"
                     for i in range(args.offset, args.offset + args.hosts))
    if not names:
        raise UsageError("name the hosts (node sets, or -H N)")
    return names


def run(args, ctx: Context) -> int:
    hosts = host_names(args)
    if args.cpus < 1 or args.cores < 1:
        raise UsageError("-C and -c need at least 1")
    extra = resources.parse_assignments(args.property)
    extra["state"] = args.state
    ctx.require_admin()
    db = ctx.db
    with db.atomic():
        ids = resources.register_cluster(db, hosts, args.cpus, args.cores, ctx.now, extra)
    ctx.out(f"{len(ids)} resources added on {len(hosts)} hosts: ids {ids[0]} to {ids[-1]}.")
    return 0


def main(argv=None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
