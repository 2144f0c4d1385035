"""Benchmark of the resource commands, as an admin runs them (whole processes).

    .venv/bin/python bench/bench_resources.py [--hosts 1000 --cpus 2 --cores 16] [--url URL]

Creates a database (a fresh SQLite file unless --url names an empty database), registers
hosts x cpus x cores resources with oar-resources-add, then times oarnodes in its views
and a command's start-up.  Prints one line per measure (median of --repeat runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit


def conf_for(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return f'DB_TYPE=sqlite\nDB_BASE_FILE="{parts.path}"\n'
    return (f"DB_TYPE=Pg\nDB_HOSTNAME={parts.hostname}\nDB_PORT={parts.port or 5432}\n"
            f"DB_BASE_NAME={parts.path.lstrip('/')}\nDB_BASE_LOGIN={parts.username}\n"
            f'DB_BASE_PASSWD="{parts.password}"\n')


def timed(env, *argv, repeat=1) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", *argv], env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--cores", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", help="an empty database (default: a new SQLite file)")
    args = parser.parse_args()

    top = tempfile.mkdtemp(prefix="oar-bench-")
    try:
        url = args.url or f"sqlite:///{top}/oar.sqlite"
        conf = os.path.join(top, "oar.conf")
        with open(conf, "w") as f:
            f.write(conf_for(url))
        env = dict(os.environ, OARCONFFILE=conf)
        n = args.hosts * args.cpus * args.cores
        print(f"# machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"backend {urlsplit(url).scheme}")
        print(f"# {args.hosts} hosts x {args.cpus} cpus x {args.cores} cores = {n} resources")
        timed(env, "oar_appliance.cli.oar_database", "--create")
        results = [
            ("oar-resources-add (all resources, one transaction)",
             timed(env, "oar_appliance.cli.oar_resources_add", "-H", str(args.hosts),
                   "-C", str(args.cpus), "-c", str(args.cores))),
            ("oarnodes --version (start-up)", timed(env, "oar_appliance.cli.oarnodes", "--version", repeat=args.repeat)),
            ("oarnodes (table of every resource)", timed(env, "oar_appliance.cli.oarnodes", repeat=args.repeat)),
            ("oarnodes -J (every resource, all columns)", timed(env, "oar_appliance.cli.oarnodes", "-J", repeat=args.repeat)),
            ("oarnodes -s", timed(env, "oar_appliance.cli.oarnodes", "-s", repeat=args.repeat)),
            ("oarnodes -l", timed(env, "oar_appliance.cli.oarnodes", "-l", repeat=args.repeat)),
            ("oarnodes --sql \"cpu <= 4 AND core < 3\"",
             timed(env, "oar_appliance.cli.oarnodes", "--sql", "cpu <= 4 AND core < 3", repeat=args.repeat)),
            ("oarnodesetting -s Absent -h node-1 -n",
             timed(env, "oar_appliance.cli.oarnodesetting", "-s", "Absent", "-h", "node-1", "-n", repeat=1)),
        ]
        for label, seconds in results:
            print(f"{seconds:8.3f} s  {label}")
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
