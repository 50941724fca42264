"""S3's hand-off column: the time from the end of one hold to the start of the next."""

from __future__ import annotations

import pytest

from benchmarks.harness import handoffs


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
