"""A minimal RESP2 client on a raw TCP socket: the floor the "limit" lines measure, and the
referee connection of the contended scenario.

Standard library only (it also runs inside peers' virtualenvs). It knows just enough of the
protocol for SET, DEL, EVALSHA, SCRIPT LOAD and INFO: simple strings, errors, integers, bulk
strings and arrays. No retries, no pooling, no timeouts beyond the socket's.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

__all__ = ["RawConnection", "RespError", "encode", "parse_url"]

_CRLF = b"\r\n"
_RECV_BYTES = 65536


class RespError(Exception):
    """An error reply from the server (``-ERR ...``)."""


def parse_url(url: str) -> tuple[str, int]:
    """Return ``(host, port)`` of a ``redis://host:port/db`` URL."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def encode(*args: str | bytes | int) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


Reply = bytes | int | None | list["Reply"] | RespError


class RawConnection:
    """One blocking socket to one server; ``send`` then ``read`` one reply at a time."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        host, port = parse_url(url)
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def send(self, payload: bytes) -> None:
        self.sock.sendall(payload)

    def call(self, *args: str | bytes | int) -> Reply:
        """Send one command and return its reply (an error reply is returned, not raised)."""
        self.send(encode(*args))
        return self.read()

    def read(self) -> Reply:
        """Read one reply; error replies come back as ``RespError`` values."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exact(size)
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.read() for _ in range(count)]
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        raise ValueError(f"not a RESP reply: {line[:40]!r}")

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(_CRLF)
            if end >= 0:
                line, self._buf = self._buf[:end], self._buf[end + 2 :]
                return line
            self._fill()

    def _exact(self, size: int) -> bytes:
        while len(self._buf) < size + 2:
            self._fill()
        data, self._buf = self._buf[:size], self._buf[size + 2 :]
        return data

    def _fill(self) -> None:
        chunk = self.sock.recv(_RECV_BYTES)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self._buf += chunk

    def close(self) -> None:
        self.sock.close()
