"""init_app: REDSYNC_* config read once, errors naming the key, several apps, factories."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask

from redsync_core import ConfigurationError
from redsync_core import Redsync as CoreRedsync
from redsync_core.testing import RedisServer, memory_urls
from redsync_flask import Redsync

THREE = ["redis://127.0.0.1:1/0", "redis://127.0.0.1:2/0", "redis://127.0.0.1:3/0"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({}, "REDSYNC_URLS is not set", id="urls-missing"),
        pytest.param({"REDSYNC_URLS": None}, "REDSYNC_URLS is not set", id="urls-none"),
        pytest.param({"REDSYNC_URLS": []}, "REDSYNC_URLS is empty", id="urls-empty-list"),
        pytest.param({"REDSYNC_URLS": " , "}, "REDSYNC_URLS is empty", id="urls-empty-string"),
        pytest.param({"REDSYNC_URLS": 6379}, "Invalid REDSYNC_URLS: got int", id="urls-int"),
        pytest.param(
            {"REDSYNC_URLS": ["http://127.0.0.1:6379"]},
            "Invalid REDSYNC_URLS: Invalid node URL 'http://127.0.0.1:6379': unknown scheme",
            id="urls-bad-scheme",
        ),
        pytest.param(
            {"REDSYNC_URLS": [*THREE[:2], 6379]},
            "Invalid REDSYNC_URLS: Invalid node 2",
            id="urls-not-a-string",
        ),
        pytest.param(
            {"REDSYNC_URLS": ["redis://127.0.0.1:99999/0"]},
            "Invalid REDSYNC_URLS: Invalid node URL",
            id="urls-bad-port",
        ),
        pytest.param(
            {"REDSYNC_URLS": THREE, "REDSYNC_CLIENT_OPTIONS": ["socket_timeout", 1]},
            "Invalid REDSYNC_CLIENT_OPTIONS: got list, expected a dict",
            id="client-options-list",
        ),
        pytest.param(
            {"REDSYNC_URLS": THREE, "REDSYNC_CLIENT_OPTIONS": {"max_connections": -1}},
            "Invalid REDSYNC_CLIENT_OPTIONS: Invalid node URL",
            id="client-options-rejected-by-redis",
        ),
        pytest.param(
            {"REDSYNC_URLS": THREE, "REDSYNC_KEY_PREFIX": 7},
            "Invalid REDSYNC_KEY_PREFIX: got int, expected a string",
            id="key-prefix-int",
        ),
        pytest.param(
            {"REDSYNC_URLS": THREE, "REDSYNC_OPTIONS": [("expiry", 5)]},
            "Invalid REDSYNC_OPTIONS: got list, expected a dict",
            id="options-list",
        ),
        pytest.param(
            {"REDSYNC_URLS": THREE, "REDSYNC_OPTIONS": {"ttl": 5}},
            "Invalid REDSYNC_OPTIONS: Unknown option 'ttl'",
            id="options-unknown-name",
        ),
        pytest.param(
            {"REDSYNC_URLS": THREE, "REDSYNC_OPTIONS": {"expiry": -1}},
            "Invalid REDSYNC_OPTIONS: Invalid option expiry=-1",
            id="options-bad-expiry",
        ),
        pytest.param(
            {"REDSYNC_URLS": THREE, "REDSYNC_OPTIONS": {"auto_extend": "yes"}},
            "Invalid REDSYNC_OPTIONS: Invalid option auto_extend='yes'",
            id="options-bad-auto-extend",
        ),
        pytest.param(
            {"REDSYNC_URLS": THREE, "REDSYNC_BUSY_STATUS": 200},
            "Invalid REDSYNC_BUSY_STATUS=200",
            id="busy-status-success-code",
        ),
        pytest.param(
            {"REDSYNC_URLS": THREE, "REDSYNC_BUSY_STATUS": "409"},
            "Invalid REDSYNC_BUSY_STATUS='409'",
            id="busy-status-string",
        ),
        pytest.param(
            {"REDSYNC_URLS": THREE, "REDSYNC_BUSY_STATUS": True},
            "Invalid REDSYNC_BUSY_STATUS=True",
            id="busy-status-bool",
        ),
    ],
)
def test_bad_config_raises_at_init_app_naming_the_key(
    make_app: Any, config: dict[str, Any], message: str
) -> None:
    app = make_app(**config)
    redsync = Redsync()

    with pytest.raises(ConfigurationError, match="^" + message.replace("(", r"\(")) as info:
        redsync.init_app(app)

    key = message.split("REDSYNC_")[1].split()[0].split(":")[0].split("=")[0]
    assert f"app.config['REDSYNC_{key}']" in str(info.value)  # the fix names the key
    assert "redsync" not in app.extensions


def test_errors_never_show_passwords(make_app: Any) -> None:
    app = make_app(
        REDSYNC_URLS=["redis://:s3cret@127.0.0.1:1/0"] * 3,
        REDSYNC_CLIENT_OPTIONS={"max_connections": -1, "password": "t0ps3cret"},
    )
    with pytest.raises(ConfigurationError) as info:
        Redsync(app)
    assert "s3cret" not in str(info.value)


def test_the_app_gets_its_core_redsync_with_the_configured_defaults(
    make_app: Any, urls: list[str]
) -> None:
    app = make_app(REDSYNC_URLS=urls, REDSYNC_KEY_PREFIX="shop:", REDSYNC_OPTIONS={"expiry": 12.5})
    redsync = Redsync(app)

    core = app.extensions["redsync"]
    assert isinstance(core, CoreRedsync)
    assert core.key_prefix == "shop:"
    with app.app_context():
        assert redsync.get_redsync() is core
        mutex = redsync.new_mutex("cart:1")
        with mutex:
            assert mutex.key == "shop:cart:1"
            assert 11.0 < mutex.remaining <= 12.5  # REDSYNC_OPTIONS expiry
        assert mutex._options.auto_extend is True  # adapter default kept beside it


def test_adapter_defaults_are_expiry_30_and_auto_extend(make_app: Any) -> None:
    app = make_app(REDSYNC_URLS=memory_urls(3))
    Redsync(app)
    with app.app_context():
        mutex = app.extensions["redsync"].new_mutex("x")
    assert mutex._options.expiry == 30.0
    assert mutex._options.auto_extend is True


def test_urls_may_be_one_comma_separated_string(make_app: Any) -> None:
    """As from `app.config.from_prefixed_env()` or an environment variable."""
    first, second, third = THREE
    app = make_app(REDSYNC_URLS=f"{first}, {second} ,{third}")
    Redsync(app)
    assert app.extensions["redsync"].addresses == tuple(THREE)


def test_a_single_url_works_with_a_warning(
    make_app: Any, redis_servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    (server,) = redis_servers(1)
    app = make_app(REDSYNC_URLS=server.url)
    with caplog.at_level(logging.WARNING, logger="redsync.flask"):
        redsync = Redsync(app)

    assert "not Redlock" in caplog.text
    with app.app_context(), redsync.new_mutex("solo") as mutex:
        assert mutex.valid()


def test_an_even_node_count_warns(make_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="redsync.flask"):
        Redsync(make_app(REDSYNC_URLS=memory_urls(4)))
    assert "4 nodes" in caplog.text


def test_unknown_redsync_keys_warn_with_a_suggestion(
    make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="redsync.flask"):
        Redsync(make_app(REDSYNC_URLS=memory_urls(3), REDSYNC_KEYPREFIX="x:"))
    assert "REDSYNC_KEYPREFIX" in caplog.text
    assert "did you mean REDSYNC_KEY_PREFIX" in caplog.text


def test_config_is_read_once_at_init_app(make_app: Any) -> None:
    app = make_app(REDSYNC_URLS=memory_urls(3), REDSYNC_KEY_PREFIX="before:")
    Redsync(app)
    app.config["REDSYNC_KEY_PREFIX"] = "after:"
    assert app.extensions["redsync"].key_prefix == "before:"


def test_init_app_twice_on_one_app_raises(make_app: Any) -> None:
    app = make_app(REDSYNC_URLS=memory_urls(3))
    Redsync(app)
    with pytest.raises(RuntimeError, match="already registered on app"):
        Redsync().init_app(app)


def test_the_extension_keeps_no_app_and_no_per_app_state(make_app: Any) -> None:
    """Flask's extension guide: per-app state lives in ``app.extensions``, not on the object."""
    redsync = Redsync()
    apps = [make_app(REDSYNC_URLS=memory_urls(3)) for _ in range(2)]
    for app in apps:
        redsync.init_app(app)

    assert vars(redsync) == {}
    for app in apps:
        with app.app_context():
            assert redsync.get_redsync() is app.extensions["redsync"]


def test_an_app_of_another_instance_is_refused_with_the_fix(make_app: Any) -> None:
    app = make_app(REDSYNC_URLS=memory_urls(3))
    Redsync(app)
    other = Redsync()
    with app.app_context(), pytest.raises(RuntimeError, match=r"Call redsync.init_app\(app\)"):
        other.new_mutex("x")


def test_outside_an_app_context_the_error_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"app\.app_context"):
        Redsync().new_mutex("x")


def test_one_extension_serves_two_apps_with_different_config(
    make_app: Any, redis_servers: Any
) -> None:
    """App factory pattern: one module-level extension, two apps, each with its own nodes."""
    redsync = Redsync()
    nodes_a: list[RedisServer] = redis_servers(3)
    nodes_b: list[RedisServer] = redis_servers(3)

    def create_app(nodes: list[RedisServer], prefix: str, status: int) -> Flask:
        app = make_app(
            REDSYNC_URLS=[s.url for s in nodes],
            REDSYNC_KEY_PREFIX=prefix,
            REDSYNC_BUSY_STATUS=status,
        )
        redsync.init_app(app)

        @app.post("/job")
        @redsync.locked("job")
        def job() -> str:
            return "ran"

        return app

    app_a = create_app(nodes_a, "a:", 409)
    app_b = create_app(nodes_b, "b:", 423)
    assert app_a.extensions["redsync"] is not app_b.extensions["redsync"]

    with app_a.app_context(), redsync.new_mutex("job"):  # held on app A's nodes only
        assert app_a.test_client().post("/job").status_code == 409
        assert app_b.test_client().post("/job").status_code == 200
        assert nodes_a[0].client().exists("a:job") == 1
        assert nodes_b[0].client().exists("b:job") == 0

    with app_b.app_context(), redsync.new_mutex("job"):
        assert app_b.test_client().post("/job").status_code == 423
        assert app_a.test_client().post("/job").status_code == 200
