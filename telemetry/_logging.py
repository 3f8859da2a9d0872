"""JSON lines on the standard ``logging`` module.

Every string goes through the stdlib JSON encoder's ASCII escaper, so a newline, quote or control
character in user input is escaped by construction: no input can end a line early or add a field.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import TextIO

from opentelemetry import trace

from telemetry import _context, _errors, _output
from telemetry import environment_variables as ev

# attributes every LogRecord has; anything else was passed with ``extra=`` and is logged
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "telemetry"}
_esc: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_repr_int = int.__repr__
_repr_float = float.__repr__
_SURROGATE = re.compile("[\ud800-\udfff]")
_MILLIS = tuple(f"{i:03d}" for i in range(1000))  # a line's milliseconds, formatted once
#: ints outside +-2**64 are written as strings: most JSON readers (CloudWatch Logs Insights,
#: JavaScript) would silently round them, and ``int.__repr__`` refuses > 4300 digits.
_INT_LIMIT = 2**64
_MAX_DEPTH = 8
_MAX_ITEMS = 1000
#: The longest line a record becomes (CloudWatch Logs' event limit is 256 KB); never more than half
#: the output buffer, which would drop a longer line whole. Longer records have their longest
#: fields cut (see :func:`_fit`).
MAX_LINE_BYTES = 256 * 1024
_KEEP_CHARS = 2048
#: Fields never cut while others can be (short by construction).
_CORE = frozenset(
    {"time", "level", "logger", "service", "version", "request_id", "trace_id", "span_id"}
)


def _text(s: str) -> str:
    """A JSON string literal, ASCII only (U+2028 etc. escaped), lone surrogates (not valid
    Unicode, refused by strict JSON readers) replaced by U+FFFD."""
    if s.isascii():
        return _esc(s)
    return _esc(_SURROGATE.sub("\ufffd", s))


def _type_name(v: object) -> str:
    try:
        return type(v).__qualname__
    except Exception:  # pragma: no cover - a metaclass that refuses even that
        return "object"


def _safe_str(v: object) -> str:
    """``str(v)``, else ``repr(v)``, else ``<unprintable TYPE>``: never raises."""
    for fn in (str, repr):
        try:
            out = fn(v)
            if isinstance(out, str):
                return str.__str__(out)
        except Exception:
            pass
    return f"<unprintable {_type_name(v)}>"


def _big_int(v: int) -> str:
    try:
        return _esc(int.__str__(v))
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        return _esc(f"<int of about {int(v.bit_length() * 0.30103) + 1} digits>")


def _value(v: object) -> str:
    """JSON text for any value; never raises, never writes NaN/Infinity tokens."""
    t = type(v)
    if t is str:
        return _esc(v) if v.isascii() else _text(v)  # type: ignore[union-attr]
    if t is int:
        return _repr_int(v) if -_INT_LIMIT < v < _INT_LIMIT else _big_int(v)  # type: ignore[operator,arg-type]
    if t is float:
        return _repr_float(v) if math.isfinite(v) else _esc(_repr_float(v))  # "nan": valid JSON
    if v is None:
        return "null"
    if t is bool:
        return "true" if v else "false"
    return _slow(v, 0, set())


def _slow(v: object, depth: int, path: set[int]) -> str:
    """Containers (recursively, cycles and depth bounded) and other types."""
    try:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return _repr_int(v) if -_INT_LIMIT < v < _INT_LIMIT else _big_int(v)
        if isinstance(v, float):
            f = float(v)
            return _repr_float(f) if math.isfinite(f) else _esc(_repr_float(f))
        if isinstance(v, str):
            return _text(str.__str__(v))
        if v is None:
            return "null"
        if isinstance(v, bytes | bytearray | memoryview):
            return _text(bytes(v).decode("utf-8", "backslashreplace"))
        if isinstance(v, dict | list | tuple | set | frozenset):
            if id(v) in path:
                return _esc(f"<circular {_type_name(v)}>")
            if depth >= _MAX_DEPTH:
                return _esc(f"<{_type_name(v)} nested too deep>")
            path.add(id(v))
            try:
                if isinstance(v, dict):
                    items = []
                    for i, (k, x) in enumerate(v.items()):
                        if i >= _MAX_ITEMS:
                            items.append(f'"...": {_esc(f"{len(v) - i} more")}')
                            break
                        key = _text(k if type(k) is str else _safe_str(k))
                        items.append(f"{key}: {_slow(x, depth + 1, path)}")
                    return "{" + ", ".join(items) + "}"
                elems = []
                for i, x in enumerate(v):
                    if i >= _MAX_ITEMS:
                        elems.append(_esc(f"... {len(v) - i} more"))
                        break
                    elems.append(_slow(x, depth + 1, path))
                return "[" + ", ".join(elems) + "]"
            finally:
                path.discard(id(v))
    except Exception as exc:  # a container mutated while read, a failing __eq__/__hash__...
        return _esc(f"<{_type_name(v)} not encodable: {_safe_str(exc)}>")
    return _text(_safe_str(v))


def _encode(doc: dict[str, object]) -> str:
    """One JSON object on one line, whatever the values: ``json.dumps(doc, default=str)``
    without its failure modes (NaN/Infinity tokens, circular references, huge ints, objects
    whose ``__str__`` raises, lone surrogates), ~2x faster for flat documents."""
    return (
        "{"
        + ", ".join(
            f"{_esc(k) if type(k) is str and k.isascii() else _text(_safe_str(k))}: {_value(v)}"
            for k, v in doc.items()
        )
        + "}"
    )


def _cut(text: str, keep: int) -> str:
    if keep <= 0:
        return f"<cut: {len(text)} characters>"
    return f"{text[:keep]}...<cut: {len(text) - keep} of {len(text)} characters>"


def cut_long(text: str) -> str:
    """``text`` as a record shows it when it alone is longer than :func:`line_limit`: its first
    2048 characters and ``...<cut: N of M characters>``, what :func:`_fit` makes of it. For
    values held until a deferred line is rendered (access lines' annotations): a 5 MB one must
    neither be held nor count 5 MB against the buffer limit, which would drop the line."""
    return _cut(text, _KEEP_CHARS) if len(text) > line_limit() else text


def _fit(doc: dict[str, object], line: str) -> str:
    """``line`` (``_encode(doc)``) if it is at most :data:`MAX_LINE_BYTES` (and half the output
    buffer) long; else the record with its longest fields cut to their first 2048 characters
    (``...<cut: N of M characters>``; values that are not strings, as their JSON text), then to
    ``<cut: M characters>`` (the message keeps its first 2048), then only the core fields and
    the message with ``fields_cut``: a record is never dropped for its size (issue #11.10)."""
    limit = line_limit()
    if len(line) <= limit:
        return line
    sizes = {k: len(_value(v)) for k, v in doc.items() if k not in _CORE}
    for keep, spare in ((_KEEP_CHARS, ()), (0, ("message",))):
        excess = len(line) - limit
        for k in sorted(sizes, key=sizes.__getitem__, reverse=True):
            if excess <= 0:
                break
            if k in spare:
                continue
            v = doc[k]
            text = v if type(v) is str else _value(v)
            if len(text) <= keep + 64:
                continue
            doc[k] = _cut(text, keep)  # type: ignore[arg-type]
            new = len(_value(doc[k]))
            excess -= sizes[k] - new
            sizes[k] = new
        line = _encode(doc)
        if len(line) <= limit:
            return line
    kept = {
        k: v if len(_value(v)) <= _KEEP_CHARS else _cut(_safe_str(v), _KEEP_CHARS // 8)
        for k, v in doc.items()
        if k in _CORE or k == "message"
    }
    kept["fields_cut"] = len(doc) - len(kept)
    return _encode(kept)


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
        self._second: tuple[int, str] = (-1, "")  # one tuple: threads swap it atomically
        self._tails: dict[str, str] = {}

    def logger_tail(self, logger: str) -> str:
        """``, "logger": ..., "service": ..., "version": ...`` as JSON text, once per logger."""
        tails = self._tails
        tail = tails.get(logger)
        if tail is None:
            tail = (
                f', "logger": {_text(logger)}, "service": {self.service_json}'
                f', "version": {self.version_json}'
            )
            if len(tails) < 256:
                tails[logger] = tail
        return tail

    def second_text(self, sec: int) -> tuple[int, str]:
        """``(sec, "YYYY-MM-DDTHH:MM:SS")`` for ``sec`` (epoch seconds), remembered: lines
        format the time of their second once (they may come in from two threads)."""
        cached = self._second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
        return cached

    def _time(self, created: float) -> str:
        sec = int(created)
        cached = self._second
        if cached[0] != sec:
            cached = self.second_text(sec)
        ms = int((created - sec) * 1000)
        return f"{cached[1]}.{_MILLIS[ms] if 0 <= ms < 1000 else f'{ms:03d}'}Z"

    def core(self, created: float, level: str, message: str, logger: str) -> dict[str, object]:
        """time, level, message, logger, service and version."""
        return {
            "time": self._time(created),
            "level": level,
            "message": message,
            "logger": logger,
            "service": self.service,
            "version": self.version,
        }

    def document(self, created: float, level: str, message: str, logger: str) -> dict[str, object]:
        """The core fields plus request id, trace id and span id of the current context."""
        doc = self.core(created, level, message, logger)
        scope = _context.current_scope()
        if scope is not None:
            doc["request_id"] = scope.request_id
            if scope.fields:
                for k, v in scope.fields.items():
                    doc.setdefault(k, v)
        ctx = trace.get_current_span().get_span_context()
        if not ctx.trace_id and scope is not None and scope.span_context is not None:
            ctx = scope.span_context  # a request's streamed body: its span is detached by then
        if ctx.trace_id:
            doc["trace_id"] = xray_trace_id(ctx.trace_id)
            doc["span_id"] = f"{ctx.span_id:016x}"
        return doc

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object on one line; never raises, never drops the record: a field that
        cannot be encoded is replaced by a readable stand-in."""
        try:
            doc = self.document(record.created, record.levelname, _message(record), record.name)
            fields = record.__dict__.get("telemetry")
            if fields:
                for k, v in fields.items():
                    doc.setdefault(k, v)
            for k, v in record.__dict__.items():
                if k not in _STANDARD and k not in doc:
                    doc[k] = v
            if record.exc_info:
                doc["exception"] = _exception(self, record)
            elif record.exc_text:
                doc["exception"] = record.exc_text
            return _fit(doc, _encode(doc))
        except Exception as exc:  # pragma: no cover - the encoder does not raise; last resort
            _errors.record("log", repr(exc))
            return _encode(
                {
                    "time": self._time(time.time()),
                    "level": _safe_str(getattr(record, "levelname", "")),
                    "message": _safe_str(getattr(record, "msg", "")),
                    "logger": _safe_str(getattr(record, "name", "")),
                    "service": self.service,
                    "version": self.version,
                    "telemetry_error": _safe_str(exc),
                }
            )


def _message(record: logging.LogRecord) -> str:
    """``record.getMessage()``, or the unformatted message and a note when ``%`` formatting
    fails (wrong arguments, an argument whose ``__str__`` raises)."""
    try:
        return record.getMessage()
    except Exception as exc:
        return f"{_safe_str(record.msg)} <arguments not formatted: {_safe_str(exc)}>"


def _exception(fmt: logging.Formatter, record: logging.LogRecord) -> str:
    try:
        return fmt.formatException(record.exc_info)  # type: ignore[arg-type]
    except Exception as exc:
        return f"<exception not formatted: {_safe_str(exc)}>"


class JsonHandler(logging.Handler):
    """Formatted lines to ``sys.stdout`` (looked up per line) or ``stream`` through the
    non-blocking output buffer (:mod:`telemetry._output`); failures are counted."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream
        #: where its lines go; callers that checked :func:`direct_handler` and render a whole
        #: line themselves (access lines) queue it here with ``writer.write_deferred``
        self.writer = _output.writer_for(stream)

    def handle(self, record: logging.LogRecord) -> bool:  # no handler lock: the writer has one
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
        self.writer.write(line)


def line_limit() -> int:
    """The longest line a record becomes: :data:`MAX_LINE_BYTES`, at most half the output
    buffer (a longer line would be dropped whole)."""
    return min(MAX_LINE_BYTES, _output.max_bytes() // 2)


def fit(doc: dict[str, object]) -> str:
    """``doc`` as one JSON line of at most :func:`line_limit` characters (see :func:`_fit`)."""
    return _fit(doc, _encode(doc))


_keys: dict[str, str] = {}


def _key(k: str) -> str:
    """A field name as JSON text; the few names in use are encoded once."""
    text = _keys.get(k)
    if text is None:
        text = _esc(k) if type(k) is str and k.isascii() else _text(_safe_str(k))
        if len(_keys) < 1024:
            _keys[k] = text
    return text


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
        _errors.record("config", f"{ev.TELEMETRY_LOG_LEVEL}={level!r} is not a level; using INFO")
        root.setLevel(logging.INFO)
    return handler
