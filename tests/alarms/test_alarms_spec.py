"""Spec validation: every bad field gets one error naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from alarms import POINTS_SERVICE_SPEC, SpecError, load_spec, parse_spec


def base() -> dict[str, Any]:
    return yaml.safe_load(POINTS_SERVICE_SPEC.read_text())


def test_points_service_spec_loads(spec) -> None:
    assert spec.service == "points-service"
    assert spec.namespace == "SafeDeploy"
    assert (spec.versions.blue, spec.versions.green) == ("v1", "v2")
    assert spec.profile("rehearsal").period_s == 10
    assert spec.profile("production").period_s == 60
    assert spec.latency.statistic == "Average"
    assert spec.latency.evaluate_low_sample_count_percentile == "ignore"


def test_minimal_spec_gets_defaults() -> None:
    spec = parse_spec({"service": "svc"})
    assert spec.namespace == "SafeDeploy"
    assert spec.slo.target == 0.999
    assert [w.burn_rate for w in spec.slo.burn_windows] == [14.4, 6.0]
    assert spec.deployment.deployment_group == "svc-dg"
    assert set(spec.profiles) == {"production", "rehearsal"}


def test_worker_and_alb_can_be_switched_off() -> None:
    spec = parse_spec({"service": "svc", "worker": False, "alb": False})
    assert spec.worker is None and spec.alb is None


def edit(path: str, value: Any) -> dict[str, Any]:
    data = base()
    *parents, key = path.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("latency.threshold_ms", -5, "latency.threshold_ms: must be a positive number"),
        ("latency.threshold_ms", "fast", "latency.threshold_ms: must be a number"),
        ("latency.statistic", "p99", "latency.statistic: must be one of"),
        ("latency.percentile", "p100", "latency.percentile: must look like"),
        (
            "latency.evaluate_low_sample_count_percentile",
            "maybe",
            "must be one of evaluate, ignore",
        ),
        ("service", DELETE, "service: is required"),
        ("service", "bad name!", "service: must be a name"),
        # CloudWatch takes no '.' in a dashboard name (the service names it), ECS none in a
        # service or cluster name; CodeDeploy's group <service>-dg is at most 100 characters.
        ("service", "points.service", "service: must be a name of letters, digits, '_' or '-'"),
        ("service", "a" * 98, "service: must be a name of letters"),
        ("worker.service", "points.worker", "worker.service: must be a name of letters"),
        ("deployment.worker_cluster", "safe.deploy", "worker_cluster: must be a name of"),
        ("deployment.worker_ecs_service", "w.x", "worker_ecs_service: must be a name of"),
        ("namespace", "AWS/ECS", "namespace: must not start with 'AWS/'"),
        ("slo.target", 99.9, "slo.target: must be between 0 and 1"),
        ("errors.rate_threshold_percent", 150, "errors.rate_threshold_percent: must be <= 100"),
        ("worker.backlog_threshold", True, "worker.backlog_threshold: must be a number"),
        ("worker.dead_letter_threshold", -1, "worker.dead_letter_threshold: must be >= 0"),
        ("worker.utilization_threshold_percent", 101, "must be <= 100"),
        ("worker.utilization_threshold_percent", 0, "must be a positive number"),
        ("worker.versions.new", "v1", "worker.versions.new: must differ from worker.versions.old"),
        ("worker.versions.old", "a b", "worker.versions.old: must be a name"),
        ("worker.versions.next", "v3", "worker.versions.next: unknown field"),
        ("worker.versions", ["v1"], "worker.versions: must be a mapping"),
        (
            "profiles.rehearsal.period_s",
            15,
            "profiles.rehearsal.period_s: must be 10, 30 or a multiple",
        ),
        ("profiles.rehearsal.datapoints_to_alarm", 4, "datapoints_to_alarm: must be <="),
        ("profiles.production.evaluation_periods", 2000, "must be <= 1 day"),
        ("versions.green", "v1", "versions.green: must differ from versions.blue"),
        ("latency.colour", "red", "latency.colour: unknown field"),
        ("account_id", "42", "account_id: must be a 12-digit string"),
        (
            "slo.burn_windows",
            [{"long_s": 300, "short_s": 3600, "burn_rate": 2}],
            "slo.burn_windows[0].short_s: must be shorter",
        ),
        (
            "slo.burn_windows",
            [{"long_s": 3600, "short_s": 300}],
            "slo.burn_windows[0].burn_rate: is required",
        ),
        (
            "slo.burn_windows",
            [
                {"long_s": 3600, "short_s": 300, "burn_rate": 14.4},
                {"long_s": 21600, "short_s": 3600, "burn_rate": 6},
            ],
            "slo.burn_windows[1].short_s: window 3600 s already used by slo.burn_windows[0].long_s",
        ),
    ],
)
def test_bad_field_is_named(path: str, value: Any, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(edit(path, value))
    text = str(err.value)
    assert text.startswith("spec error: ")
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("period", "n", "accepted"),
    [
        (60, 1440, True),  # one day of minutes
        (60, 1441, False),
        (1800, 49, False),  # under an hour: one day at most
        (3600, 168, True),  # an hour or more: seven days
        (3600, 169, False),
        (86400, 7, True),
        (86400, 8, False),
    ],
)
def test_evaluation_range_is_put_metric_alarms(period: int, n: int, accepted: bool) -> None:
    data = base()
    data.setdefault("profiles", {})["production"] = {
        "period_s": period,
        "evaluation_periods": n,
        "datapoints_to_alarm": 1,
    }
    if accepted:
        assert parse_spec(data).profiles["production"].evaluation_periods == n
    else:
        with pytest.raises(SpecError, match=r"<= 1 day \(<= 7 days when period_s >= 3600\)"):
            parse_spec(data)


def test_not_a_mapping() -> None:
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_spec(["service"])


def test_bad_yaml_and_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("service: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    assert isinstance(SpecError("x", "y"), ValueError)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        # Integers beyond a float (YAML reads 400 nines as an int): one error, no OverflowError.
        ("latency.threshold_ms", 10**400, "latency.threshold_ms: must be a finite number"),
        (
            "worker.backlog_threshold",
            -(10**400),
            "worker.backlog_threshold: must be a finite number",
        ),
        # CloudWatch's namespace rules (telemetry.cloudwatch_rules): the telemetry could never
        # write these, and ':' / '${' broke the template (cfn-lint E3031, Fn::Sub E1019).
        ("namespace", ":Safe", "namespace: a namespace must not start with ':'"),
        ("namespace", "Safe${Foo}", "namespace: a namespace may contain only"),
        ("namespace", "Safe${GreenVersion}", "namespace: a namespace may contain only"),
        ("namespace", "Sáfe", "namespace: a namespace must contain only ASCII"),
        ("namespace", "Safe Deploy", "namespace: a namespace may contain only"),
        # No error budget left to burn: the burn-rate expression divided by 0.
        ("slo.target", 0.9999999999999999, "slo.target: leaves no error budget"),
        ("slo.target", 1 - 1e-13, "slo.target: leaves no error budget"),
    ],
)
def test_bad_field_of_other_classes_is_named(path: str, value: Any, message: str) -> None:
    test_bad_field_is_named(path, value, message)


def test_duplicate_keys_are_refused_not_silently_overwritten(tmp_path: Path) -> None:
    for name, text in {
        "dup.yaml": "service: a\nlatency:\n  threshold_ms: 100\n  threshold_ms: 900\n",
        "dup.json": '{"service": "a", "service": "b"}',
    }.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(SpecError, match="duplicate key") as err:
            load_spec(path)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # YAML 1.2 floats that YAML 1.1 (PyYAML) reads as text ("must be a number")
        ("1e3", 1000.0),
        ("5E2", 500.0),
        (".5e1", 5.0),
        ("1.5e3", 1500.0),
        ("+2e1", 20.0),
        ("1e+2", 100.0),
        ("25e-1", 2.5),
        ("1e308", 1e308),
        # what YAML 1.1 already read stays as it was
        ("250", 250.0),
        ("2.5", 2.5),
        ("1.0e+3", 1000.0),
        ("1_000", 1000.0),
    ],
)
def test_yaml_1_2_numbers_are_numbers(tmp_path: Path, text: str, value: float) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(f"service: svc\nworker:\n  backlog_threshold: {text}\n")
    worker = load_spec(path).worker
    assert worker is not None and worker.backlog_threshold == value


@pytest.mark.parametrize(
    "text",
    ["1e309", "-1e309", "1e400", ".inf", "-.inf", ".NaN", "9" * 400, "-" + "9" * 400],
)
def test_numbers_cloudwatch_refuses_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(f"service: svc\nlatency:\n  threshold_ms: {text}\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert "latency.threshold_ms: must be a finite number" in str(err.value)
    assert "infinity" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["'1e3'", '"1e3"', "1e3x", "e3", "1e", "0x1p3"])
def test_text_that_is_no_yaml_number_stays_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(f"service: svc\nlatency:\n  threshold_ms: {text}\n")
    with pytest.raises(SpecError, match=r"latency\.threshold_ms: must be a number$"):
        load_spec(path)


def test_templates_keep_yaml_1_1_scalars_as_cloudformation_reads_them(tmp_path: Path) -> None:
    # CloudFormation reads YAML 1.1: 1e3 in a template is the text "1e3" there and here alike
    from alarms._io import load_document

    path = tmp_path / "t.yaml"
    path.write_text("Resources:\n  A:\n    Type: X\n    Properties:\n      Threshold: 1e3\n")
    assert load_document(str(path))["Resources"]["A"]["Properties"]["Threshold"] == "1e3"
