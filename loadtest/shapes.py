"""Load shapes for the points service, selected by ``LOAD_SHAPE`` (see ``loadtest/locustfile.py``).

Each shape is a small :class:`locust.LoadTestShape`; the numbers come from ``loadtest/rates.py``.
Locust drives *users*; the shapes turn a request rate into users because every user paces itself
at ``LOAD_USER_RPS`` requests per second (``constant_throughput``), so
``users = ceil(rate / LOAD_USER_RPS)``.

The classes here are abstract: Locust only runs the one ``locustfile.py`` binds, so several shapes
can live side by side. Importing this module imports Locust (which monkey-patches with gevent).
"""

from __future__ import annotations

from locust import LoadTestShape

try:
    from loadtest import rates
except ImportError:  # copied next to the locustfile, outside the package
    import rates  # type: ignore[no-redef]


class _RateShape(LoadTestShape):
    """Common part: the rate of shape ``name`` over time, stopping after ``LOAD_DURATION_S``."""

    abstract = True
    use_common_options = True  # so `--run-time` still applies
    name = "steady"

    def tick(self) -> tuple[int, float] | None:
        # Headless Locust (2.47) only arms --run-time once a shape has ended, so a shape that
        # runs until stopped would ignore it: the shape applies it itself.
        options = getattr(getattr(self.runner, "environment", None), "parsed_options", None)
        limit = getattr(options, "run_time", None)
        return rates.tick(self.name, self.get_run_time(), limit_s=limit)


class SteadyShape(_RateShape):
    """``LOAD_RPS`` requests per second, reached within ``LOAD_RAMP_S``."""

    abstract = True
    name = "steady"


class StepShape(_RateShape):
    """``LOAD_RPS`` for ``LOAD_STEP_AFTER_S`` seconds, then ``LOAD_STEP_RPS`` (above the limit)."""

    abstract = True
    name = "step"


class DemoShape(_RateShape):
    """The rollback demo: a quick ramp to ``LOAD_RPS`` held for the whole deployment.

    The rate is chosen so that green's share at the first traffic step (10 %) is already above
    green's rate limit, while the total stays well within what blue serves comfortably.
    """

    abstract = True
    name = "demo"


SHAPES: dict[str, type[_RateShape]] = {"steady": SteadyShape, "step": StepShape, "demo": DemoShape}


def pick(name: str | None) -> type[_RateShape] | None:
    """The shape class called ``name`` (``None`` or ``""`` -> no shape); ``ValueError`` if unknown."""
    canonical = rates.shape_name(name)
    return None if canonical is None else SHAPES[canonical]
