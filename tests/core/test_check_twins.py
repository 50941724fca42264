"""``scripts/check-twins``: the asyncio driver must stay the sync driver plus async/await."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check-twins"
DRIVERS = ROOT / "redsync_core"


def check(sync_file: Path, async_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(sync_file), str(async_file)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def twins(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the two drivers, to edit."""
    sync_file, async_file = tmp_path / "_sync.py", tmp_path / "_async.py"
    shutil.copy(DRIVERS / "_sync.py", sync_file)
    shutil.copy(DRIVERS / "_async.py", async_file)
    return sync_file, async_file


def insert_after(path: Path, anchor: str, new_line: str) -> None:
    """Insert ``new_line`` after the only line that contains ``anchor``, with its indentation."""
    lines = path.read_text().splitlines(keepends=True)
    (at,) = [i for i, line in enumerate(lines) if anchor in line]
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines.insert(at + 1, f"{indent}{new_line}\n")
    path.write_text("".join(lines))


def test_the_drivers_are_twins() -> None:
    result = check(DRIVERS / "_sync.py", DRIVERS / "_async.py")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("edited", ["sync", "async"])
def test_a_line_added_to_one_twin_only_fails_with_the_line(
    twins: tuple[Path, Path], edited: str
) -> None:
    path = twins[0] if edited == "sync" else twins[1]
    insert_after(path, "self._node_count = len(self._nodes)", "self._drifted = True")
    result = check(*twins)
    assert result.returncode == 1
    assert f"{path.name}:" in result.stderr
    assert "self._drifted = True" in result.stderr


def test_the_same_change_in_both_passes(twins: tuple[Path, Path]) -> None:
    sync_file, async_file = twins
    insert_after(sync_file, "self._node_count = len(self._nodes)", "self._both = True")
    insert_after(async_file, "self._node_count = len(self._nodes)", "self._both = True")
    result = check(*twins)
    assert result.returncode == 0, result.stderr


def test_a_marked_difference_is_left_out(twins: tuple[Path, Path]) -> None:
    sync_file, async_file = twins
    insert_after(
        sync_file, "self._node_count = len(self._nodes)", "self._threads = 0  # twin: sync-only"
    )
    insert_after(async_file, "self._node_count = len(self._nodes)", "self._loop_bound = True")
    insert_after(async_file, "self._node_count = len(self._nodes)", "# twin: async-only")
    result = check(*twins)
    assert result.returncode == 0, result.stderr
