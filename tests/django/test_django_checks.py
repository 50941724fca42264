"""System checks: every id, no network I/O by default, a quorum ping under ``--deploy``."""

from __future__ import annotations

import pytest
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from redsync_django.checks import check_quorum_reachable, check_settings

MEMORY3 = ["memory://c1", "memory://c2", "memory://c3"]


def ids(messages):
    return [message.id for message in messages]


def test_missing_setting_is_e001(settings):
    del settings.REDSYNC
    [error] = check_settings()
    assert isinstance(error, Error)
    assert error.id == "redsync.E001"
    assert "missing" in error.msg


@pytest.mark.parametrize("value", ["redis://x", ["redis://x"], None])
def test_not_a_dict_is_e001(value):
    with override_settings(REDSYNC=value):
        assert ids(check_settings()) == ["redsync.E001"]


@pytest.mark.parametrize(
    "urls",
    [None, [], "redis://127.0.0.1:6379/0", ["http://example.com/"], [1, 2, 3], ["redis://x", ""]],
    ids=["missing", "empty", "a-string", "bad-scheme", "not-strings", "empty-url"],
)
def test_no_or_invalid_urls_is_e002(urls):
    config = {} if urls is None else {"URLS": urls}
    with override_settings(REDSYNC=config):
        [error] = check_settings()
    assert error.id == "redsync.E002"
    assert 'settings.REDSYNC["URLS"]' in error.msg


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"OPTIONS": {"expiry": -1}}, "expiry"),
        ({"OPTIONS": {"tries": 0}}, "tries"),
        ({"OPTIONS": {"drift_factor": 1.5}}, "drift_factor"),
        ({"OPTIONS": {"expirry": 30}}, "expirry"),
        ({"OPTIONS": "expiry=30"}, "OPTIONS"),
        ({"KEY_PREFIX": 5}, "KEY_PREFIX"),
        ({"BUSY_STATUS": 200}, "BUSY_STATUS"),
        ({"CLIENT_OPTIONS": ["socket_timeout"]}, "CLIENT_OPTIONS"),
        ({"URL": "redis://x"}, "URL"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else None,
)
def test_invalid_option_is_e003(extra, named):
    with override_settings(REDSYNC={"URLS": MEMORY3, **extra}):
        [error] = check_settings()
    assert error.id == "redsync.E003"
    assert named in error.msg


def test_single_node_is_w001():
    with override_settings(REDSYNC={"URLS": ["memory://one"]}):
        [warning] = check_settings()
    assert isinstance(warning, Warning)
    assert warning.id == "redsync.W001"


@pytest.mark.parametrize("count", [2, 4])
def test_even_node_count_is_w002(count):
    with override_settings(REDSYNC={"URLS": [f"memory://even{i}" for i in range(count)]}):
        assert ids(check_settings()) == ["redsync.W002"]


def test_three_nodes_pass():
    with override_settings(REDSYNC={"URLS": MEMORY3, "OPTIONS": {"expiry": 10.0}}):
        assert check_settings() == []


def test_manage_py_check_reports_errors():
    with (
        override_settings(REDSYNC={"URLS": []}),
        pytest.raises(SystemCheckError, match=r"redsync\.E002"),
    ):
        call_command("check", "--tag", "redsync")


def test_default_checks_do_not_ping_but_deploy_checks_do(redsync_settings, redis_nodes):
    for server in redis_nodes[:2]:
        server.kill()
    call_command("check", "--tag", "redsync")  # settings are valid: no error without pinging
    with pytest.raises(SystemCheckError, match=r"redsync\.E004") as caught:
        call_command("check", "--deploy", "--tag", "redsync")
    assert "Only 1 of 3 redsync nodes answered" in str(caught.value)


def test_deploy_check_passes_with_a_quorum(redsync_settings, redis_nodes):
    redis_nodes[0].kill()
    assert check_quorum_reachable() == []
    call_command("check", "--deploy", "--tag", "redsync")


def test_deploy_check_leaves_bad_settings_to_the_default_checks():
    with override_settings(REDSYNC={"URLS": []}):
        assert check_quorum_reachable() == []
