"""The worker's rolling update as ECS computes it: minimum healthy rounded up, maximum rounded
down, old tasks stopped down to the minimum, new ones started up to the maximum."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rehearsal.rolling.schedule import (
    Limits,
    RollingConfigError,
    Round,
    circuit_breaker_threshold,
    limits,
    plan,
    replaced_after,
)


@pytest.mark.parametrize(
    ("desired", "low", "high", "expected"),
    [
        (4, 50, 200, Limits(4, 2, 8)),  # the developer guide's examples
        (2, 75, 200, Limits(2, 2, 4)),  # 1.5 rounds up to 2: nothing can be stopped first
        (3, 50, 150, Limits(3, 2, 4)),  # 1.5 -> 2 (up), 4.5 -> 4 (down)
        (5, 33, 133, Limits(5, 2, 6)),  # 1.65 -> 2, 6.65 -> 6
        (3, 100, 100, Limits(3, 3, 3)),
        (7, 0, 100, Limits(7, 0, 7)),
    ],
)
def test_limits_round_as_ecs_does(desired: int, low: int, high: int, expected: Limits) -> None:
    assert limits(desired, low, high) == expected


@pytest.mark.parametrize(
    ("desired", "low", "high", "rounds"),
    [
        # 200 %: all new tasks first, then all old ones stopped (deploy/stack.yaml's setting)
        (4, 100, 200, [Round(0, 4), Round(4, 0)]),
        (1, 100, 200, [Round(0, 1), Round(1, 0)]),
        # 50 % / 100 %: "stop two existing tasks before starting two new tasks"
        (4, 50, 100, [Round(2, 2), Round(2, 2)]),
        # the rehearsal's default: surge of 2, capacity never below 4
        (4, 100, 150, [Round(0, 2), Round(2, 2), Round(2, 0)]),
        # one at a time, capacity dips by one
        (4, 75, 100, [Round(1, 1), Round(1, 1), Round(1, 1), Round(1, 1)]),
        # 75 % of 2 is 2 (rounded up): one new task first, then one by one
        (2, 75, 150, [Round(0, 1), Round(1, 1), Round(1, 0)]),
        # minimum 0: stop everything, start everything (a "recreate")
        (3, 0, 100, [Round(3, 3)]),
        # 5 tasks, 50 % -> 3 healthy, 120 % -> 6 running
        (5, 50, 120, [Round(2, 3), Round(3, 2)]),
    ],
)
def test_plan(desired: int, low: int, high: int, rounds: list[Round]) -> None:
    assert list(plan(desired, low, high)) == rounds


@pytest.mark.parametrize(
    ("desired", "low", "high", "outgoing", "incoming", "rounds"),
    [
        # rolled back during the first round of 100/150: the 2 new tasks are stopped
        (4, 100, 150, 2, 4, [Round(2, 0)]),
        # rolled back after the second round (2 old left, 4 new): 2 old-revision tasks first
        (4, 100, 150, 4, 2, [Round(2, 2), Round(2, 0)]),
        # 200 %: everything at once
        (4, 100, 200, 4, 4, [Round(4, 0)]),
        # 50/100 rolled back after its first round: 2 new stopped, 2 old started
        (4, 50, 100, 2, 2, [Round(2, 2)]),
        # nothing left to do
        (3, 100, 200, 0, 3, []),
    ],
)
def test_rollback_plans_from_where_the_deployment_stopped(
    desired: int, low: int, high: int, outgoing: int, incoming: int, rounds: list[Round]
) -> None:
    assert list(plan(desired, low, high, outgoing=outgoing, incoming=incoming)) == rounds


def test_impossible_starting_points_are_refused() -> None:
    with pytest.raises(RollingConfigError, match="cannot plan"):
        plan(4, 100, 150, outgoing=1, incoming=5)


def test_replaced_after_counts_old_tasks_stopped() -> None:
    assert replaced_after(plan(4, 100, 150)) == [0, 2, 4]


@pytest.mark.parametrize(
    ("desired", "low", "high"),
    [(4, 100, 100), (2, 75, 100), (1, 100, 100), (3, 67, 100)],
)
def test_a_deployment_that_cannot_progress_is_refused(desired: int, low: int, high: int) -> None:
    with pytest.raises(RollingConfigError, match="never progress"):
        plan(desired, low, high)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 100, 200), "desired count"),
        ((4, 101, 200), "minimum healthy"),
        ((4, -1, 200), "minimum healthy"),
        ((4, 100, 99), "maximum percent"),
        ((4, 100, 201), "maximum percent"),
        ((4.0, 100, 200), "integer"),
        ((True, 100, 200), "integer"),
    ],
)
def test_bad_values_are_refused(args: tuple, match: str) -> None:
    with pytest.raises(RollingConfigError, match=match):
        limits(*args)


@given(
    desired=st.integers(1, 40),
    low=st.integers(0, 100),
    high=st.integers(100, 200),
)
def test_every_plan_respects_both_limits_and_ends_on_the_new_revision(
    desired: int, low: int, high: int
) -> None:
    lim = limits(desired, low, high)
    try:
        rounds = plan(desired, low, high)
    except RollingConfigError:
        assert lim.max_running <= lim.min_healthy
        return
    old, new = desired, 0
    for r in rounds:
        assert r.stop or r.start
        old -= r.stop
        # stopping never takes the healthy count (old + new tasks healthy by now) below minimum
        assert old + new >= min(lim.min_healthy, desired)
        new += r.start
        assert old + new <= lim.max_running
    assert (old, new) == (0, desired)


@pytest.mark.parametrize(("desired", "threshold"), [(1, 3), (6, 3), (7, 4), (10, 5), (1000, 200)])
def test_circuit_breaker_threshold(desired: int, threshold: int) -> None:
    assert circuit_breaker_threshold(desired) == threshold
