"""A node that answers with replies of the wrong type must count as a failed node, never crash.

A tiny fake RESP server (a thread on loopback) answers every command, the connection handshake
included, with one canned reply. With three such nodes ``lock()`` must fail with a
``LockNotAcquired`` subclass and ``unlock``/``extend``/``valid`` must return False; with one
such node next to two healthy ones the lock works and nothing is left behind. ``ping()`` and
``inspect()`` must report, not raise.

The acquire is a script answering an integer, so every other reply (``+OK`` and the RESP3 null
included, which were real answers to a plain ``SET NX``) makes the node a failed one:
``QuorumUnreachable`` listing all three nodes.

``ping()`` reports a node as reachable only when it answered INFO with text (a server that
hides its version shows ``"?"``); ``inspect()`` never takes a wrong reply for a free or held
key: the verdict is "unknown" with an error on every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

import pytest

from redsync_core import AsyncRedsync, LockNotAcquired, QuorumUnreachable, Redsync
from redsync_core._transport.commands import UnexpectedReply, decode_script_code

REPLIES = {
    "simple OK": b"+OK\r\n",
    "integer 5": b":5\r\n",
    "empty array": b"*0\r\n",
    "bulk string": b"$3\r\nabc\r\n",
    "error": b"-ERR I am not Redis\r\n",
    "RESP3 null": b"_\r\n",
    "garbage": b"HTTP/1.1 400 Bad Request\r\n\r\n",
    "closes": b"",
}
#: What lock() does with three such nodes: None (the lock is granted) or the exception type.
LOCK_OUTCOME: dict[str, type[LockNotAcquired] | None] = {
    label: QuorumUnreachable for label in REPLIES
}
#: The replies that ping() takes for an INFO answer (text without a version line).
ANSWERS_INFO = {"simple OK", "bulk string"}


class FakeNode:
    """Answer every command on every connection with ``reply`` (b"": close the connection)."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"redis://127.0.0.1:{self._sock.getsockname()[1]}/0"
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                if not self.reply:
                    conn.close()
                    return
                conn.sendall(self.reply)

    def close(self) -> None:
        self._sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def fakes(request: pytest.FixtureRequest) -> Any:
    made: list[FakeNode] = []

    def make(reply: bytes, n: int) -> list[FakeNode]:
        nodes = [FakeNode(reply) for _ in range(n)]
        made.extend(nodes)
        return nodes

    yield make
    for node in made:
        node.close()


def _check_refusal(caught: pytest.ExceptionInfo[LockNotAcquired], label: str) -> None:
    assert type(caught.value) is LOCK_OUTCOME[label]
    if isinstance(caught.value, QuorumUnreachable):
        assert sorted(e.node for e in caught.value.errors) == [0, 1, 2]


@pytest.mark.parametrize("label", list(REPLIES))
def test_sync_wrong_type_replies_count_as_node_failures(
    redis_servers: Any, fakes: Any, label: str
) -> None:
    healthy = redis_servers(2)
    bad = fakes(REPLIES[label], 3)
    options = {"expiry": 2.0, "tries": 2, "retry_delay": 0.01}
    with Redsync([n.url for n in bad], **options) as rs:
        mutex = rs.new_mutex("m")
        if LOCK_OUTCOME[label] is None:
            mutex.lock()  # "+OK" to SET NX is a yes vote
        else:
            with pytest.raises(LockNotAcquired) as caught:
                mutex.lock()
            _check_refusal(caught, label)
            assert mutex.extend() is False
        assert mutex.unlock() is False
        assert mutex.valid() is False
    with Redsync([healthy[0].url, bad[0].url, healthy[1].url], **options) as rs:
        mutex = rs.new_mutex("m")
        mutex.lock()
        assert mutex.extend()
        assert mutex.unlock()
    for server in healthy:
        client = server.client()
        try:
            assert client.dbsize() == 0
        finally:
            client.close()


@pytest.mark.parametrize("label", list(REPLIES))
def test_asyncio_wrong_type_replies_count_as_node_failures(
    redis_servers: Any, fakes: Any, label: str
) -> None:
    healthy = redis_servers(2)
    bad = fakes(REPLIES[label], 3)
    options = {"expiry": 2.0, "tries": 2, "retry_delay": 0.01}

    async def main() -> None:
        async with AsyncRedsync([n.url for n in bad], **options) as ars:
            mutex = ars.new_mutex("m")
            if LOCK_OUTCOME[label] is None:
                await mutex.lock()  # "+OK" to SET NX is a yes vote
            else:
                with pytest.raises(LockNotAcquired) as caught:
                    await mutex.lock()
                _check_refusal(caught, label)
                assert await mutex.extend() is False
            assert await mutex.unlock() is False
            assert await mutex.valid() is False
        async with AsyncRedsync([healthy[0].url, bad[0].url, healthy[1].url], **options) as ars:
            mutex = ars.new_mutex("m")
            await mutex.lock()
            assert await mutex.extend()
            assert await mutex.unlock()

    asyncio.run(main())
    for server in healthy:
        client = server.client()
        try:
            assert client.dbsize() == 0
        finally:
            client.close()


def _check_reports(label: str, report: Any, info: Any) -> None:
    if label in ANSWERS_INFO:
        assert report.ok
        assert [(n.ok, n.version) for n in report.nodes] == [(True, "?")] * 3
    else:
        assert not report.ok
        assert all(not n.ok and n.error for n in report.nodes), report
    assert info.verdict == "unknown"
    assert all(n.error and n.holder is None for n in info.nodes), info


@pytest.mark.parametrize("label", list(REPLIES))
def test_sync_ping_and_inspect_report_misbehaving_nodes(fakes: Any, label: str) -> None:
    with Redsync([n.url for n in fakes(REPLIES[label], 3)]) as rs:
        _check_reports(label, rs.ping(timeout=1.0), rs.inspect("m"))


@pytest.mark.parametrize("label", list(REPLIES))
def test_asyncio_ping_and_inspect_report_misbehaving_nodes(fakes: Any, label: str) -> None:
    async def main() -> None:
        async with AsyncRedsync([n.url for n in fakes(REPLIES[label], 3)]) as ars:
            _check_reports(label, await ars.ping(timeout=1.0), await ars.inspect("m"))

    asyncio.run(main())


@pytest.mark.parametrize("code", [2, 5, 2**40])
def test_a_positive_script_code_other_than_1_is_a_wrong_reply(code: int) -> None:
    # The scripts answer 1, 0 or -2 - PTTL: a positive code is no TTL, and decoding it as one
    # gave a negative retry_after ("free in about -0.007 s").
    with pytest.raises(UnexpectedReply):
        decode_script_code(code)
    assert decode_script_code(-2 - 1500).ttl_ms == 1500
