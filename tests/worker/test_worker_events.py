"""The event schema: strict parsing, the builder's round trip, and trace context extraction."""

from __future__ import annotations

import json

import pytest
from opentelemetry import trace

import telemetry
from points.domain import GrantRequest
from worker import EVENT_TYPE, PoisonMessage, make_event, parse_event
from worker._events import trace_context
from worker._sample import POISON_BODIES, new_trace, sample_orders


def envelope(**overrides: object) -> str:
    doc: dict[str, object] = {
        "type": EVENT_TYPE,
        "version": 1,
        "data": {"user_id": "u-1", "order_id": "o-1", "amount_jpy": 1200},
    }
    doc.update(overrides)
    return json.dumps(doc)


def test_valid_event_parses_to_a_grant() -> None:
    assert parse_event(envelope()) == GrantRequest("u-1", "o-1", 1200)


def test_make_event_round_trips() -> None:
    for order in sample_orders(50, seed=3):
        body = make_event(order.user_id, order.order_id, order.amount_jpy)
        assert parse_event(body) == GrantRequest(order.user_id, order.order_id, order.amount_jpy)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "malformed JSON"),
        ("", "malformed JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('"text"', "must be a JSON object, got str"),
        (envelope(type="order.cancelled"), "type must be 'order.completed'"),
        (envelope(version=2), "version must be 1"),
        (envelope(version=True), "version must be 1"),
        (envelope(version="1"), "version must be 1"),
        (envelope(extra=1), "unknown envelope field 'extra'"),
        (json.dumps({"type": EVENT_TYPE, "version": 1}), "'data' is required"),
        (json.dumps({"user_id": "u", "order_id": "o", "amount_jpy": 1}), "unknown envelope field"),
        (envelope(data={"user_id": "u-1", "order_id": "o-1"}), "data: amount_jpy is required"),
        (
            envelope(data={"user_id": "u 1", "order_id": "o-1", "amount_jpy": 5}),
            "data: user_id must be",
        ),
        (
            envelope(data={"user_id": "u", "order_id": "o", "amount_jpy": 0}),
            "data: amount_jpy must be between",
        ),
        (
            envelope(data={"user_id": "u", "order_id": "o", "amount_jpy": 1.5}),
            "data: amount_jpy must be an integer",
        ),
        (
            envelope(data={"user_id": "u", "order_id": "o", "amount_jpy": 5, "x": 1}),
            "data: unknown field 'x'",
        ),
        (envelope(data=[1]), "data: the body must be a JSON object"),
        ('{"type": "order.completed", "type": "x", "version": 1, "data": {}}', "duplicate key"),
        (envelope().replace("1200", "NaN"), "NaN is not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "malformed JSON"),
    ],
)
def test_poison_bodies_are_rejected_with_a_reason(body: str, reason: str) -> None:
    with pytest.raises(PoisonMessage) as info:
        parse_event(body)
    assert reason in info.value.reason
    assert "\n" not in info.value.reason


def test_the_sample_poison_bodies_are_poison() -> None:
    for body in POISON_BODIES:
        with pytest.raises(PoisonMessage):
            parse_event(body)


def _span_ids(ctx: object) -> tuple[str, str]:
    sc = trace.get_current_span(ctx).get_span_context()  # type: ignore[arg-type]
    return f"{sc.trace_id:032x}", f"{sc.span_id:016x}"


def test_trace_context_from_the_xray_system_attribute_wins() -> None:
    xray, traceparent = new_trace()
    _, other = new_trace()
    ctx = trace_context(
        {
            "Attributes": {"AWSTraceHeader": xray},
            "MessageAttributes": {"traceparent": {"DataType": "String", "StringValue": other}},
        }
    )
    assert ctx is not None
    assert _span_ids(ctx) == (traceparent[3:35], traceparent[36:52])


def test_trace_context_from_traceparent() -> None:
    _, traceparent = new_trace()
    ctx = trace_context(
        {"MessageAttributes": {"traceparent": {"DataType": "String", "StringValue": traceparent}}}
    )
    assert ctx is not None
    assert _span_ids(ctx) == (traceparent[3:35], traceparent[36:52])


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"Attributes": {"AWSTraceHeader": "garbage"}},
        {"MessageAttributes": {"traceparent": {"DataType": "String", "StringValue": "00-zz"}}},
        {"MessageAttributes": {"traceparent": {"DataType": "Binary", "BinaryValue": b"x"}}},
    ],
)
def test_no_or_bad_trace_context_is_none(message: dict) -> None:
    assert trace_context(message) is None


# Headers the lenient OpenTelemetry propagators would continue (as an id the producer may not
# have sent), checked exactly as the API checks a request's (docs/telemetry.md, "Traces").
_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    "message",
    [
        {
            "Attributes": {
                "AWSTraceHeader": f"Root={_ROOT};Parent=53995c3f42cd8ad8;Root=1-00000000-000000000000000000000001"
            }
        },
        {
            "Attributes": {
                "AWSTraceHeader": f"Root={_ROOT.upper()};Parent=53995C3F42CD8AD8;Sampled=1"
            }
        },
        {
            "Attributes": {
                "AWSTraceHeader": f"Root={_ROOT};Parent=53995c3f42cd8ad8;Parent=1111111111111111"
            }
        },
        {"Attributes": {"AWSTraceHeader": f" Root = {_ROOT} ; Parent = 53995c3f42cd8ad8"}},
        {"Attributes": {"AWSTraceHeader": f"Root={_ROOT};Parent=53995c3f42cd8ad8;Self=bogus"}},
        {
            "MessageAttributes": {
                "traceparent": {"StringValue": f"00-{_TRACE}-b7ad6b7169203331-01\n"}
            }
        },
    ],
)
def test_malformed_trace_headers_are_not_continued_and_are_noted(message: dict) -> None:
    before = telemetry.counts().get("invalid_trace_header", 0)
    assert trace_context(message) is None
    assert telemetry.counts()["invalid_trace_header"] == before + 1


def test_a_malformed_xray_header_falls_back_to_a_valid_traceparent() -> None:
    _, traceparent = new_trace()
    message = {
        "Attributes": {"AWSTraceHeader": f"Root={_ROOT};Root={_ROOT};Parent=53995c3f42cd8ad8"},
        "MessageAttributes": {"traceparent": {"DataType": "String", "StringValue": traceparent}},
    }
    assert _span_ids(trace_context(message)) == (traceparent[3:35], traceparent[36:52])


@pytest.mark.parametrize(
    "xray", [f"Root={_ROOT}", f"Root={_ROOT};Parent=53995c3f42cd8ad8;Sampled=?"]
)
def test_an_xray_root_without_a_parent_gives_way_to_a_valid_traceparent(xray: str) -> None:
    # as the API continues such a request and extract_trace_context such headers: a
    # traceparent has a parent span to continue, an X-Ray Root without one has not
    _, traceparent = new_trace()
    message = {
        "Attributes": {"AWSTraceHeader": xray},
        "MessageAttributes": {"traceparent": {"DataType": "String", "StringValue": traceparent}},
    }
    assert _span_ids(trace_context(message)) == (traceparent[3:35], traceparent[36:52])
    both = {"X-Amzn-Trace-Id": xray, "traceparent": traceparent}
    assert _span_ids(telemetry.extract_trace_context(both)) == _span_ids(trace_context(message))
