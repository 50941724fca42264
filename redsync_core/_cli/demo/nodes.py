"""The demo's lock nodes and referee: redis-server processes on loopback, or memory:// names.

The processes come from ``redsync_core._servers`` (each stopped by its own PID, and killed by
the kernel if the demo itself is killed); faults are injected into them here.
"""

from __future__ import annotations

import secrets

from redsync_core._servers import RedisServer, RedisServerGroup

from .schedule import Fault

__all__ = ["Nodes"]


class Nodes:
    """The lock nodes and the referee: redis-server processes, or memory:// names.

    ``states`` holds one word per lock node for the progress lines (up, down, empty, paused).
    """

    def __init__(self, nodes: int, *, memory: bool) -> None:
        self.memory = memory
        self.states = ["up"] * nodes
        self._servers: list[RedisServer] = []
        self._referee: RedisServer | None = None
        self._group: RedisServerGroup | None = None
        self.urls: tuple[str, ...] = ()
        self.referee_url: str | None = None
        if memory:
            run = secrets.token_hex(4)  # memory nodes are shared by name within a process
            self.urls = tuple(f"memory://redsync-demo-{run}-{i}" for i in range(nodes))

    def start(self) -> None:
        """Start the redis-server processes (in parallel); nothing for memory nodes.

        Raises RuntimeError when a server cannot start (none found, too old, or it failed).
        """
        if self.memory:
            return
        self._group = RedisServerGroup(len(self.states) + 1)
        self._group.start()
        *self._servers, self._referee = self._group.servers
        self.urls = tuple(server.url for server in self._servers)
        self.referee_url = self._referee.url

    def stop(self) -> None:
        """Stop every process started (paused ones are resumed first); safe to repeat."""
        if self._group is not None:
            self._group.stop()

    def apply(self, fault: Fault) -> None:
        """Inject ``fault`` into the redis-server processes."""
        for i in fault.nodes:
            server = self._servers[i]
            if fault.action == "kill":
                server.kill()
                self.states[i] = "down"
            elif fault.action == "restart":
                server.restart()
                self.states[i] = "empty"
            elif fault.action == "pause":
                server.pause()
                self.states[i] = "paused"
            else:
                server.resume()
                self.states[i] = "up"

    def where(self) -> str:
        """Say where the redis-server processes listen."""
        port = self._referee.port if self._referee is not None else "-"
        referee = f"the counter on a separate referee redis-server on port {port}"
        if not self._servers:
            return referee
        ports = ", ".join(str(server.port) for server in self._servers)
        return f"lock nodes n0-n{len(self._servers) - 1} on 127.0.0.1 ports {ports}; {referee}"
