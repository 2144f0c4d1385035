"""Benchmark of a scheduling round (oar_appliance.sched.metasched.run_round) on SQLite.

    .venv/bin/python bench/bench_sched.py [--large] [--huge] [--repeat 3] [--trace]

For each workload a fresh SQLite database is created (schema through the package),
filled in bulk (plain executemany, one transaction, fixed seed), copied once per run, and
timed: the full round (load + core + write, what ``oar-metasched`` does) and the core
alone (``schedule_round`` on the loaded data).  Workloads:

- ``nodes``: 500 node-only jobs (/nodes=k) on 100 nodes x 2 cpus x 4 cores;
- ``walltimes``: 1,024 jobs with distinct walltimes on 10 resources;
- ``mixed``: 1,000 mixed waiting jobs (nodes, cores, cpus, properties, besteffort,
  multi-moldable) plus 50 running jobs on 100 nodes x 2 cpus x 16 cores (target: full
  round < 0.3 s);
- ``large`` (``--large``): 10,000 mixed waiting jobs plus 300 running jobs on
  1,000 nodes x 2 cpus x 16 cores (32,000 resources; target: < 2 s end to end);
- ``huge`` (``--huge``): 50,000 mixed waiting jobs plus 1,500 running jobs on
  5,000 nodes x 2 cpus x 16 cores (160,000 resources; target: < 20 s end to end).

Prints one line per workload: median times of ``--repeat`` runs (each on a fresh copy;
wall clock, and the CPU time of the process for the full round, steadier on a shared
machine),
the counts decided, and the peak RSS of the process (``resource.getrusage``); with
``--trace`` also the tracemalloc peak of one full round (slower: tracing costs time).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oar_appliance.db import connection, schema  # noqa: E402
from oar_appliance.sched import metasched  # noqa: E402
from oar_appliance.sched.core import schedule_round  # noqa: E402

NOW = 1_800_000_000
CONFIG = {
    "SCHEDULER_JOB_SECURITY_TIME": 1,
    "SCHEDULER_RESOURCE_ORDER": "resource_id ASC",
    "HIERARCHY_LABELS": ["resource_id", "network_address", "cpu", "core"],
    # the whole round is measured: no SCHEDULER_TIMEOUT cut (the other keys: their defaults)
    "SCHEDULER_TIMEOUT": 0,
}


def create(path: str) -> None:
    db = connection.connect(f"sqlite:///{path}", create=True)
    schema.create(db)
    db.close()


def populate(path: str, hosts: int, cpus: int, cores: int, jobs: list[dict], running: list[dict]) -> None:
    """Resources and jobs straight into the file (explicit ids: one moldable, one group each)."""
    con = sqlite3.connect(path)
    with con:
        res = []
        rid = 0
        for h in range(1, hosts + 1):
            for c in range(cpus):
                for k in range(cores):
                    rid += 1
                    res.append((rid, f"node-{h}", (h - 1) * cpus + c, rid, "default", "Alive",
                                f"sw{(h - 1) // 10 + 1}"))
        con.executemany('INSERT INTO resources (resource_id, network_address, cpu, core, type, state, '
                        'switch) VALUES (?, ?, ?, ?, ?, ?, ?)', res)
        jrows, mrows, grows, drows, logs, types, arows = [], [], [], [], [], [], []
        mid = gid = 0
        for i, j in enumerate(running + jobs, 1):
            queue = "besteffort" if j.get("besteffort") else "default"
            first_mid = mid + 1
            for walltime, levels, constraint in j["moldables"]:
                mid += 1
                gid += 1
                mrows.append((mid, i, walltime))
                grows.append((gid, mid, constraint))
                drows.extend((gid, label, value, order) for order, (label, value) in enumerate(levels))
            state = j.get("state", "Waiting")
            jrows.append((i, "PASSIVE", state, "None", "", "bench", queue, j.get("properties", ""),
                          "/tmp", NOW - 1000, j.get("start", 0),
                          first_mid if state != "Waiting" else 0, "true"))
            logs.append((i, state, NOW - 1000, 0))
            if j.get("besteffort"):
                types.append((i, "besteffort"))
            arows.extend((first_mid, r) for r in j.get("assigned", ()))
        con.executemany('INSERT INTO jobs (job_id, job_type, state, reservation, message, job_user, '
                        'queue_name, properties, launching_directory, submission_time, start_time, '
                        'assigned_moldable_job, command) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)', jrows)
        con.executemany('INSERT INTO moldable_job_descriptions (moldable_id, moldable_job_id, '
                        'moldable_walltime) VALUES (?,?,?)', mrows)
        con.executemany('INSERT INTO job_resource_groups (res_group_id, res_group_moldable_id, '
                        'res_group_property) VALUES (?,?,?)', grows)
        con.executemany('INSERT INTO job_resource_descriptions (res_job_group_id, res_job_resource_type, '
                        'res_job_value, res_job_order) VALUES (?,?,?,?)', drows)
        con.executemany('INSERT INTO job_state_logs (job_id, job_state, date_start, date_stop) '
                        'VALUES (?,?,?,?)', logs)
        con.executemany('INSERT INTO job_types (job_id, type) VALUES (?,?)', types)
        con.executemany('INSERT INTO assigned_resources (moldable_job_id, resource_id) VALUES (?,?)', arows)
    con.close()


# ---------------------------------------------------------------------------- workloads

def node_jobs(rng: random.Random, n: int) -> list[dict]:
    return [{"moldables": [(rng.choice((600, 1800, 3600, 7200)),
                            [("network_address", rng.randint(1, 8))], None)]} for _ in range(n)]


def walltime_jobs(n: int) -> list[dict]:
    return [{"moldables": [(60 + 7 * i, [("resource_id", 1 + i % 3)], None)]} for i in range(n)]


def mixed_jobs(rng: random.Random, n: int, hosts: int) -> list[dict]:
    jobs = []
    for _ in range(n):
        kind = rng.random()
        walltime = rng.randint(1, 48) * 300
        if kind < 0.3:
            job = {"moldables": [(walltime, [("network_address", rng.randint(1, 4))], None)]}
        elif kind < 0.55:
            job = {"moldables": [(walltime, [("core", rng.choice((1, 2, 4, 8, 16)))], None)]}
        elif kind < 0.7:
            job = {"moldables": [(walltime, [("network_address", rng.randint(1, 2)), ("cpu", 1),
                                             ("core", rng.randint(1, 8))], None)]}
        elif kind < 0.8:
            job = {"moldables": [(walltime, [("network_address", 1)],
                                  f"switch = 'sw{rng.randint(1, max(1, hosts // 10))}'")]}
        elif kind < 0.9:
            job = {"moldables": [(walltime, [("core", 4)], None), (walltime * 2, [("core", 2)], None)]}
        else:
            job = {"besteffort": True, "properties": "besteffort = 'YES'",
                   "moldables": [(walltime, [("core", rng.randint(1, 8))], None)]}
        jobs.append(job)
    return jobs


def running_jobs(rng: random.Random, n: int, per_node: int, hosts: int) -> list[dict]:
    nodes = rng.sample(range(hosts), n)
    return [{"state": "Running", "start": NOW - rng.randint(60, 3000),
             "moldables": [(rng.randint(1, 12) * 600, [("network_address", 1)], None)],
             "assigned": range(h * per_node + 1, (h + 1) * per_node + 1)} for h in nodes]


def workloads(large: bool, huge: bool = False):
    rng = random.Random(42)
    yield "nodes: 500 node-only jobs, 100 nodes", (100, 2, 4), node_jobs(rng, 500), [], None
    yield "walltimes: 1,024 distinct walltimes, 10 resources", (10, 1, 1), walltime_jobs(1024), [], None
    yield ("mixed: 1,000 jobs + 50 running, 100 nodes x 32", (100, 2, 16), mixed_jobs(rng, 1000, 100),
           running_jobs(rng, 50, 32, 100), 0.3)
    if large:
        yield ("large: 10,000 jobs + 300 running, 1,000 nodes x 32", (1000, 2, 16),
               mixed_jobs(rng, 10000, 1000), running_jobs(rng, 300, 32, 1000), 2.0)
    if huge:
        rng = random.Random(43)         # (the same jobs with or without --large)
        yield ("huge: 50,000 jobs + 1,500 running, 5,000 nodes x 32", (5000, 2, 16),
               mixed_jobs(rng, 50000, 5000), running_jobs(rng, 1500, 32, 5000), 20.0)


# ---------------------------------------------------------------------------- timing

def one_run(template: str, work: str, trace: bool = False):
    shutil.copyfile(template, work)
    db = connection.connect(f"sqlite:///{work}")
    try:
        if trace:
            tracemalloc.start()
        started, cpu_started = time.perf_counter(), time.process_time()
        report = metasched.run_round(db, CONFIG, NOW)
        full = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        peak = tracemalloc.get_traced_memory()[1] if trace else None
        if trace:
            tracemalloc.stop()
        # the core alone, on freshly loaded data (the file holds the round's writes, so
        # load from a fresh copy)
    finally:
        db.close()
    shutil.copyfile(template, work)
    db = connection.connect(f"sqlite:///{work}")
    try:
        started = time.perf_counter()
        loaded = metasched._load(db, CONFIG, NOW)
        load = time.perf_counter() - started
        started = time.perf_counter()
        schedule_round(loaded.pool, loaded.usable, loaded.occupations, [
            w for w in _waiting(loaded)], NOW, CONFIG["SCHEDULER_JOB_SECURITY_TIME"])
        core = time.perf_counter() - started
    finally:
        db.close()
    return full, load, core, report, peak, cpu


def _waiting(loaded):
    from oar_appliance.sched.core import WaitingJob

    for job in loaded.waiting:
        if job.job_id in loaded.broken:
            continue
        props = job.properties.strip() if job.properties else None
        yield WaitingJob(job.job_id, tuple(loaded.requests[job.job_id]),
                         constraints=(lambda text, p=props: loaded.constraints.of(p, text)),
                         besteffort=job.besteffort)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="add the 10,000 jobs / 32,000 resources case")
    parser.add_argument("--huge", action="store_true",
                        help="add the 50,000 jobs / 160,000 resources case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trace", action="store_true", help="also the tracemalloc peak of one round")
    args = parser.parse_args()
    top = tempfile.mkdtemp(prefix="bench-sched-")
    failed = False
    try:
        for name, (hosts, cpus, cores), jobs, running, target in workloads(args.large, args.huge):
            template = os.path.join(top, "template.sqlite")
            work = os.path.join(top, "work.sqlite")
            for p in (template, work):
                if os.path.exists(p):
                    os.remove(p)
            started = time.perf_counter()
            create(template)
            populate(template, hosts, cpus, cores, jobs, running)
            fill = time.perf_counter() - started
            runs = [one_run(template, work) for _ in range(args.repeat)]
            full = statistics.median(r[0] for r in runs)
            load = statistics.median(r[1] for r in runs)
            core = statistics.median(r[2] for r in runs)
            cpu = statistics.median(r[5] for r in runs)
            report = runs[-1][3]
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            line = (f"{name}: full round {full * 1000:.0f} ms, CPU {cpu * 1000:.0f} ms "
                    f"(load {load * 1000:.0f} ms, core alone "
                    f"{core * 1000:.0f} ms, write ~{max(0.0, full - load - core) * 1000:.0f} ms); "
                    f"{len(report.to_launch)} to launch, {len(report.planned)} planned, "
                    f"{len(report.messages)} not schedulable, {len(report.besteffort_kills)} kills; "
                    f"fill {fill:.1f} s; peak RSS {rss:.0f} MiB")
            if args.trace:
                peak = one_run(template, work, trace=True)[4]
                line += f"; tracemalloc peak {peak / 2**20:.1f} MiB"
            if target is not None:
                ok = full < target
                failed |= not ok
                line += f" [target < {target} s: {'ok' if ok else 'MISSED'}]"
            print(line, flush=True)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
