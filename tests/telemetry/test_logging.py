"""JSON log lines: one object per line, core fields that user input cannot forge."""

from __future__ import annotations

import io
import json
import logging

import flask
import pytest

import telemetry
from telemetry import _logging
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


def test_the_logging_path_is_skipped_only_when_our_handler_alone_would_get_the_line() -> None:
    """Access lines skip the LogRecord (telemetry._access_line.render, which gives the same
    document: tests/telemetry/test_access_line.py) only when our handler is the one destination."""
    out = io.StringIO()
    handler = _logging.JsonHandler(out)
    handler.setFormatter(_logging.JsonFormatter("svc", "v1"))
    logger = logging.getLogger("telemetry.access")
    saved = logging.root.handlers[:]
    logging.root.handlers[:] = [handler]
    try:
        assert _logging.direct_handler(logger, logging.INFO) is handler
        logging.root.handlers.append(logging.NullHandler())  # another handler: no shortcut
        assert _logging.direct_handler(logger, logging.INFO) is None
        logging.root.handlers[:] = [handler]
        logger.addFilter(lambda record: True)  # a filter on the way: no shortcut
        try:
            assert _logging.direct_handler(logger, logging.INFO) is None
        finally:
            logger.filters.clear()
    finally:
        logging.root.handlers[:] = saved


def test_plain_logging_is_left_alone_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_JSON_LOGS", "false")
    before = [h for h in logging.root.handlers if isinstance(h, _logging.JsonHandler)]
    telemetry.configure("svc", "v1", sink=telemetry.sinks.MemorySink())
    after = [h for h in logging.root.handlers if isinstance(h, _logging.JsonHandler)]
    assert after == before
    telemetry.shutdown()
