"""The least-privilege ACL line of docs/safety.md, and what it says to add to list locks, on real
servers: a user with exactly those rules locks, pings and (with the additions) lists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from redsync_core import Redsync

SAFETY = (Path(__file__).resolve().parents[2] / "docs" / "safety.md").read_text(encoding="utf-8")
ADMIN_PW = "docs-admin-pw"


def documented_acl() -> list[str]:
    """The rules of the first `ACL SETUSER locker` line (the one without release notices)."""
    line = re.search(r"^\s*ACL SETUSER locker (.+)$", SAFETY, re.MULTILINE)
    assert line, "no ACL SETUSER line in docs/safety.md"
    return line.group(1).replace(">PASSWORD", ">locker-pw").split()


def listing_additions() -> list[str]:
    match = re.search(r"add `(\+[a-z]+(?:\s+\+[a-z]+)*)`\s+to list locks", SAFETY)
    assert match, "docs/safety.md no longer says what listing needs"
    return match.group(1).split()


def locker_urls(redis_servers: Any, rules: list[str]) -> list[str]:
    servers = redis_servers(3, password=ADMIN_PW)  # private servers: the ACL user dies with them
    for server in servers:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "locker", "reset", *rules)
        admin.close()
    return [f"redis://locker:locker-pw@127.0.0.1:{s.port}/0" for s in servers]


def test_the_documented_acl_locks_and_pings_but_does_not_list(redis_servers: Any) -> None:
    urls = locker_urls(redis_servers, documented_acl())
    with Redsync(urls, key_prefix="locks:", wake_on_release=False) as rs:
        with rs.new_mutex("a", fencing=True) as mutex:
            assert mutex.token == 1
            assert rs.inspect("a").held
        assert rs.ping().ok
        listing = rs.list_locks()
        assert len(listing.incomplete) == 3
        assert all("can't run this command" in reason for _, reason in listing.incomplete)


def test_with_the_documented_additions_it_lists(redis_servers: Any) -> None:
    urls = locker_urls(redis_servers, documented_acl() + listing_additions())
    with Redsync(urls, key_prefix="locks:", wake_on_release=False) as rs, rs.new_mutex("a"):
        listing = rs.list_locks()
        assert listing.incomplete == ()
        assert [info.name for info in listing] == ["a"]
        assert listing[0].held
