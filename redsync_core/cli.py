"""The ``redsync`` command: a distributed ``flock -n`` for cron, lock inspection, and the demo.

An adapter of the core like the framework packages: it parses arguments, calls the public
``redsync_core`` API and prints. Every Redlock decision (quorum, validity, retries, extension)
stays in the core. ``redsync demo`` lives in ``redsync_core._cli.demo``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import NoReturn

from . import __version__
from ._cli.common import (
    EXIT_BUSY,
    EXIT_CANNOT_EXECUTE,
    EXIT_FREE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SIGNAL_BASE,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    PROG,
    UsageError,
    say,
)
from ._exceptions import (
    ConfigurationError,
    LockLost,
    LockNotAcquired,
    LockTaken,
    LockTimeout,
    QuorumUnreachable,
)
from ._sync import Mutex, Redsync

__all__ = ["main"]

URLS_ENV = "REDSYNC_URLS"
KEY_PREFIX_ENV = "REDSYNC_KEY_PREFIX"
RUN_EXPIRY = 30.0  # seconds; the adapters' default: short enough to free a dead host's lock soon
KILL_GRACE = 10.0  # seconds between SIGTERM and SIGKILL for --kill-on-lost
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

EXIT_CODES = f"""\
exit status:
  {EXIT_OK:<3}  success; `run` passes the command's own status through
  {EXIT_FREE:<3}  `status`: the lock is free; `demo`: a safety violation was observed
  {EXIT_USAGE:<3}  bad usage: unknown option, missing command or nodes, invalid value
  {EXIT_UNAVAILABLE:<3}  no quorum of nodes answered (`ping`, `status`, `release`, `run`)
  {EXIT_BUSY:<3}  `run`: the lock is held elsewhere (EX_TEMPFAIL; see --busy-exit-code)
  {EXIT_CANNOT_EXECUTE:<3}  `run`: the command could not be executed
  {EXIT_NOT_FOUND:<3}  `run`: the command was not found
  128+N  `run`: the command was killed by signal N (143 for SIGTERM)"""

NODES_HELP = (
    f"nodes come from repeated --url options or ${URLS_ENV} (comma separated), e.g. "
    f"{URLS_ENV}=redis://10.0.0.1:6379/0,redis://10.0.0.2:6379/0,redis://10.0.0.3:6379/0"
)


class _Interrupted(Exception):
    """A forwarded signal arrived before the command started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- argument types -----------------------------------------------------------------------


def _seconds(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _wait_seconds(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, got {text!r}")
    return value


def _exit_code(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"expected an exit status 0-255, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


# --- the parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Return the ``redsync`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description="Redlock distributed locks on N independent Redis masters. " + NODES_HELP,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_node_options(parser, top=True)
    sub = parser.add_subparsers(dest="action", metavar="COMMAND", required=True)

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(
            name,
            help=summary,
            description=description,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return cmd

    run = command(
        "run",
        "run a command while holding a lock (a distributed flock -n for cron)",
        "Take the lock NAME on a quorum of nodes, run CMD while keeping the lock alive "
        "(auto-extended every expiry/3), release it when CMD ends and exit with CMD's status. "
        "SIGINT, SIGTERM and SIGHUP are forwarded to CMD's process group. When the lock is "
        f"busy, print one line to stderr and exit {EXIT_BUSY} without running CMD. " + NODES_HELP,
    )
    run.usage = f"{PROG} run NAME [options] -- CMD [ARGS...]"
    run.add_argument("name", metavar="NAME", help="the lock's name (the key prefix is added)")
    run.add_argument(
        "--expiry",
        type=_seconds,
        default=RUN_EXPIRY,
        metavar="S",
        help="lock TTL in seconds, kept alive while CMD runs; it bounds how long the lock "
        f"outlives a crashed host (default {RUN_EXPIRY:g})",
    )
    run.add_argument(
        "--wait",
        type=_wait_seconds,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for a busy lock (default 0: one attempt, like flock -n)",
    )
    run.add_argument(
        "--busy-exit-code",
        type=_exit_code,
        default=EXIT_BUSY,
        metavar="N",
        help=f"exit status when the lock is busy (default {EXIT_BUSY}; 0 makes a skip silent "
        "for cron)",
    )
    run.add_argument(
        "--kill-on-lost",
        action="store_true",
        help="terminate CMD (SIGTERM, SIGKILL after "
        f"{KILL_GRACE:g} s) if the lock is lost while it runs",
    )
    _add_node_options(run)

    status = command(
        "status",
        "show who holds a lock on each node and the quorum verdict",
        f"Read the lock NAME on every node. Exit {EXIT_OK} when a holder has a quorum, "
        f"{EXIT_FREE} when the lock is free, {EXIT_UNAVAILABLE} when too few nodes answered "
        "to tell. Holders are shown as a fingerprint of their lock value, never the value. "
        + NODES_HELP,
    )
    status.add_argument("name", metavar="NAME")
    _add_node_options(status)

    release = command(
        "release",
        "delete a stuck lock on every node (needs --force)",
        "Delete the key of lock NAME on every node, whoever holds it. The holder is not told "
        "and may still be working: check `redsync status NAME` first. " + NODES_HELP,
    )
    release.add_argument("name", metavar="NAME")
    release.add_argument("--force", action="store_true", help="really delete it")
    _add_node_options(release)

    ping = command(
        "ping",
        "check every node: reachable, latency, server version, quorum",
        f"Ask every node for its version. Exit {EXIT_UNAVAILABLE} when fewer than a quorum "
        "answer. " + NODES_HELP,
    )
    ping.add_argument(
        "--timeout", type=_seconds, default=2.0, metavar="S", help="per node (default 2)"
    )
    _add_node_options(ping)

    from ._cli import demo

    demo.add_arguments(
        command(
            "demo",
            "show Redlock at work on throwaway local nodes, with faults injected",
            demo.DESCRIPTION,
        ),
        seconds=_seconds,
        count=_positive_int,
    )
    return parser


def _add_node_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # Accepted before and after the command; the two spellings are merged by _node_settings.
    suffix = "_top" if top else ""
    parser.add_argument(
        "--url",
        action="append",
        default=[],
        dest="urls" + suffix,
        metavar="URL",
        help=f"a Redis master (repeat for each node; default ${URLS_ENV})",
    )
    parser.add_argument(
        "--key-prefix",
        default=None,
        dest="key_prefix" + suffix,
        metavar="P",
        help=f"prepended to lock names to form the Redis key (default ${KEY_PREFIX_ENV} or '')",
    )


# --- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``redsync`` command with ``argv`` (default ``sys.argv[1:]``); return the status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command_line: list[str] = []
    if "--" in args_list:
        at = args_list.index("--")
        args_list, command_line = args_list[:at], args_list[at + 1 :]
    parser = build_parser()
    args = parser.parse_args(args_list)
    logging.basicConfig(format=f"{PROG}: %(levelname)s: %(message)s", level=logging.WARNING)
    try:
        if args.action == "run":
            return _run(args, command_line)
        if command_line:
            raise UsageError(f"unexpected arguments after --: {' '.join(command_line)}")
        if args.action == "demo":
            from ._cli import demo

            return demo.main(args)
        # The per-node lines below report node errors; the core's warnings would repeat them.
        logging.getLogger("redsync").setLevel(logging.ERROR)
        with _redsync(args) as rs:
            if args.action == "status":
                return _status(rs, args.name)
            if args.action == "release":
                return _release(rs, args.name, force=args.force)
            return _ping(rs, args.timeout)
    except (UsageError, ConfigurationError) as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_SIGNAL_BASE + signal.SIGINT


def _redsync(args: argparse.Namespace) -> Redsync:
    """Build the Redsync from --url / $REDSYNC_URLS and --key-prefix / $REDSYNC_KEY_PREFIX.

    Raises:
        UsageError: no nodes were given.
        ConfigurationError: a node URL is invalid.
    """
    urls = [*args.urls_top, *args.urls]
    if not urls:
        urls = [url.strip() for url in os.environ.get(URLS_ENV, "").split(",") if url.strip()]
    if not urls:
        raise UsageError(f"no nodes: give --url URL (once per node) or set ${URLS_ENV}")
    prefix = args.key_prefix if args.key_prefix is not None else args.key_prefix_top
    if prefix is None:
        prefix = os.environ.get(KEY_PREFIX_ENV, "")
    return Redsync(urls, key_prefix=prefix)


def _fingerprint(value: str) -> str:
    """Name a holder without showing its lock value (which would let anyone unlock it)."""
    return hashlib.sha256(value.encode()).hexdigest()[:8]


def _in_seconds(seconds: float | None) -> str:
    return "no expiry" if seconds is None else f"{seconds:.3g} s"


# --- run ----------------------------------------------------------------------------------


class _Child:
    """The wrapped command: started once, signalled as a process group."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.starting = False
        self.pending: int | None = None  # a signal that arrived while the child was starting

    def start(self, command: list[str]) -> subprocess.Popen[bytes]:
        """Start ``command`` in its own process group (so a terminal's Ctrl-C reaches it once,
        through us). Raises OSError when it cannot be executed."""
        self.starting = True
        try:
            if sys.version_info >= (3, 11):
                self.proc = subprocess.Popen(command, process_group=0)
            else:  # pragma: no cover - 3.10 has no process_group
                self.proc = subprocess.Popen(command, start_new_session=True)
        finally:
            self.starting = False
        if self.pending is not None:
            self.signal(self.pending)
        return self.proc

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the command's process group, if it is still there."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)

    def forward(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: forward to the command; before it starts, stop taking the lock."""
        if self.proc is not None:
            self.signal(signum)
        elif self.starting:
            self.pending = signum
        else:
            raise _Interrupted(signum)

    def terminate(self) -> None:
        """SIGTERM the command's group, then SIGKILL it after a grace period (another thread)."""
        self.signal(signal.SIGTERM)
        timer = threading.Timer(KILL_GRACE, self._kill_if_running)
        timer.daemon = True
        timer.start()

    def _kill_if_running(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)


def _run(args: argparse.Namespace, command: list[str]) -> int:
    if not command:
        raise UsageError(
            f"no command to run: put it after --, e.g. {PROG} run {args.name} -- backup.sh"
        )
    name: str = args.name
    child = _Child()

    def on_lost(mutex: Mutex) -> None:  # called from the core's auto-extension thread
        consequence = (
            "terminating the command (--kill-on-lost)"
            if args.kill_on_lost
            else "the command keeps running unprotected (use --kill-on-lost to stop it)"
        )
        say(
            f"ERROR: lost lock {name!r} while the command ran: another holder may now run "
            f"it too; {consequence}"
        )
        if args.kill_on_lost:
            child.terminate()

    status: list[int] = []

    def run_child() -> None:
        try:
            proc = child.start(command)
        except FileNotFoundError:
            say(f"error: command not found: {command[0]}")
            status.append(EXIT_NOT_FOUND)
            return
        except OSError as exc:
            say(f"error: cannot execute {command[0]}: {exc.strerror or exc}")
            status.append(EXIT_CANNOT_EXECUTE)
            return
        code = proc.wait()
        status.append(EXIT_SIGNAL_BASE - code if code < 0 else code)

    previous = {signum: signal.getsignal(signum) for signum in FORWARDED_SIGNALS}
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, child.forward)
    try:
        with _redsync(args) as rs:
            locked: Callable[[Callable[[], None]], Callable[[], None]] = rs.locked(
                lambda: name,  # a callable, so that braces in NAME are not a template
                wait=args.wait,
                expiry=args.expiry,
                auto_extend=True,
                on_lost=on_lost,
            )
            locked(run_child)()
    except LockLost:
        pass  # reported by on_lost as it happened; the command's status still counts
    except (LockTaken, LockTimeout) as exc:
        say(f"lock {name!r} is busy: held by another run; {_free_when(exc, args.wait)}")
        return int(args.busy_exit_code)
    except QuorumUnreachable as exc:
        say(f"error: {exc}")
        return EXIT_UNAVAILABLE
    except LockNotAcquired as exc:
        say(f"error: {exc}")
        return EXIT_BUSY
    except _Interrupted as exc:
        return EXIT_SIGNAL_BASE + exc.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status[0] if status else EXIT_OK


def _free_when(exc: LockNotAcquired, waited: float) -> str:
    after = f"still busy after waiting {waited:g} s; " if waited > 0 else ""
    if exc.retry_after is None:
        return after + "when it will be free is unknown"
    return after + f"it may be free in about {exc.retry_after:.3g} s"


# --- status, release, ping ----------------------------------------------------------------


def _status(rs: Redsync, name: str) -> int:
    info = rs.inspect(name)
    total = len(info.nodes)
    print(f"lock {name!r} (key {info.key!r}) on {total} nodes, quorum {info.quorum}")
    width = max(len(node.address) for node in info.nodes)
    counts: dict[str, int] = {}
    for node in info.nodes:
        where = f"  node {node.index}  {node.address:<{width}}  "
        if node.error is not None:
            print(where + f"error: {node.error}")
        elif node.holder is None:
            print(where + "free")
        else:
            counts[node.holder] = counts.get(node.holder, 0) + 1
            print(where + f"held by {_fingerprint(node.holder)}, ttl {_in_seconds(node.remaining)}")
    answered = sum(1 for node in info.nodes if node.error is None)
    errors = total - answered
    if info.holder is not None:
        print(
            f"verdict: HELD by {_fingerprint(info.holder)} on {counts[info.holder]} of {total} "
            f"nodes (quorum {info.quorum}); a quorum keeps it for {_in_seconds(info.remaining)}"
        )
        return EXIT_OK
    # Free only if no holder could reach a quorum even with every unanswered node on its side.
    if max(counts.values(), default=0) + errors >= info.quorum:
        print(
            f"verdict: UNKNOWN: {answered} of {total} nodes answered; the {errors} that did not "
            f"could complete a quorum of {info.quorum}"
        )
        return EXIT_UNAVAILABLE
    leftovers = sum(counts.values())
    extra = f"; {leftovers} node(s) hold keys without a quorum" if leftovers else ""
    print(f"verdict: FREE: no holder has a quorum of {info.quorum}{extra}")
    return EXIT_FREE


def _release(rs: Redsync, name: str, *, force: bool) -> int:
    if not force:
        raise UsageError(
            f"refusing to release {name!r} without --force: its holder is not told and may "
            f"still be working (check `{PROG} status {name}` first)"
        )
    info = rs.inspect(name)
    deleted = rs.force_release(name)
    total = len(info.nodes)
    holder = info.holder
    was = "free" if holder is None else f"held by {_fingerprint(holder)}"
    print(
        f"released lock {name!r} (key {info.key!r}, was {was}): deleted on {deleted} of {total} nodes"
    )
    failed = [node for node in info.nodes if node.error is not None]
    for node in failed:
        print(
            f"  node {node.index}  {node.address}: not reached ({node.error}); a key there "
            "expires on its own"
        )
    if holder is not None:
        print(f"the holder {_fingerprint(holder)} was not told and may still be working")
    if total - len(failed) < rs.quorum:
        say(f"error: only {total - len(failed)} of {total} nodes answered, {rs.quorum} needed")
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _ping(rs: Redsync, timeout: float) -> int:
    report = rs.ping(timeout=timeout)
    width = max(len(node.address) for node in report.nodes)
    for node in report.nodes:
        where = f"node {node.index}  {node.address:<{width}}  "
        if node.ok:
            latency = "?" if node.latency_ms is None else f"{node.latency_ms:.2f} ms"
            print(where + f"ok    {latency:>9}  redis {node.version or '?'}")
        else:
            print(where + f"DOWN  {node.error or 'no reply'}")
    total = len(report.nodes)
    verdict = "ok" if report.ok else "NO QUORUM: locks cannot be taken"
    print(
        f"quorum: {report.reachable} of {total} nodes reachable, {report.quorum} needed: {verdict}"
    )
    return EXIT_OK if report.ok else EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
