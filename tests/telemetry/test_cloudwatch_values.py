"""EMF values and dimensions CloudWatch accepts (issue #11.6 and #11.7): every flush writes what
it can, values stay within -2^360..2^360, dimension values and settings follow CloudWatch's rules.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from typing import NoReturn

import flask
import pytest
from aws_embedded_metrics import validator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import telemetry
from telemetry import _config, _errors, _output, _runtime, catalog
from telemetry import cloudwatch_rules as rules
from telemetry._metrics import Aggregator
from telemetry.flask import instrument
from telemetry.sinks import AgentSink, MemorySink

from .conftest import Tel, samples, total

T0 = 1_790_000_000.0  # a window boundary for every interval used here


def numbers_in(v: object) -> list[float]:
    if isinstance(v, dict):
        return [x for part in v.values() for x in numbers_in(part)]
    if isinstance(v, list):
        return [x for part in v for x in numbers_in(part)]
    return [v] if isinstance(v, int | float) and not isinstance(v, bool) else []


def emitted(tel: Tel) -> list[dict]:
    tel.emf()  # writes every pending window
    return assert_cloudwatch_accepts(tel.sink.lines)


def assert_cloudwatch_accepts(raw_lines: list[str]) -> list[dict]:
    """Each line parses as strict JSON and every datum in it passes cloudwatch_rules and
    aws-embedded-metrics' own validator."""
    docs = []
    for raw in raw_lines:
        doc = json.loads(raw, parse_constant=lambda c: pytest.fail(f"{c} in an EMF line"))
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            assert rules.namespace_problem(directive["Namespace"]) is None
            for dims in directive["Dimensions"]:
                values = {d: doc[d] for d in dims}
                validator.validate_dimension_set(values)
                for m in directive["Metrics"]:
                    assert rules.problems(directive["Namespace"], m["Name"], values) == []
            for m in directive["Metrics"]:
                assert rules.unit_problem(m["Unit"]) is None
                for x in numbers_in(doc[m["Name"]]):
                    assert rules.value_problem(x) is None, (m["Name"], x)
                    assert not (isinstance(x, int) and abs(x) >= 2**53), x
        docs.append(doc)
    return docs


class Unshowable:
    """A value whose ``repr`` fails, as an argument from a caller's own types may."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def aggregator(sink: MemorySink, now: list[float], **options: object) -> Aggregator:
    st_ = _config.load({}, service="svc", version="v1", flush_interval_s=5, **options)  # type: ignore[arg-type]
    return Aggregator(st_, sink, clock=lambda: now[0])


def test_an_overflowing_sum_loses_only_its_own_metric() -> None:
    """Case 01 (b, d): two finite samples whose sum is infinite, next to healthy data and a
    healthy earlier window flushed together."""
    sink, now = MemorySink(), [T0]
    agg = aggregator(sink, now)
    agg.record_request("/ok", 200, 10.0)
    now[0] += 6  # the next window
    agg.record_request("/ok", 200, 20.0)
    agg.add(catalog.get("DeadLettered"), 2.0**360)
    agg.add(catalog.get("DeadLettered"), 2.0**360)  # counter sum 2^361: out of range
    agg.add(catalog.get("RateLimitWait"), 2e108)
    agg.add(catalog.get("RateLimitWait"), 2e108)  # a Sum above 2^360 (~2.35e108)
    agg.add(catalog.get("QueueBacklog"), 3.0)
    before = _errors.total()
    agg.flush(final=True)
    docs = assert_cloudwatch_accepts(sink.lines)
    assert total(docs, "Requests") == 2  # both windows, the bad one's healthy series too
    assert [d.get("QueueBacklog") for d in docs if "QueueBacklog" in d] == [3]
    assert not any("DeadLettered" in d or "RateLimitWait" in d for d in docs)
    assert _errors.total() - before >= 2  # each dropped metric counted


@pytest.mark.parametrize(
    ("jump_s", "dropped"),
    [(15 * 86400, True), (-3 * 3600, True), (13 * 86400, False), (-3600, False)],
)
def test_a_window_whose_time_cloudwatch_would_refuse_is_dropped_and_counted(
    jump_s: float, dropped: bool
) -> None:
    """CloudWatch takes metric data stamped at most 14 days before and 2 hours after it receives
    it. A window written only after the clock moved that far (a suspended process, a stepped
    clock: 15 days on, 3 hours back) is dropped and counted, never written; 13 days on or an hour
    back it is written. The windows of the new time and the TelemetryErrors line are written."""
    sink, now = MemorySink(), [T0]
    agg = aggregator(sink, now)
    agg.record_request("/old", 200, 10.0)
    agg.add(catalog.get("QueueBacklog"), 5.0)
    now[0] += jump_s
    agg.record_request("/new", 200, 10.0)
    _errors.take_pending()
    before = _errors.counts().get("invalid_timestamp", 0)
    agg.flush(final=True)
    docs = assert_cloudwatch_accepts(sink.lines)
    for d in docs:
        assert rules.timestamp_age_problem(d["_aws"]["Timestamp"] / 1000, now[0]) is None
    routes = [d["Route"] for d in docs if "Requests" in d and "Route" in d]
    assert routes == (["/new"] if dropped else ["/old", "/new"][:: 1 if jump_s > 0 else -1])
    assert any("QueueBacklog" in d for d in docs) is not dropped
    assert _errors.counts().get("invalid_timestamp", 0) - before == dropped  # once per window
    assert [d["TelemetryErrors"] for d in docs if "TelemetryErrors" in d] == [1] * dropped


def test_values_outside_cloudwatchs_range_are_dropped_and_counted(tel: Tel) -> None:
    before = telemetry.error_count()
    for bad in (2.0**361, 1e200, 10**400, -1.0, math.nan, math.inf):
        telemetry.put_metric("QueueBacklog", bad)
    assert telemetry.error_count() - before == 6
    telemetry.put_metric("QueueBacklog", 2.0**360)  # the bound itself is accepted
    docs = emitted(tel)
    assert [d["QueueBacklog"] for d in docs if "QueueBacklog" in d] == [2.0**360]


@pytest.mark.parametrize("huge", [10**400, 10**5000, -(10**5000)], ids=["400", "5000", "-5000"])
def test_integers_too_long_to_print_are_counted_as_invalid_values_with_their_reason(
    tel: Tel, huge: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # repr() refuses ints over 4300 digits: the problem line must not fail (an "internal"
    # error with Python's message instead of the reason) nor show hundreds of digits
    seen: list[tuple[str, str]] = []
    real = _errors.record
    monkeypatch.setattr(
        _errors,
        "record",
        lambda kind, detail="", n=1: (seen.append((kind, str(detail))), real(kind, detail, n)),
    )
    telemetry.put_metric("QueueBacklog", huge)
    _runtime.aggregator().add(catalog.get("QueueBacklog"), huge)
    assert [kind for kind, _ in seen] == ["invalid_value", "invalid_value"], seen
    for _, detail in seen:
        assert "2^360" in detail and len(detail) < 250, detail


def test_large_integral_values_are_not_written_as_long_integers(tel: Tel) -> None:
    telemetry.put_metric("QueueBacklog", 1e200 / 1e100)  # 1e100, integral as a float
    telemetry.put_metric("DeadLettered", 2.0**60)
    docs = emitted(tel)
    assert [d["QueueBacklog"] for d in docs if "QueueBacklog" in d] == [1e100]
    assert [d["DeadLettered"] for d in docs if "DeadLettered" in d] == [2.0**60]
    assert not any(re.search(r"\d{20}", line) for line in tel.sink.lines)  # no 101-digit ints


def test_values_below_cloudwatchs_smallest_magnitude_are_written_as_zero(tel: Tel) -> None:
    telemetry.put_metric("RateLimitWait", 1e-300)
    telemetry.put_metric("RateLimitWait", 5.0)
    docs = emitted(tel)
    assert sorted(samples(docs, "RateLimitWait")) == [0.0, 5.0]


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**120), max_value=10**120),
    st.sampled_from([2.0**360, 2.0**359, 2.0**-361, 2.0**-360, 1e308, 5e-324]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["DeadLettered", "RateLimitWait", "QueueBacklog", "MessageAge"]), values
        ),
        max_size=30,
    ),
    st.sampled_from(["counts", "values"]),
)
def test_any_values_give_lines_cloudwatch_accepts_and_keep_healthy_series(
    observations: list[tuple[str, float]], mode: str
) -> None:
    sink, now = MemorySink(), [T0]
    agg = aggregator(sink, now, histogram=mode)
    agg.record_request("/healthy", 200, 12.5)
    for name, value in observations:
        agg.add(catalog.get(name), value)  # out-of-range values are counted, not raised
    agg.flush(final=True)
    docs = assert_cloudwatch_accepts(sink.lines)
    assert total(docs, "Requests", Route="/healthy") == 1
    agg.close()


# -- dimensions and settings --------------------------------------------------------------------


def test_non_ascii_and_blank_routes_are_sanitised_and_counted(tel: Tel) -> None:
    app = flask.Flask("dims")
    app.add_url_rule("/ポイント/<user_id>", "pts", lambda user_id: {"ok": True})
    app.add_url_rule("/tab\there", "tab", lambda: "ok")
    instrument(app)
    client = app.test_client()
    assert client.get("/ポイント/u1").status_code == 200
    assert client.get("/tab%09here").status_code == 200
    before = telemetry.counts().get("invalid_dimension", 0)
    docs = emitted(tel)
    routes = {d["Route"] for d in docs if "Route" in d}
    assert "/%E3%83%9D%E3%82%A4%E3%83%B3%E3%83%88/<user_id>" in routes
    assert "/tab%09here" in routes
    assert telemetry.counts()["invalid_dimension"] - before >= 2


@given(st.text(max_size=1200))
@settings(max_examples=200, deadline=None)
def test_sanitised_dimension_values_are_always_accepted(value: str) -> None:
    clean = rules.sanitize_dimension_value(value)
    assert rules.dimension_value_problem(clean) is None
    validator.validate_dimension_set({"Route": clean})
    if rules.dimension_value_problem(value) is None:
        assert clean == value  # an accepted value is kept as it is


@pytest.mark.parametrize(
    ("arguments", "env", "variable", "field", "default"),
    [
        ({"service": "ポイント"}, {}, "service", "service", "unknown_service"),
        ({}, {"OTEL_SERVICE_NAME": "   "}, "OTEL_SERVICE_NAME", "service", "unknown_service"),
        ({"version": "   "}, {}, "version", "version", "dev"),
        ({}, {"APP_VERSION": "v\x071"}, "APP_VERSION", "version", "dev"),
        ({}, {"APP_VERSION": "v" * 1025}, "APP_VERSION", "version", "dev"),
        ({"namespace": "Safe Deploy"}, {}, "AWS_EMF_NAMESPACE", "namespace", "SafeDeploy"),
        ({}, {"AWS_EMF_NAMESPACE": "AWS/ECS"}, "AWS_EMF_NAMESPACE", "namespace", "SafeDeploy"),
        ({}, {"AWS_EMF_NAMESPACE": ":Team"}, "AWS_EMF_NAMESPACE", "namespace", "SafeDeploy"),
        ({}, {"AWS_EMF_NAMESPACE": "Équipe"}, "AWS_EMF_NAMESPACE", "namespace", "SafeDeploy"),
        ({}, {"AWS_EMF_NAMESPACE": "N" * 256}, "AWS_EMF_NAMESPACE", "namespace", "SafeDeploy"),
        ({}, {"AWS_EMF_LOG_GROUP_NAME": "my group"}, "AWS_EMF_LOG_GROUP_NAME", "log_group", ""),
        *(
            ({}, {"AWS_EMF_AGENT_ENDPOINT": bad}, "AWS_EMF_AGENT_ENDPOINT", "agent_endpoint", "")
            for bad in (
                "tcp://[::1",  # urllib: "Invalid IPv6 URL"
                "tcp://127.0.0.1:99999",  # urllib: "Port out of range 0-65535"
                "tcp://127.0.0.1:port",
                "tcp://127.0.0.1:0",
                "tcp://127.0.0.1",
                "tcp://:25888",
                "http://127.0.0.1:25888",
                "not a url",
            )
        ),
        ({}, {"AWS_EMF_ENVIRONMENT": "Agnet"}, "AWS_EMF_ENVIRONMENT", "emf_environment", ""),
        ({}, {"TELEMETRY_JSON_LOGS": "maybe"}, "TELEMETRY_JSON_LOGS", "json_logs", True),
        ({}, {"TELEMETRY_JSON_LOGS": "nein"}, "TELEMETRY_JSON_LOGS", "json_logs", True),
        ({}, {"TELEMETRY_LOG_LEVEL": "loud"}, "TELEMETRY_LOG_LEVEL", "log_level", "INFO"),
        ({"log_level": "10"}, {}, "TELEMETRY_LOG_LEVEL", "log_level", "INFO"),
        (
            {},
            {"TELEMETRY_EXCLUDE_PATHS": "([unclosed"},
            "TELEMETRY_EXCLUDE_PATHS",
            "exclude_paths",
            _config.DEFAULT_EXCLUDE,
        ),
        # arguments of the wrong type or beyond what repr() can show: one line, the rest kept
        ({"max_routes": 10**5000}, {}, "TELEMETRY_MAX_ROUTES", "max_routes", 50),
        ({"worker_slots": Unshowable()}, {}, "TELEMETRY_WORKER_SLOTS", "worker_slots", 1),
        (
            {"exclude_paths": rb"^/x$"},
            {},
            "TELEMETRY_EXCLUDE_PATHS",
            "exclude_paths",
            _config.DEFAULT_EXCLUDE,
        ),
        ({"json_logs": "false"}, {}, "TELEMETRY_JSON_LOGS", "json_logs", True),
        ({"traces_file": 5}, {}, "TELEMETRY_TRACES_FILE", "traces_file", ""),
        ({"traces_file": b"/tmp/x"}, {}, "TELEMETRY_TRACES_FILE", "traces_file", ""),
    ],
)
def test_invalid_settings_are_reported_in_one_line_naming_the_variable(
    tel: Tel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    arguments: dict,
    env: dict,
    variable: str,
    field: str,
    default: str,
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    given = {"service": "svc", "version": "v1", **arguments}
    arguments = {k: v for k, v in given.items() if k != field or k in arguments}
    before = telemetry.error_count()
    capsys.readouterr()
    got = telemetry.configure(sink=tel.sink, log_stream=tel.out, **arguments)
    assert got is not None and getattr(got, field) == default
    assert telemetry.error_count() - before == 1
    lines = [x for x in capsys.readouterr().err.splitlines() if "invalid setting" in x]
    assert len(lines) == 1 and variable in lines[0], lines


class Unreadable:
    """A value no conversion can read: str, repr, float and int all raise."""

    def _fail(self, *_: object) -> NoReturn:
        raise RuntimeError("unreadable")

    __str__ = __repr__ = __float__ = __int__ = __index__ = _fail


@pytest.mark.parametrize(
    "field",
    [p for p in inspect.signature(_config.load).parameters if p not in ("env", "default_service")],
)
def test_an_argument_nothing_can_read_is_named_and_every_other_setting_kept(
    tel: Tel, capsys: pytest.CaptureFixture, field: str
) -> None:
    given = {"service": "svc", "version": "v1", "max_routes": 7, field: Unreadable()}
    default = getattr(_config.load(**{k: v for k, v in given.items() if k != field}), field)
    capsys.readouterr()
    got = telemetry.configure(sink=tel.sink, log_stream=tel.out, **given)
    assert got is not None
    assert getattr(got, field) == (default if field != "service" else "unknown_service")
    kept = {"service": "svc", "version": "v1", "max_routes": 7}
    kept.pop(field, None)
    assert {k: getattr(got, k) for k in kept} == kept
    lines = [x for x in capsys.readouterr().err.splitlines() if "invalid setting" in x]
    assert len(lines) == 1, lines


def test_the_catalog_follows_cloudwatchs_rules() -> None:
    for m in catalog.METRICS:
        for dims in m.dimension_sets:
            values = {d: "x" for d in dims}
            assert rules.problems(_config.DEFAULT_NAMESPACE, m.name, values, 1.0, m.unit) == []


@pytest.mark.parametrize(
    ("namespace", "metric", "dimensions", "value", "reason"),
    [
        ("AWS/EC2", "M", {}, None, "reserved"),
        ("Team Points", "M", {}, None, "may contain only"),
        ("T", "", {}, None, "non-whitespace"),
        ("T", "M", {"Route": "/ü"}, None, "ASCII"),
        ("T", "M", {"Route": " "}, None, "non-whitespace"),
        ("T", "M", {":Route": "x"}, None, "':'"),
        ("T", "M", {"R": "\x07"}, None, "control"),
        ("T", "M", {f"D{i}": "x" for i in range(31)}, None, "at most 30"),
        ("T", "M", {}, math.nan, "finite"),
        ("T", "M", {}, 2.0**361, "2^360"),
        ("T", "M", {}, -(2.0**361), "2^360"),
        ("T", "M", {}, 1e-200, "2^-360"),
    ],
)
def test_problems_name_the_reason(
    namespace: str, metric: str, dimensions: dict, value: float | None, reason: str
) -> None:
    found = rules.problems(namespace, metric, dimensions, value)
    assert any(reason in p for p in found), found


def test_configure_rejects_nothing_it_was_given_silently(tel: Tel) -> None:
    """Everything left over is accepted: the resulting settings pass the rules themselves."""
    got = telemetry.configure("svc-1", "v2", namespace="Team/Points#1", sink=tel.sink)
    assert got is not None and got.problems == ()
    assert (got.service, got.version, got.namespace) == ("svc-1", "v2", "Team/Points#1")


LONG = 2000


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("APP_VERSION", "v" * LONG),
        ("OTEL_SERVICE_NAME", "s" * LONG),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.version=" + "v" * LONG),
        ("AWS_EMF_NAMESPACE", "N" * LONG),
        ("AWS_EMF_LOG_GROUP_NAME", "g" * LONG),
        ("TELEMETRY_FLUSH_INTERVAL_S", "9" * LONG),
        ("TELEMETRY_MAX_ROUTES", "x" * LONG),
        ("TELEMETRY_HISTOGRAM", "h" * LONG),
        ("TELEMETRY_STORAGE_RESOLUTION", "1" * LONG),
        ("TELEMETRY_TRACES_FILE", "f" * LONG),  # too long a file name to open
        ("AWS_EMF_AGENT_ENDPOINT", "h" * LONG),
        ("AWS_EMF_ENVIRONMENT", "e" * LONG),
        ("TELEMETRY_JSON_LOGS", "j" * LONG),
        ("OTEL_PROPAGATORS", "p" * LONG),
        ("TELEMETRY_LOG_LEVEL", "l" * LONG),
        ("TELEMETRY_EXCLUDE_PATHS", "(" * LONG),
    ],
)
def test_a_long_bad_value_is_cut_in_its_problem_line(
    tel: Tel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    variable: str,
    value: str,
) -> None:
    """The line names the variable and shows the value's start and full length, not 2000
    characters of it."""
    monkeypatch.setenv(variable, value)
    capsys.readouterr()
    assert telemetry.configure(sink=tel.sink, log_stream=tel.out) is not None
    _output.flush(10.0)  # stderr lines are written by the output thread
    lines = [x for x in capsys.readouterr().err.splitlines() if "invalid setting" in x]
    assert len(lines) == 1 and variable in lines[0] and f"({LONG} characters)" in lines[0], lines
    assert len(lines[0]) < 400, len(lines[0])


def test_a_bad_agent_endpoint_under_the_agent_environment_uses_the_default_endpoint(
    tel: Tel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_EMF_ENVIRONMENT", "Agent")
    monkeypatch.setenv("AWS_EMF_AGENT_ENDPOINT", "tcp://127.0.0.1:99999")
    got = telemetry.configure("svc", "v1", log_stream=tel.out)
    assert got is not None and got.agent_endpoint == "" and got.uses_agent
    sink = _runtime.aggregator().sink
    assert isinstance(sink, AgentSink) and sink.address == ("127.0.0.1", 25888)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *((v, True) for v in ("", "true", "TRUE", "1", "yes", "On", " true ")),
        *((v, False) for v in ("false", "False", "0", "no", "NO", "off", " off")),
    ],
)
def test_json_logs_spellings(
    tel: Tel, monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("TELEMETRY_JSON_LOGS", value)
    before = telemetry.counts().get("config", 0)
    got = telemetry.configure("svc", "v1", sink=tel.sink, log_stream=tel.out)
    assert got is not None and got.json_logs is expected
    assert telemetry.counts().get("config", 0) == before
