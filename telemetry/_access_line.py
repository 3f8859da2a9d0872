"""A request's access line: its fields (for a ``LogRecord``) and its JSON text.

The request thread only captures the values (:func:`render`'s arguments, one tuple); the output
writer thread renders the line with :func:`render`, straight into JSON text: the same document
as the ``LogRecord`` path gives (:func:`fields` through :class:`telemetry._logging.JsonFormatter`,
key order included), in about half its time (70 % of its instructions). Every request costs
this once, on a thread that shares the GIL with the request threads
(``benchmarks/gunicorn_bench.py``).
"""

from __future__ import annotations

from opentelemetry import trace

from telemetry import _logging, _output

LOGGER = "telemetry.access"
#: Names an access line writes itself. An annotation (``telemetry.annotate``) of the same name
#: is left out of the line (it stays on the span): no field appears twice in a line, and no
#: request can overwrite its line's time, level, ids or status.
RESERVED = frozenset(
    {
        "time",
        "level",
        "message",
        "logger",
        "service",
        "version",
        "request_id",
        "trace_id",
        "span_id",
        "method",
        "route",
        "path",
        "status",
        "duration_ms",
        "bytes",
        "method_original",
        "fields_cut",
    }
)
_MAX_SIZE_DIGITS = 19  # a Content-Length longer than this is no size (int() refuses > 4300)
_esc = _logging._esc
_text = _logging._text
_routes: dict[str, str] = {}  # route template -> its JSON text (bounded)
_output_limit = _output._limit  # [bytes a writer may hold]: a line may take at most half


def body_bytes(size: str | None) -> int | None:
    """The response's ``Content-Length`` as a number, or None (absent or not a number)."""
    if size is not None and 0 < len(size) <= _MAX_SIZE_DIGITS and size.isascii() and size.isdigit():
        return int(size)
    return None


def fields(
    method: str,
    original: str | None,
    path: str,
    route: str,
    status: int,
    ms: float,
    size: str | None,
    extra: dict | None,
) -> tuple[str, dict[str, object]]:
    """An access line's message and fields (``extra``: the request's annotations)."""
    out: dict[str, object] = {
        "method": method,
        "route": route,
        "path": path,
        "status": status,
        "duration_ms": round(ms, 3),
        "bytes": body_bytes(size),
    }
    if original is not None:
        out["method_original"] = original
    if extra:
        for k, v in extra.items():
            if k not in RESERVED:
                out.setdefault(k, v)
    return f"{method} {path} {status}", out


_MILLIS = _logging._MILLIS


def render(
    fmt: _logging.JsonFormatter,
    created: float,
    level: str,
    request_id: str,
    span_context: trace.SpanContext | None,
    method: str,
    original: str | None,
    path: str,
    route: str,
    status: int,
    ms: float,
    size: str | None,
    extra: dict | None,
) -> str:
    """The access line as JSON text (``level``: the level's name). ``method`` is one of the
    known methods or ``_OTHER`` (:func:`telemetry.flask.normalize_method`): plain ASCII;
    ``request_id`` one the middleware accepted or made (``[A-Za-z0-9._:@/+=-]``, nothing a
    JSON string escapes). ``duration_ms`` is written with three decimals (the same number ``fields`` rounds to)."""
    route_json = _routes.get(route)
    if route_json is None:
        route_json = _esc(route) if route.isascii() else _text(route)
        if len(_routes) < 1024:
            _routes[route] = route_json
    path_json = _esc(path) if path.isascii() else _text(path)
    n: object = "null"  # body_bytes(size), inline: a line per request
    if size is not None and 0 < len(size) <= _MAX_SIZE_DIGITS and size.isdigit() and size.isascii():
        n = int(size)
    sec = int(created)  # fmt._time(created), inline
    second = fmt._second
    if second[0] != sec:
        second = fmt.second_text(sec)
    milli = int((created - sec) * 1000)
    ids = ""
    trace_id = span_context[0] if span_context is not None else 0  # SpanContext is a tuple
    if trace_id:
        # printf-style: half the cost of a format spec, on every request
        h = "%032x" % trace_id  # noqa: UP031
        ids = f', "trace_id": "1-{h[:8]}-{h[8:]}", "span_id": "{"%016x" % span_context[1]}"'  # noqa: UP031  # type: ignore[index]
    line = (
        f'{{"time": "{second[1]}.{_MILLIS[milli] if 0 <= milli < 1000 else f"{milli:03d}"}Z", '
        f'"level": "{level}", "message": "{method} {path_json[1:-1]} {status}"'
        f'{fmt._tails.get(LOGGER) or fmt.logger_tail(LOGGER)}, "request_id": "{request_id}"'
        f'{ids}, "method": "{method}", "route": {route_json}, "path": {path_json}, "status": '
        f'{status}, "duration_ms": {"%.3f" % ms}, "bytes": {n}'  # noqa: UP031
    )
    if original is not None or extra:
        parts = [line]
        if original is not None:
            parts.append(f', "method_original": {_text(original)}')
        if extra:
            for k, v in extra.items():
                if k not in RESERVED:
                    parts.append(f", {_logging._key(k)}: {_logging._value(v)}")
        line = "".join(parts)
    length = len(line)
    if length >= _logging.MAX_LINE_BYTES or length + length >= _output_limit[0]:
        # a long path or annotations: cut as any record is
        message, values = fields(method, original, path, route, status, ms, size, extra)
        doc = fmt.core(created, level, message, LOGGER)
        doc["request_id"] = request_id
        if trace_id:
            doc["trace_id"] = _logging.xray_trace_id(trace_id)
            doc["span_id"] = f"{span_context[1]:016x}"  # type: ignore[index]
        doc.update(values)
        return _logging.fit(doc)
    return line + "}"
