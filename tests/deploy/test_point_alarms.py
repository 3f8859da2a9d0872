"""The rollback alarms follow the release: deploy/point_alarms.py (and the buildspec's pre-deploy
hook that runs it) against a stand-in AWS CLI whose answers come from a fixture "world" that the
test moves forward as CodeDeploy would (a success swaps the production target group and the
primary task set; a rollback leaves both). Consecutive releases are checked alarm by alarm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy._cfn import DEPLOY, ROOT, load
from tests.deploy.test_buildspec import COMMIT, SPEC, _script
from tests.deploy.test_revision import OUTPUTS

SCRIPT = DEPLOY / "point_alarms.py"
FAKE = Path(__file__).with_name("_fake_aws.py")
ACCOUNT = "123456789012"
LB = "app/points-service/50dc6c495c0c9188"
TG_BLUE = "targetgroup/points-service-blue/73e2d6bc24d8a067"
TG_GREEN = "targetgroup/points-service-green/943f017f100becff"
ARN = f"arn:aws:elasticloadbalancing:us-east-1:{ACCOUNT}:"
LISTENER = f"{ARN}listener/{LB}/f2f7dc8efc522ab2"
RULE = f"{ARN}listener-rule/{LB}/f2f7dc8efc522ab2/9683b2d02a6cabee"
TG = {"blue": ARN + TG_BLUE, "green": ARN + TG_GREEN}
VERSION_ALARMS = (
    "points-service-green-latency-avg",
    "points-service-green-latency-p90",
    "points-service-green-error-rate",
)
ALB_ALARMS = ("points-service-alb-green-5xx", "points-service-alb-green-response-time")


def _taskdef_arn(version: str) -> str:
    return f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/points-service-api:{version}"


def _world(tmp_path: Path, *, native: bool = False) -> Path:
    """The stack as docs/deploy-to-aws.md step 3 creates it (v1 running behind the blue group)."""
    template = load(DEPLOY / "stack.yaml")
    params = {
        k: str(v.get("Default", "x")) for k, v in template["Parameters"].items()
    }  # every parameter, as describe-stacks lists them
    params.update(BlueVersion="v1", GreenVersion="v2", ApiVersion="v1", WorkerVersion="w1")
    outputs = {
        **OUTPUTS,
        "ClusterName": "points-service",
        "ApiServiceName": "points-service-api",
        "ProductionListenerArn": LISTENER,
        "BlueTargetGroupArn": TG["blue"],
        "GreenTargetGroupArn": TG["green"],
    }
    world: dict[str, Any] = {
        "stack": {
            "StackName": "points-service",
            "StackStatus": "CREATE_COMPLETE",
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
            "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
        },
        "attributes": {
            "LoadBalancer.LoadBalancerFullName": LB,
            "TargetGroupBlue.TargetGroupFullName": TG_BLUE,
            "TargetGroupGreen.TargetGroupFullName": TG_GREEN,
        },
        "alarms_template": str(DEPLOY / "alarms.json"),
        "service": {
            "serviceName": "points-service-api",
            "taskDefinition": _taskdef_arn("v1"),
            "taskSets": [{"status": "PRIMARY", "taskDefinition": _taskdef_arn("v1")}],
        },
        "task_definitions": {_taskdef_arn("v1"): _taskdef("v1")},
        "listeners": {LISTENER: {"DefaultActions": [_forward("blue")]}},
        "rules": {},
        "images": [],
    }
    if native:
        world["stack"]["Outputs"].append(
            {"OutputKey": "ProductionListenerRuleArn", "OutputValue": RULE}
        )
        world["rules"][RULE] = {"Actions": [_forward("blue", weighted=True)]}
        del world["service"]["taskSets"]
    path = tmp_path / "world.json"
    path.write_text(json.dumps(world))
    return path


def _taskdef(version: str) -> dict[str, Any]:
    return {
        "taskDefinitionArn": _taskdef_arn(version),
        "containerDefinitions": [
            {"name": "app", "environment": [{"name": "APP_VERSION", "value": version}]},
            {"name": "otel-collector", "environment": []},
        ],
    }


def _forward(group: str, *, weighted: bool = False) -> dict[str, Any]:
    if weighted:
        other = "green" if group == "blue" else "blue"
        return {"Type": "forward", "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": TG[group], "Weight": 100},
            {"TargetGroupArn": TG[other], "Weight": 0},
        ]}}  # fmt: skip
    return {"Type": "forward", "TargetGroupArn": TG[group]}


def _bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        (bin_dir / "aws").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
        (bin_dir / "aws").chmod(0o755)
        (bin_dir / "python3").symlink_to(sys.executable)
    return bin_dir


def _env(tmp_path: Path, world: Path) -> dict[str, str]:
    return {
        "PATH": f"{_bin(tmp_path)}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "CALLS": str(tmp_path / "calls.log"),
        "FAKE_WORLD": str(world),
    }


def _release(tmp_path: Path, world: Path, version: str, *extra: str):
    plan = tmp_path / f"plan-{version}.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--stack", "points-service", "--green-version", version,
         "--region", "us-east-1", "--plan", str(plan), *extra],
        capture_output=True, text=True, timeout=120, env=_env(tmp_path, world),
    )  # fmt: skip
    return proc, (json.loads(plan.read_text()) if plan.exists() else None)


def _deployed(world: Path, version: str, *, succeeded: bool) -> None:
    """What CodeDeploy leaves behind: on success the replacement group serves production and the
    new task set is primary; after a rollback nothing changed."""
    if not succeeded:
        return
    data = json.loads(world.read_text())
    params = {p["ParameterKey"]: p["ParameterValue"] for p in data["stack"]["Parameters"]}
    data["listeners"][LISTENER]["DefaultActions"] = [_forward(params["ReplacementTargetGroup"])]
    data["task_definitions"][_taskdef_arn(version)] = _taskdef(version)
    data["service"]["taskSets"] = [{"status": "PRIMARY", "taskDefinition": _taskdef_arn(version)}]
    world.write_text(json.dumps(data))


def _watched(tmp_path: Path, world: Path) -> dict[str, list[str]]:
    """What the rollback alarms watch in the (fake) AWS now, asked as an operator would."""
    names = [*VERSION_ALARMS, *ALB_ALARMS, "points-service-alb-blue-5xx"]
    proc = subprocess.run(
        ["aws", "cloudwatch", "describe-alarms", "--alarm-names", *names],
        capture_output=True, text=True, timeout=60, env=_env(tmp_path, world),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    watched = {}
    for alarm in json.loads(proc.stdout)["MetricAlarms"]:
        dims = list(alarm.get("Dimensions", []))
        for metric in alarm.get("Metrics", []):
            dims += metric.get("MetricStat", {}).get("Metric", {}).get("Dimensions", [])
        watched[alarm["AlarmName"]] = sorted({f"{d['Name']}={d['Value']}" for d in dims})
    return watched


def _check(watched: dict[str, list[str]], *, green: str, replacement_group: str) -> None:
    for name in VERSION_ALARMS:
        assert watched[name] == ["Service=points-service", f"Version={green}"], name
    for name in ALB_ALARMS:
        assert watched[name] == [f"LoadBalancer={LB}", f"TargetGroup={replacement_group}"], name
    serving = TG_GREEN if replacement_group == TG_BLUE else TG_BLUE
    assert watched["points-service-alb-blue-5xx"] == [
        f"LoadBalancer={LB}",
        f"TargetGroup={serving}",
    ]


def _calls(tmp_path: Path, verb: str) -> list[str]:
    log = tmp_path / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if line.startswith(f"aws cloudformation {verb}")]


def test_two_consecutive_releases_each_watch_their_version_and_replacement_group(
    tmp_path: Path,
) -> None:
    world = _world(tmp_path)
    # Release 1: v1 serves from the blue group; v2 goes to green.
    proc, plan = _release(tmp_path, world, "v2")
    assert proc.returncode == 0, proc.stderr
    assert plan["parameters"] == {
        "BlueVersion": "v1", "GreenVersion": "v2", "ReplacementTargetGroup": "green",
    }  # fmt: skip
    assert plan["running_task_definition"] == _taskdef_arn("v1")
    _check(_watched(tmp_path, world), green="v2", replacement_group=TG_GREEN)
    _deployed(world, "v2", succeeded=True)

    # Release 2: v2 now serves from the green group; v3 goes to blue. Nobody typed anything.
    proc, plan = _release(tmp_path, world, "v3")
    assert proc.returncode == 0, proc.stderr
    assert plan["parameters"] == {
        "BlueVersion": "v2", "GreenVersion": "v3", "ReplacementTargetGroup": "blue",
    }  # fmt: skip
    _check(_watched(tmp_path, world), green="v3", replacement_group=TG_BLUE)
    assert plan["alarms"]["points-service-alb-green-5xx"] == [
        f"LoadBalancer={LB}", f"TargetGroup={TG_BLUE}",
    ]  # fmt: skip
    # Release 1 found the stack already pointed at v2 (step 3 of the docs set it): one update.
    [update] = _calls(tmp_path, "update-stack")
    assert "--use-previous-template" in update
    # v3 is rolled back: v2 still serves from green, so release 3 again uses blue.
    _deployed(world, "v3", succeeded=False)
    proc, plan = _release(tmp_path, world, "v4")
    assert proc.returncode == 0, proc.stderr
    assert plan["parameters"] == {
        "BlueVersion": "v2", "GreenVersion": "v4", "ReplacementTargetGroup": "blue",
    }  # fmt: skip
    _check(_watched(tmp_path, world), green="v4", replacement_group=TG_BLUE)
    # The worker's own alarms follow the worker's version, which API releases leave alone.
    worker_alarms = {k: v for k, v in plan["alarms"].items() if "-worker-new-" in k}
    assert worker_alarms and all(
        any(d == "Version=w1" for d in dims) for dims in worker_alarms.values()
    ), worker_alarms


def test_only_the_three_parameters_change_everything_else_keeps_its_value(tmp_path: Path) -> None:
    world = _world(tmp_path)
    before = {p["ParameterKey"]: p["ParameterValue"] for p in json.loads(world.read_text())["stack"]["Parameters"]}  # fmt: skip
    proc, _ = _release(tmp_path, world, "v7")
    assert proc.returncode == 0, proc.stderr
    [call] = _calls(tmp_path, "update-stack")
    sent = json.loads(call.split("--parameters ", 1)[1].rsplit(" --output", 1)[0])
    changed = {p["ParameterKey"]: p["ParameterValue"] for p in sent if "ParameterValue" in p}
    assert changed == {"BlueVersion": "v1", "GreenVersion": "v7", "ReplacementTargetGroup": "green"}
    kept = {p["ParameterKey"] for p in sent if p.get("UsePreviousValue") is True}
    assert kept == set(before) - set(changed)
    assert "CAPABILITY_IAM" in call


def test_a_repeated_release_needs_no_stack_update(tmp_path: Path) -> None:
    world = _world(tmp_path)
    assert _release(tmp_path, world, "v3")[0].returncode == 0
    proc, _ = _release(tmp_path, world, "v3")  # the same build retried
    assert proc.returncode == 0, proc.stderr
    assert "no stack update" in proc.stdout
    assert len(_calls(tmp_path, "update-stack")) == 1


def test_dry_run_renders_what_each_alarm_would_watch_and_changes_nothing(tmp_path: Path) -> None:
    world = _world(tmp_path)
    _deployed(world, "v2", succeeded=True)  # v2 serving from green
    before = json.loads(world.read_text())
    proc, plan = _release(tmp_path, world, "v3", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert _calls(tmp_path, "update-stack") == []
    assert json.loads(world.read_text()) == before
    assert plan["alarms"]["points-service-green-latency-avg"] == [
        "Service=points-service", "Version=v3",
    ]  # fmt: skip
    assert plan["alarms"]["points-service-alb-green-response-time"] == [
        f"LoadBalancer={LB}", f"TargetGroup={TG_BLUE}",
    ]  # fmt: skip
    assert plan["changed"]["GreenVersion"] == ["v2", "v3"]
    assert "points-service-green-latency-avg" in proc.stdout and "dry run" in proc.stdout


def test_ecs_native_stacks_read_the_production_rule_weights(tmp_path: Path) -> None:
    world = _world(tmp_path, native=True)
    data = json.loads(world.read_text())
    data["rules"][RULE] = {"Actions": [_forward("green", weighted=True)]}
    world.write_text(json.dumps(data))
    proc, plan = _release(tmp_path, world, "v2", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert plan["parameters"]["ReplacementTargetGroup"] == "blue"
    assert plan["parameters"]["BlueVersion"] == "v1"  # the service's task definition


def test_a_release_during_a_traffic_shift_is_refused(tmp_path: Path) -> None:
    world = _world(tmp_path)
    data = json.loads(world.read_text())
    data["listeners"][LISTENER]["DefaultActions"] = [{"Type": "forward", "ForwardConfig": {
        "TargetGroups": [{"TargetGroupArn": TG["blue"], "Weight": 70},
                         {"TargetGroupArn": TG["green"], "Weight": 30}]}}]  # fmt: skip
    world.write_text(json.dumps(data))
    proc, _ = _release(tmp_path, world, "v2")
    assert proc.returncode == 1
    assert "deployment is in progress" in proc.stderr and proc.stderr.count("\n") == 1
    assert _calls(tmp_path, "update-stack") == []


def test_alarms_that_do_not_follow_after_the_update_fail_the_step(tmp_path: Path) -> None:
    """The read-back check can fail: an update that did not reach the alarms is caught."""
    world = _world(tmp_path)
    data = json.loads(world.read_text())
    data["ignore_updates"] = True
    world.write_text(json.dumps(data))
    proc, _ = _release(tmp_path, world, "v5")
    assert proc.returncode == 1
    assert "points-service-green-latency-avg watches" in proc.stderr
    assert "Version=v2" in proc.stderr and "Version=v5" in proc.stderr


def test_a_stack_from_an_older_template_is_named(tmp_path: Path) -> None:
    world = _world(tmp_path)
    data = json.loads(world.read_text())
    data["stack"]["Parameters"] = [
        p for p in data["stack"]["Parameters"] if p["ParameterKey"] != "ReplacementTargetGroup"
    ]
    world.write_text(json.dumps(data))
    proc, _ = _release(tmp_path, world, "v2")
    assert proc.returncode == 1
    assert "older deploy/stack.yaml" in proc.stderr and "ReplacementTargetGroup" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stack", "points-service", "--green-version", "v 2"], "--green-version"),
        (["--stack", "bad_name!", "--green-version", "v2"], "--stack"),
        (["--stack", "s", "--green-version", "v2", "--region", "moon"], "--region"),
        (
            ["--stack", "s", "--green-version", "v2", "--alarms-template", "/nonexistent"],
            "cannot read",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True, text=True, timeout=60, env=_env(tmp_path, _world(tmp_path)),
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("point_alarms: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ([], "is not a JSON object"),
        ({"Resources": []}, "not objects"),
        ({"Resources": {"A": None}}, "resource A is not an object"),
        ({"Resources": {"A": {"Type": "AWS::CloudWatch::Alarm"}}}, "no Properties.AlarmName"),
        ({}, "names no rollback alarm"),  # nothing to check after the update: refused
        ({"Outputs": {"DeploymentAlarmNames": {"Value": "a"}}}, "has no such alarm"),
        (
            {
                "Resources": {"A": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
                    "AlarmName": "a", "Dimensions": [{"Name": "V", "Value": {"Ref": "Nope"}}],
                }}},
                "Outputs": {"DeploymentAlarmNames": {"Value": "a"}},
            },
            "unknown parameter 'Nope'",
        ),
    ],
)  # fmt: skip
def test_a_malformed_alarms_template_is_one_line_and_exit_2(
    tmp_path: Path, template: object, message: str
) -> None:
    path = tmp_path / "alarms.json"
    path.write_text(json.dumps(template))
    proc, _ = _release(
        tmp_path, _world(tmp_path), "v2", "--dry-run", "--alarms-template", str(path)
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("point_alarms: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_an_alarms_template_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "alarms.json"
    path.write_bytes(b"\xff\xfe{}")
    proc, _ = _release(
        tmp_path, _world(tmp_path), "v2", "--dry-run", "--alarms-template", str(path)
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("point_alarms: ") and "is not UTF-8 JSON" in proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("args", [[], ["--stack"], ["--stack", "s", "--green-version", "v2", "-x"]])
def test_usage_errors_are_one_line(tmp_path: Path, args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("point_alarms: ") and proc.stderr.count("\n") == 1


# -- the buildspec, end to end, with the repository's own pre-deploy hooks ----------------------


def _buildspec(
    tmp_path: Path, world: Path, dry_run: str
) -> tuple[subprocess.CompletedProcess, Path]:
    work = tmp_path / "src"
    (work / "deploy").mkdir(parents=True)
    (work / "Dockerfile").symlink_to(ROOT / "Dockerfile")
    (work / "points").symlink_to(ROOT / "points")  # hooks may run `python3 -m points ...`
    for item in DEPLOY.iterdir():
        (work / "deploy" / item.name).symlink_to(item)
    docker = _bin(tmp_path) / "docker"
    docker.write_text(
        '#!/bin/sh\necho "docker $*" >> "$CALLS"\n[ "$1" = login ] && cat >/dev/null\nexit 0\n'
    )
    docker.chmod(0o755)
    env = {
        **_env(tmp_path, world),
        **{k: str(v) for k, v in SPEC["env"]["variables"].items()},
        "RUN_TESTS": "false",
        "DRY_RUN": dry_run,
        "AWS_REGION": "us-east-1",
        "CODEBUILD_RESOLVED_SOURCE_VERSION": COMMIT,
        "CODEBUILD_BUILD_SUCCEEDING": "1",
    }
    proc = subprocess.run(
        ["bash", "-c", _script()], cwd=work, env=env, capture_output=True, text=True, timeout=180
    )
    return proc, work


@pytest.mark.parametrize("dry_run", ["true", "false"])
def test_buildspec_renders_guards_and_points_the_alarms(tmp_path: Path, dry_run: str) -> None:
    world = _world(tmp_path)
    proc, work = _buildspec(tmp_path, world, dry_run)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tag = COMMIT[:12]
    assert (work / "taskdef.json").is_file() and (work / "appspec.yaml").is_file()
    plan = json.loads((work / "alarm-targets.json").read_text())
    assert plan["parameters"] == {
        "BlueVersion": "v1", "GreenVersion": tag, "ReplacementTargetGroup": "green",
    }  # fmt: skip
    assert plan["alarms"]["points-service-green-error-rate"] == [
        "Service=points-service", f"Version={tag}",
    ]  # fmt: skip
    hooks = sorted(p.name for p in (DEPLOY / "pre-deploy.d").iterdir() if os.access(p, os.X_OK))
    assert hooks[-1] == "90-point-alarms"  # last: after every check that may refuse the release
    for hook in hooks:
        assert f"pre-deploy hook deploy/pre-deploy.d/{hook}" in proc.stdout
    updates = _calls(tmp_path, "update-stack")
    if dry_run == "true":
        assert updates == [] and "dry run" in proc.stdout
    else:
        assert len(updates) == 1
        _check(_watched(tmp_path, world), green=tag, replacement_group=TG_GREEN)


def test_alarms_made_for_another_service_are_refused(tmp_path: Path) -> None:
    """A stage stack (ServiceName=points-preprod) packaged with an alarms template synthesized for
    another name watches metrics nobody emits (Service=points-service): no alarm could ever roll
    the deployment back. Pointing them at the release would "succeed", so it refuses instead."""
    world = _world(tmp_path)
    data = json.loads(world.read_text())
    for output in data["stack"]["Outputs"]:
        if output["OutputKey"] == "ServiceName":
            output["OutputValue"] = "points-preprod"
    world.write_text(json.dumps(data))
    for extra in ((), ("--dry-run",)):
        proc, _ = _release(tmp_path, world, "v2", *extra)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert "watch Service=points-service" in proc.stderr
        assert "--service points-preprod" in proc.stderr
    assert json.loads(world.read_text())["stack"]["Parameters"] == data["stack"]["Parameters"]
