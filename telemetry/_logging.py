"""JSON lines on the standard ``logging`` module.

Every string goes through the stdlib JSON encoder's ASCII escaper, so a newline, quote or control
character in user input is escaped by construction: no input can end a line early or add a field.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

from opentelemetry import trace

from telemetry import _context, _errors
from telemetry.sinks import OUTPUT_LOCK

# attributes every LogRecord has; anything else was passed with ``extra=`` and is logged
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "telemetry"}
_fallback = json.JSONEncoder(default=str).encode  # ensure_ascii: U+2028 etc. escaped too
_esc: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_repr_int = int.__repr__
_repr_float = float.__repr__


def _value(v: object) -> str:
    t = type(v)
    if t is str:
        return _esc(v)
    if t is int:
        return _repr_int(v)
    if t is float:
        return _repr_float(v) if math.isfinite(v) else _esc(_repr_float(v))  # "nan": valid JSON
    if v is None:
        return "null"
    if t is bool:
        return "true" if v else "false"
    return _fallback(v)


def _encode(doc: dict[str, object]) -> str:
    """``json.dumps(doc, default=str)`` for a flat document, ~2x faster (the stdlib builds a
    new C encoder per call). Strings go through the stdlib's own ASCII escaper, so the result
    is the same JSON; other values (dicts, lists, other types) fall back to the stdlib."""
    return "{" + ", ".join(f"{_value(str(k))}: {_value(v)}" for k, v in doc.items()) + "}"


def xray_trace_id(trace_id: int) -> str:
    """An OpenTelemetry trace id in X-Ray form: ``1-<8 hex epoch>-<24 hex>``."""
    h = f"{trace_id:032x}"
    return f"1-{h[:8]}-{h[8:]}"


class JsonFormatter(logging.Formatter):
    """time, level, message, logger, service, version, request_id, trace_id, span_id + extras."""

    def __init__(self, service: str = "", version: str = "") -> None:
        super().__init__()
        self.service, self.version = service, version
        self.service_json, self.version_json = _esc(service), _esc(version)
        self._sec = -1
        self._sec_text = ""

    def _time(self, created: float) -> str:
        sec = int(created)
        if sec != self._sec:  # strftime once per second
            self._sec_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
            self._sec = sec
        return f"{self._sec_text}.{int((created - sec) * 1000):03d}Z"

    def document(self, created: float, level: str, message: str, logger: str) -> dict[str, object]:
        """The core fields plus request id, trace id and span id of the current context."""
        doc: dict[str, object] = {
            "time": self._time(created),
            "level": level,
            "message": message,
            "logger": logger,
            "service": self.service,
            "version": self.version,
        }
        scope = _context.current.get()
        if scope is not None:
            doc["request_id"] = scope.request_id
            if scope.fields:
                for k, v in scope.fields.items():
                    doc.setdefault(k, v)
        ctx = trace.get_current_span().get_span_context()
        if ctx.trace_id:
            doc["trace_id"] = xray_trace_id(ctx.trace_id)
            doc["span_id"] = f"{ctx.span_id:016x}"
        return doc

    def format(self, record: logging.LogRecord) -> str:
        doc = self.document(record.created, record.levelname, record.getMessage(), record.name)
        fields = record.__dict__.get("telemetry")
        if fields:
            for k, v in fields.items():
                doc.setdefault(k, v)
        for k, v in record.__dict__.items():
            if k not in _STANDARD and k not in doc:
                doc[k] = v
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        return _encode(doc)


class JsonHandler(logging.Handler):
    """Writes formatted lines to ``sys.stdout`` (looked up per line); failures are counted."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream

    def handle(self, record: logging.LogRecord) -> bool:  # no per-handler lock: OUTPUT_LOCK
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except RecursionError:  # pragma: no cover - as logging.Handler does
            raise
        except Exception as exc:
            _errors.record("log", repr(exc))

    def write(self, line: str) -> None:
        stream = self.stream or sys.stdout
        with OUTPUT_LOCK:
            stream.write(line + "\n")
            stream.flush()

    def emit_fields(self, level: int, message: str, logger: str, fields: dict) -> None:
        """An access line without building a ``LogRecord`` (used only when the logging
        configuration makes the result identical: see :func:`direct_handler`)."""
        try:
            fmt: JsonFormatter = self.formatter  # type: ignore[assignment]
            scope = _context.current.get()
            if scope is not None and scope.fields:  # inside a job: the general path
                doc = fmt.document(time.time(), logging.getLevelName(level), message, logger)
                for k, v in fields.items():
                    doc.setdefault(k, v)
                self.write(_encode(doc))
                return
            # the same document as format() gives, written out directly (the key order too)
            parts = [
                f'{{"time": "{fmt._time(time.time())}", "level": "{logging.getLevelName(level)}"'
                f', "message": {_esc(message)}, "logger": {_esc(logger)}'
                f', "service": {fmt.service_json}, "version": {fmt.version_json}'
            ]
            if scope is not None:
                parts.append(f', "request_id": {_esc(scope.request_id)}')
            ctx = trace.get_current_span().get_span_context()
            if ctx.trace_id:
                parts.append(
                    f', "trace_id": "{xray_trace_id(ctx.trace_id)}", "span_id": "{ctx.span_id:016x}"'
                )
            for k, v in fields.items():
                parts.append(f", {_esc(k)}: {_value(v)}")
            parts.append("}")
            self.write("".join(parts))
        except Exception as exc:
            _errors.record("log", repr(exc))


def direct_handler(logger: logging.Logger, level: int) -> JsonHandler | None:
    """Our handler, if a record from ``logger`` at ``level`` would reach exactly it and nothing
    else (no filters, no other handlers); then the caller may skip the ``LogRecord``."""
    if logger.handlers or logger.filters or not logger.propagate or logger.disabled:
        return None
    parent = logger.parent
    while parent is not None and parent.parent is not None:  # up to, not including, the root
        if parent.handlers or parent.filters or not parent.propagate or parent.disabled:
            return None
        parent = parent.parent
    root = logging.root
    handlers = root.handlers
    if len(handlers) != 1 or root.filters:
        return None
    h = handlers[0]
    if type(h) is not JsonHandler or h.filters or level < h.level:
        return None
    return h


def install(service: str, version: str, level: str, stream: TextIO | None = None) -> JsonHandler:
    """Put one JSON handler on the root logger (replacing a previous one of ours)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, JsonHandler):
            root.removeHandler(h)
    handler = JsonHandler(stream)
    handler.setFormatter(JsonFormatter(service, version))
    root.addHandler(handler)
    try:
        root.setLevel(level)
    except (TypeError, ValueError):
        _errors.record("config", f"TELEMETRY_LOG_LEVEL={level!r} is not a level; using INFO")
        root.setLevel(logging.INFO)
    return handler
