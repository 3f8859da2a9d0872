"""JSON log lines: one object per line, core fields that user input cannot forge."""

from __future__ import annotations

import io
import json
import logging

import flask
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

import telemetry
from telemetry import _context, _logging
from telemetry.flask import instrument

from .conftest import Tel

FORGERIES = [
    'hello\n{"level": "CRITICAL", "message": "forged", "service": "evil"}',
    'quote " and backslash \\ and "}, "level": "ERROR", "x": {"',
    "carriage\rreturn and nul \x00 and escape \x1b[31m",
    "unicode separators \u2028 \u2029 \x85 end",
]


@pytest.mark.parametrize("text", FORGERIES)
def test_messages_and_fields_cannot_forge_lines(tel: Tel, text: str) -> None:
    log = telemetry.get_logger("app")
    log.warning("user said %s", text, extra={"comment": text, "level": "DEBUG", "service": "x"})
    raw = tel.out.getvalue()
    # one record, one physical line, whatever the splitter (str.splitlines also splits on
    # \x85, \u2028, \u2029: they are escaped too)
    assert len(raw.splitlines()) == 1 and raw.endswith("\n")
    (line,) = tel.logs()
    assert line["message"] == f"user said {text}"
    assert line["comment"] == text
    assert line["level"] == "WARNING" and line["service"] == "test-svc"  # extras cannot override
    assert raw.isascii()


def test_request_input_cannot_forge_access_lines(tel: Tel) -> None:
    app = flask.Flask("forge")

    @app.get("/echo")
    def echo():
        telemetry.get_logger("forge").info("got %s", flask.request.args["q"])
        return "ok"

    instrument(app)
    client = app.test_client()
    evil = '%0A{"level":"ERROR","status":500}%22%0D%E2%80%A8'
    client.get("/a" + evil)  # 404: the access line carries the raw path
    # environ_overrides: a raw server may hand over what the test client's header check refuses
    client.get("/echo?q=" + evil, environ_overrides={"HTTP_X_REQUEST_ID": 'x"\n{"a":1}'})
    raw = tel.out.getvalue()
    lines = raw.splitlines()
    assert len(lines) == 3  # 404 access line, the view's line, the access line: nothing more
    first, view, access = (json.loads(x) for x in lines)
    assert first["status"] == 404 and first["level"] == "INFO"
    assert "\n" in first["path"] and '{"level":"ERROR"' in first["path"]
    assert view["message"].startswith('got \n{"level":"ERROR"') and view["level"] == "INFO"
    assert access["status"] == 200 and access["path"] == "/echo"
    assert "\n" not in access["request_id"] and access["request_id"] == view["request_id"]
    assert raw.isascii()


def test_non_ascii_paths_are_logged_as_the_client_sent_them(tel: Tel) -> None:
    app = flask.Flask("utf8")

    @app.get("/users/<name>")
    def user(name: str) -> str:
        return name

    instrument(app)
    client = app.test_client()
    assert client.get("/users/%E5%B1%B1%E7%94%B0").status_code == 200  # 山田 in UTF-8
    assert client.get("/x/%FF%E2%80%A8").status_code == 404  # not UTF-8, then U+2028
    raw = tel.out.getvalue()
    good, bad = tel.logs()
    assert good["path"] == "/users/\u5c71\u7530" and good["route"] == "/users/<name>"
    assert bad["path"] == "/x/\ufffd\u2028"
    assert len(raw.splitlines()) == 2 and raw.isascii()
    spans = {s.attributes["http.response.status_code"]: s for s in tel.spans()}
    assert spans[200].attributes["url.path"] == "/users/\u5c71\u7530"


def test_exceptions_are_one_field(tel: Tel) -> None:
    log = telemetry.get_logger("app")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("failed")
    (line,) = tel.logs()
    assert line["level"] == "ERROR"
    assert "ValueError: bad\nthing" in line["exception"]


def test_direct_access_path_equals_the_logging_path() -> None:
    """The LogRecord-free access line is used only when it gives the same result."""
    out = io.StringIO()
    handler = _logging.JsonHandler(out)
    handler.setFormatter(_logging.JsonFormatter("svc", "v1"))
    logger = logging.getLogger("telemetry.access")
    saved = logging.root.handlers[:]
    logging.root.handlers[:] = [handler]
    span = trace.NonRecordingSpan(
        trace.SpanContext(0x5759E988BD862E3FE1BE46A994272793, 0x53995C3F42CD8AD8, False)
    )
    scope_token = _context.current.set(_context.Scope('rid "1"'))
    ctx_token = otel_context.attach(trace.set_span_in_context(span))
    try:
        assert _logging.direct_handler(logger, logging.INFO) is handler
        fields = {"method": "GET", "route": "/r\n", "status": 200, "ms": 1.5, "bytes": None}
        handler.emit_fields(logging.INFO, "GET /r 200", logger.name, fields)
        record = logger.makeRecord(logger.name, logging.INFO, "", 0, "GET /r 200", None, None)
        record.telemetry = fields
        logger.handle(record)
        a_text, b_text = out.getvalue().splitlines()
        a, b = json.loads(a_text), json.loads(b_text)
        a.pop("time"), b.pop("time")
        assert a == b and list(a) == list(b)  # same fields, same order
        assert a["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
        assert a["request_id"] == 'rid "1"'
        logging.root.handlers.append(logging.NullHandler())  # another handler: no shortcut
        assert _logging.direct_handler(logger, logging.INFO) is None
    finally:
        otel_context.detach(ctx_token)
        _context.current.reset(scope_token)
        logging.root.handlers[:] = saved


def test_plain_logging_is_left_alone_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_JSON_LOGS", "false")
    before = [h for h in logging.root.handlers if isinstance(h, _logging.JsonHandler)]
    telemetry.configure("svc", "v1", sink=telemetry.sinks.MemorySink())
    after = [h for h in logging.root.handlers if isinstance(h, _logging.JsonHandler)]
    assert after == before
    telemetry.shutdown()
