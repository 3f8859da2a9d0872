"""Per-request cost of telemetry vs bare Flask and the usual libraries, and EMF bytes/request.

All variants serve the same trivial endpoint in one process, measured side by side in
interleaved rounds (so machine noise hits every variant alike); each variant's cost is its best
round (the least disturbed one, as ``timeit`` advises) and the ratio is best / best of bare Flask. Two harnesses: the Flask test client
(environ building and response handling, closer to a real server) and a raw WSGI call loop
(nothing but the app, the harshest denominator). Output to /dev/null, spans to a no-op exporter.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import flask
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from werkzeug.test import EnvironBuilder

import telemetry
from telemetry import _config
from telemetry import environment_variables as ev
from telemetry._logging import JsonHandler
from telemetry._metrics import Aggregator
from telemetry.flask import instrument
from telemetry.sinks import MemorySink

#: unset while the variants are built: 100 % sampling, no OTLP export, whatever the caller's env
_ENV_UNSET = (
    ev.OTEL_TRACES_SAMPLER,
    ev.OTEL_TRACES_SAMPLER_ARG,
    ev.OTEL_EXPORTER_OTLP_ENDPOINT,
    ev.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    ev.OTEL_TRACES_EXPORTER,
    ev.OTEL_SDK_DISABLED,
    ev.TELEMETRY_EXCLUDE_PATHS,
)

PATH = "/v1/users/u-42/points"
TARGETS = {"telemetry RED only": 1.10, "telemetry full": 1.50}


class NoopExporter(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _app() -> flask.Flask:
    app = flask.Flask("bench")

    @app.get("/v1/users/<user_id>/points")
    def points(user_id: str) -> dict[str, object]:
        return {"user_id": user_id, "points": 42}

    return app


@contextlib.contextmanager
def _clean_env() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in _ENV_UNSET if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _emf_lib_app() -> flask.Flask:
    from aws_embedded_metrics import metric_scope
    from aws_embedded_metrics.config import get_config
    from aws_embedded_metrics.environment import environment_detector

    # "Local": its stdout sink, and no probing of the EC2 metadata endpoint (no network)
    get_config().environment = "Local"
    environment_detector.EnvironmentCache.environment = environment_detector.local_environment

    app = _app()

    @app.before_request
    def start() -> None:
        flask.g.t0 = time.perf_counter()

    @app.after_request
    @metric_scope
    def emit(response: flask.Response, metrics: Any) -> flask.Response:
        metrics.set_namespace("SafeDeploy")
        rule = flask.request.url_rule
        metrics.put_dimensions({"Service": "bench", "Route": rule.rule if rule else "UNMATCHED"})
        metrics.put_metric("Requests", 1, "Count")
        metrics.put_metric("Latency", (time.perf_counter() - flask.g.t0) * 1000, "Milliseconds")
        return response

    return app


def _powertools_app() -> flask.Flask:
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics(namespace="SafeDeploy", service="bench")
    app = _app()

    @app.before_request
    def start() -> None:
        flask.g.t0 = time.perf_counter()

    @app.after_request
    def emit(response: flask.Response) -> flask.Response:
        rule = flask.request.url_rule
        metrics.add_dimension("Route", rule.rule if rule else "UNMATCHED")
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        ms = (time.perf_counter() - flask.g.t0) * 1000
        metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=ms)
        metrics.flush_metrics()
        return response

    return app


def _otel_app() -> flask.Flask:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
    app = _app()
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    return app


def _variants(devnull: Any) -> dict[str, flask.Flask]:
    telemetry.configure(
        "bench",
        "v1",
        sink=MemorySink(),
        span_exporter=NoopExporter(),
        log_stream=devnull,
        access_log_sample=1.0,
        flush_interval_s=5,
    )
    return {
        "bare Flask": _app(),
        "telemetry RED only": instrument(_app(), access_log=False, tracing=False),
        "telemetry full": instrument(_app()),
        "aws-embedded-metrics metric_scope": _emf_lib_app(),
        "Powertools Metrics (flush/request)": _powertools_app(),
        "OpenTelemetry Flask instrumentation": _otel_app(),
    }


def _client_loop(app: flask.Flask, n: int) -> float:
    client = app.test_client()
    t = time.perf_counter()
    for _ in range(n):
        client.get(PATH)
    return (time.perf_counter() - t) / n


def _wsgi_loop(app: flask.Flask, n: int) -> float:
    environ = EnvironBuilder(path=PATH).get_environ()

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        return None

    t = time.perf_counter()
    for _ in range(n):
        for _chunk in app(dict(environ), start_response):
            pass
    return (time.perf_counter() - t) / n


def measure(
    apps: dict[str, flask.Flask], loop: Callable[[flask.Flask, int], float], rounds: int, n: int
) -> dict[str, tuple[float, float]]:
    """name -> (best us/request over rounds, ratio to the best of bare Flask)."""
    per: dict[str, list[float]] = {k: [] for k in apps}
    names = list(apps)
    for name in names:  # warm-up
        loop(apps[name], 50)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate the order
        for name in order:
            per[name].append(loop(apps[name], n))
    bare = min(per["bare Flask"])
    return {k: (min(v) * 1e6, min(v) / bare) for k, v in per.items()}


def emf_bytes_per_request(
    rate: float = 200.0, seconds: int = 300, interval: float = 5.0, resolution: int = 60
) -> tuple[float, int]:
    """Simulated steady ``rate`` req/s (time is simulated, nothing sleeps): EMF bytes/request.

    Latencies: log-normal around 20 ms (sigma 0.6), 1 % 4xx, 0.1 % 5xx, one route.
    """
    now = [1_800_000_000.0]
    sink = MemorySink()
    settings = _config.load(
        {},
        service="points-service",
        version="v1",
        flush_interval_s=interval,
        storage_resolution=resolution,
    )
    agg = Aggregator(settings, sink, clock=lambda: now[0])
    rng = random.Random(42)
    total = int(rate * seconds)
    for i in range(total):
        now[0] = 1_800_000_000.0 + i / rate
        u = rng.random()
        status = 500 if u < 0.001 else 404 if u < 0.011 else 200
        agg.record_request(
            "/v1/users/<user_id>/points", status, rng.lognormvariate(math.log(20), 0.6)
        )
        if i % int(rate) == 0:
            agg.flush()
    agg.flush(final=True)
    size = sum(len(line.encode()) + 1 for line in sink.lines)
    return size / total, len(sink.lines)


def _one_line_bytes(app: flask.Flask) -> int:
    """Bytes one request makes a per-request EMF library print."""
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        app.test_client().get(PATH)
    return len(buf.getvalue().encode())


def main() -> None:
    quick = "--quick" in sys.argv
    rounds, n = (6, 150) if quick else (30, 200)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), _clean_env():
        apps = _variants(devnull)
        client = measure(apps, _client_loop, rounds, n)
        wsgi = measure(apps, _wsgi_loop, rounds, n)
        telemetry.shutdown()  # its buffered lines go to devnull while it is still open
    print(f"Per-request cost, best of {rounds} interleaved rounds x {n} requests (ratio to bare)")
    print(f"{'variant':40s} {'test client':>22s} {'WSGI call loop':>22s}   target")
    for name in apps:
        (cu, cr), (wu, wr) = client[name], wsgi[name]
        target = TARGETS.get(name)
        verdict = ""
        if target:
            verdict = f"<= {target:.2f}x: {'met' if cr <= target else 'MISSED'} (test client)"
        print(f"{name:40s} {cu:8.1f} us {cr:6.2f}x    {wu:8.1f} us {wr:6.2f}x   {verdict}")
    per_req, lines = emf_bytes_per_request()
    hr_req, hr_lines = emf_bytes_per_request(interval=1.0, resolution=1)
    print("\nEMF bytes per request at a simulated steady 200 req/s (300 s):")
    print(
        f"  telemetry, 5 s windows, Values/Counts: {per_req:6.2f} B/request ({lines} lines); target <= 5"
    )
    print(f"  telemetry, 1 s windows, high-res     : {hr_req:6.2f} B/request ({hr_lines} lines)")
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        emf_app, pt_app = _emf_lib_app(), _powertools_app()
    print(f"  aws-embedded-metrics, line/request   : {_one_line_bytes(emf_app):6d} B/request")
    print(f"  Powertools, flush/request            : {_one_line_bytes(pt_app):6d} B/request")
    # leave the process's logging as it was for the benchmarks that run after this one
    for handler in list(logging.root.handlers):
        if isinstance(handler, JsonHandler):
            logging.root.removeHandler(handler)


if __name__ == "__main__":
    main()
