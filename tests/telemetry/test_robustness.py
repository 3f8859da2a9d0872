"""Telemetry never raises into the application: failures are counted and reported."""

from __future__ import annotations

import io
import json
import math
import socket
import sys
import time

import flask
import pytest

import telemetry
from telemetry import _errors, _runtime
from telemetry._metrics import Aggregator
from telemetry.flask import instrument
from telemetry.sinks import StdoutSink

from .conftest import Tel, samples, total


class BrokenStream(io.TextIOBase):
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def write(self, s: str) -> int:
        raise self.exc

    def flush(self) -> None:
        raise self.exc


def app_with(tel: Tel) -> flask.Flask:
    app = flask.Flask("robust")

    @app.get("/ok")
    def ok():
        telemetry.get_logger("robust").info("inside")
        telemetry.put_metric("RateLimitWait", 1.0)
        return "ok"

    return instrument(app)


@pytest.mark.parametrize(
    "exc", [BrokenPipeError(32, "Broken pipe"), ValueError("I/O operation on closed file")]
)
def test_broken_stdout(
    tel: Tel, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, exc: BaseException
) -> None:
    telemetry.configure("svc", "v1", sink=StdoutSink())  # EMF and logs both on sys.stdout
    monkeypatch.setattr(sys, "stdout", BrokenStream(exc))
    before = telemetry.error_count()
    client = app_with(tel).test_client()
    for _ in range(3):
        assert client.get("/ok").status_code == 200
    telemetry.flush()
    telemetry.shutdown()
    assert telemetry.error_count() > before
    err = capsys.readouterr().err
    assert "telemetry:" in err and ("sink" in err or "log" in err)


def test_invalid_names_and_values_are_counted_not_raised(tel: Tel) -> None:
    before = telemetry.error_count()
    bad = [
        ("NotInCatalog", 1),
        ("TelemetryErrors", 1),  # the self-metric is telemetry's own
        (None, 1),
        (42, 1),
        ("Latency", math.nan),
        ("Latency", math.inf),
        ("Latency", -1),
        ("Latency", "12"),
        ("Latency", None),
        ("Requests", True),
        ("QueueBacklog", [1, 2]),
    ]
    for name, value in bad:
        telemetry.put_metric(name, value)  # type: ignore[arg-type]
    telemetry.record_message_age(-5)
    telemetry.report_queue(backlog=math.nan)
    telemetry.put_metric("RateLimitWait", 2)  # a good one still works
    assert telemetry.error_count() - before == len(bad) + 2
    lines = tel.emf()
    assert samples(lines, "RateLimitWait") == [2.0]
    assert total(lines, "TelemetryErrors") == len(bad) + 2
    for line in lines:
        json.dumps(line, allow_nan=False)  # no NaN/inf ever reaches the output


def test_unreachable_agent(tel: Tel, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_EMF_AGENT_ENDPOINT", f"tcp://127.0.0.1:{port}")
    telemetry.configure("svc", "v1")
    assert type(_runtime.aggregator().sink).__name__ == "AgentSink"
    before = telemetry.error_count()
    assert app_with(tel).test_client().get("/ok").status_code == 200
    telemetry.shutdown()
    assert telemetry.error_count() > before


def test_bad_settings_fall_back_to_defaults(tel: Tel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_FLUSH_INTERVAL_S", "soon")
    monkeypatch.setenv("TELEMETRY_HISTOGRAM", "sketchy")
    monkeypatch.setenv("TELEMETRY_MAX_ROUTES", "-3")
    monkeypatch.setenv("TELEMETRY_EXCLUDE_PATHS", "([unclosed")
    monkeypatch.setenv("AWS_EMF_AGENT_ENDPOINT", "not a url")
    before = telemetry.error_count()
    settings = telemetry.configure("svc", "v1", log_stream=tel.out)
    assert settings is not None
    assert (settings.flush_interval_s, settings.histogram, settings.max_routes) == (
        5.0,
        "counts",
        50,
    )
    assert type(_runtime.aggregator().sink).__name__ == "StdoutSink"
    assert app_with(tel).test_client().get("/ok").status_code == 200
    assert telemetry.error_count() - before >= 5


@pytest.mark.parametrize("value", ["\uff15", "\u0663", "1_0"])
def test_digits_of_other_scripts_are_not_numbers(
    tel: Tel, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("TELEMETRY_MAX_ROUTES", value)  # int()/float() would read 5, 3, 10
    before = telemetry.error_count()
    settings = telemetry.configure("svc", "v1", log_stream=tel.out)
    assert settings.max_routes == 50
    assert telemetry.error_count() - before == 1


def test_full_buffer_in_values_mode(tel: Tel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_MAX_VALUES", "100")
    tel.configure(histogram="values")
    now = time.time()
    # one window for all 150 values, however slowly the loop runs on a loaded machine
    _runtime.aggregator().clock = lambda: now
    before = telemetry.error_count()
    for i in range(150):
        telemetry.put_metric("RateLimitWait", float(i))
    lines = tel.emf()
    assert len(samples(lines, "RateLimitWait")) == 100
    assert telemetry.error_count() > before


def test_failing_internals_never_reach_the_request(
    tel: Tel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected")

    client = app_with(tel).test_client()
    monkeypatch.setattr(Aggregator, "record_request", explode)
    monkeypatch.setattr(Aggregator, "add", explode)
    monkeypatch.setattr(_runtime.state.server_spans, "end", explode)
    before = telemetry.error_count()
    r = client.get("/ok")
    assert r.status_code == 200 and r.data == b"ok"
    assert telemetry.error_count() - before >= 2
    monkeypatch.setattr(tel.sink, "write", explode)
    telemetry.flush()  # the sink raising is counted too
    _runtime.aggregator().flush(final=True)


def test_failing_span_exporter_is_counted(tel: Tel) -> None:
    class Failing(type(tel.exporter)):  # type: ignore[misc]
        def export(self, spans):
            raise ConnectionError("collector down")

    telemetry.configure("svc", "v1", sink=tel.sink, log_stream=tel.out, span_exporter=Failing())
    before = telemetry.error_count()
    assert app_with(tel).test_client().get("/ok").status_code == 200
    _runtime.state.provider.force_flush()
    assert telemetry.error_count() > before


def test_job_exceptions_propagate_unchanged_even_if_telemetry_fails(
    tel: Tel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_runtime, "aggregator", lambda: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(KeyError, match="mine"), telemetry.job(message_id="m"):
        raise KeyError("mine")

    @telemetry.job()
    def work(x: int) -> int:
        return x * 2

    assert work(21) == 42


def test_stderr_report_at_most_once_a_minute(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    now = [10_000.0]
    monkeypatch.setattr(_errors, "_clock", lambda: now[0])
    monkeypatch.setattr(_errors, "_last_report", -_errors.REPORT_EVERY_S)
    for _ in range(50):
        _errors.record("test_kind", "first minute")
    now[0] += 30
    _errors.record("test_kind", "still the first minute")
    assert capsys.readouterr().err.count("telemetry:") == 1
    now[0] += 31
    _errors.record("test_kind", "next minute")
    err = capsys.readouterr().err
    assert err.count("telemetry:") == 1 and "test_kind=51" in err  # all counted since the last


def test_configure_without_arguments_repeats_the_previous_call(tel: Tel) -> None:
    first = telemetry.configure("named", "v7", sink=tel.sink, flush_interval_s=2, max_routes=9)
    again = telemetry.configure()  # what gunicorn's post_fork hook does
    assert first is not None and again is not None
    assert (again.service, again.version, again.flush_interval_s, again.max_routes) == (
        "named",
        "v7",
        2.0,
        9,
    )
    assert _runtime.aggregator().sink is tel.sink


def test_headers_passed_as_a_tuple_are_served_with_the_request_id(tel: Tel) -> None:
    # WSGI asks for a list; a middleware inside instrument() that passes a tuple works under
    # gunicorn and werkzeug alone, so adding X-Request-Id must not make it fail
    app = flask.Flask("tuple_headers")

    @app.get("/t")
    def t() -> str:
        return "ok"

    inner = app.wsgi_app

    def as_tuple(environ, start_response):
        return inner(environ, lambda s, h, e=None: start_response(s, tuple(h), e))

    app.wsgi_app = as_tuple
    instrument(app)
    r = app.test_client().get("/t", headers={"X-Request-Id": "tuple-1"})
    assert (r.status_code, r.data, r.headers.getlist("X-Request-Id")) == (200, b"ok", ["tuple-1"])
    (access,) = [x for x in tel.logs() if x["logger"] == "telemetry.access"]
    assert (access["status"], access["bytes"], access["route"]) == (200, 2, "/t")


@pytest.mark.parametrize(
    ("variable", "value", "field", "default"),
    [
        ("TELEMETRY_MAX_ROUTES", "1.9", "max_routes", 50),
        ("TELEMETRY_MAX_VALUES", "100.4", "max_values", 10_000),
        ("TELEMETRY_WORKER_SLOTS", "1.0000001", "worker_slots", 1),
        ("TELEMETRY_OUTPUT_BUFFER_BYTES", "65536.5", "output_buffer_bytes", 4 * 1024 * 1024),
    ],
)
def test_counts_with_a_fraction_are_refused_not_cut(
    tel: Tel, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, default: int
) -> None:
    monkeypatch.setenv(variable, value)
    before = telemetry.error_count()
    settings = telemetry.configure("svc", "v1", log_stream=tel.out)
    assert getattr(settings, field) == default
    assert telemetry.error_count() - before == 1
    assert any(variable in p and "whole number" in p for p in settings.problems)


@pytest.mark.parametrize(("value", "expected"), [("1e2", 100), ("20.0", 20), (" 7 ", 7)])
def test_whole_counts_in_other_spellings_are_read(
    tel: Tel, monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv("TELEMETRY_MAX_ROUTES", value)
    settings = telemetry.configure("svc", "v1", log_stream=tel.out)
    assert settings.max_routes == expected and not settings.problems


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__


def test_a_span_name_without_text_never_raises(tel: Tel) -> None:
    tel.configure()
    with telemetry.span(_Unprintable()):  # type: ignore[arg-type]
        pass
    (span,) = tel.spans()
    assert span.name == "<unprintable _Unprintable>"


def test_a_job_with_unprintable_fields_is_still_counted_and_ended(tel: Tel) -> None:
    """A field or name whose str() raises must not cost the job its Jobs/JobDuration, leave its
    busy slot open (WorkerUtilization stuck high) or leave its log fields on the thread."""
    from telemetry import _context

    tel.configure()
    with telemetry.job(_Unprintable(), message_id=_Unprintable(), order=_Unprintable()):  # type: ignore[arg-type]
        assert _context.current_scope() is not None
    assert _context.current_scope() is None
    assert _runtime.aggregator()._active == {}  # the busy slot ended
    assert total(tel.emf(), "Jobs") == 1
    (span,) = tel.spans()
    assert span.attributes["order"] == "<unprintable _Unprintable>"
