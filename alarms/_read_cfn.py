"""Read alarm definitions out of any CloudFormation template (JSON/YAML already parsed).

Resolved: ``Ref`` to parameters (their Default, or a value passed in ``params``), to pseudo
parameters (fixed placeholder values) and to alarm resources (their name); ``Fn::Sub`` (string or
[string, variables], ``${Name}``, ``${Res.Attr}``, ``${!Literal}``), ``Fn::Join``, ``Fn::Select``,
``Fn::Split`` and ``Fn::GetAtt`` of an alarm's ``Arn``. Anything else (``Fn::If``,
``Fn::ImportValue``, ``Fn::FindInMap``, conditions, ...) is a :class:`TemplateError` naming where.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "stack",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}
ALARM = "AWS::CloudWatch::Alarm"
COMPOSITE = "AWS::CloudWatch::CompositeAlarm"


#: Properties the evaluation reads: these must resolve (the others are kept only if they do).
_EVALUATED = frozenset(
    {
        "AlarmName",
        "Namespace",
        "MetricName",
        "Dimensions",
        "Statistic",
        "ExtendedStatistic",
        "Period",
        "EvaluationPeriods",
        "DatapointsToAlarm",
        "Threshold",
        "ComparisonOperator",
        "TreatMissingData",
        "EvaluateLowSampleCountPercentile",
        "Unit",
        "Metrics",
        "ThresholdMetricId",
        "AlarmRule",
    }
)


class TemplateError(ValueError):
    """A template construct the replay cannot resolve."""


class _Resolver:
    def __init__(self, tmpl: Mapping[str, Any], params: Mapping[str, str]) -> None:
        self.resources = tmpl.get("Resources") or {}
        if not isinstance(self.resources, Mapping):
            raise TemplateError("Resources must be a mapping")
        self.params: dict[str, Any] = {}
        for name, p in (tmpl.get("Parameters") or {}).items():
            if name in params:
                self.params[name] = params[name]
            elif isinstance(p, Mapping) and "Default" in p:
                self.params[name] = p["Default"]
        for name, value in params.items():
            self.params.setdefault(name, value)
        self.declared = set(tmpl.get("Parameters") or {})

    def name_of(self, lid: str) -> str:
        res = self.resources[lid]
        props = res.get("Properties") or {}
        name = props.get("AlarmName")
        # CloudFormation generates a name when none is given; the logical id stands in for it.
        return lid if name is None else str(self.resolve(name, f"{lid}.AlarmName"))

    def ref(self, name: str, where: str) -> Any:
        if name in self.params:
            return self.params[name]
        if name in self.declared:
            raise TemplateError(
                f"{where}: parameter {name} has no Default (pass --param {name}=...)"
            )
        if name in PSEUDO:
            return PSEUDO[name]
        res = self.resources.get(name)
        if isinstance(res, Mapping) and res.get("Type") in (ALARM, COMPOSITE):
            return self.name_of(name)
        raise TemplateError(f"{where}: cannot resolve Ref {name}")

    def getatt(self, lid: str, attr: str, where: str) -> str:
        res = self.resources.get(lid)
        if isinstance(res, Mapping) and res.get("Type") in (ALARM, COMPOSITE) and attr == "Arn":
            return (
                f"arn:aws:cloudwatch:{PSEUDO['AWS::Region']}:{PSEUDO['AWS::AccountId']}"
                f":alarm:{self.name_of(lid)}"
            )
        raise TemplateError(f"{where}: cannot resolve Fn::GetAtt {lid}.{attr}")

    def sub(self, text: Any, variables: Mapping[str, Any], where: str) -> str:
        if not isinstance(text, str):
            raise TemplateError(f"{where}: Fn::Sub needs a string")

        def one(m: re.Match[str]) -> str:
            key = m.group(1)
            if key.startswith("!"):
                return "${" + key[1:] + "}"
            if key in variables:
                return str(self.resolve(variables[key], where))
            if "." in key and not key.startswith("AWS::"):
                lid, attr = key.split(".", 1)
                return self.getatt(lid, attr, where)
            return str(self.ref(key, where))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [self.resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(str(arg), where)
            if key == "Fn::Sub":
                if isinstance(arg, list) and len(arg) == 2:
                    return self.sub(arg[0], arg[1] or {}, where)
                return self.sub(arg, {}, where)
            if key == "Fn::Join":
                delim, items = arg
                return str(delim).join(str(v) for v in self.resolve(items, where))
            if key == "Fn::Select":
                idx, items = arg
                return self.resolve(items, where)[int(self.resolve(idx, where))]
            if key == "Fn::Split":
                delim, text = arg
                return str(self.resolve(text, where)).split(delim)
            if key == "Fn::GetAtt":
                parts = arg.split(".", 1) if isinstance(arg, str) else arg
                return self.getatt(str(parts[0]), str(parts[1]), where)
            if key.startswith("Fn::") or key == "Condition":
                raise TemplateError(f"{where}: {key} is not supported by the replay")
        return {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}


def template_alarms(
    tmpl: Mapping[str, Any], params: Mapping[str, str] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(metric alarms, composite alarms)`` of a template in PutMetricAlarm/PutCompositeAlarm shape."""
    r = _Resolver(tmpl, params or {})
    metric: list[dict[str, Any]] = []
    composite: list[dict[str, Any]] = []
    for lid, res in r.resources.items():
        if not isinstance(res, Mapping) or res.get("Type") not in (ALARM, COMPOSITE):
            continue
        if "Condition" in res:
            raise TemplateError(f"Resources.{lid}: conditional resources are not supported")
        props = {}
        for key, value in (res.get("Properties") or {}).items():
            where = f"Resources.{lid}.Properties.{key}"
            if key in _EVALUATED:
                props[key] = r.resolve(value, where)
                continue
            try:  # descriptions, actions, tags: kept when resolvable, never needed
                props[key] = r.resolve(value, where)
            except (TemplateError, TypeError, ValueError, IndexError):
                continue
        props = {k: v for k, v in props.items() if v is not None}
        props["AlarmName"] = r.name_of(lid)
        (metric if res["Type"] == ALARM else composite).append(props)
    if not metric and not composite:
        raise TemplateError("the template has no AWS::CloudWatch::Alarm or CompositeAlarm resource")
    return metric, composite
