"""Load shapes for the points service, selected by ``LOAD_SHAPE`` (see ``loadtest/locustfile.py``).

Each shape is a small :class:`locust.LoadTestShape`. Locust drives *users*; the shapes turn a
request rate into users because every user paces itself at ``LOAD_USER_RPS`` requests per second
(``constant_throughput``), so ``users = ceil(rate / LOAD_USER_RPS)``.

The classes here are abstract: Locust only runs the one ``locustfile.py`` binds, so several shapes can
live side by side.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from locust import LoadTestShape

DEFAULTS: dict[str, str] = {
    "LOAD_RPS": "40",  # steady / demo rate, requests per second over all users
    "LOAD_USER_RPS": "2",  # requests per second of one simulated user
    "LOAD_STEP_RPS": "80",  # the step shape's second stage (above the green limiter's rate)
    "LOAD_STEP_AFTER_S": "60",  # the step shape moves to LOAD_STEP_RPS after this many seconds
    "LOAD_RAMP_S": "3",  # seconds to reach the target rate
    "LOAD_DURATION_S": "0",  # stop after this many seconds; 0 = until stopped (or --run-time)
}


def setting(name: str, env: Mapping[str, str] | None = None) -> float:
    """A numeric ``LOAD_*`` setting from the environment (or its default); ``ValueError`` if bad."""
    env = os.environ if env is None else env
    text = env.get(name, DEFAULTS[name])
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {text!r}")
    return value


def users_for(rps: float, user_rps: float) -> int:
    """Users needed for ``rps`` requests per second when each user makes ``user_rps``."""
    if user_rps <= 0:
        raise ValueError("LOAD_USER_RPS must be > 0")
    return max(1, math.ceil(rps / user_rps)) if rps > 0 else 0


class _RateShape(LoadTestShape):
    """Common part: read the settings once, stop after ``LOAD_DURATION_S`` when it is set."""

    abstract = True
    use_common_options = True  # so `--run-time` still applies

    def __init__(self) -> None:
        super().__init__()
        self.user_rps = setting("LOAD_USER_RPS")
        self.ramp_s = max(setting("LOAD_RAMP_S"), 0.1)
        self.duration_s = setting("LOAD_DURATION_S")

    def rate_at(self, run_time: float) -> float:
        raise NotImplementedError

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        if self.duration_s and run_time >= self.duration_s:
            return None
        users = users_for(self.rate_at(run_time), self.user_rps)
        return users, max(users / self.ramp_s, 1.0)


class SteadyShape(_RateShape):
    """``LOAD_RPS`` requests per second, reached within ``LOAD_RAMP_S``."""

    abstract = True

    def rate_at(self, run_time: float) -> float:
        return setting("LOAD_RPS")


class StepShape(_RateShape):
    """``LOAD_RPS`` for ``LOAD_STEP_AFTER_S`` seconds, then ``LOAD_STEP_RPS`` (above the limit)."""

    abstract = True

    def rate_at(self, run_time: float) -> float:
        if run_time < setting("LOAD_STEP_AFTER_S"):
            return setting("LOAD_RPS")
        return setting("LOAD_STEP_RPS")


class DemoShape(_RateShape):
    """The rollback demo: a quick ramp to ``LOAD_RPS`` held for the whole deployment.

    The rate is chosen so that green's share at the first traffic step (10 %) is already above
    green's rate limit, while the total stays well within what blue serves comfortably.
    """

    abstract = True

    def rate_at(self, run_time: float) -> float:
        return setting("LOAD_RPS")


SHAPES: dict[str, type[_RateShape]] = {
    "steady": SteadyShape,
    "step": StepShape,
    "demo": DemoShape,
}


def pick(name: str | None) -> type[_RateShape] | None:
    """The shape class called ``name`` (``None`` or ``""`` -> no shape); ``ValueError`` if unknown."""
    if not name:
        return None
    try:
        return SHAPES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"LOAD_SHAPE must be one of {', '.join(SHAPES)}, got {name!r}") from None
