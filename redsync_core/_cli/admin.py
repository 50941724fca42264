"""``redsync status``, ``release`` and ``ping``: what an operator asks about locks and nodes.

Lock values never appear: a holder is shown as a short fingerprint of its value (the value
itself would let anyone unlock or extend the lock), and addresses come without passwords.
"""

from __future__ import annotations

from redsync_core import Redsync

from .._base import fingerprint
from .common import EXIT_FREE, EXIT_OK, EXIT_UNAVAILABLE, PROG, UsageError, say

__all__ = ["fingerprint", "ping", "release", "status"]  # fingerprint: the core's


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
            print(where + f"held by {fingerprint(node.holder)}, ttl {_seconds(node.remaining)}")
    answered = sum(1 for node in info.nodes if node.error is None)
    errors = total - answered
    if info.holder is not None:
        print(
            f"verdict: HELD by {fingerprint(info.holder)} on {counts[info.holder]} of {total} "
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
    holder = info.holder
    was = "free" if holder is None else f"held by {fingerprint(holder)}"
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
        print(f"the holder {fingerprint(holder)} was not told and may still be working")
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
            print(where + f"ok    {latency:>9}  redis {node.version or '?'}")
        else:
            print(where + f"DOWN  {node.error or 'no reply'}")
    total = len(report.nodes)
    verdict = "ok" if report.ok else "NO QUORUM: locks cannot be taken"
    print(
        f"quorum: {report.reachable} of {total} nodes reachable, {report.quorum} needed: {verdict}"
    )
    return EXIT_OK if report.ok else EXIT_UNAVAILABLE
