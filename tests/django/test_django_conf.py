"""``get_redsync()``: built lazily from ``settings.REDSYNC``, rebuilt on change and after fork."""

from __future__ import annotations

import os

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from redsync_core import Redsync
from redsync_core.testing import wait_child
from redsync_django import conf, get_redsync


def test_get_redsync_is_built_once_from_the_settings(redsync_settings):
    rs = get_redsync()
    assert isinstance(rs, Redsync)
    assert get_redsync() is rs
    assert rs.nodes == tuple(redsync_settings["URLS"])
    assert rs.key_prefix == "test:"
    assert rs.quorum == 2


def test_override_settings_rebuilds_it(redsync_settings, redis_servers):
    before = get_redsync()
    others = [server.url for server in redis_servers(3)]
    with override_settings(REDSYNC={"URLS": others}):
        inside = get_redsync()
        assert inside is not before
        assert inside.nodes == tuple(others)
        assert inside.key_prefix == ""
        assert inside.new_mutex("x").try_lock()  # talks to the new nodes
    after = get_redsync()
    assert after is not inside
    assert after.nodes == tuple(redsync_settings["URLS"])


def test_settings_fixture_rebuilds_it_too(settings, redsync_settings):
    before = get_redsync()
    settings.REDSYNC = {**redsync_settings, "KEY_PREFIX": "other:"}
    assert get_redsync() is not before
    assert get_redsync().key_prefix == "other:"


def test_options_are_adapter_defaults_under_settings(redsync_settings):
    with override_settings(REDSYNC={**redsync_settings, "OPTIONS": {"expiry": 5.0}}):
        mutex = get_redsync().new_mutex("x")
        assert mutex.options.expiry == 5.0
        assert mutex.options.auto_extend is True
        assert conf.get_config().busy_status == 409


def test_invalid_settings_raise_improperly_configured_naming_the_key():
    with (
        override_settings(REDSYNC={"URLS": "redis://127.0.0.1:1/0"}),
        pytest.raises(ImproperlyConfigured, match=r'settings.REDSYNC\["URLS"\]'),
    ):
        get_redsync()


def test_a_forked_child_builds_its_own(redsync_settings):
    parent = get_redsync()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report, then leave without running pytest's teardown
        try:
            child = get_redsync()
            ok = child is not parent and child is get_redsync() and child.new_mutex("f").try_lock()
            os.write(write, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write)
    status = wait_child(pid, timeout=60)
    assert os.read(read, 2) == b"ok"
    os.close(read)
    assert status == 0
    assert get_redsync() is parent
    assert parent.inspect("f").held  # the child's lock is on the same real nodes
