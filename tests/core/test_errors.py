"""The error tree: classes, pickling (Celery), and messages that leak no value or password."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest
from scenarios import dead_url

from redsync_core import (
    AsyncRedsync,
    ConfigurationError,
    LockError,
    LockLost,
    LockNotAcquired,
    LockTaken,
    LockTimeout,
    NodeError,
    QuorumUnreachable,
    Redsync,
    RedsyncError,
)
from redsync_core.testing import RedisServer

PASSWORD = "s3cret"
VALUE = "VALUE-7f3a9c"  # a lock value that must never show up in a message


def roundtrip(error: Exception, protocol: int = pickle.DEFAULT_PROTOCOL) -> Any:
    """Pickle and unpickle ``error`` as Celery does (our own objects, not untrusted data)."""
    return pickle.loads(pickle.dumps(error, protocol=protocol))  # noqa: S301


def test_the_error_tree() -> None:
    assert issubclass(ConfigurationError, RedsyncError)
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(NodeError, RedsyncError)
    assert issubclass(LockError, RedsyncError)
    for cls in (LockTaken, QuorumUnreachable, LockTimeout):
        assert issubclass(cls, LockNotAcquired)
    assert issubclass(LockNotAcquired, LockError)
    assert issubclass(LockLost, LockError)
    assert not issubclass(LockLost, LockNotAcquired)


NODE_ERROR = NodeError(2, "redis://10.0.0.3:6379/0", "TimeoutError: Timeout reading from socket")

EXCEPTIONS = [
    pytest.param(RedsyncError("boom"), {}, id="RedsyncError"),
    pytest.param(ConfigurationError("Invalid option expiry=0"), {}, id="ConfigurationError"),
    pytest.param(
        NODE_ERROR,
        {"node": 2, "address": "redis://10.0.0.3:6379/0", "reason": NODE_ERROR.reason},
        id="NodeError",
    ),
    pytest.param(LockError("job", "already held"), {"name": "job"}, id="LockError"),
    pytest.param(
        LockNotAcquired("job", "gave up", 4, 1.5),
        {"name": "job", "attempts": 4, "retry_after": 1.5},
        id="LockNotAcquired",
    ),
    pytest.param(
        LockTaken("job", "taken", 32, 7.25, (0, 2)),
        {"name": "job", "attempts": 32, "retry_after": 7.25, "nodes": (0, 2)},
        id="LockTaken",
    ),
    pytest.param(
        QuorumUnreachable("job", "down", 1, None, (NODE_ERROR,)),
        {"name": "job", "attempts": 1, "retry_after": None},
        id="QuorumUnreachable",
    ),
    pytest.param(
        LockTimeout("job", "timed out", 9, 0.5),
        {"name": "job", "attempts": 9, "retry_after": 0.5},
        id="LockTimeout",
    ),
    pytest.param(LockLost("job", "lost"), {"name": "job"}, id="LockLost"),
]


@pytest.mark.parametrize(("error", "attributes"), EXCEPTIONS)
def test_every_exception_pickles_with_its_attributes(
    error: Exception, attributes: dict[str, object]
) -> None:
    for protocol in (0, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        copy = roundtrip(error, protocol)
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert repr(copy.args) == repr(error.args)  # exceptions have no __eq__
        for name, value in attributes.items():
            assert getattr(copy, name) == value, name


def test_quorum_unreachable_pickles_its_node_errors() -> None:
    error = QuorumUnreachable("job", "down", 1, None, (NODE_ERROR,))
    copy = roundtrip(error)
    (node_error,) = copy.errors
    assert isinstance(node_error, NodeError)
    assert (node_error.node, node_error.address, node_error.reason) == (
        NODE_ERROR.node,
        NODE_ERROR.address,
        NODE_ERROR.reason,
    )


def _assert_clean(*texts: object) -> None:
    for text in texts:
        shown = f"{text}|{text!r}"
        assert PASSWORD not in shown, shown
        assert VALUE not in shown, shown


def test_errors_raised_against_real_nodes_pickle_and_leak_no_value(
    redis_nodes: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="redsync")
    with Redsync([server.url for server in redis_nodes]) as rs:
        holder = rs.new_mutex("job", expiry=5, gen_value_func=lambda: VALUE)
        holder.lock()
        raised: list[Exception] = []
        for options in ({"tries": 2, "retry_delay": 0.01}, {"tries": None, "retry_delay": 0.01}):
            try:
                rs.new_mutex("job", expiry=5, **options).lock(timeout=0.2)
            except LockNotAcquired as exc:
                raised.append(exc)
        try:
            holder.lock()
        except LockError as exc:
            raised.append(exc)
        redis_nodes[1].kill()
        redis_nodes[2].kill()
        try:
            rs.new_mutex("job", gen_value_func=lambda: VALUE).lock()
        except QuorumUnreachable as exc:
            raised.append(exc)

    assert [type(e) for e in raised] == [LockTaken, LockTimeout, LockError, QuorumUnreachable]
    for error in raised:
        copy = roundtrip(error)
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        _assert_clean(error, copy)
        assert "job" in str(error)
    _assert_clean(*(record.getMessage() for record in caplog.records))
    _assert_clean(holder, repr(holder))


def test_passwords_never_show(redis_servers: object, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="redsync")
    (server,) = redis_servers(1, password=PASSWORD)  # type: ignore[operator]
    assert PASSWORD in server.url
    wrong = server.url.replace(PASSWORD, PASSWORD + "-wrong")
    shown: list[object] = []
    with Redsync([server.url, wrong, dead_url()]) as rs:
        shown += [rs.addresses, repr(rs)]
        m = rs.new_mutex("job", expiry=1, gen_value_func=lambda: VALUE, tries=1)
        shown.append(rs.ping())
        # Node 0 answers, node 1 refuses the password, node 2 is down: 1 of 3 cannot lock.
        with pytest.raises(QuorumUnreachable) as caught:
            m.lock()
        shown += [caught.value, *caught.value.errors, repr(m)]
        shown.append(rs.inspect("job"))
        server.kill()
        with pytest.raises(QuorumUnreachable) as caught:
            m.try_lock()
        shown += [caught.value, *caught.value.errors]
    assert {e.node for e in caught.value.errors} == {0, 1, 2}
    _assert_clean(*shown)
    _assert_clean(*(record.getMessage() for record in caplog.records))


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@127.0.0.1:notaport/0",
        f"redis://user:{PASSWORD}@127.0.0.1:70000/0",
        f"http://user:{PASSWORD}@127.0.0.1:6379/0",
        f"ftp://:{PASSWORD}@127.0.0.1/0",
    ],
    ids=["bad-port", "port-out-of-range", "http-scheme", "ftp-scheme"],
)
@pytest.mark.parametrize("factory", [Redsync, AsyncRedsync], ids=["sync", "async"])
def test_configuration_errors_redact_passwords(factory: type[object], url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        factory([url])  # type: ignore[call-arg]
    _assert_clean(caught.value)


async def test_async_errors_leak_no_password(redis_servers: object) -> None:
    (server,) = redis_servers(1, password=PASSWORD)  # type: ignore[operator]
    wrong = server.url.replace(PASSWORD, "nope")
    async with AsyncRedsync([server.url, wrong, dead_url()]) as ars:
        _assert_clean(ars.addresses, repr(ars))
        m = ars.new_mutex("job", expiry=1, gen_value_func=lambda: VALUE, tries=1)
        with pytest.raises(QuorumUnreachable) as caught:
            await m.lock()
        assert len(caught.value.errors) == 2
        _assert_clean(
            caught.value, *caught.value.errors, await ars.ping(), await ars.inspect("job")
        )
        copy = roundtrip(caught.value)
        assert str(copy) == str(caught.value)
