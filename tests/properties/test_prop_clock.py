"""The validity clock: CLOCK_BOOTTIME where Linux has it, and never the wall clock."""

from __future__ import annotations

import time

import pytest

from redsync_core import Redsync
from redsync_core._clock import monotonic_ms
from redsync_core.testing import memory_urls


@pytest.mark.skipif(not hasattr(time, "CLOCK_BOOTTIME"), reason="CLOCK_BOOTTIME is Linux-only")
def test_validity_clock_is_boottime() -> None:
    boot_ms = time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1_000_000
    assert abs(monotonic_ms() - boot_ms) < 50


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
