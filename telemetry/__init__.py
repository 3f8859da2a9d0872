"""RED/USE metrics as CloudWatch EMF, JSON logs and X-Ray-compatible traces for Flask services
and workers.

    import telemetry
    telemetry.configure(service="points-service", version="v1")   # at start-up / post_fork
    from telemetry.flask import instrument; instrument(app)

See docs/telemetry.md.
"""

from __future__ import annotations

# first: a malformed variable the OpenTelemetry SDK reads at import must not break this import
from telemetry import _import_guard  # noqa: F401  # isort: skip

import logging
from collections.abc import Mapping
from typing import TextIO

from opentelemetry.context import Context
from opentelemetry.sdk.trace.export import SpanExporter

from telemetry import (
    _errors,
    _output,
    _runtime,
    _tracing,
    catalog,
    cloudwatch_rules,
    environment_variables,
)
from telemetry._config import Settings
from telemetry._histogram import RELATIVE_ERROR
from telemetry.jobs import Job, job, record_message_age, report_queue
from telemetry.sinks import Sink
from telemetry.spans import Span, annotate, span

__all__ = [
    "RELATIVE_ERROR",
    "Job",
    "Settings",
    "Sink",
    "Span",
    "annotate",
    "catalog",
    "cloudwatch_rules",
    "configure",
    "counts",
    "environment_variables",
    "error_count",
    "extract_trace_context",
    "flush",
    "get_logger",
    "job",
    "put_metric",
    "record_message_age",
    "report_queue",
    "shutdown",
    "span",
]


def configure(
    service: str | None = None,
    version: str | None = None,
    *,
    default_service: str | None = None,
    namespace: str | None = None,
    flush_interval_s: float | None = None,
    storage_resolution: int | None = None,
    histogram: str | None = None,
    max_values: int | None = None,
    access_log_sample: float | None = None,
    max_routes: int | None = None,
    exclude_paths: str | None = None,
    worker_slots: int | None = None,
    json_logs: bool | None = None,
    log_level: str | None = None,
    output_buffer_bytes: int | None = None,
    shutdown_timeout_s: float | None = None,
    traces_file: str | None = None,
    sink: Sink | None = None,
    span_exporter: SpanExporter | None = None,
    log_stream: TextIO | None = None,
) -> Settings | None:
    """Set up metrics, JSON logging and tracing for this process; call again after ``fork``
    (gunicorn ``post_fork``): without any argument it repeats the previous call's arguments.

    An argument left ``None`` is read from its environment variable (names in
    :mod:`telemetry.environment_variables`), else its default. Never raises: an invalid value
    (argument or variable) is replaced by its default, counted (``TelemetryErrors``) and reported
    on stderr in one line naming the variable (a value longer than 100 characters cut, with its
    length), e.g. ``telemetry: invalid setting: AWS_EMF_NAMESPACE='Safe Deploy': a namespace
    may contain only ...; using 'SafeDeploy'``.

    Args:
        service: ``Service`` dimension, ``service`` log field, span resource.
        version: ``Version`` dimension (tells blue from green), ``version`` log field.
        default_service: the service name when neither ``service`` nor the environment names one.
        namespace: CloudWatch namespace (``cloudwatch_rules.namespace_problem`` must accept it).
        flush_interval_s: window length in seconds, 0.05..3600 (UTC-aligned).
        storage_resolution: 60, or 1 for high-resolution metrics.
        histogram: ``"counts"`` (Values/Counts, <= 1 % error) or ``"values"`` (raw samples).
        max_values: ``values`` mode: raw samples kept per series and window (100..1,000,000).
        access_log_sample: share 0..1 of successful access lines written (4xx/5xx: all).
        max_routes: distinct ``Route`` values per window (1..10,000); more share ``_other``.
        exclude_paths: regex (``fullmatch`` on the path) of requests not instrumented.
        worker_slots: job slots of a worker: 100 % of ``WorkerUtilization``.
        json_logs: put the JSON handler on the root logger.
        log_level: root logger level.
        output_buffer_bytes: bytes of stdout lines (EMF + logs) held while stdout is not read
            (65,536..1 GiB); further lines are dropped and counted.
        shutdown_timeout_s: seconds ``shutdown()`` waits for buffered lines (0..600).
        traces_file: a path: spans are also appended there as OTLP JSON lines
            (``opentelemetry-exporter-otlp-json-file``, through a ``BatchSpanProcessor``);
            ``""`` turns it off.
        sink, span_exporter, log_stream: replace the outputs (tests, benchmarks).

    Environment variables:
        ``OTEL_SERVICE_NAME`` (then ``service.name`` of ``OTEL_RESOURCE_ATTRIBUTES``) -> service;
        ``APP_VERSION`` (then ``service.version`` of ``OTEL_RESOURCE_ATTRIBUTES``) -> version;
        ``AWS_EMF_NAMESPACE`` -> namespace; ``TELEMETRY_FLUSH_INTERVAL_S``,
        ``TELEMETRY_STORAGE_RESOLUTION``, ``TELEMETRY_HISTOGRAM``, ``TELEMETRY_MAX_VALUES``,
        ``TELEMETRY_ACCESS_LOG_SAMPLE``, ``TELEMETRY_MAX_ROUTES``, ``TELEMETRY_EXCLUDE_PATHS``,
        ``TELEMETRY_WORKER_SLOTS``, ``TELEMETRY_JSON_LOGS``, ``TELEMETRY_LOG_LEVEL``,
        ``TELEMETRY_OUTPUT_BUFFER_BYTES``, ``TELEMETRY_SHUTDOWN_TIMEOUT_S``,
        ``TELEMETRY_TRACES_FILE`` -> the argument of the same name. Read only from the environment: ``AWS_EMF_ENVIRONMENT``,
        ``AWS_EMF_AGENT_ENDPOINT``, ``AWS_EMF_LOG_GROUP_NAME`` (the sink), ``OTEL_PROPAGATORS``,
        ``OTEL_SDK_DISABLED``, ``OTEL_TRACES_EXPORTER``, ``OTEL_TRACES_SAMPLER``,
        ``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``,
        ``OTEL_EXPORTER_OTLP_*`` (tracing; also the Python SDK's
        ``OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER`` and
        ``OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER``). Read by the SDK, a malformed value reported and
        replaced by the specification's default: ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`` (and the
        other span limits), ``OTEL_BSP_SCHEDULE_DELAY``, ``OTEL_BSP_MAX_QUEUE_SIZE``,
        ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, ``OTEL_BSP_EXPORT_TIMEOUT``. Defaults:
        docs/telemetry.md.

    Returns:
        The resulting :class:`Settings`, or ``None`` if set-up itself failed (counted).
    """
    try:
        return _runtime.configure(
            service,
            version,
            sink=sink,
            span_exporter=span_exporter,
            log_stream=log_stream,
            default_service=default_service,
            namespace=namespace,
            flush_interval_s=flush_interval_s,
            storage_resolution=storage_resolution,
            histogram=histogram,
            max_values=max_values,
            access_log_sample=access_log_sample,
            max_routes=max_routes,
            exclude_paths=exclude_paths,
            worker_slots=worker_slots,
            json_logs=json_logs,
            log_level=log_level,
            output_buffer_bytes=output_buffer_bytes,
            shutdown_timeout_s=shutdown_timeout_s,
            traces_file=traces_file,
        )
    except Exception as exc:
        _errors.record("config", repr(exc))
        return None


def shutdown() -> None:
    """Write every pending window and export pending spans (also run at exit)."""
    _runtime.shutdown()


def flush() -> None:
    """Write the windows that have ended (the flush thread does this on its own), and have the
    output writer write what it holds at once instead of after its 50 ms; does not wait for
    stdout (a stalled reader blocks nobody)."""
    try:
        _runtime.aggregator().flush()
        _output.hurry()
    except Exception as exc:
        _errors.record("internal", repr(exc))


def put_metric(name: str, value: float) -> None:
    """Record ``value`` for the catalog metric ``name``, with the dimensions of the current
    service and request. Unknown names and bad values are counted, never raised."""
    _runtime.put_metric(name, value)


def extract_trace_context(headers: Mapping[object, object]) -> Context | None:
    """The trace to continue from ``headers`` received outside a Flask request (e.g. an SQS
    message's ``AWSTraceHeader`` as ``{"X-Amzn-Trace-Id": ...}``, or its ``traceparent`` /
    ``tracestate`` attributes), for ``otel_context.attach`` around a job; None when there is
    none to continue.

    Each header is checked exactly against its specification, as ``telemetry.flask`` checks a
    request's (docs/telemetry.md, "Traces"): a malformed one is ignored as if absent and noted
    (``counts()["invalid_trace_header"]``, not in ``TelemetryErrors``); a valid ``X-Amzn-Trace-Id``
    wins over ``traceparent``. A valid X-Ray header with no parent span to continue (no
    ``Parent``, as a load balancer's; or ``Sampled=?``) gives a context without a span whose
    trace the next :func:`telemetry.jobs.job` span continues as its root, as the API continues
    such a request's. Never raises (an unexpected failure is counted, ``tracing``)."""
    try:
        return _tracing.extract_context(headers)
    except Exception as exc:
        _errors.record("tracing", repr(exc))
        return None


def get_logger(name: str | None = None) -> logging.Logger:
    """A standard ``logging`` logger; its lines are JSON once ``configure()`` ran."""
    return logging.getLogger(name)


def error_count() -> int:
    """Telemetry failures counted in this process so far (``TelemetryErrors``), dropped
    output lines included."""
    return _errors.total()


def counts() -> dict[str, int]:
    """Telemetry's failures and notable events in this process so far, per kind: e.g.
    ``output_dropped`` (lines dropped because stdout was not read), ``invalid_value``,
    ``invalid_dimension``, ``config``; and, not part of ``TelemetryErrors`` (the client's doing),
    ``invalid_trace_header`` and ``invalid_request_id``."""
    return _errors.counts()
