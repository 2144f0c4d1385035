"""Benchmark of the execution side: jobs started with LocalConnector, as the launcher does.

    .venv/bin/python bench/bench_oarexec.py [--jobs 20] [--parallel 8]

Each job runs ``true``; a zmq ROUTER in this process acknowledges the end reports.
Measures (whole processes, real oarexec):

* launch: ``start_oarexec`` until oarexec is ready and detached (what the launcher waits);
* end to report: from the return of ``start_oarexec`` to the report's arrival (the job's
  whole life on the node: detach, fork of the shell, ``true``, report);
* the same launches ``--parallel`` at a time from threads (the launcher's pool).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import zmq

from oar_appliance.execution import LocalConnector


class Acker:
    def __init__(self):
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.ROUTER)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.arrivals: dict[int, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self.done.is_set():
            if poller.poll(100):
                frames = self.sock.recv_multipart()
                report = json.loads(frames[-1])
                self.arrivals[report["job_id"]] = time.monotonic()
                self.sock.send_multipart([frames[0], b"", b'{"ack": true}'])

    def wait(self, job_ids, timeout=120):
        deadline = time.monotonic() + timeout
        while not all(j in self.arrivals for j in job_ids):
            if time.monotonic() > deadline:
                raise SystemExit("reports missing")
            time.sleep(0.01)

    def stop(self):
        self.done.set()
        self.thread.join()
        self.sock.close()
        self.context.term()


def job_data(job_id, work, port):
    return {"job_id": job_id, "user": __import__("pwd").getpwuid(os.getuid()).pw_name,
            "command": "true", "launching_directory": work, "challenge": "c",
            "server": {"host": "127.0.0.1", "port": port}, "runtime_dir": work + "/runtime",
            "node_file_lines": ["localhost"], "walltime": 60}


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    connector = LocalConnector()
    acker = Acker()
    work = tempfile.mkdtemp(prefix="bench-oarexec-")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},"
          f" load {os.getloadavg()[0]:.1f}")
    try:
        launch, to_report, started = [], [], {}
        for job_id in range(1, args.jobs + 1):
            t0 = time.monotonic()
            connector.start_oarexec("localhost", job_data(job_id, work, acker.port), 30)
            started[job_id] = time.monotonic()
            launch.append(started[job_id] - t0)
            acker.wait([job_id])
            to_report.append(acker.arrivals[job_id] - started[job_id])
        print(f"sequential, {args.jobs} jobs: launch median {statistics.median(launch)*1000:.0f} ms"
              f" (p90 {pct(launch, .9)*1000:.0f}); end to report median"
              f" {statistics.median(to_report)*1000:.0f} ms (p90 {pct(to_report, .9)*1000:.0f})")
        ids = list(range(1001, 1001 + args.jobs))
        t0 = time.monotonic()
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda j: connector.start_oarexec("localhost", job_data(j, work, acker.port), 60), ids))
        launched = time.monotonic() - t0
        acker.wait(ids)
        total = max(acker.arrivals[j] for j in ids) - t0
        print(f"{args.parallel} at a time, {args.jobs} jobs: all launched in {launched:.2f} s"
              f" ({args.jobs/launched:.1f} jobs/s), all reported in {total:.2f} s")
    finally:
        acker.stop()
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
