"""A local Redis Cluster of throwaway ``redis-server`` processes, for tests.

Built from the same ``RedisServer`` processes as the single servers (loopback only, nothing on
disk, each signalled by its own PID and killed with its parent).
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Any

import redis
import redis.cluster

from redsync_core._servers import HOST, RedisServer, _free_ports, _start_all, _stop_all

__all__ = ["LocalRedisCluster"]

CLUSTER_TIMEOUT = 20.0  # seconds a cluster gets to reach cluster_state:ok
CLUSTER_SLOTS = 16384


class LocalRedisCluster:
    """A local Redis Cluster of 3 masters (no replicas) on free loopback ports.

    Slots are split evenly with CLUSTER ADDSLOTSRANGE and the nodes introduced with CLUSTER MEET;
    ``start()`` returns once every node reports ``cluster_state:ok``. The cluster bus uses its
    own free port per node (``cluster-port``), so client ports above 55535 work too.
    """

    MASTERS = 3

    def __init__(self, *, binary: str | None = None, node_timeout: float = 5.0) -> None:
        ports = _free_ports(2 * self.MASTERS)
        self._ports, self._bus_ports = ports[: self.MASTERS], ports[self.MASTERS :]
        self._servers = [
            RedisServer(
                port=port,
                binary=binary,
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",  # relative to the server's private --dir
                    "--cluster-node-timeout",
                    str(round(node_timeout * 1000)),
                    "--cluster-port",
                    str(bus_port),
                ],
            )
            for port, bus_port in zip(self._ports, self._bus_ports, strict=True)
        ]

    def start(self, timeout: float = CLUSTER_TIMEOUT) -> None:
        """Start the 3 masters, assign all slots, join them and wait for ``cluster_state:ok``.

        ``timeout`` is in seconds. Raises RuntimeError (after stopping all) when the cluster
        does not form in time.
        """
        deadline = time.monotonic() + timeout
        _start_all(self._servers)
        try:
            self._form_cluster(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the 3 masters (in parallel); calling it again does nothing."""
        _stop_all(self._servers)

    @property
    def servers(self) -> list[RedisServer]:
        """The 3 master processes, for fault injection (a new list)."""
        return list(self._servers)

    @property
    def urls(self) -> list[str]:
        """The masters' URLs (``redis://127.0.0.1:PORT/0``)."""
        return [server.url for server in self._servers]

    @property
    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        """The masters as ``ClusterNode`` objects, for ``RedisCluster(startup_nodes=...)``."""
        return [
            redis.cluster.ClusterNode(HOST, port)  # type: ignore[no-untyped-call]
            for port in self._ports
        ]

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """Return a new cluster client (the caller closes it); ``kwargs`` go to RedisCluster.

        Defaults to ``socket_timeout=2`` seconds.
        """
        options: dict[str, Any] = {"socket_timeout": 2.0}
        options.update(kwargs)
        return redis.cluster.RedisCluster(host=HOST, port=self._ports[0], **options)

    def __enter__(self) -> LocalRedisCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LocalRedisCluster ports={self._ports}>"

    def _form_cluster(self, deadline: float) -> None:
        clients = [server.client() for server in self._servers]
        try:
            per_node = CLUSTER_SLOTS // len(clients)
            for i, client in enumerate(clients):
                # Distinct epochs up front, as `redis-cli --cluster create` does: no collisions.
                client.cluster("SET-CONFIG-EPOCH", i + 1)
                first = i * per_node
                last = CLUSTER_SLOTS - 1 if i == len(clients) - 1 else first + per_node - 1
                client.cluster("ADDSLOTSRANGE", first, last)
            # Every node meets every other one, so nobody waits for gossip to learn a peer.
            # The bus port must be given: MEET otherwise assumes port + 10000.
            for i, client in enumerate(clients):
                for port, bus_port in zip(
                    self._ports[i + 1 :], self._bus_ports[i + 1 :], strict=True
                ):
                    client.cluster("MEET", HOST, port, bus_port)
            while True:
                states = [_cluster_info(client) for client in clients]
                if all(
                    state.get("cluster_state") == "ok"
                    and int(state.get("cluster_known_nodes", 0)) == len(clients)
                    for state in states
                ):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self!r} did not reach cluster_state:ok in time; last CLUSTER INFO "
                        f"states: {[state.get('cluster_state') for state in states]}"
                    )
                time.sleep(0.05)
        finally:
            for client in clients:
                with contextlib.suppress(redis.RedisError):
                    client.close()


def _cluster_info(client: redis.Redis) -> dict[str, str]:
    """Return CLUSTER INFO as a dict of strings, whatever redis-py's response callback does."""
    reply = client.cluster("INFO")
    if isinstance(reply, dict):
        return {str(key): str(value) for key, value in reply.items()}
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}
