"""``alarms apply`` over HTTP against moto's server (what moto implements; see docs/alarms.md)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest
import yaml

from alarms import POINTS_SERVICE_SPEC, load_spec, synth
from alarms._cli import main

pytestmark = pytest.mark.slow


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    """The points spec under unique names: the moto server is shared by the whole session."""
    data = yaml.safe_load(POINTS_SERVICE_SPEC.read_text())
    tag = uuid.uuid4().hex[:8]
    data["service"] = f"alarms-test-{tag}"
    data["deployment"].update(
        application=f"app-{tag}",
        deployment_group=f"dg-{tag}",
        worker_cluster=f"cluster-{tag}",
        worker_ecs_service=f"worker-{tag}",
    )
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def apply(capsys: pytest.CaptureFixture[str], spec: Path, *extra: str) -> tuple[int, list[str]]:
    code = main(["apply", "--spec", str(spec), *extra])
    return code, capsys.readouterr().out.splitlines()


def test_dry_run_touches_nothing(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    code, out = apply(capsys, POINTS_SERVICE_SPEC, "--dry-run")
    defs = synth(load_spec(POINTS_SERVICE_SPEC), "json")
    assert code == 0
    assert sum(line.startswith("would cloudwatch.put_metric_alarm ") for line in out) == len(
        defs["MetricAlarms"]
    )
    assert any("would codedeploy.update_deployment_group points-service-dg" in x for x in out)
    assert any("DEPLOYMENT_STOP_ON_ALARM" in x for x in out)
    assert out[-1].startswith("dry run:")


def test_apply_creates_then_is_idempotent(
    capsys: pytest.CaptureFixture[str], aws_env, spec_path: Path
) -> None:
    region = aws_env["AWS_REGION"]
    cw = boto3.client("cloudwatch", region_name=region)
    cd = boto3.client("codedeploy", region_name=region)
    ecs = boto3.client("ecs", region_name=region)
    spec = load_spec(spec_path)
    cd.create_application(applicationName=spec.deployment.application, computePlatform="ECS")
    cd.create_deployment_group(
        applicationName=spec.deployment.application,
        deploymentGroupName=spec.deployment.deployment_group,
        serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
    )
    ecs.create_cluster(clusterName=spec.deployment.worker_cluster)
    ecs.register_task_definition(
        family="worker", containerDefinitions=[{"name": "w", "image": "w", "memory": 128}]
    )
    ecs.create_service(
        cluster=spec.deployment.worker_cluster,
        serviceName=spec.deployment.worker_ecs_service,
        taskDefinition="worker",
        desiredCount=1,
    )

    code, out = apply(capsys, spec_path)
    assert code == 0, out
    defs = synth(spec, "json")
    metric_names = {a["AlarmName"] for a in defs["MetricAlarms"]}
    created = {x.removeprefix("created alarm ") for x in out if x.startswith("created alarm ")}
    assert created == metric_names
    stored = cw.describe_alarms(AlarmNamePrefix=spec.service)["MetricAlarms"]
    assert {a["AlarmName"] for a in stored} == metric_names
    green = next(a for a in stored if a["AlarmName"] == f"{spec.service}-green-latency-avg")
    assert green["Threshold"] == spec.latency.threshold_ms
    assert {"Name": "Version", "Value": "v2"} in green["Dimensions"]
    body = json.loads(cw.get_dashboard(DashboardName=spec.service)["DashboardBody"])
    assert any(w["type"] == "alarm" for w in body["widgets"])
    # moto 5.2 implements neither PutCompositeAlarm nor UpdateDeploymentGroup: reported, not hidden
    composites = [x for x in out if x.startswith("skipped composite alarm")]
    assert len(composites) == len(defs["CompositeAlarms"])
    assert any(x.startswith("skipped deployment group") and "not implemented" in x for x in out)
    assert f"updated ECS service {spec.deployment.worker_cluster}/" in "\n".join(out)
    svc = ecs.describe_services(
        cluster=spec.deployment.worker_cluster, services=[spec.deployment.worker_ecs_service]
    )["services"][0]
    wanted = defs["EcsServices"][0]["deploymentConfiguration"]["alarms"]
    assert svc["deploymentConfiguration"]["alarms"] == wanted
    assert wanted["enable"] is True and wanted["rollback"] is True

    code, again = apply(capsys, spec_path)
    assert code == 0
    assert not [x for x in again if x.startswith(("created alarm", "updated alarm"))], again
    assert sum(x.startswith("unchanged alarm") for x in again) == len(metric_names)
    assert any(x.startswith("unchanged dashboard") for x in again)
    assert any(x.startswith("unchanged ECS service") for x in again)
    assert len(cw.describe_alarms(AlarmNamePrefix=spec.service)["MetricAlarms"]) == len(
        metric_names
    )


def test_missing_deployment_group_is_skipped_with_a_reason(capsys, aws_env, tmp_path) -> None:
    name = f"other-{uuid.uuid4().hex[:8]}"
    spec = tmp_path / "other.yaml"
    spec.write_text(f"service: {name}\nworker: false\nalb: false\n")
    code = main(["apply", "--spec", str(spec)])
    out = capsys.readouterr().out
    assert code == 0
    assert f"skipped deployment group {name}/{name}-dg" in out
    assert "DoesNotExist" in out


def test_malformed_endpoint_is_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, spec_path: Path
) -> None:
    for key, value in {
        "AWS_ENDPOINT_URL": "localhost:5000",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    code = main(["apply", "--spec", str(spec_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "AWS_ENDPOINT_URL" in err[0] and "localhost:5000" in err[0]
