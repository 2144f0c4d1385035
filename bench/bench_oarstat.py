"""Benchmark of oarstat on a database with many jobs, as users run it (whole processes).

    .venv/bin/python bench/bench_oarstat.py [--jobs 100000 --unfinished 2000] [--repeat 3]

Creates a fresh SQLite database (oar-database --create, oar-resources-add), writes
--jobs jobs in bulk (plain executemany, one transaction) with everything that hangs off
them -- moldable alternative, resource group and levels, state log, assigned resources
of started jobs, Gantt prediction and planned resources of waiting ones, types, events,
dependencies, challenge -- with --unfinished of them not finished (Running, Waiting,
Hold, ...) and the rest Terminated or Error, then times oarstat in its views.  Prints
one line per measure (median of --repeat runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

#: how the jobs not finished are spread over the states (weights)
UNFINISHED_SPREAD = {
    "Running": 35, "Waiting": 45, "Hold": 7.5, "toLaunch": 2, "Launching": 2, "Finishing": 2.5,
    "Suspended": 2, "Resuming": 0.5, "toAckReservation": 1, "toError": 2.5,
}
STARTED = {"Running", "toLaunch", "Launching", "Finishing", "Suspended", "Resuming", "Terminated", "Error"}
USERS = [f"user{i:03d}" for i in range(200)]
PROJECTS = [f"p{i}" for i in range(20)]
HOSTS, CPUS, CORES = 100, 2, 16


def timed(env, *argv, repeat=1) -> tuple[float, int]:
    """Median wall time of ``python -m argv`` and the number of lines it printed."""
    times, lines = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", *argv], env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        lines = done.stdout.count("\n")
    return statistics.median(times), lines


def populate(path: str, jobs: int, unfinished: int, seed: int = 42) -> dict:
    """Write the jobs straight into the SQLite file; return a few ids to ask for."""
    rng = random.Random(seed)
    resources = HOSTS * CPUS * CORES
    now = int(time.time())
    first_submission = now - 365 * 86400
    step = (now - 3600 - first_submission) // jobs
    unfinished_ids = set(rng.sample(range(jobs - unfinished * 3, jobs), unfinished))  # recent ones
    states = list(UNFINISHED_SPREAD)
    weights = list(UNFINISHED_SPREAD.values())

    rows: dict[str, list[tuple]] = {t: [] for t in (
        "jobs", "moldables", "groups", "levels", "logs", "assigned", "predictions", "planned",
        "types", "events", "dependencies", "challenges")}
    picks = {}
    waiting_start = now + 60
    for n in range(jobs):
        job_id = n + 1
        if n in unfinished_ids:
            state = rng.choices(states, weights)[0]
        else:
            state = "Error" if rng.random() < 0.03 else "Terminated"
        user = rng.choice(USERS)
        submission = first_submission + n * step
        walltime = rng.choice((600, 3600, 7200, 86400))
        cores = rng.choice((1, 1, 2, 4, 16))
        start = stop = 0
        if state in STARTED and state != "toLaunch":
            start = submission + rng.randint(0, 600)
        if state in ("Terminated", "Error"):
            stop = start + rng.randint(1, walltime) if start else 0
        rows["jobs"].append((
            job_id, f"job_{job_id}", user, state, "besteffort" if n % 10 == 0 else "default",
            rng.choice(PROJECTS), f"./run.sh {job_id}", f"/home/{user}", submission, start, stop,
            job_id if state in STARTED else 0, f"oarsub -l /core={cores} ./run.sh {job_id}",
            "PASSIVE", "YES" if stop else "NO", job_id if n % 50 == 0 else 0,
        ))
        rows["moldables"].append((job_id, job_id, walltime))
        rows["groups"].append((job_id, job_id))
        rows["levels"].append((job_id, "core", cores, 0))
        rows["logs"].append((job_id, state, submission, 0))
        first = rng.randrange(0, resources - cores) + 1
        if state in STARTED:
            rows["assigned"].extend((job_id, rid) for rid in range(first, first + cores))
        elif state == "Waiting":
            rows["predictions"].append((job_id, waiting_start))
            rows["planned"].extend((job_id, rid) for rid in range(first, first + cores))
            waiting_start += 30
        if n % 10 == 0:
            rows["types"].append((job_id, "besteffort"))
        if n % 7 == 0:
            rows["events"].append(("FRAG_JOB_REQUEST" if n % 2 else "WALLTIME", job_id, submission + 10,
                                   "event of the benchmark", "NO"))
        if n % 25 == 1 and n > 1:
            rows["dependencies"].append((job_id, job_id - 1))
        rows["challenges"].append((job_id, f"secret-{job_id}"))
        if state == "Running":
            picks.setdefault("running", job_id)
    picks["user"] = rows["jobs"][-1][2]

    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = wal")
    statements = {
        "jobs": 'INSERT INTO jobs (job_id, job_name, job_user, state, queue_name, project, command, '
                'launching_directory, submission_time, start_time, stop_time, assigned_moldable_job, '
                'initial_request, job_type, accounted, array_id) '
                'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        "moldables": "INSERT INTO moldable_job_descriptions (moldable_id, moldable_job_id, moldable_walltime) "
                     "VALUES (?, ?, ?)",
        "groups": "INSERT INTO job_resource_groups (res_group_id, res_group_moldable_id) VALUES (?, ?)",
        "levels": "INSERT INTO job_resource_descriptions (res_job_group_id, res_job_resource_type, "
                  "res_job_value, res_job_order) VALUES (?, ?, ?, ?)",
        "logs": "INSERT INTO job_state_logs (job_id, job_state, date_start, date_stop) VALUES (?, ?, ?, ?)",
        "assigned": "INSERT INTO assigned_resources (moldable_job_id, resource_id) VALUES (?, ?)",
        "predictions": "INSERT INTO gantt_jobs_predictions (moldable_job_id, start_time) VALUES (?, ?)",
        "planned": "INSERT INTO gantt_jobs_resources (moldable_job_id, resource_id) VALUES (?, ?)",
        "types": "INSERT INTO job_types (job_id, type) VALUES (?, ?)",
        "events": "INSERT INTO event_logs (type, job_id, date, description, to_check) VALUES (?, ?, ?, ?, ?)",
        "dependencies": "INSERT INTO job_dependencies (job_id, job_id_required) VALUES (?, ?)",
        "challenges": "INSERT INTO challenges (job_id, challenge) VALUES (?, ?)",
    }
    with db:
        for table, sql in statements.items():
            db.executemany(sql, rows[table])
    db.execute("ANALYZE")
    db.close()
    picks["rows"] = sum(len(r) for r in rows.values())
    return picks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--unfinished", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", metavar="DIR",
                        help="build the database in DIR (created) and keep it, with its oar.conf")
    args = parser.parse_args()
    if not 0 < args.unfinished * 3 <= args.jobs:
        parser.error("--unfinished must be at most a third of --jobs")

    if args.keep:
        os.makedirs(args.keep)
    top = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="oar-bench-")
    try:
        path = os.path.join(top, "oar.sqlite")
        conf = os.path.join(top, "oar.conf")
        with open(conf, "w") as f:
            f.write(f'DB_TYPE=sqlite\nDB_BASE_FILE="{path}"\nLOG_FILE="{top}/oar.log"\n')
        env = dict(os.environ, OARCONFFILE=conf)
        print(f"# machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              "backend sqlite")
        timed(env, "oar_appliance.cli.oar_database", "--create")
        timed(env, "oar_appliance.cli.oar_resources_add", "-H", str(HOSTS), "-C", str(CPUS), "-c", str(CORES))
        started = time.perf_counter()
        picks = populate(path, args.jobs, args.unfinished)
        print(f"# {args.jobs} jobs ({args.unfinished} not finished), {picks['rows']} rows written "
              f"in {time.perf_counter() - started:.1f} s; {HOSTS * CPUS * CORES} resources")
        window = time.strftime("%Y-%m-%d %H:%M:%S,", time.localtime(time.time() - 86400)) + \
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() + 86400))
        measures = [
            ("oarstat --version (start-up)", ["--version"]),
            ("oarstat (table of the jobs not finished)", []),
            ("oarstat -J (full records of the jobs not finished)", ["-J"]),
            ("oarstat -f (full records, text)", ["-f"]),
            (f"oarstat -f -j {picks['running']}", ["-f", "-j", str(picks["running"])]),
            (f"oarstat -u {picks['user']}", ["-u", picks["user"]]),
            ("oarstat -s", ["-s"]),
            ("oarstat --sql \"project = 'p3'\" (every state)", ["--sql", "project = 'p3'"]),
            ("oarstat --sql \"project = 'p3'\" -J (every state)", ["--sql", "project = 'p3'", "-J"]),
            ("oarstat -g (one day before and after now)", ["-g", window]),
        ]
        for label, argv in measures:
            seconds, lines = timed(env, "oar_appliance.cli.oarstat", *argv, repeat=args.repeat)
            print(f"{seconds:8.3f} s  {label}  [{lines} lines]")
    finally:
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
