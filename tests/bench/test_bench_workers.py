"""Benchmark worker processes do not outlive a killed benchmark."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from benchmarks.report import REPO
from redsync_core.testing import RedisServer

#: A benchmark process: one worker, busy with an S2 slice that starts in ten minutes.
BENCHMARK = """
import json, sys, time
from benchmarks.harness import Worker
url = sys.argv[1]
worker = Worker(sys.executable)
setup = {"cmd": "s2_setup", "contender": "limit", "urls": [url], "key": "bench:kill",
         "ttl_s": 10.0, "referee": url, "marker": "bench:kill:marker"}
worker.request(setup, 60)
start_ns = time.monotonic_ns() + 600 * 10**9
worker.send({"cmd": "s2_run", "start_ns": start_ns, "stop_ns": start_ns + 10**9,
             "backoff_s": 0.001})
print(json.dumps(worker.proc.pid), flush=True)
time.sleep(600)
"""


def running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_benchmark_leaves_no_busy_worker_behind(redis_nodes: list[RedisServer]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    benchmark = subprocess.Popen(
        [sys.executable, "-c", BENCHMARK, redis_nodes[0].url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    worker_pid = None
    try:
        assert benchmark.stdout is not None
        worker_pid = json.loads(benchmark.stdout.readline())
        assert running(worker_pid)
        benchmark.kill()  # SIGKILL: no clean-up of its own runs
        benchmark.wait()
        for _ in range(1000):  # the kernel's signal takes a moment; never ten minutes
            if not running(worker_pid):
                break
            time.sleep(0.01)
        assert not running(worker_pid), "the worker outlived the benchmark"
    finally:
        if benchmark.poll() is None:
            benchmark.kill()
            benchmark.wait()
        if worker_pid is not None and running(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)
