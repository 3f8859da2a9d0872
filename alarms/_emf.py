"""EMF decoding, in one place: log files and lines (plain EMF, CloudWatch Logs export records,
prefixed lines, the AWS CLI's ``filter-log-events`` output) into EMF objects, and the values of
one metric into samples. The evaluator, the ``replay`` CLI and the rehearsal's collector all read
EMF through this module."""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from telemetry import cloudwatch_rules as _rules

from ._io import InputError

Samples = list[tuple[float, float]]  # (value, count)

#: CloudWatch's value range (telemetry.cloudwatch_rules): a value outside it, NaN or infinite is
#: rejected, so the evaluator must not count it either.
_MAX = _rules.MAX_VALUE
_TINY = _rules.MIN_MAGNITUDE
MAX_DIMENSIONS_PER_METRIC = _rules.MAX_DIMENSIONS_PER_METRIC
#: The EMF specification: at most 100 MetricDefinitions per directive (CloudWatch extracts no
#: metric from a document with more: EMFValidationErrors) and 100 values per metric.
MAX_METRICS_PER_DIRECTIVE = _rules.MAX_METRICS_PER_DIRECTIVE
MAX_VALUES_PER_METRIC = _rules.MAX_VALUES_PER_METRIC
MAX_EVENT_BYTES = _rules.MAX_LOG_EVENT_BYTES


def _accepted(v: float) -> bool:
    # NaN fails both comparisons; checked inline on the hot path (one call per value).
    return -_MAX <= v <= _MAX and not (v and -_TINY < v < _TINY)


def decode_line(line: str | bytes) -> dict[str, Any] | None:
    """The EMF object in ``line`` or ``None`` if the line holds none.

    Accepts a plain EMF JSON line; a CloudWatch Logs export record whose ``message`` field holds
    the EMF JSON (``filter-log-events``/subscription shape); and a line prefixed by a timestamp
    and a tab or space (the S3 export shape).
    """
    return decode_event(line)[0]


def decode_event(line: str | bytes) -> tuple[dict[str, Any] | None, bool]:
    """``(the EMF object in line or None, whether its log event is larger than CloudWatch Logs
    takes)``: :func:`decode_line` plus the size of the event that holds the EMF JSON (the line,
    or an export record's ``message``) against :data:`MAX_EVENT_BYTES`."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            return None, False
    if "_aws" not in line:  # cheap: JSON logs and other lines are not parsed at all
        return None, False
    text = line.strip()
    if not text:
        return None, False
    if text[0] != "{":
        brace = text.find("{")
        if brace < 0:
            return None, False
        text = text[brace:]
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested thousands of levels deep
        return None, False
    if not isinstance(obj, dict):
        return None, False
    if "_aws" in obj:
        return obj, _too_large(text)
    message = obj.get("message")
    if isinstance(message, str) and "_aws" in message:
        try:
            inner = json.loads(message)
        except (ValueError, RecursionError):
            return None, False
        if isinstance(inner, dict) and "_aws" in inner:
            return inner, _too_large(message)
    return None, False


def _too_large(text: str) -> bool:
    """True if ``text`` is more UTF-8 bytes than one CloudWatch Logs event holds; encoded only
    when its length leaves it in doubt (a character is 1 to 4 bytes)."""
    n = len(text)
    if n * 4 <= MAX_EVENT_BYTES:
        return False
    return n > MAX_EVENT_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_EVENT_BYTES


def _stat_set(value: dict[str, Any]) -> tuple[float, float, float, float] | bool | None:
    """``(count, sum, min, max)``; None without a statistic set; False for one CloudWatch would
    reject (NaN, infinite, beyond 2^360)."""
    try:
        stats = tuple(float(value[k]) for k in ("Count", "Sum", "Min", "Max"))
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    count, total, lo, hi = stats
    ok = _accepted(count) and _accepted(total) and _accepted(lo) and _accepted(hi)
    return stats if ok else False  # type: ignore[return-value]


def samples(value: Any) -> tuple[Samples, tuple[float, float, float, float] | None] | None:
    """Samples of one metric value, or ``None`` if the value is malformed.

    Returns ``(samples, stats)``: ``samples`` as ``(value, count)`` pairs from a number, an
    array of numbers or ``{"Values", "Counts"}``; ``stats`` = ``(count, sum, min, max)`` when the
    object carries ``Count``/``Sum``/``Min``/``Max`` (then those exact figures give SampleCount,
    Sum, Average, Minimum and Maximum, and the Values/Counts pairs give percentiles), else None.
    A statistic set without ``Values`` gives no samples: percentiles are unavailable.
    """
    # json.loads accepts NaN and Infinity; CloudWatch rejects such values, so a record is bad.
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return ([(float(value), 1.0)], None) if _accepted(value) else None
    if isinstance(value, list):
        if len(value) > MAX_VALUES_PER_METRIC:
            return None
        out = []
        top, tiny = _MAX, _TINY
        for v in value:
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or not -top <= v <= top  # inline _accepted: one call per value costs
                or (v and -tiny < v < tiny)
            ):
                return None
            out.append((float(v), 1.0))
        return out, None
    if not isinstance(value, dict):
        return None
    stats = _stat_set(value)
    if stats is False:
        return None
    values = value.get("Values")
    if not isinstance(values, list):
        return ([], stats) if stats is not None else None
    counts = value.get("Counts")
    if counts is None:
        counts = [1.0] * len(values)
    if (
        not isinstance(counts, list)
        or len(counts) != len(values)
        or len(values) > MAX_VALUES_PER_METRIC
    ):
        return None
    out = []
    top, tiny = _MAX, _TINY
    for v, c in zip(values, counts, strict=True):
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or not -top <= v <= top  # inline _accepted: one call per value costs
            or (v and -tiny < v < tiny)
            or isinstance(c, bool)
            or not isinstance(c, int | float)
            or not 0 <= c < math.inf
        ):
            return None
        if c:
            out.append((float(v), float(c)))
    return out, stats


def value_rejection(value: Any) -> str | None:
    """Why CloudWatch would reject a metric value that :func:`samples` refused: an array of more
    than 100 values, NaN, infinite or beyond 2^360 (``telemetry.cloudwatch_rules.value_problem``); ``None`` when the value is
    malformed for another reason (wrong type, counts that do not match), not a CloudWatch limit.
    Only called for refused values, so the hot path pays nothing for it."""
    array = value.get("Values") if isinstance(value, dict) else value
    if isinstance(array, list) and len(array) > MAX_VALUES_PER_METRIC:
        return f"{len(array)} values (the EMF specification: at most {MAX_VALUES_PER_METRIC})"
    if isinstance(value, dict):
        items = list(value.get("Values") or []) if isinstance(value.get("Values"), list) else []
        items += [value.get(k) for k in ("Count", "Sum", "Min", "Max")]
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    for v in items:
        if isinstance(v, int | float) and not isinstance(v, bool):
            try:
                problem = _rules.value_problem(v)
            except OverflowError:  # an int too large for a float
                problem = "a metric value must be within -2^360..2^360"
            if problem:
                return problem
    return None


class CloudWatchCheck:
    """What CloudWatch would reject in EMF directives (``telemetry.cloudwatch_rules``): the
    namespace, metric names, dimension names and values. Answers are cached per distinct input
    (bounded), so a replay pays one dictionary lookup per name."""

    _MAX_CACHED = 10_000

    def __init__(self) -> None:
        self._cache: dict[tuple[str, object], str | None] = {}

    def _problem(self, kind: str, value: object) -> str | None:
        # a non-string by its type and text: the number 2 is not the string "2"
        key = (kind, value if isinstance(value, str) else (type(value).__name__, repr(value)))
        try:
            return self._cache[key]
        except KeyError:
            pass
        if kind == "namespace":
            problem = _rules.namespace_problem(value)
        elif kind == "metric":
            problem = _rules.metric_name_problem(value)
        elif kind == "dimension":
            problem = _rules.dimension_name_problem(value)
        else:
            problem = _rules.dimension_value_problem(value)
        if problem:
            problem = f"{short_repr(value)}: {problem}"
        if len(self._cache) >= self._MAX_CACHED:
            self._cache.clear()  # bounded: hostile input with ever new values cannot grow it
        self._cache[key] = problem
        return problem

    def namespace(self, namespace: str) -> str | None:
        """Why CloudWatch would reject ``namespace`` (``None``: accepted)."""
        return self._problem("namespace", namespace)

    def metric_name(self, name: str) -> str | None:
        """Why CloudWatch would reject the metric name ``name`` (``None``: accepted)."""
        return self._problem("metric", name)

    def dimension(self, name: object, value: object) -> str | None:
        """Why CloudWatch would reject the dimension ``name`` = ``value`` (``None``: accepted).
        A name or value that is not a JSON string (``2``, ``true``, ``null``, an array, an
        object) is rejected: the EMF specification's dimension names are strings and "the
        target member MUST have a string value"; CloudWatch Logs extracts no metric for it."""
        return self._problem("dimension", name) or self._problem("value", value)


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def timestamp_ms(obj: dict[str, Any]) -> tuple[Any, str | None]:
    """``(the raw _aws.Timestamp, why it is no time or None)`` of an EMF object: a JSON number
    of milliseconds from 1970 to the year 9999 (``telemetry.cloudwatch_rules.timestamp_problem``);
    ``(None, "is missing")`` without one."""
    aws = obj.get("_aws")
    if not isinstance(aws, dict) or "Timestamp" not in aws:
        return None, "is missing"
    raw = aws["Timestamp"]
    return raw, _rules.timestamp_problem(raw)


def timestamp_s(obj: dict[str, Any]) -> float | None:
    """The time of an EMF object in epoch seconds, ``None`` if its timestamp is no time."""
    raw, problem = timestamp_ms(obj)
    return None if problem else raw / 1000.0


def metric_values(obj: dict[str, Any]) -> int:
    """How many metric values CloudWatch would extract from an EMF object: each named metric once
    per dimension set (once without dimensions), as the evaluator counts what it rejects."""
    n = 0
    for d in directives(obj):
        metrics, dimsets = d.get("Metrics"), d.get("Dimensions") or [[]]
        if isinstance(metrics, list) and isinstance(dimsets, list):
            named = sum(
                1 for m in metrics if isinstance(m, dict) and isinstance(m.get("Name"), str)
            )
            n += named * max(1, len(dimsets))
    return n


def directives(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The ``CloudWatchMetrics`` directives of an EMF object (malformed ones skipped)."""
    aws = obj.get("_aws")
    if not isinstance(aws, dict):
        return
    cwm = aws.get("CloudWatchMetrics")
    if not isinstance(cwm, list):
        return
    for d in cwm:
        if isinstance(d, dict):
            yield d


def _events_document(text: str) -> list[Any] | None:
    """The records of a whole-file JSON document, as ``aws logs filter-log-events`` /
    ``get-log-events`` print it (``{"events": [...]}``, pretty-printed) or ``--query events``
    (a JSON array); None when ``text`` is no such document (then it is read line by line)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    events = doc.get("events") if isinstance(doc, dict) else doc
    return events if isinstance(events, list) else None


def _stream_lines(f: TextIO) -> Iterator[str]:
    """The lines of one stream, each AWS CLI event as its ``message`` line. Reads forward only
    (no seek), so stdin, a FIFO and ``<(zcat emf.jsonl.gz)`` work as a file does."""
    first = f.readline()
    head = first.strip()
    if not (head in ("{", "[") or head.startswith(('{"events"', "[{"))):
        # one JSON object per line (plain EMF or export records)
        if first:
            yield first
        yield from f
        return
    rest = f.read()  # a whole-file document: the JSON parser needs all of it anyway
    events = _events_document(first + rest)
    if events is None:
        yield first
        yield from io.StringIO(rest)
        return
    # each event is an export record: its "message" holds the line
    for e in events:
        message = e.get("message") if isinstance(e, dict) else None
        yield message if isinstance(message, str) else ""


def read_lines(paths: Sequence[str]) -> Iterator[str]:
    """The log lines of ``paths`` (``-`` = stdin), each AWS CLI event as its ``message`` line.

    Raises InputError for a file that cannot be read."""
    for path in paths:
        if path == "-":
            # read as the files are: UTF-8, an undecodable byte replaced, whatever the locale
            # (suppressed: stdin replaced by a non-TextIOWrapper, or already read from)
            with contextlib.suppress(AttributeError, ValueError, OSError):
                sys.stdin.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
            yield from _stream_lines(sys.stdin)
            continue
        try:
            f: TextIO = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        with f:
            try:
                yield from _stream_lines(f)
            except OSError as exc:  # e.g. a directory
                raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
