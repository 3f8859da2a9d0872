"""The load shapes' arithmetic, without Locust: settings, rate over time, users for a rate.

Kept apart from ``loadtest/shapes.py`` because importing Locust monkey-patches the whole process
with gevent; tools and tests that only need the numbers import this module instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

DEFAULTS: dict[str, str] = {
    "LOAD_RPS": "40",  # steady / demo rate, requests per second over all users
    "LOAD_USER_RPS": "2",  # requests per second of one simulated user
    "LOAD_STEP_RPS": "80",  # the step shape's second stage (above the green limiter's rate)
    "LOAD_STEP_AFTER_S": "60",  # the step shape moves to LOAD_STEP_RPS after this many seconds
    "LOAD_RAMP_S": "3",  # seconds to reach the target rate
    "LOAD_DURATION_S": "0",  # stop after this many seconds; 0 = until stopped (or --run-time)
    "LOAD_USER_POOL": "500",  # distinct customer ids the users act for
    "LOAD_RETRY_SHARE": "0.05",  # share of grants re-sent as client retries (same order_id)
}
SHAPE_NAMES = ("steady", "step", "demo")
#: Appended to a route's name for its 429 answers (the locustfile): refusals get their own row in
#: Locust's CSV and HTML instead of hiding among the route's successes.
THROTTLED_SUFFIX = " [429]"
# Settings that must be above zero (a user that makes no request, or acts for nobody, would make
# every task fail or the load never start), and the largest value each one accepts.
_POSITIVE = {"LOAD_USER_RPS", "LOAD_USER_POOL"}
_MAXIMUM = {"LOAD_RETRY_SHARE": 1.0, "LOAD_USER_POOL": 1_000_000_000}
#: The most users a shape may ask for: far beyond what one Locust process runs (a few thousand
#: gevent users), still a number Locust can be handed. A rate / per-user rate above it is a
#: mistake (``LOAD_RPS=1e300`` or ``LOAD_USER_RPS=1e-300``), refused before any load starts.
MAX_USERS = 100_000
# the rates a shape turns into users (their per-user rate: LOAD_USER_RPS)
_RATES = ("LOAD_RPS", "LOAD_STEP_RPS")


def _text(name: str, env: Mapping[str, str]) -> str:
    text = env.get(name)
    return DEFAULTS[name] if text is None or not text.strip() else text.strip()


def setting(name: str, env: Mapping[str, str] | None = None) -> float:
    """A numeric ``LOAD_*`` setting from the environment (unset or blank: its default).

    Raises ``ValueError`` with a one-line message naming the variable: not a number, not finite,
    below 0 (or not above 0 for ``LOAD_USER_RPS`` and ``LOAD_USER_POOL``), above its maximum
    (1 for ``LOAD_RETRY_SHARE``), or not whole for ``LOAD_USER_POOL``."""
    env = os.environ if env is None else env
    text = _text(name, env)
    try:
        if not text.isascii() or "_" in text:
            raise ValueError  # float() also reads non-ASCII digits and '1_0': a mistake, not a number
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {env.get(name)!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {env.get(name)!r}")
    if name in _POSITIVE and value <= 0:
        raise ValueError(f"{name} must be > 0, got {env.get(name)!r}")
    if name in _MAXIMUM and value > _MAXIMUM[name]:
        raise ValueError(f"{name} must be at most {_MAXIMUM[name]:g}, got {env.get(name)!r}")
    if name == "LOAD_USER_POOL" and not value.is_integer():
        raise ValueError(f"{name} must be a whole number, got {env.get(name)!r}")
    return value


def check(env: Mapping[str, str] | None = None) -> None:
    """Check every load setting (``LOAD_SHAPE`` and each of :data:`DEFAULTS`) before any load
    starts; ``ValueError`` naming the first bad variable."""
    env = os.environ if env is None else env
    shape_name(env.get("LOAD_SHAPE"))
    for name in DEFAULTS:
        setting(name, env)
    user_rps = setting("LOAD_USER_RPS", env)
    for name in _RATES:
        try:
            users_for(setting(name, env), user_rps)
        except ValueError as exc:
            raise ValueError(
                f"{name} must ask for at most {MAX_USERS:,} users at LOAD_USER_RPS="
                f"{user_rps:g}, got {env.get(name, DEFAULTS[name])!r}: {exc}"
            ) from None


def users_for(rps: float, user_rps: float) -> int:
    """Users needed for ``rps`` requests per second when each user makes ``user_rps``.

    Raises ``ValueError`` when ``user_rps`` is not above 0 or the answer would exceed
    :data:`MAX_USERS`."""
    if user_rps <= 0:
        raise ValueError("LOAD_USER_RPS must be > 0")
    if rps <= 0:
        return 0
    users = rps / user_rps  # may be inf (1e300 / 1e-300): compared before ceil() sees it
    if not users <= MAX_USERS:
        raise ValueError(
            f"{rps:g} requests/s at {user_rps:g} per user needs {users:.3g} users, "
            f"more than {MAX_USERS:,}"
        )
    return max(1, math.ceil(users))


def shape_name(name: str | None) -> str | None:
    """The canonical shape name for ``LOAD_SHAPE`` (``None``/"" -> none); ``ValueError`` if unknown."""
    if not name or not name.strip():
        return None
    canonical = name.strip().lower()
    if canonical not in SHAPE_NAMES:
        raise ValueError(f"LOAD_SHAPE must be one of {', '.join(SHAPE_NAMES)}, got {name!r}")
    return canonical


def rate_at(shape: str, run_time: float, env: Mapping[str, str] | None = None) -> float:
    """Requests per second that shape ``shape`` asks for ``run_time`` seconds into the test."""
    if shape == "step" and run_time >= setting("LOAD_STEP_AFTER_S", env):
        return setting("LOAD_STEP_RPS", env)
    return setting("LOAD_RPS", env)


def user_rps_at(shape: str | None, run_time: float, env: Mapping[str, str] | None = None) -> float:
    """Requests per second each user makes ``run_time`` seconds into the test.

    Without a shape, ``LOAD_USER_RPS``. With one, the shape's rate shared by its
    ``ceil(rate / LOAD_USER_RPS)`` users, so at most ``LOAD_USER_RPS``: the users together make
    the rate asked for, not up to a user's rate more (``LOAD_RPS=1`` with the default 2 per user
    made 2 requests/s, ``LOAD_USER_RPS=1e20`` one user's unpaced loop)."""
    user_rps = setting("LOAD_USER_RPS", env)
    if shape is None:
        return user_rps
    rate = rate_at(shape, run_time, env)
    users = users_for(rate, user_rps)
    return rate / users if users else user_rps


def tick(
    shape: str,
    run_time: float,
    env: Mapping[str, str] | None = None,
    limit_s: float | None = None,
) -> tuple[int, float] | None:
    """Locust's ``tick()`` for ``shape``: ``(users, spawn rate)``, or ``None`` once it is over
    (after ``LOAD_DURATION_S``, or ``limit_s``: Locust's ``--run-time``)."""
    duration = setting("LOAD_DURATION_S", env)
    if duration and run_time >= duration:
        return None
    if limit_s and run_time >= limit_s:
        return None
    users = users_for(rate_at(shape, run_time, env), setting("LOAD_USER_RPS", env))
    ramp_s = max(setting("LOAD_RAMP_S", env), 0.1)
    return users, max(users / ramp_s, 1.0)
