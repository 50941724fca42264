"""Chaos tests: collect each scenario's figures and print them in the terminal summary."""

from __future__ import annotations

from typing import Any

import pytest

_FIGURES: list[dict[str, Any]] = []


@pytest.fixture
def chaos_figures(record_property: Any) -> Any:
    """Return a function that records a scenario's figures (printed at the end of the run)."""

    def record(figures: dict[str, Any]) -> None:
        _FIGURES.append(figures)
        for key, value in figures.items():
            record_property(key, value)
        print("\n" + _format(figures))

    return record


def _format(figures: dict[str, Any]) -> str:
    lines = [f"[chaos] {figures['scenario']}"]
    lines += [f"    {key}: {value}" for key, value in figures.items() if key != "scenario"]
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("redsync chaos figures")
    for figures in _FIGURES:
        terminalreporter.write_line(_format(figures))
