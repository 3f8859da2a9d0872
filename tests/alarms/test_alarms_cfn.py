"""Replaying alarms out of any CloudFormation template (JSON or YAML with short tags)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alarms import Evaluator, rollback_alarm_names
from alarms._io import InputError, load_document
from alarms._read_cfn import TemplateError, template_alarms

FOREIGN = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Env: {Type: String, Default: prod}
  Threshold: {Type: Number, Default: 300}
  Version: {Type: String}
Resources:
  Topic: {Type: AWS::SNS::Topic}
  Slow:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmName: !Sub "${Env}-api-slow"
      Namespace: SafeDeploy
      MetricName: Latency
      Dimensions:
        - {Name: Service, Value: points-service}
        - {Name: Version, Value: !Ref Version}
      Statistic: Average
      Period: 60
      EvaluationPeriods: "3"
      DatapointsToAlarm: 2
      Threshold: !Ref Threshold
      ComparisonOperator: GreaterThanThreshold
      AlarmActions: [!Ref Topic]
  Unnamed:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: SafeDeploy
      MetricName: Requests
      Dimensions: [{Name: Service, Value: points-service}]
      Statistic: Sum
      Period: 60
      EvaluationPeriods: 1
      Threshold: 0
      ComparisonOperator: LessThanOrEqualToThreshold
  Both:
    Type: AWS::CloudWatch::CompositeAlarm
    Properties:
      AlarmName: !Join ["-", [!Ref Env, both]]
      AlarmRule: !Sub "ALARM(${Slow}) AND ALARM(${Unnamed.Arn}) AND NOT OK(${!Literal})"
"""


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_template_with_short_tags_is_resolved(tmp_path: Path) -> None:
    doc = load_document(str(write(tmp_path, FOREIGN)))
    metric, composite = template_alarms(doc, {"Version": "v9"})
    by = {a["AlarmName"]: a for a in metric}
    assert set(by) == {"prod-api-slow", "Unnamed"}  # no AlarmName: the logical id stands in
    slow = by["prod-api-slow"]
    assert {"Name": "Version", "Value": "v9"} in slow["Dimensions"]
    assert slow["Threshold"] == 300
    (both,) = composite
    assert both["AlarmName"] == "prod-both"
    assert both["AlarmRule"] == (
        "ALARM(prod-api-slow) AND ALARM(arn:aws:cloudwatch:us-east-1:123456789012:alarm:Unnamed)"
        " AND NOT OK(${Literal})"
    )


def test_parameter_without_default_needs_a_value(tmp_path: Path) -> None:
    doc = load_document(str(write(tmp_path, FOREIGN)))
    with pytest.raises(TemplateError, match="Version has no Default"):
        Evaluator(doc)


def test_foreign_template_evaluates(tmp_path: Path) -> None:
    doc = load_document(str(write(tmp_path, FOREIGN.replace("AND NOT OK(${!Literal})", ""))))
    ev = Evaluator(doc, params={"Version": "v9"}, start=1_800_000_000 - 1_800_000_000 % 60)
    evals = ev.advance(1_800_000_000 - 1_800_000_000 % 60 + 60)
    assert {e.alarm for e in evals} == {"prod-api-slow", "Unnamed", "prod-both"}
    assert ev.states["Unnamed"] == "INSUFFICIENT_DATA"  # missing data, default treatment


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"AlarmName": {"Fn::If": ["c", "a", "b"]}}, "Fn::If is not supported"),
        ({"AlarmName": {"Fn::ImportValue": "x"}}, "Fn::ImportValue is not supported"),
        ({"AlarmName": {"Ref": "Nowhere"}}, "cannot resolve Ref Nowhere"),
        ({"AlarmName": {"Fn::GetAtt": ["Topic", "Arn"]}}, "cannot resolve Fn::GetAtt Topic.Arn"),
    ],
)
def test_unsupported_constructs_name_the_place(props: dict, message: str) -> None:
    tmpl = {
        "Resources": {
            "Topic": {"Type": "AWS::SNS::Topic"},
            "A": {"Type": "AWS::CloudWatch::Alarm", "Properties": props},
        }
    }
    with pytest.raises(TemplateError, match=message) as err:
        template_alarms(tmpl)
    assert "Resources.A" in str(err.value)


def test_template_without_alarms_is_refused() -> None:
    with pytest.raises(TemplateError, match="no AWS::CloudWatch::Alarm"):
        template_alarms({"Resources": {"T": {"Type": "AWS::SNS::Topic"}}})


def test_own_template_round_trips_to_the_same_alarms(template, spec) -> None:
    from alarms import synth

    metric, composite = template_alarms(template)
    plain = synth(spec, format="json", profile="production")
    assert metric == plain["MetricAlarms"]
    assert composite == plain["CompositeAlarms"]
    assert rollback_alarm_names(template) == rollback_alarm_names(plain)


def test_unreadable_and_non_object_documents(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_document(str(tmp_path / "nope.json"))
    with pytest.raises(InputError, match="must be a JSON/YAML object"):
        load_document(str(write(tmp_path, "[1, 2]", "list.json")))
    with pytest.raises(InputError, match="neither JSON nor YAML"):
        load_document(str(write(tmp_path, "a: [b\n", "bad.yaml")))
