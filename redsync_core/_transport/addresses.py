"""Node specifications: validate URLs, build clients from them, and name nodes without secrets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from .._exceptions import ConfigurationError

__all__ = [
    "MEMORY_SCHEME",
    "SCHEMES",
    "client_address",
    "memory_name",
    "redact",
    "url_client_kwargs",
]

MEMORY_SCHEME = "memory"
SCHEMES = ("redis", "rediss", "unix", MEMORY_SCHEME)


def redact(url: str) -> str:
    """Return ``url`` without user name, password or query (safe for messages and logs).

    Works on malformed URLs too (a mistyped scheme still hides its credentials): everything
    between the scheme and the last ``@`` goes.
    """
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    rest = rest.split("?", 1)[0].rpartition("@")[2]
    return f"{head}://{rest}" if sep else rest


def memory_name(url: str) -> str | None:
    """Return NAME for a ``memory://NAME`` URL, None for other schemes."""
    parts = urlsplit(url)
    if parts.scheme != MEMORY_SCHEME:
        return None
    return unquote(parts.netloc + parts.path)


def check_url(url: object, index: int) -> str:
    """Return ``url`` if it is a node URL we accept.

    Raises:
        ConfigurationError: not a string, an unknown scheme, or an empty ``memory://`` name.
    """
    if not isinstance(url, str):
        raise ConfigurationError(
            f"Invalid node {index}: {type(url).__name__} is neither a URL string nor a Redis "
            "client (redis.Redis, redis.asyncio.Redis, RedisCluster, a Sentinel master_for(), "
            "or valkey-py's Valkey and ValkeyCluster)."
        )
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise ConfigurationError(f"Invalid node URL {redact(url)!r}: {exc}.") from None
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(
            f"Invalid node URL {redact(url)!r}: unknown scheme {parts.scheme!r}; expected one of "
            "redis://, rediss://, unix:// or memory://NAME."
        )
    if parts.scheme == MEMORY_SCHEME and not memory_name(url):
        raise ConfigurationError(
            f"Invalid node URL {url!r}: memory:// needs a name, e.g. memory://node1."
        )
    if parts.scheme == "unix" and not parts.path:
        raise ConfigurationError(
            f"Invalid node URL {redact(url)!r}: unix:// needs a socket path, e.g. "
            "unix:///run/redis.sock?db=0."
        )
    return url


def _no_setinfo() -> dict[str, Any]:
    import inspect

    from redis.connection import AbstractConnection

    if "driver_info" in inspect.signature(AbstractConnection.__init__).parameters:
        return {"driver_info": None}  # redis-py 7.1+
    return {"lib_name": None, "lib_version": None}


_NO_SETINFO = _no_setinfo()


def url_client_kwargs(options: Mapping[str, Any] | None, *, asyncio: bool) -> dict[str, Any]:
    """Return the keyword arguments for clients the library builds from URLs.

    Our defaults bound connect and sync reads (the fan-out deadline bounds waiting anyway), skip the
    CLIENT SETINFO handshake and redis-py's own retries (Redlock retries whole attempts).
    ``options`` (the user's client options) win over them.
    """
    from redis.backoff import NoBackoff

    if asyncio:
        from redis.asyncio.retry import Retry as AsyncRetry

        no_retry: Any = AsyncRetry(NoBackoff(), 0)
    else:
        from redis.retry import Retry

        no_retry = Retry(NoBackoff(), 0)

    kwargs: dict[str, Any] = {
        "socket_connect_timeout": 2.0,
        # The asyncio fan-out cancels at its deadline; a socket timeout there would only add
        # a timer task per command.
        "socket_timeout": None if asyncio else 5.0,
        "retry": no_retry,
        "protocol": 2,  # RESP2: no HELLO round trip when connecting
        **_NO_SETINFO,
    }
    kwargs.update(options or {})
    return kwargs


def client_address(client: Any) -> str:
    """Describe a redis-py client's server as ``redis://host:port/db`` (no credentials)."""
    pool = getattr(client, "connection_pool", None)
    kwargs: Mapping[str, Any] = getattr(pool, "connection_kwargs", None) or {}
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    service = getattr(pool, "service_name", None)
    if service:
        return f"sentinel://{service}"
    if "host" in kwargs:
        return f"redis://{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    nodes = getattr(client, "startup_nodes", None)
    if nodes:
        first = nodes[0] if isinstance(nodes, list) else next(iter(nodes.values()))
        return f"cluster://{getattr(first, 'host', '?')}:{getattr(first, 'port', '?')}"
    return type(client).__name__
