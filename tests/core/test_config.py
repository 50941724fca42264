"""Configuration: every invalid option, URL or node list fails at construction, naming the
option and the value, before anything is sent to a node."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from scenarios import BAD_NODES, BAD_OPTIONS, QUORUMS, UNKNOWN_OPTIONS, BadNodes, BadOption, pending

from redsync_core import (
    AsyncRedsync,
    ConfigurationError,
    MutexOptions,
    QuorumUnreachable,
    Redsync,
)
from redsync_core.testing import memory_urls


def url_of(sock: socket.socket) -> str:
    return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


def _redsync_defaults(url: str, option: str, value: object) -> object:
    return Redsync([url], **{option: value})


def _new_mutex(url: str, option: str, value: object) -> object:
    return Redsync([url]).new_mutex("job", **{option: value})


def _async_defaults(url: str, option: str, value: object) -> object:
    return AsyncRedsync([url], **{option: value})


def _async_new_mutex(url: str, option: str, value: object) -> object:
    return AsyncRedsync([url]).new_mutex("job", **{option: value})


def _options_build(url: str, option: str, value: object) -> object:
    return MutexOptions.build({option: value})


CONSTRUCTORS = [
    pytest.param(_redsync_defaults, id="Redsync(**defaults)"),
    pytest.param(_new_mutex, id="Redsync.new_mutex"),
    pytest.param(_async_defaults, id="AsyncRedsync(**defaults)"),
    pytest.param(_async_new_mutex, id="AsyncRedsync.new_mutex"),
    pytest.param(_options_build, id="MutexOptions.build"),
]

Construct = Callable[[str, str, object], object]


def test_the_listener_probe_sees_a_real_attempt(listener: socket.socket) -> None:
    # The probe used below can fail: a lock attempt does connect to the listening port.
    with Redsync([url_of(listener)], expiry=1) as rs, pytest.raises(QuorumUnreachable):
        rs.new_mutex("job").try_lock()
    assert pending(listener)


@pytest.mark.parametrize("construct", CONSTRUCTORS)
@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_an_invalid_option_is_refused_at_construction(
    construct: Construct, case: BadOption, listener: socket.socket
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        construct(url_of(listener), case.option, case.value)
    message = str(caught.value)
    assert case.option in message
    assert case.shown in message
    assert isinstance(caught.value, ValueError)
    assert not pending(listener)


@pytest.mark.parametrize("construct", CONSTRUCTORS)
@pytest.mark.parametrize(("option", "value"), UNKNOWN_OPTIONS)
def test_an_unknown_option_is_refused_at_construction(
    construct: Construct, option: str, value: object, listener: socket.socket
) -> None:
    with pytest.raises(ConfigurationError, match=repr(option)):
        construct(url_of(listener), option, value)
    assert not pending(listener)


@pytest.mark.parametrize("factory", [Redsync, AsyncRedsync], ids=["sync", "async"])
@pytest.mark.parametrize("case", BAD_NODES)
def test_invalid_nodes_are_refused(factory: type[Any], case: BadNodes) -> None:
    with pytest.raises(ConfigurationError) as caught:
        factory(case.nodes)
    for fragment in case.fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize("factory", [Redsync, AsyncRedsync], ids=["sync", "async"])
@pytest.mark.parametrize("name", ["", None, 42, b"job"], ids=repr)
def test_a_mutex_needs_a_non_empty_string_name(
    factory: type[Any], name: object, listener: socket.socket
) -> None:
    with pytest.raises(ConfigurationError, match="name"):
        factory([url_of(listener)]).new_mutex(name)
    assert not pending(listener)


@pytest.mark.parametrize("factory", [Redsync, AsyncRedsync], ids=["sync", "async"])
def test_key_prefix_must_be_a_string(factory: type[Any]) -> None:
    with pytest.raises(ConfigurationError, match="key_prefix"):
        factory(memory_urls(1), key_prefix=None)


def test_a_client_of_the_wrong_kind_is_refused(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    async_client = redis.asyncio.Redis(port=port)
    sync_client = redis.Redis(port=port)
    try:
        with pytest.raises(ConfigurationError, match="asyncio"):
            Redsync([async_client])
        with pytest.raises(ConfigurationError, match=r"redis\.asyncio"):
            AsyncRedsync([sync_client])
    finally:
        sync_client.close()
    assert not pending(listener)


def test_a_negative_lock_timeout_is_refused_before_sending(listener: socket.socket) -> None:
    with Redsync([url_of(listener)]) as rs:
        m = rs.new_mutex("job")
        with pytest.raises(ConfigurationError, match="timeout"):
            m.lock(timeout=-1)
        assert not m.held
    assert not pending(listener)


def test_extend_with_an_invalid_expiry_names_it() -> None:
    with Redsync(memory_urls(3)) as rs:
        m = rs.new_mutex("job", expiry=5)
        m.lock()
        with pytest.raises(ConfigurationError, match="expiry"):
            m.extend(0)
        assert m.held
        assert m.unlock()


@pytest.mark.parametrize(("n", "need"), QUORUMS)
def test_quorum_needs_no_connection(n: int, need: int) -> None:
    with Redsync(memory_urls(n)) as rs:
        assert rs.quorum == need
    assert AsyncRedsync(memory_urls(n)).quorum == need


def test_defaults_are_redsyncs() -> None:
    options = Redsync(memory_urls(1)).new_mutex("job").options
    assert options == MutexOptions()
    assert options.expiry == 8.0
    assert options.tries == 32
    assert options.retry_delay is None
    assert options.retry_delay_func is None
    assert options.drift_factor == 0.01
    assert options.timeout_factor == 0.05
    assert options.value is None
    assert options.fail_fast is False
    assert options.shuffle_pools is False
    assert options.set_nx_on_extend is False
    assert options.auto_extend is False
    assert options.on_lost is None


def test_mutex_options_override_redsync_defaults() -> None:
    rs = Redsync(memory_urls(1), expiry=3.0, tries=5)
    assert rs.new_mutex("a").options.expiry == 3.0
    m = rs.new_mutex("b", expiry=0.5)
    assert (m.options.expiry, m.options.tries) == (0.5, 5)
    assert m.options.expiry_ms == 500


@pytest.mark.parametrize(
    "options",
    [
        {"expiry": 0.003},
        {"expiry": 1.2345},
        {"tries": 1},
        {"tries": None},
        {"retry_delay": 0},
        {"drift_factor": 0},
        {"timeout_factor": 0},
        {"timeout_factor": 0.999},
        {"retry_delay_func": lambda attempt: 0.01},
        {"gen_value_func": lambda: "v"},
        {"value": "known"},
    ],
    ids=repr,
)
def test_boundary_values_are_accepted(options: dict[str, Any]) -> None:
    m = Redsync(memory_urls(3)).new_mutex("job", **options)
    if "expiry" in options:
        assert m.options.expiry_ms == round(options["expiry"] * 1000)  # never whole seconds
    if m.options.expiry_ms <= 2:
        # 1 ms of TTL is less than the 2 ms clock-precision allowance: no validity is left.
        assert m.try_lock() is False
        return
    if m.options.expiry_ms < 10:
        # A 3 ms lease keeps under 1 ms of validity once the allowance is taken: a busy machine
        # can spend that on one fan-out, so the lease needs some of a few tries to be quick enough.
        assert any(m.try_lock() for _ in range(50))
    else:
        assert m.try_lock()
    assert m.unlock()


@pytest.mark.parametrize(
    ("expiry", "drift_factor"),
    [(0.001, 0.01), (0.002, 0.0), (0.004, 0.5)],
    ids=["1ms", "2ms-no-drift", "4ms-half-drift"],
)
def test_an_expiry_within_its_drift_allowance_is_refused(
    expiry: float, drift_factor: float
) -> None:
    """Such a lock could never be valid: lock() would only retry until tries or timeout end."""
    with pytest.raises(ConfigurationError, match=r"Invalid option expiry=.*drift allowance"):
        Redsync(memory_urls(3), expiry=expiry, drift_factor=drift_factor)


def test_the_shortest_valid_expiry_is_accepted() -> None:
    Redsync(memory_urls(3), expiry=0.003).new_mutex("x")
