"""Client options are checked when the Redsync is built, not at the first lock."""

from __future__ import annotations

import pytest

from redsync_core import AsyncRedsync, ConfigurationError, Redsync
from redsync_core.testing import RedisServer


@pytest.mark.parametrize("cls", [Redsync, AsyncRedsync], ids=["sync", "async"])
def test_unknown_client_option_is_a_configuration_error(cls: type) -> None:
    with pytest.raises(ConfigurationError, match=r"client_options \['bogus'\]"):
        cls(["redis://127.0.0.1:1/0"], client_options={"bogus": 1})


def test_client_options_reach_the_clients(redis_servers: object) -> None:
    (server,) = redis_servers(1, password="pw-123")  # type: ignore[operator]
    assert isinstance(server, RedisServer)
    url = f"redis://127.0.0.1:{server.port}/0"
    with Redsync([url], client_options={"password": "pw-123"}) as rs:
        assert rs.ping().ok
        mutex = rs.new_mutex("opt")
        mutex.lock()
        assert mutex.unlock()
    with Redsync([url]) as rs:
        report = rs.ping()
        assert not report.ok
        assert "pw-123" not in repr(report)
