"""What blue and green run: per-version code, settings and ledger formats, and the one-way-door
guard applied before any traffic shifts.

A version is one of the releases of the ledger's format change (:data:`points.PRESETS`: ``v1``,
``v2`` prepare, ``v3`` activate) or, when none is named, the spec's version label with the
default formats (the ``regression`` and ``healthy`` scenarios: blue and green differ only in
their environment). Scenarios pick the releases:

* ``regression`` / ``healthy``: the spec's labels; green has the rate limiter on / off;
* ``breaking``: v1 -> v3 in one deployment, with the regression, guard overridden;
* ``two-phase``: v1 -> v2 (healthy, baked), then v2 -> v3 with the regression.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from points import PRESETS, ConfigError, Decision, Formats, check_transition, formats_from
from points import environment_variables as points_env
from points.environment_variables import POINTS_FORMAT_WRITE, POINTS_FORMATS_READ
from rehearsal.model import REGRESSED, Options
from sample_api import environment_variables as api_env
from telemetry import environment_variables as telemetry_env

#: scenario -> (blue, green) releases for a one-deployment scenario.
SCENARIO_VERSIONS: dict[str, tuple[str | None, str | None]] = {
    "regression": (None, None),
    "healthy": (None, None),
    "breaking": ("v1", "v3"),
}
#: The two deployments of ``two-phase``: (name, blue, green, green regressed).
TWO_PHASES = (("prepare", "v1", "v2", False), ("activate", "v2", "v3", True))


#: What the rehearsal sets in each version's environment to measure it, and why a version's own
#: environment (``--blue-env``/``--green-env``) may not change it: the run would go on and its
#: verdict would be about something else (``APP_VERSION=v1`` on green: its metrics counted as
#: blue's, the green alarms never see data, a regression "succeeds"; ``AWS_EMF_NAMESPACE``: the
#: alarms see nothing; ``POINTS_DB_PATH``: the data safety check reads another store).
RESERVED_ENV: dict[str, str] = {
    api_env.APP_VERSION: "the Version the alarms watch: use --blue-version/--green-version or "
    "the spec's versions",
    api_env.PORT: "the port the listener sends this version's traffic to",
    api_env.BIND: "the address the listener sends this version's traffic to",
    points_env.POINTS_STORE: "the store both versions share, which the data safety check reads",
    points_env.POINTS_DB_PATH: "the store both versions share, which the data safety check reads",
    telemetry_env.OTEL_SERVICE_NAME: "the Service the alarms watch (the spec's service)",
    telemetry_env.OTEL_RESOURCE_ATTRIBUTES: "it carries service.version, the version's label",
    telemetry_env.AWS_EMF_NAMESPACE: "the namespace the alarms watch (the spec's namespace)",
    telemetry_env.AWS_EMF_ENVIRONMENT: "EMF must reach the rehearsal's collector (stdout)",
    telemetry_env.AWS_EMF_AGENT_ENDPOINT: "EMF must reach the rehearsal's collector (stdout)",
    telemetry_env.TELEMETRY_FLUSH_INTERVAL_S: "the 1 s windows the live alarms are fed with",
    telemetry_env.TELEMETRY_STORAGE_RESOLUTION: "the high-resolution metrics 10 s periods need",
    telemetry_env.TELEMETRY_ACCESS_LOG_SAMPLE: "every request's access line, for the report",
    telemetry_env.TELEMETRY_TRACES_FILE: "the run's traces.jsonl, for the report",
    telemetry_env.OTEL_TRACES_SAMPLER: "every request's trace, for the report",
    telemetry_env.OTEL_TRACES_SAMPLER_ARG: "every request's trace, for the report",
    telemetry_env.OTEL_TRACES_EXPORTER: "every request's trace, for the report",
    telemetry_env.OTEL_SDK_DISABLED: "every request's trace, for the report",
}


def reserved(name: str, env: Mapping[str, str]) -> None:
    """Raise ValueError naming ``name`` (a side) and the first variable of ``env`` the
    rehearsal sets itself (:data:`RESERVED_ENV`)."""
    for variable in env:
        if variable in RESERVED_ENV:
            raise ValueError(
                f"{name}: {variable} is set by the rehearsal ({RESERVED_ENV[variable]}); "
                "it cannot be given per version"
            )


class OneWayDoor(Exception):
    """The guard refused the deployment before anything started (see :func:`guard`)."""


@dataclass(frozen=True)
class Side:
    """One version as the rehearsal starts it."""

    name: str  # "blue" or "green"
    label: str  # APP_VERSION, the Version dimension the alarms watch
    release: str | None  # v1/v2/v3, or None: default formats
    app: str
    env: dict[str, str] = field(default_factory=dict)
    regressed: bool = False
    #: What the version's process will read and write (see :func:`formats_of`).
    formats: Formats = PRESETS["v1"]


def formats_of(name: str, release: str | None, *envs: Mapping[str, str]) -> Formats:
    """The formats a version's gunicorn runs with: its environment is the rehearsal's own
    (inherited), then the release's declaration, then ``envs`` in order (``extra_env``, the
    side's own), as :func:`rehearsal.runner.child_env` builds it. The guard must judge these,
    not the release's name: ``--green-env POINTS_FORMAT_WRITE=2`` makes a v1 write format 2.
    Raises ValueError naming the side for a value the app would refuse at start-up."""
    names = (POINTS_FORMATS_READ, POINTS_FORMAT_WRITE)
    env = {n: os.environ[n] for n in names if n in os.environ}
    if release:
        env.update(PRESETS[release].to_env())
    for extra in envs:
        env.update({n: extra[n] for n in names if n in extra})
    try:
        return formats_from(env)
    except ConfigError as exc:
        raise ValueError(f"{name}: {exc}") from None


def releases(options: Options) -> tuple[str | None, str | None]:
    """The (blue, green) releases of a one-deployment run: the options' own, else the
    scenario's."""
    blue, green = SCENARIO_VERSIONS.get(options.scenario, (None, None))
    return options.blue_version or blue, options.green_version or green


def sides(options: Options, spec_blue: str, spec_green: str) -> tuple[Side, Side]:
    """Blue and green for ``options``; a release names its version label (``v3``), otherwise
    the spec's label is used. Raises ValueError for two sides with the same label, for
    ledger-format settings in an environment the version could not start with, or for a
    variable the rehearsal sets itself in a side's environment (:data:`RESERVED_ENV`)."""
    reserved("blue", options.blue_env)
    reserved("green", options.green_env)
    blue_release, green_release = releases(options)
    blue = Side(
        "blue",
        blue_release or spec_blue,
        blue_release,
        options.blue_app or options.app,
        dict(options.blue_env),
        formats=formats_of("blue", blue_release, options.extra_env, options.blue_env),
    )
    green = Side(
        "green",
        green_release or spec_green,
        green_release,
        options.green_app or options.app,
        dict(options.green_env),
        regressed=(
            options.scenario in REGRESSED
            if options.green_regressed is None
            else options.green_regressed
        ),
        formats=formats_of("green", green_release, options.extra_env, options.green_env),
    )
    if blue.label == green.label:
        raise ValueError(
            f"blue and green are both {blue.label!r}: the alarms tell versions apart by label; "
            "give two different versions"
        )
    return blue, green


def guard(blue: Side, green: Side) -> Decision:
    """The one-way-door rule for this deployment: blue (the rollback target) must read what
    green writes, and green what blue writes (:func:`points.check_transition`)."""
    return check_transition(
        blue.formats,
        green.formats,
        running_name=f"blue {blue.label}",
        candidate_name=f"green {green.label}",
    )
