"""Prepare a template for moto's CloudFormation: leave out what moto cannot create, and say why.

moto's CloudFormation creates the resource types it has a model for (ECS, ELBv2, SQS, DynamoDB,
IAM, S3 buckets, SSM parameters, log groups, ...) and only warns about the others, which then
break every ``Ref``/``Fn::GetAtt`` to them. Some models also cannot answer ``Fn::GetAtt``
(target groups, nested stacks). :func:`for_moto` removes the unsupported resources and replaces
each reference moto cannot resolve with a marked placeholder (or, for a nested stack's output,
with the literal value from the nested template), recording every change with its reason.
"""

from __future__ import annotations

import copy
import importlib
import re
from functools import cache
from typing import Any

PLACEHOLDER = "moto-unresolved"


@cache
def moto_models() -> dict[str, type]:
    """CloudFormation type -> moto model class, with every moto service's models imported (the
    server imports them lazily; the map is the same)."""
    from moto.backends import list_of_moto_modules
    from moto.cloudformation import parsing

    for name in list_of_moto_modules():
        try:
            importlib.import_module(f"moto.{name}.models")
        except Exception:  # a module needing optional extras: its models cannot be in use
            continue
    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    return parsing.get_model_map()


def _can_get_att(model: type, attribute: str) -> bool:
    if not hasattr(model, "get_cfn_attribute"):
        return False
    return bool(getattr(model, "has_cfn_attr", lambda _a: True)(attribute))


def for_moto(
    template: dict[str, Any], nested_outputs: dict[str, dict[str, str]] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """(template moto can create, {what was left out or replaced: why}). ``nested_outputs`` maps
    a nested stack's logical ID to its template's literal output values."""
    models = moto_models()
    template = copy.deepcopy(template)
    resources = template["Resources"]
    notes: dict[str, str] = {}
    for name, parameter in template.get("Parameters", {}).items():
        if _numeric_pattern(parameter):
            # CloudFormation converts the text to the number the resource's schema declares
            # (DesiredCount, ExpirationInDays); moto hands a String parameter over as text.
            parameter["Type"] = "Number"
            number = float(parameter["Default"])  # moto converts given values, not defaults
            parameter["Default"] = int(number) if number.is_integer() else number
            notes[f"Parameters.{name}"] = "a whole-number String: a Number for moto (no pattern)"
            parameter.pop("AllowedPattern")
    removed = set()
    for logical_id, resource in list(resources.items()):
        if resource["Type"] not in models:
            notes[logical_id] = f"{resource['Type']}: moto's CloudFormation has no model for it"
            removed.add(logical_id)
            del resources[logical_id]

    def get_att(target: str, attribute: str) -> Any:
        if target in removed:
            return f"{PLACEHOLDER}-{target}-{attribute}"
        model = models[resources[target]["Type"]]
        if resources[target]["Type"] == "AWS::CloudFormation::Stack" and attribute.startswith(
            "Outputs."
        ):
            value = (nested_outputs or {}).get(target, {}).get(attribute[len("Outputs.") :])
            if isinstance(value, str):
                notes[f"{target}.{attribute}"] = (
                    "moto cannot Fn::GetAtt a nested stack's output: the literal value from the "
                    "nested template"
                )
                return value
        if not _can_get_att(model, attribute):
            notes[f"{target}.{attribute}"] = f"moto's {model.__name__} cannot answer Fn::GetAtt"
            return f"{PLACEHOLDER}-{target}-{attribute}"
        return {"Fn::GetAtt": [target, attribute]}

    def sub(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            target, _, attribute = name.partition(".")
            if target in removed:
                return f"{PLACEHOLDER}-{target}"
            if attribute and target in resources:
                value = get_att(target, attribute)
                if isinstance(value, str):
                    return value
            return match.group(0)

        return re.sub(r"\$\{([A-Za-z0-9.:]+)\}", one, text)

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"} and node["Ref"] in removed:
            return f"{PLACEHOLDER}-{node['Ref']}"
        if set(node) == {"Fn::GetAtt"}:
            target, attribute = node["Fn::GetAtt"]
            return get_att(target, attribute)
        if set(node) == {"Fn::Sub"}:
            value = node["Fn::Sub"]
            if isinstance(value, str):
                return {"Fn::Sub": sub(value)}
            return {"Fn::Sub": [sub(value[0]), walk(value[1])]}
        return {k: walk(v) for k, v in node.items()}

    for logical_id, resource in resources.items():
        depends = resource.get("DependsOn")
        if depends is not None:
            depends = [depends] if isinstance(depends, str) else depends
            resource["DependsOn"] = [d for d in depends if d not in removed]
        resources[logical_id] = walk(resource)
    outputs = {}
    for name, output in template.get("Outputs", {}).items():
        value = walk(output)
        if PLACEHOLDER in repr(value):
            notes[f"Outputs.{name}"] = "depends on something moto cannot create or resolve"
            continue
        outputs[name] = value
    template["Outputs"] = outputs
    return template, notes


def _numeric_pattern(parameter: dict[str, Any]) -> bool:
    """A String parameter whose AllowedPattern has no letters (digits, '.', '-' and regular
    expression syntax only) and whose default is a number admits only numbers, e.g. the ECS bake
    times and step percent, the desired counts (a CIDR's pattern has no letters either, and no
    numeric default)."""
    pattern = parameter.get("AllowedPattern")
    try:
        float(parameter.get("Default", ""))
    except ValueError:
        return False
    return (
        parameter.get("Type") == "String"
        and isinstance(pattern, str)
        and re.fullmatch(r"[\^$()|\[\]{},?*+.\\0-9-]+", pattern) is not None
    )


def evaluate(template: dict[str, Any], values: dict[str, Any]) -> Any:
    """A resolver for the intrinsic functions of one resource (Ref, Fn::If, Fn::Split, Fn::Sub,
    Fn::Equals/Not/And/Or, Condition), enough to hand a resource's properties to the service's
    own API. ``values``: parameter values, pseudo parameters, physical IDs and ``X.Attr`` keys."""
    conditions = template.get("Conditions", {})

    def cond(name: str) -> bool:
        return bool(resolve(conditions[name]))

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (resolve(n) for n in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                param = template.get("Parameters", {}).get(arg, {})
                value = values.get(arg, param.get("Default"))
                if param.get("Type") == "Number" or _numeric_pattern(param):
                    # The resource takes the number its schema declares (CloudFormation hands a
                    # Ref over as text and converts it); botocore wants the number itself.
                    number = float(value)
                    return int(number) if number.is_integer() else number
                return value
            if key == "Fn::If":
                return resolve(arg[1] if cond(arg[0]) else arg[2])
            if key == "Condition":
                return cond(arg)
            if key == "Fn::Equals":
                return resolve(arg[0]) == resolve(arg[1])
            if key == "Fn::Not":
                return not resolve(arg[0])
            if key == "Fn::And":
                return all(resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(resolve(a) for a in arg)
            if key == "Fn::Split":
                return resolve(arg[1]).split(arg[0])
            if key == "Fn::GetAtt":
                return values[".".join(arg)]
            if key == "Fn::Sub" and isinstance(arg, str):
                return re.sub(
                    r"\$\{([A-Za-z0-9.:]+)\}", lambda m: str(resolve_name(m.group(1))), arg
                )
        return {k: v for k, v in ((k, resolve(v)) for k, v in node.items()) if v is not _NO_VALUE}

    def resolve_name(name: str) -> Any:
        return values[name] if "." in name else resolve({"Ref": name})

    return resolve


_NO_VALUE = object()
