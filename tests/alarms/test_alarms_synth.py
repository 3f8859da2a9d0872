"""Generated alarms, dashboard and rollback configuration."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import alarms._policy as policy_mod
from alarms import (
    MAX_DEPLOYMENT_ALARMS,
    Evaluator,
    parse_spec,
    rollback_alarm_names,
    synth,
    worker_rollback_alarm_names,
)
from alarms._io import dump_yaml
from alarms._spec import WorkerVersions
from telemetry import catalog

ROOT = Path(__file__).resolve().parents[2]


def metric_refs(alarm: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...], str | None]]:
    """(namespace, metric, dimension names, unit) of every metric an alarm reads."""
    if "Metrics" in alarm:
        out = []
        for q in alarm["Metrics"]:
            if "MetricStat" in q:
                m = q["MetricStat"]["Metric"]
                dims = tuple(d["Name"] for d in m["Dimensions"])
                out.append((m["Namespace"], m["MetricName"], dims, q["MetricStat"].get("Unit")))
        return out
    dims = tuple(d["Name"] for d in alarm["Dimensions"])
    return [(alarm["Namespace"], alarm["MetricName"], dims, alarm.get("Unit"))]


@pytest.mark.parametrize("profile", ["production", "rehearsal"])
def test_every_alarm_reads_a_catalog_metric_with_its_unit_and_dimension_set(spec, profile) -> None:
    defs = synth(spec, format="json", profile=profile)
    seen = 0
    for alarm in defs["MetricAlarms"]:
        for ns, name, dims, unit in metric_refs(alarm):
            if ns == "AWS/ApplicationELB":
                assert name in ("HTTPCode_Target_5XX_Count", "TargetResponseTime")
                assert set(dims) == {"TargetGroup", "LoadBalancer"}
                continue
            seen += 1
            assert ns == spec.namespace
            mdef = catalog.get(name)
            assert unit == mdef.unit, alarm["AlarmName"]
            assert dims in mdef.dimension_sets, alarm["AlarmName"]
    assert seen >= 15


def test_alarm_names_are_deterministic_unique_and_prefixed(spec) -> None:
    a = synth(spec, format="json", profile="rehearsal")
    b = synth(spec, format="json", profile="rehearsal")
    names = [x["AlarmName"] for x in a["MetricAlarms"] + a["CompositeAlarms"]]
    assert names == [x["AlarmName"] for x in b["MetricAlarms"] + b["CompositeAlarms"]]
    assert len(names) == len(set(names))
    assert all(n.startswith("points-service-") for n in names)


def test_red_alarms(rehearsal_defs, spec) -> None:
    by = {a["AlarmName"]: a for a in rehearsal_defs["MetricAlarms"]}
    avg = by["points-service-green-latency-avg"]
    assert avg["Statistic"] == "Average" and avg["Threshold"] == spec.latency.threshold_ms
    assert (avg["Period"], avg["EvaluationPeriods"], avg["DatapointsToAlarm"]) == (10, 3, 2)
    assert {"Name": "Version", "Value": "v2"} in avg["Dimensions"]
    pct = by["points-service-green-latency-p90"]
    assert pct["ExtendedStatistic"] == "p90"
    assert pct["EvaluateLowSampleCountPercentile"] == "ignore"
    err = by["points-service-green-error-rate"]
    assert err["TreatMissingData"] == "notBreaching"
    expr = [q for q in err["Metrics"] if q.get("ReturnData")]
    assert expr == [q for q in err["Metrics"] if "Expression" in q]
    assert {
        q["MetricStat"]["Metric"]["MetricName"] for q in err["Metrics"] if "MetricStat" in q
    } == {
        "ServerErrors",
        "Requests",
    }
    for color in ("blue", "green"):
        assert by[f"points-service-alb-{color}-5xx"]["MetricName"] == "HTTPCode_Target_5XX_Count"
        rt = by[f"points-service-alb-{color}-response-time"]
        assert rt["MetricName"] == "TargetResponseTime" and rt["Period"] == 60


def test_profiles_share_thresholds_and_differ_in_period(spec) -> None:
    prod = {a["AlarmName"]: a for a in synth(spec, "json", "production")["MetricAlarms"]}
    reh = {a["AlarmName"]: a for a in synth(spec, "json", "rehearsal")["MetricAlarms"]}
    assert prod.keys() == reh.keys()
    for name in prod:
        assert prod[name]["Threshold"] == reh[name]["Threshold"]
    assert prod["points-service-latency-avg"]["Period"] == 60
    assert reh["points-service-latency-avg"]["Period"] == 10


def test_burn_rate_alarms_and_composites(rehearsal_defs) -> None:
    by = {a["AlarmName"]: a for a in rehearsal_defs["MetricAlarms"]}
    windows = {"1h": (3600, 14.4), "5m": (300, 14.4), "6h": (21600, 6.0), "30m": (1800, 6.0)}
    for suffix, (period, rate) in windows.items():
        a = by[f"points-service-slo-burn-{suffix}"]
        stats = [q["MetricStat"] for q in a["Metrics"] if "MetricStat" in q]
        assert {s["Period"] for s in stats} == {period}
        assert (a["EvaluationPeriods"], a["DatapointsToAlarm"], a["Threshold"]) == (1, 1, rate)
        assert a["TreatMissingData"] == "notBreaching"
    comps = {c["AlarmName"]: c["AlarmRule"] for c in rehearsal_defs["CompositeAlarms"]}
    assert comps["points-service-slo-burn-page-1h"] == (
        'ALARM("points-service-slo-burn-1h") AND ALARM("points-service-slo-burn-5m")'
    )
    assert "OR" in comps["points-service-slo-burn-page"]


def test_worker_use_alarms_and_ecs_rollback(rehearsal_defs) -> None:
    by = {a["AlarmName"]: a for a in rehearsal_defs["MetricAlarms"]}
    assert by["points-service-worker-message-age"]["Statistic"] == "Maximum"
    assert by["points-service-worker-backlog"]["MetricName"] == "QueueBacklog"
    dlq = by["points-service-worker-dlq"]
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0.0, "GreaterThanThreshold")
    (ecs,) = rehearsal_defs["EcsServices"]
    cfg = ecs["deploymentConfiguration"]["alarms"]
    assert cfg["enable"] is True and cfg["rollback"] is True
    assert set(cfg["alarmNames"]) <= set(by)
    # USE: the new version's errors and utilization, the shared queue's backlog and age
    assert (
        cfg["alarmNames"]
        == worker_rollback_alarm_names(rehearsal_defs)
        == [
            "points-service-worker-new-job-error-rate",
            "points-service-worker-new-utilization",
            "points-service-worker-backlog",
            "points-service-worker-message-age",
        ]
    )
    busy = by["points-service-worker-new-utilization"]
    assert (busy["MetricName"], busy["Statistic"], busy["Threshold"]) == (
        "WorkerUtilization",
        "Average",
        80.0,
    )


def test_worker_alarms_watch_the_worker_version_not_the_api_green(spec) -> None:
    """Tasks report APP_VERSION as Version: the worker's per-version alarms must watch the
    worker's version being rolled out (worker.versions.new), whatever the API's green is."""
    custom = dataclasses.replace(
        spec,
        worker=dataclasses.replace(spec.worker, versions=WorkerVersions("w7", "w8")),
    )
    defs = synth(custom, "json", "rehearsal")
    versions = set()
    for alarm in defs["MetricAlarms"]:
        if "-worker-" not in alarm["AlarmName"]:
            continue
        dims = list(alarm.get("Dimensions", []))
        dims += [d for q in alarm.get("Metrics", []) if "MetricStat" in q
                 for d in q["MetricStat"]["Metric"]["Dimensions"]]  # fmt: skip
        versions |= {d["Value"] for d in dims if d["Name"] == "Version"}
    assert versions == {"w8"}
    template = synth(custom, "cloudformation")
    assert template["Parameters"]["WorkerVersion"]["Default"] == "w8"
    no_worker = synth(dataclasses.replace(spec, worker=None), "cloudformation")
    assert "WorkerVersion" not in no_worker["Parameters"]
    assert worker_rollback_alarm_names(no_worker) == []


def test_codedeploy_configuration(rehearsal_defs) -> None:
    cd = rehearsal_defs["CodeDeploy"]
    assert cd["autoRollbackConfiguration"] == {
        "enabled": True,
        "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
    }
    names = rollback_alarm_names(rehearsal_defs)
    assert 0 < len(names) <= MAX_DEPLOYMENT_ALARMS
    assert cd["alarmConfiguration"]["enabled"] is True
    known = {a["AlarmName"] for a in rehearsal_defs["MetricAlarms"]}
    assert set(names) <= known
    assert all("green" in n for n in names)


def test_more_than_the_limit_is_folded_into_a_composite(spec, monkeypatch) -> None:
    monkeypatch.setattr(policy_mod, "MAX_DEPLOYMENT_ALARMS", 3)
    defs = synth(spec, "json", "rehearsal")
    (name,) = rollback_alarm_names(defs)
    rule = {c["AlarmName"]: c["AlarmRule"] for c in defs["CompositeAlarms"]}[name]
    assert rule.count("ALARM(") == 7  # 3 green RED, 2 green-vs-blue ratios, 2 ALB
    # and the evaluator understands the fold
    assert Evaluator(defs).states[name] == "INSUFFICIENT_DATA"


def test_dashboard(rehearsal_defs, spec) -> None:
    (dash,) = rehearsal_defs["Dashboards"]
    body = json.loads(dash["DashboardBody"])
    assert "${" not in dash["DashboardBody"]
    types = [w["type"] for w in body["widgets"]]
    assert types.count("alarm") == 1 and types.count("text") == 1 and types.count("metric") >= 6
    for w in body["widgets"]:
        assert 0 <= w["x"] <= 23 and 1 <= w["width"] <= 24 and w["x"] + w["width"] <= 24
        if w["type"] == "metric":
            assert w["properties"]["region"] == spec.region
    latency = next(w for w in body["widgets"] if "latency" in w["properties"].get("title", ""))
    stats = {row[-1]["stat"] for row in latency["properties"]["metrics"]}
    assert {"p50", "p90", "p99"} <= stats
    versions = {row[5] for row in latency["properties"]["metrics"]}
    assert versions == {"v1", "v2"}
    values = {h["value"] for h in latency["properties"]["annotations"]["horizontal"]}
    assert values == {spec.latency.threshold_ms, spec.latency.percentile_threshold_ms}
    alarm_widget = next(w for w in body["widgets"] if w["type"] == "alarm")
    assert all(
        a.startswith("arn:aws:cloudwatch:us-east-1:") for a in alarm_widget["properties"]["alarms"]
    )
    note = next(w for w in body["widgets"] if w["type"] == "text")["properties"]["markdown"]
    assert spec.deployment.config_name in note


def test_cloudformation_template_structure(template, spec) -> None:
    params = template["Parameters"]
    assert params["GreenVersion"]["Default"] == "v2"
    assert {"BlueTargetGroupFullName", "GreenTargetGroupFullName", "LoadBalancerFullName"} <= set(
        params
    )
    types = [r["Type"] for r in template["Resources"].values()]
    assert types.count("AWS::CloudWatch::Dashboard") == 1
    assert "AWS::CloudWatch::CompositeAlarm" in types
    green = next(
        r["Properties"]
        for r in template["Resources"].values()
        if r["Properties"].get("AlarmName") == "points-service-green-latency-avg"
    )
    assert {"Name": "Version", "Value": {"Ref": "GreenVersion"}} in green["Dimensions"]
    outputs = template["Outputs"]
    assert outputs["DeploymentAlarmNames"]["Value"].split(",") == rollback_alarm_names(template)
    assert "WorkerDeploymentAlarmNames" in outputs
    # composites depend on their children so CloudFormation creates them first
    for r in template["Resources"].values():
        if r["Type"] == "AWS::CloudWatch::CompositeAlarm":
            assert r["DependsOn"]


def test_unknown_format_and_profile(spec) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        synth(spec, format="yaml")
    with pytest.raises(ValueError, match="no profile"):
        synth(spec, format="json", profile="staging")


def test_spec_without_worker_and_alb() -> None:
    defs = synth(parse_spec({"service": "svc", "worker": False, "alb": False}), "json")
    names = [a["AlarmName"] for a in defs["MetricAlarms"]]
    assert not any("worker" in n or "alb" in n for n in names)
    assert "EcsServices" not in defs


@pytest.mark.parametrize(
    ("profile", "suffix"), [("production", "json"), ("rehearsal", "json"), ("production", "yaml")]
)
def test_cfn_lint_passes(spec, tmp_path: Path, profile: str, suffix: str) -> None:
    path = tmp_path / f"alarms-{profile}.{suffix}"
    template = synth(spec, format="cloudformation", profile=profile)
    path.write_text(dump_yaml(template) if suffix == "yaml" else json.dumps(template, indent=1))
    lint = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run(
        [str(lint), "--format", "parseable", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    errors = [line for line in proc.stdout.splitlines() if re.search(r":E\d{4}:", line)]
    # exit code 0 = clean, 4 = warnings only; errors (2, 6, ...) fail the test
    assert proc.returncode in (0, 4) and not errors, proc.stdout + proc.stderr


@pytest.mark.parametrize("target", [0.99999, 0.9999999, 0.999999999])
def test_burn_rate_expression_writes_the_budget_without_an_exponent(target: float) -> None:
    """CloudWatch's metric-math syntax documents plain decimals only: five nines gave
    ``num / den / 1e-05``."""
    defs = synth(parse_spec({"service": "svc", "slo": {"target": target}}), "json")
    exprs = [
        m["Expression"]
        for a in defs["MetricAlarms"]
        if a["AlarmName"].startswith("svc-slo-burn-")
        for m in a["Metrics"]
        if "Expression" in m
    ]
    assert exprs
    for e in exprs:
        budget = e.rsplit("/ ", 1)[1]
        assert re.fullmatch(r"0\.\d*[1-9]", budget), e
        assert float(budget) == pytest.approx(1 - target, rel=1e-3)
