"""CodeDeploy deployment configurations and ECS native strategies as traffic-shift schedules.

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

ECS native deployments (``ApiDeploymentController=ECS``; ECS API ``DeploymentConfiguration``
``strategy``) are written ``ecs:blue_green``, ``ecs:linear[:<stepPercent>[:<stepBakeTimeInMinutes>]]``
and ``ecs:canary[:<canaryPercent>[:<canaryBakeTimeInMinutes>]]`` (any case), with ECS's own rules
(the ECS API reference, ``LinearConfiguration``/``CanaryConfiguration``, as shipped in botocore's
model):

=============  ==========================================================  ==================
``BLUE_GREEN``  all production traffic at once, then ``bakeTimeInMinutes``  (``--bake``)
``LINEAR``      ``stepPercent`` more every ``stepBakeTimeInMinutes``         default 10.0 %, 6 min
``CANARY``      ``canaryPercent`` first, the rest ``canaryBakeTimeInMinutes`` later  5.0 %, 10 min
=============  ==========================================================  ==================

``stepPercent`` is a multiple of 0.1 from 3.0 to 100.0, ``canaryPercent`` a multiple of 0.1 from 0.1
to 100.0, both bake times whole minutes 0..1440; the step bake time is not applied after 100 %.
``bakeTimeInMinutes`` (both revisions kept after the shift, alarms still watched) is the
rehearsal's ``--bake``. The rehearsal's listener weights are whole percents: a fractional share is
rounded to the nearest whole percent, and a non-zero one to at least 1 %.

A schedule is pure data: the list of ``(offset_s, green_percent)`` steps from the moment green first
takes traffic, then the bake time (CodeDeploy's wait before terminating the original task set) during
which alarms can still roll the deployment back. ``--time-scale`` multiplies every duration.
"""

from __future__ import annotations

import math
import re
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

ECS_PREFIX = "ecs:"
_PLAIN_NUMBER = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")


def plain_number(text: str) -> bool:
    """Whether ``text`` is a plain ASCII decimal (``10``, ``2.5``): what a value written inside
    a configuration name may be. ``float()`` also reads Arabic-Indic and full-width digits,
    ``1_0``, `` 10``, ``1e1``, ``+5``, ``inf``."""
    return _PLAIN_NUMBER.fullmatch(text) is not None


#: ECS strategy -> (schedule kind, default percent, default bake minutes, minimum percent)
ECS_STRATEGIES: dict[str, tuple[str, float, int, float]] = {
    "BLUE_GREEN": ("allatonce", 100.0, 0, 100.0),
    "LINEAR": ("linear", 10.0, 6, 3.0),
    "CANARY": ("canary", 5.0, 10, 0.1),
}
#: ECS accepts 0..1440 minutes for stepBakeTimeInMinutes/canaryBakeTimeInMinutes.
ECS_MAX_BAKE_MINUTES = 1440
#: CodeDeploy's longest wait before the original (blue) task set is deleted: 2880 minutes
#: (``BlueInstanceTerminationOption.terminationWaitTimeInMinutes``, CodeDeploy API reference).
MAX_BAKE_S = 2880 * 60.0


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


def _whole(percent: float) -> int:
    """A traffic share as the listener's whole percent: nearest, and at least 1 when non-zero."""
    return max(1, min(100, math.floor(percent + 0.5))) if percent > 0 else 0


def _steps(kind: str, percent: float, interval_s: float) -> list[Step]:
    if kind == "allatonce":
        return [Step(0.0, 100)]
    if kind == "canary":
        return [Step(0.0, _whole(percent)), Step(interval_s, 100)]
    # linear: ``percent`` more every interval; the last increment may be smaller (30 -> 30/60/90/100)
    count = math.ceil(round(100 / percent, 9))
    return [Step(i * interval_s, _whole(min(100.0, (i + 1) * percent))) for i in range(count)]


def _parse_ecs(name: str) -> tuple[str, float, float]:
    """``(kind, percent, interval_s)`` of an ``ecs:<strategy>[:<percent>[:<minutes>]]`` name."""
    parts = name[len(ECS_PREFIX) :].split(":")
    strategy = parts[0].upper()
    usage = (
        "use ecs:blue_green, ecs:linear[:<stepPercent>[:<stepBakeTimeInMinutes>]] or "
        "ecs:canary[:<canaryPercent>[:<canaryBakeTimeInMinutes>]]"
    )
    if strategy not in ECS_STRATEGIES:
        raise ConfigError(f"unknown ECS deployment strategy in {name!r}; {usage}")
    kind, percent, minutes, low = ECS_STRATEGIES[strategy]
    if strategy == "BLUE_GREEN" and len(parts) > 1:
        raise ConfigError(f"bad ECS deployment configuration {name!r}: BLUE_GREEN takes no values")
    if len(parts) > 3:
        raise ConfigError(f"bad ECS deployment configuration {name!r}; {usage}")
    field = "stepPercent" if strategy == "LINEAR" else "canaryPercent"
    bake = "stepBakeTimeInMinutes" if strategy == "LINEAR" else "canaryBakeTimeInMinutes"
    if len(parts) > 1:
        if not plain_number(parts[1]):
            raise ConfigError(
                f"bad ECS deployment configuration {name!r}: {field} must be a number: a plain "
                "decimal (digits 0-9, an optional fraction)"
            )
        percent = float(parts[1])
        tenths = percent * 10
        if not (
            math.isfinite(percent) and low <= percent <= 100 and abs(tenths - round(tenths)) < 1e-9
        ):
            raise ConfigError(
                f"bad ECS deployment configuration {name!r}: {field} must be a multiple of 0.1 "
                f"from {low:.1f} to 100.0"
            )
    if len(parts) > 2:
        if not re.fullmatch(r"[0-9]{1,4}", parts[2]) or int(parts[2]) > ECS_MAX_BAKE_MINUTES:
            raise ConfigError(
                f"bad ECS deployment configuration {name!r}: {bake} must be whole minutes "
                f"0..{ECS_MAX_BAKE_MINUTES}"
            )
        minutes = int(parts[2])
    return kind, percent, minutes * 60.0


def _canonical_ecs(name: str) -> str:
    head, _, rest = name.partition(":")
    strategy, _, values = rest.partition(":")
    return f"{head.upper()}:{strategy.upper()}" + (f":{values}" if values else "")


def canonical(name: str) -> str:
    """The predefined configuration's full name for ``name`` given with or without the
    ``CodeDeployDefault.`` prefix, in any case (``ecsallatonce``); other names unchanged."""
    wanted = name.strip().lower()
    if wanted.startswith(ECS_PREFIX):
        return _canonical_ecs(name.strip())
    for full in PREDEFINED:
        if wanted in (full.lower(), full.removeprefix(PREFIX).lower()):
            return full
    return name


def parse(name: str) -> tuple[str, float, float]:
    """``(kind, percent, interval_s)`` of a predefined or custom configuration; :class:`ConfigError`."""
    if name in PREDEFINED:
        kind, percent, minutes = PREDEFINED[name]
        return kind, float(percent), minutes * 60.0
    if name.lower().startswith(ECS_PREFIX):
        return _parse_ecs(name)
    if name.startswith(PREFIX):
        known = ", ".join(sorted(PREDEFINED))
        raise ConfigError(f"unknown deployment configuration {name!r}; known: {known}, custom:...")
    parts = name.split(":")
    if parts[0] != "custom":
        raise ConfigError(
            f"unknown deployment configuration {name!r}; use a CodeDeployDefault.ECS* name, "
            "custom:linear:<percent>:<interval_s> / custom:canary:<percent>:<interval_s> / "
            "custom:allatonce, or an ECS native ecs:blue_green / ecs:linear / ecs:canary"
        )
    if len(parts) == 2 and parts[1] == "allatonce":
        return "allatonce", 100.0, 0.0
    if len(parts) != 4 or parts[1] not in ("linear", "canary"):
        raise ConfigError(
            f"bad custom deployment configuration {name!r}; expected "
            "custom:linear:<percent>:<interval_s>, custom:canary:<percent>:<interval_s> or "
            "custom:allatonce"
        )
    # plain ASCII decimals: float() also reads Arabic-Indic digits, "1_0", " 10", "1e1"
    if not (plain_number(parts[2]) and plain_number(parts[3])):
        raise ConfigError(
            f"bad custom deployment configuration {name!r}: percent and interval must be "
            "plain decimal numbers (digits 0-9, an optional fraction)"
        )
    percent, interval_s = float(parts[2]), float(parts[3])
    # CodeDeploy accepts 1..99 percent for TimeBasedCanary/TimeBasedLinear increments.
    if not (1 <= percent <= 99 and percent == int(percent)):
        raise ConfigError(f"bad custom deployment configuration {name!r}: percent must be 1..99")
    if not (0 < interval_s <= 86_400 and math.isfinite(interval_s)):
        raise ConfigError(
            f"bad custom deployment configuration {name!r}: interval must be 0 < s <= 86400"
        )
    return parts[1], percent, interval_s


def build(name: str, *, time_scale: float = 1.0, bake_s: float = 60.0) -> Schedule:
    """The schedule of configuration ``name`` with every duration (bake included) scaled.

    ``bake_s`` (before scaling) is 0 to :data:`MAX_BAKE_S`; :class:`ConfigError` otherwise, or
    when a scaled duration overflows."""
    if not (time_scale > 0 and math.isfinite(time_scale)):
        raise ConfigError(f"time scale must be a positive number, got {time_scale!r}")
    if not 0 <= bake_s <= MAX_BAKE_S:  # NaN fails too
        raise ConfigError(
            f"bake time must be 0-{MAX_BAKE_S:g} s (CodeDeploy's longest termination wait, "
            f"2880 minutes), got {bake_s!r}"
        )
    name = canonical(name)
    kind, percent, interval_s = parse(name)
    # Custom intervals scale too: --time-scale means "every duration", with no exceptions to learn.
    steps = tuple(
        Step(round(s.at_s * time_scale, 3), s.green_percent)
        for s in _steps(kind, percent, interval_s)
    )
    if (
        name.startswith("custom:")
        and kind != "allatonce"
        and round(interval_s * time_scale, 3) <= 0
    ):
        # every step would land at 0 s: not the gradual shift the configuration names
        raise ConfigError(
            f"{name} at time scale {time_scale!r}: its {interval_s:g} s interval scales to "
            "under 1 ms; raise --time-scale or the interval"
        )
    scaled_bake = round(bake_s * time_scale, 3)
    if not all(math.isfinite(x) for x in (scaled_bake, *(s.at_s for s in steps))):
        # e.g. --time-scale 1e308: an infinite wait would run forever and write Infinity (not
        # JSON) into the outputs.
        raise ConfigError(
            f"time scale {time_scale!r} with bake {bake_s!r} s makes a duration of {name} "
            "overflow to infinity"
        )
    return Schedule(name=name, kind=kind, steps=steps, bake_s=scaled_bake)
