"""Create the stacks against moto's server (CloudFormation over HTTP with boto3), then check with
the services' own APIs what they built. What moto cannot create is left out and printed with
the reason (tests/deploy/_moto_cfn.py); cfn-lint covers those resources (test_templates.py)."""

from __future__ import annotations

import json
import re
import uuid

import boto3
import pytest

from tests.deploy._cfn import DEPLOY, load, lower_first
from tests.deploy._moto_cfn import PLACEHOLDER, evaluate, for_moto


def _report(name: str, notes: dict[str, str]) -> None:
    print(f"\n{name}: left out or replaced for moto ({len(notes)}):")
    for what, why in sorted(notes.items()):
        print(f"  {what}: {why}")


def _params(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def _create(cfn, s3, bucket: str, name: str, template: dict, params: dict[str, str]) -> dict:
    key = f"{name}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(template).encode())
    cfn.create_stack(
        StackName=name,
        TemplateURL=f"https://{bucket}.s3.amazonaws.com/{key}",
        Parameters=_params(params),
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return stack


@pytest.fixture
def aws(aws_env: dict[str, str]) -> dict:
    clients = {
        n: boto3.client(n)
        for n in ("cloudformation", "s3", "ec2", "acm", "ecs", "elbv2", "sqs", "dynamodb", "iam")
    }
    bucket = f"cfn-{uuid.uuid4().hex[:12]}"
    clients["s3"].create_bucket(Bucket=bucket)
    clients["bucket"] = bucket
    return clients


def _network(ec2) -> tuple[str, list[str]]:
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"us-east-1{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in enumerate("ab")
    ]
    return vpc, subnets


def _service_stack(aws: dict, controller: str) -> tuple[dict, str, dict[str, str], dict]:
    """Create deploy/stack.yaml (and its nested alarms stack) with ApiDeploymentController."""
    suffix = uuid.uuid4().hex[:6]
    service = f"pts{suffix}"
    alarms_template = json.loads((DEPLOY / "alarms.json").read_text())
    alarms, alarm_notes = for_moto(alarms_template)
    key = f"alarms-{suffix}.json"
    aws["s3"].put_object(Bucket=aws["bucket"], Key=key, Body=json.dumps(alarms).encode())
    stack = load(DEPLOY / "stack.yaml")
    # what `aws cloudformation package` does: the local nested template becomes an S3 URL
    stack["Resources"]["Alarms"]["Properties"]["TemplateURL"] = (
        f"https://{aws['bucket']}.s3.amazonaws.com/{key}"
    )
    nested = {"Alarms": {k: o["Value"] for k, o in alarms_template["Outputs"].items()}}
    template, notes = for_moto(stack, nested)
    _report(f"stack.yaml ({controller})", notes)
    _report("alarms.json", alarm_notes)
    vpc, subnets = _network(aws["ec2"])
    cert = aws["acm"].request_certificate(DomainName=f"{service}.example.com")["CertificateArn"]
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/points-service:v1"
    created = _create(
        aws["cloudformation"], aws["s3"], aws["bucket"], service, template,
        {
            "VpcId": vpc, "AlbSubnetIds": ",".join(subnets), "ApiSubnetIds": ",".join(subnets),
            "WorkerSubnetIds": ",".join(subnets), "TestTrafficCidr": "203.0.113.0/24",
            "AuthIssuer": "https://issuer.example.com/",
            "AuthJwksUrl": "https://issuer.example.com/.well-known/jwks.json",
            "CertificateArn": cert, "ServiceName": service, "WorkerServiceName": f"{service}-w",
            "ApiImageUri": image, "WorkerImageUri": image, "ApiDeploymentController": controller,
        },
    )  # fmt: skip
    outputs = {o["OutputKey"]: o["OutputValue"] for o in created.get("Outputs", [])}
    # Everything a resource's properties can refer to, as created (for evaluate()).
    summaries = aws["cloudformation"].list_stack_resources(StackName=service)
    values: dict = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
    values.update({p["ParameterKey"]: p["ParameterValue"] for p in created["Parameters"]})
    for r in summaries["StackResourceSummaries"]:
        values[r["LogicalResourceId"]] = r["PhysicalResourceId"]
        if r["ResourceType"] == "AWS::IAM::Role":
            role = aws["iam"].get_role(RoleName=r["PhysicalResourceId"])["Role"]
            values[f"{r['LogicalResourceId']}.Arn"] = role["Arn"]
    for name, value in nested["Alarms"].items():
        values[f"Alarms.Outputs.{name}"] = value
    values["ApiSubnetIds"] = subnets
    values["WorkerSubnetIds"] = subnets
    return notes, service, outputs, evaluate(stack, values)


@pytest.mark.parametrize("controller", ["CODE_DEPLOY", "ECS"])
def test_service_stack_creates_on_moto(aws: dict, controller: str) -> None:
    notes, service, outputs, resolve = _service_stack(aws, controller)
    # Only what moto lacks was left out: no ECS, ELBv2, SQS, DynamoDB, IAM or S3 bucket.
    for what in notes:
        assert not what.startswith(("ApiService", "WorkerService", "PointsTable", "OrdersQueue"))

    ecs = aws["ecs"]
    cluster = outputs["ClusterName"]
    described = ecs.describe_services(cluster=cluster, services=[f"{service}-api", f"{service}-w"])[
        "services"
    ]
    by_name = {s["serviceName"]: s for s in described}
    assert by_name[f"{service}-api"]["status"] == "ACTIVE"
    assert by_name[f"{service}-w"]["status"] == "ACTIVE"
    # moto's CloudFormation model of a service reads only Cluster, TaskDefinition and
    # DesiredCount. So the API service's full properties, resolved with what the stack created,
    # go through ECS's CreateService too: botocore validates every field (the 2025 deployment
    # strategies included) against the ECS API model.
    props = lower_first(
        resolve(load(DEPLOY / "stack.yaml")["Resources"]["ApiService"]["Properties"])
    )
    props["serviceName"] = f"{service}-api-direct"
    for key in ("propagateTags",):
        props.pop(key)
    direct = ecs.create_service(**props)["service"]
    assert direct["deploymentController"]["type"] == controller
    config = props["deploymentConfiguration"]
    if controller == "ECS":
        assert config["strategy"] == "LINEAR" and config["linearConfiguration"]["stepPercent"] == 10
        # 3 green RED alarms, the 2 green-vs-blue ratios, 2 ALB alarms
        assert config["alarms"]["rollback"] is True and len(config["alarms"]["alarmNames"]) == 7
        advanced = props["loadBalancers"][0]["advancedConfiguration"]
        assert advanced["productionListenerRule"].startswith("arn:aws:elasticloadbalancing:")
    else:
        assert "strategy" not in config and "advancedConfiguration" not in props["loadBalancers"][0]
    for family in (f"{service}-api", f"{service}-worker"):
        taskdef = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        for container in taskdef["containerDefinitions"]:
            options = container["logConfiguration"]["options"]
            assert options["mode"] == "non-blocking" and options["max-buffer-size"], family
        app = taskdef["containerDefinitions"][0]
        env = {e["name"]: e["value"] for e in app["environment"]}
        assert env["TMPDIR"] in {m["containerPath"] for m in app["mountPoints"]}

    elbv2 = aws["elbv2"]
    lb = elbv2.describe_load_balancers(Names=[service])["LoadBalancers"][0]
    # moto's load balancer model ignores LoadBalancerAttributes: set the stack's through the API,
    # which refuses attribute keys that do not exist.
    stack_lb = load(DEPLOY / "stack.yaml")["Resources"]["LoadBalancer"]["Properties"]
    elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Attributes=resolve(stack_lb["LoadBalancerAttributes"]),
    )
    attributes = {
        a["Key"]: a["Value"]
        for a in elbv2.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])[
            "Attributes"
        ]
    }
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["access_logs.s3.enabled"] == "true"
    listeners = {
        ln["Port"]: ln
        for ln in elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    }
    assert set(listeners) == {80, 443, 8080}
    assert listeners[443]["Protocol"] == listeners[8080]["Protocol"] == "HTTPS"
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"
    rules = elbv2.describe_rules(ListenerArn=listeners[443]["ListenerArn"])["Rules"]
    weighted = [r for r in rules if not r["IsDefault"]]
    assert len(weighted) == (1 if controller == "ECS" else 0)  # ECS shifts a rule's weights

    groups = aws["ec2"].describe_security_groups(GroupIds=lb["SecurityGroups"])["SecurityGroups"][
        0
    ]["IpPermissions"]
    cidrs = {p["FromPort"]: [r["CidrIp"] for r in p["IpRanges"]] for p in groups}
    assert cidrs == {80: ["0.0.0.0/0"], 443: ["0.0.0.0/0"], 8080: ["203.0.113.0/24"]}

    bucket = outputs["AccessLogsBucketName"]
    encryption = aws["s3"].get_bucket_encryption(Bucket=bucket)
    rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # (moto's bucket model ignores PublicAccessBlockConfiguration: test_templates.py checks it)

    queue = aws["sqs"].get_queue_attributes(
        QueueUrl=outputs["QueueUrl"], AttributeNames=["RedrivePolicy"]
    )
    assert json.loads(queue["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == 5
    table = aws["dynamodb"].describe_table(TableName=outputs["PointsTableName"])["Table"]
    assert {k["AttributeName"] for k in table["KeySchema"]} == {"pk", "sk"}
    assert outputs["ApiDeploymentController"] == controller
    assert ("DeploymentGroupName" in outputs) is False  # moto has no CodeDeploy model: left out


def test_ecr_and_pipeline_stacks_create_on_moto(aws: dict) -> None:
    suffix = uuid.uuid4().hex[:6]
    ecr_template, ecr_notes = for_moto(load(DEPLOY / "ecr.yaml"))
    # everything in it is created (a whole-number String parameter is typed Number for moto)
    assert set(ecr_notes) <= {"Parameters.KeepImages"}
    created = _create(
        aws["cloudformation"], aws["s3"], aws["bucket"], f"ecr-{suffix}", ecr_template,
        {"RepositoryName": f"points-{suffix}"},
    )  # fmt: skip
    outputs = {o["OutputKey"]: o["OutputValue"] for o in created["Outputs"]}
    repo = boto3.client("ecr").describe_repositories(repositoryNames=[outputs["RepositoryName"]])
    assert repo["repositories"][0]["imageTagMutability"] == "IMMUTABLE"

    # The two stages' exports the pipeline imports (deploy/stack.yaml's outputs; the service
    # stack's own creation is test_service_stack_creates_on_moto).
    stages = {f"pts{suffix}": f"pts{suffix}", f"pts{suffix}-pre": f"pts{suffix}pre"}
    exports = {
        f"{stage}{key}": {
            "Value": f"arn:aws:iam::123456789012:role/{stage}-{key}-X"
            if "Role" in key
            else f"arn:aws:cloudformation:us-east-1:123456789012:stack/{stage}-Alarms-X/{uuid.uuid4()}",
            "Export": {"Name": f"{stage}:{key}"},
        }
        for stage in stages
        for key in ("ExecutionRoleArn", "ApiTaskRoleArn", "AlarmsStackId")
    }
    exporter = {
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue",
                                 "Properties": {"QueueName": f"exports-{suffix}"}}},
        "Outputs": {re.sub(r"[^A-Za-z0-9]", "", k): v for k, v in exports.items()},
    }  # fmt: skip
    _create(aws["cloudformation"], aws["s3"], aws["bucket"], f"exp-{suffix}", exporter, {})
    pipeline, notes = for_moto(load(DEPLOY / "pipeline.yaml"))
    _report("pipeline.yaml", notes)
    created = _create(
        aws["cloudformation"], aws["s3"], aws["bucket"], f"pipe-{suffix}", pipeline,
        {"SourceProvider": "CodeCommit", "CodeCommitRepositoryName": f"points-{suffix}",
         "ServiceName": f"pts{suffix}", "ServiceStackName": f"pts{suffix}",
         "PreProdServiceName": f"pts{suffix}pre", "PreProdStackName": f"pts{suffix}-pre"},
    )  # fmt: skip
    resources = {
        r["LogicalResourceId"]: r
        for r in aws["cloudformation"].list_stack_resources(StackName=f"pipe-{suffix}")[
            "StackResourceSummaries"
        ]
    }
    assert {"ArtifactsBucket", "BuildRole", "PipelineRole", "BuildLogGroup"} <= set(resources)
    bucket = resources["ArtifactsBucket"]["PhysicalResourceId"]
    rule = aws["s3"].get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert rule["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    role = resources["BuildRole"]["PhysicalResourceId"]
    policy = aws["iam"].list_role_policies(RoleName=role)["PolicyNames"]
    assert policy == ["release-build"]
    # the deploy action may pass exactly the stages' exported roles
    pipeline_role = resources["PipelineRole"]["PhysicalResourceId"]
    document = aws["iam"].get_role_policy(RoleName=pipeline_role, PolicyName="release-pipeline")
    text = str(document["PolicyDocument"])  # moto answers a dict or its text
    assert all(e["Value"] in text for e in exports.values() if ":role/" in e["Value"])
    assert all(PLACEHOLDER not in json.dumps(v) for v in created.get("Outputs", []))
