#!/usr/bin/env python3
"""Point the rollback alarms at the release about to be deployed, before any traffic shifts.

Standard library and the AWS CLI only: it runs in CodeBuild (deploy/pre-deploy.d/90-point-alarms)
and on a laptop.

    python3 deploy/point_alarms.py --stack points-service --green-version v3 [--dry-run]

What it derives, from AWS rather than from a person:

* the **running version** (``BlueVersion``): ``APP_VERSION`` of the API's running task definition,
  the service's ``PRIMARY`` task set (CODE_DEPLOY controller) or its task definition (ECS);
* the **replacement target group** (``ReplacementTargetGroup``): the one of the stack's two target
  groups that is NOT serving the production listener (its default action, or the weights of the
  production listener rule with ECS native deployments). CodeDeploy puts the new tasks there;
* ``GreenVersion`` is the release (``--green-version``, the image tag).

The alarms are read from the template the stack's nested ``Alarms`` stack was made from
(``--alarms-template`` to give one). Then a stack update with the previous template changes exactly those three parameters (every other
one ``UsePreviousValue``), which re-renders only the nested alarms stack, waits for it, and reads the
alarms back (``cloudwatch describe-alarms``) to check that each watches what it should. With
``--dry-run`` nothing is changed: the plan (parameters, and the dimensions every alarm of the alarms
template would watch) is printed, and written as JSON with ``--plan FILE``.

Because each release derives both values from what is running, the state after a deployment,
successful or rolled back, is the starting point of the next one: nothing to reset by hand.

The rollback alarms must watch the stack's own ``Service`` (its ``ServiceName`` output): alarms
synthesized for another name could never fire, so such a stack is refused (exit 1).

Exit status: 0 done, 1 AWS refused or the alarms do not watch the release afterwards, 2 bad input
(one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

#: The stack parameters this step sets; everything else keeps its value.
POINTED = ("BlueVersion", "GreenVersion", "ReplacementTargetGroup")
#: Stack outputs it reads (deploy/stack.yaml).
REQUIRED_OUTPUTS = (
    "ClusterName",
    "ApiServiceName",
    "ProductionListenerArn",
    "BlueTargetGroupArn",
    "GreenTargetGroupArn",
)
_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
_STACK = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
AWS_TIMEOUT_S = 120
#: CloudFormation's waiter polls every 30 s, 120 times; CodeBuild's own timeout bounds it too.
WAIT_TIMEOUT_S = 3700


class UsageError(ValueError):
    """Input that cannot be used: one line on stderr, exit status 2."""


class AwsError(RuntimeError):
    """An AWS call failed or AWS is not in a state to deploy: one line on stderr, exit status 1."""


def aws(*args: str, region: str | None = None, timeout: float = AWS_TIMEOUT_S) -> Any:
    """Run ``aws <args> --output json`` and return the parsed answer (None for no output)."""
    command = ["aws", *args, "--output", "json"]
    if region:
        command += ["--region", region]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise AwsError("the AWS CLI (aws) is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise AwsError(f"aws {' '.join(args[:2])} took longer than {timeout:g} s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise AwsError(f"aws {' '.join(args[:2])}: {lines[-1] if lines else proc.returncode}")
    text = proc.stdout.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise AwsError(f"aws {' '.join(args[:2])} answered something that is not JSON") from None


def _arn_suffix(arn: str, marker: str) -> str:
    """``targetgroup/<name>/<id>`` (a CloudWatch dimension value) from an ELB ARN."""
    index = arn.find(marker)
    if index < 0:
        raise AwsError(f"not an ELB {marker.rstrip('/')} ARN: {arn!r}")
    return arn[index:]


def load_balancer_full_name(listener_arn: str) -> str:
    """``app/<name>/<id>`` from ``...:listener/app/<name>/<id>/<listener id>``."""
    parts = _arn_suffix(listener_arn, "listener/").split("/")
    if len(parts) != 5:
        raise AwsError(f"not a listener ARN: {listener_arn!r}")
    return "/".join(parts[1:4])


def serving_target_group(actions: list[dict[str, Any]]) -> str:
    """The target group ARN a listener's (or rule's) forward action sends traffic to. A split
    (two groups with weight) means a deployment is shifting traffic now: :class:`AwsError`."""
    for action in actions:
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
        weighted = [g for g in groups if g.get("Weight", 1) > 0]
        if len(weighted) > 1:
            split = ", ".join(f"{g['TargetGroupArn']}={g.get('Weight')}" for g in weighted)
            raise AwsError(
                f"production traffic is split between target groups ({split}): a deployment is "
                "in progress; release after it has finished"
            )
        if weighted:
            return weighted[0]["TargetGroupArn"]
        if action.get("TargetGroupArn"):
            return action["TargetGroupArn"]
    raise AwsError("the production listener has no forward action")


def running_version(
    outputs: dict[str, str], region: str | None, fallback: str
) -> tuple[str, str | None]:
    """``(version, task definition ARN)`` of what serves production now; ``fallback`` (the stack's
    BlueVersion) with None when the service runs nothing yet."""
    described = aws(
        "ecs",
        "describe-services",
        "--cluster",
        outputs["ClusterName"],
        "--services",
        outputs["ApiServiceName"],
        region=region,
    )
    services = (described or {}).get("services") or []
    if not services:
        return fallback, None
    service = services[0]
    primary = [s for s in service.get("taskSets") or [] if s.get("status") == "PRIMARY"]
    arn = primary[0]["taskDefinition"] if primary else service.get("taskDefinition")
    if not arn:
        return fallback, None
    taskdef = (
        aws("ecs", "describe-task-definition", "--task-definition", arn, region=region) or {}
    ).get("taskDefinition") or {}
    for container in taskdef.get("containerDefinitions") or []:
        if container.get("name") != "app":
            continue
        for pair in container.get("environment") or []:
            if pair.get("name") == "APP_VERSION" and pair.get("value"):
                return pair["value"], arn
    raise AwsError(f"running task definition {arn} has no APP_VERSION in its app container")


def replacement_target_group(outputs: dict[str, str], region: str | None) -> str:
    """``"green"`` or ``"blue"``: the stack's target group that does not serve production."""
    rule = outputs.get("ProductionListenerRuleArn")
    if rule:  # ECS native deployments shift the weights of this rule
        answer = aws("elbv2", "describe-rules", "--rule-arns", rule, region=region) or {}
        actions = ((answer.get("Rules") or [{}])[0]).get("Actions") or []
    else:
        listener = outputs["ProductionListenerArn"]
        answer = aws("elbv2", "describe-listeners", "--listener-arns", listener, region=region)
        actions = (((answer or {}).get("Listeners") or [{}])[0]).get("DefaultActions") or []
    serving = serving_target_group(actions)
    if serving == outputs["BlueTargetGroupArn"]:
        return "green"
    if serving == outputs["GreenTargetGroupArn"]:
        return "blue"
    raise AwsError(f"production is served by {serving}, which is neither of the stack's groups")


def alarm_targets(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, list[str]]:
    """What each alarm of the alarms template watches with these template parameters:
    alarm name -> sorted ``Name=Value`` dimensions (every metric of a metric-math alarm)."""

    def value(v: Any) -> str:
        if isinstance(v, dict) and "Ref" in v:
            if v["Ref"] not in parameters:
                raise UsageError(f"the alarms template refers to an unknown parameter {v['Ref']!r}")
            return parameters[v["Ref"]]
        return str(v)

    targets: dict[str, list[str]] = {}
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        dims = list(props.get("Dimensions") or [])
        for metric in props.get("Metrics") or []:
            dims += ((metric.get("MetricStat") or {}).get("Metric") or {}).get("Dimensions") or []
        name = value(props["AlarmName"])
        targets[name] = sorted({f"{d['Name']}={value(d['Value'])}" for d in dims})
    return targets


def described_targets(described: dict[str, Any]) -> dict[str, list[str]]:
    """The same mapping from ``cloudwatch describe-alarms`` output (what AWS has now)."""
    targets: dict[str, list[str]] = {}
    for alarm in described.get("MetricAlarms") or []:
        dims = list(alarm.get("Dimensions") or [])
        for metric in alarm.get("Metrics") or []:
            dims += ((metric.get("MetricStat") or {}).get("Metric") or {}).get("Dimensions") or []
        targets[alarm["AlarmName"]] = sorted({f"{d['Name']}={d['Value']}" for d in dims})
    return targets


def deployed_alarms_template(stack: str, region: str | None) -> dict[str, Any]:
    """The alarms template the stack's nested ``Alarms`` stack was made from (each stage may have
    its own: `python -m alarms synth --service`), so the plan and the check use what is deployed."""
    resource = aws(
        "cloudformation",
        "describe-stack-resource",
        "--stack-name",
        stack,
        "--logical-resource-id",
        "Alarms",
        region=region,
    )
    nested = ((resource or {}).get("StackResourceDetail") or {}).get("PhysicalResourceId")
    if not nested:
        raise AwsError(f"stack {stack} has no Alarms nested stack")
    body = (aws("cloudformation", "get-template", "--stack-name", nested, region=region) or {}).get(
        "TemplateBody"
    )
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError:
            raise AwsError(
                "the deployed alarms template is not JSON; pass it with --alarms-template"
            ) from None
    if not isinstance(body, dict):
        raise AwsError(f"no template for the alarms stack {nested}")
    return body


def template_problem(template: Any) -> str | None:
    """Why ``template`` is not an alarms template this step can plan with (None if it is): a JSON
    object whose ``AWS::CloudWatch::Alarm`` resources have properties and an ``AlarmName``, and
    whose ``DeploymentAlarmNames`` output names at least one of them (without it, the check after
    the update would have nothing to check)."""
    if not isinstance(template, dict):
        return "is not a JSON object"
    resources, outputs = template.get("Resources", {}), template.get("Outputs", {})
    if not isinstance(resources, dict) or not isinstance(outputs, dict):
        return "has Resources or Outputs that are not objects"
    alarms = set()
    for key, resource in resources.items():
        if not isinstance(resource, dict):
            return f"resource {key} is not an object"
        props = resource.get("Properties")
        if resource.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        if not (isinstance(props, dict) and props.get("AlarmName")):
            return f"alarm {key} has no Properties.AlarmName"
        alarms.add(str(props["AlarmName"]))
    names = rollback_alarm_names(template)
    if not names:
        return "names no rollback alarm (output DeploymentAlarmNames)"
    unknown = [n for n in names if n not in alarms]
    if unknown:
        return f"names rollback alarm {unknown[0]} in DeploymentAlarmNames but has no such alarm"
    return None


def rollback_alarm_names(template: dict[str, Any]) -> list[str]:
    """The alarms the deployment watches (the template's DeploymentAlarmNames output)."""
    output = template.get("Outputs", {}).get("DeploymentAlarmNames", {})
    value = output.get("Value", "") if isinstance(output, dict) else ""
    return [n for n in str(value).split(",") if n]


def plan(
    stack: str, green_version: str, *, region: str | None, template: dict[str, Any]
) -> dict[str, Any]:
    """Everything this step would set and what each alarm would then watch (no change made)."""
    described = aws("cloudformation", "describe-stacks", "--stack-name", stack, region=region)
    info = ((described or {}).get("Stacks") or [None])[0]
    if not info:
        raise AwsError(f"stack {stack} not found")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in info.get("Outputs") or []}
    current = {p["ParameterKey"]: p.get("ParameterValue", "") for p in info.get("Parameters") or []}
    missing = [k for k in REQUIRED_OUTPUTS if not outputs.get(k)]
    if missing or "ReplacementTargetGroup" not in current:
        raise AwsError(
            f"stack {stack} was made from an older deploy/stack.yaml (no "
            f"{missing[0] if missing else 'ReplacementTargetGroup'}); update it with the current "
            "template once, then release"
        )
    blue, running_arn = running_version(outputs, region, current.get("BlueVersion", ""))
    replacement = replacement_target_group(outputs, region)
    groups = {
        "blue": _arn_suffix(outputs["BlueTargetGroupArn"], "targetgroup/"),
        "green": _arn_suffix(outputs["GreenTargetGroupArn"], "targetgroup/"),
    }
    serving = "blue" if replacement == "green" else "green"
    parameters = {"BlueVersion": blue, "GreenVersion": green_version}
    alarm_parameters = {
        **parameters,
        "LoadBalancerFullName": load_balancer_full_name(outputs["ProductionListenerArn"]),
        "BlueTargetGroupFullName": groups[serving],
        "GreenTargetGroupFullName": groups[replacement],
        # The worker's own alarms follow WorkerVersion (a rolling update of the worker service),
        # which an API release leaves as it is.
        "WorkerVersion": current.get("WorkerVersion", ""),
    }
    new = {**parameters, "ReplacementTargetGroup": replacement}
    alarms = alarm_targets(template, alarm_parameters)
    _check_service(stack, outputs.get("ServiceName", ""), rollback_alarm_names(template), alarms)
    return {
        "stack": stack,
        "running_task_definition": running_arn,
        "parameters": new,
        "changed": {k: [current.get(k), v] for k, v in new.items() if current.get(k) != v},
        "same_version": blue == green_version,
        "rollback_alarms": rollback_alarm_names(template),
        "alarms": alarms,
    }


def _check_service(
    stack: str, service: str, rollback: list[str], alarms: dict[str, list[str]]
) -> None:
    """The rollback alarms must watch the stack's own service (its ``ServiceName`` output, the
    tasks' ``OTEL_SERVICE_NAME``): an alarms template synthesized for another name (a stage
    packaged without ``alarms synth --service``) watches metrics nobody emits, so no alarm could
    ever stop the deployment. :class:`AwsError` naming the fix."""
    if not service:  # an older stack without the output: nothing to compare with
        return
    for name in rollback:
        for dimension in alarms.get(name, []):
            key, _, value = dimension.partition("=")
            if key == "Service" and value != service:
                raise AwsError(
                    f"the rollback alarms of stack {stack} watch Service={value} ({name}), but "
                    f"its service is {service}: package it with an alarms template made by "
                    f"`python -m alarms synth ... --service {service}` and update the stack"
                )


def apply(the_plan: dict[str, Any], *, region: str | None) -> None:
    """Update the stack's three parameters (previous template, the rest unchanged) and wait."""
    stack = the_plan["stack"]
    described = aws("cloudformation", "describe-stacks", "--stack-name", stack, region=region)
    keys = [p["ParameterKey"] for p in described["Stacks"][0].get("Parameters") or []]
    parameters = [
        {"ParameterKey": k, "ParameterValue": the_plan["parameters"][k]}
        if k in the_plan["parameters"]
        else {"ParameterKey": k, "UsePreviousValue": True}
        for k in keys
    ]
    aws(
        "cloudformation",
        "update-stack",
        "--stack-name",
        stack,
        "--use-previous-template",
        "--capabilities",
        "CAPABILITY_IAM",
        "--parameters",
        json.dumps(parameters),
        region=region,
    )
    aws(
        "cloudformation",
        "wait",
        "stack-update-complete",
        "--stack-name",
        stack,
        region=region,
        timeout=WAIT_TIMEOUT_S,
    )


def verify(the_plan: dict[str, Any], *, region: str | None) -> list[str]:
    """Differences between what the rollback alarms watch in AWS and the plan (empty: none)."""
    names = the_plan["rollback_alarms"]
    described = aws("cloudwatch", "describe-alarms", "--alarm-names", *names, region=region) or {}
    actual = described_targets(described)
    problems = []
    for name in names:
        expected = the_plan["alarms"].get(name)
        if actual.get(name) != expected:
            problems.append(f"{name} watches {actual.get(name)}, expected {expected}")
    return problems


def describe(the_plan: dict[str, Any]) -> str:
    """The plan for people: the parameters, then each alarm with what it watches."""
    p = the_plan["parameters"]
    lines = [
        f"stack {the_plan['stack']}: release {p['GreenVersion']} (running {p['BlueVersion']}), "
        f"replacement target group: {p['ReplacementTargetGroup']}",
    ]
    rollback = set(the_plan["rollback_alarms"])
    width = max((len(n) for n in the_plan["alarms"]), default=0)
    for name, dims in sorted(the_plan["alarms"].items()):
        mark = "*" if name in rollback else " "
        lines.append(f" {mark} {name:<{width}}  {', '.join(dims)}")
    lines.append(" (* rollback alarm of the deployment)")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations ("--min" for "--min-healthy-percent"), in subcommands too (they
        # are this class): a typo or a later option must not silently change the meaning.
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> NoReturn:
        # One line on stderr, as for every other bad input (not argparse's usage block).
        self.exit(2, f"point_alarms: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="the deploy/stack.yaml stack")
    parser.add_argument("--green-version", required=True, help="the release (image tag)")
    parser.add_argument("--region", help="AWS region (default: the CLI's)")
    parser.add_argument(
        "--alarms-template",
        type=Path,
        help="the alarms template (JSON) to plan with (default: the one the stack deployed)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--plan", type=Path, help="also write the plan as JSON to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not _STACK.fullmatch(args.stack):
            raise UsageError(f"--stack is not a CloudFormation stack name: {args.stack!r}")
        if not _VERSION.fullmatch(args.green_version):
            raise UsageError(
                "--green-version must be 1-64 characters of A-Z a-z 0-9 . _ -, "
                f"got {args.green_version!r}"
            )
        if args.region is not None and not _REGION.fullmatch(args.region):
            raise UsageError(f"--region does not look like an AWS region: {args.region!r}")
        if args.alarms_template is None:
            template = deployed_alarms_template(args.stack, args.region)
        else:
            try:
                template = json.loads(args.alarms_template.read_text(encoding="utf-8"))
            except OSError as exc:
                raise UsageError(f"cannot read {args.alarms_template}: {exc.strerror}") from None
            except json.JSONDecodeError as exc:
                raise UsageError(f"{args.alarms_template} is not JSON: {exc.msg}") from None
            except UnicodeDecodeError:
                raise UsageError(f"{args.alarms_template} is not UTF-8 JSON") from None
        problem = template_problem(template)
        if problem and args.alarms_template is not None:
            raise UsageError(f"{args.alarms_template} {problem}")
        if problem:  # what the stack deployed: AWS is not in a state to release
            raise AwsError(f"the deployed alarms template of {args.stack} {problem}")
        the_plan = plan(args.stack, args.green_version, region=args.region, template=template)
        if args.plan:
            args.plan.write_text(json.dumps(the_plan, indent=2, sort_keys=True) + "\n")
        print(describe(the_plan))
        if the_plan["same_version"]:
            print(
                f"point_alarms: warning: {args.green_version} is already running; the version "
                "alarms watch all of its traffic",
                file=sys.stderr,
            )
        if args.dry_run:
            print("dry run: the stack was not changed")
            return 0
        if the_plan["changed"]:
            apply(the_plan, region=args.region)
        else:
            print("the alarms already follow this release; no stack update")
        problems = verify(the_plan, region=args.region)
        if problems:
            raise AwsError("; ".join(problems))
        print(f"rollback alarms follow {the_plan['parameters']['GreenVersion']}")
    except UsageError as exc:
        print(f"point_alarms: {exc}", file=sys.stderr)
        return 2
    except AwsError as exc:
        print(f"point_alarms: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"point_alarms: cannot write the plan: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
