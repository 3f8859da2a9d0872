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
import sys
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context

import telemetry
from points.domain import GrantRequest, ValidationError, validate_grant

EVENT_TYPE = "order.completed"
EVENT_VERSION = 1
_ENVELOPE_FIELDS = ("type", "version", "data")


#: Longest reason kept: a reason may quote a field name or value taken from the body.
MAX_REASON = 300


class PoisonMessage(ValueError):
    """A message that can never be processed; ``reason`` says why, in one line (at most
    :data:`MAX_REASON` characters, control characters escaped)."""

    def __init__(self, reason: str) -> None:
        reason = " ".join(reason.split())
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 1] + "\u2026"
        super().__init__(reason)
        self.reason = reason


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()  # linear: a body may hold many thousands of keys
        for key, _ in pairs:
            if key in seen:
                raise PoisonMessage(f"duplicate key {key!r:.80}")
            seen.add(key)
    return doc


def _no_constants(name: str) -> Any:
    raise PoisonMessage(f"{name} is not valid JSON")


def parse_event(body: str | bytes) -> GrantRequest:
    """Validate one message body; return the grant it asks for or raise :class:`PoisonMessage`.

    Total over untrusted input: whatever the body holds (not UTF-8, not JSON, nested too deeply,
    numbers beyond Python's int-conversion limit, wrong types anywhere), the only exception is
    :class:`PoisonMessage`, since parsing the same body again would fail the same way.
    """
    try:
        return _parse(body)
    except PoisonMessage:
        raise
    except RecursionError:
        raise PoisonMessage("malformed JSON: nested too deeply") from None
    except MemoryError:
        raise PoisonMessage("body too large to parse") from None
    except Exception as exc:  # e.g. ValueError: int of more than 4,300 digits
        raise PoisonMessage(f"unparseable body: {type(exc).__name__}: {_text(exc)}") from None


def _parse(body: str | bytes) -> GrantRequest:
    if isinstance(body, bytes | bytearray):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PoisonMessage(f"body is not UTF-8 (byte {exc.start})") from None
    if not isinstance(body, str):
        raise PoisonMessage(f"body must be text, got {type(body).__name__}")
    try:
        doc = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except PoisonMessage:
        raise
    except json.JSONDecodeError as exc:
        raise PoisonMessage(f"malformed JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise PoisonMessage("malformed JSON: nested too deeply") from None
    except ValueError as exc:
        # json.loads raises a plain ValueError for an integer beyond sys.get_int_max_str_digits()
        if "integer string conversion" in _text(exc):
            raise PoisonMessage(
                f"malformed JSON: a number has more than {sys.get_int_max_str_digits()} digits"
            ) from None
        raise PoisonMessage(f"malformed JSON: {_text(exc)}") from None
    if not isinstance(doc, dict):
        raise PoisonMessage(f"the event must be a JSON object, got {type(doc).__name__}")
    unknown = sorted(set(doc) - set(_ENVELOPE_FIELDS))
    if unknown:
        raise PoisonMessage(f"unknown envelope field {unknown[0]!r:.80}")
    for name in _ENVELOPE_FIELDS:
        if name not in doc:
            raise PoisonMessage(f"envelope field {name!r} is required")
    if not isinstance(doc["type"], str) or doc["type"] != EVENT_TYPE:
        raise PoisonMessage(f"type must be {EVENT_TYPE!r}, got {_brief(doc['type'])}")
    version = doc["version"]
    # exactly the integer 1: not true, not 1.0
    if type(version) is not int or version != EVENT_VERSION:
        raise PoisonMessage(f"version must be {EVENT_VERSION}, got {_brief(version)}")
    try:
        return validate_grant(doc["data"])
    except ValidationError as exc:
        raise PoisonMessage(f"data: {exc.detail}") from None


def _brief(value: Any) -> str:
    """A short description of an untrusted value (never a deep or huge repr)."""
    if isinstance(value, str | bool | float) or value is None:
        return f"{value!r:.80}"
    if isinstance(value, int):
        return f"{value!r:.40}" if value.bit_length() < 128 else "a very large integer"
    return f"a JSON {type(value).__name__}"


def _text(exc: BaseException) -> str:
    try:
        return str(exc)[:200]
    except Exception:
        return type(exc).__name__


def make_event(user_id: str, order_id: str, amount_jpy: int) -> str:
    """The message body for one completed order (the inverse of :func:`parse_event`)."""
    data = {"user_id": user_id, "order_id": order_id, "amount_jpy": amount_jpy}
    return json.dumps(
        {"type": EVENT_TYPE, "version": EVENT_VERSION, "data": data}, separators=(",", ":")
    )


def trace_context(message: Mapping[str, Any]) -> Context | None:
    """The producer's trace context from a received SQS message, or None if it carries none.

    Never raises: odd or malformed attributes mean no context (the job starts a new trace).
    """
    try:
        return _trace_context(message)
    except Exception:
        return None


def _trace_context(message: Mapping[str, Any]) -> Context | None:
    # each header is checked exactly before it is continued, as the API checks a request's
    # (telemetry.extract_trace_context): a malformed one starts a new trace and is noted
    # one carrier, as the API's request headers: a valid X-Ray parent wins, then a valid
    # traceparent, then an X-Ray Root without a parent span (no Parent, or Sampled=?)
    carrier: dict[str, str] = {}
    attributes = message.get("Attributes")
    header = attributes.get("AWSTraceHeader") if isinstance(attributes, Mapping) else None
    if isinstance(header, str) and header:
        carrier["X-Amzn-Trace-Id"] = header
    attrs = message.get("MessageAttributes")
    if isinstance(attrs, Mapping):
        w3c = {
            key: attrs[key]["StringValue"]
            for key in ("traceparent", "tracestate")
            if isinstance(attrs.get(key), Mapping)
            and isinstance(attrs[key].get("StringValue"), str)
        }
        if "traceparent" in w3c:  # a tracestate alone has nothing to travel with
            carrier.update(w3c)
    return telemetry.extract_trace_context(carrier) if carrier else None
