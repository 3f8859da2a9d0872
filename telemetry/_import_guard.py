"""Import OpenTelemetry's SDK tracing module whatever the environment holds.

``opentelemetry.sdk.trace`` reads ``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`` when it is imported and
raises ``ValueError`` for a value that is not a non-negative integer, which would make ``import
telemetry`` (and the application) fail with a traceback. It is then imported again without the
variable (restored afterwards); ``configure()`` reports the value in one line naming the
variable when it builds the span limits (:func:`telemetry._tracing.span_limits`). This module
must be imported before anything imports the SDK (``telemetry/__init__.py`` does so first).
"""

from __future__ import annotations

import os

from telemetry import environment_variables as ev

try:
    import opentelemetry.sdk.trace
except ValueError:
    _saved = os.environ.pop(ev.OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, None)
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    finally:
        if _saved is not None:
            os.environ[ev.OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT] = _saved
