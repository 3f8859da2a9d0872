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
        # what float() reads but is no plain number: other digits, separators, spaces, exponents
        "custom:linear:\u0661\u0660:10",
        "custom:linear:10:\uff16\uff10",
        "custom:linear:1_0:60",
        "custom:linear: 10:60",
        "custom:canary:10:6e1",
        "custom:canary:10:+60",
        "custom:canary:10:inf",
        "custom:canary:10:nan",
        # and so in an ECS strategy's percent
        "ecs:linear:\u0661\u0660",
        "ecs:canary:\uff15",
        "ecs:linear:1_0",
        "ecs:canary:1e1",
        "ecs:linear: 10",
        "ecs:linear:+10",
    ],
)
def test_bad_configurations_are_refused_with_a_clear_error(name: str) -> None:
    with pytest.raises(ConfigError, match="deployment configuration"):
        build(name)


@pytest.mark.parametrize(
    ("name", "scale"), [("custom:linear:33:0.00001", 1.0), ("custom:linear:33:0.0004", 1.0),
                        ("custom:canary:10:1", 0.0004)]
)  # fmt: skip
def test_a_custom_interval_that_scales_to_nothing_is_refused(name: str, scale: float) -> None:
    # every step at 0 s: an all-at-once deployment under a linear or canary name
    with pytest.raises(ConfigError, match="under 1 ms"):
        build(name, time_scale=scale)
    assert build("custom:linear:33:0.001", time_scale=1.0).steps[1].at_s == 0.001


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf")])
def test_bad_time_scale(scale: float) -> None:
    with pytest.raises(ConfigError, match="time scale"):
        build("CodeDeployDefault.ECSAllAtOnce", time_scale=scale)


@pytest.mark.parametrize(("scale", "bake"), [(1e308, 60.0), (1e307, 0.0), (1e305, 172800.0)])
def test_a_time_scale_that_makes_a_duration_infinite_is_refused(scale: float, bake: float) -> None:
    # 1e308 passes as a number but 60 s x 1e308 is inf: the run would never end and write
    # Infinity (not JSON) into its outputs.
    with pytest.raises(ConfigError, match="overflow to infinity"):
        build("CodeDeployDefault.ECSLinear10PercentEvery1Minutes", time_scale=scale, bake_s=bake)


@pytest.mark.parametrize("bake", [-1.0, 172800.5, 1e308, float("nan"), float("inf")])
def test_a_bake_beyond_codedeploys_longest_termination_wait_is_refused(bake: float) -> None:
    # --bake 1e300 used to be accepted: a run that practically never ends
    with pytest.raises(ConfigError, match="bake time must be 0-172800 s"):
        build("CodeDeployDefault.ECSAllAtOnce", bake_s=bake)
    assert build("CodeDeployDefault.ECSAllAtOnce", bake_s=172800.0).bake_s == 172800.0


def test_predefined_names_without_prefix_or_in_another_case_are_accepted() -> None:
    assert canonical("ECSAllAtOnce") == "CodeDeployDefault.ECSAllAtOnce"
    assert canonical("ecscanary10percent5minutes") == "CodeDeployDefault.ECSCanary10Percent5Minutes"
    assert canonical("custom:linear:10:60") == "custom:linear:10:60"
    assert build("ECSLinear10PercentEvery3Minutes").name == (
        "CodeDeployDefault.ECSLinear10PercentEvery3Minutes"
    )


# -- ECS native strategies (ApiDeploymentController=ECS) -----------------------------------------


def test_ecs_defaults_are_the_ecs_api_defaults() -> None:
    """botocore's ECS model: LINEAR 10.0 % every 6 min, CANARY 5.0 % for 10 min."""
    from botocore.loaders import Loader

    shapes = Loader().load_service_model("ecs", "service-2")["shapes"]
    linear = shapes["LinearConfiguration"]["members"]
    canary = shapes["CanaryConfiguration"]["members"]
    assert "The default value is 10.0" in linear["stepPercent"]["documentation"]
    assert "The default value is 6" in linear["stepBakeTimeInMinutes"]["documentation"]
    assert "The default value is 5.0" in canary["canaryPercent"]["documentation"]
    assert "The default value is 10" in canary["canaryBakeTimeInMinutes"]["documentation"]
    assert _steps(canonical("ecs:linear")) == [(360.0 * i, 10 * (i + 1)) for i in range(10)]
    assert _steps(canonical("ecs:canary")) == [(0.0, 5), (600.0, 100)]
    assert set(shapes["DeploymentStrategy"]["enum"]) - {"ROLLING"} == {
        "BLUE_GREEN",
        "LINEAR",
        "CANARY",
    }


def test_ecs_blue_green_shifts_everything_then_bakes() -> None:
    plan = build(canonical("ECS:blue_green"), bake_s=300)
    assert [(s.at_s, s.green_percent) for s in plan.steps] == [(0.0, 100)]
    assert plan.name == "ECS:BLUE_GREEN" and plan.bake_s == 300


@pytest.mark.parametrize(
    ("name", "steps"),
    [
        ("ecs:linear:30:1", [(0.0, 30), (60.0, 60), (120.0, 90), (180.0, 100)]),
        ("ecs:linear:12.5:2", [(120.0 * i, p) for i, p in enumerate([13, 25, 38, 50, 63, 75, 88, 100])]),
        ("ecs:linear:3:0", [(0.0, p) for p in [3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39, 42, 45, 48, 51, 54, 57, 60, 63, 66, 69, 72, 75, 78, 81, 84, 87, 90, 93, 96, 99, 100]]),
        ("ecs:linear:100", [(0.0, 100)]),
        ("ecs:canary:20:3", [(0.0, 20), (180.0, 100)]),
        ("ecs:canary:0.1:1", [(0.0, 1), (60.0, 100)]),  # whole-percent weights, at least 1 %
    ],
)  # fmt: skip
def test_ecs_linear_and_canary_timing(name: str, steps: list[tuple[float, int]]) -> None:
    assert _steps(canonical(name)) == steps


def test_ecs_durations_scale_like_every_other() -> None:
    plan = build(canonical("ecs:linear:50:2"), time_scale=0.01, bake_s=600)
    assert [(s.at_s, s.green_percent) for s in plan.steps] == [(0.0, 50), (1.2, 100)]
    assert plan.bake_s == 6.0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ecs:linear:2.9", "stepPercent must be a multiple of 0.1 from 3.0 to 100.0"),
        ("ecs:linear:3.05", "multiple of 0.1"),
        ("ecs:linear:100.1", "stepPercent"),
        ("ecs:canary:0", "canaryPercent must be a multiple of 0.1 from 0.1 to 100.0"),
        ("ecs:canary:nan", "canaryPercent"),
        ("ecs:canary:inf", "canaryPercent"),
        ("ecs:linear:ten", "must be a number"),
        ("ecs:linear:10:1441", "stepBakeTimeInMinutes must be whole minutes 0..1440"),
        ("ecs:canary:5:1.5", "canaryBakeTimeInMinutes must be whole minutes"),
        ("ecs:canary:5:-1", "canaryBakeTimeInMinutes"),
        ("ecs:linear:10:1:2", "use ecs:blue_green"),
        ("ecs:blue_green:10", "BLUE_GREEN takes no values"),
        ("ecs:rolling", "unknown ECS deployment strategy"),
        ("ecs:", "unknown ECS deployment strategy"),
    ],
)
def test_ecs_values_outside_the_api_rules_are_refused(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        build(canonical(name))


def test_the_cli_accepts_ecs_strategies_and_refuses_bad_ones_in_one_line(tmp_path) -> None:
    from rehearsal.__main__ import main

    assert main(["--scenario", "healthy", "--deployment-config", "ecs:linear:0.5",
                 "--out", str(tmp_path)]) == 2  # fmt: skip
    parse(canonical("ecs:canary:5:1"))  # and a good one parses


@pytest.mark.parametrize(
    ("args", "minutes"),
    [(["--deployment-config", "custom:linear:1:86400", "--time-scale", "1000"], "142561000.0"),
     (["--deployment-config", "CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
       "--time-scale", "1", "--max-minutes", "20"], "28.0")],
)  # fmt: skip
def test_a_run_longer_than_max_minutes_is_refused_before_it_starts(
    tmp_path, capsys: pytest.CaptureFixture[str], args: list[str], minutes: str
) -> None:
    # a custom interval of a day at --time-scale 1000 was accepted: a run of ~270 years
    from rehearsal.__main__ import main

    assert main(["--scenario", "healthy", *args, "--out", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"takes {minutes} minutes to shift and bake, above --max-minutes" in line
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_max_minutes_boundary(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # exactly --max-minutes is allowed; a second more is refused, and its length does not
    # print as the limit ("takes 60.0 minutes ..., above --max-minutes 60")
    from rehearsal.__main__ import main

    base = ["--scenario", "healthy", "--time-scale", "1", "--bake", "60",
            "--spec", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "out")]  # fmt: skip
    assert main([*base, "--deployment-config", "custom:canary:10:3540"]) == 2
    assert "alarm spec" in capsys.readouterr().err  # past the length check
    assert main([*base, "--deployment-config", "custom:canary:10:3541"]) == 2
    assert "takes 60.1 minutes to shift and bake, above --max-minutes 60" in (
        capsys.readouterr().err
    )
