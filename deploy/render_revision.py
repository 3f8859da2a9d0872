#!/usr/bin/env python3
"""Render a CodeDeploy revision of the API: ``taskdef.json`` + ``appspec.yaml`` (+ deployment input).

Standard library only: it runs in CodeBuild (deploy/buildspec.yml) and on a laptop.

    aws cloudformation describe-stacks --stack-name points-service \\
        --query 'Stacks[0].Outputs' > out/outputs.json
    python3 deploy/render_revision.py --outputs out/outputs.json --region us-east-1 \\
        --version v2 --image 1234.dkr.ecr.us-east-1.amazonaws.com/points-service:v2 \\
        --set-env RATE_LIMIT_ENABLED=true --out out/v2

``--image`` defaults to ``<IMAGE1_NAME>``, the placeholder CodePipeline's ECS blue/green action
fills in from ``imageDetail.json``. With ``--task-definition-arn`` (after
``aws ecs register-task-definition``) the AppSpec names that revision and ``create-deployment.json``
is written for ``aws deploy create-deployment --cli-input-json``.

The AppSpec carries the API's network configuration (stack outputs ``ApiSubnetIds``,
``ApiSecurityGroupId``, ``ApiAssignPublicIp``). A service with the CODE_DEPLOY controller takes a
new network configuration only from a deployment, so ``--subnets``/``--assign-public-ip`` are how
the API moves, e.g. to private subnets; a stack update of those parameters fails.

When the stack has a smoke test (output ``SmokeTestFunctionName``), the AppSpec's ``Hooks`` name it
at ``AfterAllowTestTraffic``: CodeDeploy runs it once the test listener serves the replacement
tasks and before any production traffic moves; its ``Failed`` rolls the deployment back. Bad
input: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
TASKDEF_TEMPLATE = HERE / "taskdef.json"
APPSPEC_TEMPLATE = HERE / "appspec.yaml"
#: Stack outputs the task definition template needs.
REQUIRED_OUTPUTS = (
    "ServiceName",
    "ExecutionRoleArn",
    "ApiTaskRoleArn",
    "LogGroupName",
    "PointsTableName",
    "CollectorConfigParameter",
    "CollectorImageUri",
    "AuthIssuer",
    "AuthAudience",
    "AuthJwksUrl",
)
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")
_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
# EC2 resource IDs: the prefix and 8 (older) or 17 hex digits, nothing in between
_SUBNET = re.compile(r"subnet-([0-9a-f]{8}|[0-9a-f]{17})")
_SECURITY_GROUP = re.compile(r"sg-([0-9a-f]{8}|[0-9a-f]{17})")
#: Stack outputs of the API's network configuration (optional: older stacks lack them).
NETWORK_OUTPUTS = ("ApiSubnetIds", "ApiSecurityGroupId", "ApiAssignPublicIp")
#: Stack output naming the AfterAllowTestTraffic smoke test function (absent: no hook).
SMOKE_TEST_OUTPUT = "SmokeTestFunctionName"
#: A Lambda function name or ARN (Lambda's FunctionName rules, shortened).
#: An ECS task definition ARN (``register-task-definition``'s answer): family 1-255 of
#: A-Z a-z 0-9 _ -, then the revision. Checked because it is written into the AppSpec (YAML).
_TASKDEF_ARN = re.compile(
    r"arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task-definition/[A-Za-z0-9_-]{1,255}:[1-9]\d{0,9}"
)
#: An image ECS accepts (RegisterTaskDefinition ``ContainerDefinition.image``: "Up to 255 letters
#: (uppercase and lowercase), numbers, hyphens, underscores, colons, periods, forward slashes, and
#: number signs", plus ``@`` of a digest), or CodePipeline's placeholder.
_IMAGE = re.compile(r"[A-Za-z0-9._:/#@-]{1,255}|<IMAGE1_NAME>")
_FUNCTION = re.compile(r"(arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:)?[A-Za-z0-9_-]{1,64}")


#: App settings the stack wires to something outside the task definition; a release that changed
#: one would leave the rollback alarms watching metrics it no longer emits (they could never fire)
#: or the load balancer probing a port nobody listens on. (Standard library only: the names are
#: telemetry's and the app's own, written out.)
WIRED_ENV = {
    "OTEL_SERVICE_NAME": "the rollback alarms watch the stack's Service (its ServiceName)",
    "AWS_EMF_NAMESPACE": "the rollback alarms watch the metrics' namespace",
    "AWS_EMF_ENVIRONMENT": "the rollback alarms read the EMF lines the awslogs driver ships",
    "PORT": "the target groups, the AppSpec and the task definition use port 8080",
    "POINTS_STORE": "the task role grants the stack's DynamoDB table only; a store inside the "
    "task would lose every write when the task stops",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "spans go to the task's collector sidecar on 127.0.0.1:4318",
    "TMPDIR": "the root file system is read-only; /tmp is the task's only writable volume",
}


class UsageError(ValueError):
    """Input that cannot produce a revision; reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations ("--min" for "--min-healthy-percent"), in subcommands too (they
        # are this class): a typo or a later option must not silently change the meaning.
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> NoReturn:
        # One line on stderr, as for every other bad input (not argparse's usage block).
        self.exit(2, f"render_revision: {message} (see --help)\n")


def load_outputs(path: Path) -> dict[str, str]:
    """Stack outputs from ``describe-stacks`` (a list of OutputKey/OutputValue or a plain dict)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON: {exc.msg} (line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 JSON (describe-stacks output)") from None
    if isinstance(data, dict) and "Stacks" in data:
        stacks = data["Stacks"]
        if not (isinstance(stacks, list) and stacks and isinstance(stacks[0], dict)):
            raise UsageError(f'{path}: "Stacks" holds no stack (expected describe-stacks output)')
        data = stacks[0].get("Outputs", [])
    if isinstance(data, list):
        try:
            data = {o["OutputKey"]: o["OutputValue"] for o in data}
        except (TypeError, KeyError):
            raise UsageError(f"{path}: expected OutputKey/OutputValue objects") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected stack outputs")
    missing = [k for k in REQUIRED_OUTPUTS if not isinstance(data.get(k), str) or not data[k]]
    if missing:
        raise UsageError(f"{path}: missing stack output {missing[0]}")
    return {k: str(v) for k, v in data.items()}


def render_taskdef(
    outputs: dict[str, str],
    *,
    region: str,
    version: str,
    image: str = "<IMAGE1_NAME>",
    env: dict[str, str] | None = None,
) -> dict:
    """The API task definition (register-task-definition input) for one release."""
    if not _VERSION.fullmatch(version):
        raise UsageError(f"--version must be 1-64 characters of A-Z a-z 0-9 . _ -, got {version!r}")
    if not _REGION.fullmatch(region):
        raise UsageError(f"--region does not look like an AWS region: {region!r}")
    if not _IMAGE.fullmatch(image):
        raise UsageError(
            "--image must be 1-255 characters of A-Z a-z 0-9 - _ : . / # @ (ECS's image rule), "
            f"got {image!r:.120}"
        )
    values = {**outputs, "Region": region, "AppVersion": version}

    def fill(match: re.Match[str]) -> str:
        return json.dumps(values[match.group(1)])[1:-1]  # JSON-escaped, inside the quotes

    template = TASKDEF_TEMPLATE.read_text(encoding="utf-8")
    # variables filled from the stack's outputs (POINTS_TABLE, AUTH_*, AWS_REGION, ...)
    from_stack = {
        e["name"]: ", ".join(_PLACEHOLDER.findall(e["value"]))
        for e in json.loads(template)["containerDefinitions"][0]["environment"]
        if _PLACEHOLDER.search(e["value"])
    }
    text = _PLACEHOLDER.sub(fill, template)
    taskdef = json.loads(text)
    app = taskdef["containerDefinitions"][0]
    app["image"] = image
    environment = {e["name"]: e["value"] for e in app["environment"]}
    for name, value in (env or {}).items():
        if name == "APP_VERSION":
            raise UsageError("set APP_VERSION with --version, not --set-env")
        if name in WIRED_ENV:
            raise UsageError(f"{name} cannot be set per release: {WIRED_ENV[name]}")
        if name in from_stack:
            raise UsageError(
                f"{name} cannot be set per release: it is the stack's {from_stack[name]} "
                "(change the stack instead)"
            )
        environment[name] = value
    app["environment"] = [{"name": k, "value": v} for k, v in environment.items()]
    return taskdef


def network_configuration(
    outputs: dict[str, str],
    *,
    subnets: str | None = None,
    assign_public_ip: str | None = None,
) -> dict | None:
    """The AppSpec's ``NetworkConfiguration`` (shape of ECS's ``AwsVpcConfiguration``): the stack
    outputs, with ``subnets`` (comma-separated ``subnet-...`` IDs) and ``assign_public_ip``
    (``ENABLED``/``DISABLED``) replacing theirs. None when the stack has no such outputs and
    nothing is given (the deployment then keeps the service's configuration)."""
    if (
        subnets is None
        and assign_public_ip is None
        and not all(outputs.get(k) for k in NETWORK_OUTPUTS)
    ):
        return None
    security_group = outputs.get("ApiSecurityGroupId", "")
    if not _SECURITY_GROUP.fullmatch(security_group):
        raise UsageError(
            f"stack output ApiSecurityGroupId is not a security group ID: {security_group!r}"
        )
    subnet_list = (subnets if subnets is not None else outputs.get("ApiSubnetIds", "")).split(",")
    subnet_list = [s.strip() for s in subnet_list]
    bad = [s for s in subnet_list if not _SUBNET.fullmatch(s)]
    if bad:
        raise UsageError(
            f"--subnets must be comma-separated subnet IDs (subnet-...), got {bad[0]!r}"
        )
    if len(subnet_list) > 16:  # ECS's limit per AwsVpcConfiguration
        raise UsageError(f"--subnets: at most 16 subnets, got {len(subnet_list)}")
    public_ip = (
        assign_public_ip if assign_public_ip is not None else outputs.get("ApiAssignPublicIp")
    )
    if public_ip not in ("ENABLED", "DISABLED"):
        raise UsageError(f"--assign-public-ip must be ENABLED or DISABLED, got {public_ip!r}")
    return {
        "AwsvpcConfiguration": {
            "Subnets": subnet_list,
            "SecurityGroups": [security_group],
            "AssignPublicIp": public_ip,
        }
    }


def lifecycle_hooks(outputs: dict[str, str]) -> dict[str, str]:
    """The AppSpec's hooks from the stack outputs: ``{"AfterAllowTestTraffic": <function>}`` when
    the stack has a smoke test, else ``{}``."""
    function = outputs.get(SMOKE_TEST_OUTPUT, "")
    if not function:
        return {}
    if not _FUNCTION.fullmatch(function):
        raise UsageError(f"stack output {SMOKE_TEST_OUTPUT} is not a Lambda function: {function!r}")
    return {"AfterAllowTestTraffic": function}


def render_appspec(
    task_definition: str = "<TASK_DEFINITION>",
    network: dict | None = None,
    hooks: dict[str, str] | None = None,
) -> str:
    """The AppSpec text; ``task_definition`` replaces the placeholder when given, ``network``
    (from :func:`network_configuration`) becomes the target service's NetworkConfiguration,
    ``hooks`` (lifecycle event -> Lambda function, from :func:`lifecycle_hooks`) the Hooks."""
    text = APPSPEC_TEMPLATE.read_text(encoding="utf-8").replace(
        "TaskDefinition: <TASK_DEFINITION>", f"TaskDefinition: {task_definition}"
    )
    if network:
        vpc = network["AwsvpcConfiguration"]
        # JSON lists and strings are YAML flow syntax: no YAML library needed in CodeBuild.
        text += (
            "        NetworkConfiguration:\n"
            "          AwsvpcConfiguration:\n"
            f"            Subnets: {json.dumps(vpc['Subnets'])}\n"
            f"            SecurityGroups: {json.dumps(vpc['SecurityGroups'])}\n"
            f"            AssignPublicIp: {vpc['AssignPublicIp']}\n"
        )
    if hooks:
        text += "Hooks:\n" + "".join(
            f"  - {event}: {json.dumps(fn)}\n" for event, fn in hooks.items()
        )
    return text


def deployment_input(outputs: dict[str, str], appspec: str, description: str) -> dict:
    """``aws deploy create-deployment --cli-input-json`` body for this revision."""
    for key in ("CodeDeployApplication", "DeploymentGroupName"):
        if not outputs.get(key):
            raise UsageError(f"missing stack output {key}")
    return {
        "applicationName": outputs["CodeDeployApplication"],
        "deploymentGroupName": outputs["DeploymentGroupName"],
        "description": description,
        "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}},
    }


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not _ENV_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=Path, required=True, help="describe-stacks outputs JSON")
    parser.add_argument("--region", required=True)
    parser.add_argument("--version", required=True, help="APP_VERSION (also the image tag)")
    parser.add_argument("--image", default="<IMAGE1_NAME>")
    parser.add_argument("--set-env", type=_env_pair, action="append", default=[], metavar="K=V")
    parser.add_argument("--task-definition-arn", help="write the AppSpec for this revision")
    parser.add_argument("--subnets", help="API subnets for this deployment (comma-separated IDs)")
    parser.add_argument("--assign-public-ip", help="ENABLED or DISABLED for this deployment")
    parser.add_argument("--out", type=Path, default=Path("."))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        arn = args.task_definition_arn
        if arn is not None and not _TASKDEF_ARN.fullmatch(arn):
            raise UsageError(
                "--task-definition-arn is not an ECS task definition ARN "
                f"(arn:aws:ecs:<region>:<account>:task-definition/<family>:<revision>): {arn!r}"
            )
        outputs = load_outputs(args.outputs)
        taskdef = render_taskdef(
            outputs,
            region=args.region,
            version=args.version,
            image=args.image,
            env=dict(args.set_env),
        )
        network = network_configuration(
            outputs, subnets=args.subnets, assign_public_ip=args.assign_public_ip
        )
        appspec = render_appspec(
            args.task_definition_arn or "<TASK_DEFINITION>", network, lifecycle_hooks(outputs)
        )
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "taskdef.json").write_text(json.dumps(taskdef, indent=2) + "\n")
        (args.out / "appspec.yaml").write_text(appspec)
        if args.task_definition_arn:
            body = deployment_input(outputs, appspec, f"{outputs['ServiceName']} {args.version}")
            (args.out / "create-deployment.json").write_text(json.dumps(body, indent=2) + "\n")
    except UsageError as exc:
        print(f"render_revision: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"render_revision: cannot write to {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
