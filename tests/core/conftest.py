"""Fixtures for the core API tests: Redsync objects over the plugin's real redis-server nodes."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from redsync_core import AsyncRedsync, Redsync
from redsync_core.testing import RedisServer


@pytest.fixture
def rs(redis_nodes: list[RedisServer]) -> Iterator[Redsync]:
    """A Redsync over 3 real nodes, closed at teardown."""
    with Redsync([server.url for server in redis_nodes]) as redsync:
        yield redsync


@pytest.fixture
async def ars(redis_nodes: list[RedisServer]) -> AsyncIterator[AsyncRedsync]:
    """An AsyncRedsync over 3 real nodes, closed at teardown."""
    async with AsyncRedsync([server.url for server in redis_nodes]) as redsync:
        yield redsync


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A bound, listening loopback socket that never accepts: a port where a connection would show.

    ``scenarios.pending(listener)`` tells whether anything connected to it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()
