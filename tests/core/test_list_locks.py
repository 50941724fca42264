"""Listing locks (``list_locks``) against real redis-server nodes, sync and asyncio alike.

Every case runs through ``Redsync.list_locks`` and ``AsyncRedsync.list_locks`` with the same
arguments; keys are written with plain SET ... PX so that a case can shape each node by hand.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.cluster

from redsync_core import AsyncRedsync, ConfigurationError, LockListing, Redsync, _base
from redsync_core._algorithm.queues import queue_keys
from redsync_core.testing import RedisServer

DRIVERS = [pytest.param("sync", id="sync"), pytest.param("asyncio", id="asyncio")]
TTL_MS = 30_000


def list_locks(
    driver: str, urls: list[str], *args: Any, prefix: str = "", **kwargs: Any
) -> LockListing:
    """Call ``list_locks(*args, **kwargs)`` on a fresh Redsync or AsyncRedsync over ``urls``."""
    if driver == "sync":
        with Redsync(urls, key_prefix=prefix) as rs:
            return rs.list_locks(*args, **kwargs)

    async def run() -> LockListing:
        async with AsyncRedsync(urls, key_prefix=prefix) as ars:
            return await ars.list_locks(*args, **kwargs)

    return asyncio.run(run())


def clients(servers: list[RedisServer]) -> list[redis.Redis]:
    return [server.client() for server in servers]


def hold(nodes: list[redis.Redis], key: str, value: str, ttl_ms: int = TTL_MS) -> None:
    for node in nodes:
        node.set(key, value, px=ttl_ms)


def scan_calls(node: redis.Redis) -> int:
    """How many SCAN commands the node ran (the listing script calls SCAN once a page)."""
    stats = node.info("commandstats").get("cmdstat_scan", {})
    return int(stats.get("calls", 0))


@pytest.mark.parametrize("driver", DRIVERS)
def test_many_locks_are_listed_once_each_sorted_with_verdict_and_ttl(
    driver: str, redis_nodes: list[RedisServer]
) -> None:
    nodes = clients(redis_nodes)
    names = [f"job:{i:03d}" for i in range(300)]
    for name in names:
        hold(nodes, "app:" + name, f"value-of-{name}")
    listing = list_locks(driver, [s.url for s in redis_nodes], prefix="app:", page_size=25)
    assert [info.name for info in listing] == names
    assert not listing.partial
    assert listing.skipped == 0
    first = listing[0]
    assert first.key == "app:job:000"
    assert first.verdict == "held"
    assert first.holder == "value-of-job:000"
    assert first.remaining is not None
    assert 0 < first.remaining <= TTL_MS / 1000
    assert [node.holder for node in first.nodes] == ["value-of-job:000"] * 3


@pytest.mark.parametrize("driver", DRIVERS)
def test_pages_are_bounded_by_page_size(driver: str, redis_nodes: list[RedisServer]) -> None:
    nodes = clients(redis_nodes)
    for i in range(400):
        hold(nodes, f"job:{i}", "v")
    urls = [s.url for s in redis_nodes]
    before = [scan_calls(node) for node in nodes]
    assert len(list_locks(driver, urls, page_size=10)) == 400
    small_pages = [scan_calls(node) - b for node, b in zip(nodes, before, strict=True)]
    before = [scan_calls(node) for node in nodes]
    assert len(list_locks(driver, urls, page_size=1000)) == 400
    one_page = [scan_calls(node) - b for node, b in zip(nodes, before, strict=True)]
    # SCAN's COUNT is a hint: pages hold about 10 keys, so 400 keys take dozens of calls per
    # node, where a page of 1000 takes one or two.
    assert all(calls >= 20 for calls in small_pages), small_pages
    assert all(calls <= 2 for calls in one_page), one_page


@pytest.mark.parametrize("driver", DRIVERS)
def test_pattern_filters_names_under_the_prefix(
    driver: str, redis_nodes: list[RedisServer]
) -> None:
    nodes = clients(redis_nodes)
    hold(nodes, "app:orders:1", "a")
    hold(nodes, "app:orders:2", "b")
    hold(nodes, "app:invoices:1", "c")
    urls = [s.url for s in redis_nodes]
    listing = list_locks(driver, urls, "orders:*", prefix="app:")
    assert [info.name for info in listing] == ["orders:1", "orders:2"]
    assert [info.name for info in list_locks(driver, urls, "*:1", prefix="app:")] == [
        "invoices:1",
        "orders:1",
    ]


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_key_prefix_is_respected_even_with_glob_characters(
    driver: str, redis_nodes: list[RedisServer]
) -> None:
    nodes = clients(redis_nodes)
    hold(nodes, "app[1]:mine", "a")
    hold(nodes, "app1:not-mine", "b")  # what an unescaped "app[1]:*" would also match
    hold(nodes, "other:job", "c")
    hold(nodes, "job", "d")
    urls = [s.url for s in redis_nodes]
    assert [info.name for info in list_locks(driver, urls, prefix="app[1]:")] == ["mine"]
    assert [info.key for info in list_locks(driver, urls, prefix="other:")] == ["other:job"]
    assert len(list_locks(driver, urls)) == 4  # no prefix: every lock-shaped key


@pytest.mark.parametrize("driver", DRIVERS)
def test_keys_that_are_not_locks_are_skipped_counted_and_kept(
    driver: str, redis_nodes: list[RedisServer]
) -> None:
    nodes = clients(redis_nodes)
    hold(nodes, "app:real", "v")
    for node in nodes:
        node.hset("app:a-hash", "field", "1")
        node.set("app:no-expiry", "v")  # a lock always has a TTL
        node.set("app:a-blob", "x" * 1025, px=TTL_MS)  # too long for a lock value: not read
    nodes[0].rpush("app:a-list", "x")
    listing = list_locks(driver, [s.url for s in redis_nodes], prefix="app:")
    assert [info.name for info in listing] == ["real"]
    assert listing.skipped == 4
    for node in nodes:
        assert node.exists("app:a-hash", "app:no-expiry", "app:a-blob") == 3
    assert nodes[0].exists("app:a-list") == 1


@pytest.mark.parametrize("driver", DRIVERS)
def test_waiter_queues_are_neither_listed_nor_counted(
    driver: str, redis_nodes: list[RedisServer]
) -> None:
    nodes = clients(redis_nodes)
    hold(nodes, "app:real", "v")
    for key in ("app:real", "app:{user:7}:x"):
        queue, turn = queue_keys(key) or ("", "")
        for node in nodes:
            node.zadd(queue, {"0a1b2c3d.7": 1})
            node.set(turn, "0a1b2c3d.7", px=TTL_MS)
    for node in nodes:
        node.zadd("app:board", {"x": 1})  # a sorted set of the application's own: not a lock
    listing = list_locks(driver, [s.url for s in redis_nodes], prefix="app:")
    assert [info.name for info in listing] == ["real"]
    assert listing.skipped == 1


@pytest.mark.parametrize("driver", DRIVERS)
def test_leftovers_without_a_quorum_are_listed_as_free(
    driver: str, redis_nodes: list[RedisServer]
) -> None:
    nodes = clients(redis_nodes)
    hold(nodes[:1], "leftover", "v")
    hold(nodes[:2], "split", "x")
    nodes[2].set("split", "y", px=TTL_MS)
    listing = list_locks(driver, [s.url for s in redis_nodes])
    by_name = {info.name: info for info in listing}
    assert by_name["leftover"].verdict == "free"
    assert [node.holder for node in by_name["leftover"].nodes] == ["v", None, None]
    assert by_name["split"].verdict == "held"
    assert by_name["split"].holder == "x"


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_node_down_makes_the_listing_partial_and_close_calls_unknown(
    driver: str, redis_nodes: list[RedisServer]
) -> None:
    nodes = clients(redis_nodes)
    hold(nodes, "everywhere", "v")
    hold(nodes[1:2], "one-node", "w")  # the down node might hold it too: cannot tell
    redis_nodes[0].kill()
    listing = list_locks(driver, [s.url for s in redis_nodes])
    assert listing.partial
    assert [address for address, _ in listing.incomplete] == [redis_nodes[0].url]
    by_name = {info.name: info for info in listing}
    assert by_name["everywhere"].verdict == "held"  # two of three still hold it
    assert by_name["one-node"].verdict == "unknown"
    assert by_name["one-node"].nodes[0].error is not None
    redis_nodes[1].kill()
    listing = list_locks(driver, [s.url for s in redis_nodes])
    # Node 2 alone holds "everywhere": with two nodes silent, nobody can tell.
    assert [(info.name, info.verdict) for info in listing] == [("everywhere", "unknown")]


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_time_budget_cuts_a_paused_node_short(
    driver: str, redis_nodes: list[RedisServer]
) -> None:
    nodes = clients(redis_nodes)
    hold(nodes, "job", "v")
    redis_nodes[2].pause()
    try:
        listing = list_locks(driver, [s.url for s in redis_nodes], timeout=0.5)
    finally:
        redis_nodes[2].resume()
    assert listing.partial
    assert [address for address, _ in listing.incomplete] == [redis_nodes[2].url]
    assert "time budget" in listing.incomplete[0][1]
    assert [info.verdict for info in listing] == ["held"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_celery_holder_names_its_task_and_never_its_token(
    driver: str, redis_nodes: list[RedisServer]
) -> None:
    nodes = clients(redis_nodes)
    hold(nodes, "task-lock", "7d3c2a10-uuid:2:s3cr3t-token")
    hold(nodes, "queued-task-lock", "9e8f7a6b-uuid:q1:s3cr3t-token")
    hold(nodes, "plain-lock", "dGhpcyBpcyBhIHZhbHVl")
    by_name = {info.name: info for info in list_locks(driver, [s.url for s in redis_nodes])}
    assert by_name["task-lock"].holder_task_id == "7d3c2a10-uuid"
    assert by_name["queued-task-lock"].holder_task_id == "9e8f7a6b-uuid"
    assert by_name["plain-lock"].holder_task_id is None
    digest = by_name["plain-lock"].holder_digest
    assert digest is not None
    assert digest.startswith("sha256:")
    assert "dGhp" not in digest


@pytest.mark.parametrize("driver", DRIVERS)
def test_locks_taken_by_the_library_are_listed(driver: str, redis_nodes: list[RedisServer]) -> None:
    urls = [s.url for s in redis_nodes]
    with Redsync(urls, key_prefix="svc:") as rs:
        mutex = rs.new_mutex("reports", expiry=20)
        mutex.lock()
        listing = list_locks(driver, urls, prefix="svc:")
        assert [(info.name, info.holder) for info in listing] == [("reports", mutex.value)]
        mutex.unlock()
        assert list_locks(driver, urls, prefix="svc:") == []


def test_memory_nodes_are_listed_page_by_page() -> None:
    urls = ["memory://list-a", "memory://list-b", "memory://list-c"]
    with Redsync(urls, key_prefix="mem:") as rs:
        mutexes = [rs.new_mutex(f"m:{i}") for i in range(25)]
        for mutex in mutexes:
            mutex.lock()
        try:
            listing = rs.list_locks("m:1*", page_size=3)
            assert [info.name for info in listing] == ["m:1", *(f"m:1{i}" for i in range(10))]
            assert all(info.verdict == "held" for info in listing)
        finally:
            for mutex in mutexes:
                mutex.unlock()


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        pytest.param({"pattern": ""}, "pattern", id="empty-pattern"),
        pytest.param({"page_size": 0}, "page_size", id="page-size-0"),
        pytest.param({"page_size": 10_001}, "page_size", id="page-size-too-big"),
        pytest.param({"timeout": 0}, "timeout", id="timeout-0"),
    ],
)
def test_invalid_arguments_are_refused_before_any_call(
    arguments: dict[str, Any], named: str
) -> None:
    with Redsync(["memory://list-invalid"]) as rs, pytest.raises(ConfigurationError, match=named):
        rs.list_locks(**arguments)


def release_listed(driver: str, urls: list[str], pattern: str) -> list[int]:
    """List ``pattern`` and release every lock listed; return how many nodes deleted each."""
    if driver == "sync":
        with Redsync(urls) as rs:
            return [rs.release_listed(info) for info in rs.list_locks(pattern)]

    async def run() -> list[int]:
        async with AsyncRedsync(urls) as ars:
            return [await ars.release_listed(info) for info in await ars.list_locks(pattern)]

    return asyncio.run(run())


@pytest.mark.parametrize("driver", DRIVERS)
def test_release_listed_deletes_what_was_listed_and_only_that(
    driver: str, redis_nodes: list[RedisServer]
) -> None:
    nodes = clients(redis_nodes)
    hold(nodes, "stuck:1", "a")
    hold(nodes[:1], "stuck:2", "leftover")
    nodes[1].set("stuck:2", "other-leftover", px=TTL_MS)
    hold(nodes[:2], "stuck:3", "c")
    nodes[2].hset("stuck:3", "not", "a lock")
    hold(nodes, "kept:1", "k")
    assert release_listed(driver, [s.url for s in redis_nodes], "stuck:*") == [3, 2, 2]
    for node in nodes:
        assert node.exists("stuck:1", "stuck:2") == 0
        assert node.exists("kept:1") == 1
    assert nodes[2].hgetall("stuck:3") == {b"not": b"a lock"}


@pytest.mark.parametrize("driver", DRIVERS)
def test_release_listed_keeps_a_lock_that_changed_hands_since_it_was_listed(
    driver: str, redis_nodes: list[RedisServer]
) -> None:
    nodes = clients(redis_nodes)
    hold(nodes, "job", "first-holder")
    urls = [s.url for s in redis_nodes]
    with Redsync(urls) as rs:
        (info,) = rs.list_locks()
        hold(nodes, "job", "next-holder")  # the first holder left; another took it

        async def release_async() -> int:
            async with AsyncRedsync(urls) as ars:
                return await ars.release_listed(info)

        deleted = rs.release_listed(info) if driver == "sync" else asyncio.run(release_async())
    assert deleted == 0
    assert [node.get("job") for node in nodes] == [b"next-holder"] * 3


def test_as_dict_shows_fingerprints_and_the_task_never_values(
    redis_nodes: list[RedisServer],
) -> None:
    nodes = clients(redis_nodes)
    hold(nodes[:2], "task", "c0ffee:1:t0ken-s3cret")
    with Redsync([s.url for s in redis_nodes]) as rs:
        (info,) = rs.list_locks()
    data = info.as_dict()
    assert info.holder_label == "task c0ffee"
    assert data["verdict"] == "held"
    assert data["holder_task_id"] == "c0ffee"
    assert data["held_on"] == 2
    assert [node["holder"] is None for node in data["nodes"]] == [False, False, True]
    assert "s3cret" not in repr(data)
    assert "s3cret" not in repr(info)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_cluster_node_is_listed_master_by_master(driver: str, redis_cluster: Any) -> None:
    client = redis_cluster.client()
    names = [f"job:{i:02d}" for i in range(60)]
    try:
        for name in names:
            client.set("app:" + name, "v", px=TTL_MS)
        client.hset("app:settings", "a", "1")
        masters = {client.get_node_from_key("app:" + name).name for name in names}
        assert len(masters) == 3  # the keys really spread over the masters

        async def run() -> LockListing:
            aclient = redis.asyncio.cluster.RedisCluster.from_url(redis_cluster.urls[0])
            try:
                async with AsyncRedsync([aclient], key_prefix="app:") as ars:
                    return await ars.list_locks(page_size=5)
            finally:
                await aclient.aclose()

        if driver == "sync":
            with Redsync([client], key_prefix="app:") as rs:
                listing = rs.list_locks(page_size=5)
        else:
            listing = asyncio.run(run())
    finally:
        client.close()
    assert [info.name for info in listing] == names
    assert all(info.verdict == "held" for info in listing)
    assert listing.skipped == 1
    assert not listing.partial


def test_the_shared_front_end_imports_no_transport_and_no_redis() -> None:
    """``_base`` (what both drivers share) sits on the algorithm only; the drivers list keys."""
    tree = ast.parse(Path(_base.__file__).read_text(encoding="utf-8"))
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.append(node.module)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):  # also "from . import _x"
            modules += [alias.name for alias in node.names]
    tops = {module.split(".")[0] for module in modules}
    assert tops.isdisjoint({"_sync", "_async", "_transport", "redis", "valkey"}), sorted(tops)
