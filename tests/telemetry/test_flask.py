"""instrument(app) on small Flask apps: RED metrics, access lines, request ids, traces."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import flask
import pytest
from opentelemetry import trace
from werkzeug.test import EnvironBuilder

import telemetry
from telemetry import _metrics, _runtime, catalog
from telemetry.flask import instrument

from .conftest import Tel, samples, total

XRAY_TRACE = "1-5759e988-bd862e3fe1be46a994272793"


def make_app(**options: bool) -> flask.Flask:
    app = flask.Flask("tiny")

    @app.get("/v1/users/<user_id>/points")
    def points(user_id: str):
        telemetry.get_logger("tiny.view").info("looking up %s", user_id)
        return {"user_id": user_id, "points": 3}

    @app.post("/v1/orders")
    def orders():
        if not flask.request.is_json:
            return {"title": "bad"}, 400
        telemetry.put_metric("RateLimitWait", 7.0)
        return {"ok": True}, 201

    @app.get("/fail")
    def fail():
        raise RuntimeError("exploded")

    @app.get("/healthz")
    def healthz():
        return "ok"

    return instrument(app, **options)  # type: ignore[arg-type]


def access_lines(tel: Tel) -> list[dict]:
    return [line for line in tel.logs() if line["logger"] == "telemetry.access"]


@pytest.mark.parametrize(
    "options", [{}, {"access_log": False, "tracing": False}], ids=["full", "red-only"]
)
def test_red_metrics_use_route_templates(tel: Tel, options: dict[str, bool]) -> None:
    client = make_app(**options).test_client()
    for i in range(5):
        assert client.get(f"/v1/users/u{i}/points").status_code == 200
    assert client.post("/v1/orders", data="x").status_code == 400
    assert client.post("/v1/orders", json={}).status_code == 201
    assert client.get("/fail").status_code == 500
    assert client.get("/nowhere/at/all").status_code == 404
    assert client.get("/healthz").status_code == 200  # excluded
    lines = tel.emf()
    assert total(lines, "Requests") == 9
    assert total(lines, "Requests", Route="/v1/users/<user_id>/points") == 5
    assert total(lines, "ClientErrors", Route="/v1/orders") == 1
    assert total(lines, "ServerErrors", Route="/fail") == 1
    assert total(lines, "ClientErrors", Route=catalog.UNMATCHED_ROUTE) == 1
    assert not any(line.get("Route") == "/healthz" for line in lines)
    assert not any("/v1/users/u1" in str(line.get("Route")) for line in lines)
    assert len(samples(lines, "Latency")) == 9
    assert all(v > 0 for v in samples(lines, "Latency"))
    assert samples(lines, "RateLimitWait") == [7.0]
    assert {line["Version"] for line in lines if "Version" in line} == {"v9"}


def test_red_only_echoes_request_ids_and_keeps_the_scope_without_lines_or_spans(
    tel: Tel,
) -> None:
    # instrument(app, access_log=False, tracing=False): what gunicorn_bench measures as RED
    # only (its metrics: test_red_metrics_use_route_templates[red-only])
    client = make_app(access_log=False, tracing=False).test_client()
    r = client.get("/v1/users/u1/points", headers={"X-Request-Id": "red-1"})
    assert r.status_code == 200 and r.headers["X-Request-Id"] == "red-1"
    generated = client.get("/v1/users/u2/points").headers["X-Request-Id"]
    assert len(generated) == 32 and generated != "red-1"
    before = telemetry.counts().get("invalid_request_id", 0)
    bad = client.get("/nowhere", headers={"X-Request-Id": "a b"}).headers["X-Request-Id"]
    assert bad != "a b" and len(bad) == 32  # replaced, counted
    assert telemetry.counts()["invalid_request_id"] == before + 1
    assert client.post("/v1/orders", json={}).status_code == 201
    assert samples(tel.emf(), "RateLimitWait") == [7.0]  # put_metric found the request
    logs = tel.logs()
    assert not [x for x in logs if x["logger"] == "telemetry.access"] and not tel.spans()
    view = [x for x in logs if x["logger"] == "tiny.view"]
    assert [x["request_id"] for x in view] == ["red-1", generated]
    assert not any("trace_id" in x for x in view)  # no span: no trace ids


def test_exclusion_pattern_is_anchored(tel: Tel) -> None:
    app = make_app()

    @app.get("/api/healthz")
    def not_health():
        return "counted"

    client = app.test_client()
    client.get("/healthz")
    client.get("/api/healthz")
    lines = tel.emf()
    assert total(lines, "Requests") == 1
    assert total(lines, "Requests", Route="/api/healthz") == 1


def test_access_line_fields_and_request_id(tel: Tel) -> None:
    client = make_app().test_client()
    r = client.get("/v1/users/u1/points", headers={"X-Request-Id": "req-123"})
    assert r.headers["X-Request-Id"] == "req-123"
    generated = client.get("/v1/users/u2/points").headers["X-Request-Id"]
    assert len(generated) == 32 and generated != "req-123"
    bad = client.get("/v1/users/u3/points", headers={"X-Request-Id": "a b\tc"})
    assert bad.headers["X-Request-Id"] != "a b\tc"  # not echoed: replaced by a generated id
    logs = tel.logs()
    first = [line for line in logs if line.get("request_id") == "req-123"]
    assert {line["logger"] for line in first} == {"tiny.view", "telemetry.access"}
    access = next(line for line in first if line["logger"] == "telemetry.access")
    for key in ("time", "level", "message", "service", "version", "trace_id", "span_id"):
        assert key in access, key
    assert access["service"] == "test-svc" and access["version"] == "v9"
    assert access["method"] == "GET" and access["status"] == 200
    assert access["route"] == "/v1/users/<user_id>/points"
    assert access["path"] == "/v1/users/u1/points"
    assert access["bytes"] == len(r.data)
    assert access["duration_ms"] > 0
    assert access["time"].endswith("Z")
    view_line = next(line for line in first if line["logger"] == "tiny.view")
    assert view_line["trace_id"] == access["trace_id"]  # same request, same trace
    assert access["trace_id"].startswith("1-") and len(access["trace_id"]) == 35


def test_errors_are_logged_with_the_exception(tel: Tel) -> None:
    make_app().test_client().get("/fail")
    (line,) = [x for x in access_lines(tel) if x["status"] == 500]
    assert line["level"] == "ERROR"
    (span,) = [s for s in tel.spans() if s.name == "GET /fail"]
    assert span.status.status_code == trace.StatusCode.ERROR
    # Flask handled it (a 500 page, as under gunicorn): the span still has the exception
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes["exception.type"] == "RuntimeError"
    assert span.events[0].attributes["exception.message"] == "exploded"


@pytest.mark.parametrize("hook", ["before_request", "after_request"])
def test_a_failing_hook_is_a_500_whose_span_has_the_exception(tel: Tel, hook: str) -> None:
    app = make_app()

    def failing(*args: object) -> None:
        raise LookupError(f"{hook} failed")

    getattr(app, hook)(failing)
    assert app.test_client().get("/v1/users/u1/points").status_code == 500
    (span,) = tel.spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert [e.attributes["exception.message"] for e in span.events] == [f"{hook} failed"]
    (line,) = access_lines(tel)
    assert line["status"] == 500 and line["trace_id"] and line["span_id"]


def test_client_errors_and_redirects_leave_the_span_status_unset(tel: Tel) -> None:
    """HTTP semantic conventions: a 4xx is the client's error, not the server span's; only
    5xx sets ERROR. Unmatched requests (404, 405, trailing-slash redirects) share one name."""
    app = make_app()
    app.add_url_rule("/dir/", "dir", lambda: "d")
    app.add_url_rule("/conflict", "conflict", lambda: flask.abort(409))
    client = app.test_client()
    got = {
        client.get("/nowhere").status_code,
        client.delete("/v1/users/u1/points").status_code,
        client.get("/dir").status_code,
        client.get("/conflict").status_code,
        client.post("/v1/orders", data="x").status_code,
    }
    assert got == {404, 405, 308, 409, 400}
    spans = tel.spans()
    assert {s.status.status_code for s in spans} == {trace.StatusCode.UNSET}
    assert all(not s.events for s in spans)
    assert {s.name for s in spans} == {
        "GET UNMATCHED",
        "DELETE UNMATCHED",
        "GET /conflict",
        "POST /v1/orders",
    }


def test_successful_access_lines_are_sampled_errors_always_logged(tel: Tel) -> None:
    tel.configure(access_log_sample=0.0)
    client = make_app().test_client()
    for _ in range(20):
        client.get("/v1/users/u/points")
    client.get("/fail")
    client.get("/missing")
    statuses = sorted(x["status"] for x in access_lines(tel))
    assert statuses == [404, 500]
    assert total(tel.emf(), "Requests") == 22  # metrics are never sampled


def test_partial_sampling_keeps_some_lines(tel: Tel) -> None:
    tel.configure(access_log_sample=0.5)
    client = make_app().test_client()
    for _ in range(200):
        client.get("/v1/users/u/points")
    n = len(access_lines(tel))
    assert 40 < n < 160  # binomial(200, 0.5): outside this range with p < 1e-17


def test_incoming_xray_header_is_continued(tel: Tel) -> None:
    client = make_app().test_client()
    header = f"Root={XRAY_TRACE};Parent=53995c3f42cd8ad8;Sampled=1"
    client.get("/v1/users/u1/points", headers={"X-Amzn-Trace-Id": header})
    (span,) = tel.spans()
    assert f"{span.context.trace_id:032x}" == XRAY_TRACE[2:].replace("-", "")
    assert span.parent is not None and span.parent.span_id == 0x53995C3F42CD8AD8
    assert span.kind == trace.SpanKind.SERVER
    assert span.attributes["http.route"] == "/v1/users/<user_id>/points"
    assert span.attributes["http.response.status_code"] == 200
    access = access_lines(tel)[0]
    assert access["trace_id"] == XRAY_TRACE
    assert access["span_id"] == f"{span.context.span_id:016x}"


def test_alb_root_only_header_keeps_the_trace_id(tel: Tel) -> None:
    client = make_app().test_client()
    client.get("/v1/users/u1/points", headers={"X-Amzn-Trace-Id": f"Root={XRAY_TRACE}"})
    (span,) = tel.spans()
    assert f"{span.context.trace_id:032x}" == XRAY_TRACE[2:].replace("-", "")
    assert span.parent is None


def test_unsampled_parent_is_respected_and_w3c_is_continued(tel: Tel) -> None:
    client = make_app().test_client()
    header = f"Root={XRAY_TRACE};Parent=53995c3f42cd8ad8;Sampled=0"
    client.get("/v1/users/u1/points", headers={"X-Amzn-Trace-Id": header})
    assert tel.spans() == []  # ParentBased: not sampled upstream, not recorded here
    assert access_lines(tel)[0]["trace_id"] == XRAY_TRACE  # still correlated in logs
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    client.get("/v1/users/u1/points", headers={"traceparent": tp})
    (span,) = tel.spans()
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span.parent.span_id == 0xB7AD6B7169203331


def test_ratio_sampler_from_the_environment(tel: Tel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    tel.configure()
    client = make_app().test_client()
    for _ in range(10):
        client.get("/v1/users/u1/points")
    assert tel.spans() == []
    assert total(tel.emf(), "Requests") == 10


def test_application_spans_are_children_of_the_server_span(tel: Tel) -> None:
    app = make_app()

    @app.get("/nested")
    def nested():
        with trace.get_tracer("app").start_as_current_span("db.query"):
            return "ok"

    app.test_client().get("/nested")
    spans = {s.name: s for s in tel.spans()}
    assert spans["db.query"].parent.span_id == spans["GET /nested"].context.span_id
    assert spans["db.query"].context.trace_id == spans["GET /nested"].context.trace_id


def test_instrument_twice_counts_once(tel: Tel) -> None:
    app = make_app()
    instrument(app)
    app.test_client().get("/v1/users/u/points")
    assert total(tel.emf(), "Requests") == 1


def test_spans_reach_an_otlp_http_collector(tel: Tel, monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set: real OTLP/HTTP export to a collector on 127.0.0.1."""
    import http.server
    import threading

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[tuple[str, str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # never via a proxy
        telemetry.configure("otlp-svc", "v3", sink=tel.sink, log_stream=tel.out)
        header = f"Root={XRAY_TRACE};Parent=53995c3f42cd8ad8;Sampled=1"
        make_app().test_client().get("/v1/users/u1/points", headers={"X-Amzn-Trace-Id": header})
        telemetry.shutdown()  # the batch processor exports on shutdown
    finally:
        server.shutdown()
        server.server_close()
    assert received, "no export reached the collector"
    path, content_type, body = received[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = request.resource_spans
    attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert attrs["service.name"] == "otlp-svc" and attrs["service.version"] == "v3"
    spans = [s for ss in resource_spans.scope_spans for s in ss.spans]
    (span,) = [s for s in spans if s.name == "GET /v1/users/<user_id>/points"]
    assert span.trace_id.hex() == XRAY_TRACE[2:].replace("-", "")
    assert span.parent_span_id.hex() == "53995c3f42cd8ad8"


@pytest.mark.parametrize("name", ["X-Request-Id", "x-request-id", "X-REQUEST-ID", "x-ReQuEsT-iD"])
@pytest.mark.parametrize(
    "options", [{}, {"access_log": False, "tracing": False}], ids=["full", "red-only"]
)
def test_an_apps_own_request_id_header_is_kept_not_doubled(
    tel: Tel, name: str, options: dict[str, bool]
) -> None:
    app = flask.Flask("own-id")

    @app.get("/")
    def index():
        return "ok", 200, {name: "app-7"}

    client = instrument(app, **options).test_client()  # type: ignore[arg-type]
    r = client.get("/", headers={"X-Request-Id": "client-1"})
    assert r.status_code == 200
    assert r.headers.getlist("X-Request-Id") == ["app-7"]
    # a response without one still gets telemetry's
    plain = flask.Flask("plain")
    plain.get("/")(lambda: "ok")
    r = instrument(plain, **options).test_client().get("/", headers={"X-Request-Id": "c-2"})  # type: ignore[arg-type]
    assert r.headers.getlist("X-Request-Id") == ["c-2"]


@pytest.mark.parametrize("shape", [tuple, iter], ids=["tuple", "iterator"])
def test_response_headers_that_are_not_a_list_reach_the_server_whole(tel: Tel, shape: type) -> None:
    # WSGI asks for a list; servers (gunicorn, werkzeug) take any iterable, so telemetry must
    # not consume an iterator while looking for the body size or an app's own X-Request-Id
    app = flask.Flask("raw")

    def raw(environ: dict, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", shape([("Content-Type", "text/plain"), ("Content-Length", "2")]))
        return [b"ok"]

    app.wsgi_app = raw  # type: ignore[method-assign]
    r = instrument(app).test_client().get("/raw", headers={"X-Request-Id": "c-9"})
    assert r.status_code == 200 and r.data == b"ok"
    assert r.headers["Content-Type"] == "text/plain"
    assert r.headers.getlist("X-Request-Id") == ["c-9"]
    telemetry.flush()
    (line,) = access_lines(tel)
    assert line["request_id"] == "c-9" and line["bytes"] == 2


def test_a_burst_past_the_pending_bound_is_folded_by_the_request_threads(tel: Tel) -> None:
    # the middleware appends to Aggregator.pending itself (no call): with the flush thread
    # behind (here: never draining), the request threads must fold the queue past
    # MAX_PENDING entries (bounded memory), and no entry may be lost or counted twice
    app = flask.Flask("burst")

    @app.get("/b/<int:n>")
    def burst(n: int) -> str:
        if n % 7 == 0:
            flask.abort(503)
        return "ok"

    instrument(app, access_log=False, tracing=False)
    agg = _runtime.aggregator()
    agg.flush_thread = threading.Thread()  # looks running; never drains
    base = EnvironBuilder(path="/b/1").get_environ()
    per_thread = _metrics.MAX_PENDING // 2 + 600
    longest: list[int] = []

    def send() -> None:
        for i in range(per_thread):
            environ = dict(base, PATH_INFO=f"/b/{i}")
            app.wsgi_app(environ, lambda status, headers, exc_info=None: None)
        longest.append(len(agg.pending))

    try:
        threads = [threading.Thread(target=send) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(longest) == 2 and max(longest) <= _metrics.MAX_PENDING
    finally:
        agg.flush_thread = None
    lines = tel.emf()
    assert total(lines, "Requests", Route="/b/<int:n>") == 2 * per_thread
    assert total(lines, "ServerErrors", Route="/b/<int:n>") == 2 * len(range(0, per_thread, 7))


@pytest.mark.parametrize("empty_first", [False, True], ids=["first-item", "after-empty-items"])
def test_an_app_that_starts_its_response_when_iterated_is_recorded_with_its_status(
    tel: Tel, empty_first: bool
) -> None:
    # WSGI (PEP 3333) lets an app call start_response as late as its body's first non-empty
    # item (a generator app, or a middleware between Flask and instrument()): its request must
    # not be recorded as a 500 with no size before the status exists
    app = flask.Flask("lazy")
    closed: list[bool] = []

    def body(start_response) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        try:
            if empty_first:
                yield b""
            start_response("201 Created", [("Content-Length", "5")])
            yield b"he"
            yield b"llo"
        finally:
            closed.append(True)

    app.wsgi_app = lambda environ, start_response: body(start_response)  # type: ignore[method-assign]
    r = instrument(app).test_client().get("/lazy", headers={"X-Request-Id": "z-1"})
    assert r.status_code == 201 and r.data == b"hello"
    assert r.headers.getlist("X-Request-Id") == ["z-1"]
    assert closed == [True]
    (line,) = access_lines(tel)
    assert (line["status"], line["bytes"], line["request_id"]) == (201, 5, "z-1")
    lines = tel.emf()
    assert total(lines, "Requests") == 1 and total(lines, "ServerErrors") == 0
    (span,) = tel.spans()
    assert span.attributes["http.response.status_code"] == 201


def test_an_app_whose_body_fails_before_it_starts_its_response_is_a_500(tel: Tel) -> None:
    app = flask.Flask("lazy-fail")

    def body(start_response) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        raise ValueError("no status")
        yield b""  # a generator

    app.wsgi_app = lambda environ, start_response: body(start_response)  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="no status"):
        instrument(app).test_client().get("/lazy")
    (line,) = access_lines(tel)
    assert line["status"] == 500
    assert total(tel.emf(), "ServerErrors") == 1


def test_a_body_without_a_status_is_not_read_past_its_first_non_empty_item(tel: Tel) -> None:
    # an app that never calls start_response (a bug: the server refuses its first non-empty
    # item) may yield without end: telemetry reads no further than the server would
    app = flask.Flask("no-status")
    pulled: list[int] = []

    def body() -> Iterator[bytes]:
        for i in range(1000):
            pulled.append(i)
            yield b"x"

    app.wsgi_app = lambda environ, start_response: body()  # type: ignore[method-assign]
    instrument(app)
    environ = EnvironBuilder(path="/endless").get_environ()
    out = app.wsgi_app(environ, lambda status, headers, exc_info=None: None)
    assert pulled == [0]
    assert next(iter(out)) == b"x"
    out.close()  # type: ignore[attr-defined]
    assert total(tel.emf(), "ServerErrors") == 1


def test_a_response_started_again_with_exc_info_has_the_size_of_its_last_headers(
    tel: Tel,
) -> None:
    # an app may call start_response again, with exc_info, before the headers are sent (PEP
    # 3333): the new headers replace the first ones, so a size from the first call is stale
    app = flask.Flask("again")

    def raw(environ: dict, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Length", "10")])
        try:
            raise ValueError("late")
        except ValueError:
            start_response(
                "503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info()
            )
        return [b"sorry"]

    app.wsgi_app = raw  # type: ignore[method-assign]
    instrument(app)
    sent: list[tuple] = []
    environ = EnvironBuilder(path="/again", headers={"X-Request-Id": "a-1"}).get_environ()
    app.wsgi_app(environ, lambda status, headers, exc_info=None: sent.append((status, headers)))
    status, headers = sent[-1]
    assert status.startswith("503") and ("X-Request-Id", "a-1") in headers
    (line,) = access_lines(tel)
    assert (line["status"], line["bytes"]) == (503, None)


class _Clock:
    """A ``perf_counter`` the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    """The middleware's ``perf_counter``, moved by hand."""
    c = _Clock()
    monkeypatch.setattr("telemetry.flask.perf_counter", c)
    return c


def _streaming_app(clock: _Clock, **options: bool) -> flask.Flask:
    app = flask.Flask("streaming")

    @app.get("/chunks/<int:n>")
    def chunks(n: int) -> flask.Response:
        @flask.stream_with_context
        def body() -> Iterator[str]:
            for i in range(n):
                clock.now += 0.25  # each chunk takes 250 ms to produce
                telemetry.annotate(chunks=i + 1)
                yield f"{i};"

        return flask.Response(body(), mimetype="text/plain")

    @app.get("/broken")
    def broken() -> flask.Response:
        def body() -> Iterator[str]:
            yield "first;"
            clock.now += 1.5
            raise OSError("the upstream went away")

        return flask.Response(body())

    @app.get("/sized")
    def sized() -> flask.Response:
        clock.now += 0.01
        return flask.Response(["ab", "cd"], headers={"Content-Length": "4"})

    return instrument(app, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options", [{}, {"access_log": False, "tracing": False}], ids=["full", "red-only"]
)
def test_a_streamed_response_is_recorded_when_the_server_closes_it(
    tel: Tel, clock: _Clock, options: dict[str, bool]
) -> None:
    # (open-telemetry/opentelemetry-python-contrib#3401: a server span and a latency that end
    # when the view returns, before the body exists.) Latency, the access line and the span
    # cover producing the body, and what the body annotates reaches the line and the span.
    client = _streaming_app(clock, **options).test_client()
    r = client.get("/chunks/4")
    assert r.data == b"0;1;2;3;"
    assert total(tel.emf(), "Requests") == 0  # served, not closed yet: not recorded yet
    r.close()
    r.close()  # a second close records nothing more
    lines = tel.emf()
    assert total(lines, "Requests", Route="/chunks/<int:n>") == 1
    assert samples(lines, "Latency", Route="/chunks/<int:n>") == [pytest.approx(1000.0)]
    if options:
        assert access_lines(tel) == [] and tel.spans() == []
        return
    (line,) = access_lines(tel)
    assert (line["status"], line["duration_ms"], line["bytes"], line["chunks"]) == (
        200,
        1000.0,
        None,
        4,
    )
    assert line["request_id"] == r.headers["X-Request-Id"]
    (span,) = tel.spans()
    assert span.attributes["chunks"] == 4
    assert span.end_time >= span.start_time and span.status.is_ok


def test_a_streamed_response_that_fails_midway_is_a_server_error(tel: Tel, clock: _Clock) -> None:
    # the client got "200" and a cut body: the server failed the request, and the alarms on
    # server errors must see it
    app = _streaming_app(clock)
    environ = EnvironBuilder(path="/broken").get_environ()
    sent: list[str] = []
    body = app.wsgi_app(environ, lambda status, headers, exc_info=None: sent.append(status))
    it = iter(body)
    assert next(it) == b"first;"
    with pytest.raises(OSError, match="went away"):
        next(it)
    body.close()  # type: ignore[attr-defined]
    assert sent == ["200 OK"]
    lines = tel.emf()
    assert total(lines, "ServerErrors", Route="/broken") == 1
    assert samples(lines, "Latency", Route="/broken") == [pytest.approx(1500.0)]
    (line,) = access_lines(tel)
    assert (line["status"], line["level"]) == (500, "ERROR")
    assert "went away" in line["exception"]
    (span,) = tel.spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.attributes["http.response.status_code"] == 500


def test_a_streamed_body_runs_in_its_request_s_trace(tel: Tel, clock: _Clock) -> None:
    # a span (or an OpenTelemetry instrumentation, a log line) inside a streamed body is a
    # child of the request's server span, whether or not the body keeps the request context;
    # the next request on the thread does not inherit that context
    app = _streaming_app(clock)
    seen: list[object] = []

    @app.get("/traced")
    def traced() -> flask.Response:
        def body() -> Iterator[str]:
            try:
                with telemetry.span("inner"):
                    seen.append(trace.get_current_span().get_span_context().span_id)
                    telemetry.get_logger("streamed").info("in the body")
                    yield "a;"
                    with telemetry.span("nested"):  # the open span is current again
                        yield "b;"
            finally:  # closing the body runs this, in the request's trace too
                with telemetry.span("cleanup"):
                    pass

        return flask.Response(body())

    client = app.test_client()
    with client.get("/traced") as r:
        assert r.data == b"a;b;"
    with client.get("/traced", buffered=False) as r:
        next(r.response)  # the client went away after the first item: the server closes it
    outside = trace.get_current_span().get_span_context()
    assert not outside.is_valid
    spans = tel.spans()
    servers = [s for s in spans if s.name == "GET /traced"]
    assert len(servers) == 2
    for server in servers:
        children = [
            s for s in spans if s.parent is not None and s.parent.span_id == server.context.span_id
        ]
        assert sorted(s.name for s in children) == ["cleanup", "inner"]
        assert all(s.context.trace_id == server.context.trace_id for s in children)
    inner = {s.context.span_id for s in spans if s.name == "inner"}
    assert set(seen) == inner
    (nested,) = [s for s in spans if s.name == "nested"]  # the first body only: the second
    assert nested.parent.span_id in inner  # closed before it
    logs = [x for x in tel.logs() if x.get("message") == "in the body"]
    traces = {f"{s.context.trace_id:032x}" for s in servers}
    assert {x["trace_id"].replace("-", "")[1:] for x in logs} == traces


def test_a_response_with_a_size_or_no_body_is_recorded_when_the_app_returns(
    tel: Tel, clock: _Clock
) -> None:
    # what is not streamed is recorded at once, as before (a server may never iterate a body
    # it does not send): a Content-Length, a HEAD, a 204/304/1xx
    app = _streaming_app(clock)

    @app.get("/empty")
    def empty() -> tuple[str, int]:
        return "", 204

    client = app.test_client()
    client.get("/sized")  # never closed
    client.head("/chunks/2")
    client.get("/empty")
    statuses = [(x["route"], x["status"]) for x in access_lines(tel)]
    assert statuses == [("/sized", 200), ("/chunks/<int:n>", 200), ("/empty", 204)]
    assert total(tel.emf(), "Requests") == 3


def test_an_exception_whose_str_fails_still_gives_its_span_and_no_telemetry_error(
    tel: Tel,
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise ValueError("no text")

    app = make_app()

    @app.get("/unprintable")
    def unprintable() -> str:
        raise Unprintable()

    before = telemetry.error_count()
    assert app.test_client().get("/unprintable").status_code == 500
    (span,) = tel.spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    (event,) = span.events
    assert event.attributes["exception.type"].endswith("Unprintable")
    assert event.attributes["exception.message"] == "<exception str() failed>"
    assert telemetry.error_count() == before


@pytest.mark.parametrize("sent", ["/caf%C3%A9", "/café"])
def test_exclusion_matches_the_path_as_the_access_line_shows_it(tel: Tel, sent: str) -> None:
    """A non-ASCII path reaches WSGI as latin-1 text of its UTF-8 bytes; the pattern is matched
    against what the client sent (the access line's ``path``), not that text."""
    tel.configure(exclude_paths="/(healthz|café)")
    app = make_app()
    app.add_url_rule("/café", "cafe", lambda: "c")
    app.add_url_rule("/other/<x>", "other", lambda x: x)
    client = app.test_client()
    assert client.get(sent).status_code == 200
    assert client.get("/other/é").status_code == 200
    assert [x["path"] for x in access_lines(tel)] == ["/other/é"]
    assert [s.name for s in tel.spans()] == ["GET /other/<x>"]
