"""Where a request's time went: child spans and request annotations.

``with telemetry.span("rate_limiter"):`` times a part of a request or job as a child span of the
current span (the request's server span, the job's CONSUMER span, or another ``span``); it is the
current span while the block runs, so OpenTelemetry instrumentations (botocore, ...) and log
lines inside it are its children. Spans are made like the server spans
(:class:`telemetry._tracing.ServerSpans`): the SDK's id generator, sampler, resource and span
processors, one immutable ``ReadableSpan`` at the end, about a third of the cost of
``Tracer.start_span`` (docs/telemetry.md, "Benchmarks"). When the trace is not sampled, or no
exporter is configured, a span costs a context switch and nothing is built.

``telemetry.annotate(rate_limit_wait_ms=12.5)`` adds fields to the current request's server span
(as attributes) and to its access line (as fields), or to the current job's span and log lines.

Neither ever raises into the application: failures are counted (``TelemetryErrors``).
"""

from __future__ import annotations

import time
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace

from telemetry import _context, _errors, _runtime

__all__ = ["MAX_ANNOTATIONS", "Span", "annotate", "span"]

#: Annotations kept per request or job; further ones are dropped and counted (``annotation``).
MAX_ANNOTATIONS = 32
_KINDS = frozenset(trace.SpanKind)
_AttributeValue = str | bool | int | float


def _attribute(value: object) -> _AttributeValue:
    """An OpenTelemetry attribute value: str, bool, int (64-bit) or float; anything else (and
    an int beyond 64 bits) as its ``str()``."""
    t = type(value)
    if t is str or t is bool or t is float:
        return value  # type: ignore[return-value]
    if t is int and -(2**63) <= value < 2**63:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    return text(value)


def text(value: object) -> str:
    """``str(value)``, or ``<unprintable T>`` when that raises or is not a string."""
    try:
        out = str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
    return out if isinstance(out, str) else f"<unprintable {type(value).__name__}>"


class Span:
    """A child span; use as a context manager (``with telemetry.span("name") as s:``).

    ``set_attribute``/``set_attributes`` add attributes until the block ends; ``set_error()``
    marks it failed without an exception. An exception leaving the block propagates unchanged
    and is recorded on the span (status ERROR, an ``exception`` event).
    """

    __slots__ = ("_failed", "_state", "attributes", "kind", "name")

    def __init__(
        self,
        name: str,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: dict[str, object] | None = None,
    ) -> None:
        self.name = name if type(name) is str else text(name)  # never raises into the app
        self.kind = kind if kind in _KINDS else trace.SpanKind.INTERNAL
        self.attributes: dict[str, _AttributeValue] = {}
        if attributes:
            self.set_attributes(attributes)
        self._failed = False
        self._state: tuple | None = None

    def set_attribute(self, key: str, value: object) -> None:
        try:
            self.attributes[str(key)] = _attribute(value)
        except Exception as exc:
            _errors.record("tracing", repr(exc))

    def set_attributes(self, attributes: dict[str, object]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_error(self) -> None:
        """Mark the span failed (status ERROR) without an exception."""
        self._failed = True

    @property
    def span_context(self) -> trace.SpanContext | None:
        """This span's context while the block runs (``None`` outside it or when off)."""
        return self._state[1] if self._state is not None else None

    def __enter__(self) -> Span:
        try:
            spans = _runtime.state.server_spans
            if spans is None:
                return self
            parent = otel_context.get_current()
            sc, parent_sc, record = spans.start(parent, self.name, self.kind)
            token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(sc)))
            self._state = (spans, sc, parent_sc, record, time.time_ns(), token)
        except Exception as exc:
            _errors.record("tracing", repr(exc))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        state, self._state = self._state, None
        if state is None:
            return
        spans, sc, parent_sc, record, start_ns, token = state
        try:
            otel_context.detach(token)
        except Exception as e:  # ended in another context than it began in
            _errors.record("tracing", repr(e))
        if not record:
            return
        try:
            error = exc if isinstance(exc, Exception) else None
            spans.end(
                self.name,
                sc,
                parent_sc,
                self.kind,
                start_ns,
                dict(self.attributes),  # the span may be built later, in the export thread
                error,
                self._failed or exc is not None,
                scope=spans.child_scope,
            )
        except Exception as e:
            _errors.record("tracing", repr(e))


def span(
    name: str,
    /,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    **attributes: object,
) -> Span:
    """A child span of the current span, e.g. ``with telemetry.span("db.grant", user_id=u):``.

    Outside any trace it starts one (like ``Tracer.start_span``). ``attributes`` become span
    attributes (str, bool, int, float; other values as their ``str()``).
    """
    return Span(name, kind, attributes)


def annotate(**fields: object) -> None:
    """Add ``fields`` to the current request's server span (attributes) and access line, or to
    the current job's span and log lines. Values as for :func:`span`; at most
    :data:`MAX_ANNOTATIONS` per request (further ones are counted, kind ``annotation``); outside
    a request or job nothing happens."""
    try:
        scope = _context.current_scope()
        if scope is None:
            return
        attrs = scope.attributes
        if attrs is None:
            attrs = scope.attributes = {}
        for key, value in fields.items():
            key = str(key)
            if key not in attrs and len(attrs) >= MAX_ANNOTATIONS:
                _errors.record("annotation", f"more than {MAX_ANNOTATIONS}; {key!r} dropped")
                continue
            attrs[key] = v = _attribute(value)
            if scope.fields is not None:  # a job: on its log lines from now on too
                scope.fields[key] = v
    except Exception as exc:
        _errors.record("internal", repr(exc))
