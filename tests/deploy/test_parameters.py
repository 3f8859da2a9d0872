"""Template parameters take what the services take: a value CloudFormation accepts must not be one
the service refuses when the resource is created (a failed, rolled-back stack), nor one that
widens a least-privilege policy (a ``*`` in a name that lands in an IAM ``Resource``)."""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
from typing import Any

import botocore.session
import pytest

from tests.deploy._cfn import DEPLOY, load

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
