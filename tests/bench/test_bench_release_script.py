"""The limit lines run our very release script (a stale copy would measure other work)."""

from __future__ import annotations

from benchmarks.contenders import RELEASE_SCRIPT
from redsync_core._transport.scripts import RELEASE


def test_the_limit_lines_release_with_our_script() -> None:
    assert RELEASE.source == RELEASE_SCRIPT
