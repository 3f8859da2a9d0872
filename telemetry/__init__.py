"""RED/USE metrics as CloudWatch EMF, JSON logs and X-Ray-compatible traces for Flask services
and workers.

    import telemetry
    telemetry.configure(service="points-service", version="v1")   # at start-up / post_fork
    from telemetry.flask import instrument; instrument(app)

See docs/telemetry.md.
"""

from __future__ import annotations

import logging
from typing import TextIO

from opentelemetry.sdk.trace.export import SpanExporter

from telemetry import _errors, _runtime, catalog
from telemetry._config import Settings
from telemetry._histogram import RELATIVE_ERROR
from telemetry.jobs import Job, job, record_message_age, report_queue
from telemetry.sinks import Sink

__all__ = [
    "RELATIVE_ERROR",
    "Job",
    "Settings",
    "Sink",
    "catalog",
    "configure",
    "error_count",
    "flush",
    "get_logger",
    "job",
    "put_metric",
    "record_message_age",
    "report_queue",
    "shutdown",
]


def configure(
    service: str | None = None,
    version: str | None = None,
    *,
    sink: Sink | None = None,
    span_exporter: SpanExporter | None = None,
    log_stream: TextIO | None = None,
    **options: object,
) -> Settings | None:
    """Set up metrics, JSON logging and tracing for this process; call again after ``fork``
    (gunicorn ``post_fork``): without any argument it repeats the previous call's arguments.

    Every argument defaults to the environment (``OTEL_SERVICE_NAME``, ``APP_VERSION`` /
    ``OTEL_RESOURCE_ATTRIBUTES`` ``service.version``, ``AWS_EMF_*``, ``TELEMETRY_*``). Options:
    ``default_service`` (the service name when neither argument nor environment gives one),
    ``namespace``, ``flush_interval_s``, ``storage_resolution``, ``histogram``,
    ``access_log_sample``, ``max_routes``, ``exclude_paths``, ``worker_slots``, ``json_logs``,
    ``log_level``. ``sink``/``span_exporter``/``log_stream`` replace the outputs (tests). Never
    raises: a bad setting is reported and replaced by its default.
    """
    try:
        return _runtime.configure(
            service,
            version,
            sink=sink,
            span_exporter=span_exporter,
            log_stream=log_stream,
            **options,
        )
    except Exception as exc:
        _errors.record("config", repr(exc))
        return None


def shutdown() -> None:
    """Write every pending window and export pending spans (also run at exit)."""
    _runtime.shutdown()


def flush() -> None:
    """Write the windows that have ended (the flush thread does this on its own)."""
    try:
        _runtime.aggregator().flush()
    except Exception as exc:
        _errors.record("internal", repr(exc))


def put_metric(name: str, value: float) -> None:
    """Record ``value`` for the catalog metric ``name``, with the dimensions of the current
    service and request. Unknown names and bad values are counted, never raised."""
    _runtime.put_metric(name, value)


def get_logger(name: str | None = None) -> logging.Logger:
    """A standard ``logging`` logger; its lines are JSON once ``configure()`` ran."""
    return logging.getLogger(name)


def error_count() -> int:
    """Telemetry failures counted in this process so far (``TelemetryErrors``)."""
    return _errors.total()
