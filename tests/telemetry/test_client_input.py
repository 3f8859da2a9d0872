"""Client-controlled input (issue #11.8, #11.9): HTTP methods cannot create span names at will;
inbound correlation headers are continued only when exactly valid, otherwise a new trace starts
and the rejection is counted."""

from __future__ import annotations

import flask
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace

import telemetry
from telemetry import _tracing
from telemetry.flask import KNOWN_METHODS, instrument
from telemetry.jobs import job

from .conftest import Tel
from .test_flask import XRAY_TRACE, access_lines, make_app

PARENT = "53995c3f42cd8ad8"
W3C_TRACE = "0af7651916cd43dd8448eb211c80319c"
W3C_PARENT = f"00-{W3C_TRACE}-b7ad6b7169203331-01"


def items_app() -> flask.Flask:
    app = flask.Flask("methods")
    app.add_url_rule("/items/<i>", "items", lambda i: {"i": i}, methods=["GET", "POST"])
    return instrument(app)


def test_invented_methods_share_one_span_name_and_method_value(tel: Tel) -> None:
    """Case 06: 200 invented methods and a lower-case known one give 2 span names."""
    client = items_app().test_client()
    for k in range(200):
        client.open("/items/1", method=f"X{k:04d}")
    client.open("/items/1", method="get")
    spans = tel.spans()
    assert len(spans) == 201
    assert {s.name for s in spans} == {"HTTP UNMATCHED", "GET /items/<i>"}
    assert {s.attributes["http.request.method"] for s in spans} == {"_OTHER", "GET"}
    originals = {s.attributes.get("http.request.method_original") for s in spans}
    assert "X0199" in originals and "get" in originals
    lines = access_lines(tel)
    assert {line["method"] for line in lines} == {"_OTHER", "GET"}
    assert {line["method_original"] for line in lines if "method_original" in line} >= {"X0000"}


@pytest.mark.parametrize("method", sorted(KNOWN_METHODS - {"CONNECT"}))
def test_known_methods_are_kept_as_they_are(tel: Tel, method: str) -> None:
    items_app().test_client().open("/items/1", method=method)
    (span,) = tel.spans()
    assert span.attributes["http.request.method"] == method
    assert "http.request.method_original" not in span.attributes
    assert span.name.startswith(f"{method} ")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)
)
def test_any_method_gives_a_bounded_span_name(tel: Tel, method: str) -> None:
    tel.exporter.clear()
    items_app().test_client().open("/items/1", method=method)
    (span,) = tel.spans()
    recorded = span.attributes["http.request.method"]
    assert recorded in KNOWN_METHODS | {"_OTHER"}
    assert span.name.split(" ")[0] in KNOWN_METHODS | {"HTTP"}


# -- inbound trace headers ------------------------------------------------------------------


def trace_hex(span) -> str:
    return f"{span.context.trace_id:032x}"


def one_span(tel: Tel, headers: dict[str, str]):
    tel.exporter.clear()
    make_app().test_client().get("/v1/users/u1/points", headers=headers)
    (span,) = tel.spans()
    return span


VALID_XRAY = [
    f"Root={XRAY_TRACE};Parent={PARENT};Sampled=1",
    f"Root={XRAY_TRACE}",  # an ALB's: continued, without a parent span
    f"Self=1-67891234-abcdef012345678912345678;Root={XRAY_TRACE}",
    f"Root={XRAY_TRACE};Parent={PARENT};Sampled=?;Lineage=a87bd80c:1",
]

MALFORMED_XRAY = [
    f"Root=1-5759E988-BD862E3FE1BE46A994272793;Parent={PARENT}",  # upper-case hex
    f"Root=1-+759e988-bd862e3fe1be46a994272793;Parent={PARENT}",  # int() accepts "+"
    f"Root=1-5759e988-bd86_2e3fe1be46a99427279;Parent={PARENT}",  # int() accepts "_"
    f"Root=1-5759e98 -bd862e3fe1be46a994272793;Parent={PARENT}",  # int() strips spaces
    "Root=1-00000000-000000000000000000000000",
    f"Root=2-5759e988-bd862e3fe1be46a994272793;Parent={PARENT}",
    f"Root={XRAY_TRACE}x;Parent={PARENT}",
    f"Root={XRAY_TRACE};Root=1-5759e988-000000000000000000000001",
    f"Root={XRAY_TRACE};Parent=53995c3f42cd8ad",
    f"Root={XRAY_TRACE};Parent=0000000000000000",
    f"Root={XRAY_TRACE};Sampled=yes",
    f"Root={XRAY_TRACE};Parent={PARENT},Root=1-5759e988-bd862e3fe1be46a994272794",
    f"Parent={PARENT};Sampled=1",
    "Root=\uff11-5759e988-bd862e3fe1be46a994272793",  # a full-width digit
    f"Root={XRAY_TRACE};garbage",
]


@pytest.mark.parametrize("header", VALID_XRAY)
def test_valid_xray_headers_are_continued(tel: Tel, header: str) -> None:
    before = telemetry.counts().get("invalid_trace_header", 0)
    span = one_span(tel, {"X-Amzn-Trace-Id": header})
    assert trace_hex(span) == XRAY_TRACE[2:10] + XRAY_TRACE[11:]
    assert telemetry.counts().get("invalid_trace_header", 0) == before


@pytest.mark.parametrize("header", MALFORMED_XRAY)
def test_malformed_xray_headers_start_a_new_trace_and_are_counted(tel: Tel, header: str) -> None:
    before = telemetry.counts().get("invalid_trace_header", 0)
    errors = telemetry.error_count()
    span = one_span(tel, {"X-Amzn-Trace-Id": header})
    assert span.parent is None
    assert trace_hex(span) not in header.replace("-", "").lower()
    assert telemetry.counts()["invalid_trace_header"] == before + 1
    assert telemetry.error_count() == errors  # the client's doing, not a TelemetryErrors


MALFORMED_TRACEPARENT = [
    f"00-{W3C_TRACE.upper()}-b7ad6b7169203331-01",
    f"00-{W3C_TRACE}-b7ad6b7169203331-01-extra",  # version 00 has exactly four fields
    f"ff-{W3C_TRACE}-b7ad6b7169203331-01",
    f"00-{'0' * 32}-b7ad6b7169203331-01",
    f"00-{W3C_TRACE}-0000000000000000-01",
    f"00-{W3C_TRACE}-b7ad6b716920333-01",
    f"00-{W3C_TRACE}-b7ad6b7169203331-01,00-{W3C_TRACE}-b7ad6b7169203332-01",
]


def test_valid_traceparent_is_continued_with_its_tracestate(tel: Tel) -> None:
    span = one_span(tel, {"traceparent": W3C_PARENT, "tracestate": "congo=t61rcWkgMzE,ro@s=1"})
    assert trace_hex(span) == W3C_TRACE
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"


@pytest.mark.parametrize("header", MALFORMED_TRACEPARENT)
def test_malformed_traceparent_starts_a_new_trace(tel: Tel, header: str) -> None:
    before = telemetry.counts().get("invalid_trace_header", 0)
    span = one_span(tel, {"traceparent": header})
    assert span.parent is None and trace_hex(span) != W3C_TRACE
    assert telemetry.counts()["invalid_trace_header"] == before + 1


@pytest.mark.parametrize(
    "state",
    ["Congo=x", "congo=x,congo=y", "congo=", "a=b=c", ",".join(f"k{i}=v" for i in range(33))],
)
def test_malformed_tracestate_is_dropped_the_parent_kept(tel: Tel, state: str) -> None:
    before = telemetry.counts().get("invalid_trace_header", 0)
    span = one_span(tel, {"traceparent": W3C_PARENT, "tracestate": state})
    assert trace_hex(span) == W3C_TRACE  # traceparent alone is still valid
    assert len(span.context.trace_state) == 0
    assert telemetry.counts()["invalid_trace_header"] == before + 1


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=120))
def test_any_xray_header_is_continued_only_as_exactly_the_id_sent(header: str) -> None:
    trace_id = _tracing.parse_xray_root(header)
    if trace_id:
        sent = f"{trace_id:032x}"
        assert f"Root=1-{sent[:8]}-{sent[8:]}" in header


@given(st.text(alphabet="0123456789abcdefABCDEF-+_ x", max_size=60))
@settings(max_examples=150, deadline=None)
def test_near_miss_roots_are_never_continued_as_another_id(noise: str) -> None:
    header = f"Root={noise}"
    trace_id = _tracing.parse_xray_root(header)
    if trace_id:
        sent = f"{trace_id:032x}"
        assert noise == f"1-{sent[:8]}-{sent[8:]}"


def test_invalid_request_ids_are_replaced_and_counted(tel: Tel) -> None:
    client = make_app().test_client()
    before = telemetry.counts().get("invalid_request_id", 0)
    r = client.get("/v1/users/u1/points", headers={"X-Request-Id": "bad id\u00e9" * 3})
    assert r.headers["X-Request-Id"] != "bad id\u00e9" * 3
    assert telemetry.counts()["invalid_request_id"] == before + 1
    ok = client.get("/v1/users/u1/points", headers={"X-Request-Id": "req-42"})
    assert ok.headers["X-Request-Id"] == "req-42"


# -- the same checks outside Flask (a worker's message attributes) ----------------------------


def _continued(ctx: object) -> str | None:
    if ctx is None:
        return None
    return f"{trace.get_current_span(ctx).get_span_context().trace_id:032x}"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "header", [VALID_XRAY[0], f"Lineage=a87bd80c:1;Root={XRAY_TRACE};Parent={PARENT}"]
)
def test_extract_trace_context_continues_valid_xray_headers(header: str) -> None:
    ctx = telemetry.extract_trace_context({"X-Amzn-Trace-Id": header})
    assert _continued(ctx) == XRAY_TRACE[2:10] + XRAY_TRACE[11:]


@pytest.mark.parametrize("header", VALID_XRAY)
def test_a_job_continues_every_valid_xray_header_as_the_api_does(tel: Tel, header: str) -> None:
    # a header without Parent (a load balancer's) or with Sampled=? has no parent span, but
    # its trace is continued: the job span is a root span in it, as a request's server span is
    request = one_span(tel, {"X-Amzn-Trace-Id": header})
    tel.exporter.clear()
    ctx = telemetry.extract_trace_context({"X-Amzn-Trace-Id": header})
    assert ctx is not None
    token = otel_context.attach(ctx)
    try:
        with job("grant"), telemetry.span("store"):
            pass
    finally:
        otel_context.detach(token)
    spans = {s.name: s for s in tel.spans()}
    trace_id = XRAY_TRACE[2:10] + XRAY_TRACE[11:]
    assert f"{spans['grant'].context.trace_id:032x}" == trace_id
    assert f"{request.context.trace_id:032x}" == trace_id
    has_parent = "Parent=" in header and "Sampled=?" not in header
    assert (spans["grant"].parent is not None) is has_parent
    assert (request.parent is not None) is has_parent
    assert spans["store"].parent.span_id == spans["grant"].context.span_id
    # the next job, without that context, starts a trace of its own
    with job("next"):
        pass
    assert f"{tel.spans()[-1].context.trace_id:032x}" != trace_id


@pytest.mark.parametrize(
    "headers",
    [{"X-Amzn-Trace-Id": h} for h in MALFORMED_XRAY]
    + [{"traceparent": h} for h in MALFORMED_TRACEPARENT]
    + [{"TRACEPARENT": f" {W3C_PARENT}\n"}],
)
def test_extract_trace_context_never_continues_a_malformed_header(headers: dict) -> None:
    before = telemetry.counts().get("invalid_trace_header", 0)
    assert telemetry.extract_trace_context(headers) is None
    assert telemetry.counts()["invalid_trace_header"] == before + 1


def test_extract_trace_context_prefers_xray_and_keeps_a_valid_tracestate_only() -> None:
    both = {"X-Amzn-Trace-Id": f"Root={XRAY_TRACE};Parent={PARENT}", "traceparent": W3C_PARENT}
    assert _continued(telemetry.extract_trace_context(both)) == XRAY_TRACE[2:10] + XRAY_TRACE[11:]
    bad_xray = {**both, "X-Amzn-Trace-Id": f"Root={XRAY_TRACE};Root={XRAY_TRACE}"}
    assert _continued(telemetry.extract_trace_context(bad_xray)) == W3C_TRACE
    ctx = telemetry.extract_trace_context({"traceparent": W3C_PARENT, "tracestate": "Congo=x"})
    assert len(trace.get_current_span(ctx).get_span_context().trace_state) == 0  # type: ignore[arg-type]
    ctx = telemetry.extract_trace_context({"traceparent": W3C_PARENT, "tracestate": "congo=x"})
    assert dict(trace.get_current_span(ctx).get_span_context().trace_state) == {"congo": "x"}  # type: ignore[arg-type]


@pytest.mark.parametrize("headers", [{}, {"other": "x"}, {"traceparent": 5}, {None: None}])
def test_extract_trace_context_without_headers_is_none(headers: dict) -> None:
    assert telemetry.extract_trace_context(headers) is None
