"""The controller's schedule for every predefined CodeDeploy ECS configuration and custom ones."""

from __future__ import annotations

import pytest

from rehearsal.schedule import PREDEFINED, ConfigError, build, canonical, parse


def _steps(name: str, **kw: float) -> list[tuple[float, int]]:
    return [(s.at_s, s.green_percent) for s in build(name, **kw).steps]


def test_linear_every_minute_moves_ten_percent_each_minute() -> None:
    assert _steps("CodeDeployDefault.ECSLinear10PercentEvery1Minutes") == [
        (60.0 * i, 10 * (i + 1)) for i in range(10)
    ]


def test_linear_every_three_minutes() -> None:
    steps = _steps("CodeDeployDefault.ECSLinear10PercentEvery3Minutes")
    assert steps[0] == (0.0, 10)
    assert steps[-1] == (27 * 60.0, 100)
    assert [at for at, _ in steps] == [180.0 * i for i in range(10)]


@pytest.mark.parametrize(
    ("name", "minutes"),
    [
        ("CodeDeployDefault.ECSCanary10Percent5Minutes", 5),
        ("CodeDeployDefault.ECSCanary10Percent15Minutes", 15),
    ],
)
def test_canary_holds_ten_percent_then_shifts_the_rest(name: str, minutes: int) -> None:
    assert _steps(name) == [(0.0, 10), (minutes * 60.0, 100)]


def test_all_at_once() -> None:
    plan = build("CodeDeployDefault.ECSAllAtOnce", bake_s=30)
    assert _steps("CodeDeployDefault.ECSAllAtOnce") == [(0.0, 100)]
    assert plan.shift_s == 0 and plan.total_s == 30


def test_every_predefined_configuration_is_covered() -> None:
    assert set(PREDEFINED) == {
        "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
        "CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
        "CodeDeployDefault.ECSCanary10Percent5Minutes",
        "CodeDeployDefault.ECSCanary10Percent15Minutes",
        "CodeDeployDefault.ECSAllAtOnce",
    }
    for name in PREDEFINED:
        plan = build(name)
        assert plan.steps[0].at_s == 0
        assert plan.steps[-1].green_percent == 100
        percents = [s.green_percent for s in plan.steps]
        assert percents == sorted(percents)


def test_time_scale_multiplies_steps_and_bake() -> None:
    plan = build("CodeDeployDefault.ECSLinear10PercentEvery1Minutes", time_scale=0.5, bake_s=60)
    assert [s.at_s for s in plan.steps][:3] == [0.0, 30.0, 60.0]
    assert plan.bake_s == 30.0
    assert plan.total_s == 9 * 30.0 + 30.0


def test_percent_at_follows_the_steps() -> None:
    plan = build("CodeDeployDefault.ECSCanary10Percent5Minutes", time_scale=0.1)
    assert plan.percent_at(-1) == 0
    assert plan.percent_at(0) == 10
    assert plan.percent_at(29.9) == 10
    assert plan.percent_at(30) == 100


def test_custom_linear_and_canary() -> None:
    assert _steps("custom:linear:30:20") == [(0.0, 30), (20.0, 60), (40.0, 90), (60.0, 100)]
    assert _steps("custom:canary:20:300") == [(0.0, 20), (300.0, 100)]
    assert _steps("custom:allatonce") == [(0.0, 100)]
    assert parse("custom:linear:10:60") == ("linear", 10.0, 60.0)


@pytest.mark.parametrize(
    "name",
    [
        "CodeDeployDefault.ECSLinear5PercentEvery1Minutes",
        "CodeDeployDefault.OneAtATime",
        "linear:10:60",
        "custom:linear:10",
        "custom:linear:0:60",
        "custom:linear:100:60",
        "custom:canary:10:0",
        "custom:canary:ten:60",
        "custom:linear:10.5:60",
        "custom:zigzag:10:60",
    ],
)
def test_bad_configurations_are_refused_with_a_clear_error(name: str) -> None:
    with pytest.raises(ConfigError, match="deployment configuration"):
        build(name)


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf")])
def test_bad_time_scale(scale: float) -> None:
    with pytest.raises(ConfigError, match="time scale"):
        build("CodeDeployDefault.ECSAllAtOnce", time_scale=scale)


def test_predefined_names_without_prefix_or_in_another_case_are_accepted() -> None:
    assert canonical("ECSAllAtOnce") == "CodeDeployDefault.ECSAllAtOnce"
    assert canonical("ecscanary10percent5minutes") == "CodeDeployDefault.ECSCanary10Percent5Minutes"
    assert canonical("custom:linear:10:60") == "custom:linear:10:60"
    assert build("ECSLinear10PercentEvery3Minutes").name == (
        "CodeDeployDefault.ECSLinear10PercentEvery3Minutes"
    )
