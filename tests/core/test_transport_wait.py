"""How the sync fan-out waits for replies: each as it comes, or (an unlock under contention)
all at once when the node asked last answered.

Under contention the scripts of an unlock reply to the holder and hand the key over to the
next waiter, who is told at the same moment; reading the holder's replies one by one then
takes the CPU from the next holder, once per node. Socket pairs stand for nodes here; the
last test drives real servers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from redsync_core import Redsync
from redsync_core._algorithm.effects import FanOut, Op, Waiter
from redsync_core._transport import sync as sync_transport
from redsync_core.testing import RedisServer


class _Pending:
    """A call in flight on one end of a socket pair (the other end is the node)."""

    buffers = False

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()

    def buffered(self) -> bool:
        return False


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(3)]
    yield made
    for ours, theirs in made:
        ours.close()
        theirs.close()


def _answer_later(pairs: list[tuple[socket.socket, socket.socket]]) -> threading.Thread:
    """Nodes 0 then 2 answer (node 2, asked last, well after node 0); node 1 never does."""

    def answer() -> None:
        time.sleep(0.05)
        pairs[0][1].send(b":1\r\n")
        time.sleep(0.2)
        pairs[2][1].send(b":1\r\n")

    thread = threading.Thread(target=answer)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("last_first", "read"),
    [
        pytest.param(False, [0], id="each-as-it-comes"),
        pytest.param(True, [0, 2], id="once-the-last-node-answered"),
    ],
)
def test_which_replies_one_wait_returns(
    pairs: list[tuple[socket.socket, socket.socket]], last_first: bool, read: list[int]
) -> None:
    inflight = {i: _Pending(ours) for i, (ours, _) in enumerate(pairs)}
    thread = _answer_later(pairs)
    try:
        assert sync_transport._wait(inflight, 5.0, last_first=last_first) == read
    finally:
        thread.join()


def test_last_first_takes_what_is_there_already(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    inflight = {i: _Pending(ours) for i, (ours, _) in enumerate(pairs)}
    pairs[1][1].send(b":1\r\n")
    assert sync_transport._wait(inflight, 5.0, last_first=True) == [1]


class _Buffered(_Pending):
    """A TLS call whose reply was decrypted already: poll() does not see it."""

    buffers = True

    def buffered(self) -> bool:
        return True


def test_a_reply_that_poll_cannot_see_is_read_at_once(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    inflight = {0: _Pending(pairs[0][0]), 1: _Buffered(pairs[1][0])}
    assert sync_transport._wait(inflight, 5.0, last_first=False) == [1]  # poll() sees nothing


def test_last_first_ends_at_the_deadline(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    inflight = {i: _Pending(ours) for i, (ours, _) in enumerate(pairs)}
    assert sync_transport._wait(inflight, 0.05, last_first=True) == []


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The ``last_first`` of every wait of a fan-out."""
    seen: list[bool] = []
    wait = sync_transport._wait

    def spy(
        inflight: dict[int, object], timeout_s: float | None, last_first: bool, buffering: bool
    ) -> list[int]:
        seen.append(last_first)
        return wait(inflight, timeout_s, last_first, buffering)

    monkeypatch.setattr(sync_transport, "_wait", spy)
    return seen


@pytest.mark.parametrize(
    ("effect", "last_first"),
    [
        pytest.param(
            FanOut(Op.RELEASE, "wait:k", "v", ttl_ms=10_000, deadline_ms=1_000,
                   waiter=Waiter("w.1", 1), queued=True),
            True,
            id="unlock-after-a-hand-over",
        ),
        pytest.param(
            FanOut(Op.RELEASE, "wait:k", "v", ttl_ms=10_000, deadline_ms=1_000),
            False,
            id="unlock",
        ),
        pytest.param(
            FanOut(Op.RELEASE, "wait:k", "v", ttl_ms=10_000, deadline_ms=1_000,
                   waiter=Waiter("w.1", 1)),
            False,
            id="clean-up",
        ),
        pytest.param(
            FanOut(Op.ACQUIRE, "wait:k", "v", ttl_ms=10_000, deadline_ms=1_000),
            False,
            id="acquire",
        ),
    ],
)  # fmt: skip
def test_only_an_unlock_after_a_hand_over_reads_last_first(
    redis_nodes: list[RedisServer], waits: list[bool], effect: FanOut, last_first: bool
) -> None:
    with Redsync([server.url for server in redis_nodes]) as rs:
        replies = sync_transport.fan_out(rs._nodes, effect)  # type: ignore[arg-type]
    assert all(reply is not None for reply in replies)
    assert waits
    assert set(waits) == {last_first}
