"""``manage.py redsync status NAME | ls [PATTERN] | release NAME --force | ping``: operator tools.

``release --pattern PATTERN --force`` lists the matching locks, asks (``--yes`` skips; without a
terminal it is required) and deletes each where it still holds the value listed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from redsync_core import ConfigurationError, LockInfo, LockListing, PingReport, Redsync

from ...conf import get_redsync


def _listing_options(parser: CommandParser) -> None:
    parser.add_argument(
        "--page-size",
        type=int,
        default=100,
        help="keys each node reads a call (SCAN COUNT; default 100)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds the listing may take in all (default 10)",
    )


class Command(BaseCommand):
    help = (
        "Inspect redsync locks and nodes: status NAME, ls [PATTERN], "
        "release (NAME | --pattern PATTERN) --force, ping."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        status = actions.add_parser("status", help="Who holds lock NAME, and for how long.")
        status.add_argument("name", help="lock name, without KEY_PREFIX")
        ls = actions.add_parser("ls", help="List the locks matching PATTERN (default '*').")
        ls.add_argument("pattern", nargs="?", default="*", help="a glob, without KEY_PREFIX")
        ls.add_argument("--json", action="store_true", help="print one JSON document")
        _listing_options(ls)
        release = actions.add_parser(
            "release", help="Delete lock NAME, or the locks matching --pattern, on every node."
        )
        release.add_argument("name", nargs="?", help="lock name, without KEY_PREFIX")
        release.add_argument("--pattern", help="a glob of lock names, without KEY_PREFIX")
        release.add_argument(
            "--force",
            action="store_true",
            help="required: the holder is not told and may still be working",
        )
        release.add_argument(
            "--yes", action="store_true", help="with --pattern: do not ask for confirmation"
        )
        _listing_options(release)
        actions.add_parser("ping", help="Each node's latency and version, and the quorum.")

    def handle(self, *args: Any, **options: Any) -> None:
        rs = get_redsync()
        if options["action"] == "status":
            self._status(rs.inspect(options["name"]))
        elif options["action"] == "ls":
            self._ls(rs, self._list(rs, options), options["pattern"], as_json=options["json"])
        elif options["action"] == "release" and options["pattern"] is not None:
            if options["name"] is not None:
                raise CommandError("Give a lock NAME or --pattern PATTERN, not both.")
            self._release_pattern(rs, options)
        elif options["action"] == "release":
            if options["name"] is None:
                raise CommandError("Give the lock NAME to release, or --pattern PATTERN.")
            self._release(rs, options["name"], options["force"])
        else:
            self._ping(rs.ping())

    def _status(self, info: LockInfo) -> None:
        if info.held:
            left = "" if info.remaining is None else f", free in about {info.remaining:.1f} s"
            state = f"held{left}"
        else:
            state = "free"
        self.stdout.write(f"{info.name} (key {info.key!r}): {state}; quorum {info.quorum}")
        for node in info.nodes:
            if node.error is not None:
                line = f"error: {node.error}"
            elif node.holder is None:
                line = "free"
            elif node.holder == info.holder:
                line = f"held by the quorum holder, ttl {node.remaining or 0:.1f} s"
            else:
                line = f"held by another value, ttl {node.remaining or 0:.1f} s"
            self.stdout.write(f"  node {node.index} {node.address}: {line}")

    def _lock_line(self, info: LockInfo, total: int) -> str:
        ttl = "" if info.remaining is None else f", {info.remaining:.1f} s left"
        return (
            f"{info.name}: {info.verdict}, {info.holder_label or 'no holder'}{ttl}, "
            f"on {info.held_on} of {total} nodes"
        )

    def _notes(self, rs: Redsync, listing: LockListing) -> None:
        if listing.skipped:
            self.stdout.write(
                f"{listing.skipped} key(s) under KEY_PREFIX are not locks (not shown)"
            )
        for address, reason in listing.incomplete:
            self.stdout.write(f"node {address}: not listed to the end ({reason}); partial listing")
        if len(rs.nodes) - len(listing.incomplete) < rs.quorum:
            raise CommandError(
                f"Fewer than {rs.quorum} of {len(rs.nodes)} nodes were listed to the end."
            )

    def _list(self, rs: Redsync, options: dict[str, Any]) -> LockListing:
        try:
            return rs.list_locks(
                options["pattern"], page_size=options["page_size"], timeout=options["timeout"]
            )
        except ConfigurationError as exc:  # a bad --page-size, --timeout or pattern
            raise CommandError(str(exc)) from exc

    def _ls(self, rs: Redsync, listing: LockListing, pattern: str, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(listing.as_dict(), indent=2))
            return
        for info in listing:
            self.stdout.write(self._lock_line(info, len(rs.nodes)))
        self.stdout.write(f"{len(listing)} lock(s) matching {pattern!r}")
        self._notes(rs, listing)

    def _release_pattern(self, rs: Redsync, options: dict[str, Any]) -> None:
        pattern = options["pattern"]
        if not options["force"]:
            raise CommandError(
                f"Refusing to release the locks matching {pattern!r} without --force: holders "
                "are not told and may still be working. List them with `manage.py redsync ls` "
                "first."
            )
        listing = self._list(rs, options)
        for info in listing:
            self.stdout.write(self._lock_line(info, len(rs.nodes)))
        self._notes(rs, listing)
        if not listing:
            self.stdout.write(f"No lock matches {pattern!r}; nothing deleted.")
            return
        if not options["yes"]:
            if not sys.stdin.isatty():
                raise CommandError(
                    f"Refusing to delete {len(listing)} lock(s) without confirmation: stdin is "
                    "not a terminal to ask on; add --yes to delete them."
                )
            answer = input(f"Delete these {len(listing)} lock(s) on every node? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                self.stdout.write("Nothing deleted.")
                return
        for info in listing:
            deleted = rs.release_listed(info)
            self.stdout.write(
                f"Released {info.name!r}: deleted on {deleted} of {len(rs.nodes)} nodes."
            )

    def _release(self, rs: Redsync, name: str, force: bool) -> None:
        if not force:
            raise CommandError(
                f"Refusing to release {name!r} without --force: the holder is not told and may "
                "still be working. Check `manage.py redsync status NAME` first."
            )
        deleted = rs.force_release(name)
        self.stdout.write(f"Released {name!r}: deleted on {deleted} of {len(rs.nodes)} nodes.")

    def _ping(self, report: PingReport) -> None:
        for node in report.nodes:
            if node.ok:
                line = f"ok, {node.latency_ms or 0:.1f} ms, {node.server}"
            else:
                line = f"unreachable: {node.error}"
            self.stdout.write(f"node {node.index} {node.address}: {line}")
        verdict = "ok" if report.ok else "NOT REACHABLE"
        summary = f"quorum {verdict}: {report.reachable} of {len(report.nodes)} nodes answered, {report.quorum} needed"
        if not report.ok:
            raise CommandError(summary)
        self.stdout.write(summary)
