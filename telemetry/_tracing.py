"""OpenTelemetry SDK set-up: X-Ray ids, X-Ray + W3C propagation, parent-based sampling, OTLP/HTTP.

Configured from the standard variables (``OTEL_TRACES_SAMPLER``/``_ARG`` are read by the SDK
itself, ``OTEL_EXPORTER_OTLP_*`` by the exporter). The provider and its ``BatchSpanProcessor`` are
created by ``configure()``; under gunicorn call it again in ``post_fork`` so every worker has its
own export thread.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from importlib.metadata import entry_points

from opentelemetry import trace
from opentelemetry.propagate import set_global_textmap
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from telemetry import _errors

DEFAULT_PROPAGATORS = "xray,tracecontext"

#: A trace id to use for the next root span: an ALB's ``X-Amzn-Trace-Id: Root=...`` without
#: ``Parent`` is not a parent span, but its trace must still be continued.
forced_trace_id: ContextVar[int] = ContextVar("telemetry_forced_trace_id", default=0)


class ContinuingIdGenerator(AwsXRayIdGenerator):
    """X-Ray trace ids (epoch seconds in the first 32 bits), or the forced one."""

    def generate_trace_id(self) -> int:
        forced = forced_trace_id.get()
        return forced or super().generate_trace_id()


def parse_xray_root(header: str) -> int:
    """The trace id of ``Root=1-xxxxxxxx-<24 hex>`` in an X-Ray header, or 0."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root":
            pieces = value.split("-")
            if (
                len(pieces) == 3
                and pieces[0] == "1"
                and len(pieces[1]) == 8
                and len(pieces[2]) == 24
            ):
                try:
                    return int(pieces[1] + pieces[2], 16)
                except ValueError:
                    return 0
    return 0


def build_propagator(names: str) -> TextMapPropagator:
    """``OTEL_PROPAGATORS`` (comma-separated); unknown names are counted and skipped."""
    known: dict[str, type[TextMapPropagator]] = {
        "xray": AwsXRayPropagator,
        "tracecontext": TraceContextTextMapPropagator,
    }
    out: list[TextMapPropagator] = []
    for name in (n.strip().lower() for n in names.split(",")):
        if not name or name == "none":
            continue
        if name in known:
            out.append(known[name]())
            continue
        try:
            (ep,) = entry_points(group="opentelemetry_propagator", name=name)
            out.append(ep.load()())
        except Exception as exc:
            _errors.record("config", f"OTEL_PROPAGATORS: {name!r} unavailable ({exc!r})")
    return CompositePropagator(out)


class _CountingExporter(SpanExporter):
    """Counts failed exports (unreachable collector) as ``TelemetryErrors``."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            _errors.record("span_export", repr(exc))
            return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            _errors.record("span_export", f"{len(spans)} span(s) not exported")
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def build_provider(
    service: str,
    version: str,
    env: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
) -> TracerProvider | None:
    """A TracerProvider, or None when ``OTEL_SDK_DISABLED=true``."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    resource = Resource.create({"service.name": service, "service.version": version})
    # shutdown_on_exit=False: telemetry.shutdown() (atexit) flushes it, once, in its own process
    provider = TracerProvider(
        resource=resource, id_generator=ContinuingIdGenerator(), shutdown_on_exit=False
    )
    if exporter is None:
        kind = env.get("OTEL_TRACES_EXPORTER", "").lower()
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        if kind == "console":
            exporter = ConsoleSpanExporter(out=sys.stderr)  # stdout carries EMF and logs
        elif kind != "none" and (endpoint or kind == "otlp"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(_CountingExporter(exporter)))
    return provider


class _ProxyTracer(trace.Tracer):
    """Tracer handed out by the global provider: always uses the current configured provider."""

    def __init__(self, owner: GlobalProvider, args: tuple, kwargs: dict) -> None:
        self._owner, self._args, self._kwargs = owner, args, kwargs
        self._cache: tuple[object, trace.Tracer] | None = None

    def _real(self) -> trace.Tracer:
        provider = self._owner.current
        if provider is None:
            return trace.NoOpTracer()
        if self._cache is None or self._cache[0] is not provider:
            self._cache = (provider, provider.get_tracer(*self._args, **self._kwargs))
        return self._cache[1]

    def start_span(self, *args, **kwargs):  # type: ignore[override]
        return self._real().start_span(*args, **kwargs)

    def start_as_current_span(self, *args, **kwargs):  # type: ignore[override]
        return self._real().start_as_current_span(*args, **kwargs)


class GlobalProvider(trace.TracerProvider):
    """Installed once as OpenTelemetry's global provider so ``trace.get_tracer()`` in application
    code follows every re-``configure()`` (the API allows setting the global only once)."""

    def __init__(self) -> None:
        self.current: TracerProvider | None = None

    def get_tracer(self, *args, **kwargs) -> trace.Tracer:  # type: ignore[override]
        return _ProxyTracer(self, args, kwargs)


_global: GlobalProvider | None = None


def install_global(provider: TracerProvider | None, propagator: TextMapPropagator) -> None:
    global _global
    set_global_textmap(propagator)
    if _global is None:
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            _global = GlobalProvider()
            trace.set_tracer_provider(_global)
        else:
            return  # the application installed its own provider; leave it alone
    _global.current = provider


class ServerSpans:
    """Lean server spans on the SDK's own parts.

    ``tracer.start_span()`` costs ~17 us per span on this machine (locks, bounded attribute and
    event containers, span limits) before any attribute is set; a request only needs its ids, a
    sampling decision, a start time and, at the end, one immutable ``ReadableSpan``. So this
    takes the provider's id generator, sampler, resource and span processors, keeps a
    ``NonRecordingSpan`` carrying the request's ``SpanContext`` as the current span (propagation,
    log correlation and child spans all see the right ids) and hands a finished ``ReadableSpan``
    to the processors (``BatchSpanProcessor`` -> OTLP) at the end: about a third of the cost.
    """

    def __init__(self, provider: TracerProvider, scope_name: str = "telemetry.flask") -> None:
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self.sampler = provider.sampler
        self.id_generator = provider.id_generator
        self.resource = provider.resource
        self.processor = getattr(provider, "_active_span_processor", None)
        self.scope = InstrumentationScope(scope_name)
        # The SDK's default sampler decides every root span alike: skip asking it then.
        self._always_root = self.sampler.get_description().startswith(
            "ParentBased{root:AlwaysOnSampler"
        )

    def start(
        self, parent: object | None, name: str, kind: trace.SpanKind
    ) -> tuple[trace.SpanContext, trace.SpanContext | None, bool]:
        """(this span's context, the parent's context or None, whether to record it)."""
        parent_sc = None
        if parent is not None:
            sc = trace.get_current_span(parent).get_span_context()  # type: ignore[arg-type]
            if sc.is_valid:
                parent_sc = sc
        trace_id = (
            parent_sc.trace_id if parent_sc is not None else self.id_generator.generate_trace_id()
        )
        if parent_sc is None and self._always_root:
            sampled = recording = True
            trace_state = None
        else:
            result = self.sampler.should_sample(parent, trace_id, name, kind)  # type: ignore[arg-type]
            sampled = result.decision.is_sampled()
            recording = result.decision.is_recording()
            trace_state = result.trace_state
        span_context = trace.SpanContext(
            trace_id,
            self.id_generator.generate_span_id(),
            False,
            _SAMPLED if sampled else _NOT_SAMPLED,
            trace_state,
        )
        # no processor (nothing configured to export): skip building the span
        record = recording and bool(getattr(self.processor, "_span_processors", self.processor))
        return span_context, parent_sc, record

    def end(
        self,
        name: str,
        span_context: trace.SpanContext,
        parent: trace.SpanContext | None,
        kind: trace.SpanKind,
        start_ns: int,
        attributes: dict,
        error: BaseException | None = None,
        failed: bool = False,
    ) -> None:
        from opentelemetry.sdk.trace import Event, ReadableSpan

        events: tuple = ()
        if error is not None:
            import traceback

            events = (
                Event(
                    "exception",
                    {
                        "exception.type": type(error).__qualname__,
                        "exception.message": str(error),
                        "exception.stacktrace": "".join(traceback.format_exception(error)),
                    },
                ),
            )
        span = ReadableSpan(
            name=name,
            context=span_context,
            parent=parent,
            resource=self.resource,
            attributes=attributes,
            events=events,
            kind=kind,
            status=_STATUS_ERROR if failed else _STATUS_UNSET,
            start_time=start_ns,
            end_time=time.time_ns(),
            instrumentation_scope=self.scope,
        )
        self.processor.on_end(span)  # type: ignore[union-attr]


_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_STATUS_ERROR = trace.Status(trace.StatusCode.ERROR)
_STATUS_UNSET = trace.Status(trace.StatusCode.UNSET)
