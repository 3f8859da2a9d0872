"""CodeDeploy deployment configurations for Amazon ECS as traffic-shift schedules.

The predefined ECS configurations (CodeDeploy User Guide, "Deployment configurations on an Amazon
ECS compute platform"):

==================================================  =============================================
``CodeDeployDefault.ECSLinear10PercentEvery1Minutes``  10 % more traffic every minute until 100 %
``CodeDeployDefault.ECSLinear10PercentEvery3Minutes``  10 % more traffic every 3 minutes until 100 %
``CodeDeployDefault.ECSCanary10Percent5Minutes``       10 % first, the remaining 90 % 5 minutes later
``CodeDeployDefault.ECSCanary10Percent15Minutes``      10 % first, the remaining 90 % 15 minutes later
``CodeDeployDefault.ECSAllAtOnce``                     all traffic at once
==================================================  =============================================

A custom configuration is written ``custom:linear:<percent>:<interval_s>``,
``custom:canary:<percent>:<interval_s>`` or ``custom:allatonce`` (the fields of CodeDeploy's
``TimeBasedLinear`` / ``TimeBasedCanary`` traffic routing, with the interval in seconds rather than
minutes so short custom steps need no time scale).

A schedule is pure data: the list of ``(offset_s, green_percent)`` steps from the moment green first
takes traffic, then the bake time (CodeDeploy's wait before terminating the original task set) during
which alarms can still roll the deployment back. ``--time-scale`` multiplies every duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PREFIX = "CodeDeployDefault."

#: name -> (kind, percent, interval in minutes)
PREDEFINED: dict[str, tuple[str, int, int]] = {
    "CodeDeployDefault.ECSLinear10PercentEvery1Minutes": ("linear", 10, 1),
    "CodeDeployDefault.ECSLinear10PercentEvery3Minutes": ("linear", 10, 3),
    "CodeDeployDefault.ECSCanary10Percent5Minutes": ("canary", 10, 5),
    "CodeDeployDefault.ECSCanary10Percent15Minutes": ("canary", 10, 15),
    "CodeDeployDefault.ECSAllAtOnce": ("allatonce", 100, 0),
}

DEFAULT_CONFIG = "CodeDeployDefault.ECSLinear10PercentEvery1Minutes"


@dataclass(frozen=True, slots=True)
class Step:
    """From ``at_s`` seconds after green first takes traffic, green gets ``green_percent``."""

    at_s: float
    green_percent: int


@dataclass(frozen=True, slots=True)
class Schedule:
    """Traffic steps of one deployment plus the bake time after the last one (all in seconds)."""

    name: str
    kind: str
    steps: tuple[Step, ...]
    bake_s: float

    @property
    def shift_s(self) -> float:
        """Seconds from the first step until all traffic is on green."""
        return self.steps[-1].at_s

    @property
    def total_s(self) -> float:
        """Seconds from the first step until the original (blue) task set is terminated."""
        return self.shift_s + self.bake_s

    def percent_at(self, offset_s: float) -> int:
        """Green's share ``offset_s`` seconds after the deployment started shifting traffic."""
        percent = 0
        for step in self.steps:
            if offset_s >= step.at_s:
                percent = step.green_percent
        return percent


class ConfigError(ValueError):
    """A deployment configuration name or custom specification that cannot be used."""


def _steps(kind: str, percent: float, interval_s: float) -> list[Step]:
    if kind == "allatonce":
        return [Step(0.0, 100)]
    if kind == "canary":
        return [Step(0.0, int(percent)), Step(interval_s, 100)]
    # linear: ``percent`` more every interval; the last increment may be smaller (30 -> 30/60/90/100)
    count = math.ceil(100 / percent)
    return [Step(i * interval_s, min(100, round((i + 1) * percent))) for i in range(count)]


def canonical(name: str) -> str:
    """The predefined configuration's full name for ``name`` given with or without the
    ``CodeDeployDefault.`` prefix, in any case (``ecsallatonce``); other names unchanged."""
    wanted = name.strip().lower()
    for full in PREDEFINED:
        if wanted in (full.lower(), full.removeprefix(PREFIX).lower()):
            return full
    return name


def parse(name: str) -> tuple[str, float, float]:
    """``(kind, percent, interval_s)`` of a predefined or custom configuration; :class:`ConfigError`."""
    if name in PREDEFINED:
        kind, percent, minutes = PREDEFINED[name]
        return kind, float(percent), minutes * 60.0
    if name.startswith(PREFIX):
        known = ", ".join(sorted(PREDEFINED))
        raise ConfigError(f"unknown deployment configuration {name!r}; known: {known}, custom:...")
    parts = name.split(":")
    if parts[0] != "custom":
        raise ConfigError(
            f"unknown deployment configuration {name!r}; use a CodeDeployDefault.ECS* name or "
            "custom:linear:<percent>:<interval_s> / custom:canary:<percent>:<interval_s> / "
            "custom:allatonce"
        )
    if len(parts) == 2 and parts[1] == "allatonce":
        return "allatonce", 100.0, 0.0
    if len(parts) != 4 or parts[1] not in ("linear", "canary"):
        raise ConfigError(
            f"bad custom deployment configuration {name!r}; expected "
            "custom:linear:<percent>:<interval_s>, custom:canary:<percent>:<interval_s> or "
            "custom:allatonce"
        )
    try:
        percent, interval_s = float(parts[2]), float(parts[3])
    except ValueError:
        raise ConfigError(
            f"bad custom deployment configuration {name!r}: percent and interval must be numbers"
        ) from None
    # CodeDeploy accepts 1..99 percent for TimeBasedCanary/TimeBasedLinear increments.
    if not (1 <= percent <= 99 and percent == int(percent)):
        raise ConfigError(f"bad custom deployment configuration {name!r}: percent must be 1..99")
    if not (0 < interval_s <= 86_400 and math.isfinite(interval_s)):
        raise ConfigError(
            f"bad custom deployment configuration {name!r}: interval must be 0 < s <= 86400"
        )
    return parts[1], percent, interval_s


def build(name: str, *, time_scale: float = 1.0, bake_s: float = 60.0) -> Schedule:
    """The schedule of configuration ``name`` with every duration (bake included) scaled."""
    if not (time_scale > 0 and math.isfinite(time_scale)):
        raise ConfigError(f"time scale must be a positive number, got {time_scale!r}")
    if not (bake_s >= 0 and math.isfinite(bake_s)):
        raise ConfigError(f"bake time must be >= 0 s, got {bake_s!r}")
    name = canonical(name)
    kind, percent, interval_s = parse(name)
    # Custom intervals scale too: --time-scale means "every duration", with no exceptions to learn.
    steps = tuple(
        Step(round(s.at_s * time_scale, 3), s.green_percent)
        for s in _steps(kind, percent, interval_s)
    )
    return Schedule(name=name, kind=kind, steps=steps, bake_s=round(bake_s * time_scale, 3))
