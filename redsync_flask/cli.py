"""The ``flask redsync`` command group: ping the nodes, show a lock, force-release it.

Registered by ``init_app``; every command works on the current app's core ``Redsync``
(``app.extensions["redsync"]``), so its nodes, key prefix and client options apply.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from redsync_core import LockInfo, NodeLock
from redsync_core import Redsync as CoreRedsync

__all__ = ["redsync_cli"]

redsync_cli = AppGroup("redsync", help="Check the app's Redlock nodes and manage its locks.")


def _core() -> CoreRedsync:
    redsync: CoreRedsync = current_app.extensions["redsync"]
    return redsync


def _holder(value: str) -> str:
    """Show enough of a lock value to tell holders apart, not enough to impersonate one."""
    return f"{value[:6]}…"


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
                f"redis {node.version}"
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
    return f"  node {node.index} {node.address}: held by {_holder(node.holder)}, {ttl}"


def _summary(info: LockInfo) -> str:
    if info.holder is None:
        return f"lock {info.name!r} (key {info.key!r}): not held by a quorum ({info.quorum} needed)"
    left = "" if info.remaining is None else f", about {info.remaining:.1f} s left"
    return f"lock {info.name!r} (key {info.key!r}): held by {_holder(info.holder)}{left}"


@redsync_cli.command("status")
@click.argument("name")
def status(name: str) -> None:
    """Show who holds the lock NAME on each node and for how long."""
    info = _core().inspect(name)
    click.echo(_summary(info))
    for node in info.nodes:
        click.echo(_node_line(node))


@redsync_cli.command("release")
@click.argument("name")
@click.option("--force", is_flag=True, help="Required: delete the lock whatever its holder.")
def release(name: str, force: bool) -> None:
    """Delete the lock NAME on every node, whoever holds it (for stuck locks).

    The holder is not told and may still be working: check with `status` first.
    """
    if not force:
        raise click.UsageError(
            f"Refusing to release {name!r} without --force: it deletes the lock whatever its "
            "holder, and a holder that is still working will not know. Check it with "
            f"`flask redsync status {name}` first."
        )
    redsync = _core()
    deleted = redsync.force_release(name)
    if deleted == 0:
        click.echo(f"lock {name!r} was not held on any node; nothing deleted")
    else:
        click.echo(
            f"released lock {name!r}: deleted on {deleted} of {len(redsync.addresses)} nodes"
        )
