"""A stand-in for the AWS CLI, for running the release scripts offline.

Run as ``python _fake_aws.py <aws arguments>`` (tests put an ``aws`` wrapper on PATH). It answers from
a JSON "world" file (``FAKE_WORLD``) and appends every call to ``CALLS``. Supports ``--query``
(JMESPath, as the CLI) and ``--output json|text``. A stack update changes the world's parameters,
and ``cloudwatch describe-alarms`` answers what CloudFormation would then have made of the alarms
template: the nested stack's parameters are resolved from deploy/stack.yaml's own ``Alarms``
resource (``Ref``, ``Fn::If`` on its conditions, the target groups' and load balancer's names), so
the stack's wiring is what is tested, not a copy of it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import jmespath

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _options(argv: list[str]) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    key = None
    for arg in argv:
        if arg.startswith("--"):
            key = arg[2:]
            options[key] = []
        elif key is not None:
            options[key].append(arg)
    return options


def _one(options: dict[str, list[str]], key: str) -> str:
    return options[key][0]


def _fail(message: str) -> None:
    print(f"\nAn error occurred ({message})", file=sys.stderr)
    sys.exit(254)


class _Stack:
    """The subset of CloudFormation's evaluation deploy/stack.yaml's Alarms parameters need."""

    def __init__(self, world: dict[str, Any]) -> None:
        sys.path.insert(0, str(ROOT))
        from tests.deploy._cfn import load  # only here: the other answers start faster without

        self.template = load(DEPLOY / "stack.yaml")
        self.params = {p["ParameterKey"]: p["ParameterValue"] for p in world["stack"]["Parameters"]}
        self.attributes = world["attributes"]

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":  # a parameter; a resource (no physical ids here): its logical id
                return self.params.get(arg, arg)
            if fn == "Fn::GetAtt":
                return self.attributes[".".join(arg) if isinstance(arg, list) else arg]
            if fn == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            if fn == "Condition":
                return self.condition(arg)
        return value

    def alarm_parameters(self) -> dict[str, str]:
        props = self.template["Resources"]["Alarms"]["Properties"]["Parameters"]
        return {k: self.resolve(v) for k, v in props.items()}


def _alarms(world: dict[str, Any], names: list[str]) -> dict[str, Any]:
    params = _Stack(world).alarm_parameters()
    template = json.loads(Path(world["alarms_template"]).read_text())

    def value(v: Any) -> Any:
        return params[v["Ref"]] if isinstance(v, dict) and "Ref" in v else v

    def dims(ds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"Name": d["Name"], "Value": value(d["Value"])} for d in ds]

    found = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        if props["AlarmName"] not in names:
            continue
        alarm = {"AlarmName": props["AlarmName"]}
        if "Dimensions" in props:
            alarm["Dimensions"] = dims(props["Dimensions"])
        if "Metrics" in props:
            alarm["Metrics"] = [
                {**m, "MetricStat": {**m["MetricStat"], "Metric": {
                    **m["MetricStat"]["Metric"],
                    "Dimensions": dims(m["MetricStat"]["Metric"]["Dimensions"]),
                }}} if "MetricStat" in m else m
                for m in props["Metrics"]
            ]  # fmt: skip
        found.append(alarm)
    return {"MetricAlarms": found, "CompositeAlarms": []}


def _update_stack(world: dict[str, Any], options: dict[str, list[str]]) -> None:
    stack = world["stack"]
    if "use-previous-template" not in options:
        _fail("ValidationError) when calling the UpdateStack operation: no template given")
    given = json.loads(_one(options, "parameters"))
    keys = [p["ParameterKey"] for p in stack["Parameters"]]
    if sorted(p["ParameterKey"] for p in given) != sorted(keys):
        _fail("ValidationError) when calling the UpdateStack operation: parameters differ")
    current = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    new = {
        p["ParameterKey"]: current[p["ParameterKey"]]
        if p.get("UsePreviousValue")
        else p["ParameterValue"]
        for p in given
    }
    if new == current:
        _fail(
            "ValidationError) when calling the UpdateStack operation: No updates are to be performed."
        )
    if not world.get("ignore_updates"):
        stack["Parameters"] = [{"ParameterKey": k, "ParameterValue": v} for k, v in new.items()]
    stack["StackStatus"] = "UPDATE_COMPLETE"


def answer(world: dict[str, Any], argv: list[str]) -> Any:
    service, operation = argv[0], argv[1]
    options = _options(argv[2:])
    call = f"{service} {operation}"
    if call == "sts get-caller-identity":
        return {"Account": world.get("account", "123456789012")}
    if call == "ecr get-login-password":
        return "secret"
    if call == "ecr describe-images":
        tag = _one(options, "image-ids").removeprefix("imageTag=")
        if tag in world.get("images", []):
            return {"imageDetails": [{"imageTags": [tag]}]}
        _fail("ImageNotFoundException) when calling the DescribeImages operation")
    if call == "cloudformation describe-stacks":
        return {"Stacks": [world["stack"]]}
    if call == "cloudformation update-stack":
        _update_stack(world, options)
        return {"StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/x/1"}
    if call == "cloudformation describe-stack-resource":
        nested = "arn:aws:cloudformation:us-east-1:123456789012:stack/points-service-Alarms-1/2"
        return {
            "StackResourceDetail": {"LogicalResourceId": "Alarms", "PhysicalResourceId": nested}
        }
    if call == "cloudformation get-template":
        return {"TemplateBody": json.loads(Path(world["alarms_template"]).read_text())}
    if call == "cloudformation wait":
        return None
    if call == "ecs describe-services":
        services = [world["service"]] if world.get("service") else []
        return {"services": services, "failures": []}
    if call == "ecs describe-task-definition":
        return {"taskDefinition": world["task_definitions"][_one(options, "task-definition")]}
    if call == "elbv2 describe-listeners":
        arn = _one(options, "listener-arns")
        return {"Listeners": [{"ListenerArn": arn, **world["listeners"][arn]}]}
    if call == "elbv2 describe-rules":
        arn = _one(options, "rule-arns")
        return {"Rules": [{"RuleArn": arn, **world["rules"][arn]}]}
    if call == "cloudwatch describe-alarms":
        return _alarms(world, options.get("alarm-names", []))
    print(f"unexpected aws call: {' '.join(argv)}", file=sys.stderr)
    sys.exit(2)


def _text(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, list):
        if value and all(isinstance(v, list) for v in value):
            return "\n".join(_text(v) for v in value)
        return "\t".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "\t".join(_text(v) for v in value.values())
    return str(value)


def main(argv: list[str]) -> int:
    with open(os.environ["CALLS"], "a") as calls:
        calls.write("aws " + " ".join(argv) + "\n")
    world_path = Path(os.environ["FAKE_WORLD"])
    world = json.loads(world_path.read_text())
    options = _options(argv[2:])
    result = answer(world, argv)
    world_path.write_text(json.dumps(world, indent=1))
    if result is None:
        return 0
    if isinstance(result, str):
        print(result)
        return 0
    if "query" in options:
        result = jmespath.search(_one(options, "query"), result)
    if options.get("output") == ["text"]:
        print(_text(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
