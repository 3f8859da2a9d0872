"""Names of the environment variables telemetry reads, defined once (as OpenTelemetry's
``opentelemetry.sdk.environment_variables`` does).

Meanings, defaults and accepted values: docs/telemetry.md ("Environment variables") and the
docstring of :func:`telemetry.configure`. The ``OTEL_*`` names are OpenTelemetry's own (taken from
the SDK where it defines them); the ``AWS_EMF_*`` names are aws-embedded-metrics' own (its
``EnvironmentConfigurationProvider``); ``TELEMETRY_*`` are this toolkit's.
"""

from __future__ import annotations

from aws_embedded_metrics.config import environment_configuration_provider as _emf
from opentelemetry import environment_variables as _otel_api
from opentelemetry.sdk import environment_variables as _otel

# -- OpenTelemetry ----------------------------------------------------------------------------
OTEL_SERVICE_NAME = _otel.OTEL_SERVICE_NAME
OTEL_RESOURCE_ATTRIBUTES = _otel.OTEL_RESOURCE_ATTRIBUTES
OTEL_SDK_DISABLED = _otel.OTEL_SDK_DISABLED
OTEL_TRACES_EXPORTER = _otel_api.OTEL_TRACES_EXPORTER
OTEL_TRACES_SAMPLER = _otel.OTEL_TRACES_SAMPLER
OTEL_TRACES_SAMPLER_ARG = _otel.OTEL_TRACES_SAMPLER_ARG
OTEL_EXPORTER_OTLP_ENDPOINT = _otel.OTEL_EXPORTER_OTLP_ENDPOINT
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = _otel.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
OTEL_PROPAGATORS = _otel_api.OTEL_PROPAGATORS
#: Read by the SDK (at import; with the other span limits when the provider is built) and by
#: its batch span processor; named here to report malformed values.
OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT = _otel.OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT
OTEL_BSP_SCHEDULE_DELAY = _otel.OTEL_BSP_SCHEDULE_DELAY
OTEL_BSP_MAX_QUEUE_SIZE = _otel.OTEL_BSP_MAX_QUEUE_SIZE
OTEL_BSP_MAX_EXPORT_BATCH_SIZE = _otel.OTEL_BSP_MAX_EXPORT_BATCH_SIZE
OTEL_BSP_EXPORT_TIMEOUT = _otel.OTEL_BSP_EXPORT_TIMEOUT

# -- aws-embedded-metrics ---------------------------------------------------------------------
_EMF = _emf.ENV_VAR_PREFIX + "_"
AWS_EMF_NAMESPACE = _EMF + _emf.NAMESPACE
AWS_EMF_ENVIRONMENT = _EMF + _emf.ENVIRONMENT_OVERRIDE
AWS_EMF_AGENT_ENDPOINT = _EMF + _emf.AGENT_ENDPOINT
AWS_EMF_LOG_GROUP_NAME = _EMF + _emf.LOG_GROUP_NAME

# -- the toolkit ------------------------------------------------------------------------------
#: The ``Version`` dimension (falls back to ``service.version`` of OTEL_RESOURCE_ATTRIBUTES).
APP_VERSION = "APP_VERSION"
TELEMETRY_FLUSH_INTERVAL_S = "TELEMETRY_FLUSH_INTERVAL_S"
TELEMETRY_STORAGE_RESOLUTION = "TELEMETRY_STORAGE_RESOLUTION"
TELEMETRY_HISTOGRAM = "TELEMETRY_HISTOGRAM"
TELEMETRY_MAX_VALUES = "TELEMETRY_MAX_VALUES"
TELEMETRY_ACCESS_LOG_SAMPLE = "TELEMETRY_ACCESS_LOG_SAMPLE"
TELEMETRY_MAX_ROUTES = "TELEMETRY_MAX_ROUTES"
TELEMETRY_EXCLUDE_PATHS = "TELEMETRY_EXCLUDE_PATHS"
TELEMETRY_WORKER_SLOTS = "TELEMETRY_WORKER_SLOTS"
TELEMETRY_JSON_LOGS = "TELEMETRY_JSON_LOGS"
TELEMETRY_LOG_LEVEL = "TELEMETRY_LOG_LEVEL"
#: Bytes of output lines (EMF + logs) held for a slow stdout before new lines are dropped.
TELEMETRY_OUTPUT_BUFFER_BYTES = "TELEMETRY_OUTPUT_BUFFER_BYTES"
#: Seconds ``shutdown()`` waits for buffered output to be written.
TELEMETRY_SHUTDOWN_TIMEOUT_S = "TELEMETRY_SHUTDOWN_TIMEOUT_S"
#: A file the spans are appended to as OTLP JSON lines (besides any OTLP/HTTP export).
TELEMETRY_TRACES_FILE = "TELEMETRY_TRACES_FILE"

__all__ = [
    "APP_VERSION",
    "AWS_EMF_AGENT_ENDPOINT",
    "AWS_EMF_ENVIRONMENT",
    "AWS_EMF_LOG_GROUP_NAME",
    "AWS_EMF_NAMESPACE",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_PROPAGATORS",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "TELEMETRY_ACCESS_LOG_SAMPLE",
    "TELEMETRY_EXCLUDE_PATHS",
    "TELEMETRY_FLUSH_INTERVAL_S",
    "TELEMETRY_HISTOGRAM",
    "TELEMETRY_JSON_LOGS",
    "TELEMETRY_LOG_LEVEL",
    "TELEMETRY_MAX_ROUTES",
    "TELEMETRY_MAX_VALUES",
    "TELEMETRY_OUTPUT_BUFFER_BYTES",
    "TELEMETRY_SHUTDOWN_TIMEOUT_S",
    "TELEMETRY_STORAGE_RESOLUTION",
    "TELEMETRY_TRACES_FILE",
    "TELEMETRY_WORKER_SLOTS",
]
