"""A node that answers with replies of the wrong type must count as a failed node, never crash.

A tiny fake RESP server (a thread on loopback) answers every command, the connection handshake
included, with one canned reply. With three such nodes ``lock()`` must fail with a
``LockNotAcquired`` subclass and ``unlock``/``extend``/``valid`` must return False; with one
such node next to two healthy ones the lock works and nothing is left behind. ``ping()`` and
``inspect()`` must report, not raise.

Every command is a script or GET now, so ``+OK`` is a wrong-type reply too (it was a yes vote
when the acquire was a plain ``SET NX``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

import pytest

from redsync_core import AsyncRedsync, LockNotAcquired, Redsync

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


def _cases() -> list[Any]:
    return [pytest.param(reply, id=label) for label, reply in REPLIES.items()]


@pytest.mark.parametrize("reply", _cases())
def test_sync_wrong_type_replies_count_as_node_failures(
    redis_servers: Any, fakes: Any, reply: bytes
) -> None:
    healthy = redis_servers(2)
    bad = fakes(reply, 3)
    options = {"expiry": 2.0, "tries": 2, "retry_delay": 0.01}
    with Redsync([n.url for n in bad], **options) as rs:
        mutex = rs.new_mutex("m")
        with pytest.raises(LockNotAcquired):
            mutex.lock()
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


@pytest.mark.parametrize("reply", [pytest.param(r, id=k) for k, r in REPLIES.items()])
def test_asyncio_wrong_type_replies_count_as_node_failures(
    redis_servers: Any, fakes: Any, reply: bytes
) -> None:
    healthy = redis_servers(2)
    bad = fakes(reply, 3)
    options = {"expiry": 2.0, "tries": 2, "retry_delay": 0.01}

    async def main() -> None:
        async with AsyncRedsync([n.url for n in bad], **options) as ars:
            mutex = ars.new_mutex("m")
            with pytest.raises(LockNotAcquired):
                await mutex.lock()
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


SILENT = {"error", "garbage", "closes"}


def _ping_cases() -> list[Any]:
    return [pytest.param(label, id=label) for label in REPLIES]


@pytest.mark.parametrize(
    "label",
    _ping_cases(),
)
def test_sync_ping_and_inspect_report_misbehaving_nodes(fakes: Any, label: str) -> None:
    with Redsync([n.url for n in fakes(REPLIES[label], 3)]) as rs:
        report = rs.ping(timeout=1.0)
        assert not rs.inspect("m").held
    if label in SILENT:
        assert not report.ok


@pytest.mark.parametrize("label", _ping_cases())
def test_asyncio_ping_and_inspect_report_misbehaving_nodes(fakes: Any, label: str) -> None:
    async def main() -> Any:
        async with AsyncRedsync([n.url for n in fakes(REPLIES[label], 3)]) as ars:
            report = await ars.ping(timeout=1.0)
            assert not (await ars.inspect("m")).held
            return report

    report = asyncio.run(main())
    if label in SILENT:
        assert not report.ok
