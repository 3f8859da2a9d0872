"""The real thing: gunicorn processes on 127.0.0.1, several workers, two versions on one file."""

from __future__ import annotations

import http.client
import json
import signal
import socket
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

from tests.sample_api.conftest import rightful_headers
from tests.support.issuer import ISSUER, grant_token
from tests.support.processes import gunicorn as _gunicorn

pytestmark = pytest.mark.slow

GRANTS = "/v1/points/grants"


def gunicorn(*, env: dict[str, str], **kwargs: Any):
    """The service under gunicorn, trusting the tests' local token issuer."""
    return _gunicorn(env={**ISSUER.env(), **env}, **kwargs)


def call(
    base: str, path: str, body: dict | None = None, timeout: float = 60
) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    method = "POST" if body is not None else "GET"
    headers = rightful_headers(method, path, body)  # the caller who may do it
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
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
        headers = {**rightful_headers("POST", GRANTS), **headers}
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


# The order system's credentials for raw requests: so the app goes on to read their bodies.
GRANT_AUTH = b"Authorization: Bearer " + grant_token().encode() + b"\r\n"


def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _answer(sock: socket.socket) -> tuple[int, str, dict[str, Any]]:
    """Read one whole answer (the server closes after it): status, Content-Type, JSON body."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), json.loads(body)


def test_health_answers_while_slow_clients_hold_connections(tmp_path: Path) -> None:
    # One worker with 2 threads and more slow peers than threads, of every kind: gunicorn's sync
    # workers were held until their 30 s timeout killed them (and the health check with them).
    env = {
        "POINTS_DB_PATH": str(tmp_path / "points.db"),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
        "GUNICORN_CLIENT_TIMEOUT": "2",
    }
    grant = b'{"user_id": "slow", "order_id": "o-1", "amount_jpy": 100}'
    with gunicorn(env=env, stderr=subprocess.PIPE) as (base, proc):
        slow_body = []
        for _ in range(3):  # a declared body of 100 bytes, 4 sent
            sock = _connect(base)
            sock.sendall(
                b"POST /v1/points/grants HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                + GRANT_AUTH
                + b"Content-Length: 100\r\n\r\n"
                + grant[:4]
            )
            slow_body.append(sock)
        slow_headers = []
        for _ in range(2):  # headers that never end
            sock = _connect(base)
            sock.sendall(b"GET /v1/users/slow/points HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            slow_headers.append(sock)
        silent = [_connect(base) for _ in range(3)]  # connected, nothing sent
        kept_alive = _connect(base)  # one answered request, then idle on a kept-alive connection
        kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert kept_alive.recv(65536).startswith(b"HTTP/1.1 200")

        # Generous bound: it used to take the 30 s worker timeout (then a 500).
        status, _, body = call(base, "/healthz", timeout=20)
        assert (status, body) == (200, {"status": "ok"})
        assert call(base, GRANTS, json.loads(grant), timeout=20)[0] == 201

        for sock in slow_body + slow_headers:
            status, content_type, problem = _answer(sock)
            assert (status, content_type) == (408, "application/problem+json")
            assert problem["status"] == 408 and "2 s" in problem["detail"]
            sock.close()
        for sock in [*silent, kept_alive]:
            sock.close()
        assert call(base, "/healthz", timeout=20)[0] == 200
        proc.terminate()
        assert proc.wait(30) == 0
        log = proc.stderr.read().decode()
    assert "WORKER TIMEOUT" not in log and "Traceback" not in log, log[-3000:]


# Requests gunicorn refuses before the app sees them (its parser's errors), one per kind.
MALFORMED = {
    "request line": (b"GARBAGE\r\n\r\n", 400),
    "method": (b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    "HTTP version": (b"GET / HTTP/9.9\r\nHost: t\r\n\r\n", 400),
    "header name": (b"GET / HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n", 400),
    "header without colon": (b"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", 400),
    "URI too long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    "too many headers": (
        b"GET / HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-%d: y\r\n" % i for i in range(150))
        + b"\r\n",
        431,
    ),
    "header too large": (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431),
    "chunk size": (
        b"POST /v1/points/grants HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + GRANT_AUTH
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        400,
    ),
    "transfer coding": (
        b"POST /v1/points/grants HTTP/1.1\r\nHost: t\r\n"
        + GRANT_AUTH
        + b"Transfer-Encoding: gzip\r\n\r\n",
        400,
    ),
}


def test_errors_gunicorn_answers_itself_are_problem_json(tmp_path: Path) -> None:
    from jsonschema import Draft202012Validator

    from sample_api.app import load_openapi

    schema = load_openapi()["components"]["schemas"]["Problem"]
    with gunicorn(env={"POINTS_DB_PATH": str(tmp_path / "points.db")}) as (base, _):
        for name, (raw, expected) in MALFORMED.items():
            sock = _connect(base)
            sock.sendall(raw)
            status, content_type, problem = _answer(sock)
            sock.close()
            assert (status, content_type) == (expected, "application/problem+json"), name
            assert problem["status"] == status, name
            assert not list(Draft202012Validator(schema).iter_errors(problem)), (name, problem)


def test_sigterm_readiness_turns_503_and_queued_connections_are_still_answered(
    tmp_path: Path,
) -> None:
    # The limiter (delay mode) keeps both threads busy, so most connections wait in the kernel's
    # accept queue when SIGTERM arrives: without a drain, closing the listening socket reset them.
    clients = 24
    env = {
        "POINTS_DB_PATH": str(tmp_path / "points.db"),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
        "GUNICORN_DRAIN_S": "4",
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_RPS": "20",
        "RATE_LIMIT_BURST": "1",
        "RATE_LIMIT_MODE": "delay",
        "RATE_LIMIT_MAX_WAIT_S": "30",
    }
    with gunicorn(env=env, stderr=subprocess.PIPE) as (base, proc):
        assert call(base, "/readyz")[0] == 200
        sockets = [_connect(base) for _ in range(clients)]
        for n, sock in enumerate(sockets):
            body = json.dumps({"user_id": "queue", "order_id": f"q-{n}", "amount_jpy": 100})
            sock.sendall(
                f"POST {GRANTS} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n".encode()
                + GRANT_AUTH
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode()
            )
        proc.send_signal(signal.SIGTERM)  # what ECS sends to the container's main process
        # Readiness says "stop sending" at once; liveness still says the process is fine.
        ready = call(base, "/readyz", timeout=20)
        assert ready[0] == 503 and ready[2]["type"] == "/problems/shutting-down"
        assert int(ready[1]["Retry-After"]) >= 1
        assert call(base, "/healthz", timeout=20)[0] == 200
        answers = []
        for sock in sockets:
            answers.append(_answer(sock)[0])  # a reset would raise here
            sock.close()
        assert answers == [201] * clients
        assert proc.wait(30) == 0
        log = proc.stderr.read().decode()
    assert "readiness now answers 503" in log and "Traceback" not in log


def test_health_answers_while_nobody_reads_stdout_or_stderr(tmp_path: Path) -> None:
    """gunicorn logs a warning on stderr for every malformed request; with its stderr (and
    stdout) a pipe nobody reads, those writes blocked the worker once the pipe was full: health
    checks timed out and SIGTERM did not stop it. Its log now goes through telemetry's
    non-blocking buffer: lines that do not fit are dropped and counted."""
    import os

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    env = {
        "POINTS_DB_PATH": str(tmp_path / "points.db"),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
        "TELEMETRY_OUTPUT_BUFFER_BYTES": "65536",
    }
    try:
        with gunicorn(env=env, stdout=out_w, stderr=err_w) as (base, proc):
            os.close(out_w)
            os.close(err_w)
            out_w = err_w = -1
            for _ in range(800):  # ~250 KB of warnings: far beyond the 64 KiB pipe
                sock = _connect(base)
                sock.settimeout(10)
                sock.sendall(b"GARBAGE " + b"y" * 200 + b"\r\n\r\n")
                assert sock.recv(100).startswith(b"HTTP/1.1 400"), "a blocked worker"
                sock.close()
            for _ in range(5):
                assert call(base, "/healthz", timeout=10)[0] == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
    finally:
        for fd in (out_w, err_w, out_r, err_r):
            if fd >= 0:
                os.close(fd)


def test_health_answers_at_once_behind_more_slow_peers_than_threads(tmp_path: Path) -> None:
    """Slow peers of each kind, many more than threads (2 workers x 2 threads): threads used to
    be taken by the connection, so the health check waited in the accept queue behind them (50
    slowloris connections: 14 s with 16 threads). The main thread now gathers each request
    without blocking; a thread takes it only when it is whole."""
    env = {
        "POINTS_DB_PATH": str(tmp_path / "points.db"),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "2",
        "GUNICORN_CLIENT_TIMEOUT": "4",
    }
    with gunicorn(env=env) as (base, proc):
        peers = []
        for i in range(60):
            sock = _connect(base)
            sock.sendall(
                [
                    b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ",  # headers that never end
                    b"POST /v1/points/grants HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{",
                    b"POST /v1/points/grants HTTP/1.1\r\nHost: t\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",  # a chunked body that never ends
                ][i % 3]
            )
            peers.append(sock)
        time.sleep(0.5)
        for _ in range(3):
            started = time.monotonic()
            assert call(base, "/healthz", timeout=20)[0] == 200
            assert time.monotonic() - started < 1.5  # it waited for the 4 s client timeout
        for sock in peers[:3]:
            status, content_type, _ = _answer(sock)  # each gets its 408 after the timeout
            assert (status, content_type) == (408, "application/problem+json")
        for sock in peers:
            sock.close()
        proc.terminate()
        assert proc.wait(30) == 0


def test_peers_that_expect_100_continue_and_never_send_their_body_hold_no_thread(
    tmp_path: Path,
) -> None:
    """``Expect: 100-continue`` made a thread take the request at the end of its head and wait
    for the body (24 such peers delayed a health check by 4.5 s with 16 threads). The main
    thread now answers ``100 Continue`` itself and gathers the body; a client that waits for it
    still gets exactly one."""
    env = {
        "POINTS_DB_PATH": str(tmp_path / "points.db"),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
        "GUNICORN_CLIENT_TIMEOUT": "4",
    }
    head = (
        b"POST /v1/points/grants HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + GRANT_AUTH
        + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n"
    )
    continue_line = b"HTTP/1.1 100 Continue\r\n\r\n"
    with gunicorn(env=env) as (base, proc):
        peers = []
        for _ in range(6):  # three times the threads: announce a body, never send it
            sock = _connect(base)
            sock.sendall(head % 10)
            peers.append(sock)
        for sock in peers:
            assert sock.recv(len(continue_line)) == continue_line
        started = time.monotonic()
        assert call(base, "/healthz", timeout=20)[0] == 200
        assert time.monotonic() - started < 2  # not behind the 4 s client timeout

        body = json.dumps({"user_id": "u-expect", "order_id": "o-1", "amount_jpy": 100}).encode()
        polite = _connect(base)
        polite.sendall(head % len(body))
        assert polite.recv(len(continue_line)) == continue_line  # waits for it, then sends
        polite.sendall(body)
        answer = polite.recv(65536)
        assert answer.startswith(b"HTTP/1.1 201"), answer  # no second "100 Continue"
        polite.close()

        for sock in peers:
            status, content_type, _ = _answer(sock)
            assert (status, content_type) == (408, "application/problem+json")
            sock.close()
        proc.terminate()
        assert proc.wait(30) == 0
