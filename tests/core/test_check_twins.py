"""``scripts/check-twins``: each asyncio module must stay its sync twin plus async/await."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

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


#: Each pair of twins, with a line found once in both, to add lines after.
PAIRS = {
    "drivers": ("_sync.py", "_async.py", "self._node_count = len(self._nodes)"),
    "family": ("_family_sync.py", "_family_async.py", "self._permit: int | None = None"),
}


def load_script() -> Any:
    loader = importlib.machinery.SourceFileLoader("check_twins", str(SCRIPT))
    spec = importlib.util.spec_from_loader("check_twins", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture
def twins(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the two drivers, to edit."""
    sync_file, async_file = tmp_path / "_sync.py", tmp_path / "_async.py"
    shutil.copy(DRIVERS / "_sync.py", sync_file)
    shutil.copy(DRIVERS / "_async.py", async_file)
    return sync_file, async_file


@pytest.fixture(params=sorted(PAIRS))
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path, str]:
    """Copies of one pair of twins, to edit, and the line to add lines after."""
    sync_name, async_name, anchor = PAIRS[request.param]
    sync_file, async_file = tmp_path / sync_name, tmp_path / async_name
    shutil.copy(DRIVERS / sync_name, sync_file)
    shutil.copy(DRIVERS / async_name, async_file)
    return sync_file, async_file, anchor


def insert_after(path: Path, anchor: str, new_line: str) -> None:
    """Insert ``new_line`` after the only line that contains ``anchor``, with its indentation."""
    lines = path.read_text().splitlines(keepends=True)
    (at,) = [i for i, line in enumerate(lines) if anchor in line]
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines.insert(at + 1, f"{indent}{new_line}\n")
    path.write_text("".join(lines))


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_the_modules_are_twins(name: str) -> None:
    sync_name, async_name, _ = PAIRS[name]
    result = check(DRIVERS / sync_name, DRIVERS / async_name)
    assert result.returncode == 0, result.stderr


def test_make_lint_checks_every_pair() -> None:
    """``scripts/check-twins`` without arguments (as ``make lint`` runs it) checks each pair."""
    checked = {(sync.name, aio.name) for sync, aio in load_script().PAIRS}
    assert checked == {(sync_name, async_name) for sync_name, async_name, _ in PAIRS.values()}
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("edited", ["sync", "async"])
def test_a_line_added_to_one_twin_only_fails_with_the_line(
    pair: tuple[Path, Path, str], edited: str
) -> None:
    sync_file, async_file, anchor = pair
    path = sync_file if edited == "sync" else async_file
    insert_after(path, anchor, "self._drifted = True")
    result = check(sync_file, async_file)
    assert result.returncode == 1
    assert f"{path.name}:" in result.stderr
    assert "self._drifted = True" in result.stderr


def test_one_failing_pair_fails_the_default_run(
    pair: tuple[Path, Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sync_file, async_file, anchor = pair
    insert_after(async_file, anchor, "self._drifted = True")
    script = load_script()
    drivers = (DRIVERS / "_sync.py", DRIVERS / "_async.py")
    monkeypatch.setattr(script, "PAIRS", (drivers, (sync_file, async_file)))
    assert script.main([]) == 1
    assert f"{async_file.name}:" in capsys.readouterr().err


def test_type_checking_imports_may_differ_but_not_other_code(twins: tuple[Path, Path]) -> None:
    sync_file, async_file = twins
    sync_file.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n")
    async_file.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import b\n")
    assert check(*twins).returncode == 0
    async_file.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import b\n    B = 1\n"
    )
    result = check(*twins)
    assert result.returncode == 1
    assert "import b" in result.stderr


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
