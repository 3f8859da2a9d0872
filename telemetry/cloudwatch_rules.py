"""What CloudWatch accepts in a metric: namespace, metric and dimension names, dimension values,
values, units, counts. Each ``*_problem`` function returns ``None`` when CloudWatch accepts the
input, else one sentence saying why it would be rejected; :func:`problems` checks a whole datum.

Sources (where two disagree, the stricter rule is applied, so nothing passing here is rejected):

- CloudWatch API reference, ``Dimension``: names 1-255 characters, values 1-1024 characters;
  both "must contain only ASCII characters and must include at least one non-whitespace
  character"; "ASCII control characters are not supported"; names "cannot start with a colon".
- CloudWatch API reference, ``PutMetricData`` / ``MetricDatum``: namespace 1-255 characters,
  pattern ``[^:].*``, "You cannot specify a namespace that begins with AWS/"; metric name 1-255
  characters; "Values must be in the range of -2^360 to 2^360. In addition, special values (for
  example, NaN, +Infinity, -Infinity) are not supported"; the older ``StatisticSet`` text gives
  the magnitudes as 2e-360 to 2e360 (base 2), i.e. a non-zero magnitude below 2^-360 is "too
  small" (micrometer's CloudWatch registry clamps to the same bounds); up to 30 dimensions per
  metric.
- aws-embedded-metrics (installed; ``aws_embedded_metrics.constants`` and ``.validator``, the
  EMF reference implementation): namespace ``^[a-zA-Z0-9._#:/-]+$`` (no space, although the
  CloudWatch concepts page allows one), dimension and metric names at most 250 characters, at
  most 30 dimensions per dimension set, 100 metrics per directive, 100 values per metric, the
  ``Unit`` list.
- CloudWatch Logs API reference, ``CreateLogGroup``: log group names 1-512 characters of
  ``[.\\-_/#A-Za-z0-9]``. ``PutLogEvents``: "Each log event can be no larger than 1 MB" and a
  batch holds at most 1,048,576 bytes, "the sum of all event messages in UTF-8, plus 26 bytes
  for each log event": one event's message is at most 1,048,550 bytes (an EMF document is one
  event; the EMF specification: "the same limitations as a standard CloudWatch Logs event").
- Timestamps: the CloudWatch User Guide, "Amazon CloudWatch concepts", *Time stamps*
  (cloudwatch_concepts.html#about_timestamp): CloudWatch accepts metric data stamped up to two
  weeks in the past and up to two hours into the future of when it receives it; the CloudWatch
  agent reference and ``PutLogEvents`` skip or reject log events older than 14 days or more than
  2 hours ahead likewise; aws-embedded-metrics validates an EMF timestamp against the same
  bounds (``constants.MAX_TIMESTAMP_PAST_AGE``/``MAX_TIMESTAMP_FUTURE_AGE``,
  ``validator.validate_timestamp``). The EMF specification's ``_aws.Timestamp`` is a JSON number
  of milliseconds since 1970-01-01T00:00:00Z; CloudWatch Logs event timestamps are a Long with a
  minimum of 0 (``InputLogEvent``); ISO 8601 times, in which the CloudWatch API speaks, end at
  year 9999.

Used by the emitters (settings are checked at ``configure()``, values coming from the
application are sanitised) and meant for offline tools (``alarms``) that warn about metrics
CloudWatch would drop.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from aws_embedded_metrics import constants as _emf
from aws_embedded_metrics.storage_resolution import StorageResolution
from aws_embedded_metrics.unit import Unit

__all__ = [
    "MAX_DIMENSIONS_PER_METRIC",
    "MAX_DIMENSION_NAME_LENGTH",
    "MAX_DIMENSION_VALUE_LENGTH",
    "MAX_LOG_EVENT_BYTES",
    "MAX_LOG_GROUP_NAME_LENGTH",
    "MAX_METRICS_PER_DIRECTIVE",
    "MAX_METRIC_NAME_LENGTH",
    "MAX_NAMESPACE_LENGTH",
    "MAX_TIMESTAMP_FUTURE_S",
    "MAX_TIMESTAMP_MS",
    "MAX_TIMESTAMP_PAST_S",
    "MAX_VALUE",
    "MAX_VALUES_PER_METRIC",
    "MIN_MAGNITUDE",
    "UNITS",
    "dimension_name_problem",
    "dimension_value_problem",
    "log_group_problem",
    "metric_name_problem",
    "namespace_problem",
    "problems",
    "sanitize_dimension_value",
    "storage_resolution_problem",
    "timestamp_age_problem",
    "timestamp_problem",
    "unit_problem",
    "value_problem",
]

MAX_NAMESPACE_LENGTH = min(255, _emf.MAX_NAMESPACE_LENGTH)
MAX_DIMENSION_NAME_LENGTH = min(255, _emf.MAX_DIMENSION_NAME_LENGTH)  # 250
MAX_DIMENSION_VALUE_LENGTH = min(1024, _emf.MAX_DIMENSION_VALUE_LENGTH)
MAX_METRIC_NAME_LENGTH = min(255, _emf.MAX_DIMENSION_NAME_LENGTH)  # the EMF library uses 250
MAX_DIMENSIONS_PER_METRIC = _emf.MAX_DIMENSION_SET_SIZE  # 30
MAX_METRICS_PER_DIRECTIVE = _emf.MAX_METRICS_PER_EVENT  # 100
MAX_VALUES_PER_METRIC = _emf.MAX_DATAPOINTS_PER_METRIC  # 100
MAX_LOG_GROUP_NAME_LENGTH = 512
#: UTF-8 bytes of one CloudWatch Logs event's message: 1 MB per batch less the 26 bytes counted
#: per event (PutLogEvents).
MAX_LOG_EVENT_BYTES = 1_048_576 - 26
MAX_VALUE = 2.0**360
MIN_MAGNITUDE = 2.0**-360
UNITS: frozenset[str] = frozenset(u.value for u in Unit)
#: How far before / after its ingestion CloudWatch accepts a metric's timestamp (14 days, 2 h).
MAX_TIMESTAMP_PAST_S = _emf.MAX_TIMESTAMP_PAST_AGE // 1000
MAX_TIMESTAMP_FUTURE_S = _emf.MAX_TIMESTAMP_FUTURE_AGE // 1000
#: The last millisecond an EMF timestamp can name: 9999-12-31T23:59:59.999Z.
MAX_TIMESTAMP_MS = 253_402_300_799_999

_NAMESPACE = re.compile(_emf.VALID_NAMESPACE_REGEX)
_LOG_GROUP = re.compile(r"[.\-_/#A-Za-z0-9]+")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
#: What sanitising replaces a value with when nothing usable is left.
BLANK_VALUE = "_blank"


def _text_problem(what: str, value: object, max_length: int) -> str | None:
    if not isinstance(value, str):
        return f"{what} must be a string, not {type(value).__name__}"
    if not value.strip():
        return f"{what} must include at least one non-whitespace character"
    if len(value) > max_length:
        return f"{what} is {len(value)} characters long (at most {max_length})"
    if not value.isascii():
        return f"{what} must contain only ASCII characters"
    if not _PRINTABLE_ASCII.fullmatch(value):
        return f"{what} must not contain ASCII control characters"
    return None


def namespace_problem(namespace: object) -> str | None:
    """Why CloudWatch would reject ``namespace`` (``None``: accepted)."""
    problem = _text_problem("a namespace", namespace, MAX_NAMESPACE_LENGTH)
    if problem:
        return problem
    assert isinstance(namespace, str)
    if not _NAMESPACE.fullmatch(namespace):
        return "a namespace may contain only 0-9 A-Z a-z . - _ / # :"
    if namespace.startswith(":"):
        return "a namespace must not start with ':'"
    if namespace.startswith("AWS/"):
        return "namespaces starting with 'AWS/' are reserved for AWS"
    return None


def dimension_name_problem(name: object) -> str | None:
    """Why CloudWatch would reject the dimension name ``name`` (``None``: accepted)."""
    problem = _text_problem("a dimension name", name, MAX_DIMENSION_NAME_LENGTH)
    if problem:
        return problem
    if str(name).startswith(":"):
        return "a dimension name must not start with ':'"
    return None


def dimension_value_problem(value: object) -> str | None:
    """Why CloudWatch would reject the dimension value ``value`` (``None``: accepted)."""
    return _text_problem("a dimension value", value, MAX_DIMENSION_VALUE_LENGTH)


def metric_name_problem(name: object) -> str | None:
    """Why CloudWatch would reject the metric name ``name`` (``None``: accepted)."""
    return _text_problem("a metric name", name, MAX_METRIC_NAME_LENGTH)


def value_problem(value: object) -> str | None:
    """Why CloudWatch would reject the metric value ``value``: not a number, NaN or infinite,
    magnitude above 2^360 or non-zero below 2^-360 (``None``: accepted)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"a metric value must be a number, not {type(value).__name__}"
    try:
        v = float(value)
    except OverflowError:
        return "a metric value must be within -2^360..2^360"
    if not math.isfinite(v):
        return "a metric value must be finite (no NaN or infinity)"
    magnitude = abs(v)
    if magnitude > MAX_VALUE:
        return "a metric value must be within -2^360..2^360"
    if 0.0 < magnitude < MIN_MAGNITUDE:
        return "a non-zero metric value must have a magnitude of at least 2^-360"
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def timestamp_problem(timestamp_ms: object) -> str | None:
    """Why an EMF ``_aws.Timestamp`` is no time at all (``None``: it is one): not a JSON number
    (a string, a boolean, null, ...), NaN or infinite, negative (before 1970), or after the year
    9999 (:data:`MAX_TIMESTAMP_MS`). Integral floats (``1.8e12``) and fractions of a
    millisecond are numbers like any other. Whether CloudWatch accepts the time depends on when
    it ingests the line: :func:`timestamp_age_problem`. The reasons (``"is after the year
    9999"``) follow the word "timestamp" and name kinds, not values, to be counted together."""
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int | float):
        return f"must be a number of milliseconds, not {_json_type(timestamp_ms)}"
    if isinstance(timestamp_ms, float) and not math.isfinite(timestamp_ms):
        return "must be a finite number of milliseconds, not NaN or infinity"
    if timestamp_ms < 0:
        return "is negative (before 1970)"
    if timestamp_ms > MAX_TIMESTAMP_MS:
        return "is after the year 9999"
    return None


def timestamp_age_problem(
    timestamp_s: float, ingested_s: float, ingested_until_s: float | None = None
) -> str | None:
    """Why CloudWatch would reject metric data stamped ``timestamp_s`` (epoch seconds) that it
    ingested at ``ingested_s``, or at some time from ``ingested_s`` to ``ingested_until_s`` when
    the ingestion time is only known to lie in that interval: more than
    :data:`MAX_TIMESTAMP_PAST_S` (14 days) before the earliest possible ingestion, or more than
    :data:`MAX_TIMESTAMP_FUTURE_S` (2 hours) after the latest (``None``: accepted; else e.g.
    ``"is more than 14 days before ingestion"``)."""
    until = ingested_s if ingested_until_s is None else ingested_until_s
    if timestamp_s < ingested_s - MAX_TIMESTAMP_PAST_S:
        return f"is more than {MAX_TIMESTAMP_PAST_S // 86400} days before ingestion"
    if timestamp_s > until + MAX_TIMESTAMP_FUTURE_S:
        return f"is more than {MAX_TIMESTAMP_FUTURE_S // 3600} hours after ingestion"
    return None


def unit_problem(unit: object) -> str | None:
    """Why CloudWatch would reject ``unit`` (``None``: one of the standard units)."""
    return None if unit in UNITS else f"{unit!r} is not a CloudWatch unit"


def storage_resolution_problem(resolution: object) -> str | None:
    """Why EMF would reject a ``StorageResolution`` (only 1 and 60 exist)."""
    allowed = {r.value for r in StorageResolution}
    return None if resolution in allowed else f"storage resolution must be one of {allowed}"


def log_group_problem(name: object) -> str | None:
    """Why CloudWatch Logs would reject the log group name ``name`` (``None``: accepted)."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_LOG_GROUP_NAME_LENGTH:
        return f"a log group name must be 1-{MAX_LOG_GROUP_NAME_LENGTH} characters"
    if not _LOG_GROUP.fullmatch(name):
        return "a log group name may contain only A-Z a-z 0-9 . - _ / #"
    return None


def problems(
    namespace: object,
    metric_name: object,
    dimensions: Mapping[object, object],
    value: object = None,
    unit: object = None,
) -> list[str]:
    """Every reason CloudWatch would reject (or silently drop) one metric datum; ``[]`` when
    accepted. ``dimensions`` maps dimension names to values; ``value``/``unit`` are checked when
    given."""
    out: list[str] = []
    for problem in (namespace_problem(namespace), metric_name_problem(metric_name)):
        if problem:
            out.append(problem)
    if len(dimensions) > MAX_DIMENSIONS_PER_METRIC:
        out.append(f"{len(dimensions)} dimensions (at most {MAX_DIMENSIONS_PER_METRIC} per metric)")
    for name, dim_value in dimensions.items():
        problem = dimension_name_problem(name)
        if problem:
            out.append(f"{name!r}: {problem}")
        problem = dimension_value_problem(dim_value)
        if problem:
            out.append(f"{name!r}={dim_value!r}: {problem}")
    if value is not None:
        problem = value_problem(value)
        if problem:
            out.append(problem)
    if unit is not None:
        problem = unit_problem(unit)
        if problem:
            out.append(problem)
    return out


def sanitize_dimension_value(value: str) -> str:
    """A value CloudWatch accepts, as close to ``value`` as possible: non-ASCII characters and
    control characters percent-encoded as UTF-8 (``/ポイント`` -> ``/%E3%83%9D...``), cut at
    1024 characters, ``_blank`` when nothing but whitespace is left. Returns ``value`` itself
    when it is already accepted."""
    if dimension_value_problem(value) is None:
        return value
    text = str(value)
    out = "".join(
        c if " " <= c <= "~" else "".join(f"%{b:02X}" for b in c.encode("utf-8", "replace"))
        for c in text
    )
    out = out[:MAX_DIMENSION_VALUE_LENGTH]
    return out if out.strip() else BLANK_VALUE
