"""What ``import redsync_core`` costs: time, threads and connections, each in a fresh process.

Three measurements, each repeated and reported as the median:
- ``python -X importtime -c "import redis; import redsync_core"``: the cumulative import time
  of ``redsync_core`` itself once redis-py is loaded (what an application that already uses
  redis-py pays);
- the same with ``import redsync_core`` alone (redis-py's own import included);
- a probe that counts threads and open sockets before and after the import (must not change).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

__all__ = ["measure"]

_PROBE = """
import json, os, threading
def sockets():
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count
threads, socks = threading.active_count(), sockets()
import redsync_core
print(json.dumps({"threads": [threads, threading.active_count()], "sockets": [socks, sockets()]}))
"""


def _importtime_us(code: str, module: str) -> int:
    """Cumulative ``-X importtime`` microseconds of ``module`` in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    for line in proc.stderr.splitlines():
        # "import time:       self [us] |  cumulative | imported package"
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    raise RuntimeError(f"{module} not in the -X importtime output")


def measure(repeats: int = 7) -> dict[str, Any]:
    """Import costs of ``redsync_core`` (ms, medians over ``repeats`` fresh processes)."""
    _importtime_us("import redsync_core", "redsync_core")  # compile .pyc files first
    after_redis = [
        _importtime_us("import redis; import redsync_core", "redsync_core") for _ in range(repeats)
    ]
    alone = [_importtime_us("import redsync_core", "redsync_core") for _ in range(repeats)]
    redis_alone = [_importtime_us("import redis", "redis") for _ in range(repeats)]
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    found = json.loads(probe.stdout)
    return {
        "after_redis_ms": statistics.median(after_redis) / 1000,
        "alone_ms": statistics.median(alone) / 1000,
        "redis_alone_ms": statistics.median(redis_alone) / 1000,
        "repeats": repeats,
        "threads_before_after": found["threads"],
        "sockets_before_after": found["sockets"],
    }
