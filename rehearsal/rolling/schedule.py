"""Amazon ECS rolling updates (the ``ECS`` deployment controller) as batches of tasks.

The rules, from the Amazon ECS Developer Guide ("Deploy Amazon ECS services by replacing tasks")
and the API reference (``DeploymentConfiguration``, ``ServiceDeploymentCircuitBreaker``):

- ``minimumHealthyPercent`` is a lower limit on the tasks that must stay RUNNING (and healthy)
  during the deployment, as a percentage of ``desiredCount`` **rounded up**
  (``ceil(desired * min / 100)``): 50 % of 4 lets the scheduler stop 2 old tasks before starting
  2 new ones; 75 % of 2 is 2, so no task can be stopped first.
- ``maximumPercent`` is an upper limit on the tasks RUNNING or PENDING, as a percentage of
  ``desiredCount`` **rounded down** (``floor(desired * max / 100)``): 200 % of 4 lets the
  scheduler start 4 new tasks before stopping the 4 old ones.
- So, in each round the scheduler stops as many old tasks as the healthy count allows above the
  minimum, then starts as many new tasks as the maximum allows, and waits for those to become
  healthy before the next round. A task of a service without a load balancer and without a
  container health check counts towards the minimum healthy total **40 s after it reaches
  RUNNING** (``DeploymentConfiguration.minimumHealthyPercent``, API reference).
- If neither limit lets a task be stopped or started (``max_running <= min_healthy`` while old
  tasks are left), the deployment cannot progress: :func:`plan` raises :class:`RollingConfigError`
  rather than hang, which is what a stuck ECS deployment does until its circuit breaker gives up.
- Deployment alarms (``deploymentConfiguration.alarms`` with ``rollback: true``): ECS watches the
  named CloudWatch alarms from the moment a task of the new revision runs, through the
  replacement and a bake time after it ("How CloudWatch alarms detect Amazon ECS deployment
  failures"; the bake time is computed by ECS from the alarms' configuration and cannot be set).
  An alarm in ALARM fails the deployment and rolls it back to the last completed revision: a
  deployment of the old revision under the same limits, so new tasks are stopped and old-revision
  tasks started until the desired count runs the old revision again.
- The deployment circuit breaker (``deploymentCircuitBreaker``) fails a deployment whose tasks
  fail to start (never reach RUNNING) this many times: ``0.5 * desiredCount``, at least 3 and at
  most 200 (:func:`circuit_breaker_threshold`).

Stopping a task is SIGTERM to its container, then SIGKILL after the container's ``stopTimeout``
(30 s in deploy/stack.yaml); the worker stops gracefully on SIGTERM. Tasks being stopped no longer
count as RUNNING here (ECS moves them to DEACTIVATING/STOPPING at once).

Everything here is pure: counts in, batches out; the runner does the waiting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: A task without a container health check (the worker's) counts as healthy this long after it
#: reaches RUNNING (ECS API reference, DeploymentConfiguration.minimumHealthyPercent).
HEALTHY_AFTER_RUNNING_S = 40.0
#: The longest a deployment can take here: a bound, far above what the limits ever need.
MAX_ROUNDS = 1000


class RollingConfigError(ValueError):
    """A desired count or percentage ECS would refuse, or with which no task can be replaced."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The task counts ECS derives from a deployment configuration."""

    desired: int
    min_healthy: int  # ceil(desired * minimumHealthyPercent / 100)
    max_running: int  # floor(desired * maximumPercent / 100)


@dataclass(frozen=True, slots=True)
class Round:
    """One scheduler round: stop ``stop`` tasks of the outgoing revision, then start ``start`` of
    the incoming one (and wait for them to become healthy before the next round)."""

    stop: int
    start: int


def limits(desired: int, min_healthy_percent: int, max_percent: int) -> Limits:
    """ECS's rounding of the two percentages (:class:`RollingConfigError` on values ECS refuses:
    a desired count below 1, minimum healthy outside 0-100, maximum outside 100-200 %)."""
    for name, value in (
        ("desired count", desired),
        ("minimum healthy percent", min_healthy_percent),
        ("maximum percent", max_percent),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RollingConfigError(f"{name} must be an integer, got {value!r}")
    if not 1 <= desired <= 1000:
        raise RollingConfigError(f"desired count must be 1-1000, got {desired}")
    if not 0 <= min_healthy_percent <= 100:
        raise RollingConfigError(
            f"minimum healthy percent must be 0-100, got {min_healthy_percent}"
        )
    if not 100 <= max_percent <= 200:
        # ECS accepts more than 200 %; a rehearsal on one machine does not need it.
        raise RollingConfigError(f"maximum percent must be 100-200, got {max_percent}")
    # Integer arithmetic: no float rounding surprise at exact multiples (e.g. 3 * 100 / 100).
    min_healthy = -(-desired * min_healthy_percent // 100)
    max_running = desired * max_percent // 100
    return Limits(desired, min_healthy, max_running)


def plan(
    desired: int,
    min_healthy_percent: int,
    max_percent: int,
    *,
    outgoing: int | None = None,
    incoming: int = 0,
) -> tuple[Round, ...]:
    """The rounds of a rolling update of ``desired`` tasks, every started task becoming healthy.

    ``outgoing`` tasks of the revision being replaced (default ``desired``) and ``incoming``
    tasks of the revision deployed already run; a rollback is such an update back to the old
    revision, from wherever the failed one stopped (its tasks counted as healthy, which is the
    slower, conservative case). Example: 4 tasks at 100 % / 150 % give ``(stop 0, start 2),
    (stop 2, start 2), (stop 2, start 0)``; at 50 % / 100 % ``(stop 2, start 2), (stop 2,
    start 2)``; rolled back after the first round (2 new, 4 old) ``(stop 2, start 0)``.
    """
    lim = limits(desired, min_healthy_percent, max_percent)
    old = desired if outgoing is None else outgoing
    new = incoming
    if not (old >= 0 and 0 <= new <= desired):
        raise RollingConfigError(
            f"cannot plan from {old} outgoing and {new} incoming tasks for {desired} desired"
        )
    if lim.max_running <= lim.min_healthy and (old or new < desired):
        raise RollingConfigError(
            f"with {desired} tasks, minimum healthy {min_healthy_percent}% "
            f"({lim.min_healthy} tasks, rounded up) and maximum {max_percent}% "
            f"({lim.max_running} tasks, rounded down) no task can be stopped or started: "
            "the deployment could never progress"
        )
    rounds: list[Round] = []
    while old or new < desired:
        if len(rounds) >= MAX_ROUNDS:  # pragma: no cover - the arithmetic always progresses
            raise RollingConfigError("rolling update did not converge")
        stop = min(old, max(0, old + new - lim.min_healthy))
        old -= stop
        start = min(desired - new, max(0, lim.max_running - (old + new)))
        new += start
        if not (stop or start):  # pragma: no cover - excluded by the check above
            raise RollingConfigError("rolling update cannot progress")
        rounds.append(Round(stop, start))
    return tuple(rounds)


def circuit_breaker_threshold(desired: int) -> int:
    """Failed task launches after which ECS's circuit breaker fails a deployment:
    ``0.5 * desired`` rounded up, at least 3 and at most 200."""
    return min(200, max(3, math.ceil(desired / 2)))


def replaced_after(rounds: tuple[Round, ...]) -> list[int]:
    """Old tasks stopped by the end of each round (the count "replaced" so far)."""
    total, out = 0, []
    for r in rounds:
        total += r.stop
        out.append(total)
    return out
