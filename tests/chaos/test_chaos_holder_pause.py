"""A holder process with an auto-extended lock is frozen (SIGSTOP) past its expiry.

This is Kleppmann's process-pause scenario. What the library can promise, and what is checked:

- while the holder runs, auto-extension keeps the lock far beyond one expiry (the contender
  fails throughout);
- while the holder is frozen nothing extends the lock, so it expires; the contender may take it,
  but only once the holder's validity is over: the contender's acquisition time (when its
  lock() returned, on the system-wide CLOCK_BOOTTIME clock) is >= the holder's last known
  ``until`` (its validity end as it saw it just before the freeze);
- after SIGCONT the holder learns that it lost the lock: ``mutex.lost`` becomes True,
  ``on_lost`` is called once, and the ``with`` block raises ``LockLost``.

The pause *after* the holder's own validity check is what no lease can prevent; the holder must
check ``remaining`` (or use a compare-and-set at the resource) before its side effects.

No wait here can last forever: the holder shares no lock with the other processes (it may be
stopped while holding one). It publishes its ``until`` in a lock-free shared double (one
writer; an aligned 8-byte store is atomic), and every join, wait and queue get has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import time
from typing import Any

import pytest
from chaos_harness import now, pause_process, resume_process

from redsync_core import AsyncRedsync, LockLost, Redsync

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

EXPIRY = 1.0
NAME = "chaos:paused-holder"
_CONTEXT = multiprocessing.get_context("fork")


def _holder(flavour: str, urls: list[str], shared: Any, out: Any) -> None:
    """Hold NAME with auto-extension, publishing the validity end until the lock is lost.

    ``shared.value`` > 0 tells the others that the lock is held.
    """
    report: dict[str, Any] = {"on_lost": [], "raised": None, "lost": None}

    def publish(remaining: float) -> None:
        # The last known `until`: only ever moves forward (remaining reads 0 once lost).
        shared.value = max(shared.value, now() + remaining)

    def on_lost(mutex: Any) -> None:
        report["on_lost"].append(now())

    give_up = now() + 30
    try:
        if flavour == "sync":
            rs = Redsync(urls)
            mutex = rs.new_mutex(NAME, expiry=EXPIRY, auto_extend=True, on_lost=on_lost)
            try:
                with mutex:
                    publish(mutex.remaining)
                    while not mutex.lost and now() < give_up:
                        publish(mutex.remaining)
                        time.sleep(0.005)
            except LockLost as exc:
                report["raised"] = type(exc).__name__
            report["lost"] = mutex.lost
            rs.close()
        else:

            async def main() -> None:
                ars = AsyncRedsync(urls)
                mutex = ars.new_mutex(NAME, expiry=EXPIRY, auto_extend=True, on_lost=on_lost)
                try:
                    async with mutex:
                        publish(mutex.remaining)
                        while not mutex.lost and now() < give_up:
                            publish(mutex.remaining)
                            await asyncio.sleep(0.005)
                except LockLost as exc:
                    report["raised"] = type(exc).__name__
                report["lost"] = mutex.lost
                await ars.close()

            asyncio.run(main())
    except BaseException as exc:
        report["raised"] = f"{type(exc).__name__}: {exc}"
    out.put(report)


def _wait_until_held(until: Any, timeout: float) -> bool:
    """Poll the holder's published ``until`` (no shared lock: the holder may be stopped)."""
    give_up = now() + timeout
    while until.value == 0.0:
        if now() > give_up:
            return False
        time.sleep(0.005)
    return True


def _holder_state(holder: Any, reports: Any) -> str:
    """What a holder that never published a validity did: its report, or that it still runs."""
    try:
        return f"its report: {reports.get(timeout=1)}"
    except queue.Empty:
        alive = holder.is_alive()
        return "still running, no report" if alive else f"exit code {holder.exitcode}, no report"


def _contender(urls: list[str], until: Any, shared_at: Any, stop: Any) -> None:
    """Try the lock every 20 ms once the holder has it; record when it was first obtained."""
    rs = Redsync(urls, expiry=EXPIRY)
    _wait_until_held(until, 30)
    give_up = now() + 60
    while not stop.is_set() and now() < give_up:
        mutex = rs.new_mutex(NAME, tries=1)
        if mutex.try_lock():
            shared_at.value = now()  # lock() returned: acquisition time
            mutex.unlock()
            break
        time.sleep(0.02)
    rs.close()


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
def test_frozen_holder_loses_the_lock_and_nobody_takes_it_before_its_validity_ends(
    flavour: str, redis_servers: Any, chaos_figures: Any
) -> None:
    nodes = redis_servers(5)
    urls = [n.url for n in nodes]
    # lock=False: a lock inside these values could be held by a process frozen mid-write, and
    # reading them would then wait forever. Each has a single writer.
    until = _CONTEXT.Value("d", 0.0, lock=False)
    contender_at = _CONTEXT.Value("d", 0.0, lock=False)
    stop = _CONTEXT.Event()  # used by the parent and the contender only (never stopped)
    reports: Any = _CONTEXT.Queue()
    holder = _CONTEXT.Process(target=_holder, args=(flavour, urls, until, reports))
    contender = _CONTEXT.Process(target=_contender, args=(urls, until, contender_at, stop))
    holder.start()
    contender.start()
    paused = False
    try:
        assert _wait_until_held(until, 20), (
            f"the holder never acquired the lock ({_holder_state(holder, reports)})"
        )
        held_from = now()
        time.sleep(3 * EXPIRY)  # auto-extension must keep it through three expiries
        assert contender_at.value == 0.0, "the contender got the lock while the holder extended it"

        pause_process(holder.pid or 0)
        paused = True
        paused_at = now()
        last_known_until = until.value
        time.sleep(3 * EXPIRY)
        acquired_while_paused = contender_at.value
        resume_process(holder.pid or 0)
        paused = False
        report = reports.get(timeout=30)
    finally:
        stop.set()
        if paused:
            resume_process(holder.pid or 0)
        for proc in (holder, contender):
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()  # our own child, by its PID
                proc.join(timeout=10)
    with contextlib.suppress(queue.Empty):
        reports.get_nowait()

    margin = acquired_while_paused - last_known_until
    chaos_figures(
        {
            "scenario": f"{flavour} holder SIGSTOPped past its expiry (auto_extend)",
            "faults injected": 1,
            "held with extensions before the pause": f"{paused_at - held_from:.2f} s (expiry {EXPIRY} s)",
            "acquisitions checked": 2,
            "contender acquired after holder's last known until by": f"{margin:.3f} s",
            "holder report": report,
            "violations": int(margin < 0),
        }
    )
    assert acquired_while_paused > 0, "the contender never got the expired lock (no progress)"
    assert acquired_while_paused >= last_known_until, (
        f"SAFETY VIOLATION: the contender acquired at {acquired_while_paused:.4f}, before the "
        f"frozen holder's validity ended at {last_known_until:.4f}"
    )
    assert report["lost"] is True
    assert len(report["on_lost"]) == 1
    assert report["raised"] == "LockLost"
