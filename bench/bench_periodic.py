"""Benchmark of the server's periodic modules on a large SQLite database (in-process).

    .venv/bin/python bench/bench_periodic.py [--ended 100000] [--running 2000] [--hosts 1000]

Creates a fresh SQLite database with --hosts hosts of 32 cores, --ended Terminated jobs
(each on 1 to 64 cores, over a year) and --running Running jobs (a tenth of them past
their walltime, a tenth with --checkpoint due), a fifth of the hosts Suspected by finaud
(half of them for long enough to become Dead),
then times one call of each module as oar-server makes it:

* ``accounting.update`` of every ended job (first run: the whole history);
* ``sarko.run`` (walltime kills, checkpoints, stuck kills, Dead switch);
* ``finaud.run`` with a check that answers at once (the time of the module, not of a ping).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oar_appliance import accounting, finaud, sarko  # noqa: E402
from oar_appliance.conf import Config  # noqa: E402
from oar_appliance.db import connection, schema  # noqa: E402

CORES = 32
DAY = 86400


def populate(path: str, hosts: int, ended: int, running: int, now: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    con = sqlite3.connect(path)
    cur = con.cursor()
    cur.executemany('INSERT INTO "resources" ("network_address", "state", "finaud_decision") VALUES (?, ?, ?)',
                    [(f"node-{h}", "Suspected" if h % 5 == 0 else "Alive", "YES" if h % 5 == 0 else "NO")
                     for h in range(1, hosts + 1) for _ in range(CORES)])
    cur.executemany('INSERT INTO "resource_logs" ("resource_id", "attribute", "value", "date_start", '
                    '"date_stop", "finaud_decision") VALUES (?, \'state\', ?, ?, 0, \'NO\')',
                    [(r, "Suspected" if ((r - 1) // CORES + 1) % 5 == 0 else "Alive",
                      now - 3600 if ((r - 1) // CORES + 1) % 10 == 0 else now - 60)
                     for r in range(1, hosts * CORES + 1)])
    total = hosts * CORES
    jobs, moldables, assigned = [], [], []
    job_id = 0
    for i in range(ended + running):
        job_id += 1
        is_running = i >= ended
        size = rng.choice((1, 1, 2, 4, 8, 16, 32, 64))
        walltime = rng.choice((600, 3600, 7200, 86400))
        if is_running:
            start = now - (walltime + 60 if i % 10 == 0 else rng.randrange(1, walltime))
            stop, state, checkpoint = 0, "Running", (walltime if i % 10 == 1 else 0)
        else:
            start = now - 365 * DAY + i * (365 * DAY // max(1, ended))
            stop, state, checkpoint = start + rng.randrange(1, walltime), rng.choice(("Terminated", "Error")), 0
        jobs.append((job_id, f"user{i % 50}", f"p{i % 7}", "default", state, start, stop, job_id, checkpoint))
        moldables.append((job_id, job_id, walltime))
        first = (i * 37) % total
        assigned.extend((job_id, 1 + (first + k) % total) for k in range(size))
    cur.executemany('INSERT INTO "jobs" ("job_id", "job_user", "project", "queue_name", "state", "start_time", '
                    '"stop_time", "assigned_moldable_job", "checkpoint", "launching_directory") '
                    'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, \'/tmp\')', jobs)
    cur.executemany('INSERT INTO "moldable_job_descriptions" ("moldable_id", "moldable_job_id", '
                    '"moldable_walltime") VALUES (?, ?, ?)', moldables)
    cur.executemany('INSERT OR IGNORE INTO "assigned_resources" ("moldable_job_id", "resource_id") VALUES (?, ?)',
                    assigned)
    con.commit()
    con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ended", type=int, default=100_000)
    parser.add_argument("--running", type=int, default=2_000)
    parser.add_argument("--hosts", type=int, default=1_000)
    args = parser.parse_args()
    now = int(time.time())
    workdir = tempfile.mkdtemp(prefix="bench-periodic-")
    try:
        path = os.path.join(workdir, "oar.sqlite")
        db = connection.connect(f"sqlite:///{path}", create=True)
        schema.create(db)
        db.close()
        populate(path, args.hosts, args.ended, args.running, now)
        db = connection.connect(f"sqlite:///{path}")
        config = Config().with_overrides(DEAD_SWITCH_TIME=600)
        print(f"# {platform.machine()}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
              f"{args.hosts} hosts x {CORES} cores, {args.ended} ended jobs, {args.running} running")

        started = time.perf_counter()
        report = accounting.update(db, config, now)
        print(f"accounting.update: {time.perf_counter() - started:.2f} s "
              f"({report.jobs} jobs, {report.rows} rows, {report.batches} batches)")

        started = time.perf_counter()
        sarko_report = sarko.run(db, config, now)
        print(f"sarko.run: {time.perf_counter() - started:.2f} s ({len(sarko_report.walltime_kills)} kills, "
              f"{len(sarko_report.checkpoints)} checkpoints, {len(sarko_report.dead_resources)} resources Dead)")

        started = time.perf_counter()
        again = sarko.run(db, config, now + 1)
        print(f"sarko.run, nothing new: {time.perf_counter() - started:.2f} s "
              f"({len(again.walltime_kills)} kills)")

        started = time.perf_counter()
        finaud_report = finaud.run(db, config, now, lambda hosts: {h for h in hosts if h.endswith("7")})
        print(f"finaud.run: {time.perf_counter() - started:.2f} s ({len(finaud_report.checked)} hosts checked, "
              f"{len(finaud_report.suspected_hosts)} suspected, {len(finaud_report.revived_hosts)} revived)")
        db.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
