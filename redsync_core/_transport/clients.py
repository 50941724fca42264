"""The client libraries whose clients are accepted as nodes: redis-py and its fork valkey-py.

valkey-py is redis-py renamed: ``Valkey``/``ValkeyCluster`` instead of ``Redis``/``RedisCluster``,
its own exception tree (``valkey.exceptions.NoScriptError`` is not redis-py's), and a few
renamed connection internals (``valkey_connect_func``, ``ClusterNode.valkey_connection``).
Everything the transport needs to know about a client's library is one ``Family`` here.

valkey is never imported by this module: a valkey client exists only once the application
imported valkey, so its family is built from ``sys.modules`` when it is there.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["REDIS", "Family", "family_of", "kind_of"]


@dataclass(frozen=True)
class Family:
    """What differs between redis-py and valkey-py, as the transport uses it."""

    name: str
    sync_client: type[Any]
    async_client: type[Any]
    sync_cluster: type[Any]
    async_cluster: type[Any]
    error: type[Exception]
    response_error: type[Exception]
    no_script_error: type[Exception]
    connection_error: type[Exception]
    no_permission_error: type[Exception]
    connect_hook: str
    """The connection attribute holding the function run after connecting (instead of
    ``on_connect``)."""
    cluster_connection: str
    """The attribute of a cluster's ``ClusterNode`` holding its standalone client."""

    def kind(self, node: object) -> str | None:
        """Classify a client: ``sync``, ``sync-cluster``, ``async``, or None if not ours."""
        if isinstance(node, self.sync_client):
            return "sync"
        if isinstance(node, (self.async_client, self.async_cluster)):
            return "async"
        if isinstance(node, self.sync_cluster):
            return "sync-cluster"
        return None


def _family(name: str, prefix: str) -> Family:
    errors = importlib.import_module(f"{name}.exceptions")
    return Family(
        name=name,
        sync_client=getattr(importlib.import_module(name), prefix),
        async_client=getattr(importlib.import_module(f"{name}.asyncio"), prefix),
        sync_cluster=getattr(importlib.import_module(f"{name}.cluster"), f"{prefix}Cluster"),
        async_cluster=getattr(
            importlib.import_module(f"{name}.asyncio.cluster"), f"{prefix}Cluster"
        ),
        error=getattr(errors, f"{prefix}Error"),
        response_error=errors.ResponseError,
        no_script_error=errors.NoScriptError,
        connection_error=errors.ConnectionError,
        no_permission_error=errors.NoPermissionError,
        connect_hook=f"{name}_connect_func",
        cluster_connection=f"{name}_connection",
    )


REDIS = _family("redis", "Redis")
_built: dict[str, Family] = {}


def _valkey_family() -> Family | None:
    """Return valkey-py's family if the application imported valkey, else None."""
    if "valkey" not in sys.modules:
        return None
    family = _built.get("valkey")
    if family is None:
        family = _built["valkey"] = _family("valkey", "Valkey")
    return family


def kind_of(node: object) -> str:
    """Classify a node: ``url``, ``sync``, ``sync-cluster``, ``async`` or ``other``."""
    if isinstance(node, str):
        return "url"
    valkey_family = _valkey_family()
    for family in (REDIS,) if valkey_family is None else (REDIS, valkey_family):
        kind = family.kind(node)
        if kind is not None:
            return kind
    return "other"


def family_of(obj: object) -> Family:
    """Return the family of a client, connection pool or connection (subclasses included)."""
    for cls in type(obj).__mro__:
        if cls.__module__.partition(".")[0] == "valkey":
            return _valkey_family() or REDIS
    return REDIS
