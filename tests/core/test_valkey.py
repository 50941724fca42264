"""valkey-py clients (``valkey.Valkey``, ``valkey.asyncio.Valkey``, ``ValkeyCluster``) as nodes.

valkey-py is a fork of redis-py with its own class names, exception tree and a few renamed
connection internals; these tests hold the transport to the same contract with its clients as
with redis-py's. They run against the server the fixtures start (``REDSYNC_TEST_SERVER``:
redis-server by default); ``make test-servers`` runs them against Redis and Valkey servers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import valkey
import valkey.asyncio
import valkey.asyncio.cluster
import valkey.cluster
from scenarios import (
    LOCKER_PW,
    hold_foreign,
    pttls_on,
    servers_without_channel_rights,
    values_on,
)

from redsync_core import (
    AsyncRedsync,
    ConfigurationError,
    LockTaken,
    QuorumUnreachable,
    Redsync,
)
from redsync_core.testing import LocalRedisCluster, RedisServer

NAMES = [f"valkey:{i}" for i in range(12)]


def sync_clients(servers: list[RedisServer], **kwargs: object) -> list[valkey.Valkey]:
    return [valkey.Valkey(host=s.host, port=s.port, **kwargs) for s in servers]  # type: ignore[arg-type]


def flush_scripts(servers: list[RedisServer]) -> None:
    for server in servers:
        client = server.client()
        client.script_flush()
        client.close()


@pytest.fixture
def clients(redis_nodes: list[RedisServer]) -> Iterator[list[valkey.Valkey]]:
    made = sync_clients(redis_nodes)
    yield made
    for client in made:
        client.close()


@pytest.fixture
async def async_clients(
    redis_nodes: list[RedisServer],
) -> AsyncIterator[list[valkey.asyncio.Valkey]]:
    made = [valkey.asyncio.Valkey(host=s.host, port=s.port) for s in redis_nodes]
    yield made
    for client in made:
        await client.aclose()


# --- standalone clients ----------------------------------------------------------------------


def test_valkey_clients_lock_extend_and_unlock(
    clients: list[valkey.Valkey], redis_nodes: list[RedisServer]
) -> None:
    with Redsync(clients) as rs:
        m = rs.new_mutex("orders:1", expiry=5)
        m.lock()
        assert values_on(redis_nodes, "orders:1") == [m.value] * 3
        assert m.extend(9.0) is True
        assert all(8000 < ttl <= 9000 for ttl in pttls_on(redis_nodes, "orders:1"))
        with pytest.raises(LockTaken):
            rs.new_mutex("orders:1", tries=1).lock()
        assert m.unlock() is True
        assert values_on(redis_nodes, "orders:1") == [None] * 3
        assert rs.ping().ok


async def test_async_valkey_clients_lock_extend_and_unlock(
    async_clients: list[valkey.asyncio.Valkey], redis_nodes: list[RedisServer]
) -> None:
    async with AsyncRedsync(async_clients) as ars:
        m = ars.new_mutex("orders:1", expiry=5)
        await m.lock()
        assert values_on(redis_nodes, "orders:1") == [m.value] * 3
        assert await m.extend(9.0) is True
        assert all(8000 < ttl <= 9000 for ttl in pttls_on(redis_nodes, "orders:1"))
        with pytest.raises(LockTaken):
            await ars.new_mutex("orders:1", tries=1).lock()
        assert await m.unlock() is True
        assert values_on(redis_nodes, "orders:1") == [None] * 3
        assert (await ars.ping()).ok


# The scripts go as EVALSHA; a server without them answers NOSCRIPT, which valkey-py raises as
# its own NoScriptError (not redis-py's): the transport must still fall back to EVAL.


def test_valkey_scripts_survive_script_flush(
    clients: list[valkey.Valkey], redis_nodes: list[RedisServer]
) -> None:
    with Redsync(clients) as rs:
        m = rs.new_mutex("noscript", expiry=5)
        m.lock()
        flush_scripts(redis_nodes)
        assert m.extend(4.0) is True
        flush_scripts(redis_nodes)
        assert m.unlock() is True
        assert values_on(redis_nodes, "noscript") == [None] * 3


async def test_async_valkey_scripts_survive_script_flush(
    async_clients: list[valkey.asyncio.Valkey], redis_nodes: list[RedisServer]
) -> None:
    async with AsyncRedsync(async_clients) as ars:
        m = ars.new_mutex("noscript", expiry=5)
        await m.lock()
        flush_scripts(redis_nodes)
        assert await m.extend(4.0) is True
        flush_scripts(redis_nodes)
        assert await m.unlock() is True
        assert values_on(redis_nodes, "noscript") == [None] * 3


def test_another_holder_is_reported_with_valkey_clients(
    clients: list[valkey.Valkey], redis_nodes: list[RedisServer]
) -> None:
    hold_foreign(redis_nodes, "held", [0, 1])
    with Redsync(clients) as rs, pytest.raises(LockTaken) as caught:
        rs.new_mutex("held", tries=1).lock()
    assert caught.value.nodes == (0, 1)


def test_a_killed_majority_is_a_node_failure_with_valkey_clients(
    clients: list[valkey.Valkey], redis_nodes: list[RedisServer]
) -> None:
    redis_nodes[0].kill()
    redis_nodes[1].kill()
    with Redsync(clients) as rs, pytest.raises(QuorumUnreachable) as caught:
        rs.new_mutex("down", tries=1).lock()
    assert "ConnectionError" in str(caught.value)


@pytest.mark.timeout(30)
def test_a_silent_node_costs_the_deadline_not_a_blocked_handshake(
    redis_nodes: list[RedisServer], listener: socket.socket
) -> None:
    # A node that accepts connections but never answers, behind a client with a password and
    # no socket timeout: the AUTH of the connection setup must be pipelined with the command
    # (valkey-py names its connect hook valkey_connect_func), not awaited forever.
    port = listener.getsockname()[1]
    silent = valkey.Valkey(host="127.0.0.1", port=port, password="pw")
    live = sync_clients(redis_nodes[:2])
    try:
        with Redsync([silent, *live]) as rs:
            m = rs.new_mutex("silent", expiry=2, tries=1)  # deadline: 100 ms per fan-out
            started = time.monotonic()
            m.lock()
            assert time.monotonic() - started < 5
            assert m.held
            assert m.unlock() is True
    finally:
        for client in (silent, *live):
            client.close()


def test_a_wrong_password_is_a_node_failure_with_valkey_clients(
    redis_servers: object,
) -> None:
    servers = redis_servers(3, password="right")  # type: ignore[operator]
    made = sync_clients(servers, password="wrong")
    try:
        with Redsync(made) as rs:
            report = rs.ping()
            assert not report.ok
            assert all(not node.ok for node in report.nodes)
    finally:
        for client in made:
            client.close()


def test_a_password_and_a_database_reach_the_server_with_valkey_clients(
    redis_servers: object,
) -> None:
    servers = redis_servers(3, password="pw-1")  # type: ignore[operator]
    made = sync_clients(servers, password="pw-1", db=3, client_name="valkey-node")
    try:
        with Redsync(made) as rs:
            m = rs.new_mutex("db3", expiry=5)
            m.lock()
            for server in servers:
                on_db3 = server.client(db=3)
                assert on_db3.get("db3") == m.value.encode()
                assert b"valkey-node" in on_db3.execute_command("CLIENT", "LIST")
                on_db3.close()
            assert m.unlock() is True
    finally:
        for client in made:
            client.close()


# --- release notices: valkey-py raises its own exceptions (not redis-py's) --------------------


def refusals(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    return lambda: [r for r in caplog.records if "refused the release notices" in r.getMessage()]


def test_a_valkey_user_without_channel_rights_locks_with_one_warning(
    redis_servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    servers = servers_without_channel_rights(redis_servers)
    made = sync_clients(servers, username="locker", password=LOCKER_PW)
    caplog.set_level(logging.WARNING, logger="redsync")
    try:
        with Redsync(made, key_prefix="locks:") as rs:
            for _ in range(2):
                holder = rs.new_mutex("a")
                holder.lock()
                timer = threading.Timer(0.2, holder.unlock)
                timer.start()
                waiter = rs.new_mutex("a", retry_delay=0.3, tries=50)
                waiter.lock()  # waits on notices, which the node refuses
                timer.join()
                assert waiter.unlock()
            for _ in range(500):  # the reader thread logs the refusal on its own time
                if refusals(caplog)():
                    break
                time.sleep(0.01)
    finally:
        for client in made:
            client.close()
    assert len(refusals(caplog)()) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_async_valkey_user_without_channel_rights_locks_with_one_warning(
    redis_servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    servers = servers_without_channel_rights(redis_servers)
    made = [
        valkey.asyncio.Valkey(host=s.host, port=s.port, username="locker", password=LOCKER_PW)
        for s in servers
    ]
    caplog.set_level(logging.WARNING)
    try:
        async with AsyncRedsync(made, key_prefix="locks:") as ars:
            for _ in range(2):
                holder = ars.new_mutex("a")
                await holder.lock()
                asyncio.get_running_loop().call_later(0.2, asyncio.ensure_future, holder.unlock())
                waiter = ars.new_mutex("a", retry_delay=0.3, tries=50)
                await waiter.lock()
                assert await waiter.unlock()
            for _ in range(500):
                if refusals(caplog)():
                    break
                await asyncio.sleep(0.01)
    finally:
        for client in made:
            await client.aclose()
    assert len(refusals(caplog)()) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# --- wrong twins and imports -------------------------------------------------------------------


async def test_valkey_clients_of_the_wrong_kind_are_refused(
    redis_nodes: list[RedisServer],
) -> None:
    server = redis_nodes[0]
    sync_client = valkey.Valkey(host=server.host, port=server.port)
    async_client = valkey.asyncio.Valkey(host=server.host, port=server.port)
    try:
        with pytest.raises(
            ConfigurationError, match=r"valkey\.asyncio\.client\.Valkey is not a sync"
        ):
            Redsync([async_client])
        with pytest.raises(ConfigurationError, match=r"valkey\.client\.Valkey is not a asyncio"):
            AsyncRedsync([sync_client])
    finally:
        sync_client.close()
        await async_client.aclose()


def test_importing_and_using_redsync_core_does_not_import_valkey() -> None:
    code = (
        "import sys; import redsync_core\n"
        "with redsync_core.Redsync(['memory://a']) as rs:\n"
        "    rs.new_mutex('k').lock()\n"
        "assert 'valkey' not in sys.modules, 'valkey was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- cluster clients ---------------------------------------------------------------------------


@pytest.fixture
def valkey_cluster(redis_cluster: LocalRedisCluster) -> Iterator[valkey.cluster.ValkeyCluster]:
    port = redis_cluster.servers[0].port
    client = valkey.cluster.ValkeyCluster(host="127.0.0.1", port=port, socket_timeout=2.0)
    yield client
    client.close()


def test_valkey_cluster_client_as_one_node(
    valkey_cluster: valkey.cluster.ValkeyCluster, redis_cluster: LocalRedisCluster
) -> None:
    owners = {valkey_cluster.get_node_from_key(name).name for name in NAMES}
    assert len(owners) == 3  # the names really spread over the masters
    with Redsync([valkey_cluster]) as rs:
        mutexes = [rs.new_mutex(name, expiry=5) for name in NAMES]
        for m in mutexes:
            m.lock()
        for m in mutexes:
            assert valkey_cluster.get(m.key) == m.value.encode()
        flush_scripts(redis_cluster.servers)
        assert all(m.extend(9.0) for m in mutexes)
        for m in mutexes:
            assert 8000 < valkey_cluster.pttl(m.key) <= 9000
        with pytest.raises(LockTaken):
            rs.new_mutex(NAMES[0], expiry=5, tries=1).lock()
        flush_scripts(redis_cluster.servers)
        assert all(m.unlock() for m in mutexes)
        assert valkey_cluster.exists(*NAMES) == 0


async def test_async_valkey_cluster_client_as_one_node(
    valkey_cluster: valkey.cluster.ValkeyCluster, redis_cluster: LocalRedisCluster
) -> None:
    port = redis_cluster.servers[0].port
    client = valkey.asyncio.cluster.ValkeyCluster(host="127.0.0.1", port=port)
    try:
        # Discover the cluster first: on a loaded machine that alone can outlast a deadline.
        await client.initialize()
        async with AsyncRedsync([client]) as ars:
            mutexes = [ars.new_mutex(name, expiry=5) for name in NAMES]
            for m in mutexes:
                await m.lock()
            for m in mutexes:
                assert valkey_cluster.get(m.key) == m.value.encode()
            flush_scripts(redis_cluster.servers)
            assert all([await m.extend(9.0) for m in mutexes])
            with pytest.raises(LockTaken):
                await ars.new_mutex(NAMES[3], expiry=5, tries=1).lock()
            flush_scripts(redis_cluster.servers)
            assert all([await m.unlock() for m in mutexes])
            assert valkey_cluster.exists(*NAMES) == 0
    finally:
        await client.aclose()


# --- listing (SCAN pages through a script, EVAL after NOSCRIPT) ------------------------------


def test_valkey_clients_list_locks(
    clients: list[valkey.Valkey], redis_nodes: list[RedisServer]
) -> None:
    with Redsync(clients) as rs:
        held = [rs.new_mutex(f"list:{i}", expiry=5) for i in range(3)]
        for m in held:
            m.lock()
        flush_scripts(redis_nodes)
        listing = rs.list_locks("list:*")
        assert [info.name for info in listing] == ["list:0", "list:1", "list:2"]
        assert all(info.verdict == "held" for info in listing)
        assert not listing.partial


def test_valkey_cluster_clients_list_locks(
    valkey_cluster: valkey.cluster.ValkeyCluster, redis_cluster: LocalRedisCluster
) -> None:
    with Redsync([valkey_cluster]) as rs:
        for name in NAMES:
            rs.new_mutex(name, expiry=5).lock()
        flush_scripts(redis_cluster.servers)
        listing = rs.list_locks("valkey:*")
        assert sorted(info.name for info in listing) == sorted(NAMES)
        assert not listing.partial


async def test_async_valkey_cluster_clients_list_locks(
    valkey_cluster: valkey.cluster.ValkeyCluster, redis_cluster: LocalRedisCluster
) -> None:
    port = redis_cluster.servers[0].port
    client = valkey.asyncio.cluster.ValkeyCluster(host="127.0.0.1", port=port)
    try:
        async with AsyncRedsync([client]) as ars:
            for name in NAMES:
                await ars.new_mutex(name, expiry=5).lock()
            flush_scripts(redis_cluster.servers)
            listing = await ars.list_locks("valkey:*")
            assert sorted(info.name for info in listing) == sorted(NAMES)
            assert not listing.partial
    finally:
        await client.aclose()
