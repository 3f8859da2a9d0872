"""The catalog of every metric the toolkit emits.

This is the single source of truth shared by the emitters (``telemetry``) and the consumers
(``alarms``: alarms, dashboards, the offline evaluator). Nothing is emitted that is not declared
here. Metric names are stable API: renaming one breaks every alarm generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["RED", "USE", "SELF"]
Kind = Literal["counter", "distribution", "gauge"]
Component = Literal["api", "worker", "any"]

#: Dimension names. ``Route`` is always a route template (``/v1/users/<user_id>/points``), never a
#: raw path; unmatched routes share :data:`UNMATCHED_ROUTE`.
SERVICE = "Service"
VERSION = "Version"
ROUTE = "Route"

UNMATCHED_ROUTE = "UNMATCHED"
#: Value a capped dimension takes once the per-window cap on distinct values is reached.
OVERFLOW_VALUE = "_other"

API_DIMENSION_SETS: tuple[tuple[str, ...], ...] = ((SERVICE,), (SERVICE, VERSION), (SERVICE, ROUTE))
WORKER_DIMENSION_SETS: tuple[tuple[str, ...], ...] = ((SERVICE,), (SERVICE, VERSION))
SERVICE_ONLY: tuple[tuple[str, ...], ...] = ((SERVICE,),)


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One declared metric.

    ``kind`` says how a window aggregates it: a ``counter`` is written as one number per window
    (the count in that window, zero included, so ``Sum`` over a period is exact); a
    ``distribution`` as ``Values``/``Counts`` (every sample, so percentiles work); a ``gauge`` as
    the last observed value(s) of the window.
    """

    name: str
    unit: str
    kind: Kind
    role: Role
    component: Component
    statistic: str
    dimension_sets: tuple[tuple[str, ...], ...]
    description: str


METRICS: tuple[MetricDef, ...] = (
    # RED: online API
    MetricDef(
        "Requests",
        "Count",
        "counter",
        "RED",
        "api",
        "Sum",
        API_DIMENSION_SETS,
        "Requests served (rate), health checks excluded.",
    ),
    MetricDef(
        "ServerErrors",
        "Count",
        "counter",
        "RED",
        "api",
        "Sum",
        API_DIMENSION_SETS,
        "Responses with a 5xx status (errors).",
    ),
    MetricDef(
        "ClientErrors",
        "Count",
        "counter",
        "RED",
        "api",
        "Sum",
        API_DIMENSION_SETS,
        "Responses with a 4xx status, 429 included.",
    ),
    MetricDef(
        "Latency",
        "Milliseconds",
        "distribution",
        "RED",
        "api",
        "p99",
        API_DIMENSION_SETS,
        "Time from request received to response returned (duration).",
    ),
    MetricDef(
        "RateLimitWait",
        "Milliseconds",
        "distribution",
        "RED",
        "api",
        "Average",
        ((SERVICE,), (SERVICE, VERSION)),
        "Time a request waited for the rate limiter before being served.",
    ),
    MetricDef(
        "RateLimitRejections",
        "Count",
        "counter",
        "RED",
        "api",
        "Sum",
        ((SERVICE,), (SERVICE, VERSION)),
        "Requests refused with 429 by the rate limiter.",
    ),
    # USE: queue worker
    MetricDef(
        "Jobs",
        "Count",
        "counter",
        "USE",
        "worker",
        "Sum",
        WORKER_DIMENSION_SETS,
        "Jobs (messages) finished, successfully or not.",
    ),
    MetricDef(
        "JobErrors",
        "Count",
        "counter",
        "USE",
        "worker",
        "Sum",
        WORKER_DIMENSION_SETS,
        "Jobs that failed and were left for SQS to retry (errors).",
    ),
    MetricDef(
        "JobDuration",
        "Milliseconds",
        "distribution",
        "USE",
        "worker",
        "p99",
        WORKER_DIMENSION_SETS,
        "Time spent processing one job.",
    ),
    MetricDef(
        "WorkerUtilization",
        "Percent",
        "gauge",
        "USE",
        "worker",
        "Average",
        WORKER_DIMENSION_SETS,
        "Busy share of the worker's job slots over the window.",
    ),
    MetricDef(
        "QueueBacklog",
        "Count",
        "gauge",
        "USE",
        "worker",
        "Maximum",
        SERVICE_ONLY,
        "Approximate number of visible messages waiting in the queue (saturation).",
    ),
    MetricDef(
        "QueueInFlight",
        "Count",
        "gauge",
        "USE",
        "worker",
        "Maximum",
        SERVICE_ONLY,
        "Approximate number of received but not yet deleted messages.",
    ),
    MetricDef(
        "MessageAge",
        "Seconds",
        "distribution",
        "USE",
        "worker",
        "Maximum",
        SERVICE_ONLY,
        "Age of a message when received, from its SentTimestamp (saturation).",
    ),
    MetricDef(
        "DeadLetterBacklog",
        "Count",
        "gauge",
        "USE",
        "worker",
        "Maximum",
        SERVICE_ONLY,
        "Approximate number of messages in the dead-letter queue.",
    ),
    MetricDef(
        "DeadLettered",
        "Count",
        "counter",
        "USE",
        "worker",
        "Sum",
        SERVICE_ONLY,
        "Messages the worker gave up on (poison or last receive), bound for the DLQ.",
    ),
    # Self-monitoring: telemetry never raises, it counts.
    MetricDef(
        "TelemetryErrors",
        "Count",
        "counter",
        "SELF",
        "any",
        "Sum",
        SERVICE_ONLY,
        "Failures inside telemetry itself (bad values, broken sink, dropped data).",
    ),
)

_BY_NAME = {m.name: m for m in METRICS}


def get(name: str) -> MetricDef:
    """Return the declared metric ``name``; ``KeyError`` if it is not in the catalog."""
    return _BY_NAME[name]


def names(component: Component | None = None) -> tuple[str, ...]:
    """Names of the declared metrics, optionally only those of one component."""
    return tuple(m.name for m in METRICS if component is None or m.component in (component, "any"))
