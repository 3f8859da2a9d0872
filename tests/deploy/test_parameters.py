"""Template parameters take what the services take: a value CloudFormation accepts must not be one
the service refuses when the resource is created (a failed, rolled-back stack), nor one that
widens a least-privilege policy (a ``*`` in a name that lands in an IAM ``Resource``)."""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
import subprocess
import urllib.parse
from typing import Any

import botocore.session
import pytest

from tests.deploy._cfn import DEPLOY, ROOT, load

TEMPLATES = ["stack.yaml", "ecr.yaml", "pipeline.yaml"]
_SESSION = botocore.session.get_session()


def _allowed(parameter: dict, value: str) -> bool:
    """Would CloudFormation take ``value`` for this parameter (type, range, values, pattern)?"""
    if "AllowedValues" in parameter and value not in [str(v) for v in parameter["AllowedValues"]]:
        return False
    if parameter["Type"] == "Number":
        try:
            number = float(value)
        except ValueError:
            return False
        low = parameter.get("MinValue", -math.inf)
        return math.isfinite(number) and low <= number <= parameter.get("MaxValue", math.inf)
    return re.fullmatch(parameter.get("AllowedPattern", "(?s).*"), value) is not None


@functools.cache
def _parameters(template: str) -> dict[str, dict]:
    return load(DEPLOY / template)["Parameters"]


def _botocore_rule(service: str, shape: str) -> tuple[str, int, int]:
    meta = _SESSION.get_service_model(service).shape_for(shape).metadata
    return meta["pattern"], meta.get("min", 0), meta.get("max", 10**6)


def _service_takes(rule: tuple[str, int, int], value: str) -> bool:
    pattern, low, high = rule
    return low <= len(value) <= high and re.fullmatch(pattern, value) is not None


# ------------------------------------------------------------------ names in IAM policies


def _param_refs(node: Any, names: set[str]) -> set[str]:
    """Parameters referenced anywhere in ``node`` (``Ref`` and ``${Name}`` of ``Fn::Sub``)."""
    found: set[str] = set()
    if isinstance(node, dict):
        if "Ref" in node and node["Ref"] in names:
            found.add(node["Ref"])
        if "Fn::Sub" in node:
            text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
            found |= {n for n in re.findall(r"\$\{([A-Za-z0-9]+)\}", text) if n in names}
        for v in node.values():
            found |= _param_refs(v, names)
    elif isinstance(node, list):
        for v in node:
            found |= _param_refs(v, names)
    return found


def _policy_resource_params(template: dict) -> set[str]:
    names = set(template.get("Parameters", {}))
    found: set[str] = set()
    for res in template["Resources"].values():
        if res["Type"] not in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        props = res.get("Properties", {})
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if "PolicyDocument" in props:
            documents.append(props["PolicyDocument"])
        for document in documents:
            found |= _param_refs(
                [s.get("Resource") for s in _statements(document.get("Statement", []))], names
            )
    return found


def _statements(node: Any) -> list[dict]:
    """Statements, through ``Fn::If`` branches."""
    if isinstance(node, list):
        return [s for n in node for s in _statements(n)]
    if isinstance(node, dict) and "Fn::If" in node:
        return [s for n in node["Fn::If"][1:] for s in _statements(n)]
    return [node] if isinstance(node, dict) and "Effect" in node else []


@pytest.mark.parametrize("template", ["stack.yaml", "pipeline.yaml"])
def test_no_parameter_in_an_iam_resource_takes_a_wildcard(template: str) -> None:
    """``EcrRepositoryName=*`` would let the execution role pull from every repository, and
    ``ServiceStackName=*`` let the pipeline pass every role of the account: every parameter that
    lands in a policy's ``Resource`` refuses IAM's wildcards."""
    doc = load(DEPLOY / template)
    params = _policy_resource_params(doc)
    assert params, template
    for name in sorted(params):
        parameter = doc["Parameters"][name]
        for hostile in ("*", "?", "points-*", "points-service?", "a*b", "arn:aws:*"):
            assert not _allowed(parameter, hostile), (template, name, hostile)


# ------------------------------------------------------------------ the services' own name rules

_ECR_NAMES = ["points-service", "team/points-service", "a1", "a__b", "a--b", "a.b_c-d/e"]
_ECR_NAMES += ["a", "", "Points", "points-", "-points", "a//b", "a/", "/a", "a..b", "a._b"]
_ECR_NAMES += ["a" * 256, "a" * 257, "ab/" + "c" * 253, "points service", "a*", "x\n"]


@pytest.mark.parametrize("value", _ECR_NAMES)
@pytest.mark.parametrize(
    ("template", "name"),
    [("stack.yaml", "EcrRepositoryName"), ("ecr.yaml", "RepositoryName"),
     ("pipeline.yaml", "EcrRepositoryName")],
)  # fmt: skip
def test_repository_name_parameters_take_what_ecr_takes(
    template: str, name: str, value: str
) -> None:
    rule = _botocore_rule("ecr", "RepositoryName")
    assert _allowed(_parameters(template)[name], value) == _service_takes(rule, value)


_FUNCTION_ARNS = [
    "",
    "arn:aws:lambda:us-east-1:123456789012:function:hook",
    "arn:aws:lambda:us-east-1:123456789012:function:hook:live",
    "arn:aws:lambda:us-east-1:123456789012:function:hook:$LATEST",
    "arn:aws-cn:lambda:cn-north-1:123456789012:function:my_hook-2",
    "arn:aws:lambda:us-east-1:123456789012:function:*",
    "arn:aws:lambda:*:*:function:*",
    "*",
    "hook",
    "arn:aws:lambda:us-east-1:12345678901:function:hook",
    "arn:aws:lambda:us-east-1:123456789012:layer:hook",
    "arn:aws:lambda:us-east-1:123456789012:function:hook\n",
]


@pytest.mark.parametrize("value", _FUNCTION_ARNS)
def test_lifecycle_hook_is_a_lambda_function_arn_or_nothing(value: str) -> None:
    """ECS's ``hookTargetArn`` is a Lambda function's ARN, and the hook role may invoke exactly
    it (``Resource: !Ref LifecycleHookFunctionArn``)."""
    rule = _botocore_rule("lambda", "FunctionArn")
    takes = value == "" or _service_takes(rule, value)
    assert _allowed(_parameters("stack.yaml")["LifecycleHookFunctionArn"], value) == takes


_STACK_NAMES = ["points-service", "p", "P2", "a" * 128, "a" * 129, "1points", "-a", "a_b", ""]
_STACK_NAMES += ["points service", "points/service", "points-*", "a\n"]


@pytest.mark.parametrize("value", _STACK_NAMES)
@pytest.mark.parametrize("name", ["ServiceStackName", "PreProdStackName"])
def test_stack_name_parameters_take_what_cloudformation_takes(name: str, value: str) -> None:
    """CloudFormation's stack name rule (User Guide, "Stack name"): a letter, then letters, digits
    and '-', at most 128 characters."""
    takes = re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", value) is not None
    assert _allowed(_parameters("pipeline.yaml")[name], value) == takes


_BUCKETS = ["", "my-cfn-artifacts-123456789012", "abc", "a.b-c", "ab", "a" * 63, "a" * 64]
_BUCKETS += ["My-Bucket", "-abc", "abc-", "abc.", "a..b", "a*", "my_bucket", "x/y", "abc\n"]


@pytest.mark.parametrize("value", _BUCKETS)
def test_packaged_template_bucket_is_a_bucket_name_or_nothing(value: str) -> None:
    """S3's general purpose bucket naming rules (S3 User Guide, "Bucket naming rules"): 3-63 of
    a-z 0-9 . -, starting and ending with a letter or digit, no two adjacent periods."""
    takes = value == "" or (
        re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", value) is not None and ".." not in value
    )
    assert _allowed(_parameters("pipeline.yaml")["PackagedTemplateBucket"], value) == takes


_CODECOMMIT = ["", "points", "my.repo_1-x", "a" * 100, "a" * 101, "a*", "a/b", "a b", "a\n"]


@pytest.mark.parametrize("value", _CODECOMMIT)
def test_codecommit_repository_name_takes_what_codecommit_takes(value: str) -> None:
    rule = _botocore_rule("codecommit", "RepositoryName")
    takes = value == "" or _service_takes(rule, value)
    assert _allowed(_parameters("pipeline.yaml")["CodeCommitRepositoryName"], value) == takes


# ------------------------------------------------------------------ numbers the APIs take whole

_COUNTS = ["0", "1", "2", "20", "21", "1.5", "2.0", "1e1", "-1", "", " 2", "02", "two"]


@pytest.mark.parametrize("value", _COUNTS)
@pytest.mark.parametrize(("name", "low"), [("ApiDesiredCount", 1), ("WorkerDesiredCount", 0)])
def test_desired_counts_are_whole_numbers(name: str, low: int, value: str) -> None:
    """ECS's ``desiredCount`` is an integer: a Number parameter takes 1.5 (and 1e1), which the
    service refuses only when the stack creates or updates it."""
    takes = value.isdigit() and value == str(int(value)) and low <= int(value) <= 20
    assert _allowed(_parameters("stack.yaml")[name], value) == takes


_DAYS = ["1", "90", "365", "3650", "0", "1.5", "90.0", "1e2", "-1", "", "090", "ninety"]


@pytest.mark.parametrize("value", _DAYS)
def test_access_log_retention_is_whole_days(value: str) -> None:
    """S3's lifecycle ``Expiration.Days`` is a positive integer."""
    takes = value.isdigit() and value == str(int(value)) and int(value) >= 1
    assert _allowed(_parameters("stack.yaml")["AccessLogRetentionDays"], value) == takes


_KEEP = ["2", "20", "1000", "1", "0", "2.5", "20.0", "1e1", "-5", "", "020"]


@pytest.mark.parametrize("value", _KEEP)
def test_kept_images_are_a_whole_number(value: str) -> None:
    """ECR's lifecycle rule ``countNumber`` is an integer (ECR User Guide, lifecycle policy
    properties); 2.5 would make the repository's creation fail."""
    takes = value.isdigit() and value == str(int(value)) and int(value) >= 2
    assert _allowed(_parameters("ecr.yaml")["KeepImages"], value) == takes


def test_kept_images_reach_the_lifecycle_policy_as_a_json_integer() -> None:
    policy = load(DEPLOY / "ecr.yaml")["Resources"]["Repository"]["Properties"]["LifecyclePolicy"]
    text = policy["LifecyclePolicyText"]["Fn::Sub"]
    default = _parameters("ecr.yaml")["KeepImages"]["Default"]
    [rule] = json.loads(text.replace("${KeepImages}", default))["rules"]
    assert rule["selection"]["countNumber"] == int(default)


# ------------------------------------------------------------------ CIDRs

_CIDRS = ["203.0.113.7/32", "10.0.0.0/8", "0.0.0.0/0", "10.0.0.1/0", "192.0.2.0/1", "0.0.0.0/32"]
_CIDRS += ["256.0.0.0/8", "999.999.999.999/24", "10.0.0.0/33", "10.0.0.0/99", "10.0.0/8"]
_CIDRS += ["10.0.0.0", "01.2.3.4/32", "10.0.0.0/08", " 10.0.0.0/8", "::/0", "10.0.0.0/8\n"]


def _ec2_takes(value: str) -> bool:
    """An IPv4 CIDR: four decimal octets 0-255 (no leading zeros) and a prefix 0-32."""
    address, sep, prefix = value.partition("/")
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return bool(sep) and prefix.isdigit() and prefix == str(int(prefix)) and int(prefix) <= 32


@pytest.mark.parametrize("value", _CIDRS)
def test_allowed_cidr_is_an_ipv4_cidr(value: str) -> None:
    assert _allowed(_parameters("stack.yaml")["AllowedCidr"], value) == _ec2_takes(value)


@pytest.mark.parametrize("value", _CIDRS)
def test_test_traffic_cidr_is_never_the_whole_internet(value: str) -> None:
    """Any ``/0`` is every address (``10.0.0.1/0`` as much as ``0.0.0.0/0``)."""
    takes = _ec2_takes(value) and not value.endswith("/0")
    assert _allowed(_parameters("stack.yaml")["TestTrafficCidr"], value) == takes


# ------------------------------------------------------------------ images

_IMAGES = ["123456789012.dkr.ecr.us-east-1.amazonaws.com/points-service:v1", "python:3.12-slim"]
_IMAGES += ["public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3", "a" * 255, "a" * 256]
_IMAGES += ["repo@sha256:" + "0" * 64, "", "repo:tag with space", "repo:v1\n", "repo:$tag"]


@pytest.mark.parametrize("value", _IMAGES)
@pytest.mark.parametrize("name", ["ApiImageUri", "WorkerImageUri", "CollectorImageUri"])
def test_image_parameters_take_what_ecs_takes(name: str, value: str) -> None:
    """RegisterTaskDefinition's ``image``: up to 255 letters, digits, '-', '_', ':', '.', '/',
    '#' (and '@' of a digest), the rule ``deploy/render_revision.py --image`` applies."""
    takes = re.fullmatch(r"[A-Za-z0-9._:/#@-]{1,255}", value) is not None
    assert _allowed(_parameters("stack.yaml")[name], value) == takes


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_default_is_allowed(template: str) -> None:
    for name, parameter in _parameters(template).items():
        if "Default" in parameter and parameter["Type"] in ("String", "Number"):
            assert _allowed(parameter, str(parameter["Default"])), (template, name)


# ------------------------------------------------------------------ ids, ARNs, URLs, git names


def _members(parameter: dict, value: str) -> bool:
    """A CommaDelimitedList: CloudFormation applies the pattern to each member."""
    return all(_allowed({**parameter, "Type": "String"}, item) for item in value.split(","))


def _rules_allow(template: str, values: dict[str, list[str]]) -> bool:
    """Evaluate the template's ``Rules`` (the functions they use) for list parameter values."""

    def ev(node: Any) -> Any:
        if isinstance(node, dict):
            ((key, arg),) = node.items()
            if key == "Ref":
                return values[arg]
            if key == "Fn::Not":
                return not ev(arg[0])
            if key == "Fn::Contains":
                return ev(arg[1]) in ev(arg[0])
            if key == "Fn::EachMemberEquals":
                return all(v == ev(arg[1]) for v in ev(arg[0]))
            raise AssertionError(f"rule function not evaluated here: {key}")
        return node

    for rule in load(DEPLOY / template).get("Rules", {}).values():
        refs = _param_refs(rule, set(values))
        if not refs or refs - set(values):
            continue
        if "RuleCondition" in rule and not ev(rule["RuleCondition"]):
            continue
        if not all(ev(a["Assert"]) for a in rule["Assertions"]):
            return False
    return True


_SUBNETS = ["", "subnet-0123abcd", "subnet-0123456789abcdef0", "subnet-0123abcd,subnet-4567ef01"]
_SUBNETS += ["subnet-0123abc", "subnet-0123abcde", "subnet-0123456789abcdef", "subnet-0123ABCD"]
_SUBNETS += ["subnet-*", "subnet-0123abcd,", ",subnet-0123abcd", "subnet-0123abcd,,subnet-4567ef01"]
_SUBNETS += ["sg-0123abcd", "subnet-0123abcd ", "subnet-0123abcd\n", "*"]


@pytest.mark.parametrize("value", _SUBNETS)
def test_smoke_test_subnets_are_subnet_ids_or_nothing(value: str) -> None:
    """EC2's subnet IDs: ``subnet-`` and 8 or 17 lowercase hex digits (EC2 API reference,
    resource IDs); empty means no smoke test, but an empty member of a list is refused."""
    takes = value == "" or all(
        re.fullmatch(r"subnet-([0-9a-f]{8}|[0-9a-f]{17})", s) for s in value.split(",")
    )
    parameter = _parameters("stack.yaml")["SmokeTestSubnetIds"]
    allowed = _members(parameter, value) and _rules_allow(
        "stack.yaml", {"SmokeTestSubnetIds": value.split(",")}
    )
    assert allowed == takes


_BRANCHES = ["main", "release/2024-06", "feature/x_y.z", "v1.2", "a" * 255, "a" * 256, "a@b"]
_BRANCHES += ["", "-x", "x..y", "x//y", "/x", "x/", "x.", "x.lock", "x.lock/y", ".x", "x/.y"]
_BRANCHES += ["x y", "x~1", "x^", "x:y", "x?", "x*", "x[", "x\\y", "x@{1}", "@", "x\n", "x\x7f"]


def _git_takes_branch(value: str) -> bool:
    if not value or len(value) > 255 or value.startswith("-") or value == "@":
        return False
    proc = subprocess.run(
        ["git", "check-ref-format", f"refs/heads/{value}"], capture_output=True, timeout=10
    )
    return proc.returncode == 0


@pytest.mark.parametrize("value", _BRANCHES)
def test_branch_name_is_one_git_takes(value: str) -> None:
    """git's own rule (``git check-ref-format``; a branch also cannot start with '-' or be
    '@'), at most 255 characters (CodePipeline's BranchName)."""
    assert _allowed(_parameters("pipeline.yaml")["BranchName"], value) == _git_takes_branch(value)


_REPOS = ["", "owner/name", "my-org/points.service_2", "group/subgroup/name", "owner"]
_REPOS += ["owner/", "/name", "owner//name", "owner/na me", "owner/*", "owner/name\n"]


@pytest.mark.parametrize("value", _REPOS)
def test_full_repository_id_is_owner_and_name(value: str) -> None:
    """CodeConnections' FullRepositoryId: ``owner/name`` (GitLab groups: ``group/sub/name``),
    each part letters, digits, '.', '_' and '-'."""
    parts = value.split("/")
    takes = value == "" or (
        len(parts) >= 2 and all(re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", p) for p in parts)
    )
    assert _allowed(_parameters("pipeline.yaml")["FullRepositoryId"], value) == takes


_UUIDS = ["", "0123abcd-4567-89ab-cdef-0123456789ab", "0123abcd-4567-89ab-cdef-0123456789a"]
_UUIDS += ["------------------------------------", "0123abcd456789abcdef0123456789abcdef"]
_UUIDS += ["0123ABCD-4567-89AB-CDEF-0123456789AB", "0123abcd-4567-89ab-cdef-0123456789ab\n"]


def _is_uuid(value: str) -> bool:
    return (
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value)
        is not None
    )


@pytest.mark.parametrize("value", _UUIDS)
def test_connection_id_is_a_uuid(value: str) -> None:
    """The ID at the end of a CodeConnections connection ARN is a UUID (lowercase)."""
    takes = value == "" or _is_uuid(value)
    assert _allowed(_parameters("pipeline.yaml")["ConnectionId"], value) == takes


_CERT = "arn:aws:acm:us-east-1:123456789012:certificate/"
_CERTS = ["", _CERT + "0123abcd-4567-89ab-cdef-0123456789ab", _CERT + "*", _CERT + "x"]
_CERTS += [
    "arn:aws-cn:acm:cn-north-1:123456789012:certificate/0123abcd-4567-89ab-cdef-0123456789ab"
]
_CERTS += ["arn:aws:acm:us-east-1:12345678901:certificate/0123abcd-4567-89ab-cdef-0123456789ab"]
_CERTS += ["arn:aws:iam::123456789012:server-certificate/x", _CERT[:-1]]


@pytest.mark.parametrize("value", _CERTS)
def test_certificate_is_an_acm_certificate_arn_or_nothing(value: str) -> None:
    """ACM's certificate ARN: ``arn:PARTITION:acm:REGION:ACCOUNT:certificate/UUID`` (ACM API
    reference, CertificateArn)."""
    head, _, cert_id = value.rpartition(":certificate/")
    fields = head.split(":")
    takes = value == "" or (
        len(fields) == 5
        and fields[0] == "arn"
        and fields[1].startswith("aws")
        and fields[2] == "acm"
        and re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", fields[3]) is not None
        and re.fullmatch(r"\d{12}", fields[4]) is not None
        and _is_uuid(cert_id)
    )
    assert _allowed(_parameters("stack.yaml")["CertificateArn"], value) == takes


_VERSIONS = ["v1", "1.2.3", "abc_DEF-9", "a" * 64, "a" * 65, "", "v 1", "v1/2", "v*", "v1\n"]


@pytest.mark.parametrize("value", _VERSIONS)
@pytest.mark.parametrize("name", ["ApiVersion", "WorkerVersion", "BlueVersion", "GreenVersion"])
def test_versions_are_what_a_revision_takes(name: str, value: str) -> None:
    """A version is an image tag and the ``Version`` dimension: the rule of
    ``deploy/render_revision.py --version`` (so a stack's version is one a release can name)."""
    takes = re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value) is not None
    assert _allowed(_parameters("stack.yaml")[name], value) == takes


# ------------------------------------------------------------------ every parameter has a rule

#: Each user-typed parameter with a pattern, and the test that checks its pattern against the
#: service's rule. A new parameter fails ``test_every_parameter_has_a_service_rule`` until it
#: has AllowedValues, an AWS-specific type, or a pattern and an entry here.
SERVICE_RULES: dict[tuple[str, str], str] = {
    ("stack.yaml", "AllowedCidr"): "test_parameters.py::test_allowed_cidr_is_an_ipv4_cidr",
    ("stack.yaml", "TestTrafficCidr"): "test_parameters.py::test_test_traffic_cidr_is_never_the_whole_internet",
    ("stack.yaml", "CertificateArn"): "test_parameters.py::test_certificate_is_an_acm_certificate_arn_or_nothing",
    ("stack.yaml", "ServiceName"): "test_templates.py::test_service_names_are_ones_the_load_balancer_takes",
    ("stack.yaml", "WorkerServiceName"): "test_pipeline_stages.py::test_synth_takes_exactly_the_stage_names_the_stack_takes",
    ("stack.yaml", "EcrRepositoryName"): "test_parameters.py::test_repository_name_parameters_take_what_ecr_takes",
    ("stack.yaml", "ApiImageUri"): "test_parameters.py::test_image_parameters_take_what_ecs_takes",
    ("stack.yaml", "WorkerImageUri"): "test_parameters.py::test_image_parameters_take_what_ecs_takes",
    ("stack.yaml", "CollectorImageUri"): "test_parameters.py::test_image_parameters_take_what_ecs_takes",
    ("stack.yaml", "AuthIssuer"): "test_parameters.py::test_auth_urls_are_https_urls",
    ("stack.yaml", "AuthJwksUrl"): "test_parameters.py::test_auth_urls_are_https_urls",
    ("stack.yaml", "AuthAudience"): "test_parameters.py::test_audience_is_one_token_without_spaces",
    ("stack.yaml", "ApiVersion"): "test_parameters.py::test_versions_are_what_a_revision_takes",
    ("stack.yaml", "WorkerVersion"): "test_parameters.py::test_versions_are_what_a_revision_takes",
    ("stack.yaml", "BlueVersion"): "test_parameters.py::test_versions_are_what_a_revision_takes",
    ("stack.yaml", "GreenVersion"): "test_parameters.py::test_versions_are_what_a_revision_takes",
    ("stack.yaml", "ApiDesiredCount"): "test_parameters.py::test_desired_counts_are_whole_numbers",
    ("stack.yaml", "WorkerDesiredCount"): "test_parameters.py::test_desired_counts_are_whole_numbers",
    ("stack.yaml", "EcsBakeTimeInMinutes"): "test_templates.py::test_ecs_bake_time_parameters_take_whole_minutes_0_to_1440",
    ("stack.yaml", "EcsStepBakeTimeInMinutes"): "test_templates.py::test_ecs_bake_time_parameters_take_whole_minutes_0_to_1440",
    ("stack.yaml", "EcsStepPercent"): "test_templates.py::test_ecs_step_percent_parameter_takes_what_ecs_takes",
    ("stack.yaml", "LifecycleHookFunctionArn"): "test_parameters.py::test_lifecycle_hook_is_a_lambda_function_arn_or_nothing",
    ("stack.yaml", "SmokeTestSubnetIds"): "test_parameters.py::test_smoke_test_subnets_are_subnet_ids_or_nothing",
    ("stack.yaml", "SmokeTestBaseUrl"): "test_parameters.py::test_smoke_test_base_url_is_scheme_host_and_port",
    ("stack.yaml", "SmokeTestReadPath"): "test_parameters.py::test_smoke_test_read_path_is_a_url_path",
    ("stack.yaml", "AccessLogRetentionDays"): "test_parameters.py::test_access_log_retention_is_whole_days",
    ("stack.yaml", "NotificationEmail"): "test_parameters.py::test_notification_email_is_an_address_or_nothing",
    ("ecr.yaml", "RepositoryName"): "test_parameters.py::test_repository_name_parameters_take_what_ecr_takes",
    ("ecr.yaml", "KeepImages"): "test_parameters.py::test_kept_images_are_a_whole_number",
    ("pipeline.yaml", "ConnectionId"): "test_parameters.py::test_connection_id_is_a_uuid",
    ("pipeline.yaml", "FullRepositoryId"): "test_parameters.py::test_full_repository_id_is_owner_and_name",
    ("pipeline.yaml", "CodeCommitRepositoryName"): "test_parameters.py::test_codecommit_repository_name_takes_what_codecommit_takes",
    ("pipeline.yaml", "BranchName"): "test_parameters.py::test_branch_name_is_one_git_takes",
    ("pipeline.yaml", "ServiceStackName"): "test_parameters.py::test_stack_name_parameters_take_what_cloudformation_takes",
    ("pipeline.yaml", "PreProdStackName"): "test_parameters.py::test_stack_name_parameters_take_what_cloudformation_takes",
    ("pipeline.yaml", "ServiceName"): "test_templates.py::test_service_names_are_ones_the_load_balancer_takes",
    ("pipeline.yaml", "PreProdServiceName"): "test_templates.py::test_service_names_are_ones_the_load_balancer_takes",
    ("pipeline.yaml", "BakeMinutes"): "test_pipeline_stages.py::test_the_bake_is_whole_minutes_from_1_to_60",
    ("pipeline.yaml", "PackagedTemplateBucket"): "test_parameters.py::test_packaged_template_bucket_is_a_bucket_name_or_nothing",
    ("pipeline.yaml", "EcrRepositoryName"): "test_parameters.py::test_repository_name_parameters_take_what_ecr_takes",
}  # fmt: skip


def _typed_by_aws(parameter: dict) -> bool:
    """AWS-specific types (``AWS::EC2::VPC::Id``, ``List<AWS::EC2::Subnet::Id>``):
    CloudFormation checks the value names an existing resource of the account."""
    kind = parameter["Type"]
    return kind.startswith("AWS::") or kind.startswith("List<AWS::")


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_parameter_has_a_service_rule(template: str) -> None:
    """A parameter a user types takes only what its service takes: AllowedValues, an
    AWS-specific type, or an AllowedPattern checked by a test against the service's rule."""
    for name, parameter in _parameters(template).items():
        if "AllowedValues" in parameter or _typed_by_aws(parameter):
            continue
        assert "AllowedPattern" in parameter, (template, name, "no AllowedPattern")
        assert (template, name) in SERVICE_RULES, (template, name, "no service-rule test")
    for (template_, name), where in SERVICE_RULES.items():
        if template_ != template:
            continue
        assert name in _parameters(template), (template, name, "gone: drop it from SERVICE_RULES")
        path, _, function = where.partition("::")
        source = (ROOT / "tests" / "deploy" / path).read_text()
        body = source.split(f"def {function}(", 1)
        assert len(body) == 2, (name, where, "no such test")


_URLS = ["https://issuer.example.com/", "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Ab"]
_URLS += ["https://idp.example.com:8443/realms/x", "https://idp.example.com/.well-known/jwks.json"]
_URLS += ["http://issuer.example.com/", "https://", "https:///x", "https://a b", "https://x\n"]
_URLS += ["https://user@x/", "ftp://x", "https://x/ y"]


@pytest.mark.parametrize("value", _URLS)
@pytest.mark.parametrize("name", ["AuthIssuer", "AuthJwksUrl"])
def test_auth_urls_are_https_urls(name: str, value: str) -> None:
    """An https URL with a host (the API refuses plain http for the issuer and its keys)."""
    parsed = urllib.parse.urlsplit(value)
    takes = (
        parsed.scheme == "https"
        and re.fullmatch(r"[A-Za-z0-9.-]+(:\d{1,5})?", parsed.netloc) is not None
        and re.search(r"[\s\x00-\x1f\x7f]", value) is None
    )
    assert _allowed(_parameters("stack.yaml")[name], value) == takes


@pytest.mark.parametrize(
    "value", ["points-service", "api://points", "a" * 256, "a" * 257, "", "a b"]
)
def test_audience_is_one_token_without_spaces(value: str) -> None:
    """``aud`` is a StringOrURI (RFC 7519): one value, no whitespace, bounded here to 256."""
    takes = 1 <= len(value) <= 256 and re.search(r"\s", value) is None
    assert _allowed(_parameters("stack.yaml")["AuthAudience"], value) == takes


_BASES = ["", "https://api.example.com:8080", "http://x.elb.amazonaws.com:8080", "https://x"]
_BASES += ["https://x:8080/", "https://x/path", "ftp://x", "https://x:123456", "https://a b"]


@pytest.mark.parametrize("value", _BASES)
def test_smoke_test_base_url_is_scheme_host_and_port(value: str) -> None:
    """``scheme://host[:port]``, nothing after it: the Lambda appends the paths itself."""
    takes = value == "" or re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?", value) is not None
    assert _allowed(_parameters("stack.yaml")["SmokeTestBaseUrl"], value) == takes


_PATHS = ["/version", "/readyz", "/v1/x?y=1&z=%20", "", "version", "/a b", "/x#y", "/x\n"]


@pytest.mark.parametrize("value", _PATHS)
def test_smoke_test_read_path_is_a_url_path(value: str) -> None:
    """A path (and query) the Lambda appends to the base URL: '/' first, URL-safe characters."""
    takes = re.fullmatch(r"/[A-Za-z0-9/_.?=&%-]*", value) is not None
    assert _allowed(_parameters("stack.yaml")["SmokeTestReadPath"], value) == takes


_EMAILS = ["", "ops@example.com", "a.b+c@sub.example.co.jp", "ops", "ops@", "@example.com"]
_EMAILS += ["ops@example", "o ps@example.com", "ops@example.com\n", "a@b@example.com"]


@pytest.mark.parametrize("value", _EMAILS)
def test_notification_email_is_an_address_or_nothing(value: str) -> None:
    """One address SNS can mail (local part, '@', a domain with a dot), or nothing."""
    local, at, domain = value.partition("@")
    takes = value == "" or (
        bool(local and at)
        and "@" not in domain
        and "." in domain.strip(".")
        and re.search(r"\s", value) is None
    )
    assert _allowed(_parameters("stack.yaml")["NotificationEmail"], value) == takes
