"""The ``redsync`` command: a distributed ``flock -n`` for cron, lock inspection, and the demo.

An adapter of the core like the framework packages: it parses arguments, calls the
``redsync_core`` API (public names only) and prints. Every Redlock decision (quorum, validity,
retries, extension) stays in the core. ``redsync demo`` lives in ``redsync_core._cli.demo``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Sequence
from typing import NoReturn

from redsync_core import ConfigurationError, Redsync

from . import __version__
from ._cli import admin, demo
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
from ._cli.run import KILL_GRACE, run_command
from .adapters import ADAPTER_DEFAULTS, check_limit

__all__ = ["main"]

URLS_ENV = "REDSYNC_URLS"
KEY_PREFIX_ENV = "REDSYNC_KEY_PREFIX"
RUN_EXPIRY: float = ADAPTER_DEFAULTS["expiry"]  # seconds, as every adapter

EXIT_CODES = f"""\
exit status:
  {EXIT_OK:<3}  success; `run` passes the command's own status through
  {EXIT_FREE:<3}  `status`: the lock is free; `demo`: a safety violation was observed
  {EXIT_USAGE:<3}  bad usage: unknown option, missing command or nodes, invalid value
  {EXIT_UNAVAILABLE:<3}  no quorum of nodes answered (`ping`, `status`, `ls`, `release`, `run`)
  {EXIT_BUSY:<3}  `run`: the lock (with --limit, every permit) is held elsewhere
       (EX_TEMPFAIL; see --busy-exit-code)
  {EXIT_CANNOT_EXECUTE:<3}  `run`: the command could not be executed
  {EXIT_NOT_FOUND:<3}  `run`: the command was not found
  128+N  `run`: the command was killed by signal N (143: SIGTERM), or `run` / `demo`
         was interrupted by signal N before the command started"""

NODES_HELP = (
    f"Nodes come from repeated --url options or ${URLS_ENV} (comma separated), e.g. "
    f"{URLS_ENV}=redis://10.0.0.1:6379/0,redis://10.0.0.2:6379/0,redis://10.0.0.3:6379/0"
)


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


def _limit(text: str) -> int:
    value: object = text  # check_limit names it as given unless it is a whole number
    with contextlib.suppress(ValueError):
        value = int(text)
    try:
        return check_limit(value)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
        description=_paragraph(
            "Redlock distributed locks on N independent Redis masters. " + NODES_HELP
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_node_options(parser, top=True)
    sub = parser.add_subparsers(dest="action", metavar="COMMAND", required=True)

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=summary,
            description=_paragraph(description),
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    run = command(
        "run",
        "run a command while holding a lock (a distributed flock -n for cron)",
        "Take the lock NAME on a quorum of nodes, run CMD while keeping the lock alive "
        "(auto-extended every expiry/3), release it when CMD ends and exit with CMD's status. "
        "SIGINT, SIGTERM and SIGHUP are forwarded to CMD's process group. When the lock is "
        f"busy, print one line to stderr and exit {EXIT_BUSY} without running CMD. With "
        "--limit N, up to N commands hold NAME at once (a distributed sem), each with a permit "
        "of its own. " + NODES_HELP,
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
        "--limit",
        type=_limit,
        default=None,
        metavar="N",
        help="let up to N commands run at once under NAME, each holding one of N permits "
        "(keys NAME:0 ... NAME:N-1), busy when all are held; give every run of NAME the same "
        "N (default: one at a time, key NAME)",
    )
    run.add_argument(
        "--busy-exit-code",
        type=_exit_code,
        default=EXIT_BUSY,
        metavar="N",
        help=f"exit status when the lock is busy (default {EXIT_BUSY}; 0 lets cron count a "
        "skipped run as a success)",
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

    ls = command(
        "ls",
        "list the locks under the key prefix: verdict, holder, TTL, nodes",
        "List the locks whose names match the glob PATTERN (default '*'; the key prefix is "
        "added) by SCANning every node at once, a page at a time, within --timeout seconds. "
        "Holders are shown as the task id of a Celery task or a fingerprint of the lock "
        "value, never the value. Keys under the prefix that are not locks are counted, not "
        f"shown. Exit {EXIT_UNAVAILABLE} when fewer than a quorum of nodes could be listed to "
        "the end. " + NODES_HELP,
    )
    ls.add_argument("pattern", metavar="PATTERN", nargs="?", default="*")
    ls.add_argument("--json", action="store_true", help="print one JSON document")
    _add_listing_options(ls)
    _add_node_options(ls)

    release = command(
        "release",
        "delete stuck locks on every node (needs --force)",
        "Delete the key of lock NAME on every node, whoever holds it; or, with --pattern, "
        "list the locks matching PATTERN, ask for confirmation (--yes skips it; without a "
        "terminal --yes is required) and delete each where it still holds the value listed. "
        "Holders are not told and may still be working: check `redsync status NAME` or "
        "`redsync ls` first. " + NODES_HELP,
    )
    release.usage = f"{PROG} release (NAME | --pattern PATTERN) --force [--yes] [options]"
    release.add_argument("name", metavar="NAME", nargs="?")
    release.add_argument(
        "--pattern", metavar="PATTERN", help="release every lock whose name matches this glob"
    )
    release.add_argument("--force", action="store_true", help="really delete")
    release.add_argument(
        "--yes", action="store_true", help="with --pattern: do not ask for confirmation"
    )
    _add_listing_options(release)
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


def _paragraph(text: str) -> str:
    return textwrap.fill(text, width=79, break_long_words=False, break_on_hyphens=False)


def _add_listing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--page-size",
        type=_positive_int,
        default=admin.PAGE_SIZE,
        metavar="N",
        help=f"keys each node reads a call (SCAN COUNT; default {admin.PAGE_SIZE})",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=admin.LIST_TIMEOUT,
        metavar="S",
        help=f"seconds the listing may take in all (default {admin.LIST_TIMEOUT:g})",
    )


def _add_node_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # Accepted before and after the command; the two spellings are merged by _redsync.
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
            if not command_line:
                raise UsageError(
                    f"no command to run: put it after --, e.g. {PROG} run {args.name} -- job.sh"
                )
            with _redsync(args) as rs:
                return run_command(
                    rs,
                    args.name,
                    command_line,
                    expiry=args.expiry,
                    wait=args.wait,
                    busy_exit_code=args.busy_exit_code,
                    kill_on_lost=args.kill_on_lost,
                    limit=args.limit,
                )
        if command_line:
            raise UsageError(f"unexpected arguments after --: {' '.join(command_line)}")
        if args.action == "demo":
            return demo.main(args)
        # The per-node lines report node errors; the core's warnings would only repeat them.
        logging.getLogger("redsync").setLevel(logging.ERROR)
        with _redsync(args) as rs:
            if args.action == "status":
                return admin.status(rs, args.name)
            if args.action == "ls":
                return admin.ls(
                    rs,
                    args.pattern,
                    as_json=args.json,
                    page_size=args.page_size,
                    timeout=args.timeout,
                )
            if args.action == "release" and args.pattern is not None:
                if args.name is not None:
                    raise UsageError("give a lock NAME or --pattern PATTERN, not both")
                return admin.release_pattern(
                    rs,
                    args.pattern,
                    force=args.force,
                    yes=args.yes,
                    page_size=args.page_size,
                    timeout=args.timeout,
                )
            if args.action == "release":
                if args.name is None:
                    raise UsageError("give the lock NAME to release, or --pattern PATTERN")
                return admin.release(rs, args.name, force=args.force)
            return admin.ping(rs, args.timeout)
    except (UsageError, ConfigurationError) as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_SIGNAL_BASE + signal.SIGINT
    except BrokenPipeError:  # `redsync ... | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_SIGNAL_BASE + signal.SIGPIPE


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


if __name__ == "__main__":
    sys.exit(main())
