"""EMF lines: the specification's document structure, its limits, and the windowing contract."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
from aws_embedded_metrics.unit import Unit

from telemetry import _config, _errors, _histogram, catalog
from telemetry._metrics import Aggregator
from telemetry.sinks import MemorySink

from .conftest import samples, total

# Written from "Specification: Embedded metric format" (Amazon CloudWatch User Guide): root member
# "_aws" (metadata) with Timestamp (epoch ms) and CloudWatchMetrics (MetricDirective objects of
# Namespace, Dimensions = DimensionSets of <= 30 names, Metrics = <= 100 MetricDefinitions of
# Name, Unit, StorageResolution 1|60). Target members referenced by a directive must exist at the
# root: a dimension value is a string; a metric value is a number or an array of <= 100 numbers,
# or (the contract's histogram form, as the AWS Distro for OpenTelemetry writes it) an object of
# Values/Counts/Min/Max/Count/Sum.
NUMBER_ARRAY = {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 100}
EMF_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "LogGroupName": {"type": "string", "minLength": 1},
                "CloudWatchMetrics": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"$ref": "#/$defs/MetricDirective"},
                },
            },
            "additionalProperties": False,
        }
    },
    "$defs": {
        "MetricDirective": {
            "type": "object",
            "required": ["Namespace", "Dimensions", "Metrics"],
            "additionalProperties": False,
            "properties": {
                "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024},
                "Dimensions": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "maxItems": 30,
                        "items": {"type": "string", "minLength": 1, "maxLength": 250},
                    },
                },
                "Metrics": {
                    "type": "array",
                    "maxItems": 100,
                    "items": {
                        "type": "object",
                        "required": ["Name"],
                        "additionalProperties": False,
                        "properties": {
                            "Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                            "Unit": {"enum": [u.value for u in Unit]},
                            "StorageResolution": {"enum": [1, 60]},
                        },
                    },
                },
            },
        },
        "Value": {
            "oneOf": [
                {"type": "number"},
                NUMBER_ARRAY,
                {
                    "type": "object",
                    "required": ["Values", "Counts", "Min", "Max", "Count", "Sum"],
                    "additionalProperties": False,
                    "properties": {
                        "Values": NUMBER_ARRAY,
                        "Counts": NUMBER_ARRAY,
                        "Min": {"type": "number"},
                        "Max": {"type": "number"},
                        "Count": {"type": "number", "minimum": 1},
                        "Sum": {"type": "number"},
                    },
                },
            ]
        },
    },
}
VALUE_SCHEMA = {"$defs": EMF_SCHEMA["$defs"], "$ref": "#/$defs/Value"}
jsonschema.Draft202012Validator.check_schema(EMF_SCHEMA)


def validate_emf(line: dict) -> None:
    """The document schema plus the target-member rules the schema cannot express."""
    jsonschema.validate(line, EMF_SCHEMA, cls=jsonschema.Draft202012Validator)
    assert len(json.dumps(line).encode()) <= 1_000_000
    for directive in line["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                assert isinstance(line.get(name), str) and 1 <= len(line[name]) <= 1024, name
        for metric in directive["Metrics"]:
            assert metric["Name"] in line, metric["Name"]
            value = line[metric["Name"]]
            jsonschema.validate(value, VALUE_SCHEMA, cls=jsonschema.Draft202012Validator)
            if isinstance(value, dict):
                assert len(value["Values"]) == len(value["Counts"])
                assert value["Count"] == sum(value["Counts"])
                assert value["Min"] <= value["Max"]


def test_schema_rejects_what_the_specification_forbids() -> None:
    good = {
        "_aws": {
            "Timestamp": 1,
            "CloudWatchMetrics": [
                {"Namespace": "n", "Dimensions": [["Service"]], "Metrics": [{"Name": "Requests"}]}
            ],
        },
        "Service": "s",
        "Requests": 1,
    }
    validate_emf(good)
    bad_cases = [
        {**good, "_aws": {"CloudWatchMetrics": good["_aws"]["CloudWatchMetrics"]}},
        {**good, "Requests": list(range(101))},
        {**good, "Requests": "1"},
        {k: v for k, v in good.items() if k != "Service"},
        {
            **good,
            "_aws": {
                "Timestamp": 1,
                "CloudWatchMetrics": [
                    {
                        "Namespace": "n",
                        "Dimensions": [[f"D{i}" for i in range(31)]],
                        "Metrics": [{"Name": "Requests"}],
                    }
                ],
            },
        },
    ]
    for bad in bad_cases:
        with pytest.raises((jsonschema.ValidationError, AssertionError)):
            validate_emf(bad)


def test_catalog_units_are_cloudwatch_units_and_dimension_sets_fit() -> None:
    units = {u.value for u in Unit}
    for m in catalog.METRICS:
        assert m.unit in units, m.name
        assert m.dimension_sets and all(0 < len(s) <= 30 for s in m.dimension_sets)


def _flask_lines(tel, **options) -> list[dict]:
    import flask

    from telemetry.flask import instrument

    tel.configure(**options)
    app = flask.Flask("emf")

    @app.get("/v1/users/<user_id>/points")
    def points(user_id: str):
        return {"user_id": user_id}

    @app.get("/fail")
    def fail():
        raise RuntimeError("boom")

    instrument(app)
    client = app.test_client()
    for i in range(30):
        client.get(f"/v1/users/u{i}/points")
    client.get("/missing")
    client.get("/fail")
    import telemetry

    telemetry.put_metric("RateLimitWait", 12.5)
    telemetry.put_metric("RateLimitRejections", 1)
    with telemetry.job(message_id="m-1"):
        telemetry.record_message_age(3.0)
    telemetry.report_queue(backlog=4, in_flight=1, dead_letter=0)
    return tel.emf()


@pytest.mark.parametrize("histogram", ["counts", "values"])
@pytest.mark.parametrize("resolution", [60, 1])
def test_every_line_is_valid_emf(tel, histogram: str, resolution: int) -> None:
    lines = _flask_lines(tel, histogram=histogram, storage_resolution=resolution)
    assert lines
    for line in lines:
        validate_emf(line)
        for directive in line["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "SafeDeploy"
            for m in directive["Metrics"]:
                assert m["Unit"] == catalog.get(m["Name"]).unit
                assert ("StorageResolution" in m) == (resolution == 1)
    route = "/v1/users/<user_id>/points"
    assert total(lines, "Requests", Route=route) == 30
    assert total(lines, "Requests") == 32
    assert total(lines, "ClientErrors", Route=catalog.UNMATCHED_ROUTE) == 1
    assert total(lines, "ServerErrors", Route="/fail") == 1
    assert total(lines, "ServerErrors", Route=route) == 0  # zeros are written
    forms = {type(line["Latency"]) for line in lines if "Latency" in line}
    assert forms == {dict if histogram == "counts" else list}
    assert len(samples(lines, "Latency", Route=route)) == 30
    assert samples(lines, "RateLimitWait") == [12.5]
    assert total(lines, "RateLimitRejections") == 1
    assert total(lines, "Jobs") == 1 and total(lines, "JobErrors") == 0
    assert samples(lines, "MessageAge") == [3.0]
    assert total(lines, "QueueBacklog") == 4


def test_dimension_sets_follow_the_catalog(tel) -> None:
    for line in _flask_lines(tel):
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        for m in directive["Metrics"]:
            expected = [list(s) for s in catalog.get(m["Name"]).dimension_sets]
            assert directive["Dimensions"] == expected, m["Name"]
        assert line["Service"] == "test-svc"
        assert line.get("Version", "v9") == "v9"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _aggregator(clock: FakeClock, **options) -> tuple[Aggregator, MemorySink]:
    sink = MemorySink()
    _errors.take_pending()
    settings = _config.load({}, service="svc", version="v1", **options)
    return Aggregator(settings, sink, clock=clock), sink


def test_windows_are_aligned_to_the_interval_and_flushed_once() -> None:
    clock = FakeClock(1_700_000_003.2)  # 3.2 s into a 5 s window
    agg, sink = _aggregator(clock, flush_interval_s=5)
    for step in range(40):  # 40 requests, 0.5 s apart: windows ...000, ...005, ...010, ...
        clock.now = 1_700_000_003.2 + step * 0.5
        agg.record_request("/r", 200, 10.0)
        agg.flush()
    agg.flush(final=True)
    agg.flush(final=True)  # nothing left: flushing twice writes nothing twice
    lines = [json.loads(x) for x in sink.lines]
    stamps = [line["_aws"]["Timestamp"] for line in lines]
    assert all(ts % 5000 == 0 for ts in stamps)
    assert len(stamps) == len(set(stamps))  # one line per window (one route)
    assert sum(line["Requests"] for line in lines) == 40
    assert stamps[0] == 1_700_000_000_000


def test_distribution_with_many_buckets_is_split_into_lines_that_merge_exactly() -> None:
    clock = FakeClock(1_700_000_000.0)
    agg, sink = _aggregator(clock, flush_interval_s=60)
    values = [1.05**i for i in range(450)]  # ~450 distinct buckets
    for v in values:
        agg.record_request("/r", 200, v)
    agg.flush(final=True)
    lines = [json.loads(x) for x in sink.lines]
    assert len(lines) >= 5
    for line in lines:
        validate_emf(line)
    counters = [line for line in lines if "Requests" in line]
    assert len(counters) == 1 and counters[0]["Requests"] == 450  # counters are not repeated
    parts = [line["Latency"] for line in lines]
    assert sum(p["Count"] for p in parts) == 450
    assert math.isclose(sum(p["Sum"] for p in parts), sum(values), rel_tol=1e-9)
    assert min(p["Min"] for p in parts) == min(values)
    assert max(p["Max"] for p in parts) == max(values)
    assert all(len(p["Values"]) <= _histogram.MAX_PER_ARRAY for p in parts)


def test_plain_values_mode_splits_arrays_at_100() -> None:
    clock = FakeClock(1_700_000_000.0)
    agg, sink = _aggregator(clock, flush_interval_s=60, histogram="values")
    for i in range(250):
        agg.record_request("/r", 200, float(i))
    agg.flush(final=True)
    lines = [json.loads(x) for x in sink.lines]
    arrays = [line["Latency"] for line in lines]
    assert [len(a) for a in arrays] == [100, 100, 50]
    assert sorted(v for a in arrays for v in a) == [float(i) for i in range(250)]
    for line in lines:
        validate_emf(line)


def test_cardinality_cap_per_window(tel) -> None:
    import flask

    from telemetry.flask import instrument

    tel.configure(max_routes=3)
    app = flask.Flask("cap")
    for i in range(8):
        app.add_url_rule(f"/r{i}/<x>", f"r{i}", lambda x: "ok")
    instrument(app)
    client = app.test_client()
    for i in range(8):
        for _ in range(2):
            client.get(f"/r{i}/abc")
    lines = tel.emf()
    routes = {line["Route"] for line in lines if "Route" in line}
    assert routes == {"/r0/<x>", "/r1/<x>", "/r2/<x>", catalog.OVERFLOW_VALUE}
    assert total(lines, "Requests", Route=catalog.OVERFLOW_VALUE) == 10
    assert total(lines, "Requests") == 16  # nothing is lost by capping


def test_agent_mode_adds_the_log_group(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _config.load(
        {"AWS_EMF_ENVIRONMENT": "Agent", "AWS_EMF_LOG_GROUP_NAME": "lg"}, service="svc"
    )
    assert settings.uses_agent
    sink = MemorySink()
    agg = Aggregator(settings, sink, clock=FakeClock(1_700_000_000.0))
    agg.record_request("/r", 200, 1.0)
    agg.flush(final=True)
    line = json.loads(sink.lines[0])
    validate_emf(line)
    assert line["_aws"]["LogGroupName"] == "lg"
