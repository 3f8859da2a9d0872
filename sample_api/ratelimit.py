"""Request rate limiter for the points routes: pyrate-limiter's token bucket (GCRA), per process.

Modes (``RATE_LIMIT_MODE``):

* ``delay`` - a request over the rate waits for its turn (pyrate-limiter's blocking acquire), so
  latency climbs once load exceeds the rate; a request that would wait longer than
  ``RATE_LIMIT_MAX_WAIT_S`` is refused at once with 429 + ``Retry-After``.
* ``reject`` - a request over the rate gets 429 + ``Retry-After`` at once.

The bucket lives in the worker process: with gunicorn, each worker limits its own requests, so the
service-wide rate is ``RATE_LIMIT_RPS x WEB_CONCURRENCY`` per task. The bucket is created lazily
in each process, so it never crosses gunicorn's ``fork()``.

The Flask glue records each admitted request's wait as the ``RateLimitWait`` metric and each
refusal as ``RateLimitRejections`` (telemetry catalog), keeps them in ``flask.g.rate_limit_wait_ms``
/ ``flask.g.rate_limited``, reports the wait in a ``Server-Timing: ratelimit;dur=<ms>`` header,
and shows where the time went: a ``rate_limiter`` child span of the request's server span (its
duration covers the wait) and ``rate_limit_wait_ms`` on the server span and the access line.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass

import flask
from pyrate_limiter import Limiter, Rate, SingleBucketFactory, StateBucket, TokenBucket

import telemetry
from sample_api.config import RateLimitSettings

_KEY = "points-service"
# pyrate-limiter's Rate takes an integer count per interval: express a fractional rate exactly
# enough as "rps x 1000 per 1000 s"; the token bucket only uses the emission interval and burst.
_SCALE = 1000
# Sleep slack the limiter adds to each wait; the bucket is in-process (no clock drift to cover),
# and a large slack would quietly lower the sustained rate below RATE_LIMIT_RPS.
_BUFFER_MS = 1
# Extra time a blocking acquire may take beyond the computed wait (thread races, scheduling)
# before it gives up with 429 rather than waiting without bound.
_SLACK_S = 0.25
# Guards the lazy per-process construction (several threads may take their first request at once).
_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Admission:
    """The limiter's verdict for one request."""

    admitted: bool
    waited_ms: float = 0.0
    retry_after_s: int = 0


class RateLimited(Exception):
    """Raised by :func:`enforce` for a refused request; rendered as a 429 problem."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"rate limit exceeded; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class RateLimiter:
    """A per-process token bucket with the two modes described in the module docstring."""

    def __init__(self, settings: RateLimitSettings) -> None:
        self.settings = settings
        self._pid: int | None = None
        self._limiter: Limiter | None = None
        self._bucket: StateBucket | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> tuple[Limiter, StateBucket, threading.Lock]:
        pid = os.getpid()
        if self._pid != pid:
            with _BUILD_LOCK:
                if self._pid != pid:
                    self._build(pid)
        assert self._limiter is not None and self._bucket is not None
        return self._limiter, self._bucket, self._lock

    def _build(self, pid: int) -> None:
        """First use in this process (or first after a fork): a fresh bucket and lock."""
        rate = Rate(
            max(1, round(self.settings.rps * _SCALE)), 1000 * _SCALE, burst=self.settings.burst
        )
        bucket = StateBucket([rate], algorithm=TokenBucket())
        self._lock = threading.Lock()
        # No leak thread: a token bucket keeps constant state, there is nothing to leak.
        factory = SingleBucketFactory(bucket, schedule_leak=False)
        self._limiter = Limiter(factory, buffer_ms=_BUFFER_MS)
        self._bucket = bucket
        self._pid = pid

    def _wait_ms(self, bucket: StateBucket) -> int:
        """How long one more request would wait now, without spending anything."""
        state = bucket.store.read(bucket.algorithm, bucket.rates)
        _, decision = bucket.algorithm.step(bucket.rates, state, bucket.now(), 1)
        return 0 if decision.allowed else int(decision.retry_after_ms or 0)

    def acquire(self) -> Admission:
        """Admit one request now, after a wait (delay mode), or not at all."""
        if not self.settings.enabled:
            return Admission(admitted=True)
        limiter, bucket, lock = self._ensure()
        started = time.perf_counter()
        with lock:
            if limiter.try_acquire(_KEY, blocking=False):
                return Admission(admitted=True)
            wait_ms = self._wait_ms(bucket)
        retry_after = max(1, math.ceil(wait_ms / 1000))
        if self.settings.mode == "reject" and wait_ms > 0:
            return Admission(admitted=False, retry_after_s=retry_after)
        if wait_ms / 1000 > self.settings.max_wait_s:
            return Admission(admitted=False, retry_after_s=retry_after)
        # A zero wait here means another thread briefly held the limiter's lock: just acquire.
        admitted = limiter.try_acquire(
            _KEY, blocking=True, timeout=self.settings.max_wait_s + _SLACK_S
        )
        waited_ms = (time.perf_counter() - started) * 1000
        if admitted:
            return Admission(admitted=True, waited_ms=waited_ms)
        # timed out after waiting (other threads took the turns): refused, and the wait said
        return Admission(admitted=False, waited_ms=waited_ms, retry_after_s=retry_after)

    def close(self) -> None:
        if self._limiter is not None and self._pid == os.getpid():
            self._limiter.close()
        self._limiter = None
        self._pid = None


#: The child span around the limiter's decision (its duration covers the wait).
SPAN_NAME = "rate_limiter"


def enforce(limiter: RateLimiter) -> None:
    """Flask glue: admit the current request or raise :class:`RateLimited`; record the wait
    (metric, ``rate_limiter`` child span, ``rate_limit_wait_ms`` on the server span and the
    access line; a refusal: ``rate_limited: true`` and the wait before it)."""
    if not limiter.settings.enabled:
        return
    with telemetry.span(SPAN_NAME, **{"rate_limit.mode": limiter.settings.mode}) as span:
        admission = limiter.acquire()
        span.set_attribute("rate_limit.admitted", admission.admitted)
        span.set_attribute("rate_limit.wait_ms", round(admission.waited_ms, 3))
    if not admission.admitted:
        flask.g.rate_limited = True
        telemetry.put_metric("RateLimitRejections", 1)
        # the wait before the refusal too (delay mode: up to RATE_LIMIT_MAX_WAIT_S + 0.25 s)
        telemetry.annotate(
            rate_limited=True,
            rate_limit_retry_after_s=admission.retry_after_s,
            rate_limit_wait_ms=round(admission.waited_ms, 3),
        )
        raise RateLimited(admission.retry_after_s)
    flask.g.rate_limit_wait_ms = admission.waited_ms
    telemetry.put_metric("RateLimitWait", admission.waited_ms)
    telemetry.annotate(rate_limit_wait_ms=round(admission.waited_ms, 3))


def server_timing(response: flask.Response) -> flask.Response:
    """``after_request`` hook: report the limiter's wait as a Server-Timing metric."""
    waited = flask.g.get("rate_limit_wait_ms")
    if waited is not None:
        response.headers.add("Server-Timing", f"ratelimit;dur={waited:.1f}")
    return response


__all__ = ["SPAN_NAME", "Admission", "RateLimited", "RateLimiter", "enforce", "server_timing"]
