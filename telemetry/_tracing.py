"""OpenTelemetry SDK set-up: X-Ray ids, X-Ray + W3C propagation, parent-based sampling, OTLP/HTTP.

Configured from the standard variables (``OTEL_TRACES_SAMPLER``/``_ARG`` are read by the SDK
itself, ``OTEL_EXPORTER_OTLP_*`` by the exporter). The provider and its ``BatchSpanProcessor`` are
created by ``configure()``; under gunicorn call it again in ``post_fork`` so every worker has its
own export thread.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import math
import os
import random
import re
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from importlib.metadata import entry_points
from random import getrandbits
from types import ModuleType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from telemetry import _config, _errors
from telemetry import environment_variables as ev


def _import_propagate() -> ModuleType:
    """``opentelemetry.propagate``, even when ``OTEL_PROPAGATORS`` names a propagator that is
    not installed: the module reads the variable when imported and raises ``ValueError`` then,
    which would make ``import telemetry`` (and the application) fail. It is imported again with
    the variable set to ``none`` (then restored); ``configure`` reports the name (``config``,
    from :func:`build_propagator`) and installs the propagators that exist."""
    try:
        import opentelemetry.propagate as propagate
    except ValueError:
        saved = os.environ.get(ev.OTEL_PROPAGATORS)
        os.environ[ev.OTEL_PROPAGATORS] = "none"
        try:
            import opentelemetry.propagate as propagate
        finally:
            if saved is None:
                os.environ.pop(ev.OTEL_PROPAGATORS, None)
            else:
                os.environ[ev.OTEL_PROPAGATORS] = saved
    return propagate


set_global_textmap = _import_propagate().set_global_textmap

DEFAULT_PROPAGATORS = "xray,tracecontext"

#: A trace id to use for the next root span: an ALB's ``X-Amzn-Trace-Id: Root=...`` without
#: ``Parent`` is not a parent span, but its trace must still be continued.
forced_trace_id: ContextVar[int] = ContextVar("telemetry_forced_trace_id", default=0)


class ContinuingIdGenerator(AwsXRayIdGenerator):
    """X-Ray trace ids (epoch seconds in the first 32 bits), or the forced one.

    Both ids are drawn here as ``AwsXRayIdGenerator`` and ``RandomIdGenerator`` draw them, but
    without their chain of calls (this runs twice per request)."""

    def generate_trace_id(self) -> int:
        forced = forced_trace_id.get()
        return forced or (int(time.time()) << 96) + random.getrandbits(96)

    def generate_span_id(self) -> int:
        span_id = random.getrandbits(64)
        while not span_id:  # pragma: no cover - 2**-64
            span_id = random.getrandbits(64)
        return span_id


_XRAY_ID = re.compile(r"1-([0-9a-f]{8})-([0-9a-f]{24})")
_XRAY_PARENT = re.compile(r"[0-9a-f]{16}")
_XRAY_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_XRAY_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]{0,256}")  # printable ASCII but ; =
_XRAY_SAMPLED = frozenset({"0", "1", "?"})
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_TS_KEY = re.compile(
    r"(?:[a-z][a-z0-9_*/-]{0,255}|[a-z0-9][a-z0-9_*/-]{0,240}@[a-z][a-z0-9_*/-]{0,13})"
)
_TS_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_OWS = " \t"


def xray_header_problem(header: str) -> str | None:
    """Why an ``X-Amzn-Trace-Id`` header is not to be continued (``None``: valid).

    The X-Ray tracing header (AWS X-Ray developer guide, "Tracing header"): ``;``-separated
    ``key=value`` fields, each key at most once; ``Root`` required, ``1-<8 lower-case hex
    (epoch seconds)>-<24 lower-case hex>``, not all zero; ``Parent`` optional, 16 lower-case
    hex, not all zero; ``Sampled`` optional, ``1``, ``0`` or ``?``; ``Self`` (added by load
    balancers) has the form of ``Root``; any other field (``Lineage``, custom data) a key of
    letters, digits, ``_.-`` and a printable-ASCII value without ``;``/``=``.
    """
    if len(header) > 2048:
        return "longer than 2048 characters"
    seen: set[str] = set()
    root = None
    for field in header.strip(_OWS).split(";"):
        key, sep, value = field.strip(_OWS).partition("=")
        if not sep or not _XRAY_KEY.fullmatch(key):
            return f"field {field[:40]!r} is not key=value"
        if key in seen:
            return f"{key} appears twice"
        seen.add(key)
        if key in ("Root", "Self"):
            m = _XRAY_ID.fullmatch(value)
            if m is None or not int(m.group(1) + m.group(2), 16):
                return f"{key}={value[:60]!r} is not 1-<8 hex>-<24 hex>"
            if key == "Root":
                root = value
        elif key == "Parent":
            if not _XRAY_PARENT.fullmatch(value) or not int(value, 16):
                return f"Parent={value[:60]!r} is not 16 hex digits"
        elif key == "Sampled":
            if value not in _XRAY_SAMPLED:
                return f"Sampled={value[:20]!r} is not 1, 0 or ?"
        elif not _XRAY_VALUE.fullmatch(value):
            return f"{key}={value[:60]!r} has characters outside printable ASCII"
    if root is None:
        return "no Root field"
    return None


def parse_xray_root(header: str) -> int:
    """The trace id of the ``Root`` of a valid X-Ray header (:func:`xray_header_problem`),
    else 0."""
    if xray_header_problem(header) is not None:
        return 0
    for field in header.strip(_OWS).split(";"):
        key, _, value = field.strip(_OWS).partition("=")
        if key == "Root":
            return int(value[2:10] + value[11:], 16)
    return 0  # pragma: no cover - a valid header has a Root


def traceparent_problem(header: str) -> str | None:
    """Why a W3C ``traceparent`` header is not to be continued (``None``: valid).

    W3C Trace Context Level 1, section 3.2 (and the version rules of 4.3): ``version-traceid-
    parentid-flags`` in lower-case hex; version ``ff`` is invalid; version ``00`` has exactly
    these four fields; a higher version may append ``-...``; trace id and parent id not all zero.
    Leading/trailing spaces and tabs (HTTP's optional whitespace) are ignored.
    """
    m = _TRACEPARENT.fullmatch(header.strip(_OWS))
    if m is None:
        return "not version-traceid-parentid-flags in lower-case hex"
    version, trace_id, parent_id, _, rest = m.groups()
    if version == "ff":
        return "version ff is invalid"
    if version == "00" and rest:
        return "version 00 has exactly four fields"
    if not int(trace_id, 16):
        return "trace id is all zero"
    if not int(parent_id, 16):
        return "parent id is all zero"
    return None


def tracestate_problem(header: str) -> str | None:
    """Why a W3C ``tracestate`` header is to be dropped (``None``: valid).

    W3C Trace Context Level 1, section 3.3: a comma-separated list (optional whitespace around
    commas, empty members allowed) of at most 32 ``key=value`` members with distinct keys; keys
    ``simple-key`` or ``tenant@system``, values 1-256 printable ASCII characters without ``,``
    and ``=``, not ending with a space.
    """
    keys: set[str] = set()
    for member in header.split(","):
        member = member.strip(_OWS)
        if not member:
            continue
        key, sep, value = member.partition("=")
        if not sep or not _TS_KEY.fullmatch(key) or not _TS_VALUE.fullmatch(value):
            return f"member {member[:60]!r} is not key=value"
        if key in keys:
            return f"key {key!r} appears twice"
        keys.add(key)
        if len(keys) > 32:
            return "more than 32 members"
    return None


#: The inbound correlation headers (lower-case names) and their exact checks.
HEADER_CHECKS: dict[str, Callable[[str], str | None]] = {
    "x-amzn-trace-id": xray_header_problem,
    "traceparent": traceparent_problem,
    "tracestate": tracestate_problem,
}


def extract_context(headers: Mapping[object, object]) -> otel_context.Context | None:
    """The remote parent carried by ``headers`` (``X-Amzn-Trace-Id``, ``traceparent``,
    ``tracestate``; names in any case, other entries ignored), or None: each header is checked
    exactly (:data:`HEADER_CHECKS`) before anything is continued; a malformed one is ignored as
    if absent and noted (``invalid_trace_header``). X-Ray wins over W3C, as in the worker's
    messages (SQS's ``AWSTraceHeader``); a valid ``tracestate`` travels with its
    ``traceparent``."""
    valid: dict[str, str] = {}
    for name, value in headers.items():
        key = str(name).lower()
        check = HEADER_CHECKS.get(key)
        if check is None or not isinstance(value, str):
            continue
        why = check(value)
        if why is not None:
            _errors.note("invalid_trace_header", f"{key}: {why}; a new trace is started")
            continue
        valid[key] = value
    candidates: list[tuple[TextMapPropagator, dict[str, str]]] = []
    if "x-amzn-trace-id" in valid:
        candidates.append((_XRAY_PROPAGATOR, {"X-Amzn-Trace-Id": valid["x-amzn-trace-id"]}))
    if "traceparent" in valid:
        w3c = {k: valid[k] for k in ("traceparent", "tracestate") if k in valid}
        candidates.append((_W3C_PROPAGATOR, w3c))
    for propagator, carrier in candidates:
        ctx = propagator.extract(carrier)
        if trace.get_current_span(ctx).get_span_context().is_valid:
            return ctx
    root = parse_xray_root(valid["x-amzn-trace-id"]) if "x-amzn-trace-id" in valid else 0
    if root:  # a valid X-Ray header without a parent to continue (no Parent, or Sampled=?):
        # its trace is continued by the next job span (telemetry.jobs), as the API does
        return otel_context.set_value(FORCED_ROOT_KEY, root, otel_context.Context())
    return None


#: The context key of an X-Ray ``Root`` to continue without a parent span
#: (:func:`extract_context`); :class:`telemetry.jobs.Job` starts its span in that trace.
FORCED_ROOT_KEY = otel_context.create_key("telemetry-forced-root")


_XRAY_PROPAGATOR = AwsXRayPropagator()
_W3C_PROPAGATOR = TraceContextTextMapPropagator()


def build_propagator(names: str) -> tuple[TextMapPropagator, list[str]]:
    """``OTEL_PROPAGATORS`` (comma-separated) and its problems: one line per name that is not
    installed or fails to load (skipped), naming the variable. The caller counts and reports
    them (``configure`` does, once, with the other settings)."""
    problems: list[str] = []
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
            found = list(entry_points(group="opentelemetry_propagator", name=name))
            if not found:
                why = "is not installed"
            else:
                out.append(found[0].load()())
                continue
        except Exception as exc:
            why = f"is unavailable ({exc!r})"
        problems.append(
            f"{ev.OTEL_PROPAGATORS}={_config.shown(names)}: {_config.shown(name)} {why}; skipped"
        )
    return CompositePropagator(out), problems


#: The key OpenTelemetry keeps the current span under in a ``Context`` (found through the
#: public API: the one key of a context holding only a span).
SPAN_KEY: str = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, otel_context.Context())))


def runtime_context_var() -> ContextVar | None:
    """The ``ContextVar`` behind OpenTelemetry's current context when the runtime context is
    the API's default (``ContextVarsRuntimeContext``, ``OTEL_PYTHON_CONTEXT`` unset), else
    None. Setting it is what ``opentelemetry.context.attach`` does, in two Python calls fewer
    (the server span is made current on every request); the attribute is private to the API,
    hence looked up defensively, with the public calls as the fallback."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, ContextVar) else None


class _CountingExporter(SpanExporter):
    """Counts failed exports (unreachable collector) as ``TelemetryErrors``.

    Also builds the spans :class:`ServerSpans` queued as recipes (``(build, args)`` tuples,
    see :meth:`ServerSpans.end`): in the batch processor's export thread, in batches, not on
    the request path."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence) -> SpanExportResult:
        try:
            spans = _built(spans)
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


def _built(items: Sequence) -> Sequence:
    """``items`` with every recipe replaced by its span; a recipe that fails is counted and
    dropped (the others are exported)."""
    if not any(type(item) is tuple for item in items):
        return items
    out = []
    for item in items:
        if type(item) is not tuple:
            out.append(item)
            continue
        try:
            out.append(item[0](*item[1]))
        except Exception as exc:
            _errors.record("tracing", f"a span could not be built: {exc!r}")
    return out


class AppendLines:
    """A text stream whose every ``write`` is one ``os.write`` on an ``O_APPEND`` descriptor:
    the OTLP JSON lines of several processes appending to one file (gunicorn's workers, blue
    and green) never interleave, whatever the size of a line (a buffered text file may split
    a long line into several writes)."""

    def __init__(self, path: str) -> None:
        self.name = path
        # O_NONBLOCK: a FIFO nobody reads must not hang the app's start in open() (ENXIO, counted),
        # nor a stalled reader the exporter's thread (EAGAIN, counted); regular files ignore it
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
        self._fd = os.open(path, flags, 0o644)
        self.closed = False

    def write(self, text: str) -> int:
        data = memoryview(text.encode("utf-8", "surrogatepass"))
        while data:
            data = data[os.write(self._fd, data) :]
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)


class _FileExporter(SpanExporter):
    """OpenTelemetry's OTLP JSON file exporter on an :class:`AppendLines` stream it closes."""

    def __init__(self, path: str) -> None:
        from opentelemetry.exporter.otlp.json.file import FileSpanExporter

        self.stream = AppendLines(path)
        self.inner = FileSpanExporter(stream=self.stream)  # type: ignore[arg-type]

    def export(self, spans: Sequence) -> SpanExportResult:
        return self.inner.export(spans)

    def shutdown(self) -> None:
        self.inner.shutdown()
        self.stream.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


#: OpenTelemetry's span limit defaults (specification, "Span Limits": 128 attributes, events,
#: links and attributes per event/link; attribute values unlimited), used when a limit
#: variable is malformed.
DEFAULT_SPAN_LIMITS = {
    "max_attributes": 128,
    "max_events": 128,
    "max_links": 128,
    "max_span_attributes": 128,
    "max_event_attributes": 128,
    "max_link_attributes": 128,
    "max_attribute_length": SpanLimits.UNSET,
    "max_span_attribute_length": SpanLimits.UNSET,
}
#: The batch span processor's defaults (specification: OTEL_BSP_*), used when one is malformed.
DEFAULT_BATCH = {
    "max_queue_size": 2048,
    "schedule_delay_millis": 5000,
    "max_export_batch_size": 512,
    "export_timeout_millis": 30000,
}
_BATCH_VARIABLES = {
    ev.OTEL_BSP_SCHEDULE_DELAY: "schedule_delay_millis",
    ev.OTEL_BSP_MAX_QUEUE_SIZE: "max_queue_size",
    ev.OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "max_export_batch_size",
    ev.OTEL_BSP_EXPORT_TIMEOUT: "export_timeout_millis",
}
#: ``OTEL_TRACES_EXPORTER`` names understood here (a comma-separated list, as specified).
TRACES_EXPORTERS = ("otlp", "console", "none")
_BOOLEAN_WORDS = ("true", "false")


def _setting_problem(problem: str) -> None:
    """Count and report one bad setting, as ``configure()`` does for its own."""
    _errors.record("config", problem)
    _errors.report(f"telemetry: invalid setting: {problem}")


def _set_among(names: Iterable[str]) -> str:
    """``NAME='value'`` for each of ``names`` set in the environment (for a problem line)."""
    found = [f"{n}={_config.shown(os.environ[n])}" for n in names if n in os.environ]
    return ", ".join(found) or "/".join(names)


#: ``OTEL_TRACES_SAMPLER`` values the SDK knows (any case), and the two that take a ratio.
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_RATIO_SAMPLERS = {
    "traceidratio": TraceIdRatioBased,
    "parentbased_traceidratio": ParentBasedTraceIdRatio,
}


def sampler(env: Mapping[str, str]) -> Sampler | None:
    """``None`` (the SDK reads ``OTEL_TRACES_SAMPLER``/``_ARG`` itself) when both are valid;
    otherwise the sampler the SDK would fall back to, after reporting the value naming the
    variable (the SDK only logs a warning that names neither value nor default)."""
    raw = env.get(ev.OTEL_TRACES_SAMPLER)
    name = (raw or "parentbased_always_on").lower()
    if name not in SAMPLERS:
        _setting_problem(
            f"{ev.OTEL_TRACES_SAMPLER}={_config.shown(raw)} is not one of {', '.join(SAMPLERS)}; "
            "using 'parentbased_always_on'"
        )
        return ParentBased(ALWAYS_ON)
    ratio = _RATIO_SAMPLERS.get(name)
    arg = env.get(ev.OTEL_TRACES_SAMPLER_ARG)
    if ratio is None or arg is None:
        return None
    try:
        value = float(arg)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # NaN included
        _setting_problem(
            f"{ev.OTEL_TRACES_SAMPLER_ARG}={_config.shown(arg)} is not a ratio in [0, 1] "
            f"({ev.OTEL_TRACES_SAMPLER}={name}); using 1.0"
        )
        return ratio(1.0)
    return None


def span_limits() -> SpanLimits:
    """The SDK's span limits from ``OTEL_*_LIMIT``; a malformed one (the SDK raises
    ``ValueError``) is reported naming it and every limit takes its default."""
    try:
        return SpanLimits()
    except ValueError as exc:
        _setting_problem(f"{exc}; span limits are OpenTelemetry's defaults")
        return SpanLimits(**DEFAULT_SPAN_LIMITS)  # type: ignore[arg-type]


def batch_processor(
    exporter: SpanExporter, settings: dict[str, int] | None = None
) -> tuple[BatchSpanProcessor, dict[str, int]]:
    """A ``BatchSpanProcessor`` configured by ``OTEL_BSP_*``, and the keyword arguments that
    override the SDK's reading of them; values it refuses are reported naming the variables set,
    and its defaults are used (spans are still exported). Pass a first call's ``settings`` to the
    next: the variables are checked, and a bad one reported, once."""
    if settings is not None:
        return BatchSpanProcessor(exporter, **settings), settings  # type: ignore[arg-type]
    given: dict[str, int] = {}
    for name, param in _BATCH_VARIABLES.items():
        raw = os.environ.get(name)
        if raw is None:
            continue
        try:
            int(raw)  # what the SDK does (it logs a traceback and uses its default otherwise)
        except ValueError:
            _setting_problem(
                f"{name}={_config.shown(raw)} is not an integer; using {DEFAULT_BATCH[param]}"
            )
            given[param] = DEFAULT_BATCH[param]
    try:
        return BatchSpanProcessor(exporter, **given), given  # type: ignore[arg-type]
    except ValueError as exc:
        _setting_problem(f"{_set_among(_BATCH_VARIABLES)}: {exc}; using the defaults")
        return BatchSpanProcessor(exporter, **DEFAULT_BATCH), DEFAULT_BATCH  # type: ignore[arg-type]


def _exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` (a comma-separated list) and the OTLP endpoint
    variables ask for; names not understood are reported and skipped."""
    raw = env.get(ev.OTEL_TRACES_EXPORTER, "")
    names: list[str] = []
    for name in (n.strip().lower() for n in raw.split(",")):
        if not name:
            continue
        if name not in TRACES_EXPORTERS:
            _setting_problem(
                f"{ev.OTEL_TRACES_EXPORTER}={_config.shown(raw)}: {_config.shown(name)} is not "
                f"one of {', '.join(TRACES_EXPORTERS)}; skipped"
            )
            continue
        names.append(name)
    endpoint = env.get(ev.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or env.get(
        ev.OTEL_EXPORTER_OTLP_ENDPOINT
    )
    if "none" in names:
        return []
    out: list[SpanExporter] = []
    if "console" in names:
        out.append(ConsoleSpanExporter(out=sys.stderr))  # stdout carries EMF and logs
    if "otlp" in names or (not names and endpoint):
        exporter = _otlp_exporter(env)
        if exporter is not None:
            out.append(exporter)
    return out


_OTLP_VARIABLES = (
    ev.OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    ev.OTEL_EXPORTER_OTLP_HEADERS,
    ev.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    ev.OTEL_EXPORTER_OTLP_TIMEOUT,
    ev.OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    ev.OTEL_EXPORTER_OTLP_COMPRESSION,
)


def _otlp_set(env: Mapping[str, str]) -> str:
    """The OTLP exporter variables set, for a problem line: ``NAME='value'``, but a headers
    variable by its name and length only (its value may hold credentials)."""
    found = [
        f"{n} ({len(env[n])} characters)"
        if n.endswith("_HEADERS")
        else f"{n}={_config.shown(env[n])}"
        for n in _OTLP_VARIABLES
        if n in env
    ]
    return ", ".join(found) or "/".join(_OTLP_VARIABLES)


def _in_use(env: Mapping[str, str], specific: str, general: str) -> str | None:
    """The variable of the two that the exporter reads (the first one set and not empty)."""
    return specific if env.get(specific) else general if env.get(general) else None


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter | None:
    """The OTLP/HTTP exporter, its variables checked first: each bad one in use is reported
    once, naming it (a headers value by its length only: it may hold credentials). None (no
    OTLP export; the provider and other exporters stay) when the exporter cannot be made (a
    credential provider not installed) or a header cannot be sent (every export would fail,
    and the SDK would log the header's value with each failure)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    problems, usable = _otlp_problems(env)
    for problem in problems:
        _setting_problem(problem)
    if not usable:
        return None
    failure: Exception | None = None
    with _sdk_warnings() as said:
        try:
            exporter = OTLPSpanExporter()
        except Exception as exc:  # e.g. a credential provider that is not installed
            failure = exc
    for message in said:  # what the exporter refuses that is not checked above
        if message != _HEADER_SKIPPED:  # counted by _otlp_problems
            _setting_problem(f"{_otlp_set(env)}: {message}")
    if failure is None:
        return exporter
    name = _in_use(
        env,
        ev.OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER,  # the exporter reads it first
        ev.OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER,
    )
    setting = f"{name}={_config.shown(env[name])}" if name else _otlp_set(env)
    why = " ".join(str(failure).split())[: 2 * _config.MAX_SHOWN_CHARS]
    _setting_problem(f"{setting}: {why}; spans are not exported by OTLP")
    return None


#: The most seconds a socket takes as a timeout (with more, every export fails).
_MAX_TIMEOUT_S = threading.TIMEOUT_MAX
#: The fewest: the exporter sends with what is left of ``time.time() + timeout`` once it is ready
#: to send, and with less than a few microseconds nothing is (requests refuses a timeout of 0).
#: On 127.0.0.1 a collector answering at once got 0 of 20 exports at 1e-7 s, 1 at 1e-6 s, 20 at
#: 1e-5 s.
_MIN_TIMEOUT_S = 1e-5


def _otlp_problems(env: Mapping[str, str]) -> tuple[list[str], bool]:
    """Problems with the OTLP exporter's variables in use (the traces-specific one wins over
    the general one: only the one in use counts), and whether an exporter is worth making."""
    problems: list[str] = []
    usable = True
    endpoint = _in_use(env, ev.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, ev.OTEL_EXPORTER_OTLP_ENDPOINT)
    if endpoint:
        base = endpoint == ev.OTEL_EXPORTER_OTLP_ENDPOINT
        # what the exporter sends to: a base URL gets /v1/traces
        url = f"{env[endpoint].removesuffix('/')}/v1/traces" if base else env[endpoint]
        why = _url_problem(url, base)
        if why:
            shown = _config.shown(_without_userinfo(env[endpoint]))
            problems.append(f"{endpoint}={shown}: {why}; every export to it fails")
    name = _in_use(env, ev.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, ev.OTEL_EXPORTER_OTLP_TIMEOUT)
    if name:
        try:  # the exporter reads seconds with float()
            seconds: float | None = float(env[name])
        except ValueError:
            seconds = None
        if seconds is None or not (
            math.isfinite(seconds) and _MIN_TIMEOUT_S <= seconds <= _MAX_TIMEOUT_S
        ):
            problems.append(
                f"{name}={_config.shown(env[name])}: must be a number of seconds from "
                f"{_MIN_TIMEOUT_S:g} to {_MAX_TIMEOUT_S:.0f}; "
                + ("using 10" if seconds is None else "every export fails")
            )
    name = _in_use(env, ev.OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, ev.OTEL_EXPORTER_OTLP_COMPRESSION)
    if name and env[name].strip().lower() not in ("none", "gzip", "deflate"):
        problems.append(
            f"{name}={_config.shown(env[name])}: not one of none, gzip, deflate; using none"
        )
    name = _in_use(env, ev.OTEL_EXPORTER_OTLP_TRACES_HEADERS, ev.OTEL_EXPORTER_OTLP_HEADERS)
    if name:
        skipped, unsendable = _header_problems(env[name])
        why = []
        if skipped:
            why.append(f"{skipped} header(s) not a URL-encoded name=value pair, skipped")
        if unsendable:
            why.append(
                f"{unsendable} header value(s) with a control or non-Latin-1 character once "
                "decoded, which HTTP cannot send; spans are not exported by OTLP"
            )
            usable = False
        if why:  # never the value: headers often carry credentials
            problems.append(f"{name} ({len(env[name])} characters): {'; '.join(why)}")
    https = bool(endpoint) and env[endpoint].strip().lower().startswith("https:")  # type: ignore[index]
    files = [(ev.OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, ev.OTEL_EXPORTER_OTLP_CERTIFICATE)]
    files = files if https else []  # the CA file is used for https only
    client = (
        ev.OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
        ev.OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    )
    if _in_use(env, *client):  # the key is used only with a certificate
        files += [
            client,
            (ev.OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY, ev.OTEL_EXPORTER_OTLP_CLIENT_KEY),
        ]
    for specific, general in files:
        name = _in_use(env, specific, general)
        path = env[name] if name else ""
        if name and not (os.path.isfile(path) or (specific == files[0][0] and os.path.isdir(path))):
            problems.append(f"{name}={_config.shown(path)}: no such file; every export fails")
    return problems, usable


def _header_problems(raw: str) -> tuple[int, int]:
    """How many headers of an OTLP headers value the exporter skips (OpenTelemetry's own parser
    says), and how many it keeps but HTTP cannot send (requests refuses them at every export)."""
    from opentelemetry.util.re import parse_env_headers
    from requests.exceptions import InvalidHeader
    from requests.utils import check_header_validity

    with _sdk_warnings() as skipped:
        headers = parse_env_headers(raw, liberal=True)
    unsendable = 0
    for name, value in headers.items():
        try:
            check_header_validity((name, value))
            value.encode("latin-1")  # what http.client does
        except (InvalidHeader, UnicodeEncodeError):
            unsendable += 1
    return len(skipped), unsendable


def _url_problem(url: str, base: bool) -> str | None:
    """Why requests (the exporter's transport) cannot send to ``url``, or None."""
    from requests import PreparedRequest

    expected = "not an http:// or https:// URL with a host and a port from 1 to 65535"
    try:
        PreparedRequest().prepare_url(url, None)
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return expected
        if parts.port == 0:  # urllib3 would use the scheme's port instead
            return expected
    except Exception:  # e.g. a malformed IPv6 host, a bad port, a space in the host
        return expected
    if base and (parts.query or parts.fragment):
        return "a query or fragment in a base URL comes before the /v1/traces the exporter adds"
    return None


def _without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` (for a problem line)."""
    return re.sub(r"^(\s*[^:/?#]*://)[^/?#]*@", r"\1***@", url)


_HEADER_SKIPPED = "a header is not a URL-encoded name=value pair; skipped"


@contextlib.contextmanager
def _sdk_warnings() -> Iterator[list[str]]:
    """The warnings OpenTelemetry's own loggers log inside the block (their messages, not
    passed on to the application's handlers: they are reported as settings instead)."""
    said: list[str] = []

    owner = threading.get_ident()
    root = logging.getLogger()

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread != owner or record.levelno < logging.WARNING:
                # another thread's line (an export thread, an instrumentation), or below a
                # warning: on to the application's handlers as if "opentelemetry" propagated
                if root.isEnabledFor(record.levelno):
                    root.handle(record)
                return
            if record.name == "opentelemetry.util.re":  # its message repeats the headers
                said.append(_HEADER_SKIPPED)
                return
            if record.name.endswith("proto.http._common") and str(record.msg).startswith(
                ("Invalid timeout value", "Unsupported compression type")
            ):
                return  # reported by _otlp_problems, naming the variable
            try:
                message = record.getMessage()
            except Exception:  # a message that cannot be formatted: still one problem
                message = str(record.msg)
            said.append(" ".join(message.split())[: 2 * _config.MAX_SHOWN_CHARS])  # one line

    logger = logging.getLogger("opentelemetry")
    handler = _Collect(logging.NOTSET)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield said
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def build_provider(
    service: str,
    version: str,
    env: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
    traces_file: str = "",
) -> TracerProvider | None:
    """A TracerProvider, or None when ``OTEL_SDK_DISABLED=true`` (any case; a value other than
    true/false is reported and read as false, as the specification says). ``traces_file``: also
    append every span to that file as OTLP JSON lines (a second ``BatchSpanProcessor``); a file
    that cannot be opened, or a missing ``opentelemetry-exporter-otlp-json-file``, is counted
    (``config``) and reported naming ``TELEMETRY_TRACES_FILE``. Malformed span limit and batch
    processor variables are reported the same way and replaced by their defaults."""
    env = os.environ if env is None else env
    disabled = env.get(ev.OTEL_SDK_DISABLED, "").strip().lower()
    if disabled == "true":
        return None
    if disabled and disabled not in _BOOLEAN_WORDS:
        shown = _config.shown(env[ev.OTEL_SDK_DISABLED])
        _setting_problem(f"{ev.OTEL_SDK_DISABLED}={shown} is not true or false; using false")
    internal = env.get(ev.OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED)
    if internal is not None and internal.strip().lower() not in _BOOLEAN_WORDS:
        # the SDK only logs a warning (once per reader) and reads false
        shown = _config.shown(internal)
        _setting_problem(
            f"{ev.OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED}={shown} is not true or false; "
            "using false"
        )
    resource = Resource.create({"service.name": service, "service.version": version})
    # shutdown_on_exit=False: telemetry.shutdown() (atexit) flushes it, once, in its own process
    provider = TracerProvider(
        resource=resource,
        id_generator=ContinuingIdGenerator(),
        sampler=sampler(env),
        span_limits=span_limits(),
        shutdown_on_exit=False,
    )
    settings: dict[str, int] | None = None

    def export_to(chosen: SpanExporter) -> None:
        nonlocal settings
        processor, settings = batch_processor(_CountingExporter(chosen), settings)
        provider.add_span_processor(processor)

    for chosen in [exporter] if exporter is not None else _exporters(env):
        export_to(chosen)
    if traces_file:
        try:
            file_exporter = _FileExporter(traces_file)
        except (ImportError, OSError, ValueError) as exc:  # ValueError: a NUL in the path
            why = (
                f"needs the package opentelemetry-exporter-otlp-json-file ({exc})"
                if isinstance(exc, ImportError)
                else f"cannot open it ({getattr(exc, 'strerror', None) or exc})"
            )
            _setting_problem(
                f"{ev.TELEMETRY_TRACES_FILE}={_config.shown(traces_file)}: {why}; "
                "spans not written there"
            )
        else:
            export_to(file_exporter)
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
        # The provider's multi-processor only loops over its processors: with exactly one (the
        # usual BatchSpanProcessor), hand spans to it directly. Processors added to the provider
        # later are seen at the next configure().
        members = getattr(self.processor, "_span_processors", None)
        if members is None:  # not the SDK's multi-processor: use it as it is
            self._on_end = self.processor.on_end if self.processor is not None else None
        elif len(members) == 1:
            self._on_end = members[0].on_end
        else:
            self._on_end = self.processor.on_end if members else None  # type: ignore[union-attr]
        # When every processor is one of build_provider()'s BatchSpanProcessors (exporting
        # through _CountingExporter), a sampled span is queued as a recipe, straight into their
        # batch processors (their on_end only drops unsampled spans and calls emit()), and built
        # by _CountingExporter in the export thread, in batches. emit() is private to the SDK,
        # hence looked up defensively; without it spans are built here and handed to on_end.
        self._emits: tuple[Callable[[object], None], ...] | None = None
        if members:
            emits = []
            for member in members:
                emit = getattr(getattr(member, "_batch_processor", None), "emit", None)
                if type(member) is not BatchSpanProcessor or not callable(emit):
                    break
                if not isinstance(getattr(member, "span_exporter", None), _CountingExporter):
                    break
                emits.append(emit)
            else:
                self._emits = tuple(emits)
        # The provider's span limits (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, ..._VALUE_LENGTH_LIMIT,
        # OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT for events), applied as the SDK's own spans apply
        # them: a path, an annotation or an exception message is client input of any size.
        # Private to the SDK, hence looked up defensively (without it: its defaults).
        limits = getattr(provider, "_span_limits", None)
        if not isinstance(limits, SpanLimits):
            limits = span_limits()
        self._max_attributes = limits.max_span_attributes
        self._max_length = limits.max_span_attribute_length
        self._max_event_attributes = limits.max_event_attributes
        self._max_event_length = limits.max_attribute_length
        self.scope = InstrumentationScope(scope_name)
        #: the scope of ``telemetry.span()`` children
        self.child_scope = InstrumentationScope("telemetry")
        # The SDK's default sampler (ParentBased(AlwaysOn)) decides every root span alike and
        # follows a local parent's sampled flag: skip asking it then.
        self._always_root = self.sampler.get_description() == _DEFAULT_SAMPLER_DESCRIPTION
        # ... and with our own id generator, a root span's ids are drawn right here
        self._fast_root = self._always_root and type(self.id_generator) is ContinuingIdGenerator

    def start(
        self, parent: object | None, name: str, kind: trace.SpanKind
    ) -> tuple[trace.SpanContext, trace.SpanContext | None, bool]:
        """(this span's context, the parent's context or None, whether to record it)."""
        if parent is None and self._fast_root:
            # a root span without a forced trace id (that comes with a parent context): the
            # ids as ContinuingIdGenerator draws them, the default sampler's decision
            span_id = getrandbits(64)
            # what SpanContext(trace_id, span_id, False, _SAMPLED) makes (a tuple), without
            # its Python-level __new__: both ids are valid by construction (a trace id starts
            # with the epoch second, not 0; a span id of 0 becomes 1)
            return (
                _new_tuple(
                    trace.SpanContext,
                    (
                        (int(time.time()) << 96) + getrandbits(96),
                        span_id if span_id else 1,
                        False,
                        _SAMPLED,
                        _DEFAULT_TRACE_STATE,
                        True,
                    ),
                ),
                None,
                self._on_end is not None,
            )
        parent_sc = None
        if parent is not None:
            sc = trace.get_current_span(parent).get_span_context()  # type: ignore[arg-type]
            if sc.is_valid:
                parent_sc = sc
        trace_id = (
            parent_sc.trace_id if parent_sc is not None else self.id_generator.generate_trace_id()
        )
        if self._always_root and parent_sc is None:
            sampled = recording = True
            trace_state = None
        elif self._always_root and not parent_sc.is_remote:  # type: ignore[union-attr]
            # ParentBased's default for a local parent: follow its sampled flag
            sampled = recording = parent_sc.trace_flags.sampled  # type: ignore[union-attr]
            trace_state = parent_sc.trace_state  # type: ignore[union-attr]
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
        record = recording and self._on_end is not None
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
        scope: object | None = None,
    ) -> None:
        """End a span started with :meth:`start` (``record`` true): its ``ReadableSpan`` is
        built here, or later in the export thread (``attributes`` must not change afterwards;
        an exception event is made here)."""
        events: tuple = ()
        if error is not None:
            events = (
                Event(
                    "exception",
                    bounded(
                        {
                            "exception.type": type(error).__qualname__,
                            "exception.message": _message(error),
                            "exception.stacktrace": "".join(traceback.format_exception(error)),
                        },
                        self._max_event_attributes,
                        self._max_event_length,
                    ),
                ),
            )
        if self._max_length is not None or (
            self._max_attributes is not None and len(attributes) > self._max_attributes
        ):
            attributes = bounded(attributes, self._max_attributes, self._max_length)
        # ReadableSpan's own arguments, in its order: the export thread calls it directly
        args = (
            name,
            span_context,
            parent,
            self.resource,
            attributes,
            events,
            (),
            kind,
            None,
            _STATUS_ERROR if failed else _STATUS_UNSET,
            start_ns,
            time.time_ns(),
            scope or self.scope,
        )
        build = ReadableSpan if _POSITIONAL_READABLE_SPAN else _readable_span_by_keywords
        emits = self._emits
        if emits is None:
            self._on_end(build(*args))  # type: ignore[operator]
        elif span_context[3] & 1:  # sampled (unsampled ones are dropped by on_end); a tuple
            recipe = (build, args)
            for emit in emits:
                emit(recipe)


def _message(error: BaseException) -> str:
    """``str(error)``, or what ``traceback`` shows when that fails (an exception's ``__str__``
    is the application's code)."""
    try:
        return str(error)
    except Exception:
        return "<exception str() failed>"


def bounded(attributes: dict, count: int | None, length: int | None) -> BoundedAttributes:
    """``attributes`` within span limits, as the SDK keeps them (``BoundedAttributes``: strings
    cut to ``length``, the number dropped in ``dropped``, which OTLP exports), but keeping the
    first ``count`` (a server span's HTTP attributes come first) where the SDK keeps the last."""
    dropped = 0
    if count is not None and len(attributes) > count:
        dropped = len(attributes) - count
        attributes = dict(itertools.islice(attributes.items(), count))
    out = BoundedAttributes(None, attributes, immutable=True, max_value_len=length)
    out.dropped = dropped
    return out


def _readable_span_by_keywords(
    name: str,
    context: trace.SpanContext,
    parent: trace.SpanContext | None,
    resource: Resource,
    attributes: dict,
    events: tuple,
    links: tuple,
    kind: trace.SpanKind,
    instrumentation_info: None,
    status: trace.Status,
    start_time: int,
    end_time: int,
    instrumentation_scope: object,
) -> ReadableSpan:
    """``ReadableSpan(*args)`` for an SDK whose parameters are not in the order expected."""
    return ReadableSpan(
        name=name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        events=events,
        links=links,
        kind=kind,
        status=status,
        start_time=start_time,
        end_time=end_time,
        instrumentation_scope=instrumentation_scope,  # type: ignore[arg-type]
    )


#: ``ReadableSpan.__init__``'s parameters in the order :meth:`ServerSpans.end` passes them
#: positionally; checked once against the installed SDK (else it passes them by keyword)
READABLE_SPAN_PARAMETERS = (
    "name",
    "context",
    "parent",
    "resource",
    "attributes",
    "events",
    "links",
    "kind",
    "instrumentation_info",
    "status",
    "start_time",
    "end_time",
    "instrumentation_scope",
)


def _positional_parameters_are(cls: type, names: tuple[str, ...]) -> bool:
    """Whether ``cls(...)`` takes ``names`` as its first positional parameters, in that order."""
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    return len(params) >= len(names) and all(
        p.name == n and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        for p, n in zip(params, names, strict=False)
    )


_POSITIONAL_READABLE_SPAN = _positional_parameters_are(ReadableSpan, READABLE_SPAN_PARAMETERS)
_DEFAULT_SAMPLER_DESCRIPTION = ParentBased(ALWAYS_ON).get_description()
_DEFAULT_TRACE_STATE = trace.SpanContext(1, 1, False).trace_state
_new_tuple = tuple.__new__
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_STATUS_ERROR = trace.Status(trace.StatusCode.ERROR)
_STATUS_UNSET = trace.Status(trace.StatusCode.UNSET)
