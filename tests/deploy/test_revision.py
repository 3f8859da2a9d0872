"""deploy/render_revision.py (the CLI buildspec.yml and the docs run) and deploy/buildspec.yml."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
import yaml

from tests.deploy._cfn import DEPLOY, load, lower_first

SCRIPT = DEPLOY / "render_revision.py"
OUTPUTS = {
    "ServiceName": "points-service",
    "ExecutionRoleArn": "arn:aws:iam::123456789012:role/exec",
    "ApiTaskRoleArn": "arn:aws:iam::123456789012:role/api",
    "LogGroupName": "/ecs/points-service",
    "PointsTableName": "points-service-ledger",
    "CollectorConfigParameter": "/points-service/otel-collector-config",
    "CollectorImageUri": "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3",
    "ApiSubnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    "ApiSecurityGroupId": "sg-0123456789abcdef0",
    "ApiAssignPublicIp": "ENABLED",
    "CodeDeployApplication": "points-service",
    "DeploymentGroupName": "points-service-dg",
    "AuthIssuer": "https://issuer.example.com/",
    "AuthAudience": "points-service",
    "AuthJwksUrl": "https://issuer.example.com/.well-known/jwks.json",
}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def _describe_stacks_output(tmp_path: Path, outputs: dict[str, str]) -> Path:
    path = tmp_path / "outputs.json"
    # The shape of `aws cloudformation describe-stacks --query 'Stacks[0].Outputs'`.
    path.write_text(json.dumps([{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]))
    return path


def test_every_output_the_renderer_reads_is_a_stack_output() -> None:
    stack_outputs = set(load(DEPLOY / "stack.yaml")["Outputs"])
    assert set(OUTPUTS) <= stack_outputs


def test_renders_the_pipeline_revision(tmp_path: Path) -> None:
    outputs = _describe_stacks_output(tmp_path, OUTPUTS)
    proc = _run(
        "--outputs", str(outputs), "--region", "ap-northeast-1", "--version", "v2",
        "--set-env", "RATE_LIMIT_ENABLED=true", "--set-env", "RATE_LIMIT_RPS=5",
        "--out", str(tmp_path / "rev"), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    taskdef = json.loads((tmp_path / "rev" / "taskdef.json").read_text())
    assert "${" not in json.dumps(taskdef)  # every placeholder filled
    assert taskdef["family"] == "points-service-api"
    assert taskdef["executionRoleArn"] == OUTPUTS["ExecutionRoleArn"]
    app = taskdef["containerDefinitions"][0]
    assert app["image"] == "<IMAGE1_NAME>"  # CodePipeline fills it from imageDetail.json
    env = {e["name"]: e["value"] for e in app["environment"]}
    assert env["APP_VERSION"] == "v2"
    assert env["RATE_LIMIT_ENABLED"] == "true" and env["RATE_LIMIT_RPS"] == "5"
    assert env["POINTS_TABLE"] == "points-service-ledger" and env["AWS_REGION"] == "ap-northeast-1"
    assert app["logConfiguration"]["options"]["awslogs-region"] == "ap-northeast-1"
    appspec = yaml.safe_load((tmp_path / "rev" / "appspec.yaml").read_text())
    target = appspec["Resources"][0]["TargetService"]["Properties"]
    assert target["TaskDefinition"] == "<TASK_DEFINITION>"
    assert not (tmp_path / "rev" / "create-deployment.json").exists()


def test_renders_a_manual_deployment(tmp_path: Path) -> None:
    outputs = _describe_stacks_output(tmp_path, OUTPUTS)
    arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/points-service-api:7"
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/points-service:v2"
    proc = _run(
        "--outputs", str(outputs), "--region", "us-east-1", "--version", "v2", "--image", image,
        "--task-definition-arn", arn, "--out", str(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    taskdef = json.loads((tmp_path / "taskdef.json").read_text())
    assert taskdef["containerDefinitions"][0]["image"] == image
    body = json.loads((tmp_path / "create-deployment.json").read_text())
    assert body["applicationName"] == "points-service"
    assert body["deploymentGroupName"] == "points-service-dg"
    content = yaml.safe_load(body["revision"]["appSpecContent"]["content"])
    props = content["Resources"][0]["TargetService"]["Properties"]
    assert props["TaskDefinition"] == arn
    assert props["LoadBalancerInfo"] == {"ContainerName": "app", "ContainerPort": 8080}
    # the deployment keeps the network configuration the stack created the service with
    assert props["NetworkConfiguration"] == {
        "AwsvpcConfiguration": {
            "Subnets": OUTPUTS["ApiSubnetIds"].split(","),
            "SecurityGroups": [OUTPUTS["ApiSecurityGroupId"]],
            "AssignPublicIp": "ENABLED",
        }
    }


def test_a_deployment_moves_the_api_to_private_subnets(tmp_path: Path) -> None:
    """A CODE_DEPLOY service's network changes only through a deployment: the AppSpec carries it."""
    outputs = _describe_stacks_output(tmp_path, OUTPUTS)
    private = "subnet-0aaaaaaaaaaaaaaa1,subnet-0aaaaaaaaaaaaaaa2"
    proc = _run(
        "--outputs", str(outputs), "--region", "us-east-1", "--version", "v3",
        "--subnets", private, "--assign-public-ip", "DISABLED", "--out", str(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    appspec = yaml.safe_load((tmp_path / "appspec.yaml").read_text())
    vpc = appspec["Resources"][0]["TargetService"]["Properties"]["NetworkConfiguration"]
    assert vpc["AwsvpcConfiguration"] == {
        "Subnets": private.split(","),
        "SecurityGroups": [OUTPUTS["ApiSecurityGroupId"]],
        "AssignPublicIp": "DISABLED",
    }


def test_without_network_outputs_the_appspec_keeps_the_service_network(tmp_path: Path) -> None:
    older = {k: v for k, v in OUTPUTS.items() if not k.startswith("Api") or k == "ApiTaskRoleArn"}
    proc = _run(
        "--outputs", str(_describe_stacks_output(tmp_path, older)), "--region", "us-east-1",
        "--version", "v2", "--out", str(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    appspec = yaml.safe_load((tmp_path / "appspec.yaml").read_text())
    assert "NetworkConfiguration" not in appspec["Resources"][0]["TargetService"]["Properties"]


@pytest.mark.parametrize(
    ("drop", "version", "region", "extra", "message"),
    [
        ("ApiTaskRoleArn", "v2", "us-east-1", [], "missing stack output ApiTaskRoleArn"),
        (None, "v 2", "us-east-1", [], "--version must be"),
        (None, "v2", "mars", [], "--region does not look like"),
        (None, "v2", "us-east-1", ["--set-env", "APP_VERSION=x"], "set APP_VERSION with"),
        # the alarms would watch metrics this release no longer emits
        (None, "v2", "us-east-1", ["--set-env", "OTEL_SERVICE_NAME=x"], "OTEL_SERVICE_NAME cannot"),
        (None, "v2", "us-east-1", ["--set-env", "AWS_EMF_NAMESPACE=x"], "AWS_EMF_NAMESPACE cannot"),
        (None, "v2", "us-east-1", ["--set-env", "PORT=9090"], "PORT cannot be set"),
        # what the stack wires: its outputs (the task role's table, the token issuer) and the task
        (None, "v2", "us-east-1", ["--set-env", "POINTS_TABLE=other"], "stack's PointsTableName"),
        (None, "v2", "us-east-1", ["--set-env", "AUTH_ISSUER=https://x"], "stack's AuthIssuer"),
        (None, "v2", "us-east-1", ["--set-env", "AUTH_AUDIENCE=x"], "stack's AuthAudience"),
        (None, "v2", "us-east-1", ["--set-env", "AUTH_JWKS_URL=https://x"], "stack's AuthJwksUrl"),
        (None, "v2", "us-east-1", ["--set-env", "AWS_REGION=eu-west-1"], "stack's Region"),
        (None, "v2", "us-east-1", ["--set-env", "POINTS_STORE=sqlite"], "POINTS_STORE cannot"),
        (
            None,
            "v2",
            "us-east-1",
            ["--set-env", "OTEL_EXPORTER_OTLP_ENDPOINT=http://x:4318"],
            "sidecar",
        ),
        (None, "v2", "us-east-1", ["--set-env", "TMPDIR=/var"], "TMPDIR cannot be set"),
        (None, "v2", "us-east-1", ["--subnets", "subnet-1; rm -rf /"], "--subnets must be"),
        (None, "v2", "us-east-1", ["--subnets", ""], "--subnets must be"),
        # EC2's IDs have 8 or 17 hex digits, nothing in between
        (None, "v2", "us-east-1", ["--subnets", "subnet-0123456789abc"], "--subnets must be"),
        (
            None,
            "v2",
            "us-east-1",
            ["--subnets", "subnet-0123abcd,subnet-0123abcde"],
            "--subnets must",
        ),
        (None, "v2", "us-east-1", ["--assign-public-ip", "yes"], "--assign-public-ip must be"),
        # written into the AppSpec: a line break would add YAML (here a hook) of its own
        (
            None,
            "v2",
            "us-east-1",
            ["--task-definition-arn", "arn:x\nHooks:\n  - BeforeInstall: evil"],
            "--task-definition-arn is not an ECS task definition ARN",
        ),
        (
            None,
            "v2",
            "us-east-1",
            ["--task-definition-arn", "arn:aws:ecs:us-east-1:123456789012:task-definition/a:0"],
            "--task-definition-arn is not",
        ),
        (None, "v2", "us-east-1", ["--set-env", "NOEQUALS"], "expected NAME=VALUE"),
        # ECS's image rule: 1-255 of letters, digits, - _ : . / # (and @ for a digest)
        (None, "v2", "us-east-1", ["--image", ""], "--image must be"),
        (None, "v2", "us-east-1", ["--image", "repo/points service:v2"], "--image must be"),
        (None, "v2", "us-east-1", ["--image", "repo:v2\nx"], "--image must be"),
        (None, "v2", "us-east-1", ["--image", "r/" + "a" * 254], "--image must be"),
        (None, "v2", "us-east-1", ["--image", "r\u00e9po:v2"], "--image must be"),
        (None, "v2", "us-east-1", ["--no-such-option"], "unrecognized arguments"),
        (
            "ApiSecurityGroupId",
            "v2",
            "us-east-1",
            ["--subnets", "subnet-0123456789abcdef0"],
            "ApiSecurityGroupId is not a security group",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, drop: str | None, version: str, region: str, extra: list[str], message: str
) -> None:
    outputs = {k: v for k, v in OUTPUTS.items() if k != drop}
    path = _describe_stacks_output(tmp_path, outputs)
    proc = _run(
        "--outputs", str(path), "--region", region, "--version", version, *extra,
        "--out", str(tmp_path / "o"), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "taskdef.json").exists()


@pytest.mark.parametrize("stacks", [[], [None], "x", [["Outputs"]]])
def test_describe_stacks_output_without_a_stack_is_one_line(tmp_path: Path, stacks) -> None:
    (tmp_path / "outputs.json").write_text(json.dumps({"Stacks": stacks}))
    proc = _run(
        "--outputs", str(tmp_path / "outputs.json"), "--region", "us-east-1", "--version", "v2",
        "--out", str(tmp_path / "o"), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "holds no stack" in proc.stderr


def test_unreadable_outputs_file(tmp_path: Path) -> None:
    (tmp_path / "outputs.json").write_text("{not json")
    proc = _run(
        "--outputs", str(tmp_path / "outputs.json"), "--region", "us-east-1", "--version", "v2",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and "is not JSON" in proc.stderr


@pytest.mark.parametrize(
    "image",
    [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/points-service:v2",
        "localhost:5000/points_service:build#7",
        "public.ecr.aws/docker/library/python@sha256:" + "0" * 64,
        "<IMAGE1_NAME>",
    ],
)
def test_images_ecs_accepts_are_rendered(tmp_path: Path, image: str) -> None:
    path = _describe_stacks_output(tmp_path, OUTPUTS)
    proc = _run(
        "--outputs", str(path), "--region", "us-east-1", "--version", "v2", "--image", image,
        "--out", str(tmp_path / "o"), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    taskdef = json.loads((tmp_path / "o" / "taskdef.json").read_text())
    assert taskdef["containerDefinitions"][0]["image"] == image


def test_outputs_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "outputs.json").write_bytes(b"\xff\xfe{}")
    proc = _run(
        "--outputs", str(tmp_path / "outputs.json"), "--region", "us-east-1", "--version", "v2",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "is not UTF-8 JSON" in proc.stderr


def test_buildspec_hands_codedeploy_the_revision() -> None:
    spec = yaml.safe_load((DEPLOY / "buildspec.yml").read_text())
    assert spec["version"] == 0.2
    assert set(spec["artifacts"]["files"]) == {"imageDetail.json", "taskdef.json", "appspec.yaml"}
    commands = " ".join(c for phase in spec["phases"].values() for c in phase.get("commands", []))
    assert "docker push" in commands and "imageDetail.json" in commands
    assert "deploy/render_revision.py" in commands


def test_manual_release_goes_through_the_aws_apis(tmp_path: Path, aws_env: dict[str, str]) -> None:
    """The docs' release steps with boto3 over HTTP (moto): the rendered task definition and
    deployment input pass botocore's validation against the real API models, ECS registers the
    task definition, and CodeDeploy accepts the deployment for a group configured like the
    stack's (blue/green, traffic control, rollback on alarm)."""
    # Unique names: the moto server is shared by the whole test session.
    suffix = uuid.uuid4().hex[:8]
    app_name, group_name = f"points-{suffix}", f"points-{suffix}-dg"
    outputs = _describe_stacks_output(
        tmp_path,
        {**OUTPUTS, "CodeDeployApplication": app_name, "DeploymentGroupName": group_name},
    )
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/points-service:v2"
    common = ["--outputs", str(outputs), "--region", "us-east-1", "--version", "v2"]
    assert _run(*common, "--image", image, "--out", str(tmp_path), cwd=tmp_path).returncode == 0
    ecs = boto3.client("ecs")
    taskdef = json.loads((tmp_path / "taskdef.json").read_text())
    arn = ecs.register_task_definition(**taskdef)["taskDefinition"]["taskDefinitionArn"]
    assert ":task-definition/points-service-api:" in arn
    proc = _run(*common, "--image", image, "--task-definition-arn", arn, "--out", str(tmp_path),
                cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr

    group = load(DEPLOY / "stack.yaml")["Resources"]["DeploymentGroup"]["Properties"]
    codedeploy = boto3.client("codedeploy")
    codedeploy.create_application(applicationName=app_name, computePlatform="ECS")
    codedeploy.create_deployment_group(
        applicationName=app_name,
        deploymentGroupName=group_name,
        serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
        deploymentConfigName="CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
        deploymentStyle=lower_first(group["DeploymentStyle"]),
        blueGreenDeploymentConfiguration=lower_first(group["BlueGreenDeploymentConfiguration"]),
        autoRollbackConfiguration=lower_first(group["AutoRollbackConfiguration"]),
        alarmConfiguration={"enabled": True, "alarms": [{"name": "points-service-green-x"}]},
        ecsServices=[{"clusterName": "points-service", "serviceName": "points-service-api"}],
    )
    body = json.loads((tmp_path / "create-deployment.json").read_text())
    deployment = codedeploy.create_deployment(**body)["deploymentId"]
    info = codedeploy.get_deployment(deploymentId=deployment)["deploymentInfo"]
    assert info["applicationName"] == app_name
    assert info["deploymentGroupName"] == group_name


def test_the_revision_carries_the_stacks_token_settings(tmp_path: Path) -> None:
    # Without them the API refuses to start: every revision must trust the stack's issuer.
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(OUTPUTS))
    out = tmp_path / "rev"
    result = _run(
        "--outputs", str(outputs), "--region", "us-east-1", "--version", "v7", "--out", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    taskdef = json.loads((out / "taskdef.json").read_text())
    (app,) = [c for c in taskdef["containerDefinitions"] if c["name"] == "app"]
    env = {e["name"]: e["value"] for e in app["environment"]}
    assert env["AUTH_ISSUER"] == OUTPUTS["AuthIssuer"]
    assert env["AUTH_AUDIENCE"] == OUTPUTS["AuthAudience"]
    assert env["AUTH_JWKS_URL"] == OUTPUTS["AuthJwksUrl"]
