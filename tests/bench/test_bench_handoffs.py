"""S3's hand-off column (the time from the end of one hold to the start of the next) and its
busy fraction over the `limit-handoff` line's."""

from __future__ import annotations

import pytest

from benchmarks.harness import handoffs
from benchmarks.report import _x_handoff


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        pytest.param([(0, 10), (15, 30), (34, 40)], [5, 4], id="back-to-back-holds"),
        pytest.param([(34, 40), (0, 10), (15, 30)], [5, 4], id="from-several-processes"),
        pytest.param([(0, 10), (8, 20), (25, 30)], [5], id="an-overlap-gives-none"),
        pytest.param([(0, 10)], [], id="one-hold"),
    ],
)
def test_handoffs(intervals: list[tuple[int, int]], expected: list[int]) -> None:
    assert handoffs(intervals) == expected


def s3_row(contender: str, busy: float, processes: int = 4, error: str | None = None) -> dict:
    return {"contender": contender, "nodes": 5, "processes": processes, "busy": busy,
            "error": error}  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param([s3_row("limit-handoff", 0.8), s3_row("ours", 0.72)], 0.9, id="same-cell"),
        pytest.param([s3_row("limit-handoff", 0.8, 8), s3_row("ours", 0.72)], None, id="other-p"),
        pytest.param(
            [s3_row("limit-handoff", 0.8, error="failed"), s3_row("ours", 0.72)],
            None,
            id="line-failed",
        ),
        pytest.param([s3_row("ours", 0.72)], None, id="no-line"),
    ],
)
def test_s3_busy_over_the_limit_handoff_line(rows: list[dict], expected: float | None) -> None:
    assert _x_handoff(rows, rows[-1]) == pytest.approx(expected)
