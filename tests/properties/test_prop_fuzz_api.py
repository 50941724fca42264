"""Hostile input at the public API: names, values, options, timeouts and URLs.

The only acceptable outcomes are the documented ones: ``ConfigurationError`` for invalid input,
otherwise a working lock; never another exception, a hang, or a key left behind. Names and
values go to real redis-server nodes (and DBSIZE is checked after each example); options and
URLs are checked at construction only.

Inputs that once crashed the core each keep a regression test at the end of this file.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from redsync_core import AsyncRedsync, ConfigurationError, Redsync
from redsync_core.testing import RedisServer, memory_urls

FUZZ = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PASSWORD = "S3cret-pw-Zq9"


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


NAMES = st.one_of(
    st.text(min_size=1, max_size=200),
    st.sampled_from(
        [
            " ",
            "a b c",
            "ключ:42",
            "🔒 lock",
            "\x00\x01\xff binary-looking \x7f",
            "*",
            "?",
            "[a-z]",
            "end",
            "'",
            '"; redis.call("FLUSHALL") --',
            "\r\nSET x 1\r\n",
            "x" * 1_000_000,  # 1 MB
        ]
    ),
)

VALUES = st.one_of(
    st.text(min_size=1, max_size=100),
    st.sampled_from(
        ["*", "?", "[a-z]", "end", "'", '"', "]]", "--", "\\", "%s", "{}", "\x00", "' or 1 --"]
    ),
)


def _refusal(build: Any) -> str | None:
    """Run ``build``; return the ConfigurationError message, or None when it succeeded.

    Any other exception propagates and fails the test.
    """
    try:
        build()
    except ConfigurationError as exc:
        return str(exc)
    return None


def dbsizes(servers: list[RedisServer]) -> list[int]:
    sizes = []
    for server in servers:
        client = server.client()
        try:
            sizes.append(int(client.dbsize()))
        finally:
            client.close()
    return sizes


def stored(servers: list[RedisServer], key: str) -> list[bytes | None]:
    out = []
    for server in servers:
        client = server.client()
        try:
            out.append(client.get(key.encode("utf-8")))
        finally:
            client.close()
    return out


@FUZZ
@given(name=NAMES)
def test_any_name_locks_and_leaves_nothing_behind(
    redis_nodes: list[RedisServer], name: str
) -> None:
    assume(not has_surrogate(name))  # see test_surrogate_names_are_a_configuration_error
    with Redsync([n.url for n in redis_nodes], tries=1) as rs:
        mutex = rs.new_mutex(name)
        mutex.lock()
        assert mutex.name == name
        assert stored(redis_nodes, name) == [mutex.value.encode()] * 3  # type: ignore[union-attr]
        assert mutex.unlock()
    assert dbsizes(redis_nodes) == [0, 0, 0]


@FUZZ
@given(value=VALUES, other=VALUES)
def test_values_are_compared_literally_never_as_patterns_or_code(
    redis_nodes: list[RedisServer], value: str, other: str
) -> None:
    assume(value != other)
    assume(not has_surrogate(value + other))
    with Redsync([n.url for n in redis_nodes], tries=1) as rs:
        mine = rs.new_mutex("fuzz:value", value=value)
        mine.lock()
        thief = rs.new_mutex("fuzz:value", value=other)
        assert not thief.unlock()
        assert not thief.valid()
        assert stored(redis_nodes, "fuzz:value") == [value.encode()] * 3
        assert mine.valid()
        assert mine.extend()
        assert mine.unlock()
    assert dbsizes(redis_nodes) == [0, 0, 0]


ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=2),
    st.just(lambda *a: 0.1),
)
DAY = 86_400.0
MAX_EXPIRY = 30 * DAY


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _text(x: object) -> bool:
    return isinstance(x, str) and x != "" and not has_surrogate(x)


def _outlasts_drift(expiry: float, drift_factor: float) -> bool:
    """A lock must outlast its clock drift allowance (expiry * drift_factor + 2 ms) to ever be
    valid; whole milliseconds, as the option table says."""
    expiry_ms = round(expiry * 1000)
    return expiry_ms - int(expiry_ms * drift_factor) - 2 > 0


#: The documented contract of every option (README's option table), written here independently
#: of the core: the values that must be accepted. Every other value must be refused.
VALID: dict[str, Any] = {
    "expiry": lambda x: _number(x) and 0.001 <= x <= MAX_EXPIRY and _outlasts_drift(x, 0.01),
    "tries": lambda x: x is None or (type(x) is int and x >= 1),
    "retry_delay": lambda x: x is None or (_number(x) and 0 <= x < DAY),
    "retry_delay_func": lambda x: x is None or callable(x),
    "drift_factor": lambda x: _number(x) and 0 <= x < 1,
    "timeout_factor": lambda x: _number(x) and 0 <= x < 1,
    "gen_value_func": lambda x: x is None or callable(x),
    "value": lambda x: x is None or _text(x),
    "fail_fast": lambda x: isinstance(x, bool),
    "shuffle_pools": lambda x: isinstance(x, bool),
    "set_nx_on_extend": lambda x: isinstance(x, bool),
    "auto_extend": lambda x: isinstance(x, bool),
    "on_lost": lambda x: x is None or callable(x),
    "no_such_option": lambda x: False,
}
#: Values at and next to each boundary, so that every check is hit, not only random garbage.
EDGE_VALUES: list[Any] = [
    0, 1, -1, 0.0, -0.0, 0.001, 0.0009, 0.999, 1.0, 1.5, DAY, DAY - 0.001, MAX_EXPIRY,
    MAX_EXPIRY + 0.001, 1e300, -1e-9, math.inf, -math.inf, math.nan, True, False, "", "v",
    2**63, None, [1], print,
]  # fmt: skip
EDGES = st.sampled_from(EDGE_VALUES)


def _same(kept: object, given: object) -> bool:
    return kept is given or kept == given


@pytest.mark.parametrize("name", sorted(VALID))
def test_each_option_is_refused_exactly_outside_its_range(name: str) -> None:
    wrong = []
    for value in EDGE_VALUES:
        options = {name: value}
        message = _refusal(lambda: Redsync(memory_urls(3)).new_mutex("x", **options))  # noqa: B023
        if VALID[name](value) != (message is None):
            wrong.append(f"{name}={value!r}: {'refused' if message else 'accepted'}")
        elif message is not None:
            assert name in message, message
    assert wrong == []


@settings(max_examples=600, deadline=None, derandomize=True)
@given(
    options=st.dictionaries(
        st.sampled_from(sorted(VALID)), st.one_of(ANY, EDGES), min_size=1, max_size=3
    )
)
def test_options_are_accepted_or_refused_with_configuration_error(options: dict[str, Any]) -> None:
    bad = sorted(name for name, value in options.items() if not VALID[name](value))
    drift = options.get("drift_factor", 0.01)
    if "expiry" in options and not bad and not _outlasts_drift(options["expiry"], drift):
        bad = ["expiry"]  # valid alone, too short for this drift_factor
    built: list[Any] = []
    for build in (
        lambda: built.append(Redsync(memory_urls(3), **options).new_mutex("x")),
        lambda: built.append(Redsync(memory_urls(3)).new_mutex("x", **options)),
    ):
        message = _refusal(build)
        if bad:
            assert message is not None, f"bad option accepted: {bad} in {options!r}"
            assert any(name in message for name in bad), (
                f"the message names no bad option: {message}"
            )
        else:
            assert message is None, f"valid options refused: {options!r}: {message}"
    for mutex in built:  # accepted: every option took effect, none was dropped on the way
        for name, value in options.items():
            assert _same(getattr(mutex.options, name), value), name


@settings(max_examples=200, deadline=None, derandomize=True)
@given(timeout=st.one_of(ANY, EDGES))
def test_lock_timeout_argument_is_validated(timeout: Any) -> None:
    valid = timeout is None or (_number(timeout) and 0 <= timeout <= MAX_EXPIRY)
    mutex = Redsync(memory_urls(3)).new_mutex("t", tries=1)
    if not valid:
        with pytest.raises(ConfigurationError, match="timeout"):
            mutex.lock(timeout=timeout)
        assert mutex.value is None, "a refused call must not have tried to lock"
        return
    mutex.lock(timeout=timeout)  # fresh memory nodes: a valid timeout always gets the lock
    assert mutex.held
    assert mutex.unlock()


URLS = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, user, host, port, path, query: f"{scheme}://{user}{host}{port}{path}{query}",
        st.sampled_from(["redis", "rediss", "unix", "memory", "http", "", "REDIS"]),
        st.sampled_from(["", f":{PASSWORD}@", f"user:{PASSWORD}@", "@", f"u:{PASSWORD}:x@"]),
        st.sampled_from(["127.0.0.1", "localhost", "[::1]", "", "ключ", "h h", "%zz"]),
        st.sampled_from(["", ":6379", ":0", ":65536", ":-1", ":abc", ":"]),
        st.sampled_from(["", "/0", "/15", "/x", "/-1", "//", "/0/1"]),
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "db",
                        "socket_timeout",
                        "ssl_cert_reqs",
                        "protocol",
                        "health_check_interval",
                        "max_connections",
                        "password",
                        "bogus",
                    ]
                ),
                st.sampled_from(["1", "0", "-1", "abc", "", "none", PASSWORD, "1e999"]),
            ),
            max_size=2,
        ).map(lambda kv: ("?" + "&".join(f"{k}={v}" for k, v in kv)) if kv else ""),
    ),
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(url=URLS)
def test_urls_are_accepted_or_refused_with_configuration_error(url: str) -> None:
    secret = "://" in url and f":{PASSWORD}@" in url  # a password in the user-info part
    built: list[Redsync] = []
    message = _refusal(lambda: built.append(Redsync([url])))
    if secret and message is not None:
        assert PASSWORD not in message, "a password leaked into an error message"
    if message is None:  # only the documented schemes are accepted
        assert url.partition("://")[0] in {"redis", "rediss", "unix", "memory"}, url
    for rs in built:
        if secret:
            assert all(PASSWORD not in address for address in rs.addresses)
        rs.close()


# --- core bugs found by the fuzzers ------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "value"])
def test_surrogate_names_are_a_configuration_error(
    redis_nodes: list[RedisServer], field: str
) -> None:
    name, value = ("bad \ud800 name", None) if field == "name" else ("ok", "bad \udcff value")
    with Redsync([n.url for n in redis_nodes], tries=1) as rs, pytest.raises(ConfigurationError):
        rs.new_mutex(name, value=value).lock()
    assert dbsizes(redis_nodes) == [0, 0, 0]


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -math.inf])
def test_non_finite_timeout_is_a_configuration_error(timeout: float) -> None:
    # "No limit" is timeout=None; inf is refused like every other number out of range.
    mutex = Redsync(memory_urls(3)).new_mutex("t")
    with pytest.raises(ConfigurationError, match="timeout"):
        mutex.lock(timeout=timeout)
    assert not mutex.held


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -math.inf])
def test_asyncio_non_finite_timeout_is_a_configuration_error(timeout: float) -> None:
    async def main() -> None:
        async with AsyncRedsync(memory_urls(3)) as ars:
            mutex = ars.new_mutex("t")
            with pytest.raises(ConfigurationError, match="timeout"):
                await mutex.lock(timeout=timeout)
            assert not mutex.held

    asyncio.run(main())


def test_huge_expiry_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        Redsync(memory_urls(3)).new_mutex("x", expiry=1e308)


def test_malformed_ipv6_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        Redsync([f"redis://:{PASSWORD}@[::1"])
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [f"redis:/user:{PASSWORD}@h:1/0", f"redis//user:{PASSWORD}@h/0", f"memory://:{PASSWORD}@"],
)
def test_credentials_of_malformed_urls_are_redacted(url: str) -> None:
    built: list[Redsync] = []
    message = _refusal(lambda: built.append(Redsync([url])))
    assert message is None or PASSWORD not in message
    assert all(PASSWORD not in address for rs in built for address in rs.addresses)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6390/0?protocol=9", "rediss://127.0.0.1:6390/0?ssl_cert_reqs=1"]
)
def test_bad_client_query_options_are_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        Redsync([url])


def test_a_retry_delay_beyond_a_day_is_refused_not_an_overflow_in_lock() -> None:
    # It used to be accepted, and lock() then died in time.sleep with an OverflowError.
    with pytest.raises(ConfigurationError, match="retry_delay"):
        Redsync(memory_urls(3)).new_mutex("x", retry_delay=1e300, tries=2)
