"""Read the versions' spans back from ``traces.jsonl`` (OTLP JSON lines).

The versions write their spans with OpenTelemetry's OTLP JSON file exporter
(``TELEMETRY_TRACES_FILE``): one ``ExportTraceServiceRequest`` per line, encoded as the OTLP
specification's JSON mapping (lowerCamelCase field names, trace and span ids as hex strings,
64-bit integers as decimal strings, enums as integers). This module only decodes that; a line
that does not parse is counted, never fatal (a version killed mid-write leaves half a line).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: OTLP ``Span.SpanKind`` / ``Status.StatusCode`` numbers
KIND_NAMES = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}
STATUS_ERROR = 2


@dataclass(frozen=True, slots=True)
class Span:
    """One span as the file holds it; times in Unix nanoseconds."""

    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits
    parent_span_id: str  # "" for a root span
    name: str
    kind: str
    start_ns: int
    end_ns: int
    service: str
    version: str
    failed: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def xray_trace_id(self) -> str:
        """The trace id as the JSON logs print it: ``1-<8 hex>-<24 hex>``."""
        return f"1-{self.trace_id[:8]}-{self.trace_id[8:]}"


@dataclass(slots=True)
class TraceFile:
    """Every span of a file, by trace, and what could not be read."""

    spans: list[Span] = field(default_factory=list)
    unreadable_lines: int = 0
    missing: bool = False  # no such file
    error: str = ""  # why the file could not be read (a directory, no permission, ...)

    def by_trace(self) -> dict[str, list[Span]]:
        out: dict[str, list[Span]] = {}
        for span in self.spans:
            out.setdefault(span.trace_id, []).append(span)
        return out


def _value(v: dict[str, Any]) -> Any:
    """An OTLP ``AnyValue`` (JSON mapping) as a Python value."""
    if "stringValue" in v:
        return v["stringValue"]
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return _attributes(v["kvlistValue"].get("values", []))
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def _attributes(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for kv in items:
        if not isinstance(kv["key"], str):
            raise TypeError(f"attribute key {kv['key']!r}")
        out[kv["key"]] = _value(kv.get("value", {}))
    return out


_HEX = frozenset("0123456789abcdef")
_MAX_NANOS = 2**64  # fixed64 in the protocol


def _hex_id(value: Any, digits: int, what: str) -> str:
    """A trace or span id as the JSON mapping writes it: ``digits`` hex digits (lower-cased)."""
    text = value.lower() if isinstance(value, str) else ""
    if len(text) != digits or not _HEX.issuperset(text):
        raise ValueError(f"{what} {value!r} is not {digits} hex digits")
    return text


def _nanos(value: Any, what: str) -> int:
    """A fixed64 time: a decimal string (or, leniently, a JSON integer) of Unix nanoseconds."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{what} {value!r} is not Unix nanoseconds")
    n = int(value)
    if not 0 <= n < _MAX_NANOS:
        raise ValueError(f"{what} {value!r} is out of range")
    return n


def parse_line(line: str) -> list[Span]:
    """The spans of one ``ExportTraceServiceRequest`` line; ``ValueError`` if it is not one."""
    try:
        doc = json.loads(line)
        out: list[Span] = []
        for resource_spans in doc["resourceSpans"]:
            resource = _attributes(resource_spans.get("resource", {}).get("attributes", []))
            for scope_spans in resource_spans.get("scopeSpans", []):
                for s in scope_spans.get("spans", []):
                    parent = s.get("parentSpanId") or ""
                    if not isinstance(s["name"], str):
                        raise ValueError(f"span name {s['name']!r}")
                    out.append(
                        Span(
                            trace_id=_hex_id(s["traceId"], 32, "traceId"),
                            span_id=_hex_id(s["spanId"], 16, "spanId"),
                            parent_span_id=parent and _hex_id(parent, 16, "parentSpanId"),
                            name=s["name"],
                            kind=KIND_NAMES.get(int(s.get("kind", 0)), "UNSPECIFIED"),
                            start_ns=_nanos(s["startTimeUnixNano"], "startTimeUnixNano"),
                            end_ns=_nanos(s["endTimeUnixNano"], "endTimeUnixNano"),
                            service=str(resource.get("service.name", "")),
                            version=str(resource.get("service.version", "")),
                            failed=int(s.get("status", {}).get("code", 0)) == STATUS_ERROR,
                            attributes=_attributes(s.get("attributes", [])),
                        )
                    )
        return out
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError, OverflowError) as exc:
        # RecursionError: arrays nested thousands deep (in the line or an attribute's value);
        # OverflowError: int() of JSON's 1e400 (an infinite float) as a kind, code or intValue
        raise ValueError(f"not an OTLP JSON trace request: {exc!r}") from None


def read(path: Path) -> TraceFile:
    """Every span in ``path``; an absent or unreadable file gives none and says why
    (``missing``, ``error``), a line that is not a trace request is counted."""
    result = TraceFile()
    if not path.exists():
        result.missing = True
        return result
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    result.spans.extend(parse_line(line))
                except ValueError:
                    result.unreadable_lines += 1
    except OSError as exc:  # a directory, no permission, an I/O error: the spans read so far
        result.error = exc.strerror or repr(exc)
    return result


def children(spans: Iterable[Span], parent: Span) -> Iterator[Span]:
    """The direct children of ``parent`` among ``spans``."""
    return (s for s in spans if s.parent_span_id == parent.span_id)
