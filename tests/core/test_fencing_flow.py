"""The fenced acquisition flow, sans I/O (synthetic replies), its reply decoding, and memory://
nodes (sync and asyncio)."""

from __future__ import annotations

import pytest

from redsync_core import AsyncRedsync, LockNotAcquired, MutexOptions, NodeError, Redsync
from redsync_core._algorithm import flows
from redsync_core._algorithm.effects import FanOut, NodeReply, Op, Status, Tally
from redsync_core._algorithm.fencing import Acquired
from redsync_core._transport.commands import UnexpectedReply, command, decode

TARGET = flows.Target("orders:42", "orders:42", "v", 3)
OPTS = MutexOptions(expiry=1.0, fencing=True, drift_factor=0.0)  # validity: 998 ms - elapsed


def ok(counter: int | None = None) -> NodeReply:
    return NodeReply(Status.OK, counter=counter)


def start(opts: MutexOptions = OPTS, tries: int = 1) -> tuple[object, FanOut]:
    flow = flows.acquire_token(
        opts, TARGET, now_ms=0, tries=tries, timeout_ms=None, randrange=lambda a, b: a
    )
    return flow, flow.send(None)  # type: ignore[attr-defined]


def test_the_token_is_one_more_than_the_largest_counter_read() -> None:
    flow, first = start()
    assert first.op is Op.FENCED_ACQUIRE
    fence = flow.send(Tally((ok(4), ok(9), NodeReply(Status.TAKEN)), 0, 10))  # type: ignore[attr-defined]
    assert fence.op is Op.FENCE
    assert fence.token == 10
    with pytest.raises(StopIteration) as done:
        flow.send(Tally((ok(), ok(), NodeReply(Status.TAKEN)), 10, 30))  # type: ignore[attr-defined]
    # validity runs from the start of the attempt, over both fan-outs: 1000 - 30 - 2
    assert done.value.value == Acquired(30 + 968, 10)


def test_a_fence_without_a_quorum_fails_the_attempt_and_releases() -> None:
    flow, _ = start()
    flow.send(Tally((ok(1), ok(1), ok(1)), 0, 1))  # type: ignore[attr-defined]
    error = NodeError(1, "redis://x", "no reply")
    release = flow.send(Tally((ok(), error, NodeReply(Status.MISSING)), 1, 2))  # type: ignore[attr-defined]
    assert release.op is Op.RELEASE
    with pytest.raises(LockNotAcquired):
        flow.send(Tally((ok(), ok(), ok()), 2, 3))  # type: ignore[attr-defined]


def test_the_fence_counts_against_the_validity() -> None:
    flow, _ = start()
    flow.send(Tally((ok(1), ok(1), ok(1)), 0, 500))  # type: ignore[attr-defined]
    release = flow.send(Tally((ok(), ok(), ok()), 500, 999))  # type: ignore[attr-defined]
    assert release.op is Op.RELEASE  # a quorum took the token, but no validity is left


def test_the_fence_gets_only_what_is_left_of_the_timeout() -> None:
    opts = MutexOptions(expiry=10.0, fencing=True, drift_factor=0.0)  # node deadline 500 ms
    flow = flows.acquire_token(
        opts, TARGET, now_ms=0, tries=None, timeout_ms=100, randrange=lambda a, b: a
    )
    first = flow.send(None)
    assert first.deadline_ms == 100
    fence = flow.send(Tally((ok(1), ok(1), ok(1)), 0, 70))
    assert fence.op is Op.FENCE
    assert fence.deadline_ms == 30  # not the attempt's 100: lock(timeout=0.1) ends by 100 ms


def test_no_fencing_sends_a_plain_set_and_no_token() -> None:
    flow, first = start(MutexOptions(expiry=1.0))
    assert first.op is Op.ACQUIRE
    with pytest.raises(StopIteration) as done:
        flow.send(Tally((ok(), ok(), ok()), 0, 1))  # type: ignore[attr-defined]
    assert done.value.value.token is None


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ([1, 0], NodeReply(Status.OK, counter=0)),
        ([1, 41], NodeReply(Status.OK, counter=41)),
        (-2 - 700, NodeReply(Status.TAKEN, 700)),
        (-1, NodeReply(Status.TAKEN, None)),
    ],
    ids=["set-no-counter", "set-counter", "taken-ttl", "taken-no-expiry"],
)
def test_fenced_acquire_replies_decode(reply: object, expected: NodeReply) -> None:
    assert decode(FanOut(Op.FENCED_ACQUIRE, "k", "v", ttl_ms=10), reply) == expected


@pytest.mark.parametrize("reply", [1, [1], [0, 3], [1, -1], [1, b"3"], b"OK", None])
def test_malformed_fenced_acquire_replies_are_node_failures(reply: object) -> None:
    with pytest.raises(UnexpectedReply):
        decode(FanOut(Op.FENCED_ACQUIRE, "k", "v", ttl_ms=10), reply)


def test_fenced_scripts_name_the_counter_key() -> None:
    args = command(FanOut(Op.FENCE, "app:x", "v", token=7)).args
    assert args == (2, "app:x", "app:x:fence{app:x}", "v", 7)


def test_memory_nodes_hand_out_increasing_tokens() -> None:
    rs = Redsync(["memory://fence-a", "memory://fence-b", "memory://fence-c"])
    tokens = []
    for _ in range(3):
        with rs.new_mutex("fence-flow", fencing=True) as m:
            tokens.append(m.token)
    assert tokens == [1, 2, 3]


async def test_async_memory_nodes_hand_out_increasing_tokens() -> None:
    ars = AsyncRedsync(["memory://afence-a", "memory://afence-b", "memory://afence-c"])
    tokens = []
    for _ in range(3):
        async with ars.new_mutex("fence-flow", fencing=True) as m:
            tokens.append(m.token)
    assert tokens == [1, 2, 3]
