"""``python -m rehearsal pipeline``: stages as consecutive rehearsals, stopping at the first
rollback (a regression caught in pre-production never reaches production); one row per stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rehearsal.model import ROLLED_BACK, SUCCEEDED, Options, Outcome
from rehearsal.pipeline import DEFAULT_STAGES, NOT_RUN, Stage, final_outcome, run_pipeline, table
from rehearsal.schedule import ConfigError
from tests.support.processes import ROOT


def _runner(outcomes: dict[str, str], calls: list[Options]):
    """A stand-in for rehearsal.run (unit tests of the stage logic only)."""

    def run(options: Options) -> Outcome:
        calls.append(options)
        outcome = outcomes[options.out.name]
        result = {"outcome": outcome, "requests": 100, "errors": 0,
                  "alarm": "points-service-green-latency-avg" if outcome == ROLLED_BACK else None,
                  "alarm_time_s": 42.0 if outcome == ROLLED_BACK else None}  # fmt: skip
        return Outcome(
            result=result, report_path=options.out / "report.html", safety=None, details={}
        )

    return run


def test_a_rollback_in_the_first_stage_stops_the_pipeline(tmp_path: Path) -> None:
    calls: list[Options] = []
    base = Options(scenario="regression", out=tmp_path, bake_s=7.0)
    rows = run_pipeline(
        DEFAULT_STAGES, base, runner=_runner({"pre-production": ROLLED_BACK}, calls)
    )
    assert [c.out for c in calls] == [tmp_path / "pre-production"]  # production never ran
    assert [r["outcome"] for r in rows] == [ROLLED_BACK, NOT_RUN]
    assert rows[1] == {
        "stage": "production",
        "outcome": NOT_RUN,
        "reason": "stopped at pre-production",
    }
    assert final_outcome(rows) == "stopped at pre-production"
    assert json.loads((tmp_path / "pipeline.json").read_text())["stages"] == rows
    lines = table(rows).splitlines()
    assert len(lines) == 3 and lines[1].startswith("pre-production  rolled_back")


def test_every_stage_runs_in_order_with_its_own_config_and_bake(tmp_path: Path) -> None:
    calls: list[Options] = []
    stages = [
        Stage.parse("staging=ecs:canary:20:1@5"),
        Stage.parse("prod=CodeDeployDefault.ECSAllAtOnce"),
    ]
    base = Options(scenario="healthy", out=tmp_path, bake_s=9.0, time_scale=0.1)
    rows = run_pipeline(
        stages, base, runner=_runner({"staging": SUCCEEDED, "prod": SUCCEEDED}, calls)
    )
    assert [(c.out.name, c.deployment_config, c.bake_s) for c in calls] == [
        ("staging", "ECS:CANARY:20:1", 5.0),
        ("prod", "CodeDeployDefault.ECSAllAtOnce", 9.0),
    ]
    assert all(c.time_scale == 0.1 and c.scenario == "healthy" for c in calls)
    assert final_outcome(rows) == "released"


@pytest.mark.parametrize(
    "text",
    ["Prod", "a b", "x=nonsense", "x=ecs:linear:1", "x=ecs:linear@fast", "x=ecs:blue_green@-1",
     "a=", "=x", "a=@", "a=@5", "a=ecs:linear@", "x=ecs:canary:101", "x=ecs:blue_green@nan",
     # what float() reads but is no plain number (as custom:linear's values)
     "x=ecs:blue_green@\u0661\u0660", "x=ecs:blue_green@1_0", "x=ecs:blue_green@6e1",
     "x=ecs:blue_green@ 5", "x=ecs:blue_green@+5", "x=ecs:blue_green@inf",
     "x=ecs:linear:\uff11\uff10", "x=ecs:canary:1e1"],
)  # fmt: skip
def test_bad_stages_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        Stage.parse(text)


def test_duplicate_stage_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must differ"):
        run_pipeline([Stage("a"), Stage("a")], Options(scenario="healthy", out=tmp_path))


@pytest.mark.slow
def test_a_regression_stops_at_pre_production_end_to_end(tmp_path: Path) -> None:
    """Real rehearsal of the first stage (gunicorn, Locust, live alarms); production not run."""
    out = tmp_path / "pipeline"
    proc = subprocess.run(
        [sys.executable, "-m", "rehearsal", "pipeline", "--scenario", "regression",
         "--time-scale", "1", "--no-progress", "--out", str(out), "--expect", "pre-production"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((out / "pipeline.json").read_text())["stages"]
    assert [(r["stage"], r["outcome"]) for r in rows] == [
        ("pre-production", ROLLED_BACK),
        ("production", NOT_RUN),
    ]
    assert rows[0]["alarm"]
    assert (out / "pre-production" / "result.json").is_file()
    assert not (out / "production").exists()
    assert "Pipeline: stopped at pre-production." in proc.stdout


def test_bad_pipeline_arguments_exit_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rehearsal", "pipeline", "--scenario", "healthy",
         "--stage", "a=ecs:canary:0", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "canaryPercent" in proc.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--time-scale", "1e308"], "--time-scale: expected a number >= 0.001 and <= 1000"),
        (["--bake", "1e300"], "--bake: expected a number >= 0 and <= 172800"),
        # the stage's own bake: beyond CodeDeploy's longest termination wait
        (["--stage", "a=CodeDeployDefault.ECSAllAtOnce@172800.5"], "bake time must be 0-172800 s"),
        (["--green-limit-rps", "1e-9"], "--green-limit-rps"),  # green would refuse to start
        (["--rps", "1e9"], "--rps: expected a number > 0 and <= 10000"),
        # a stage of a day-long interval at --time-scale 1000 (~270 years), as a single run
        (
            ["--stage", "a=custom:linear:1:86400", "--time-scale", "1000"],
            "take 142561000.0 minutes to shift and bake, above --max-minutes 60",
        ),
        # two stages of 28 min each: each within an hour, not both
        (
            [
                "--stage",
                "a=CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
                "--stage",
                "b=CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
                "--time-scale",
                "1",
                "--max-minutes",
                "50",
            ],
            "the 2 stage(s) at --time-scale 1 take 56.0 minutes to shift and bake, above "
            "--max-minutes 50",
        ),
        (["--max-minutes", "0"], "--max-minutes: expected a number > 0 and <= 10080"),
    ],
)
def test_a_duration_or_rate_out_of_range_is_refused_before_any_stage(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rehearsal", "pipeline", "--scenario", "healthy", *args,
         "--out", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr
    assert not (tmp_path / "o" / "pipeline.json").exists()
