"""Benchmark of job submission: does oarsub slow down with the number of resources?

    .venv/bin/python bench/bench_oarsub.py [--repeat 7] [--url URL-of-an-empty-database]

For clusters of 10 and 5,000 resources (and 32,000 with --large), times whole
``oarsub`` processes (the user's view) and the submission alone in-process, median of
--repeat runs; also the start-up of the commands (``--version``).
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

CLUSTERS = {10: (10, 1, 1), 5000: (125, 2, 20)}
LARGE = {32000: (1000, 2, 16)}


def run(env, *argv) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *argv], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return elapsed


def in_process_submission(conf: str, repeat: int) -> float:
    """The submission itself (rules, checks, writing), without interpreter start-up."""
    from oar_appliance.cli.common import caller_name
    from oar_appliance.conf import load_config
    from oar_appliance.db import connection
    from oar_appliance.job_request import JobRequest
    from oar_appliance.lang.request import parse_requests
    from oar_appliance.submission import submit

    config = load_config(conf)
    db = connection.connect(config.database_url())
    times = []
    for _ in range(repeat):
        job = JobRequest(user=caller_name(), command="true",
                         moldables=parse_requests(["/nodes=1/core=1"], config["HIERARCHY_LABELS"],
                                                  config["OARSUB_NODES_RESOURCES"], "/resource_id=1"))
        started = time.perf_counter()
        submit(db, job, config, int(time.time()))
        times.append(time.perf_counter() - started)
    db.close()
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--large", action="store_true", help="also 32,000 resources")
    args = parser.parse_args()
    print(f"# machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, SQLite")
    clusters = {**CLUSTERS, **(LARGE if args.large else {})}
    for size, (hosts, cpus, cores) in clusters.items():
        top = tempfile.mkdtemp(prefix="oar-bench-")
        try:
            conf = os.path.join(top, "oar.conf")
            with open(conf, "w") as f:
                f.write(f'DB_TYPE=sqlite\nDB_BASE_FILE="{top}/oar.sqlite"\nSERVER_PORT=1\nLOG_FILE="{top}/log"\n')
            env = dict(os.environ, OARCONFFILE=conf)
            run(env, "oar_appliance.cli.oar_database", "--create")
            run(env, "oar_appliance.cli.oar_resources_add", "-H", str(hosts), "-C", str(cpus), "-c", str(cores))
            whole = statistics.median(
                run(env, "oar_appliance.cli.oarsub", "-l", "/nodes=1/core=1", "true") for _ in range(args.repeat))
            os.environ["OARCONFFILE"] = conf
            alone = in_process_submission(conf, args.repeat)
            print(f"{size:>6} resources: oarsub process {whole:.3f} s, submission in-process {alone * 1000:.1f} ms")
            if size == 10:
                for command in ("oarsub", "oarstat", "oarnodes"):
                    start = statistics.median(run(env, f"oar_appliance.cli.{command}", "--version")
                                              for _ in range(args.repeat))
                    print(f"        start-up {command} --version: {start:.3f} s")
        finally:
            shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
