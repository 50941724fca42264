"""The ``flask redsync`` command group: ping the nodes, show and list locks, force-release them.

Registered by ``init_app``; every command works on the current app's core ``Redsync``
(``app.extensions["redsync"]``), so its nodes, key prefix and client options apply.
"""

from __future__ import annotations

import json
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from redsync_core import LockInfo, LockListing, NodeLock
from redsync_core import Redsync as CoreRedsync

__all__ = ["redsync_cli"]

redsync_cli = AppGroup("redsync", help="Check the app's Redlock nodes and manage its locks.")


def _core() -> CoreRedsync:
    redsync: CoreRedsync = current_app.extensions["redsync"]
    return redsync


@redsync_cli.command("ping")
@click.option(
    "--timeout", type=float, default=2.0, show_default=True, help="Seconds each node gets."
)
def ping(timeout: float) -> None:
    """Ping every node: latency, server version and whether a quorum answers.

    Exits 1 when fewer than a quorum of nodes answer.
    """
    report = _core().ping(timeout)
    for node in report.nodes:
        if node.ok:
            click.echo(
                f"node {node.index} {node.address}: ok, {node.latency_ms or 0.0:.1f} ms, "
                f"{node.server}"
            )
        else:
            click.echo(f"node {node.index} {node.address}: FAILED: {node.error}")
    verdict = "ok" if report.ok else "NOT REACHED: locks cannot be taken"
    click.echo(
        f"quorum: {report.reachable} of {len(report.nodes)} nodes answered, "
        f"{report.quorum} needed: {verdict}"
    )
    if not report.ok:
        raise click.exceptions.Exit(1)


def _node_line(node: NodeLock) -> str:
    if node.error is not None:
        return f"  node {node.index} {node.address}: ERROR: {node.error}"
    if node.holder is None:
        return f"  node {node.index} {node.address}: free"
    ttl = "no expiry" if node.remaining is None else f"{node.remaining:.1f} s left"
    return f"  node {node.index} {node.address}: held by {node.holder_digest}, {ttl}"


def _summary(info: LockInfo) -> str:
    if info.holder is None:
        return f"lock {info.name!r} (key {info.key!r}): not held by a quorum ({info.quorum} needed)"
    left = "" if info.remaining is None else f", about {info.remaining:.1f} s left"
    return f"lock {info.name!r} (key {info.key!r}): held by {info.holder_digest}{left}"


@redsync_cli.command("status")
@click.argument("name")
def status(name: str) -> None:
    """Show who holds the lock NAME on each node and for how long."""
    info = _core().inspect(name)
    click.echo(_summary(info))
    for node in info.nodes:
        click.echo(_node_line(node))


def _lock_line(info: LockInfo, total: int) -> str:
    holder = info.holder_label or "no holder"
    ttl = "" if info.remaining is None else f", {info.remaining:.1f} s left"
    return f"{info.name}: {info.verdict}, {holder}{ttl}, on {info.held_on} of {total} nodes"


def _listing_notes(listing: LockListing) -> None:
    if listing.skipped:
        click.echo(f"{listing.skipped} key(s) under the prefix are not locks (not shown)")
    for address, reason in listing.incomplete:
        click.echo(f"node {address}: not listed to the end ({reason}); the listing is partial")


_page_size = click.option(
    "--page-size",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Keys each node reads a call (SCAN COUNT).",
)
_timeout = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds the listing may take in all.",
)


@redsync_cli.command("ls")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@_page_size
@_timeout
def ls(pattern: str, as_json: bool, page_size: int, timeout: float) -> None:
    """List the locks whose names match the glob PATTERN (default '*', under the key prefix).

    Shows each lock's verdict, holder (a Celery task id or a fingerprint, never the value),
    TTL and nodes. Exits 1 when fewer than a quorum of nodes could be listed to the end.
    """
    redsync = _core()
    listing = redsync.list_locks(pattern, page_size=page_size, timeout=timeout)
    total = len(redsync.addresses)
    if as_json:
        click.echo(json.dumps(listing.as_dict(), indent=2))
    else:
        for info in listing:
            click.echo(_lock_line(info, total))
        click.echo(f"{len(listing)} lock(s) matching {pattern!r}")
        _listing_notes(listing)
    if total - len(listing.incomplete) < redsync.quorum:
        raise click.ClickException(
            f"fewer than {redsync.quorum} of {total} nodes were listed to the end"
        )


@redsync_cli.command("release")
@click.argument("name", required=False)
@click.option("--pattern", help="Release every lock whose name matches this glob instead.")
@click.option("--force", is_flag=True, help="Required: delete the lock whatever its holder.")
@click.option("--yes", is_flag=True, help="With --pattern: do not ask for confirmation.")
@_page_size
@_timeout
def release(
    name: str | None,
    pattern: str | None,
    force: bool,
    yes: bool,
    page_size: int,
    timeout: float,
) -> None:
    """Delete the lock NAME on every node, whoever holds it (for stuck locks).

    With --pattern, list the matching locks, ask (--yes skips; needed without a terminal) and
    delete each where it still holds the value listed. Holders are not told and may still be
    working: check with `status` or `ls` first.
    """
    if (name is None) == (pattern is None):
        raise click.UsageError("Give a lock NAME or --pattern PATTERN (one of them).")
    what = repr(name) if pattern is None else f"the locks matching {pattern!r}"
    if not force:
        raise click.UsageError(
            f"Refusing to release {what} without --force: it deletes locks whatever their "
            "holder, and a holder that is still working will not know. Check it with "
            "`flask redsync status NAME` or `flask redsync ls PATTERN` first."
        )
    redsync = _core()
    if pattern is not None:
        _release_pattern(redsync, pattern, yes, page_size, timeout)
        return
    assert name is not None
    deleted = redsync.force_release(name)
    if deleted == 0:
        click.echo(f"lock {name!r} was not held on any node; nothing deleted")
    else:
        click.echo(
            f"released lock {name!r}: deleted on {deleted} of {len(redsync.addresses)} nodes"
        )


def _release_pattern(
    redsync: CoreRedsync, pattern: str, yes: bool, page_size: int, timeout: float
) -> None:
    listing = redsync.list_locks(pattern, page_size=page_size, timeout=timeout)
    total = len(redsync.addresses)
    if not listing:
        click.echo(f"no lock matches {pattern!r}; nothing deleted")
        _listing_notes(listing)
        return
    for info in listing:
        click.echo(_lock_line(info, total))
    _listing_notes(listing)
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError(
                f"Refusing to delete {len(listing)} lock(s) without confirmation: stdin is not a "
                "terminal to ask on; add --yes to delete them."
            )
        if not click.confirm(f"Delete these {len(listing)} lock(s) on every node?"):
            click.echo("nothing deleted")
            return
    for info in listing:
        deleted = redsync.release_listed(info)
        click.echo(f"released lock {info.name!r}: deleted on {deleted} of {total} nodes")
