"""CloudFormation templates: cfn-lint clean, and everything wired to what really exists."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alarms import load_spec, rollback_alarm_names, synth
from points.storage.dynamodb import ATTRIBUTE_DEFINITIONS, KEY_SCHEMA
from sample_api import Config, create_app
from tests.deploy._cfn import DEPLOY, ROOT, load, resources

CFN_LINT = Path(sys.executable).with_name("cfn-lint")
TEMPLATES = ["stack.yaml", "ecr.yaml", "alarms.json"]
SPEC = ROOT / "alarms" / "specs" / "points-service.yaml"


@pytest.fixture(scope="module")
def stack() -> dict:
    return load(DEPLOY / "stack.yaml")


@pytest.fixture(scope="module")
def alarms_template() -> dict:
    return json.loads((DEPLOY / "alarms.json").read_text())


@pytest.fixture(scope="module")
def taskdef() -> dict:
    return json.loads((DEPLOY / "taskdef.json").read_text())


def _lint(*paths: Path) -> list[dict]:
    proc = subprocess.run(
        [str(CFN_LINT), "--format", "json", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


# -- lint ----------------------------------------------------------------------------------------


def test_every_template_in_deploy_is_linted() -> None:
    found = sorted(
        p.name
        for p in DEPLOY.iterdir()
        if p.suffix in (".yaml", ".yml", ".json") and "AWSTemplateFormatVersion" in load(p)
    )
    assert found == sorted(TEMPLATES)


def test_cfn_lint_reports_no_errors() -> None:
    matches = _lint(*(DEPLOY / t for t in TEMPLATES))
    errors = [m for m in matches if m["Level"] == "Error"]
    assert errors == []
    # The only warning allowed: the nested stack's local TemplateURL needs `cloudformation package`.
    assert {m["Rule"]["Id"] for m in matches} <= {"W3002"}


def test_cfn_lint_does_catch_errors(tmp_path: Path) -> None:
    text = (DEPLOY / "stack.yaml").read_text()
    broken = text.replace("DeploymentType: BLUE_GREEN", "DeploymentType: PURPLE", 1)
    assert broken != text
    (tmp_path / "stack.yaml").write_text(broken)
    (tmp_path / "alarms.json").write_text((DEPLOY / "alarms.json").read_text())
    assert any(m["Level"] == "Error" for m in _lint(tmp_path / "stack.yaml"))


# -- generated alarms ----------------------------------------------------------------------------


def test_committed_alarms_template_equals_a_fresh_synth(tmp_path: Path) -> None:
    out = tmp_path / "alarms.json"
    subprocess.run(
        [sys.executable, "-m", "alarms", "synth", "--spec", str(SPEC), "--format", "cloudformation",
         "-o", str(out)],
        check=True,
        cwd=ROOT,
        timeout=120,
    )  # fmt: skip
    assert out.read_text() == (DEPLOY / "alarms.json").read_text(), (
        "deploy/alarms.json is stale: regenerate it with `python -m alarms synth --spec "
        "alarms/specs/points-service.yaml --format cloudformation -o deploy/alarms.json`"
    )
    assert json.loads(out.read_text()) == synth(load_spec(SPEC), format="cloudformation")


def _alarm_names(template: dict) -> set[str]:
    return {
        r["Properties"]["AlarmName"]
        for r in template["Resources"].values()
        if r["Type"] in ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm")
    }


def test_deployment_group_watches_every_rollback_alarm(stack: dict, alarms_template: dict) -> None:
    names = rollback_alarm_names(alarms_template)
    assert names and set(names) <= _alarm_names(alarms_template)
    group = stack["Resources"]["DeploymentGroup"]["Properties"]
    entries = group["AlarmConfiguration"]["Alarms"]
    split = {"Fn::Split": [",", {"Fn::GetAtt": ["Alarms", "Outputs.DeploymentAlarmNames"]}]}
    assert [e["Name"] for e in entries] == [{"Fn::Select": [i, split]} for i in range(len(names))]
    assert group["AlarmConfiguration"]["Enabled"] is True
    assert len(entries) <= 10  # CodeDeploy's limit


def test_worker_deployment_alarms_exist(stack: dict, alarms_template: dict) -> None:
    value = alarms_template["Outputs"]["WorkerDeploymentAlarmNames"]["Value"]
    assert value and set(value.split(",")) <= _alarm_names(alarms_template)
    config = stack["Resources"]["WorkerService"]["Properties"]["DeploymentConfiguration"]
    assert config["Alarms"]["AlarmNames"] == {
        "Fn::Split": [",", {"Fn::GetAtt": ["Alarms", "Outputs.WorkerDeploymentAlarmNames"]}]
    }
    assert config["Alarms"]["Enable"] is True and config["Alarms"]["Rollback"] is True
    assert config["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}


def test_nested_alarms_stack_gets_exactly_its_parameters(
    stack: dict, alarms_template: dict
) -> None:
    nested = stack["Resources"]["Alarms"]
    assert nested["Type"] == "AWS::CloudFormation::Stack"
    assert nested["Properties"]["TemplateURL"] == "alarms.json"
    assert set(nested["Properties"]["Parameters"]) == set(alarms_template["Parameters"])


# -- CodeDeploy blue/green -----------------------------------------------------------------------


def test_api_is_a_codedeploy_blue_green_service(stack: dict) -> None:
    res = stack["Resources"]
    service = res["ApiService"]["Properties"]
    assert service["DeploymentController"] == {"Type": "CODE_DEPLOY"}
    group = res["DeploymentGroup"]["Properties"]
    assert group["DeploymentStyle"] == {
        "DeploymentType": "BLUE_GREEN",
        "DeploymentOption": "WITH_TRAFFIC_CONTROL",
    }
    assert set(group["AutoRollbackConfiguration"]["Events"]) == {
        "DEPLOYMENT_FAILURE",
        "DEPLOYMENT_STOP_ON_ALARM",
    }
    default_config = stack["Parameters"]["DeploymentConfigName"]["Default"]
    assert default_config.startswith("CodeDeployDefault.ECSLinear")
    # the spec's config (dashboard note, DeploymentConfigName output, `alarms apply`) agrees
    assert load_spec(SPEC).deployment.config_name == default_config
    assert group["DeploymentConfigName"] == {"Ref": "DeploymentConfigName"}
    assert res["CodeDeployApplication"]["Properties"]["ComputePlatform"] == "ECS"
    assert group["ECSServices"] == [
        {"ClusterName": {"Ref": "Cluster"}, "ServiceName": {"Fn::GetAtt": ["ApiService", "Name"]}}
    ]
    pair = group["LoadBalancerInfo"]["TargetGroupPairInfoList"]
    assert len(pair) == 1
    assert [t["Name"]["Fn::GetAtt"][0] for t in pair[0]["TargetGroups"]] == [
        "TargetGroupBlue",
        "TargetGroupGreen",
    ]
    assert pair[0]["ProdTrafficRoute"]["ListenerArns"] == [{"Ref": "ProductionListener"}]
    assert pair[0]["TestTrafficRoute"]["ListenerArns"] == [{"Ref": "TestListener"}]
    listeners = {k: res[k]["Properties"]["Port"] for k in ("ProductionListener", "TestListener")}
    assert listeners == {"ProductionListener": 80, "TestListener": 8080}


# -- the app, the task definitions, the AppSpec and the load balancer agree ---------------------


def _app_routes() -> set[str]:
    config = Config.from_env({"POINTS_STORE": "sqlite", "POINTS_DB_PATH": ":memory:"})
    app = create_app(config)
    return {rule.rule for rule in app.url_map.iter_rules() if "GET" in (rule.methods or ())}


def test_health_check_paths_exist_in_the_app(stack: dict, taskdef: dict) -> None:
    routes = _app_routes()
    paths = {
        tg["Properties"]["HealthCheckPath"]
        for tg in resources(stack, "AWS::ElasticLoadBalancingV2::TargetGroup").values()
    }
    app_container = stack["Resources"]["ApiTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    for command in (
        app_container["HealthCheck"]["Command"][-1],
        taskdef["containerDefinitions"][0]["healthCheck"]["command"][-1],
        (ROOT / "Dockerfile").read_text(),
    ):
        paths |= set(re.findall(r"127\.0\.0\.1:[^/]*(/[a-z]+)", command))
    assert paths == {"/healthz"}
    assert paths <= routes


def _gunicorn_default_port(monkeypatch: pytest.MonkeyPatch) -> int:
    for name in ("PORT", "BIND"):
        monkeypatch.delenv(name, raising=False)
    settings = runpy.run_path(str(ROOT / "sample_api" / "gunicorn.conf.py"))
    host, _, port = settings["bind"].rpartition(":")
    assert host == "0.0.0.0"  # reachable from the load balancer inside the task's ENI
    return int(port)


def test_ports_agree(monkeypatch: pytest.MonkeyPatch, stack: dict, taskdef: dict) -> None:
    res = stack["Resources"]
    stack_app = res["ApiTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    appspec = yaml.safe_load((DEPLOY / "appspec.yaml").read_text())
    lb_info = appspec["Resources"][0]["TargetService"]["Properties"]["LoadBalancerInfo"]
    service_lb = res["ApiService"]["Properties"]["LoadBalancers"][0]
    ingress = res["TaskSecurityGroup"]["Properties"]["SecurityGroupIngress"][0]
    exposed = re.findall(r"^EXPOSE (\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    ports = {
        "gunicorn default": _gunicorn_default_port(monkeypatch),
        "Dockerfile EXPOSE": int(exposed[0]),
        "stack containerPort": stack_app["PortMappings"][0]["ContainerPort"],
        "taskdef.json containerPort": taskdef["containerDefinitions"][0]["portMappings"][0][
            "containerPort"
        ],
        "service load balancer": service_lb["ContainerPort"],
        "appspec": lb_info["ContainerPort"],
        "blue target group": res["TargetGroupBlue"]["Properties"]["Port"],
        "green target group": res["TargetGroupGreen"]["Properties"]["Port"],
        "task security group": ingress["FromPort"],
    }
    assert len(set(ports.values())) == 1, ports


def test_container_names_agree(stack: dict, taskdef: dict) -> None:
    appspec = yaml.safe_load((DEPLOY / "appspec.yaml").read_text())
    props = appspec["Resources"][0]["TargetService"]["Properties"]
    assert props["TaskDefinition"] == "<TASK_DEFINITION>"
    name = props["LoadBalancerInfo"]["ContainerName"]
    assert taskdef["containerDefinitions"][0]["name"] == name
    stack_containers = stack["Resources"]["ApiTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert stack_containers[0]["Name"] == name
    assert (
        stack["Resources"]["ApiService"]["Properties"]["LoadBalancers"][0]["ContainerName"] == name
    )
    assert taskdef["containerDefinitions"][0]["image"] == "<IMAGE1_NAME>"


def _lower_keys(value):
    """CloudFormation spells task definitions in PascalCase, the ECS API in camelCase."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def test_taskdef_json_is_the_stack_task_definition(stack: dict, taskdef: dict) -> None:
    """Both describe the same API task; only references (Ref/GetAtt vs ${Output}) differ."""
    cfn = stack["Resources"]["ApiTaskDefinition"]["Properties"]
    for key in ("Cpu", "Memory", "NetworkMode", "RequiresCompatibilities"):
        assert taskdef[key[:1].lower() + key[1:]] == cfn[key]
    assert taskdef["runtimePlatform"] == _lower_keys(cfn["RuntimePlatform"])
    assert taskdef["volumes"] == _lower_keys(cfn["Volumes"])
    ours = taskdef["containerDefinitions"]
    theirs = _lower_keys(cfn["ContainerDefinitions"])
    assert [c["name"] for c in ours] == [c["name"] for c in theirs]
    for mine, cfn_c in zip(ours, theirs, strict=True):
        assert set(mine) == set(cfn_c), mine["name"]
        for key in mine:
            if key in ("image", "environment", "logConfiguration", "secrets"):
                continue
            assert mine[key] == cfn_c[key], (mine["name"], key)
        if mine["name"] != "app":
            assert mine["image"] == cfn_c["image"]  # the collector is pinned in both
        env_mine = {e["name"]: e["value"] for e in mine.get("environment", [])}
        env_cfn = {e["name"]: e["value"] for e in cfn_c.get("environment", [])}
        assert list(env_mine) == list(env_cfn)
        for key, value in env_cfn.items():
            if isinstance(value, str):  # literal in the stack: the same literal here
                assert env_mine[key] == value, key
        log_mine, log_cfn = mine["logConfiguration"], cfn_c["logConfiguration"]
        assert log_mine["logDriver"] == log_cfn["logDriver"] == "awslogs"
        assert (
            log_mine["options"]["awslogs-stream-prefix"]
            == log_cfn["options"]["awslogs-stream-prefix"]
        )
        assert [s["name"] for s in mine.get("secrets", [])] == [
            s["name"] for s in cfn_c.get("secrets", [])
        ]


# -- the rest of the stack -----------------------------------------------------------------------


def test_collector_config_in_the_stack_is_the_repo_file(stack: dict) -> None:
    value = stack["Resources"]["CollectorConfig"]["Properties"]["Value"]
    assert value == (DEPLOY / "otel-collector.yaml").read_text()
    config = yaml.safe_load(value)
    assert config["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["awsxray"]
    for family in ("ApiTaskDefinition", "WorkerTaskDefinition"):
        containers = stack["Resources"][family]["Properties"]["ContainerDefinitions"]
        sidecar = containers[1]
        assert sidecar["Image"].startswith("public.ecr.aws/aws-observability/aws-otel-collector:")
        assert sidecar["Secrets"] == [
            {"Name": "AOT_CONFIG_CONTENT", "ValueFrom": {"Ref": "CollectorConfig"}}
        ]
        assert containers[0]["LogConfiguration"]["LogDriver"] == "awslogs"


def test_table_key_matches_the_backend(stack: dict) -> None:
    table = stack["Resources"]["PointsTable"]["Properties"]
    assert table["KeySchema"] == KEY_SCHEMA
    assert table["AttributeDefinitions"] == ATTRIBUTE_DEFINITIONS


def test_queue_has_a_dead_letter_queue(stack: dict) -> None:
    policy = stack["Resources"]["OrdersQueue"]["Properties"]["RedrivePolicy"]
    assert policy["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert policy["maxReceiveCount"] >= 1


def test_services_run_the_same_image_with_different_commands(stack: dict) -> None:
    api = stack["Resources"]["ApiTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    worker = stack["Resources"]["WorkerTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert "Command" not in api  # the image's CMD: gunicorn
    assert worker["Command"] == ["python", "-m", "worker"]
    assert api["ReadonlyRootFilesystem"] is True and worker["ReadonlyRootFilesystem"] is True


# Actions whose API has no resource-level permissions: the only ones allowed on "*".
_STAR_OK = {
    "ecr:GetAuthorizationToken",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}


def test_task_roles_are_least_privilege(stack: dict) -> None:
    roles = resources(stack, "AWS::IAM::Role")
    for name in ("ExecutionRole", "ApiTaskRole", "WorkerTaskRole"):
        role = roles[name]["Properties"]
        assert "ManagedPolicyArns" not in role, name
        for policy in role["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                actions = [actions] if isinstance(actions, str) else actions
                assert all("*" not in a for a in actions), (name, actions)
                if statement["Resource"] == "*":
                    assert set(actions) <= _STAR_OK, (name, actions)
    api_actions = {
        a
        for p in roles["ApiTaskRole"]["Properties"]["Policies"]
        for s in p["PolicyDocument"]["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert not any(a.startswith("sqs:") for a in api_actions)  # the API never touches the queue
