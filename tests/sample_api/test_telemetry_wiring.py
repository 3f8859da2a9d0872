"""The points service's own telemetry under a real gunicorn with 2 workers: RED metrics with the
Service/Version/Route dimensions, the limiter's RateLimitWait/RateLimitRejections, JSON access
lines with X-Ray trace ids, and an ALB's X-Amzn-Trace-Id continued.

Every figure the EMF lines must show is what the client itself observed (statuses, Server-Timing
waits), so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rehearsal import traces
from telemetry import catalog
from tests.sample_api.conftest import rightful_headers
from tests.support.issuer import ISSUER
from tests.support.processes import child, free_port, gunicorn
from tests.telemetry.test_emf import validate_emf

pytestmark = pytest.mark.slow

VERSION = "green-7"
GRANTS = "/v1/points/grants"
HISTORY_ROUTE = "/v1/users/<user_id>/points"
ALB_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
XRAY_TRACE_ID = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")

LIMITERS = {
    # Each worker admits its burst of 3, then refuses (no token refills during the test).
    "reject": {"RATE_LIMIT_MODE": "reject", "RATE_LIMIT_RPS": "0.01", "RATE_LIMIT_BURST": "3"},
    # A token every 0.2 s per worker; every request fits within the maximum wait.
    "delay": {
        "RATE_LIMIT_MODE": "delay",
        "RATE_LIMIT_RPS": "5",
        "RATE_LIMIT_BURST": "1",
        "RATE_LIMIT_MAX_WAIT_S": "20",
    },
}


class Seen:
    """What the client observed, per route template."""

    def __init__(self) -> None:
        self.statuses: dict[str, Counter[int]] = {}
        self.limited: list[tuple[int, float | None]] = []  # (status, Server-Timing wait ms)
        self.request_ids: set[str] = set()

    def call(
        self, base: str, method: str, path: str, route: str, body: Any = None, **headers: str
    ) -> int:
        host, port = base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            data = json.dumps(body) if body is not None else None
            headers = {**rightful_headers(method, path, body), **headers}
            if data is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        self.statuses.setdefault(route, Counter())[response.status] += 1
        timing = response.getheader("Server-Timing")
        if route in (GRANTS, HISTORY_ROUTE):
            wait = float(timing.split("dur=")[1]) if timing else None
            self.limited.append((response.status, wait))
        if route not in ("/healthz", "/readyz"):
            self.request_ids.add(response.getheader("X-Request-Id"))
        return response.status


def _grant(n: int) -> dict[str, Any]:
    return {"user_id": "tess", "order_id": f"t-{n}", "amount_jpy": 1000}


@pytest.mark.parametrize("mode", sorted(LIMITERS))
def test_red_metrics_limiter_metrics_and_access_lines(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "stdout.log"
    env = {
        **ISSUER.env(),
        "POINTS_DB_PATH": str(tmp_path / "points.db"),
        "WEB_CONCURRENCY": "2",
        "APP_VERSION": VERSION,
        "OTEL_SERVICE_NAME": "",  # the service's own name, whatever the caller's environment
        "OTEL_RESOURCE_ATTRIBUTES": "",
        "TELEMETRY_FLUSH_INTERVAL_S": "1",
        "TELEMETRY_ACCESS_LOG_SAMPLE": "1",
        "RATE_LIMIT_ENABLED": "true",
        "TELEMETRY_TRACES_FILE": str(tmp_path / "traces.jsonl"),
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_SDK_DISABLED": "",
        **LIMITERS[mode],
    }
    seen = Seen()
    with out.open("w") as stdout, gunicorn(env=env, stdout=stdout) as (base, _):
        if mode == "reject":
            for n in range(12):  # sequential: at most 3 admitted per worker, the rest 429
                seen.call(base, "POST", GRANTS, GRANTS, _grant(n))
        else:
            with ThreadPoolExecutor(6) as pool:  # concurrent: requests queue for tokens
                list(
                    pool.map(lambda n: seen.call(base, "POST", GRANTS, GRANTS, _grant(n)), range(6))
                )
        seen.call(base, "GET", "/v1/users/tess/points?limit=5", HISTORY_ROUTE)
        seen.call(base, "GET", "/version", "/version")
        seen.call(base, "GET", "/no/such/route", catalog.UNMATCHED_ROUTE)
        seen.call(base, "GET", "/version", "/version", **{"X-Amzn-Trace-Id": f"Root={ALB_ROOT}"})
        for path in ("/healthz", "/readyz"):  # excluded from metrics and access lines
            assert seen.call(base, "GET", path, path) == 200
    # Leaving the block SIGTERMs gunicorn: both workers write their last windows at exit.

    lines = [json.loads(x) for x in out.read_text().splitlines() if x.startswith("{")]
    emf = [x for x in lines if "_aws" in x]
    access = [x for x in lines if x.get("logger") == "telemetry.access"]
    refused = sum(status == 429 for status, _ in seen.limited)
    admitted = [wait for status, wait in seen.limited if status != 429]
    if mode == "reject":
        assert refused >= 6 and len(admitted) >= 1
    else:
        assert refused == 0

    # Every line: the catalog's namespace, metric names, units and dimension sets.
    for line in emf:
        validate_emf(line)  # the specification's structure and limits
        assert line["Service"] == "points-service" and line["Version"] == VERSION
        assert line["_aws"]["Timestamp"] % 1000 == 0
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "SafeDeploy"
        for metric in directive["Metrics"]:
            declared = catalog.get(metric["Name"])
            assert metric["Unit"] == declared.unit
            assert [tuple(d) for d in directive["Dimensions"]] == list(declared.dimension_sets)
            assert metric["Name"] in line

    # RED per route template: exactly what the client saw; health checks not counted.
    by_route: dict[str, Counter[str]] = {}
    for line in (x for x in emf if "Route" in x):
        totals = by_route.setdefault(line["Route"], Counter())
        for name in ("Requests", "ClientErrors", "ServerErrors"):
            totals[name] += line.get(name, 0)
        # a distribution may be split over several lines; their Counts add up
        totals["Latency"] += line["Latency"]["Count"] if "Latency" in line else 0
    expected = {
        route: Counter(
            Requests=sum(statuses.values()),
            ClientErrors=sum(n for s, n in statuses.items() if 400 <= s < 500),
            ServerErrors=sum(n for s, n in statuses.items() if s >= 500),
            Latency=sum(statuses.values()),
        )
        for route, statuses in seen.statuses.items()
        if route not in ("/healthz", "/readyz")
    }
    assert {r: +c for r, c in by_route.items()} == {r: +c for r, c in expected.items()}
    assert "/healthz" not in by_route and "/readyz" not in by_route

    # The limiter: one rejection per 429, one wait sample per admitted limited request, and the
    # waits are the ones the service reported to the client in Server-Timing (0.1 ms rounding).
    limiter = [x for x in emf if "RateLimitWait" in x or "RateLimitRejections" in x]
    assert all("Route" not in x for x in limiter)
    assert sum(x.get("RateLimitRejections", 0) for x in limiter) == refused
    waits = [x["RateLimitWait"] for x in limiter if "RateLimitWait" in x]
    assert sum(w["Count"] for w in waits) == len(admitted)
    assert abs(sum(w["Sum"] for w in waits) - sum(admitted)) <= 0.05 * len(admitted) + 1e-6

    # Access lines: one per counted request, X-Ray trace ids, span ids, the echoed request ids.
    assert len(access) == sum(c["Requests"] for c in expected.values())
    assert {x["request_id"] for x in access} == seen.request_ids
    for line in access:
        assert line["service"] == "points-service" and line["version"] == VERSION
        assert XRAY_TRACE_ID.fullmatch(line["trace_id"]) and re.fullmatch(
            "[0-9a-f]{16}", line["span_id"]
        )
    assert sum(x["trace_id"] == ALB_ROOT for x in access) == 1  # the ALB's trace is continued
    assert sorted(x["route"] for x in access) == sorted(
        route
        for route, statuses in seen.statuses.items()
        for _ in range(sum(statuses.values()))
        if route not in ("/healthz", "/readyz")
    )
    _check_traces(tmp_path / "traces.jsonl", access, seen)


def _check_traces(path: Path, access: list[dict[str, Any]], seen: Seen) -> None:
    """Both workers appended their spans to one OTLP JSON file, whole lines only: every access
    line has its server span there; every limited request a ``rate_limiter`` child span whose
    duration covers the wait the client was told, and the wait (or the refusal) on the server
    span and the access line; every answered grant a ``store.grant`` child."""
    read = traces.read(path)
    assert read.unreadable_lines == 0 and read.spans
    spans = {s.span_id: s for s in read.spans}
    for line in access:
        server = spans[line["span_id"]]
        assert server.kind == "SERVER" and server.xray_trace_id == line["trace_id"]
        assert server.service == "points-service" and server.version == VERSION
        assert server.attributes["http.response.status_code"] == line["status"]
        kids = {s.name: s for s in traces.children(read.spans, server)}
        if line["route"] != GRANTS:
            continue
        limiter = kids["rate_limiter"]
        assert limiter.trace_id == server.trace_id
        assert server.start_ns <= limiter.start_ns <= limiter.end_ns <= server.end_ns
        if line["status"] == 429:
            assert line["rate_limited"] is True and server.attributes["rate_limited"] is True
            assert limiter.attributes["rate_limit.admitted"] is False
            assert "store.grant" not in kids
            # the wait before the refusal, the same on the span, its child and the access line
            wait = line["rate_limit_wait_ms"]
            assert server.attributes["rate_limit_wait_ms"] == wait
            assert limiter.attributes["rate_limit.wait_ms"] == wait
            assert limiter.duration_ms >= wait
        else:
            wait = line["rate_limit_wait_ms"]
            assert server.attributes["rate_limit_wait_ms"] == wait
            assert limiter.attributes["rate_limit.wait_ms"] == wait
            assert limiter.duration_ms >= wait  # the span covers the wait
            assert kids["store.grant"].start_ns >= limiter.end_ns
            assert line["user_id"] == "tess" and server.attributes["user_id"] == "tess"
    waits = sorted(
        x["rate_limit_wait_ms"] for x in access if "rate_limit_wait_ms" in x and x["status"] != 429
    )
    told = sorted(w for status, w in seen.limited if status != 429 and w is not None)
    assert len(waits) == len(told)  # Server-Timing has 0.1 ms, the access line 0.001 ms
    assert all(abs(w - t) <= 0.051 for w, t in zip(waits, told, strict=True))


@pytest.mark.parametrize("stdout", ["broken-pipe", "closed"])
def test_the_service_keeps_serving_when_stdout_is_gone(tmp_path: Path, stdout: str) -> None:
    """Telemetry never breaks the application: EMF and log lines that cannot be written are
    counted and reported on stderr, and every request is still answered."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **ISSUER.env(),
        "BIND": f"127.0.0.1:{port}",
        "POINTS_DB_PATH": str(tmp_path / "points.db"),
        "WEB_CONCURRENCY": "2",
        "TELEMETRY_FLUSH_INTERVAL_S": "0.2",
    }
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "sample_api/gunicorn.conf.py",
        "sample_api.wsgi:app",
    ]
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read this pipe: every write to it fails with EPIPE
    if stdout == "closed":  # the processes start without any stdout (sys.stdout is None)
        args = ["sh", "-c", 'exec "$@" >&-', "sh", *args]
    err = tmp_path / "stderr.log"
    seen = Seen()
    try:
        with (
            err.open("w") as stderr,
            child(args, env=env, ready_url=base + "/healthz", stdout=write_end, stderr=stderr),
        ):
            for n in range(10):
                assert seen.call(base, "POST", GRANTS, GRANTS, _grant(n)) == 201
                assert seen.call(base, "GET", "/no/such/route", catalog.UNMATCHED_ROUTE) == 404
            time.sleep(0.5)  # let some 0.2 s windows end: the flush threads write (and fail) too
            assert seen.call(base, "GET", "/v1/users/tess/points", HISTORY_ROUTE) == 200
    finally:
        os.close(write_end)
    text = err.read_text()
    assert "Traceback" not in text and "Booting worker" in text
    assert "telemetry:" in text and ("log=" in text or "sink=" in text)
