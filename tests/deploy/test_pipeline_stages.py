"""deploy/pipeline.yaml's progressive delivery: pre-production first (build, checks, blue/green,
then a bake watched by the stage's own rollback alarms), production only after it; each stage the
same deploy/stack.yaml with its own parameters and alarms (`python -m alarms synth --service`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from alarms import POINTS_SERVICE_SPEC, load_spec, rollback_alarm_names, synth
from alarms._spec import (
    STACK_SERVICE_NAME,
    STACK_WORKER_SERVICE_NAME,
    SpecError,
    with_names,
)
from tests.deploy._cfn import DEPLOY, load


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return load(DEPLOY / "pipeline.yaml")


def _stage(pipeline: dict, name: str) -> dict:
    stages = pipeline["Resources"]["Pipeline"]["Properties"]["Stages"]
    return next(s for s in stages if s["Name"] == name)


def _env(action: dict) -> dict[str, str]:
    raw = action["Configuration"]["EnvironmentVariables"]["Fn::Sub"]
    return {v["name"]: v["value"] for v in json.loads(raw)}


@pytest.mark.parametrize(
    ("stage", "stack", "service", "env"),
    [
        ("PreProduction", "${PreProdStackName}", "PreProdServiceName", {}),
        ("Production", "${ServiceStackName}", "ServiceName", {"RUN_TESTS": "false"}),
    ],
)
def test_each_stage_builds_against_its_own_stack_then_deploys_it(
    pipeline: dict, stage: str, stack: str, service: str, env: dict
) -> None:
    build, deploy = _stage(pipeline, stage)["Actions"]
    assert build["ActionTypeId"]["Provider"] == "CodeBuild"
    assert build["Configuration"]["ProjectName"] == {"Ref": "BuildProject"}
    assert _env(build) == {"STACK_NAME": stack, **env}
    assert deploy["ActionTypeId"]["Provider"] == "CodeDeployToECS"
    assert build["RunOrder"] < deploy["RunOrder"]
    [output] = build["OutputArtifacts"]
    assert deploy["InputArtifacts"] == [output]
    config = deploy["Configuration"]
    for key in ("TaskDefinitionTemplateArtifact", "AppSpecTemplateArtifact", "Image1ArtifactName"):
        assert config[key] == output["Name"]
    assert config["ApplicationName"] == {"Ref": service}
    assert config["DeploymentGroupName"] == {"Fn::Sub": f"${{{service}}}-dg"}


def test_pre_production_comes_first_and_its_bake_gates_production(pipeline: dict) -> None:
    stages = [s["Name"] for s in pipeline["Resources"]["Pipeline"]["Properties"]["Stages"]]
    assert stages.index("PreProduction") < stages.index("Production")
    [condition] = _stage(pipeline, "PreProduction")["OnSuccess"]["Conditions"]
    assert condition["Result"] == "ROLLBACK"
    rules = condition["Rules"]
    assert {r["RuleTypeId"]["Provider"] for r in rules} == {"CloudWatchAlarm"}
    assert all(r["Configuration"]["WaitTime"] == {"Ref": "BakeMinutes"} for r in rules)
    # Exactly the pre-production stack's rollback alarms: the generated names for its service.
    spec = with_names(load_spec(POINTS_SERVICE_SPEC), service="stageplaceholder")
    expected = [
        n.replace("stageplaceholder", "${PreProdServiceName}")
        for n in rollback_alarm_names(synth(spec, "cloudformation"))
    ]
    assert [r["Configuration"]["AlarmName"]["Fn::Sub"] for r in rules] == expected
    assert len({r["Name"] for r in rules}) == len(rules)


def test_the_pipeline_may_read_the_bake_alarms_and_deploy_both_stages(pipeline: dict) -> None:
    role = pipeline["Resources"]["PipelineRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    by_sid = {s.get("Sid"): s for s in role["Statement"] if isinstance(s, dict)}
    assert by_sid["BakeAlarms"]["Action"] == "cloudwatch:DescribeAlarms"
    baked = [r["Fn::Sub"].split(":alarm:")[1] for r in by_sid["BakeAlarms"]["Resource"]]
    assert baked and all(n.startswith("${PreProdServiceName}-") and "*" not in n for n in baked)
    groups = [r["Fn::Sub"] for r in by_sid["Deploy"]["Resource"]]
    assert any(
        g.endswith("deploymentgroup:${PreProdServiceName}/${PreProdServiceName}-dg") for g in groups
    )
    assert any(g.endswith("deploymentgroup:${ServiceName}/${ServiceName}-dg") for g in groups)


def test_synth_for_another_stage_renames_alarms_and_the_service_dimension() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "alarms", "synth", "--spec", str(POINTS_SERVICE_SPEC),
         "--format", "cloudformation", "--service", "points-preprod",
         "--worker-service", "points-preprod-worker"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    template = json.loads(proc.stdout)
    names = rollback_alarm_names(template)
    assert names and all(n.startswith("points-preprod-") for n in names)
    text = json.dumps(template)
    assert '"Value": "points-service"' not in text and '"Value": "points-worker"' not in text
    assert '"Value": "points-preprod"' in text and '"Value": "points-preprod-worker"' in text
    # The stack's parameters are the same: one stack template for every stage.
    default = json.loads((DEPLOY / "alarms.json").read_text())
    assert template["Parameters"] == default["Parameters"]


@pytest.mark.parametrize(
    ("service", "worker"),
    [("bad name", None), ("", None), (None, "x/y"), ("a" * 200, None),
     # names deploy/stack.yaml refuses as ServiceName / WorkerServiceName (ELB, ECS, CloudWatch)
     ("points.preprod", None), ("Points-Preprod", None), ("points_preprod", None),
     ("preprod-", None), ("internal-points", None), ("1points", None), ("-points", None),
     ("a" * 25, None), ("p\u00f6ints", None), (None, "Worker"), (None, "points_worker"),
     (None, "points.worker"), (None, "9worker"), (None, "w" * 33), (None, "")],
)  # fmt: skip
def test_a_bad_stage_name_is_refused(service: str | None, worker: str | None) -> None:
    with pytest.raises(SpecError):
        with_names(load_spec(POINTS_SERVICE_SPEC), service, worker)


@pytest.mark.parametrize(
    ("flag", "value", "parameter"),
    [("--service", "a", "ServiceName"), ("--service", "a" * 24, "ServiceName"),
     ("--service", "Points", "ServiceName"), ("--service", "points.preprod", "ServiceName"),
     ("--service", "preprod-", "ServiceName"), ("--service", "internal-x", "ServiceName"),
     ("--service", "a" * 25, "ServiceName"), ("--worker-service", "w" * 32, "WorkerServiceName"),
     ("--worker-service", "Worker_1", "WorkerServiceName"),
     ("--worker-service", "w" * 33, "WorkerServiceName")],
)  # fmt: skip
def test_synth_takes_exactly_the_stage_names_the_stack_takes(
    tmp_path, flag: str, value: str, parameter: str
) -> None:
    """`synth --service` is for a stage of deploy/stack.yaml: a name that stack (its parameter's
    AllowedPattern, ELB's and ECS's rules) would refuse is refused here, in one line, exit 2,
    before any template is written."""
    out = tmp_path / "alarms.json"
    proc = subprocess.run(
        [sys.executable, "-m", "alarms", "synth", "--spec", str(POINTS_SERVICE_SPEC),
         "--format", "cloudformation", f"{flag}={value}", "-o", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    stack = load(DEPLOY / "stack.yaml")["Parameters"][parameter]
    taken = re.fullmatch(stack["AllowedPattern"], value) is not None
    if taken:
        assert proc.returncode == 0, proc.stderr
        assert json.loads(out.read_text())["Metadata"]
    else:
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{flag}: must be a {parameter} the stack takes" in proc.stderr
        assert not out.exists()


def test_the_stage_name_rules_are_the_stacks_and_the_pipelines(pipeline: dict) -> None:
    stack = load(DEPLOY / "stack.yaml")["Parameters"]
    assert stack["ServiceName"]["AllowedPattern"] == STACK_SERVICE_NAME
    assert stack["WorkerServiceName"]["AllowedPattern"] == STACK_WORKER_SERVICE_NAME
    for name in ("ServiceName", "PreProdServiceName"):
        assert pipeline["Parameters"][name]["AllowedPattern"] == STACK_SERVICE_NAME


def test_a_stages_request_shapes_target_its_own_deployment_group_and_ecs_service() -> None:
    """`synth --format json --service` for a stage: the CodeDeploy application and group and the
    worker's ECS service are the stage's (they were the spec's: applying the stage's alarms would
    have re-pointed production's deployment group at them)."""
    spec = with_names(load_spec(POINTS_SERVICE_SPEC), "points-preprod", "points-preprod-worker")
    shapes = synth(spec, "json")
    assert shapes["CodeDeploy"]["applicationName"] == "points-preprod"
    assert shapes["CodeDeploy"]["currentDeploymentGroupName"] == "points-preprod-dg"
    [ecs] = shapes["EcsServices"]
    assert ecs["service"] == "points-preprod-worker"
    assert ecs["cluster"] == "points-preprod"  # the stack's cluster is named after ServiceName
    names = [a["name"] for a in shapes["CodeDeploy"]["alarmConfiguration"]["alarms"]]
    assert names and all(n.startswith("points-preprod-") for n in names)


@pytest.mark.parametrize(
    ("value", "taken"),
    [("1", True), ("10", True), ("59", True), ("60", True), ("0", False), ("61", False),
     ("2.5", False), ("1e1", False), ("010", False), ("+5", False), (" 5", False), ("", False),
     ("\uff15", False), ("-1", False)],
)  # fmt: skip
def test_the_bake_is_whole_minutes_from_1_to_60(pipeline: dict, value: str, taken: bool) -> None:
    parameter = pipeline["Parameters"]["BakeMinutes"]
    assert parameter["Type"] == "String"  # a Number would take 2.5 and 1e1
    assert (re.fullmatch(parameter["AllowedPattern"], value) is not None) is taken
    assert re.fullmatch(parameter["AllowedPattern"], parameter["Default"])


def test_the_specs_ecs_targets_are_what_the_stack_creates() -> None:
    """The shipped spec's worker update targets the stack's own cluster (``ClusterName:
    !Ref ServiceName``) and worker service (``WorkerServiceName``), at their defaults: ``alarms
    apply`` must not update a cluster the stack never creates."""
    stack = load(DEPLOY / "stack.yaml")
    assert stack["Resources"]["Cluster"]["Properties"]["ClusterName"] == {"Ref": "ServiceName"}
    params = stack["Parameters"]
    spec = load_spec(POINTS_SERVICE_SPEC)
    assert spec.service == params["ServiceName"]["Default"]
    assert spec.deployment.worker_cluster == params["ServiceName"]["Default"]
    assert spec.deployment.worker_ecs_service == params["WorkerServiceName"]["Default"]
    assert spec.deployment.application == params["ServiceName"]["Default"]
