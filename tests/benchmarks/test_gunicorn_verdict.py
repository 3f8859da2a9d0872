"""The gunicorn benchmark's verdicts: a throughput verdict needs a quiet control."""

from __future__ import annotations

import pytest

from benchmarks import gunicorn_bench


@pytest.mark.parametrize(
    ("ratio", "control", "verdict"),
    [
        (0.975, 1.0, ">= 0.97x: met"),
        (0.965, 0.99, ">= 0.97x: MISSED"),
        (0.975, None, ">= 0.97x: met"),  # instructions: no control
        # a run whose bare server was itself slow (control 1.056x) read RED 1.000x: noise
        (1.0, 1.056, ">= 0.97x: inconclusive (the control reads 1.056x)"),
        (0.95, 0.975, ">= 0.97x: inconclusive (the control reads 0.975x)"),
        (0.975, 1.02, ">= 0.97x: met"),  # at the tolerance: still counts
    ],
)
def test_a_throughput_verdict_needs_the_control_near_one(
    ratio: float, control: float | None, verdict: str
) -> None:
    assert gunicorn_bench._verdict("red", ratio, control) == verdict


def test_variants_without_a_target_get_no_verdict() -> None:
    assert gunicorn_bench._verdict("bare-again", 1.3, 1.3) == ""
