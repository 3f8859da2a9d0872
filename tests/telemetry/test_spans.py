"""Where the time went: ``telemetry.span`` child spans, ``telemetry.annotate`` fields on the
server span and the access line, and ``TELEMETRY_TRACES_FILE`` (OTLP JSON lines)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import flask
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import telemetry
from rehearsal import traces
from telemetry import _runtime, _tracing
from telemetry import spans as spans_module
from telemetry.flask import instrument
from tests.telemetry.conftest import Tel

SLEEP_S = 0.03


def _app() -> flask.Flask:
    app = flask.Flask("spans")

    @app.get("/task/<user>")
    def work(user: str) -> str:
        telemetry.annotate(user_id=user, big=2**70, ratio=0.5, ok=True, obj=object)
        with telemetry.span("outer", step=1) as outer:
            time.sleep(SLEEP_S)
            with telemetry.span("inner"):
                pass
            outer.set_attribute("rows", 3)
        return "done"

    @app.get("/boom")
    def boom() -> str:
        with telemetry.span("failing"):
            raise KeyError("gone")

    @app.get("/many")
    def many() -> str:
        for i in range(spans_module.MAX_ANNOTATIONS + 5):
            telemetry.annotate(**{f"k{i}": i})
        return "ok"

    return instrument(app)


def _by_name(spans: list) -> dict:
    return {s.name: s for s in spans}


def test_child_spans_nest_under_the_server_span_and_cover_their_block(tel: Tel) -> None:
    assert _app().test_client().get("/task/ann").status_code == 200
    got = _by_name(tel.spans())
    server, outer, inner = got["GET /task/<user>"], got["outer"], got["inner"]
    assert outer.parent.span_id == server.context.span_id
    assert inner.parent.span_id == outer.context.span_id
    assert {s.context.trace_id for s in (server, outer, inner)} == {server.context.trace_id}
    assert outer.end_time - outer.start_time >= SLEEP_S * 1e9  # the block's sleep is inside
    assert server.start_time <= outer.start_time and outer.end_time <= server.end_time
    assert outer.kind == trace.SpanKind.INTERNAL and outer.instrumentation_scope.name == "telemetry"
    assert dict(outer.attributes) == {"step": 1, "rows": 3}
    # annotations: span attributes (OpenTelemetry types; others as text) and access line fields
    assert server.attributes["user_id"] == "ann" and server.attributes["ok"] is True
    assert server.attributes["big"] == str(2**70) and server.attributes["ratio"] == 0.5
    assert server.attributes["obj"] == str(object)
    (line,) = [x for x in tel.logs() if x.get("logger") == "telemetry.access"]
    assert line["user_id"] == "ann" and line["big"] == str(2**70) and line["ok"] is True
    assert line["status"] == 200 and line["method"] == "GET"  # core fields unchanged


def test_an_exception_propagates_and_marks_the_span_failed(tel: Tel) -> None:
    assert _app().test_client().get("/boom").status_code == 500
    failing = _by_name(tel.spans())["failing"]
    assert failing.status.status_code == trace.StatusCode.ERROR
    assert [e.name for e in failing.events] == ["exception"]
    assert failing.events[0].attributes["exception.type"] == "KeyError"


def test_annotations_are_capped_and_the_excess_counted(tel: Tel) -> None:
    before = telemetry.counts().get("annotation", 0)
    assert _app().test_client().get("/many").status_code == 200
    server = _by_name(tel.spans())["GET /many"]
    keys = [k for k in server.attributes if k.startswith("k")]
    assert len(keys) == spans_module.MAX_ANNOTATIONS
    assert telemetry.counts()["annotation"] - before == 5


def test_no_span_is_built_for_an_unsampled_trace(tel: Tel) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"  # not sampled
    assert _app().test_client().get("/task/x", headers={"traceparent": parent}).status_code == 200
    assert tel.spans() == []


def test_a_span_outside_any_trace_starts_one_and_annotate_is_a_no_op(tel: Tel) -> None:
    telemetry.annotate(ignored=1)  # no request or job: nothing happens, nothing raises
    with telemetry.span("standalone", kind=trace.SpanKind.CLIENT) as s:
        assert s.span_context is not None
    (span,) = tel.spans()
    assert span.parent is None and span.kind == trace.SpanKind.CLIENT


def test_in_a_job_spans_are_children_and_annotations_reach_its_span_and_lines(tel: Tel) -> None:
    with telemetry.job("order.completed", message_id="m-1"):
        telemetry.annotate(user_id="u-9")
        with telemetry.span("store.grant"):
            telemetry.get_logger("app").info("granted")
    got = _by_name(tel.spans())
    job, store = got["order.completed"], got["store.grant"]
    assert store.parent.span_id == job.context.span_id
    assert job.attributes["user_id"] == "u-9"
    (granted,) = [x for x in tel.logs() if x["message"] == "granted"]
    assert granted["user_id"] == "u-9" and granted["span_id"] == f"{store.context.span_id:016x}"


def test_traces_file_holds_otlp_json_lines(tel: Tel, tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    tel.configure(traces_file=str(path))
    assert _app().test_client().get("/task/f").status_code == 200
    telemetry.shutdown()  # exports what the batch processor holds and closes the file
    lines = path.read_text().splitlines()
    assert lines
    for line in lines:  # the OTLP JSON mapping: hex ids, enums as numbers, int64 as strings
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    assert len(s["traceId"]) == 32 and int(s["traceId"], 16)
                    assert len(s["spanId"]) == 16 and int(s["spanId"], 16)
                    assert isinstance(s["kind"], int) and isinstance(s["startTimeUnixNano"], str)
    got = {s.name: s for s in traces.read(path).spans}
    assert got["outer"].parent_span_id == got["GET /task/<user>"].span_id
    assert got["outer"].duration_ms >= SLEEP_S * 1000
    assert got["GET /task/<user>"].attributes["user_id"] == "f"
    assert got["GET /task/<user>"].service == "test-svc"
    (line,) = [x for x in tel.logs() if x.get("logger") == "telemetry.access"]
    assert got["GET /task/<user>"].xray_trace_id == line["trace_id"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "where", ["missing-dir", "a-directory", "a-fifo-nobody-reads", "a-nul-character"]
)
def test_an_unusable_traces_file_is_reported_naming_the_variable(
    tel: Tel, tmp_path: Path, where: str, capfd: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "no" / "such" / "t.jsonl" if where == "missing-dir" else tmp_path
    if where == "a-nul-character":  # os.open raises ValueError, not OSError
        target = tmp_path / "t\x00.jsonl"
    if where == "a-fifo-nobody-reads":  # opening it for writing blocked configure() forever
        target = tmp_path / "fifo"
        os.mkfifo(target)
    before = telemetry.counts().get("config", 0)
    tel.configure(traces_file=str(target))
    assert _app().test_client().get("/task/z").status_code == 200  # the app serves on
    assert telemetry.counts()["config"] == before + 1
    telemetry.shutdown()
    assert f"TELEMETRY_TRACES_FILE={str(target)!r}" in capfd.readouterr().err
    assert tel.spans(), "tracing stays on, only the file is left out"


def test_spans_are_built_by_the_export_thread_from_values_taken_at_their_end(tel: Tel) -> None:
    with telemetry.span("queued", step=1) as s:
        pass
    s.set_attribute("late", True)  # after the block: not on the span, even though built later
    processor = _runtime.state.provider._active_span_processor._span_processors[0]  # type: ignore[union-attr]
    queued = list(processor._batch_processor._queue)
    assert len(queued) == 1 and type(queued[0]) is tuple  # a recipe, not yet a ReadableSpan
    (span,) = tel.spans()
    assert span.name == "queued" and dict(span.attributes) == {"step": 1}


def test_a_span_that_cannot_be_built_is_counted_and_the_others_exported(tel: Tel) -> None:
    def broken(*args: object) -> None:
        raise ValueError("no span")

    built = ReadableSpan("plain")
    exporter = _tracing._CountingExporter(InMemorySpanExporter())
    before = telemetry.counts().get("tracing", 0)
    exporter.export([(broken, ()), built])
    assert list(exporter.inner.get_finished_spans()) == [built]
    assert telemetry.counts()["tracing"] - before == 1


def test_a_processor_of_the_application_gets_built_spans(tel: Tel) -> None:
    exporter = InMemorySpanExporter()
    _runtime.state.provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[union-attr]
    _runtime.state.server_spans = _tracing.ServerSpans(_runtime.state.provider)  # type: ignore[arg-type]
    with telemetry.span("both"):
        pass
    (mine,) = exporter.get_finished_spans()  # at once, from on_end: a ReadableSpan
    assert isinstance(mine, ReadableSpan) and mine.name == "both"
    assert [s.name for s in tel.spans()] == ["both"]


def test_a_root_span_context_is_what_the_api_constructor_makes(tel: Tel) -> None:
    spans = _runtime.state.server_spans
    assert spans is not None and spans._fast_root  # the default sampler and id generator
    for _ in range(200):
        sc, parent, record = spans.start(None, "GET", trace.SpanKind.SERVER)
        assert parent is None and record
        made = trace.SpanContext(sc.trace_id, sc.span_id, False, trace.TraceFlags(1))
        assert type(sc) is trace.SpanContext and sc == made and tuple(sc) == tuple(made)
        assert sc.is_valid and sc.trace_flags.sampled and not sc.is_remote
        assert sc.trace_state == made.trace_state and len(sc.trace_state) == 0
        assert abs((sc.trace_id >> 96) - time.time()) < 5  # X-Ray: the epoch second first


@pytest.mark.parametrize("positional", [True, False])
def test_server_spans_are_the_same_built_by_position_or_by_keyword(
    tel: Tel, monkeypatch: pytest.MonkeyPatch, positional: bool
) -> None:
    monkeypatch.setattr(_tracing, "_POSITIONAL_READABLE_SPAN", positional)
    app = flask.Flask("built")

    @app.get("/fail/<n>")
    def fail(n: str) -> tuple[str, int]:
        telemetry.annotate(n=n)
        return "no", 503

    instrument(app)
    app.test_client().get("/fail/7", headers={"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"})
    (span,) = tel.spans()
    assert type(span) is ReadableSpan and span.name == "GET /fail/<n>"
    assert span.kind is trace.SpanKind.SERVER and span.status.status_code is trace.StatusCode.ERROR
    assert span.parent is not None and span.parent.span_id == int("cd" * 8, 16)
    assert span.context.trace_id == int("ab" * 16, 16)
    assert dict(span.attributes) == {
        "http.request.method": "GET",
        "http.route": "/fail/<n>",
        "url.path": "/fail/7",
        "http.response.status_code": 503,
        "n": "7",
    }
    assert span.resource.attributes["service.name"] == "test-svc"
    assert span.instrumentation_scope.name == "telemetry.flask"
    assert 0 < span.end_time - span.start_time < 10**10 and list(span.links) == []


def test_the_positional_build_is_used_only_when_the_sdk_order_matches() -> None:
    assert _tracing._positional_parameters_are(ReadableSpan, _tracing.READABLE_SPAN_PARAMETERS)

    class Reordered:
        def __init__(self, context: object = None, name: str = "") -> None:
            pass

    assert not _tracing._positional_parameters_are(Reordered, ("name", "context"))


def test_span_limits_of_the_environment_bound_server_child_and_job_spans(
    tel: Tel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`` / ``_COUNT_LIMIT`` and
    ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`` (event attributes) bound what a client or the app puts
    on a span, as the SDK's own spans are bounded: the first attributes (the HTTP ones) are kept,
    the rest counted as dropped, long strings cut."""
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "16")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "6")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "20")
    tel.configure()
    app = flask.Flask("limits")

    @app.get("/<path:p>")
    def view(p: str) -> str:
        telemetry.annotate(**{f"a{i}": "v" * 100 for i in range(10)})
        with telemetry.span("child", **{f"c{i}": i for i in range(10)}) as child:
            child.set_attribute("long", "w" * 100)
        with telemetry.span("failing"):
            raise KeyError("k" * 500)

    instrument(app)
    path = "/" + "p" * 3000  # client input
    assert app.test_client().get(path).status_code == 500
    with telemetry.job("order.completed", message_id="m-1"):
        telemetry.annotate(**{f"j{i}": "x" * 50 for i in range(10)})
    got = _by_name(tel.spans())
    server = got["GET /<path:p>"]
    assert list(server.attributes)[:4] == [
        "http.request.method",
        "http.route",
        "url.path",
        "http.response.status_code",
    ]
    assert len(server.attributes) == 6 and server.dropped_attributes == 8
    assert server.attributes["url.path"] == path[:16]
    assert server.attributes["a0"] == "v" * 16
    assert len(got["child"].attributes) == 6 and got["child"].dropped_attributes == 5
    (event,) = got["failing"].events
    assert {len(v) for v in event.attributes.values()} <= set(range(21))
    job = got["order.completed"]
    assert len(job.attributes) <= 6 and all(
        len(v) <= 16 for v in job.attributes.values() if isinstance(v, str)
    )
