"""The rate limiter: unit tests of its decisions and its HTTP behaviour through the test client.

Waits are checked by direction (waited or not, refused or not), never against wall-clock targets.
"""

from __future__ import annotations

import os
import threading

import flask
import pytest

from sample_api import RateLimitSettings
from sample_api.ratelimit import RateLimiter
from sample_api.state import state_of
from tests.sample_api.conftest import Api, rightful_headers

GRANTS = "/v1/points/grants"


def body(order: str) -> dict:
    return {"user_id": "alice", "order_id": order, "amount_jpy": 100}


def test_disabled_limiter_admits_everything_without_waiting() -> None:
    limiter = RateLimiter(RateLimitSettings(enabled=False, rps=0.001, burst=1))
    assert all(limiter.acquire().admitted for _ in range(50))
    assert limiter._limiter is None  # never even built


def test_reject_mode_admits_the_burst_then_refuses_with_retry_after() -> None:
    limiter = RateLimiter(RateLimitSettings(enabled=True, rps=0.01, burst=3, mode="reject"))
    results = [limiter.acquire() for _ in range(5)]
    assert [r.admitted for r in results] == [True, True, True, False, False]
    assert all(r.waited_ms == 0.0 for r in results)
    # One token per 100 s: the refused request is told to come back in (about) 100 s (the wide
    # lower bound only absorbs a stalled machine between the calls).
    assert 90 <= results[3].retry_after_s <= 100


def test_delay_mode_waits_for_its_turn() -> None:
    limiter = RateLimiter(RateLimitSettings(enabled=True, rps=20, burst=1, max_wait_s=5))
    first, second = limiter.acquire(), limiter.acquire()
    assert first.admitted and first.waited_ms == 0.0
    assert second.admitted and second.waited_ms > 0.0


def test_delay_mode_refuses_a_wait_longer_than_max_wait() -> None:
    limiter = RateLimiter(RateLimitSettings(enabled=True, rps=0.01, burst=1, max_wait_s=1))
    assert limiter.acquire().admitted
    refused = limiter.acquire()  # would wait ~100 s > 1 s: refused at once, no sleeping
    assert not refused.admitted and refused.waited_ms == 0.0
    assert 90 <= refused.retry_after_s <= 100


def test_delay_mode_refused_after_waiting_reports_the_wait(monkeypatch) -> None:
    """A blocking acquire that times out (other threads took the turns it waited for) refuses
    after the wait: the wait is reported, not 0.0 (a 2.25 s rate_limiter span said 0 ms)."""
    limiter = RateLimiter(RateLimitSettings(enabled=True, rps=20, burst=1, max_wait_s=5))
    assert limiter.acquire().admitted
    inner = limiter._limiter
    assert inner is not None
    real = inner.try_acquire

    def contended(name: str, *, blocking: bool = True, timeout: float = -1) -> bool:
        if not blocking:
            return real(name, blocking=False)
        threading.Event().wait(0.06)  # waited, then another thread had the token
        return False

    monkeypatch.setattr(inner, "try_acquire", contended)
    refused = limiter.acquire()
    assert not refused.admitted and refused.waited_ms >= 60.0


def test_a_refusal_after_a_wait_puts_the_wait_on_the_span_and_access_line(
    make_app, monkeypatch
) -> None:
    from sample_api import ratelimit

    app = make_app(rate_limit={"enabled": True, "rps": 2, "burst": 1, "max_wait_s": 5})
    annotated: dict = {}
    span_attrs: dict = {}

    class Span:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def set_attribute(self, key, value):
            span_attrs[key] = value

    monkeypatch.setattr(ratelimit.telemetry, "annotate", lambda **f: annotated.update(f))
    monkeypatch.setattr(ratelimit.telemetry, "span", lambda *a, **k: Span())
    limiter = state_of(app).limiter
    refusal = ratelimit.Admission(admitted=False, waited_ms=2250.0, retry_after_s=1)
    monkeypatch.setattr(limiter, "acquire", lambda: refusal)
    with app.test_request_context(GRANTS, method="POST"), pytest.raises(ratelimit.RateLimited):
        ratelimit.enforce(limiter)
    assert span_attrs["rate_limit.admitted"] is False
    assert span_attrs["rate_limit.wait_ms"] == 2250.0
    assert annotated["rate_limited"] is True and annotated["rate_limit_wait_ms"] == 2250.0


def test_delay_mode_with_many_threads_admits_all_within_max_wait() -> None:
    limiter = RateLimiter(RateLimitSettings(enabled=True, rps=5, burst=2, max_wait_s=10))
    results = []
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait(10)
        results.append(limiter.acquire())

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 8 and all(r.admitted for r in results)
    # The burst passes straight away; the rest queue (a token appears every 200 ms, so a thread
    # that starts late may find one: only "some waited" is certain, not how many).
    straight = sum(r.waited_ms == 0.0 for r in results)
    assert straight >= 2 and any(r.waited_ms > 0.0 for r in results)


def test_bucket_is_rebuilt_in_a_forked_child() -> None:
    limiter = RateLimiter(RateLimitSettings(enabled=True, rps=0.1, burst=1, mode="reject"))
    assert limiter.acquire().admitted
    assert not limiter.acquire().admitted
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: its own bucket, so its first request passes
        os.write(write, b"1" if limiter.acquire().admitted else b"0")
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
    assert not limiter.acquire().admitted  # the parent's bucket is unchanged


# -- through HTTP --------------------------------------------------------------------------------


def test_reject_mode_answers_429_problem_with_retry_after(make_app) -> None:
    app = make_app(rate_limit={"enabled": True, "rps": 0.1, "burst": 2, "mode": "reject"})
    api = Api(app.test_client())
    assert api.post(GRANTS, json=body("a")).status_code == 201
    assert api.post(GRANTS, json=body("b")).status_code == 201
    refused = api.post(GRANTS, json=body("c"))
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["type"] == "/problems/rate-limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert api.get("/v1/users/alice/points").status_code == 429  # every points route is limited
    # The refused grant was never stored.
    state_of(app).limiter.settings = RateLimitSettings(enabled=False)
    entries = api.get("/v1/users/alice/points").get_json()["entries"]
    assert sorted(e["order_id"] for e in entries) == ["a", "b"]


def test_health_and_meta_are_never_limited(make_app) -> None:
    app = make_app(rate_limit={"enabled": True, "rps": 0.01, "burst": 1, "mode": "reject"})
    api = Api(app.test_client())
    api.post(GRANTS, json=body("a"))
    assert api.post(GRANTS, json=body("b")).status_code == 429
    for _ in range(5):
        for path in ("/healthz", "/readyz", "/version", "/openapi.json"):
            assert api.get(path).status_code == 200
    assert api.get("/version").get_json()["rate_limiter"] == {
        "enabled": True,
        "rps": 0.01,
        "burst": 1,
        "mode": "reject",
        "max_wait_s": 5.0,
        "scope": "process",
    }


def test_wait_is_exposed_to_telemetry_and_in_server_timing(make_app) -> None:
    app = make_app(rate_limit={"enabled": True, "rps": 2, "burst": 1, "max_wait_s": 5})
    seen: list[tuple] = []

    @app.after_request
    def record(response: flask.Response) -> flask.Response:
        seen.append((flask.g.get("rate_limit_wait_ms"), flask.g.get("rate_limited", False)))
        return response

    client = app.test_client()
    first = client.post(GRANTS, headers=rightful_headers("POST", GRANTS), json=body("a"))
    # Spend the token that refilled meanwhile (the first request may have been slow), so the
    # second request finds the bucket empty and waits (unless 0.5 s pass in between).
    state_of(app).limiter.acquire()
    second = client.post(GRANTS, headers=rightful_headers("POST", GRANTS), json=body("b"))
    assert first.headers["Server-Timing"] == "ratelimit;dur=0.0"
    assert second.headers["Server-Timing"].startswith("ratelimit;dur=")
    assert seen[0] == (0.0, False)
    assert seen[1][0] > 0.0 and seen[1][1] is False
    client.get("/healthz")
    assert seen[2] == (None, False)


def test_rejection_is_flagged_for_telemetry(make_app) -> None:
    app = make_app(rate_limit={"enabled": True, "rps": 0.01, "burst": 1, "mode": "reject"})
    flags: list[bool] = []

    @app.teardown_request
    def record(_exc: BaseException | None) -> None:
        flags.append(flask.g.get("rate_limited", False))

    client = app.test_client()
    assert (
        client.post(GRANTS, headers=rightful_headers("POST", GRANTS), json=body("a")).status_code
        == 201
    )
    assert (
        client.post(GRANTS, headers=rightful_headers("POST", GRANTS), json=body("b")).status_code
        == 429
    )
    assert flags == [False, True]


@pytest.mark.parametrize("mode", ["delay", "reject"])
def test_limiter_runs_before_the_body_is_validated(make_app, mode: str) -> None:
    # Over the rate, even a malformed request is refused by the limiter first (it never did work).
    app = make_app(
        rate_limit={"enabled": True, "rps": 0.01, "burst": 1, "mode": mode, "max_wait_s": 1}
    )
    client = app.test_client()
    client.post(GRANTS, headers=rightful_headers("POST", GRANTS), json=body("a"))
    assert (
        client.post(
            GRANTS,
            headers=rightful_headers("POST", GRANTS),
            data="{",
            content_type="application/json",
        ).status_code
        == 429
    )
