"""Access lines: the writer thread's direct rendering gives the very document the logging path
gives; no field appears twice; long lines are cut, never dropped; whole lines reach a shared pipe."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time

import flask
import pytest
from opentelemetry import trace

import telemetry
from telemetry import _access_line, _logging, _output
from telemetry.flask import instrument

from .conftest import Tel

SC = trace.SpanContext(0x5759E988BD862E3FE1BE46A994272793, 0x53995C3F42CD8AD8, False)
CREATED = 1_796_000_000.123


def _pairs(text: str) -> list[tuple[str, object]]:
    """The line's fields in order, duplicates kept (json.loads would keep only the last)."""
    out: list[tuple[str, object]] = []
    json.loads(text, object_pairs_hook=lambda pairs: out.extend(pairs) or dict(pairs))
    return out


def _via_logging(fmt: _logging.JsonFormatter, level: str, rid: str, sc, values: tuple) -> str:
    """The same line through the general path: core fields, ids, then fields (setdefault)."""
    message, fields = _access_line.fields(*values)
    doc = fmt.core(CREATED, level, message, _access_line.LOGGER)
    doc["request_id"] = rid
    if sc is not None:
        doc["trace_id"] = _logging.xray_trace_id(sc.trace_id)
        doc["span_id"] = f"{sc.span_id:016x}"
    for k, v in fields.items():
        doc.setdefault(k, v)
    return _logging.fit(doc)


CASES = {
    "plain": (
        "GET",
        None,
        "/v1/users/u-42/points",
        "/v1/users/<user_id>/points",
        200,
        1.2345678,
        "35",
        None,
    ),
    "unicode path": ("GET", None, "/users/\u5c71\u7530", "/users/<name>", 200, 0.1, "3", None),
    "undecodable path": ("GET", None, "/x/\ufffd\u2028\ud800", "UNMATCHED", 404, 12.0, None, None),
    "forging path": (
        "POST",
        None,
        '/a"\n{"level":"ERROR"}\\',
        "UNMATCHED",
        404,
        3.0004999,
        "0",
        None,
    ),
    "unknown method": ("_OTHER", 'BR"EW\n', "/pot", "UNMATCHED", 405, 0.0, "007", None),
    "server error": ("GET", None, "/boom", "/boom", 503, 1e6, "12345678901234567890123", None),
    "odd sizes": ("GET", None, "/s", "/s", 200, 5.0, "\u0663", None),
    "negative size": ("GET", None, "/s", "/s", 200, 5.0, "-1", None),
    "annotations": (
        "GET",
        None,
        "/r",
        "/r\n\u00e9",
        201,
        0.5,
        "2",
        {"user_id": "u-1", "wait_ms": 12.5, "ok": True, "n": 2**70, "nan": math.nan, "x": None},
    ),
    "reserved annotations": (
        "GET",
        None,
        "/r",
        "/r",
        200,
        0.5,
        "2",
        {
            "time": "evil",
            "trace_id": "forged",
            "status": 999,
            "level": "x",
            "message": "m",
            "ok": 1,
        },
    ),
}


@pytest.mark.parametrize("values", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("sc", [SC, None], ids=["traced", "untraced"])
def test_rendered_line_equals_the_logging_path(values: tuple, sc) -> None:
    fmt = _logging.JsonFormatter("svc", "v1")
    level = "ERROR" if values[4] >= 500 else "INFO"
    rid = "0123456789abcdef0123456789abcdef"
    fast = _access_line.render(fmt, CREATED, level, rid, sc, *values)
    slow = _via_logging(fmt, level, rid, sc, values)
    assert fast.isascii() and "\n" not in fast
    fast_pairs, slow_pairs = _pairs(fast), _pairs(slow)
    assert [k for k, _ in fast_pairs] == [k for k, _ in slow_pairs]  # same keys, same order
    assert dict(fast_pairs) == dict(slow_pairs) or math.isnan(values[5])
    keys = [k for k, _ in fast_pairs]
    assert len(keys) == len(set(keys))  # no field twice
    line = dict(fast_pairs)
    assert line["status"] == values[4] and line["path"] == dict(slow_pairs)["path"]


def test_annotations_cannot_overwrite_or_repeat_the_access_lines_own_fields(tel: Tel) -> None:
    app = flask.Flask("reserved")

    @app.get("/a")
    def a() -> str:
        telemetry.annotate(time="evil", trace_id="forged", span_id="x", level="DEBUG", status=1)
        telemetry.annotate(request_id="r", route="/other", user_id="u-7")
        return "ok"

    instrument(app)
    app.test_client().get("/a")
    raw = [x for x in tel.out.getvalue().splitlines() if '"telemetry.access"' in x]
    assert len(raw) == 1
    pairs = _pairs(raw[0])
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), keys
    line = dict(pairs)
    (span,) = tel.spans()
    assert line["trace_id"] == _logging.xray_trace_id(span.context.trace_id)
    assert line["time"] != "evil" and line["level"] == "INFO" and line["status"] == 200
    assert line["route"] == "/a" and line["user_id"] == "u-7"
    assert span.attributes["user_id"] == "u-7"  # annotations stay on the span


def test_a_huge_path_is_cut_not_dropped() -> None:
    fmt = _logging.JsonFormatter("svc", "v1")
    path = "/" + "a" * (_logging.MAX_LINE_BYTES + 10_000)
    values = ("GET", None, path, "UNMATCHED", 404, 1.0, "9", {"note": "b" * 300_000})
    line = _access_line.render(fmt, CREATED, "INFO", "rid", SC, *values)
    assert len(line) <= _logging.line_limit()
    doc = json.loads(line)
    assert doc["status"] == 404 and doc["trace_id"].startswith("1-5759e988-")
    assert "cut" in doc["path"] and "cut" in doc["note"]


_WRITER = """
import os, random, sys
from telemetry import _output
tag = sys.argv[1]
w = _output.LineWriter(os.fdopen(1, "w", closefd=False))
rng = random.Random(tag)
for i in range(600):
    n = rng.choice([1, 50, 700, 1500, 3000, 4070])  # lines up to PIPE_BUF (4096) bytes
    w.write(f"{tag} {i:05d} {n:05d} " + "x" * n + " end")
_output.flush(20)
"""


def test_lines_of_two_processes_never_interleave_in_one_pipe() -> None:
    """Each write holds whole lines of at most PIPE_BUF bytes, which POSIX writes to a pipe
    atomically: the lines of gunicorn's workers sharing stdout stay whole. (A line longer than
    PIPE_BUF is written alone, but no write of that size is atomic on a pipe.)"""
    procs = []
    r, w = os.pipe()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for tag in ("A", "B"):
        procs.append(subprocess.Popen([sys.executable, "-c", _WRITER, tag], stdout=w, env=env))
    os.close(w)
    data = b""
    deadline = time.monotonic() + 60
    with os.fdopen(r, "rb") as reader:
        while time.monotonic() < deadline:
            chunk = reader.read1(4096)  # small reads: the pipe is often full
            if not chunk:
                break
            data += chunk
    for p in procs:
        assert p.wait(30) == 0
    lines = data.decode().splitlines()
    assert len(lines) == 1200
    seen = {"A": 0, "B": 0}
    for line in lines:
        tag, i, n, body, end = line.split(" ")
        assert int(i) == seen[tag] and len(body) == int(n) and end == "end", line[:40]
        seen[tag] += 1


def test_a_failed_write_counts_the_lines_it_lost() -> None:
    r, w = os.pipe()
    os.close(r)  # EPIPE on the first write
    with os.fdopen(w, "w") as stream:
        writer = _output.LineWriter(stream)
        for i in range(30):
            writer.write(f"line {i} " + "y" * 300)
        assert writer.wait_empty(time.monotonic() + 10)
        assert writer.dropped == 30
    _, failed, errors = _output.take_dropped()
    assert failed >= 30 and any("line(s) not written" in e for e in errors)
    logging.getLogger(__name__).debug("done")


def test_the_route_is_known_however_the_request_ends(tel: Tel) -> None:
    """The route template is read from the request werkzeug puts in the environ, which Flask
    removes at the end: it is noted at the response's start, at an exception Flask lets through
    (testing/debug), and for a metric recorded inside the view."""
    app = flask.Flask("routes")
    app.config["PROPAGATE_EXCEPTIONS"] = True

    @app.get("/boom/<n>")
    def boom(n: str) -> str:
        raise RuntimeError(n)

    @app.get("/wait/<n>")
    def wait(n: str) -> str:
        telemetry.put_metric("Latency", 12.5)  # a metric with a Route dimension, from the view
        return "ok"

    @app.get("/stream/<n>")
    def stream(n: str) -> flask.Response:
        return flask.Response(iter(["a", "b"]))

    @app.get("/guarded/<n>")
    def guarded(n: str) -> str:
        return "never"

    @app.before_request
    def guard() -> None:
        if flask.request.path.startswith("/guarded"):
            flask.abort(403)

    instrument(app)
    client = app.test_client()
    with pytest.raises(RuntimeError):
        client.get("/boom/1")
    assert client.get("/wait/2").status_code == 200
    with client.get("/stream/3") as streamed:  # recorded when the server closes the body
        assert b"".join(streamed.response) == b"ab"
    assert client.get("/guarded/4").status_code == 403
    assert client.get("/nowhere").status_code == 404
    lines = tel.emf()
    from .conftest import samples, total

    assert total(lines, "ServerErrors", Route="/boom/<n>") == 1
    assert total(lines, "Requests", Route="/wait/<n>") == 1
    assert 12.5 in samples(lines, "Latency", Route="/wait/<n>")
    assert total(lines, "Requests", Route="/stream/<n>") == 1
    assert total(lines, "ClientErrors", Route="/guarded/<n>") == 1
    assert total(lines, "ClientErrors", Route="UNMATCHED") == 1
    routes = {x["route"] for x in tel.logs() if x.get("logger") == "telemetry.access"}
    assert routes == {"/boom/<n>", "/wait/<n>", "/stream/<n>", "/guarded/<n>", "UNMATCHED"}


def test_the_route_survives_a_second_request_object_made_by_the_view(tel: Tel) -> None:
    """A view (or a library it calls) that builds ``werkzeug.Request(environ)`` or
    ``flask.Request(environ)`` replaces the request werkzeug keeps in the environ; the route
    is still the one Flask matched."""
    import werkzeug

    app = flask.Flask("second")

    @app.get("/w/<n>")
    def w(n: str) -> str:
        werkzeug.Request(flask.request.environ)
        return "ok"

    @app.get("/f/<n>")
    def f(n: str) -> str:
        flask.Request(flask.request.environ)
        return "ok"

    instrument(app)
    client = app.test_client()
    assert client.get("/w/1").status_code == 200 and client.get("/f/2").status_code == 200
    assert client.get("/nowhere").status_code == 404
    from .conftest import total

    lines = tel.emf()
    assert total(lines, "Requests", Route="/w/<n>") == 1
    assert total(lines, "Requests", Route="/f/<n>") == 1
    assert total(lines, "Requests", Route="UNMATCHED") == 1
    routes = [x["route"] for x in tel.logs() if x.get("logger") == "telemetry.access"]
    assert routes == ["/w/<n>", "/f/<n>", "UNMATCHED"]


@pytest.mark.parametrize(
    ("status", "recorded"),
    [
        ("abc", 500),  # werkzeug sends "0 abc": telemetry must not raise into the app
        (1000, 500),  # "1000 UNKNOWN": not a three-digit code
        ("099 Low", 500),
        ("\u0661\u0662\u0663 Arabic digits", 500),
        ("204 No Content", 204),
        ("599 Custom", 599),
    ],
)
def test_an_odd_status_line_is_recorded_never_raised(
    tel: Tel, status: object, recorded: int
) -> None:
    app = flask.Flask("status")

    @app.get("/s")
    def s() -> flask.Response:
        return flask.Response("", status=status)  # type: ignore[arg-type]

    instrument(app)
    app.test_client().get("/s").close()  # as a server does: "123 ..." has no Content-Length
    (line,) = [x for x in tel.logs() if x.get("logger") == "telemetry.access"]
    assert line["status"] == recorded and line["route"] == "/s"


def _annotating_client(monkeypatch, stream, buffer_bytes: int, annotation_chars: int):
    """A test client of an app whose one route annotates ``annotation_chars`` characters, with
    telemetry writing to ``stream`` through the deferred access-line path (our handler alone)."""
    from telemetry.sinks import MemorySink

    telemetry.configure(
        "svc", "v1", log_stream=stream, sink=MemorySink(), output_buffer_bytes=buffer_bytes
    )
    # only our handler on the root logger (not pytest's capture): the deferred path
    ours = [h for h in logging.root.handlers if type(h) is _logging.JsonHandler]
    monkeypatch.setattr(logging.root, "handlers", ours)
    assert _logging.direct_handler(logging.getLogger(_access_line.LOGGER), logging.INFO)
    app = flask.Flask("annotating")

    @app.get("/annotated")
    def annotated() -> str:
        telemetry.annotate(body="b" * annotation_chars)
        return "ok"

    instrument(app)
    return app.test_client()


def test_annotations_count_against_the_output_limit_while_nobody_reads(monkeypatch) -> None:
    """An access line waiting to be rendered holds its annotations: their size counts against
    ``TELEMETRY_OUTPUT_BUFFER_BYTES`` (a stuck stdout must not let big annotations pile up)."""
    r, w = os.pipe()  # nobody reads: the pipe fills, then the buffer
    stream = os.fdopen(w, "w")
    try:
        client = _annotating_client(monkeypatch, stream, 1 << 20, 100_000)
        before = _output.dropped_total()
        for _ in range(40):  # 4 MB of annotations against a 1 MiB buffer (+ a 64 KiB pipe)
            assert client.get("/annotated").status_code == 200
        assert _output.dropped_total() - before >= 20
    finally:
        os.close(r)
        _output.flush(5, abandon=True)
        stream.close()


def test_an_annotation_bigger_than_the_buffer_is_cut_not_the_line_dropped(monkeypatch) -> None:
    """One annotation longer than the output buffer (5 MB against 4 MiB) while stdout is read:
    the access line arrives, the annotation cut as any long field is; nothing is dropped."""
    import threading

    r, w = os.pipe()
    stream = os.fdopen(w, "w")
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(r, 1 << 16), b"")))
    reader.start()
    try:
        client = _annotating_client(monkeypatch, stream, 4 << 20, 5_000_000)
        before = _output.dropped_total()
        assert client.get("/annotated").status_code == 200
        assert _output.flush(10)
        assert _output.dropped_total() == before
    finally:
        _output.flush(5, abandon=True)
        stream.close()
        reader.join(10)
        os.close(r)
    lines = [json.loads(x) for x in b"".join(chunks).decode().splitlines()]
    (line,) = [x for x in lines if x.get("logger") == "telemetry.access"]
    assert line["body"] == "b" * 2048 + "...<cut: 4997952 of 5000000 characters>"


@pytest.mark.parametrize("direct", [True, False], ids=["context-variable", "public-api"])
def test_the_server_span_is_current_in_the_request_and_the_outer_context_kept(
    tel: Tel, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    """The server span is made current through OpenTelemetry's context variable (or, with
    another runtime context, through attach/detach): inside the request it is the current
    span, values of the caller's context stay visible, and afterwards the caller's context is
    back."""
    from opentelemetry import context as otel_context

    from telemetry import _tracing

    if not direct:
        monkeypatch.setattr(_tracing, "runtime_context_var", lambda: None)
    else:
        assert _tracing.runtime_context_var() is not None
    seen: dict[str, object] = {}
    app = flask.Flask("current")

    @app.get("/c")
    def current() -> str:
        seen["span"] = trace.get_current_span().get_span_context()
        seen["outer"] = otel_context.get_value("outer-key")
        return "ok"

    instrument(app)
    token = otel_context.attach(otel_context.set_value("outer-key", "kept"))
    try:
        before = otel_context.get_current()
        app.test_client().get("/c")
        assert otel_context.get_current() is before
    finally:
        otel_context.detach(token)
    (span,) = tel.spans()
    assert seen["span"] == span.context and seen["outer"] == "kept"


def test_request_ids_the_middleware_accepts_need_no_json_escaping() -> None:
    # render() writes the request id between quotes as it is: every character the middleware
    # lets through must be one JSON writes as itself
    from telemetry.flask import _REQUEST_ID

    accepted = [chr(c) for c in range(0x110000) if _REQUEST_ID.fullmatch(chr(c))]
    assert len(accepted) == 26 + 26 + 10 + 8
    assert all(json.dumps(c) == f'"{c}"' for c in accepted)
