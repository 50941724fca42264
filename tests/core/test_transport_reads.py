"""The transport's two ways of reading a node: hiredis on a plain socket, redis-py otherwise.

On a TCP or unix socket with hiredis installed, our own connections are non-blocking and their
replies are parsed with hiredis as they arrive (asyncio: our protocol takes the transport of a
connection redis-py opened and set up); behind TLS (or without a hiredis that can tell an
incomplete reply apart) redis-py's connection reads and writes. Every test here runs both ways
(``reads``), sync and asyncio, against real servers.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from redsync_core import AsyncRedsync, Redsync
from redsync_core._algorithm.effects import Batch, FanOut, NodeReply, Op, Status
from redsync_core._transport import aio as aio_transport
from redsync_core._transport import commands
from redsync_core._transport import sync as sync_transport
from redsync_core.testing import RedisServer, free_port
from redsync_core.testing.plugin import RedisServerFactory

#: Larger than one read (64 KiB) and than what a loopback socket takes in one send (a few MiB).
BIG = 16 * 1024 * 1024


@pytest.fixture(params=["hiredis", "redis-py"])
def reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which reader the connections use: ours (hiredis) or redis-py's."""
    if request.param == "hiredis" and commands.new_reader(ValueError) is None:
        pytest.skip("hiredis (with notEnoughData) is not installed")
    if request.param == "redis-py":
        monkeypatch.setattr(sync_transport, "new_reader", lambda reply_error: None)
        monkeypatch.setattr(aio_transport, "new_reader", lambda reply_error: None)
    return str(request.param)


def hiredis_leases(rs: Redsync) -> list[bool]:
    """For each node, whether the calling thread's connection reads with hiredis."""
    leases = [node._leases._local.last for node in rs._nodes]  # type: ignore[attr-defined]
    return [lease is not None and lease.reader is not None for lease in leases]


def wired(ars: AsyncRedsync) -> list[bool]:
    """For each node, whether the running loop's idle connections are read by our protocol."""
    found = []
    for node in ars._nodes:  # type: ignore[attr-defined]
        idle = node._connections.here().idle
        protocols = [type(conn._writer.transport.get_protocol()) for conn in idle]
        assert protocols, "no idle connection"
        found.append(all(protocol is aio_transport._Wire for protocol in protocols))
    return found


def round_trip(rs: Redsync, name: str, value: str | None = None) -> None:
    mutex = rs.new_mutex(name, value=value, tries=1)
    assert mutex.try_lock()
    assert rs.inspect(name).holder == mutex.value
    assert mutex.extend()
    assert mutex.unlock()
    assert rs.inspect(name).holder is None


async def round_trip_async(ars: AsyncRedsync, name: str, value: str | None = None) -> None:
    mutex = ars.new_mutex(name, value=value, tries=1)
    assert await mutex.try_lock()
    assert (await ars.inspect(name)).holder == mutex.value
    assert await mutex.extend()
    assert await mutex.unlock()
    assert (await ars.inspect(name)).holder is None


def connections_made(urls: list[str]) -> list[int]:
    """How many connections each server accepted so far (this count's own included)."""
    counts = []
    for url in urls:
        client = redis.Redis.from_url(url)
        try:
            counts.append(int(client.info("stats")["total_connections_received"]))
        finally:
            client.close()
    return counts


def alternate(rs: Redsync, urls: list[str], rounds: int = 12) -> None:
    """Plain acquires (free, then held: two replies each), extensions, inspections and
    releases in turn on the same connections: every reply answers its own command, and no
    connection is dropped for bytes nobody asked for (a reply left unread)."""
    round_trip(rs, "alternate:warm")  # every connection open
    before = connections_made(urls)
    for i in range(rounds):
        name = f"alternate:{i % 3}"
        mutex = rs.new_mutex(name, tries=1)
        assert mutex.try_lock()
        assert not rs.new_mutex(name).try_lock()  # SET answers nil, PTTL the TTL
        assert mutex.extend()
        assert rs.inspect(name).holder == mutex.value
        assert mutex.unlock()
        assert rs.inspect(name).holder is None
    assert connections_made(urls) == [n + 1 for n in before]  # the count's own, no other


async def alternate_async(ars: AsyncRedsync, urls: list[str], rounds: int = 12) -> None:
    """``alternate`` for asyncio."""
    await round_trip_async(ars, "alternate:warm")
    await round_trip_async(ars, "alternate:warm")  # the idle connections now: written directly
    before = connections_made(urls)
    for i in range(rounds):
        name = f"alternate:{i % 3}"
        mutex = ars.new_mutex(name, tries=1)
        assert await mutex.try_lock()
        assert not await ars.new_mutex(name).try_lock()
        assert await mutex.extend()
        assert (await ars.inspect(name)).holder == mutex.value
        assert await mutex.unlock()
        assert (await ars.inspect(name)).holder is None
    assert connections_made(urls) == [n + 1 for n in before]


def with_setup(server: RedisServer, options: str) -> str:
    """The server's URL on database 3 with connection options (password, RESP3, a name...)."""
    return server.url.replace("/0", "/3") + options


@pytest.mark.parametrize("protocol", ["2", "3"])
def test_every_setup_command_is_pipelined_either_way(
    redis_servers: RedisServerFactory, reads: str, protocol: str
) -> None:
    servers = redis_servers(3, password="s3cret")
    urls = [with_setup(s, f"?protocol={protocol}&client_name=reads") for s in servers]
    with Redsync(urls) as rs:
        round_trip(rs, "setup")  # AUTH, HELLO 3, CLIENT SETNAME and SELECT go before it
        assert hiredis_leases(rs) == [reads == "hiredis"] * 3
        version = servers[0].client().info("server")["redis_version"]
        assert [node.version for node in rs.ping().nodes] == [version] * 3
    assert servers[0].client(db=3).dbsize() == 0  # it was database 3, and it is clean again


@pytest.mark.parametrize("protocol", ["2", "3"])
async def test_every_setup_command_reaches_the_server_asyncio(
    redis_servers: RedisServerFactory, reads: str, protocol: str
) -> None:
    servers = redis_servers(3, password="s3cret")
    urls = [with_setup(s, f"?protocol={protocol}&client_name=reads") for s in servers]
    async with AsyncRedsync(urls) as ars:
        await round_trip_async(ars, "setup")
        await round_trip_async(ars, "setup")  # the idle connections now: written directly
        assert wired(ars) == [reads == "hiredis"] * 3
        version = servers[0].client().info("server")["redis_version"]
        assert [node.version for node in (await ars.ping()).nodes] == [version] * 3
        await round_trip_async(ars, "after-ping")
    assert servers[0].client(db=3).dbsize() == 0


def test_a_unix_socket_is_read_like_tcp(redis_servers: RedisServerFactory, reads: str) -> None:
    servers = redis_servers(3, unix_socket=True)
    with Redsync([s.url for s in servers]) as rs:
        round_trip(rs, "unix")
        assert hiredis_leases(rs) == [reads == "hiredis"] * 3


async def test_a_unix_socket_is_read_like_tcp_asyncio(
    redis_servers: RedisServerFactory, reads: str
) -> None:
    servers = redis_servers(3, unix_socket=True)
    async with AsyncRedsync([s.url for s in servers]) as ars:
        await round_trip_async(ars, "unix")
        await round_trip_async(ars, "unix")
        assert wired(ars) == [reads == "hiredis"] * 3


def test_a_command_and_a_reply_larger_than_one_read(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    # The acquire goes out in several sends, the inspect's reply comes in several reads.
    with Redsync([s.url for s in redis_nodes], expiry=60.0) as rs:
        round_trip(rs, "big", value="v" * BIG)
        round_trip(rs, "small-after-big")  # the connections are still in step


async def test_a_command_and_a_reply_larger_than_one_read_asyncio(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    async with AsyncRedsync([s.url for s in redis_nodes], expiry=60.0) as ars:
        await round_trip_async(ars, "warm")  # open connections: the big one goes directly
        await round_trip_async(ars, "big", value="v" * BIG)
        await round_trip_async(ars, "small-after-big")


@pytest.mark.parametrize("protocol", ["2", "3"])
def test_plain_acquires_keep_the_connections_in_step_either_way(
    redis_nodes: list[RedisServer], reads: str, protocol: str
) -> None:
    urls = [s.url + f"?protocol={protocol}" for s in redis_nodes]
    with Redsync(urls) as rs:
        alternate(rs, urls)
        assert hiredis_leases(rs) == [reads == "hiredis"] * 3


async def test_plain_acquires_keep_the_connections_in_step_asyncio(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    # Written directly: the replies taken by our protocol (_Sent), or read from redis-py's
    # stream (_Exchange).
    urls = [s.url for s in redis_nodes]
    async with AsyncRedsync(urls) as ars:
        await alternate_async(ars, urls)
        assert wired(ars) == [reads == "hiredis"] * 3


async def test_a_node_task_reads_both_replies_asyncio(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    # A task's call (connecting, fail fast) on an idle open connection: our protocol's
    # round_trip, or redis-py's stream.
    urls = [s.url for s in redis_nodes]
    async with AsyncRedsync(urls) as ars:
        await round_trip_async(ars, "warm")
        await round_trip_async(ars, "warm")  # the idle connections are ours now (hiredis)
        before = connections_made(urls)
        acquire = FanOut(Op.ACQUIRE, "task", "ours", ttl_ms=8000, fresh=True)
        for node in ars._nodes:  # type: ignore[attr-defined]
            for _ in range(3):
                assert await node.run(acquire) == NodeReply(Status.OK)
                theirs = FanOut(Op.ACQUIRE, "task", "theirs", ttl_ms=8000, fresh=True)
                taken = await node.run(theirs)
                assert taken.status is Status.TAKEN
                assert 7000 < taken.ttl_ms <= 8000
                assert await node.run(FanOut(Op.RELEASE, "task", "ours")) == NodeReply(Status.OK)
        assert connections_made(urls) == [n + 1 for n in before]
        assert wired(ars) == [reads == "hiredis"] * 3


def test_text_replies_decode_alike_either_way(redis_nodes: list[RedisServer], reads: str) -> None:
    # Clients that decode replies: redis-py's reads give "OK" where hiredis's give b"OK".
    urls = [s.url for s in redis_nodes]
    clients = [redis.Redis.from_url(url, decode_responses=True) for url in urls]
    try:
        with Redsync(clients) as rs:
            alternate(rs, urls)
    finally:
        for client in clients:
            client.close()


async def test_text_replies_decode_alike_asyncio(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    urls = [s.url for s in redis_nodes]
    clients = [redis.asyncio.Redis.from_url(url, decode_responses=True) for url in urls]
    try:
        async with AsyncRedsync(clients) as ars:
            await alternate_async(ars, urls)
    finally:
        for client in clients:
            await client.aclose()


def test_a_script_flushed_meanwhile_is_sent_again_either_way(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    with Redsync([s.url for s in redis_nodes]) as rs:
        round_trip(rs, "before-flush")
        for server in redis_nodes:
            server.client().script_flush()
        round_trip(rs, "after-flush")  # NOSCRIPT, then EVAL on the same connection


async def test_a_script_flushed_meanwhile_is_sent_again_asyncio(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    async with AsyncRedsync([s.url for s in redis_nodes]) as ars:
        await round_trip_async(ars, "before-flush")
        for server in redis_nodes:
            server.client().script_flush()
        await round_trip_async(ars, "after-flush")


def test_a_restarted_node_is_reconnected_either_way(
    redis_servers: RedisServerFactory, reads: str
) -> None:
    (server,) = redis_servers(1)
    with Redsync([server.url], tries=1) as rs:
        round_trip(rs, "before-restart")
        server.restart()  # the idle connection is now closed by the server
        round_trip(rs, "after-restart")  # one node, one try: a stale connection would fail it


async def test_a_restarted_node_is_reconnected_asyncio(
    redis_servers: RedisServerFactory, reads: str
) -> None:
    (server,) = redis_servers(1)
    async with AsyncRedsync([server.url], tries=1) as ars:
        await round_trip_async(ars, "before-restart")
        await round_trip_async(ars, "before-restart")  # the idle connection is written directly
        server.restart()  # the idle connection is now closed by the server
        await asyncio.sleep(0.1)  # the loop runs meanwhile, as it would in a program: it sees
        await round_trip_async(ars, "after-restart")  # the close, so one node, one try passes


def test_an_error_reply_is_that_nodes_error_either_way(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    # The scripts' GET fails there (a plain SET NX finds the key: held by another).
    redis_nodes[0].client().rpush("wrong-type", "x")
    with Redsync([s.url for s in redis_nodes], tries=1) as rs:
        round_trip(rs, "warm")
        mutex = rs.new_mutex("wrong-type", tries=1)
        assert mutex.try_lock()  # two of three
        errors = [node.error for node in rs.inspect("wrong-type").nodes]
        assert "WRONGTYPE" in (errors[0] or "")
        assert errors[1:] == [None, None]
        assert mutex.unlock()
        round_trip(rs, "after-error")  # every node answers the next command
        assert [node.error for node in rs.inspect("after-error").nodes] == [None] * 3


async def test_an_error_reply_is_that_nodes_error_asyncio(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    redis_nodes[0].client().rpush("wrong-type", "x")
    async with AsyncRedsync([s.url for s in redis_nodes], tries=1) as ars:
        await round_trip_async(ars, "warm")
        mutex = ars.new_mutex("wrong-type", tries=1)
        assert await mutex.try_lock()
        errors = [node.error for node in (await ars.inspect("wrong-type")).nodes]
        assert "WRONGTYPE" in (errors[0] or "")
        assert errors[1:] == [None, None]
        assert await mutex.unlock()
        await round_trip_async(ars, "after-error")
        assert [node.error for node in (await ars.inspect("after-error")).nodes] == [None] * 3


def test_a_paused_node_misses_its_vote_then_votes_again_either_way(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    with Redsync([s.url for s in redis_nodes], expiry=10.0, tries=1) as rs:  # 0.5 s deadline
        round_trip(rs, "warm")
        redis_nodes[0].pause()
        try:
            mutex = rs.new_mutex("paused", tries=1)
            assert mutex.try_lock()  # two of three answer; the first node's reply is late
            assert [node.error is not None for node in rs.inspect("paused").nodes] == [
                True,
                False,
                False,
            ]
        finally:
            redis_nodes[0].resume()
        assert mutex.unlock()
        # Once it runs again, its late replies arrive and are dropped: then it votes again.
        for _ in range(200):
            if rs.inspect("after-pause").nodes[0].error is None:
                break
            time.sleep(0.01)
        round_trip(rs, "after-pause")
        assert [node.error for node in rs.inspect("after-pause").nodes] == [None] * 3


async def test_a_paused_node_misses_its_vote_then_votes_again_asyncio(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    async with AsyncRedsync([s.url for s in redis_nodes], expiry=10.0, tries=1) as ars:
        await round_trip_async(ars, "warm")
        redis_nodes[0].pause()
        try:
            mutex = ars.new_mutex("paused", tries=1)
            assert await mutex.try_lock()  # two of three answer; the first node's reply is late
            errors = [node.error for node in (await ars.inspect("paused")).nodes]
            assert [error is not None for error in errors] == [True, False, False]
        finally:
            redis_nodes[0].resume()
        assert await mutex.unlock()
        # The late replies never answer a later command: the connection went at the deadline.
        await round_trip_async(ars, "after-pause")
        assert [node.error for node in (await ars.inspect("after-pause")).nodes] == [None] * 3


@pytest.mark.parametrize("first", ["longer", "shorter"])
async def test_each_fan_out_ends_at_its_own_deadline_asyncio(
    redis_nodes: list[RedisServer], reads: str, first: str
) -> None:
    deadline_s = {"longer": 3.0, "shorter": 0.2}  # 5 % of the expiry
    async with AsyncRedsync([s.url for s in redis_nodes], tries=1) as ars:
        # Two connections to each node, both idle and open: each fan-out writes directly.
        await asyncio.gather(round_trip_async(ars, "warm-1"), round_trip_async(ars, "warm-2"))
        redis_nodes[0].pause()
        try:
            attempts = {
                name: asyncio.ensure_future(
                    ars.new_mutex(name, expiry=deadline_s[name] * 20, tries=1).try_lock()
                )
                for name in (first, "shorter" if first == "longer" else "longer")
            }
            # The loop's timers run in order: this one between the two deadlines, so the
            # shorter fan-out must end before it (not at a later deadline or timer).
            between = asyncio.ensure_future(asyncio.sleep(1.5))
            done, _ = await asyncio.wait(
                [*attempts.values(), between], return_when=asyncio.FIRST_COMPLETED
            )
            assert done == {attempts["shorter"]}
            assert await asyncio.wait_for(attempts["longer"], 30)  # nor the longer one forgotten
            assert attempts["shorter"].result()  # two of three, node 0 late in both
            await between
        finally:
            redis_nodes[0].resume()


async def test_a_cancelled_fan_out_leaves_no_reply_behind_asyncio(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    async with AsyncRedsync([s.url for s in redis_nodes], expiry=60.0, tries=1) as ars:
        # A fixed value, as below: the acquire script is cached then (a NOSCRIPT would make
        # nodes 1 and 2 wait for node 0 before they run the attempt again with EVAL).
        await round_trip_async(ars, "warm", value="warm-value")
        redis_nodes[0].pause()
        try:
            mutex = ars.new_mutex("cancelled", value="cancelled-value", tries=1)
            attempt = asyncio.ensure_future(mutex.try_lock())  # a 3 s deadline
            await asyncio.sleep(0.2)  # the other two answered; node 0's reply is due
            assert not attempt.done()
            attempt.cancel()
            with pytest.raises(asyncio.CancelledError):
                await attempt
        finally:
            redis_nodes[0].resume()
        # Node 0 now runs the cancelled acquisition; its reply must not answer the inspect.
        nodes = (await ars.inspect("cancelled")).nodes
        assert [(node.holder, node.error) for node in nodes] == [("cancelled-value", None)] * 3
        for server in redis_nodes:
            server.client().delete("cancelled")
        await round_trip_async(ars, "after-cancel")


async def test_a_cancelled_fan_out_leaves_no_task_behind_asyncio(
    redis_nodes: list[RedisServer], reads: str
) -> None:
    redis_nodes[0].pause()  # never connected: node 0 gets a task, stuck in its handshake
    try:
        async with AsyncRedsync([s.url for s in redis_nodes], expiry=60.0, tries=1) as ars:
            warm = ars.new_mutex("warm", tries=1)
            assert await warm.try_lock()  # nodes 1 and 2 now have idle open connections
            assert await warm.unlock()
            redis_nodes[1].pause()  # its reply is read directly, and is due
            try:
                attempt = asyncio.ensure_future(ars.new_mutex("cancelled", tries=1).try_lock())
                await asyncio.sleep(0.2)
                attempt.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await attempt
                await asyncio.sleep(0.05)  # a cancelled task ends at the loop's next turn
                assert asyncio.all_tasks() == {asyncio.current_task()}
            finally:
                redis_nodes[1].resume()
    finally:
        redis_nodes[0].resume()


# --- TLS: redis-py reads (the ssl module decrypts) ---------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return {"cert": str(cert), "key": str(key)}


@pytest.fixture
def tls_urls(redis_servers: RedisServerFactory, tls_files: dict[str, str]) -> list[str]:
    """Three servers that also listen with TLS; their ``rediss://`` URLs."""
    ports = [free_port() for _ in range(3)]
    try:
        servers = [
            redis_servers(
                1,
                extra_args=[
                    "--tls-port",
                    str(port),
                    "--tls-cert-file",
                    tls_files["cert"],
                    "--tls-key-file",
                    tls_files["key"],
                    "--tls-ca-cert-file",
                    tls_files["cert"],
                    "--tls-auth-clients",
                    "no",
                ],
            )[0]
            for port in ports
        ]
    except Exception as exc:  # a server built without TLS refuses the options
        pytest.skip(f"redis-server without TLS: {exc}")
    assert len(servers) == 3
    ca = tls_files["cert"]
    return [f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}" for port in ports]


def test_tls_connections_are_read_by_redis_py(tls_urls: list[str]) -> None:
    with Redsync(tls_urls) as rs:
        round_trip(rs, "tls")
        round_trip(rs, "tls-again")
        alternate(rs, tls_urls, rounds=3)  # both replies of each plain acquire
        assert hiredis_leases(rs) == [False] * 3


def _asked_for_buffered_replies(monkeypatch: pytest.MonkeyPatch, urls: list[str]) -> set[bool]:
    """Whether the waits of a round trip's fan-outs asked their calls for buffered replies."""
    seen: list[bool] = []
    wait = sync_transport._wait

    def spy(inflight: Any, timeout_s: float | None, last_first: bool, buffering: bool) -> Any:
        seen.append(buffering)
        return wait(inflight, timeout_s, last_first, buffering)

    with Redsync(urls) as rs:
        round_trip(rs, "warm")  # connections open: the fan-outs below all wait on replies
        monkeypatch.setattr(sync_transport, "_wait", spy)
        round_trip(rs, "asked")
    assert seen
    return set(seen)


def test_only_fan_outs_whose_readers_buffer_ask_their_calls(
    redis_nodes: list[RedisServer], monkeypatch: pytest.MonkeyPatch, reads: str
) -> None:
    # redis-py's reader may hold a reply that poll() does not report; our hiredis reads of a
    # plain socket never do.
    urls = [server.url for server in redis_nodes]
    assert _asked_for_buffered_replies(monkeypatch, urls) == {reads == "redis-py"}


def test_tls_fan_outs_ask_their_calls_for_replies_poll_cannot_see(
    tls_urls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A TLS socket may hold a decrypted reply that poll() does not report.
    assert _asked_for_buffered_replies(monkeypatch, tls_urls) == {True}


async def test_tls_connections_are_read_by_redis_py_asyncio(tls_urls: list[str]) -> None:
    async with AsyncRedsync(tls_urls) as ars:
        await round_trip_async(ars, "tls")
        await round_trip_async(ars, "tls-again")
        await alternate_async(ars, tls_urls, rounds=3)
        assert wired(ars) == [False] * 3


def test_lock_script_codes_decode_alike_however_often_they_repeat() -> None:
    # "Taken" replies are shared between nodes and fan-outs that answer the same code.
    codes = [-4202, -4201, -4202, -1, *(-2 - ttl for ttl in range(40)), -4202, -1]
    for code in codes * 2:
        reply = commands.decode_script_code(code)
        assert reply == NodeReply(Status.TAKEN, None if code == -1 else -2 - code), code
    assert commands.decode_script_code(1) == NodeReply(Status.OK)
    assert commands.decode_script_code(0) == NodeReply(Status.MISSING)


_EXTEND = FanOut(Op.EXTEND, "k", "v", ttl_ms=8000)


@pytest.mark.parametrize(
    ("effect", "replies"),
    [
        pytest.param(
            FanOut(Op.ACQUIRE, "k", "v", ttl_ms=8000, fresh=True),
            [[b"OK", 8000], [None, 4200], [None, -1], 1, [b"OK"]],
            id="plain-acquire",
        ),
        pytest.param(FanOut(Op.ACQUIRE, "k", "v", ttl_ms=8000), [1, 0, -4202, [1]], id="acquire"),
        pytest.param(FanOut(Op.RELEASE, "k", "v"), [1, 0, -1, b"1"], id="release"),
        pytest.param(FanOut(Op.GET, "k", "v"), [b"v", b"w", None, 1], id="get"),
        pytest.param(Batch((_EXTEND, _EXTEND)), [[1, 0], [1], 1], id="batch"),
    ],
)
def test_the_decoder_of_a_fan_out_decodes_as_decode_does(
    effect: FanOut | Batch, replies: list[object]
) -> None:
    # Chosen once per fan-out (no dispatch per node): the same reply or the same error.
    chosen = commands.decoder(effect)
    for reply in replies:
        try:
            expected: object = commands.decode(effect, reply)
        except commands.UnexpectedReply:
            with pytest.raises(commands.UnexpectedReply):
                chosen(reply)
        else:
            assert chosen(reply) == expected, reply


@pytest.mark.parametrize("reply", [True, False, 2, -2.0, "1", b"-5", None, [1]])
def test_a_lock_script_reply_that_is_no_code_is_unexpected(reply: object) -> None:
    with pytest.raises(commands.UnexpectedReply):
        commands.decode_script_code(reply)


class _Recorded:
    """A sync node that answers at once, recording each begin; without a connection yet, it
    defers when asked not to connect (as a RedisNode does)."""

    def __init__(self, index: int, calls: list[tuple[int, bool]], connected: bool) -> None:
        self.index = index
        self.address = f"memory://n{index}"
        self.calls = calls
        self.connected = connected

    def begin(self, effect: FanOut | Batch, budget_s: float | None, connect: bool = True) -> Any:
        self.calls.append((self.index, connect))
        if not self.connected and not connect:
            return None
        self.connected = True
        return NodeReply(Status.OK)

    def ping(self, timeout_s: float) -> str:
        return "memory"

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("order", "only", "begun"),
    [
        (None, None, [(0, False), (1, False), (2, False), (3, False), (0, True), (2, True)]),
        (
            (3, 2, 1, 0),
            None,
            [(3, False), (2, False), (1, False), (0, False), (2, True), (0, True)],
        ),
        (None, frozenset({0, 1}), [(0, False), (1, False), (0, True)]),
    ],
    ids=["node-order", "shuffled", "only-some"],
)
def test_nodes_with_an_open_connection_are_sent_to_first(
    order: tuple[int, ...] | None, only: frozenset[int] | None, begun: list[tuple[int, bool]]
) -> None:
    calls: list[tuple[int, bool]] = []
    nodes = [_Recorded(i, calls, connected=i in (1, 3)) for i in range(4)]
    effect = FanOut(Op.GET, "k", "v", deadline_ms=1000, only=only)
    replies = sync_transport.fan_out(nodes, effect, order)
    assert calls == begun
    assert replies == tuple(
        NodeReply(Status.OK) if only is None or i in only else None for i in range(4)
    )
