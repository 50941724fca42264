"""``redsync status``, ``ls``, ``release`` and ``ping``: what an operator asks about locks and nodes.

Lock values never appear: a holder is shown as a short fingerprint of its value (the value
itself would let anyone unlock or extend the lock), and addresses come without passwords.
"""

from __future__ import annotations

import json
import sys

from redsync_core import LockListing, Redsync

from .common import EXIT_FREE, EXIT_OK, EXIT_UNAVAILABLE, PROG, UsageError, say

__all__ = [
    "LIST_TIMEOUT",
    "PAGE_SIZE",
    "ls",
    "ping",
    "release",
    "release_pattern",
    "status",
]

PAGE_SIZE = 100  # keys per SCAN call: small enough not to hold up a busy Redis
LIST_TIMEOUT = 10.0  # seconds a listing may take in all


def _seconds(seconds: float | None) -> str:
    return "no expiry" if seconds is None else f"{seconds:.3g} s"


def status(rs: Redsync, name: str) -> int:
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
            print(where + f"held by {node.holder_digest}, ttl {_seconds(node.remaining)}")
    answered = sum(1 for node in info.nodes if node.error is None)
    errors = total - answered
    if info.holder is not None:
        print(
            f"verdict: HELD by {info.holder_digest} on {counts[info.holder]} of {total} "
            f"nodes (quorum {info.quorum}); a quorum keeps it for {_seconds(info.remaining)}"
        )
        return EXIT_OK
    if info.verdict == "unknown":
        print(
            f"verdict: UNKNOWN: {answered} of {total} nodes answered; the {errors} that did not "
            f"could complete a quorum of {info.quorum}"
        )
        return EXIT_UNAVAILABLE
    leftovers = sum(counts.values())
    extra = f"; {leftovers} node(s) hold keys without a quorum" if leftovers else ""
    print(f"verdict: FREE: no holder has a quorum of {info.quorum}{extra}")
    return EXIT_FREE


def release(rs: Redsync, name: str, *, force: bool) -> int:
    if not force:
        raise UsageError(
            f"refusing to release {name!r} without --force: its holder is not told and may "
            f"still be working (check `{PROG} status {name}` first)"
        )
    info = rs.inspect(name)
    deleted = rs.force_release(name)
    total = len(info.nodes)
    holder = info.holder_digest
    was = "free" if holder is None else f"held by {holder}"
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
        print(f"the holder {holder} was not told and may still be working")
    if total - len(failed) < rs.quorum:
        say(f"error: only {total - len(failed)} of {total} nodes answered, {rs.quorum} needed")
        return EXIT_UNAVAILABLE
    return EXIT_OK


def ping(rs: Redsync, timeout: float) -> int:
    report = rs.ping(timeout=timeout)
    width = max(len(node.address) for node in report.nodes)
    for node in report.nodes:
        where = f"node {node.index}  {node.address:<{width}}  "
        if node.ok:
            latency = "?" if node.latency_ms is None else f"{node.latency_ms:.2f} ms"
            print(where + f"ok    {latency:>9}  {node.server}")
        else:
            print(where + f"DOWN  {node.error or 'no reply'}")
    total = len(report.nodes)
    verdict = "ok" if report.ok else "NO QUORUM: locks cannot be taken"
    print(
        f"quorum: {report.reachable} of {total} nodes reachable, {report.quorum} needed: {verdict}"
    )
    return EXIT_OK if report.ok else EXIT_UNAVAILABLE


def _printable(name: str) -> str:
    return name if name.isprintable() else repr(name)


def _table(listing: LockListing, total: int) -> None:
    rows = [
        (
            _printable(info.name),
            info.verdict,
            info.holder_label or "-",
            "-" if info.remaining is None else f"{info.remaining:.1f} s",
            f"{info.held_on} of {total}",
        )
        for info in listing
    ]
    header = ("NAME", "VERDICT", "HOLDER", "TTL", "NODES")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _complete_quorum(rs: Redsync, listing: LockListing) -> bool:
    """True when a quorum of nodes was listed to the end (verdicts can then be trusted)."""
    return len(rs.addresses) - len(listing.incomplete) >= rs.quorum


def _footer(rs: Redsync, listing: LockListing) -> None:
    if listing.skipped:
        print(f"{listing.skipped} key(s) under the prefix are not locks (not shown, never deleted)")
    for address, reason in listing.incomplete:
        print(f"node {address}: not listed to the end ({reason})")
    if listing.partial:
        print("the listing is partial: a lock held only on those nodes may be missing")


def ls(rs: Redsync, pattern: str, *, as_json: bool, page_size: int, timeout: float) -> int:
    """Print the locks matching ``pattern`` (a table, or JSON); 69 without a quorum listed."""
    listing = rs.list_locks(pattern, page_size=page_size, timeout=timeout)
    total = len(rs.addresses)
    if as_json:
        document = {
            "pattern": pattern,
            "key_prefix": rs.key_prefix,
            "nodes": total,
            "quorum": rs.quorum,
            **listing.as_dict(),
        }
        print(json.dumps(document, indent=2))
    else:
        if listing:
            _table(listing, total)
        held = sum(1 for info in listing if info.held)
        print(
            f"{len(listing)} lock(s) matching {pattern!r} under prefix {rs.key_prefix!r}, "
            f"{held} held by a quorum of {rs.quorum} of {total} nodes"
        )
        _footer(rs, listing)
    if not _complete_quorum(rs, listing):
        say(f"error: fewer than {rs.quorum} of {total} nodes were listed to the end")
        return EXIT_UNAVAILABLE
    return EXIT_OK


def release_pattern(
    rs: Redsync, pattern: str, *, force: bool, yes: bool, page_size: int, timeout: float
) -> int:
    """List the locks matching ``pattern``, confirm, and delete each where it is unchanged.

    Raises:
        UsageError: no ``--force``, or no terminal to ask on and no ``--yes``.
    """
    if not force:
        raise UsageError(
            f"refusing to release the locks matching {pattern!r} without --force: their holders "
            f"are not told and may still be working (list them with `{PROG} ls {pattern}` first)"
        )
    listing = rs.list_locks(pattern, page_size=page_size, timeout=timeout)
    total = len(rs.addresses)
    if not listing:
        print(f"no lock matches {pattern!r} under prefix {rs.key_prefix!r}; nothing to delete")
        _footer(rs, listing)
        return EXIT_OK if _complete_quorum(rs, listing) else EXIT_UNAVAILABLE
    print(f"{len(listing)} lock(s) matching {pattern!r} under prefix {rs.key_prefix!r}:")
    _table(listing, total)
    _footer(rs, listing)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"refusing to delete {len(listing)} lock(s) without confirmation: stdin is not a "
                "terminal to ask on; add --yes to delete them"
            )
        answer = input(f"Delete these {len(listing)} lock(s) on every node? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return EXIT_OK
    for info in listing:
        deleted = rs.release_listed(info)
        listed = sum(1 for node in info.nodes if node.holder is not None)
        kept = "" if deleted >= listed else f"; kept on {listed - deleted} (changed or failed)"
        print(f"released {info.name!r}: deleted on {deleted} of {total} nodes{kept}")
    print("the holders were not told and may still be working")
    return EXIT_OK
