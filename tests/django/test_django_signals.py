"""Signals ``lock_acquired``, ``lock_busy``, ``lock_released``, ``lock_lost``."""

from __future__ import annotations

import logging
import threading

import pytest

from redsync_core import LockLost, LockTaken, LockTimeout
from redsync_django import distributed_lock
from redsync_django.locks import DistributedLock
from redsync_django.signals import lock_acquired, lock_busy, lock_lost, lock_released


@pytest.fixture
def events():
    seen: list[tuple[str, dict]] = []
    receivers = {}
    for label, signal in [
        ("acquired", lock_acquired),
        ("busy", lock_busy),
        ("released", lock_released),
        ("lost", lock_lost),
    ]:

        def receiver(sender, label=label, **kwargs):
            assert sender is DistributedLock
            kwargs.pop("signal")
            seen.append((label, kwargs))

        receivers[label] = receiver
        signal.connect(receiver)
    yield seen
    for label, signal in [
        ("acquired", lock_acquired),
        ("busy", lock_busy),
        ("released", lock_released),
        ("lost", lock_lost),
    ]:
        signal.disconnect(receivers[label])


def test_a_call_sends_acquired_then_released(rs, events):
    @distributed_lock("sig:{n}")
    def job(n):
        events.append(("body", {}))

    job(1)
    assert events == [
        ("acquired", {"name": "sig:1"}),
        ("body", {}),
        ("released", {"name": "sig:1"}),
    ]


def test_a_failing_body_still_sends_released(rs, events):
    @distributed_lock("sig-fail")
    def job():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        job()
    assert [label for label, _ in events] == ["acquired", "released"]


def test_busy_sends_busy_with_the_exception(hold, events):
    hold("sig-busy")
    with pytest.raises(LockTaken):
        distributed_lock("sig-busy")(lambda: None)()
    [(label, kwargs)] = events
    assert label == "busy"
    assert kwargs["name"] == "sig-busy"
    assert isinstance(kwargs["exception"], LockTaken)


async def test_async_and_with_blocks_send_the_same_signals(rs, events):
    async with distributed_lock("sig-async"):
        pass
    with distributed_lock("sig-with"):
        pass
    assert events == [
        ("acquired", {"name": "sig-async"}),
        ("released", {"name": "sig-async"}),
        ("acquired", {"name": "sig-with"}),
        ("released", {"name": "sig-with"}),
    ]


def test_lost_sends_lost_and_not_released(redis_nodes, rs, events):
    lost = threading.Event()
    user_on_lost = []
    lock_lost.connect(lambda sender, **kwargs: lost.set(), weak=False, dispatch_uid="t-lost")

    @distributed_lock("sig-lost", expiry=1.0, on_lost=user_on_lost.append)
    def job():
        for server in redis_nodes[:2]:
            server.kill()  # no quorum left: extension fails, the 1 s validity runs out
        assert lost.wait(60)

    try:
        with pytest.raises(LockLost):
            job()
    finally:
        lock_lost.disconnect(dispatch_uid="t-lost")
    labels = [label for label, _ in events]
    assert labels == ["acquired", "lost"]
    assert events[1][1]["name"] == "sig-lost"
    assert [m.name for m in user_on_lost] == ["sig-lost"]  # the user's on_lost still runs


async def test_an_async_wait_that_runs_out_sends_busy_with_the_timeout(hold, events):
    hold("sig-wait")

    @distributed_lock("sig-wait", wait=0.3, on_busy="raise")
    async def job():
        events.append(("body", {}))

    with pytest.raises(LockTimeout):
        await job()
    [(label, kwargs)] = events  # the test's own lock (not a distributed_lock) sends nothing
    assert label == "busy"
    assert isinstance(kwargs["exception"], LockTimeout)


def test_a_failing_receiver_is_logged_and_the_call_goes_on(rs, events, caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    lock_acquired.connect(broken, weak=False, dispatch_uid="t-broken")
    try:
        with caplog.at_level(logging.ERROR, logger="redsync"):
            assert distributed_lock("sig-broken")(lambda: "ran")() == "ran"
    finally:
        lock_acquired.disconnect(dispatch_uid="t-broken")
    assert "receiver bug" in caplog.text
    assert [label for label, _ in events] == ["acquired", "released"]
