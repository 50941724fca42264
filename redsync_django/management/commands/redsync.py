"""``manage.py redsync status NAME | release NAME --force | ping``: operator tools."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from redsync_core import LockInfo, PingReport, Redsync

from ...conf import get_redsync


class Command(BaseCommand):
    help = "Inspect redsync locks and nodes: status NAME, release NAME --force, ping."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        status = actions.add_parser("status", help="Who holds lock NAME, and for how long.")
        status.add_argument("name", help="lock name, without KEY_PREFIX")
        release = actions.add_parser("release", help="Delete lock NAME on every node.")
        release.add_argument("name", help="lock name, without KEY_PREFIX")
        release.add_argument(
            "--force",
            action="store_true",
            help="required: the holder is not told and may still be working",
        )
        actions.add_parser("ping", help="Each node's latency and version, and the quorum.")

    def handle(self, *args: Any, **options: Any) -> None:
        rs = get_redsync()
        if options["action"] == "status":
            self._status(rs.inspect(options["name"]))
        elif options["action"] == "release":
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
                line = f"ok, {node.latency_ms or 0:.1f} ms, redis {node.version}"
            else:
                line = f"unreachable: {node.error}"
            self.stdout.write(f"node {node.index} {node.address}: {line}")
        verdict = "ok" if report.ok else "NOT REACHABLE"
        summary = f"quorum {verdict}: {report.reachable} of {len(report.nodes)} nodes answered, {report.quorum} needed"
        if not report.ok:
            raise CommandError(summary)
        self.stdout.write(summary)
