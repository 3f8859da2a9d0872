"""EMF decoding, in one place: log files and lines (plain EMF, CloudWatch Logs export records,
prefixed lines, the AWS CLI's ``filter-log-events`` output) into EMF objects, and the values of
one metric into samples. The evaluator, the ``replay`` CLI and the rehearsal's collector all read
EMF through this module."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from ._io import InputError

Samples = list[tuple[float, float]]  # (value, count)


def decode_line(line: str | bytes) -> dict[str, Any] | None:
    """The EMF object in ``line`` or ``None`` if the line holds none.

    Accepts a plain EMF JSON line; a CloudWatch Logs export record whose ``message`` field holds
    the EMF JSON (``filter-log-events``/subscription shape); and a line prefixed by a timestamp
    and a tab or space (the S3 export shape).
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if "_aws" not in line:  # cheap: JSON logs and other lines are not parsed at all
        return None
    text = line.strip()
    if not text:
        return None
    if text[0] != "{":
        brace = text.find("{")
        if brace < 0:
            return None
        text = text[brace:]
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    if "_aws" in obj:
        return obj
    message = obj.get("message")
    if isinstance(message, str) and "_aws" in message:
        try:
            inner = json.loads(message)
        except ValueError:
            return None
        return inner if isinstance(inner, dict) and "_aws" in inner else None
    return None


def _stat_set(value: dict[str, Any]) -> tuple[float, float, float, float] | None:
    try:
        stats = tuple(float(value[k]) for k in ("Count", "Sum", "Min", "Max"))
    except (KeyError, TypeError, ValueError):
        return None
    return stats if all(math.isfinite(x) for x in stats) else None  # type: ignore[return-value]


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
        return ([(float(value), 1.0)], None) if math.isfinite(value) else None
    if isinstance(value, list):
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                return None
            out.append((float(v), 1.0))
        return out, None
    if not isinstance(value, dict):
        return None
    stats = _stat_set(value)
    values = value.get("Values")
    if not isinstance(values, list):
        return ([], stats) if stats is not None else None
    counts = value.get("Counts")
    if counts is None:
        counts = [1.0] * len(values)
    if not isinstance(counts, list) or len(counts) != len(values):
        return None
    out = []
    for v, c in zip(values, counts, strict=True):
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or not math.isfinite(v)
            or isinstance(c, bool)
            or not isinstance(c, int | float)
            or not 0 <= c < math.inf
        ):
            return None
        if c:
            out.append((float(v), float(c)))
    return out, stats


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


def _events_document(f: TextIO) -> list[Any] | None:
    """The records of a whole-file JSON document, as ``aws logs filter-log-events`` /
    ``get-log-events`` print it (``{"events": [...]}``, pretty-printed) or ``--query events``
    (a JSON array); None for line-oriented input (the file is rewound)."""
    first = f.readline()
    f.seek(0)
    head = first.strip()
    if not (head in ("{", "[") or head.startswith(('{"events"', "[{"))):
        return None  # one JSON object per line (plain EMF or export records)
    try:
        doc = json.load(f)
    except ValueError:
        f.seek(0)
        return None
    events = doc.get("events") if isinstance(doc, dict) else doc
    return events if isinstance(events, list) else None


def read_lines(paths: Sequence[str]) -> Iterator[str]:
    """The log lines of ``paths`` (``-`` = stdin), each AWS CLI event as its ``message`` line.

    Raises InputError for a file that cannot be read."""
    for path in paths:
        if path == "-":
            yield from sys.stdin
            continue
        try:
            f: TextIO = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        with f:
            try:
                events = _events_document(f)
            except OSError as exc:  # e.g. a directory
                raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
            if events is None:
                yield from f
            else:
                # each event is an export record: its "message" holds the line
                for e in events:
                    message = e.get("message") if isinstance(e, dict) else None
                    yield message if isinstance(message, str) else ""
