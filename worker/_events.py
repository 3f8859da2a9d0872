"""The "order completed" event: strict parsing, building, and the trace context it carries.

Wire format (the SQS message body, UTF-8 JSON)::

    {"type": "order.completed", "version": 1,
     "data": {"user_id": "u-1", "order_id": "o-1", "amount_jpy": 1200}}

The envelope names the event and its schema version so that a producer can evolve the payload
without the worker guessing; ``data`` is exactly the API's grant body and goes through the same
:func:`points.domain.validate_grant`. Anything else (not JSON, duplicate keys, unknown or
missing fields, another type or version) is a :class:`PoisonMessage`: it can never succeed.

Trace context travels outside the body: the ``AWSTraceHeader`` system attribute (set by SQS for
X-Ray-instrumented producers) wins; otherwise a W3C ``traceparent`` (and ``tracestate``) string
message attribute.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from points.domain import GrantRequest, ValidationError, validate_grant

EVENT_TYPE = "order.completed"
EVENT_VERSION = 1
_ENVELOPE_FIELDS = ("type", "version", "data")
_XRAY = AwsXRayPropagator()
_W3C = TraceContextTextMapPropagator()


class PoisonMessage(ValueError):
    """A message that can never be processed; ``reason`` says why, in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise PoisonMessage(f"duplicate key {dup!r}")
    return dict(pairs)


def _no_constants(name: str) -> Any:
    raise PoisonMessage(f"{name} is not valid JSON")


def parse_event(body: str) -> GrantRequest:
    """Validate one message body; return the grant it asks for or raise :class:`PoisonMessage`."""
    try:
        doc = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise PoisonMessage(f"malformed JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise PoisonMessage("malformed JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise PoisonMessage(f"the event must be a JSON object, got {type(doc).__name__}")
    unknown = sorted(set(doc) - set(_ENVELOPE_FIELDS))
    if unknown:
        raise PoisonMessage(f"unknown envelope field {unknown[0]!r}")
    for name in _ENVELOPE_FIELDS:
        if name not in doc:
            raise PoisonMessage(f"envelope field {name!r} is required")
    if doc["type"] != EVENT_TYPE:
        raise PoisonMessage(f"type must be {EVENT_TYPE!r}, got {doc['type']!r:.80}")
    version = doc["version"]
    if isinstance(version, bool) or version != EVENT_VERSION:
        raise PoisonMessage(f"version must be {EVENT_VERSION}, got {version!r:.40}")
    try:
        return validate_grant(doc["data"])
    except ValidationError as exc:
        raise PoisonMessage(f"data: {exc.detail}") from None


def make_event(user_id: str, order_id: str, amount_jpy: int) -> str:
    """The message body for one completed order (the inverse of :func:`parse_event`)."""
    data = {"user_id": user_id, "order_id": order_id, "amount_jpy": amount_jpy}
    return json.dumps(
        {"type": EVENT_TYPE, "version": EVENT_VERSION, "data": data}, separators=(",", ":")
    )


def trace_context(message: Mapping[str, Any]) -> Context | None:
    """The producer's trace context from a received SQS message, or None if it carries none."""
    header = (message.get("Attributes") or {}).get("AWSTraceHeader")
    if header:
        ctx = _XRAY.extract({"X-Amzn-Trace-Id": header})
        if _has_span(ctx):
            return ctx
    attrs = message.get("MessageAttributes") or {}
    carrier = {
        key: attrs[key]["StringValue"]
        for key in ("traceparent", "tracestate")
        if isinstance(attrs.get(key), Mapping) and isinstance(attrs[key].get("StringValue"), str)
    }
    if "traceparent" in carrier:
        ctx = _W3C.extract(carrier)
        if _has_span(ctx):
            return ctx
    return None


def _has_span(ctx: Context) -> bool:
    return trace.get_current_span(ctx).get_span_context().is_valid
