"""The benchmark report names no directory of the machine it ran on.

Profiles and tracebacks print absolute file paths; the report rewrites them relative to the
repository (installed packages as ``<site-packages>/``, the standard library as ``<stdlib>/``).
"""

from __future__ import annotations

import json
import os
import re

import pytest
import redis

from benchmarks.report import REPO, markdown, relative_paths

#: An absolute path to a Python source file, as cProfile and tracebacks print them.
ABSOLUTE_SOURCE = re.compile(r"(?<![\w.>-])/(?:[^\s/:\"']+/)+[^\s/:\"']+\.py\b")


def test_repository_files_become_paths_relative_to_the_repository() -> None:
    line = (
        f"   63100    0.129    0.000 {REPO / 'redsync_core' / '_transport' / 'sync.py'}:301(_send)"
    )

    assert relative_paths(line).endswith(" redsync_core/_transport/sync.py:301(_send)")


def test_installed_packages_and_the_standard_library_lose_their_directories() -> None:
    assert relative_paths(f"{redis.__file__}:1(<module>)") == (
        "<site-packages>/redis/__init__.py:1(<module>)"
    )
    assert relative_paths(f'File "{os.__file__}", line 1') == 'File "<stdlib>/os.py", line 1'


@pytest.mark.parametrize("name", ["RESULTS.md", "results.json"])
def test_published_results_name_no_machine_path(name: str) -> None:
    text = (REPO / "benchmarks" / name).read_text(encoding="utf-8")

    assert ABSOLUTE_SOURCE.findall(text) == []


def test_published_markdown_is_what_the_report_renders_from_the_published_json() -> None:
    """RESULTS.md and results.json come from one run: neither is edited alone.

    After a change to report.py: ``python -m benchmarks --render benchmarks/results.json``.
    """
    results = json.loads((REPO / "benchmarks" / "results.json").read_text(encoding="utf-8"))

    rendered = relative_paths(markdown(results))

    assert rendered == (REPO / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
