"""The validity clock: CLOCK_BOOTTIME where Linux has it, and never the wall clock.

On a machine that never slept, CLOCK_BOOTTIME and CLOCK_MONOTONIC read the same, so comparing
the library's clock with either one proves nothing. These tests make the two differ:

- in-process, a fake suspend moves CLOCK_BOOTTIME forward and leaves CLOCK_MONOTONIC,
  ``time.monotonic`` and ``time.perf_counter`` where they were (what a suspend does on Linux);
  a lock must then look expired, as it has on the Redis nodes;
- in a child process inside a Linux time namespace whose CLOCK_BOOTTIME is an hour ahead of
  its CLOCK_MONOTONIC, the library's clock must read the boot-time one.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from redsync_core import AsyncRedsync, Redsync
from redsync_core.testing import memory_urls

needs_boottime = pytest.mark.skipif(
    not hasattr(time, "CLOCK_BOOTTIME"), reason="CLOCK_BOOTTIME is Linux-only"
)


@pytest.fixture
def suspend(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Return ``suspend(seconds)``: from then on CLOCK_BOOTTIME reads ``seconds`` later, while
    every clock that stops during a suspend reads as before."""
    slept_ns = 0
    real_ns, real_s = time.clock_gettime_ns, time.clock_gettime

    def clock_gettime_ns(clock_id: int) -> int:
        now = real_ns(clock_id)
        return now + slept_ns if clock_id == time.CLOCK_BOOTTIME else now

    def clock_gettime(clock_id: int) -> float:
        now = real_s(clock_id)
        return now + slept_ns / 1e9 if clock_id == time.CLOCK_BOOTTIME else now

    monkeypatch.setattr(time, "clock_gettime_ns", clock_gettime_ns)
    monkeypatch.setattr(time, "clock_gettime", clock_gettime)

    def sleep(seconds: float) -> None:
        nonlocal slept_ns
        slept_ns += int(seconds * 1e9)

    return sleep


@needs_boottime
def test_a_suspend_longer_than_the_validity_ends_the_lock(
    suspend: Callable[[float], None],
) -> None:
    mutex = Redsync(memory_urls(3)).new_mutex("clock:suspend", expiry=5.0)
    mutex.lock()
    assert mutex.held
    assert mutex.remaining > 4.0
    suspend(10.0)  # the keys expired on the nodes meanwhile
    assert mutex.remaining == 0
    assert not mutex.held
    assert not mutex.extend(), "an expired lock is never extended"


@needs_boottime
def test_asyncio_a_suspend_longer_than_the_validity_ends_the_lock(
    suspend: Callable[[float], None],
) -> None:
    async def main() -> None:
        async with AsyncRedsync(memory_urls(3)) as ars:
            mutex = ars.new_mutex("clock:suspend", expiry=5.0)
            await mutex.lock()
            assert mutex.held
            assert mutex.remaining > 4.0
            suspend(10.0)
            assert mutex.remaining == 0
            assert not mutex.held
            assert not await mutex.extend()

    asyncio.run(main())


_PROBE = """
import time
from redsync_core._clock import monotonic_ms
print(monotonic_ms(), time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1_000_000,
      time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1_000_000)
"""


@needs_boottime
def test_validity_clock_is_boottime_in_a_time_namespace() -> None:
    """In a time namespace whose boot time is an hour ahead, the clock reads the boot time."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1): the in-process suspend tests cover the clock source")
    command = [
        unshare,
        "--user",
        "--map-root-user",
        "--time",
        "--boottime",
        "3600",
        sys.executable,
        "-c",
        _PROBE,
    ]
    probe = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0 and "Operation not permitted" in probe.stderr:
        pytest.skip("time namespaces are not permitted here: the suspend tests cover this")
    assert probe.returncode == 0, probe.stderr
    ours, boottime, monotonic = map(int, probe.stdout.split())
    assert boottime - monotonic > 3_500_000, "the namespace did not move CLOCK_BOOTTIME"
    assert abs(ours - boottime) < 60_000, "the validity clock is not CLOCK_BOOTTIME"


@pytest.mark.parametrize("jump", [-3600.0, 3600.0])
def test_wall_clock_jumps_do_not_change_the_validity(
    monkeypatch: pytest.MonkeyPatch, jump: float
) -> None:
    real_time = time.time
    rs = Redsync(memory_urls(3))
    mutex = rs.new_mutex("clock", expiry=5.0)
    mutex.lock()
    monkeypatch.setattr(time, "time", lambda: real_time() + jump)
    assert 4.0 < mutex.remaining <= 5.0
    assert mutex.extend()
    assert 4.0 < mutex.remaining <= 5.0
    assert mutex.held
    assert mutex.unlock()
