"""The real thing: gunicorn processes on 127.0.0.1, several workers, two versions on one file."""

from __future__ import annotations

import http.client
import json
import signal
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import gunicorn

pytestmark = pytest.mark.slow

GRANTS = "/v1/points/grants"


def call(
    base: str, path: str, body: dict | None = None, timeout: float = 60
) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path,
        data=data,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"} if body is not None else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_concurrent_duplicates_across_workers_and_versions_credit_once(tmp_path: Path) -> None:
    db = str(tmp_path / "points.db")
    env = {"POINTS_DB_PATH": db, "WEB_CONCURRENCY": "3"}
    with (
        gunicorn(env={**env, "APP_VERSION": "blue"}) as (blue, _),
        # green also runs threaded (gthread) workers: one SQLite connection per thread.
        gunicorn(
            env={**env, "APP_VERSION": "green", "POINTS_RATE": "0.02", "GUNICORN_THREADS": "4"}
        ) as (green, _),
    ):
        assert call(blue, "/version")[2]["version"] == "blue"
        assert call(green, "/version")[2]["version"] == "green"
        orders = [f"dup-{i}" for i in range(5)]
        barrier = threading.Barrier(8)

        def client(n: int) -> list[tuple[str, int, dict]]:
            base = blue if n % 2 else green
            barrier.wait(30)
            results = []
            for order in orders[n % 5 :] + orders[: n % 5] + [f"own-{n}"]:
                status, _, body = call(
                    base, GRANTS, {"user_id": "carol", "order_id": order, "amount_jpy": 1000}
                )
                results.append((order, status, body))
            return results

        with ThreadPoolExecutor(8) as pool:
            results = [r for batch in pool.map(client, range(8)) for r in batch]

        assert {status for _, status, _ in results} <= {200, 201}
        created = Counter(order for order, status, _ in results if status == 201)
        assert created == Counter({**{o: 1 for o in orders}, **{f"own-{n}": 1 for n in range(8)}})
        for order in orders:  # every answer for an order is the one original grant
            assert len({body["grant_id"] for o, _, body in results if o == order}) == 1
        history = call(blue, "/v1/users/carol/points?limit=100")[2]
        assert len(history["entries"]) == 13
        assert sorted(e["order_id"] for e in history["entries"]) == sorted(
            orders + [f"own-{n}" for n in range(8)]
        )
        # Blue grants 10 points per 1000 JPY, green 20: the balance is the sum of what was stored.
        assert history["balance"] == sum(e["points"] for e in history["entries"])
        assert call(green, "/v1/users/carol/points")[2]["balance"] == history["balance"]
        _check_body_limits_over_the_wire(blue)


def _raw(base: str, body: Any, headers: dict[str, str], chunked: bool = False) -> tuple[int, Any]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", GRANTS, body=body, headers=headers, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, (response.getheader("Content-Type"), response.read())
    finally:
        conn.close()


def _check_body_limits_over_the_wire(base: str) -> None:
    """413 also holds behind gunicorn, whether the client declares the size or streams chunks."""
    big = b'{"pad": "' + b"x" * 40_000 + b'"}'
    declared = _raw(base, big, {"Content-Type": "application/json"})
    streamed = _raw(
        base,
        iter([big[i : i + 4096] for i in range(0, len(big), 4096)]),
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        chunked=True,
    )
    for status, (content_type, payload) in (declared, streamed):
        assert status == 413 and content_type == "application/problem+json"
        assert json.loads(payload)["status"] == 413
    status, (content_type, _) = _raw(base, b"{", {"Content-Type": "application/json"})
    assert (status, content_type) == (400, "application/problem+json")
    small = b'{"user_id": "frank", "order_id": "chunked", "amount_jpy": 300}'
    status, (_, payload) = _raw(
        base,
        iter([small[:10], small[10:]]),
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        chunked=True,
    )
    assert status == 201 and json.loads(payload)["points"] == 3


def test_sigterm_drains_the_in_flight_request(tmp_path: Path) -> None:
    env = {
        "POINTS_DB_PATH": str(tmp_path / "points.db"),
        "WEB_CONCURRENCY": "1",
        # One token every 5 s: the second grant is held by the limiter, i.e. slow and in flight.
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_RPS": "0.2",
        "RATE_LIMIT_BURST": "1",
        "RATE_LIMIT_MODE": "delay",
        "RATE_LIMIT_MAX_WAIT_S": "10",
    }
    with gunicorn(env=env, stderr=subprocess.PIPE) as (base, proc):
        body = {"user_id": "dave", "order_id": "first", "amount_jpy": 500}
        assert call(base, GRANTS, body)[0] == 201
        outcome: list[tuple[int, dict[str, str], Any]] = []
        slow = threading.Thread(
            target=lambda: outcome.append(call(base, GRANTS, {**body, "order_id": "slow"}))
        )
        slow.start()
        time.sleep(1.5)  # let the worker pick the request up (it then waits ~3.5 s more)
        assert slow.is_alive()
        proc.send_signal(signal.SIGTERM)  # what ECS sends to the container's main process
        slow.join(30)
        assert not slow.is_alive()
        status, headers, answer = outcome[0]
        assert status == 201 and answer["order_id"] == "slow"
        assert float(headers["Server-Timing"].split("dur=")[1]) > 0
        assert proc.wait(30) == 0
        assert "Traceback" not in proc.stderr.read().decode()


def _timed_grant(base: str, order: str) -> tuple[float, float]:
    """Client-side latency (s) and the limiter's wait reported in Server-Timing (ms)."""
    started = time.perf_counter()
    status, headers, _ = call(
        base, GRANTS, {"user_id": "erin", "order_id": order, "amount_jpy": 100}
    )
    latency = time.perf_counter() - started
    assert status == 201
    return latency, float(headers["Server-Timing"].split("dur=")[1])


def test_delay_mode_raises_latency_above_the_rate_and_not_below(tmp_path: Path) -> None:
    rps = 10
    env = {
        "POINTS_DB_PATH": str(tmp_path / "points.db"),
        "WEB_CONCURRENCY": "1",
        "RATE_LIMIT_ENABLED": "1",
        "RATE_LIMIT_RPS": str(rps),
        "RATE_LIMIT_BURST": "1",
        "RATE_LIMIT_MODE": "delay",
        "RATE_LIMIT_MAX_WAIT_S": "30",
    }
    with gunicorn(env=env) as (base, _):
        # Below the rate: one request at a time, at most ~3 per second (a token every 0.1 s).
        below = []
        for i in range(8):
            below.append(_timed_grant(base, f"below-{i}"))
            time.sleep(0.3)
        # Above the rate: 6 clients back to back, as fast as the server lets them.
        clients, per_client = 6, 5

        def hammer(n: int) -> list[tuple[float, float]]:
            return [_timed_grant(base, f"above-{n}-{i}") for i in range(per_client)]

        with ThreadPoolExecutor(clients) as pool:
            above = [r for batch in pool.map(hammer, range(clients)) for r in batch]

    # Below the rate the limiter never made anyone wait.
    assert [wait for _, wait in below] == [0.0] * len(below)
    # Above it most requests waited for a token...
    assert sum(wait > 0 for _, wait in above) >= len(above) // 2
    # ...and latency climbed: 6 clients sharing 10 requests/s queue for about 6 x 0.1 s each on
    # average (Little's law: whatever order the worker's threads get their tokens in), a floor no
    # amount of machine noise can lower; below the rate there is no such queue.
    low, high = statistics.median(t for t, _ in below), statistics.mean(t for t, _ in above)
    assert high >= 0.5 * clients / rps, (low, high)
    assert high > 3 * low, (low, high)
