"""CloudFormation templates: cfn-lint clean, and everything wired to what really exists."""

from __future__ import annotations

import json
import math
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alarms import load_spec, rollback_alarm_names, synth, worker_rollback_alarm_names
from points.storage.dynamodb import ATTRIBUTE_DEFINITIONS, KEY_SCHEMA
from rehearsal import schedule
from sample_api import Config, create_app
from tests.deploy._cfn import DEPLOY, ROOT, load, lower_first, resources

CFN_LINT = Path(sys.executable).with_name("cfn-lint")
TEMPLATES = ["stack.yaml", "ecr.yaml", "alarms.json", "pipeline.yaml"]
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


def test_worker_service_rolls_back_on_exactly_the_generated_worker_alarms(
    stack: dict, alarms_template: dict
) -> None:
    generated = worker_rollback_alarm_names(synth(load_spec(SPEC), format="json"))
    assert generated == worker_rollback_alarm_names(alarms_template)
    value = alarms_template["Outputs"]["WorkerDeploymentAlarmNames"]["Value"]
    assert value.split(",") == generated
    assert set(generated) <= _alarm_names(alarms_template)
    config = stack["Resources"]["WorkerService"]["Properties"]["DeploymentConfiguration"]
    assert config["Alarms"]["AlarmNames"] == {
        "Fn::Split": [",", {"Fn::GetAtt": ["Alarms", "Outputs.WorkerDeploymentAlarmNames"]}]
    }
    assert config["Alarms"]["Enable"] is True and config["Alarms"]["Rollback"] is True
    assert config["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}


def _dimensions(alarm: dict) -> list[list[dict]]:
    props = alarm["Properties"]
    sets = [props["Dimensions"]] if "Dimensions" in props else []
    sets += [
        q["MetricStat"]["Metric"]["Dimensions"]
        for q in props.get("Metrics", [])
        if "MetricStat" in q
    ]
    return sets


def test_worker_alarms_watch_the_version_worker_tasks_report(
    stack: dict, alarms_template: dict
) -> None:
    """The per-version worker alarms watch ``Version=WorkerVersion``, the very parameter the
    worker task definition sets as APP_VERSION (telemetry's Version dimension), and never the
    API's GreenVersion; their Service is the worker's OTEL_SERVICE_NAME."""
    spec = load_spec(SPEC)
    assert spec.worker is not None
    nested = stack["Resources"]["Alarms"]["Properties"]["Parameters"]
    assert nested["WorkerVersion"] == {"Ref": "WorkerVersion"}
    (container,) = [
        c
        for c in stack["Resources"]["WorkerTaskDefinition"]["Properties"]["ContainerDefinitions"]
        if c["Name"] == "worker"
    ]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["APP_VERSION"] == {"Ref": "WorkerVersion"}
    assert env["OTEL_SERVICE_NAME"] == {"Ref": "WorkerServiceName"}
    assert stack["Parameters"]["WorkerServiceName"]["Default"] == spec.worker.service

    alarms = {
        r["Properties"]["AlarmName"]: r
        for r in alarms_template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    rollback = worker_rollback_alarm_names(alarms_template)
    per_version = 0
    for name in rollback:
        for dims in _dimensions(alarms[name]):
            by = {d["Name"]: d["Value"] for d in dims}
            assert by["Service"] == spec.worker.service, name
            if "Version" in by:
                per_version += 1
                assert by["Version"] == {"Ref": "WorkerVersion"}, name
    assert per_version, "no worker rollback alarm watches the version being rolled out"
    worker_alarms = [a for n, a in alarms.items() if "-worker-" in n]
    text = json.dumps(worker_alarms)
    assert "GreenVersion" not in text and "BlueVersion" not in text


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
    assert service["DeploymentController"] == {"Type": {"Ref": "ApiDeploymentController"}}
    assert stack["Parameters"]["ApiDeploymentController"]["Default"] == "CODE_DEPLOY"
    for name in ("CodeDeployRole", "CodeDeployApplication", "DeploymentGroup"):
        assert res[name]["Condition"] == "UseCodeDeploy", name
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
    assert listeners == {
        "ProductionListener": {"Fn::If": ["HasCertificate", 443, 80]},
        "TestListener": 8080,
    }


# -- the app, the task definitions, the AppSpec and the load balancer agree ---------------------


def _app_routes() -> set[str]:
    # Only the routes matter here, not who may call them.
    config = Config.from_env(
        {"POINTS_STORE": "sqlite", "POINTS_DB_PATH": ":memory:", "AUTH_MODE": "off"}
    )
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
    monkeypatch.setenv("AUTH_MODE", "off")  # only the bind matters here, not the token issuer
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


def test_taskdef_json_is_the_stack_task_definition(stack: dict, taskdef: dict) -> None:
    """Both describe the same API task; only references (Ref/GetAtt vs ${Output}) differ."""
    cfn = stack["Resources"]["ApiTaskDefinition"]["Properties"]
    for key in ("Cpu", "Memory", "NetworkMode", "RequiresCompatibilities"):
        assert taskdef[key[:1].lower() + key[1:]] == cfn[key]
    assert taskdef["runtimePlatform"] == lower_first(cfn["RuntimePlatform"])
    assert taskdef["volumes"] == lower_first(cfn["Volumes"])
    ours = taskdef["containerDefinitions"]
    theirs = lower_first(cfn["ContainerDefinitions"])
    assert [c["name"] for c in ours] == [c["name"] for c in theirs]
    for mine, cfn_c in zip(ours, theirs, strict=True):
        assert set(mine) == set(cfn_c), mine["name"]
        for key in mine:
            if key in ("image", "environment", "logConfiguration", "secrets"):
                continue
            assert mine[key] == cfn_c[key], (mine["name"], key)
        if mine["name"] != "app":  # the collector: the same stack parameter in both
            assert mine["image"] == "${CollectorImageUri}"
            assert cfn_c["image"] == {"ref": "CollectorImageUri"}  # keys lowered
        env_mine = {e["name"]: e["value"] for e in mine.get("environment", [])}
        env_cfn = {e["name"]: e["value"] for e in cfn_c.get("environment", [])}
        assert list(env_mine) == list(env_cfn)
        for key, value in env_cfn.items():
            if isinstance(value, str):  # literal in the stack: the same literal here
                assert env_mine[key] == value, key
        log_mine, log_cfn = mine["logConfiguration"], cfn_c["logConfiguration"]
        assert log_mine["logDriver"] == log_cfn["logDriver"] == "awslogs"
        for option in ("awslogs-stream-prefix", "mode", "max-buffer-size"):
            assert log_mine["options"][option] == log_cfn["options"][option], option
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
        assert sidecar["Image"] == {"Ref": "CollectorImageUri"}
        default = stack["Parameters"]["CollectorImageUri"]["Default"]
        assert default.startswith("public.ecr.aws/aws-observability/aws-otel-collector:v")
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
    "ecs:RegisterTaskDefinition",
    # no resource-level permissions (Service Authorization Reference): the release build reads
    # the running task definition (one-way-door guard, deploy/point_alarms.py) and the
    # production listener (deploy/point_alarms.py)
    "ecs:DescribeTaskDefinition",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeRules",
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


# -- logging, temporary files, exposure --------------------------------------------------------


def _containers(stack: dict, taskdef: dict) -> dict[str, dict]:
    """Every container of both stack task definitions and of taskdef.json, camelCase keys."""
    found = {}
    for family in ("ApiTaskDefinition", "WorkerTaskDefinition"):
        for c in lower_first(stack["Resources"][family]["Properties"]["ContainerDefinitions"]):
            found[f"stack {family} {c['name']}"] = c
    for c in taskdef["containerDefinitions"]:
        found[f"taskdef.json {c['name']}"] = c
    return found


def test_every_container_logs_in_non_blocking_mode(stack: dict, taskdef: dict) -> None:
    """A slow or throttled CloudWatch Logs must not block a process writing to stdout: awslogs
    ``mode: non-blocking`` with a bounded ``max-buffer-size`` (lines beyond it are dropped)."""
    containers = _containers(stack, taskdef)
    assert len(containers) == 6
    for where, c in containers.items():
        options = c["logConfiguration"]["options"]
        assert c["logConfiguration"]["logDriver"] == "awslogs", where
        assert options.get("mode") == "non-blocking", where
        size = re.fullmatch(r"(\d+)([kmg])", options.get("max-buffer-size", ""))
        assert size, where
        assert 1 <= int(size.group(1)) * {"k": 1, "m": 1024, "g": 1024**2}[size.group(2)] <= 1024**2


def test_tmpdir_is_the_writable_task_volume(stack: dict, taskdef: dict) -> None:
    """Every app container on a read-only root has TMPDIR set to the path its task volume is
    mounted at, and the image makes that path a VOLUME with a mode user 10001 can write (Fargate
    copies the image directory's mode onto the bind mount; otherwise it is root-owned 0755)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    volumes = json.loads(re.search(r"^VOLUME (\[.*\])$", dockerfile, re.M).group(1))
    env_tmpdir = re.search(r"TMPDIR=(\S+)", dockerfile).group(1)
    checked = 0
    for where, c in _containers(stack, taskdef).items():
        if not c.get("readonlyRootFilesystem"):
            continue
        env = {e["name"]: e["value"] for e in c.get("environment", [])}
        mounts = {m["containerPath"] for m in c.get("mountPoints", [])}
        assert env.get("TMPDIR") in mounts, where
        assert env["TMPDIR"] == env_tmpdir and env["TMPDIR"] in volumes, where
        checked += 1
    assert checked == 3  # API (stack and taskdef.json) and worker
    assert re.search(rf"chmod 1777 {re.escape(env_tmpdir)}\b", dockerfile)


def _ingress(stack: dict) -> list[dict]:
    rules = []
    for rule in stack["Resources"]["AlbSecurityGroup"]["Properties"]["SecurityGroupIngress"]:
        if "Fn::If" in rule:
            rule = rule["Fn::If"][1]  # the rule as it is with a certificate
        rules.append(rule)
    return rules


def test_test_listener_is_not_on_the_internet(stack: dict) -> None:
    rules = {r["FromPort"]: r for r in _ingress(stack)}
    assert rules[8080]["CidrIp"] == {"Ref": "TestTrafficCidr"}
    assert rules[443]["CidrIp"] == rules[80]["CidrIp"] == {"Ref": "AllowedCidr"}
    pattern = stack["Parameters"]["TestTrafficCidr"]["AllowedPattern"]
    assert "Default" not in stack["Parameters"]["TestTrafficCidr"]  # everyone must choose
    assert not re.fullmatch(pattern, "0.0.0.0/0")
    assert re.fullmatch(pattern, "203.0.113.7/32") and re.fullmatch(pattern, "10.0.0.0/8")


def test_https_with_a_certificate_and_http_redirected(stack: dict) -> None:
    res = stack["Resources"]
    for name in ("ProductionListener", "TestListener"):
        props = res[name]["Properties"]
        assert props["Protocol"] == {"Fn::If": ["HasCertificate", "HTTPS", "HTTP"]}, name
        assert props["Certificates"]["Fn::If"][1] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
        assert props["SslPolicy"]["Fn::If"][1].startswith("ELBSecurityPolicy-TLS13-1-2-")
    assert res["ProductionListener"]["Properties"]["Port"] == {
        "Fn::If": ["HasCertificate", 443, 80]
    }
    redirect = res["HttpRedirectListener"]
    assert redirect["Condition"] == "HasCertificate"
    action = redirect["Properties"]["DefaultActions"][0]
    assert redirect["Properties"]["Port"] == 80 and action["Type"] == "redirect"
    assert (
        action["RedirectConfig"]["Protocol"] == "HTTPS"
        and action["RedirectConfig"]["Port"] == "443"
    )


def _rule_value(expr: object, params: dict[str, str]) -> object:
    """The few intrinsic functions the stack's Rules use, evaluated as CloudFormation does."""
    if isinstance(expr, dict):
        ((fn, arg),) = expr.items()
        if fn == "Ref":
            return params[arg]
        if fn == "Fn::Equals":
            return _rule_value(arg[0], params) == _rule_value(arg[1], params)
        if fn == "Fn::Not":
            return not _rule_value(arg[0], params)
        raise AssertionError(f"unexpected function {fn} in a rule")
    return expr


def _refused_by_rules(stack: dict, params: dict[str, str]) -> list[str]:
    refused = []
    for name, rule in stack.get("Rules", {}).items():
        if set(re.findall(r"'Ref': '([A-Za-z0-9]+)'", repr(rule))) - set(params):
            continue  # a rule about other parameters
        if "RuleCondition" in rule and not _rule_value(rule["RuleCondition"], params):
            continue
        if not all(_rule_value(a["Assert"], params) for a in rule["Assertions"]):
            refused.append(name)
    return refused


@pytest.mark.parametrize(
    ("allow_plain_http", "certificate", "refused"),
    [
        ("false", "", True),  # the default: no certificate, no stack
        (
            "false",
            "arn:aws:acm:us-east-1:123456789012:certificate/0123abcd-4567-89ab-cdef-0123456789ab",
            False,
        ),
        ("true", "", False),  # plain HTTP only when asked for by name
    ],
)
def test_a_stack_without_a_certificate_is_refused_unless_plain_http_is_asked_for(
    stack: dict, allow_plain_http: str, certificate: str, refused: bool
) -> None:
    assert stack["Parameters"]["AllowPlainHttp"]["Default"] == "false"
    params = {"AllowPlainHttp": allow_plain_http, "CertificateArn": certificate}
    assert bool(_refused_by_rules(stack, params)) is refused


def test_load_balancer_drops_invalid_headers_and_logs_to_an_encrypted_private_bucket(
    stack: dict,
) -> None:
    res = stack["Resources"]
    lb = res["LoadBalancer"]
    attributes = {a["Key"]: a["Value"] for a in lb["Properties"]["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.bucket"] == {"Ref": "AccessLogsBucket"}
    assert lb["DependsOn"] == "AccessLogsBucketPolicy"  # the ALB tests its write access
    bucket = res["AccessLogsBucket"]["Properties"]
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    # Elastic Load Balancing writes access logs only to SSE-S3 buckets
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    statements = res["AccessLogsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    allow = next(s for s in statements if s["Effect"] == "Allow")
    prefix = attributes["access_logs.s3.prefix"]
    assert allow["Resource"] == {
        "Fn::Sub": f"${{AccessLogsBucket.Arn}}/{prefix}/AWSLogs/${{AWS::AccountId}}/*"
    }
    mapping = stack["Mappings"]["ElbLogDelivery"]
    legacy = json.dumps(stack["Conditions"]["ElbLegacyRegion"])
    assert set(re.findall(r'"Ref": "AWS::Region"\}, "([a-z0-9-]+)"', legacy)) == set(mapping)


def test_api_and_worker_networks_are_separate_parameters(stack: dict) -> None:
    """A CODE_DEPLOY service rejects a network change in a stack update: the worker's network
    parameters must not be the API's, so moving the worker never touches the API service."""
    res = stack["Resources"]
    api = res["ApiService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    worker = res["WorkerService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert api["Subnets"] == {"Ref": "ApiSubnetIds"}
    assert api["AssignPublicIp"] == {"Ref": "ApiAssignPublicIp"}
    assert worker["Subnets"] == {"Ref": "WorkerSubnetIds"}
    assert worker["AssignPublicIp"] == {"Ref": "WorkerAssignPublicIp"}
    assert "never change it in a stack update" in stack["Parameters"]["ApiSubnetIds"]["Description"]
    for name in ("ApiSubnetIds", "ApiSecurityGroupId", "ApiAssignPublicIp"):
        assert name in stack["Outputs"], name  # what render_revision.py puts in the AppSpec


def _allowed(parameter: dict, value: str) -> bool:
    """Would CloudFormation take ``value`` for this parameter (its type, range and pattern)?"""
    if parameter["Type"] == "Number":
        try:
            number = float(value)
        except ValueError:
            return False
        return parameter.get("MinValue", -math.inf) <= number <= parameter.get("MaxValue", math.inf)
    return re.fullmatch(parameter.get("AllowedPattern", ".*"), value) is not None


_ECS_PERCENTS = ["0", "0.1", "2.9", "3", "3.0", "3.05", "10", "10.5", "10.05", "99.9", "100"]
_ECS_PERCENTS += ["100.0", "100.1", "1e1", "-5", "", "ten", " 10", "010", "50.", ".5"]
_ECS_MINUTES = ["0", "1", "1.5", "6", "60", "1439", "1440", "1441", "-1", "", "1e3", "007", "+5"]
#: Numbers the rehearsal's parser (Python's float) reads but nobody types for a percentage or a
#: number of minutes: the stack may refuse these spellings.
_SPELLINGS = {"010", "50.", ".5", "1e1", " 10", "007", "+5"}


@pytest.mark.parametrize("percent", _ECS_PERCENTS)
def test_ecs_step_percent_parameter_takes_what_ecs_takes(stack: dict, percent: str) -> None:
    """The stack refuses at once what ECS would refuse only when the service is created or
    updated (a failed, rolled-back stack operation): ECS's LINEAR rule, as the rehearsal's
    ``--deployment-config ecs:linear`` (rehearsal.schedule) applies it from botocore's model."""
    ecs_takes = True
    try:
        schedule.parse(f"ecs:linear:{percent}:1")
    except schedule.ConfigError:
        ecs_takes = False
    stack_takes = _allowed(stack["Parameters"]["EcsStepPercent"], percent)
    assert stack_takes == ecs_takes or (not stack_takes and percent in _SPELLINGS)


@pytest.mark.parametrize("minutes", _ECS_MINUTES)
@pytest.mark.parametrize("name", ["EcsBakeTimeInMinutes", "EcsStepBakeTimeInMinutes"])
def test_ecs_bake_time_parameters_take_whole_minutes_0_to_1440(
    stack: dict, name: str, minutes: str
) -> None:
    ecs_takes = True
    try:
        schedule.parse(f"ecs:linear:10:{minutes}")
    except schedule.ConfigError:
        ecs_takes = False
    stack_takes = _allowed(stack["Parameters"][name], minutes)
    assert stack_takes == ecs_takes or (not stack_takes and minutes in _SPELLINGS)
    assert str(stack["Parameters"][name]["Default"]).isdigit()


def test_ecs_native_blue_green_variant(stack: dict) -> None:
    """ApiDeploymentController=ECS: ECS's own strategy with bake time, linear/canary steps,
    rollback alarms (the same names CodeDeploy watches) and listener rules to shift."""
    res = stack["Resources"]
    config = res["ApiService"]["Properties"]["DeploymentConfiguration"]["Fn::If"]
    assert config[0] == "UseEcsNative"
    native = config[1]
    assert native["Strategy"] == {"Ref": "EcsDeploymentStrategy"}
    assert set(stack["Parameters"]["EcsDeploymentStrategy"]["AllowedValues"]) == {
        "BLUE_GREEN", "LINEAR", "CANARY"
    }  # fmt: skip
    assert native["BakeTimeInMinutes"] == {"Ref": "EcsBakeTimeInMinutes"}
    assert native["LinearConfiguration"]["Fn::If"][0] == "EcsLinear"
    assert native["CanaryConfiguration"]["Fn::If"][0] == "EcsCanary"
    assert native["Alarms"] == {
        "Enable": True,
        "Rollback": True,
        "AlarmNames": {
            "Fn::Split": [",", {"Fn::GetAtt": ["Alarms", "Outputs.DeploymentAlarmNames"]}]
        },
    }
    hooks = native["LifecycleHooks"]["Fn::If"]
    assert hooks[0] == "HasLifecycleHook" and hooks[1][0]["LifecycleStages"]
    advanced = res["ApiService"]["Properties"]["LoadBalancers"][0]["AdvancedConfiguration"][
        "Fn::If"
    ]
    assert advanced[1]["AlternateTargetGroupArn"] == {"Ref": "TargetGroupGreen"}
    assert advanced[1]["ProductionListenerRule"] == {"Ref": "ProductionListenerRule"}
    assert advanced[1]["TestListenerRule"] == {"Ref": "TestListenerRule"}
    for rule in ("ProductionListenerRule", "TestListenerRule"):
        assert res[rule]["Condition"] == "UseEcsNative"
        groups = res[rule]["Properties"]["Actions"][0]["ForwardConfig"]["TargetGroups"]
        assert [g["Weight"] for g in groups] == [100, 0]


# -- the release pipeline ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return load(DEPLOY / "pipeline.yaml")


def test_pipeline_runs_source_build_and_codedeploy_blue_green(pipeline: dict, stack: dict) -> None:
    res = pipeline["Resources"]
    stages = res["Pipeline"]["Properties"]["Stages"]
    assert [s["Name"] for s in stages] == ["Source", "PreProduction", "Production"]
    source = stages[0]["Actions"][0]["Fn::If"]
    assert source[0] == "UseConnection"
    assert source[1]["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source[2]["ActionTypeId"]["Provider"] == "CodeCommit"
    build = res["BuildProject"]["Properties"]
    assert build["Source"]["BuildSpec"] == "deploy/buildspec.yml"
    assert (DEPLOY / "buildspec.yml").is_file()
    assert build["Environment"]["PrivilegedMode"] is True
    deploy = stages[2]["Actions"][1]
    assert deploy["ActionTypeId"]["Provider"] == "CodeDeployToECS"
    config = deploy["Configuration"]
    spec = yaml.safe_load((DEPLOY / "buildspec.yml").read_text())
    artifacts = set(spec["artifacts"]["files"])
    assert {config["TaskDefinitionTemplatePath"], config["AppSpecTemplatePath"]} <= artifacts
    assert config["Image1ContainerName"] == "IMAGE1_NAME"
    taskdef = json.loads((DEPLOY / "taskdef.json").read_text())
    assert taskdef["containerDefinitions"][0]["image"] == "<IMAGE1_NAME>"
    # the names the stack gives its CodeDeploy application and deployment group
    group = stack["Resources"]["DeploymentGroup"]["Properties"]["DeploymentGroupName"]
    assert config["DeploymentGroupName"] == {"Fn::Sub": "${ServiceName}-dg"} == group
    assert stack["Resources"]["CodeDeployApplication"]["Properties"]["ApplicationName"] == {
        "Ref": "ServiceName"
    }
    assert config["ApplicationName"] == {"Ref": "ServiceName"}


def test_pipeline_artifacts_bucket_is_encrypted_and_private(pipeline: dict) -> None:
    res = pipeline["Resources"]
    bucket = res["ArtifactsBucket"]["Properties"]
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    block = bucket["PublicAccessBlockConfiguration"]
    assert len(block) == 4 and all(block.values())
    statements = res["ArtifactsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )


def _statements(role: dict) -> list[dict]:
    found = []
    for policy in role["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                found.extend(s for s in statement["Fn::If"][1:] if s != {"Ref": "AWS::NoValue"})
            else:
                found.append(statement)
    return found


def test_pipeline_roles_are_least_privilege(pipeline: dict) -> None:
    for name, role in resources(pipeline, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], name
        for statement in _statements(role):
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            assert all("*" not in a for a in actions), (name, actions)
            if statement["Resource"] == "*":
                assert set(actions) <= _STAR_OK, (name, actions)
    pass_role = next(
        s
        for s in _statements(pipeline["Resources"]["PipelineRole"])
        if s["Action"] == "iam:PassRole"
    )
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


# -- notifications: a rollback reaches people with its reason ----------------------------------


def test_rollbacks_are_notified_on_one_encrypted_topic(stack: dict) -> None:
    res = stack["Resources"]
    topic = res["NotificationTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "NotificationKey"}
    assert res["NotificationKey"]["Properties"]["EnableKeyRotation"] is True
    topic_ref = {"Ref": "NotificationTopic"}
    # the rollback alarms' state changes (API and worker), with CloudWatch's reason
    rule = res["RollbackAlarmStateRule"]["Properties"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.cloudwatch"]
    assert pattern["detail-type"] == ["CloudWatch Alarm State Change"]
    names = json.dumps(pattern["detail"]["alarmName"])
    for output in ("DeploymentAlarmNames", "WorkerDeploymentAlarmNames"):
        assert f'"Alarms", "Outputs.{output}"' in names
    (target,) = rule["Targets"]
    assert target["Arn"] == topic_ref
    paths = target["InputTransformer"]["InputPathsMap"]
    assert paths["reason"] == "$.detail.state.reason" and paths["alarm"] == "$.detail.alarmName"
    template = target["InputTransformer"]["InputTemplate"]["Fn::Sub"]
    for name in paths:
        assert f"<{name}>" in template
    # failed ECS deployments (native blue/green and the worker)
    ecs = res["EcsDeploymentFailureRule"]["Properties"]
    assert ecs["EventPattern"]["detail"]["eventName"] == ["SERVICE_DEPLOYMENT_FAILED"]
    assert ecs["EventPattern"]["resources"] == [{"Ref": "ApiService"}, {"Ref": "WorkerService"}]
    assert ecs["Targets"][0]["Arn"] == topic_ref
    # only those rules may publish
    (statement,) = res["NotificationTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        {"Fn::GetAtt": ["RollbackAlarmStateRule", "Arn"]},
        {"Fn::GetAtt": ["EcsDeploymentFailureRule", "Arn"]},
    ]
    # CodeDeploy's deployment group triggers, published with its role
    (trigger,) = res["DeploymentGroup"]["Properties"]["TriggerConfigurations"]
    assert trigger["TriggerTargetArn"] == topic_ref
    assert {"DeploymentFailure", "DeploymentRollback"} <= set(trigger["TriggerEvents"])
    (policy,) = res["CodeDeployRole"]["Properties"]["Policies"]
    publish = [s for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "sns:Publish"]
    assert publish and publish[0]["Resource"] == topic_ref
    assert stack["Outputs"]["NotificationTopicArn"]["Value"] == topic_ref


def test_dashboard_shows_green_slowest_requests_and_links_codedeploy(alarms_template: dict) -> None:
    body = json.loads(
        alarms_template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    )
    (logs,) = [w for w in body["widgets"] if w["type"] == "log"]
    query = logs["properties"]["query"]
    assert query.startswith("SOURCE '${LogGroupName}'")
    assert "version = '${GreenVersion}'" in query and "sort duration_ms desc" in query
    assert "trace_id" in query
    notes = " ".join(w["properties"]["markdown"] for w in body["widgets"] if w["type"] == "text")
    assert "codesuite/codedeploy/applications/${CodeDeployApplication}/deployment-groups/" in notes
    for name in ("LogGroupName", "CodeDeployApplication", "DeploymentGroupName"):
        assert name in alarms_template["Parameters"]


@pytest.mark.parametrize("hostile", ["v2' or version = 'v1", 'v2"}]}', "v2\\", "it's"])
def test_parameters_in_the_dashboard_body_and_query_refuse_quotes(
    alarms_template: dict, stack: dict, hostile: str
) -> None:
    """Fn::Sub puts parameters into the dashboard's JSON body unescaped, and the Logs Insights
    query quotes the version and log group with '...': a quote there would break the body or
    rewrite the query, so every such parameter has an AllowedPattern that refuses it."""
    body = alarms_template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    params = alarms_template["Parameters"]
    used = [name for name in params if "${" + name + "}" in body]
    assert {"GreenVersion", "LogGroupName", "CodeDeployApplication"} <= set(used)
    for name in [*used, "BlueVersion", "GreenVersion"]:
        pattern = params[name].get("AllowedPattern")
        assert pattern, name
        assert not re.fullmatch(pattern, hostile), (name, hostile)
        if name in PARAM_EXAMPLES:
            assert re.fullmatch(pattern, PARAM_EXAMPLES[name]), name
    for name in ("BlueVersion", "GreenVersion"):  # the stack's own parameters, passed through
        assert not re.fullmatch(stack["Parameters"][name]["AllowedPattern"], hostile)


PARAM_EXAMPLES = {
    "GreenVersion": "v2.1.0-rc_1",
    "BlueVersion": "v1",
    "LogGroupName": "/ecs/points-service",
    "CodeDeployApplication": "points-service",
    "DeploymentGroupName": "points-service-dg",
}


_SERVICE_NAMES = {
    # name: can it name the load balancer (ELB's rule: 1-32 letters, digits and hyphens, not
    # beginning or ending with a hyphen, not beginning with "internal-"), with room for the
    # target groups' "-green" suffix (24 characters)?
    "points-service": True,
    "a": True,
    "p1": True,
    "a" * 24: True,
    "a" * 25: False,
    "points-": False,
    "internal-api": False,
    "internal": True,
    "1points": False,
    "Points": False,
    "points_service": False,
    "": False,
}


@pytest.mark.parametrize("name", sorted(_SERVICE_NAMES))
@pytest.mark.parametrize(
    ("template", "parameter"),
    [("stack.yaml", "ServiceName"), ("pipeline.yaml", "ServiceName"), ("pipeline.yaml", "PreProdServiceName")],
)  # fmt: skip
def test_service_names_are_ones_the_load_balancer_takes(
    template: str, parameter: str, name: str
) -> None:
    """ServiceName is the load balancer's name: a value ELB refuses would fail the stack halfway
    (after the network, queues and table exist), so the parameter refuses it up front."""
    param = load(DEPLOY / template)["Parameters"][parameter]
    assert _allowed(param, name) == _SERVICE_NAMES[name]
