"""``redsync_core.adapters``: the rules the Django, Celery and Flask adapters share."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from redsync_core import ConfigurationError
from redsync_core.adapters import (
    ADAPTER_DEFAULTS,
    SettingError,
    adapter_options,
    build_redsync,
    check_on_busy,
    check_wait,
    free_in,
    node_count_warning,
    retry_after_seconds,
    wait_options,
)

MEMORY = ["memory://a", "memory://b", "memory://c"]


def test_defaults_are_a_30_second_auto_extended_lease_and_read_only() -> None:
    assert dict(ADAPTER_DEFAULTS) == {"expiry": 30.0, "auto_extend": True}
    with pytest.raises(TypeError):
        ADAPTER_DEFAULTS["expiry"] = 1.0  # type: ignore[index]


def test_settings_override_the_defaults() -> None:
    assert adapter_options({"expiry": 5}) == {"expiry": 5, "auto_extend": True}
    assert adapter_options(None) == dict(ADAPTER_DEFAULTS)


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        pytest.param({"options": {"expiry": -1}}, "options", id="bad-option"),
        pytest.param({"options": {"expirey": 1}}, "options", id="unknown-option"),
        pytest.param({"key_prefix": 7}, "key_prefix", id="prefix-not-a-string"),
        pytest.param({"client_options": {"no_such_argument": 1}}, "client_options", id="client"),
    ],
)
def test_build_redsync_names_the_setting_to_blame(kwargs: dict[str, Any], setting: str) -> None:
    nodes = ["redis://127.0.0.1:1/0"] * 3
    with pytest.raises(SettingError) as raised:
        build_redsync(nodes, **kwargs)
    assert raised.value.setting == setting
    assert isinstance(raised.value, ConfigurationError)


def test_build_redsync_blames_the_nodes_when_they_alone_are_rejected() -> None:
    with pytest.raises(SettingError) as raised:
        build_redsync(["ftp://nowhere"], client_options={"socket_timeout": 1})
    assert raised.value.setting == "nodes"
    assert "ftp" in str(raised.value)


def test_setting_errors_survive_pickle() -> None:
    error = pickle.loads(pickle.dumps(SettingError("nodes", "bad URL")))  # noqa: S301 (our bytes)
    assert (error.setting, str(error)) == ("nodes", "bad URL")


def test_build_redsync_applies_the_defaults_under_the_options() -> None:
    with build_redsync(MEMORY, key_prefix="app:", options={"expiry": 4}) as rs:
        mutex = rs.new_mutex("x")
    assert mutex.key == "app:x"
    assert mutex.options.expiry_ms == 4000
    assert mutex.options.auto_extend


@pytest.mark.parametrize(
    ("count", "expected"),
    [(1, "single node"), (2, "2 nodes"), (3, None), (4, "4 nodes"), (5, None)],
)
def test_node_count_warning(count: int, expected: str | None) -> None:
    warning = node_count_warning(count)
    if expected is None:
        assert warning is None
    else:
        assert warning is not None
        assert expected in warning


@pytest.mark.parametrize(
    ("wait", "tries", "timeout"),
    [(0, 1, None), (0.0, 1, None), (2, None, 2.0), (0.25, None, 0.25)],
)
def test_wait_is_one_attempt_or_retries_until_it_runs_out(
    wait: float, tries: int | None, timeout: float | None
) -> None:
    options, lock_timeout = wait_options(wait, {"expiry": 3})
    assert options == {"expiry": 3, "tries": tries}
    assert lock_timeout == timeout


def test_an_explicit_tries_wins_over_wait() -> None:
    assert wait_options(5, {"tries": 3}) == ({"tries": 3}, 5.0)


@pytest.mark.parametrize("wait", [-0.1, float("nan"), "0", None, True], ids=repr)
def test_a_bad_wait_names_the_option(wait: object) -> None:
    with pytest.raises(ConfigurationError, match=r"^Invalid lock_wait=.*seconds >= 0"):
        check_wait(wait, "lock_wait")


@pytest.mark.parametrize("on_busy", [None, "raise", "skip", lambda exc: None])
def test_on_busy_accepts_the_documented_choices(on_busy: object) -> None:
    check_on_busy(on_busy)


@pytest.mark.parametrize("on_busy", ["ignore", 409, ""], ids=repr)
def test_on_busy_refuses_anything_else(on_busy: object) -> None:
    with pytest.raises(ConfigurationError, match=r"on_busy=.*'raise', 'skip'"):
        check_on_busy(on_busy)


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(None, 1), (0.0, 1), (0.2, 1), (1.0, 1), (1.01, 2), (29.5, 30)],
)
def test_retry_after_is_whole_seconds_rounded_up_at_least_one(
    seconds: float | None, header: int
) -> None:
    assert retry_after_seconds(seconds) == header


def test_free_in_rounds_up_and_says_when_unknown() -> None:
    assert free_in(2.1) == "free in about 3 s"
    assert "unknown" in free_in(None)
