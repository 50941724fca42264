"""Scenario tables shared by the sync and asyncio API tests (and the config tests).

Each table is a list of ``pytest.param`` with a readable id, so that ``test_api_sync.py`` and
``test_api_async.py`` run exactly the same cases against ``Mutex`` and ``AsyncMutex``.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from redsync_core.testing import RedisServer

FOREIGN = "someone-else"
"""The value another holder wrote directly with SET ... PX."""

FOREIGN_TTL_MS = 10_000


# --- an ACL user without pub/sub rights ---------------------------------------------------

ADMIN_PW = "admin-Pw-1234"
LOCKER_PW = "locker-Pw-5678"
#: A user that may lock under "locks:" but may not use pub/sub at all.
NO_CHANNELS = [
    "on", f">{LOCKER_PW}", "~locks:*", "resetchannels", "-@all",
    "+set", "+get", "+del", "+pexpire", "+pttl", "+eval", "+evalsha", "+info",
]  # fmt: skip


def servers_without_channel_rights(redis_servers: Any) -> list[RedisServer]:
    """Start 3 servers (admin password ``ADMIN_PW``) with the user ``locker`` (``NO_CHANNELS``)."""
    servers: list[RedisServer] = redis_servers(3, password=ADMIN_PW)
    for server in servers:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "locker", "reset", *NO_CHANNELS)
        admin.close()
    return servers


def quorum_of(n: int) -> int:
    """The Redlock quorum, written out independently of the library."""
    return n // 2 + 1


# --- sockets -------------------------------------------------------------------------------


def pending(sock: socket.socket) -> bool:
    """Return True when a client connected to the listening ``sock``."""
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def dead_url() -> str:
    """The URL of a loopback port nobody listens on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"redis://127.0.0.1:{port}/0"


# --- quorum sizes ----------------------------------------------------------------------------

QUORUMS = [
    pytest.param(n, q, id=f"N{n}-quorum{q}") for n, q in enumerate([1, 2, 2, 3, 3, 4, 4, 5], 1)
]


# --- every subset of nodes pre-held by another value -------------------------------------------


@dataclass(frozen=True)
class HeldSubset:
    """``held`` nodes out of ``n`` hold the key for a foreign value before we try once."""

    n: int
    held: tuple[int, ...]

    @property
    def free(self) -> int:
        return self.n - len(self.held)

    @property
    def acquires(self) -> bool:
        return self.free >= quorum_of(self.n)

    @property
    def contended(self) -> bool:
        """A quorum holds the other value: the failure is a ``LockTaken``."""
        return len(self.held) >= quorum_of(self.n)


def _subset_id(case: HeldSubset) -> str:
    held = ",".join(map(str, case.held)) or "none"
    verdict = "locks" if case.acquires else "fails"
    return f"N{case.n}-held[{held}]-{verdict}"


HELD_SUBSETS = [
    pytest.param(case, id=_subset_id(case))
    for n in (4, 5)
    for size in range(n + 1)
    for held in itertools.combinations(range(n), size)
    for case in [HeldSubset(n, held)]
]


def hold_foreign(servers: Sequence[RedisServer], key: str, indexes: Sequence[int]) -> None:
    """SET ``key`` to the foreign value on the given servers, directly (not through redsync)."""
    for i in indexes:
        client = servers[i].client()
        try:
            assert client.set(key, FOREIGN, px=FOREIGN_TTL_MS, nx=True)
        finally:
            client.close()


def values_on(servers: Sequence[RedisServer], key: str) -> list[str | None]:
    """GET ``key`` on every server (None where missing)."""
    found: list[str | None] = []
    for server in servers:
        client = server.client()
        try:
            raw = client.get(key)
        finally:
            client.close()
        found.append(None if raw is None else raw.decode())
    return found


def pttls_on(servers: Sequence[RedisServer], key: str) -> list[int]:
    """PTTL of ``key`` on every server (-2 where missing)."""
    ttls = []
    for server in servers:
        client = server.client()
        try:
            ttls.append(int(client.pttl(key)))
        finally:
            client.close()
    return ttls


def check_held_subset_outcome(
    case: HeldSubset, servers: Sequence[RedisServer], key: str, value: str | None, error: object
) -> None:
    """Assert the outcome of one attempt against ``case`` (shared by sync and async tests)."""
    from redsync_core import LockNotAcquired, LockTaken

    found = values_on(servers, key)
    for i in case.held:
        assert found[i] == FOREIGN, f"node {i}: the foreign value was touched"
    if case.acquires:
        assert error is None, f"expected the lock, got {error!r}"
        assert value is not None
        for i in set(range(case.n)) - set(case.held):
            assert found[i] == value, f"node {i}: our value missing"
        return
    assert isinstance(error, LockNotAcquired), f"expected LockNotAcquired, got {error!r}"
    assert isinstance(error, LockTaken) == case.contended, repr(error)
    assert error.attempts == 1
    if isinstance(error, LockTaken):
        assert error.nodes == case.held
    # No partial acquisition is left behind: no node keeps our value.
    for i, got in enumerate(found):
        assert got is None or got == FOREIGN, f"node {i} kept a value: {got!r}"
    # The foreign keys still carry their TTL (we did not PEXPIRE or re-SET them).
    ttls = pttls_on(servers, key)
    for i in case.held:
        assert 0 < ttls[i] <= FOREIGN_TTL_MS


# --- invalid options --------------------------------------------------------------------------


@dataclass(frozen=True)
class BadOption:
    option: str
    value: object
    shown: str  # what the message must contain to name the value


def _bad(option: str, value: object, shown: str | None = None, id: str | None = None) -> object:
    case = BadOption(option, value, repr(value) if shown is None else shown)
    return pytest.param(case, id=id or f"{option}={value!r}")


BAD_OPTIONS = [
    _bad("expiry", 0),
    _bad("expiry", -1.0),
    _bad("expiry", 0.0004, id="expiry=0.4ms-rounds-to-0"),
    _bad("expiry", float("nan"), shown="nan"),
    _bad("expiry", "8"),
    _bad("tries", 0),
    _bad("tries", -3),
    _bad("tries", True),
    _bad("tries", 2.5),
    _bad("retry_delay", -0.1),
    _bad("retry_delay", "fast"),
    _bad("retry_delay_func", "x"),
    _bad("retry_delay_func", 0.1),
    _bad("gen_value_func", 42),
    _bad("on_lost", "log"),
    _bad("drift_factor", -0.01),
    _bad("drift_factor", 1),
    _bad("drift_factor", 1.5),
    _bad("timeout_factor", 1.0),
    _bad("timeout_factor", -0.5),
    _bad("fail_fast", "yes"),
    _bad("shuffle_pools", 1),
    _bad("set_nx_on_extend", None),
    _bad("auto_extend", "true"),
    _bad("value", "", shown="''"),
]

UNKNOWN_OPTIONS = [
    pytest.param("expiry_ms", 8000, id="expiry_ms"),
    pytest.param("retries", 3, id="retries"),
    pytest.param("timeout", 1.0, id="timeout-is-a-lock-argument"),
]


@dataclass(frozen=True)
class BadNodes:
    nodes: object
    fragments: tuple[str, ...]  # what the message must contain


def _nodes(nodes: object, *fragments: str, id: str) -> object:
    return pytest.param(BadNodes(nodes, fragments), id=id)


BAD_NODES = [
    _nodes([], "nodes", "[]", id="empty-list"),
    _nodes((), "nodes", id="empty-tuple"),
    _nodes("redis://127.0.0.1:6379/0", "nodes", "str", id="a-single-url-string"),
    _nodes(None, "nodes", "NoneType", id="none"),
    _nodes(["http://127.0.0.1:6379/0"], "http", "scheme", id="unknown-scheme"),
    _nodes(["127.0.0.1:6379"], "scheme", id="no-scheme"),
    _nodes(["redis://127.0.0.1:notaport/0"], "notaport", id="non-numeric-port"),
    _nodes(["redis://127.0.0.1:70000/0"], "70000", id="port-out-of-range"),
    _nodes(["memory://"], "memory://", id="memory-without-name"),
    _nodes([42], "node 0", "int", id="not-a-url"),
]
