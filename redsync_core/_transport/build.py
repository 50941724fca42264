"""Turn the ``nodes`` argument (URLs or client objects) into sync or asyncio transport nodes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import RedisError

from .._exceptions import ConfigurationError
from .addresses import check_url, client_address, memory_name, redact, url_client_kwargs
from .aio import AsyncMemoryNode, AsyncNode, AsyncRedisNode
from .clients import kind_of
from .memory import memory_store
from .sync import ClusterNode, MemoryNode, RedisNode, SyncNode

__all__ = ["build_async_nodes", "build_sync_nodes", "check_nodes"]


def check_nodes(nodes: object) -> list[Any]:
    """Return the node list if it is a non-empty sequence.

    Raises:
        ConfigurationError: ``nodes`` is empty, a single string, or not a sequence.
    """
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
        raise ConfigurationError(
            f"Invalid nodes={type(nodes).__name__}: expected a list of URLs or Redis clients, "
            "e.g. ['redis://10.0.0.1:6379/0', 'redis://10.0.0.2:6379/0', 'redis://10.0.0.3:6379/0']."
        )
    if not nodes:
        raise ConfigurationError(
            "Invalid nodes=[]: expected at least one node (Redlock wants 3 or 5 independent masters)."
        )
    return list(nodes)


def _wrong_twin(index: int, node: object, wanted: str) -> ConfigurationError:
    return ConfigurationError(
        f"Invalid node {index}: {type(node).__module__}.{type(node).__name__} is not a {wanted} "
        "client; use AsyncRedsync with asyncio clients (redis.asyncio, valkey.asyncio) and "
        "Redsync with sync ones (redis.Redis, valkey.Valkey)."
    )


def _url_client(factory: Any, url: str, options: Mapping[str, Any] | None, *, asyncio: bool) -> Any:
    try:
        client = factory(url, **url_client_kwargs(options, asyncio=asyncio))
    except (ValueError, TypeError, RedisError) as exc:
        raise ConfigurationError(f"Invalid node URL {redact(url)!r}: {exc}.") from None
    pool = client.connection_pool
    try:  # redis-py checks connection options only when it connects: check them now
        pool.connection_class(**pool.connection_kwargs)
    except (ValueError, TypeError, RedisError, UnboundLocalError) as exc:
        # redis-py 5.0 hides "protocol must be an integer" behind an UnboundLocalError.
        reason = exc.__context__ if isinstance(exc, UnboundLocalError) else exc
        if not options:
            raise ConfigurationError(f"Invalid node URL {redact(url)!r}: {reason}.") from None
        raise ConfigurationError(
            f"Invalid client_options {sorted(options)}: {reason}; expected keyword arguments "
            "of redis.Redis (e.g. socket_timeout, password, ssl_ca_certs)."
        ) from None
    return client


def build_sync_nodes(
    nodes: object, client_options: Mapping[str, Any] | None = None
) -> list[SyncNode]:
    """Build sync transport nodes; clients built from URLs are owned (closed by ``close()``).

    Raises:
        ConfigurationError: a bad URL, an unsupported object, or an asyncio client.
    """
    built: list[SyncNode] = []
    for i, node in enumerate(check_nodes(nodes)):
        kind = kind_of(node)
        if kind == "sync-cluster":
            built.append(ClusterNode(i, node, client_address(node)))
        elif kind == "sync":
            built.append(RedisNode(i, node, client_address(node), owned=False))
        elif kind == "async":
            raise _wrong_twin(i, node, "sync")
        else:
            url = check_url(node, i)
            name = memory_name(url)
            if name is not None:
                built.append(MemoryNode(i, memory_store(name)))
            else:
                client = _url_client(redis.Redis.from_url, url, client_options, asyncio=False)
                built.append(RedisNode(i, client, redact(url), owned=True))
    return built


def build_async_nodes(
    nodes: object, client_options: Mapping[str, Any] | None = None
) -> list[AsyncNode]:
    """Build asyncio transport nodes; clients built from URLs are owned.

    Raises:
        ConfigurationError: a bad URL, an unsupported object, or a sync client.
    """
    built: list[AsyncNode] = []
    for i, node in enumerate(check_nodes(nodes)):
        kind = kind_of(node)
        if kind == "async":
            built.append(AsyncRedisNode(i, node, client_address(node), owned=False))
        elif kind in ("sync", "sync-cluster"):
            raise _wrong_twin(i, node, "asyncio")
        else:
            url = check_url(node, i)
            name = memory_name(url)
            if name is not None:
                built.append(AsyncMemoryNode(i, memory_store(name)))
            else:
                client = _url_client(
                    redis.asyncio.Redis.from_url, url, client_options, asyncio=True
                )
                built.append(AsyncRedisNode(i, client, redact(url), owned=True))
    return built
