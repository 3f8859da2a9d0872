"""Every grant in deploy/ covers this stack's resources and no one else's.

Names here are built from parameters (``ServiceName``, the stack names): a wildcard after one,
``alarm:${ServiceName}-*``, also matches the resources of a sibling whose name has this one as a
prefix (``points`` matches the alarms of ``points-service``: ``points-service-green-...``). The
parameters' patterns allow '-' inside names, so '-' cannot end a name; the grants name exact
resources instead (the alarms the stack generates, the roles and nested stack a stage exports).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.deploy._cfn import DEPLOY, load

TEMPLATES = ["stack.yaml", "pipeline.yaml", "ecr.yaml"]
_PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "points",
    "AWS::URLSuffix": "amazonaws.com",
}
#: The parameters the alarm re-pointing changes (deploy/point_alarms.py POINTED, as the alarms
#: stack sees them: the replacement group arrives as the blue/green target group names).
_POINTED = {"BlueVersion", "GreenVersion", "BlueTargetGroupFullName", "GreenTargetGroupFullName"}


def _statements(node: Any) -> list[dict]:
    """Every policy statement anywhere in ``node`` (identity and resource policies, through
    ``Fn::If``)."""
    found: list[dict] = []
    if isinstance(node, dict):
        if "Effect" in node and ("Resource" in node or "NotResource" in node):
            found.append(node)
        for value in node.values():
            found += _statements(value)
    elif isinstance(node, list):
        for value in node:
            found += _statements(value)
    return found


def _resources(statement: dict) -> list[Any]:
    value = statement.get("Resource", statement.get("NotResource"))
    return value if isinstance(value, list) else [value]


def _sub_texts(node: Any) -> list[str]:
    """The ``Fn::Sub`` texts in a Resource entry (also inside ``Fn::ImportValue``)."""
    if isinstance(node, dict):
        if "Fn::Sub" in node:
            value = node["Fn::Sub"]
            return [value if isinstance(value, str) else value[0]]
        return [t for v in node.values() for t in _sub_texts(v)]
    if isinstance(node, list):
        return [t for v in node for t in _sub_texts(v)]
    return []


def _iam_glob(pattern: str) -> re.Pattern[str]:
    """IAM's ARN matching: ``*`` any run of characters ('/' included), ``?`` one character."""
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    )


def _fill(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        if name in _PSEUDO:
            return _PSEUDO[name]
        return f"res-{name.replace('.', '-').lower()}"  # a resource's own (exact) name or ARN

    return re.sub(r"\$\{([A-Za-z0-9.:]+)\}", one, text)


def _takes(parameter: dict, value: str) -> bool:
    if "AllowedValues" in parameter:
        return value in [str(v) for v in parameter["AllowedValues"]]
    return re.fullmatch(parameter.get("AllowedPattern", "(?s).*"), value) is not None


def _wildcard_grants() -> list[tuple[str, str, str]]:
    """(template, Sid or resource, Fn::Sub text) of every granted Resource that names a
    parameter and ends up with a wildcard."""
    found = []
    for template in TEMPLATES:
        doc = load(DEPLOY / template)
        names = set(doc.get("Parameters", {}))
        for logical_id, resource in doc["Resources"].items():
            for statement in _statements(resource.get("Properties", {})):
                for entry in _resources(statement):
                    for text in _sub_texts(entry):
                        params = set(re.findall(r"\$\{([A-Za-z0-9]+)\}", text)) & names
                        if params and re.search(r"[*?]", _fill(text, {})):
                            where = f"{logical_id}/{statement.get('Sid', '')}"
                            found.append((template, where, text))
    return found


def _siblings(parameter: dict, value: str, text: str, name: str) -> list[str]:
    """Names of other resources' owners that start with ``value`` and the pattern allows: a
    plain extension, and one that repeats what follows the name in the ARN (a stack named
    ``points-Alarms-x`` has a nested stack ``points-Alarms-x-Alarms-...``)."""
    after = text.split("${" + name + "}", 1)[1]
    literal = re.split(r"[*?]|\$\{", after, maxsplit=1)[0]
    candidates = [value + "-x", value + "x", value + literal + "x", value + literal + "-x"]
    return [c for c in dict.fromkeys(candidates) if _takes(parameter, c)]


def test_the_wildcard_check_finds_the_pattern_the_issue_reported() -> None:
    """The check below would have caught ``alarm:${ServiceName}-*``: with ServiceName=points it
    matches an alarm of the service points-service."""
    ours = _iam_glob(
        _fill("arn:aws:cloudwatch:r:a:alarm:${ServiceName}-*", {"ServiceName": "points"})
    )
    assert ours.fullmatch("arn:aws:cloudwatch:r:a:alarm:points-service-green-latency-avg")


@pytest.mark.parametrize(("template", "where", "text"), _wildcard_grants())
def test_no_wildcard_grant_reaches_a_sibling_services_resources(
    template: str, where: str, text: str
) -> None:
    """For each granted Resource with a wildcard and a name parameter: with the name ``points``,
    it matches no resource of the same kind that a sibling (``points-x``, ``points-service``, ...)
    would have. A '/' or ':' after the name ends it (stack names, cluster names and bucket names
    cannot contain them); a '-' does not."""
    params = load(DEPLOY / template)["Parameters"]
    names = [n for n in re.findall(r"\$\{([A-Za-z0-9]+)\}", text) if n in params]
    base = {
        n: "points" if _takes(params[n], "points") else str(params[n]["Default"]) for n in names
    }
    ours = _iam_glob(_fill(text, base))
    for name in names:
        for sibling in _siblings(params[name], base[name], text, name):
            theirs = re.sub(r"[*?]", "x", _fill(text, {**base, name: sibling}))
            assert not ours.fullmatch(theirs), (where, name, sibling, theirs)


def test_grants_in_deploy_have_no_wildcard_after_a_name() -> None:
    """What the parametrized check covers today (so that it is not vacuous): the wildcard grants
    left are the stacks' own IDs after '/' and one bucket's keys."""
    texts = {text for _, _, text in _wildcard_grants()}
    assert texts, "no wildcard grant found: the collector is broken"
    for text in texts:
        assert re.search(r"\$\{[A-Za-z0-9]+\}[-_.A-Za-z0-9]*[*?]", text) is None, text


# ------------------------------------------------------------------ alarms: exact names


def _alarms_template() -> dict:
    return json.loads((DEPLOY / "alarms.json").read_text())


def _alarm_names(template: dict, refs: set[str] | None = None) -> set[str]:
    names = set()
    for resource in template["Resources"].values():
        if not resource["Type"].startswith("AWS::CloudWatch::") or resource["Type"].endswith(
            "Dashboard"
        ):
            continue
        text = json.dumps(resource)
        if refs is None or any(f'"Ref": "{r}"' in text for r in refs):
            names.add(resource["Properties"]["AlarmName"])
    return names


def _policy(pipeline: dict, role: str) -> dict[str, dict]:
    document = pipeline["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]
    return {s["Sid"]: s for s in _statements(document)}


def _alarm_arns(statement: dict, values: dict[str, str]) -> set[str]:
    return {_fill(text, values) for entry in _resources(statement) for text in _sub_texts(entry)}


def _arn(name: str) -> str:
    return f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return load(DEPLOY / "pipeline.yaml")


def test_the_build_may_update_exactly_the_alarms_the_pointing_rerenders(pipeline: dict) -> None:
    """deploy/point_alarms.py's stack update re-renders the alarms that watch a version or a
    target group (CloudFormation calls PutMetricAlarm with the build's permissions), and reads
    the rollback alarms back: the build may touch those, of each stage, and nothing else."""
    statement = _policy(pipeline, "BuildRole")["PointAlarms"]
    template = _alarms_template()
    needed = _alarm_names(template, _POINTED)
    rollback = set(template["Outputs"]["DeploymentAlarmNames"]["Value"].split(","))
    assert rollback <= needed
    service = "points-service"  # the name deploy/alarms.json was synthesized for
    stages = {"ServiceName": service, "PreProdServiceName": "points-preprod"}
    expected = {_arn(n) for n in needed} | {
        _arn(n.replace(service, "points-preprod", 1)) for n in needed
    }
    assert _alarm_arns(statement, stages) == expected
    assert "*" not in json.dumps(statement["Resource"])


def test_a_service_whose_name_is_a_prefix_gets_none_of_the_others_alarms(pipeline: dict) -> None:
    """The issue's case: the pipeline of ServiceName=points against the alarms of points-service."""
    others = {_arn(n) for n in _alarm_names(_alarms_template())}
    for role, sid in [("BuildRole", "PointAlarms"), ("PipelineRole", "BakeAlarms")]:
        statement = _policy(pipeline, role)[sid]
        for arn in _alarm_arns(
            statement, {"ServiceName": "points", "PreProdServiceName": "points"}
        ):
            assert not any(_iam_glob(arn).fullmatch(o) for o in others), (sid, arn)


def test_the_pipeline_reads_exactly_the_alarms_its_bake_watches(pipeline: dict) -> None:
    statement = _policy(pipeline, "PipelineRole")["BakeAlarms"]
    stages = pipeline["Resources"]["Pipeline"]["Properties"]["Stages"]
    rules = next(s for s in stages if s["Name"] == "PreProduction")["OnSuccess"]["Conditions"]
    baked = {rule["Configuration"]["AlarmName"]["Fn::Sub"] for c in rules for rule in c["Rules"]}
    values = {"PreProdServiceName": "points-preprod"}
    assert _alarm_arns(statement, values) == {_arn(_fill(n, values)) for n in baked}


# ------------------------------------------------------------------ what the stages export


def _imports(node: Any) -> list[str]:
    if isinstance(node, dict):
        if "Fn::ImportValue" in node:
            return [node["Fn::ImportValue"]["Fn::Sub"]]
        return [t for v in node.values() for t in _imports(v)]
    if isinstance(node, list):
        return [t for v in node for t in _imports(v)]
    return []


def test_every_import_of_the_pipeline_is_an_export_of_each_stage(pipeline: dict) -> None:
    """The pipeline names a stage's roles and nested alarms stack by what the stage exports
    (``<stack>:<output>``), for both stages; the stack exports each under that name, and the
    roles are the ones a revision's task definition names (render_revision.py fills
    deploy/taskdef.json's roles from the same outputs)."""
    stack = load(DEPLOY / "stack.yaml")
    exported = {
        o["Export"]["Name"]["Fn::Sub"]: (key, o["Value"])
        for key, o in stack["Outputs"].items()
        if "Export" in o
    }
    imports = _imports(pipeline["Resources"])
    assert imports
    wanted = {"ExecutionRoleArn", "ApiTaskRoleArn", "AlarmsStackId"}
    for stage in ("${ServiceStackName}", "${PreProdStackName}"):
        assert {i.split(":", 1)[1] for i in imports if i.startswith(stage + ":")} == wanted
    for name in {i.split(":", 1)[1] for i in imports}:
        key, _ = exported["${AWS::StackName}:" + name]
        assert key == name
    assert exported["${AWS::StackName}:ExecutionRoleArn"][1] == {
        "Fn::GetAtt": ["ExecutionRole", "Arn"]
    }
    assert exported["${AWS::StackName}:ApiTaskRoleArn"][1] == {"Fn::GetAtt": ["ApiTaskRole", "Arn"]}
    assert exported["${AWS::StackName}:AlarmsStackId"][1] == {"Ref": "Alarms"}
    taskdef = (DEPLOY / "taskdef.json").read_text()
    assert "${ExecutionRoleArn}" in taskdef and "${ApiTaskRoleArn}" in taskdef
