"""The service spec: a small YAML file validated into frozen dataclasses.

Every validation error is one :class:`SpecError` whose message names the field, e.g.
``spec error: latency.threshold_ms: must be a positive number``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from telemetry.cloudwatch_rules import namespace_problem

from ._io import InputError, parse_document
from ._rules import max_evaluation_s

STATISTICS = ("SampleCount", "Sum", "Average", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,2})?)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
_NAME_RULE = "must be a name of letters, digits, '.', '_' or '-' (1-121 chars)"
#: A name AWS takes for a CloudWatch dashboard (PutDashboard: A-Z, a-z, 0-9, '-' and '_', at most
#: 255) and for an ECS service or cluster (letters, digits, '-' and '_', at most 255): the service
#: names the dashboard and, by default, the ECS service; 97 characters leave room for the
#: CodeDeploy deployment group ``<service>-dg`` (at most 100, CreateDeploymentGroup).
_AWS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,96}$")
_AWS_NAME_RULE = (
    "must be a name of letters, digits, '_' or '-' (1-97 chars; CloudWatch dashboard and ECS"
    " names take no '.')"
)
#: ``deploy/stack.yaml``'s ``ServiceName`` and ``WorkerServiceName`` (tests/deploy checks they
#: are the same): a stage's names (``synth --service``) must be ones that stack takes. The
#: service names its load balancer and target groups (ELB: at most 32 characters of letters,
#: digits and '-', no '-' at either end, not ``internal-...``; ``<service>-green`` leaves 24).
STACK_SERVICE_NAME = r"^(?!internal-)[a-z]([a-z0-9-]{0,22}[a-z0-9])?$"
STACK_SERVICE_NAME_RULE = (
    "must be a ServiceName the stack takes: 1-24 lowercase letters, digits and '-', starting with"
    " a letter, not ending with '-', not starting with 'internal-'"
)
STACK_WORKER_SERVICE_NAME = r"^[a-z][a-z0-9-]{0,31}$"
STACK_WORKER_SERVICE_NAME_RULE = (
    "must be a WorkerServiceName the stack takes: 1-32 lowercase letters, digits and '-',"
    " starting with a letter"
)


class SpecError(ValueError):
    """A spec that cannot be used; the message names the offending field."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"spec error: {path}: {problem}" if path else f"spec error: {problem}")


@dataclass(frozen=True, slots=True)
class Versions:
    """Values of the ``Version`` dimension: the running version and the one being deployed."""

    blue: str = "v1"
    green: str = "v2"


@dataclass(frozen=True, slots=True)
class BurnWindow:
    """One multiwindow burn-rate pair: both windows must exceed ``burn_rate`` to page."""

    long_s: int
    short_s: int
    burn_rate: float


#: Smallest error budget (1 - SLO target) the burn-rate alarms divide by; written in their
#: expressions as a plain decimal of at most 12 places.
MIN_ERROR_BUDGET = 1e-9

DEFAULT_BURN_WINDOWS = (BurnWindow(3600, 300, 14.4), BurnWindow(21600, 1800, 6.0))


@dataclass(frozen=True, slots=True)
class Slo:
    target: float = 0.999
    window_days: int = 30
    burn_windows: tuple[BurnWindow, ...] = DEFAULT_BURN_WINDOWS


@dataclass(frozen=True, slots=True)
class Latency:
    statistic: str = "Average"
    threshold_ms: float = 250.0
    percentile: str = "p99"
    percentile_threshold_ms: float = 1000.0
    evaluate_low_sample_count_percentile: str = "ignore"
    #: What one client request may take before it counts as harmed (the rehearsal's harm
    #: accounting); defaults to ``threshold_ms``.
    objective_ms: float = 250.0


@dataclass(frozen=True, slots=True)
class Errors:
    rate_threshold_percent: float = 5.0


@dataclass(frozen=True, slots=True)
class WorkerVersions:
    """``Version`` values of the worker's tasks during a rolling update: the revision running
    before it (``old``) and the one being rolled out (``new``, CloudFormation's ``WorkerVersion``:
    the worker task definition's ``APP_VERSION``)."""

    old: str = "v1"
    new: str = "v2"


@dataclass(frozen=True, slots=True)
class Worker:
    service: str = "points-worker"
    backlog_threshold: float = 100.0
    message_age_threshold_s: float = 300.0
    dead_letter_threshold: float = 0.0
    job_error_rate_threshold_percent: float = 10.0
    utilization_threshold_percent: float = 80.0
    versions: WorkerVersions = field(default_factory=WorkerVersions)


@dataclass(frozen=True, slots=True)
class Alb:
    load_balancer: str = "app/points-alb/0123456789abcdef"
    blue_target_group: str = "targetgroup/points-blue/0123456789abcdef"
    green_target_group: str = "targetgroup/points-green/0123456789abcdef"
    response_time_threshold_s: float = 0.5
    target_5xx_threshold: float = 10.0


@dataclass(frozen=True, slots=True)
class Baseline:
    """Alarms that judge green against blue: metric-math ratios of the two versions' metrics.

    ``latency_ratio``: green's latency statistic over (blue's + ``latency_floor_ms``): the floor
    keeps a few-millisecond blue from turning noise into a big ratio. ``error_rate_ratio``:
    green's server error rate (%) over (blue's + ``error_rate_floor_percent``)."""

    latency_ratio: float = 3.0
    latency_floor_ms: float = 10.0
    error_rate_ratio: float = 2.0
    error_rate_floor_percent: float = 1.0


DEFAULT_DEPLOYMENT_CONFIG = "CodeDeployDefault.ECSCanary10Percent5Minutes"


@dataclass(frozen=True, slots=True)
class Deployment:
    application: str = ""
    deployment_group: str = ""
    config_name: str = DEFAULT_DEPLOYMENT_CONFIG
    worker_cluster: str = "default"
    worker_ecs_service: str = ""


@dataclass(frozen=True, slots=True)
class Profile:
    """Alarm period and M of N for one profile (``production`` or ``rehearsal``)."""

    period_s: int
    evaluation_periods: int
    datapoints_to_alarm: int


DEFAULT_PROFILES = {
    "production": Profile(60, 3, 2),
    "rehearsal": Profile(10, 3, 2),
}


@dataclass(frozen=True, slots=True)
class Spec:
    """A validated service spec (see docs/alarms.md for every field)."""

    service: str
    namespace: str = "SafeDeploy"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    versions: Versions = field(default_factory=Versions)
    slo: Slo = field(default_factory=Slo)
    latency: Latency = field(default_factory=Latency)
    errors: Errors = field(default_factory=Errors)
    worker: Worker | None = field(default_factory=Worker)
    alb: Alb | None = field(default_factory=Alb)
    baseline: Baseline | None = field(default_factory=Baseline)
    deployment: Deployment = field(default_factory=Deployment)
    profiles: dict[str, Profile] = field(default_factory=lambda: dict(DEFAULT_PROFILES))

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise SpecError(
                "profiles", f"no profile {name!r} (have {sorted(self.profiles)})"
            ) from None


# --- validation helpers ---------------------------------------------------------------------


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(path, "must be a mapping")
    return value


def _check_keys(data: dict[str, Any], allowed: set[str], path: str) -> None:
    for key in data:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise SpecError(where, f"unknown field (allowed: {', '.join(sorted(allowed))})")


#: CloudWatch's thresholds and values are finite doubles: "special values (for example, NaN,
#: +Infinity, -Infinity) are not supported" (PutMetricData / MetricDatum).
_NOT_FINITE = (
    "must be a finite number: CloudWatch takes no infinity or NaN (a number beyond about "
    "1.8e308, such as 1e309, is infinity as a double)"
)


def _number(
    data: dict[str, Any],
    key: str,
    path: str,
    default: float,
    *,
    minimum: float = 0.0,
    strict: bool = True,
    maximum: float | None = None,
) -> float:
    value = data.get(key, default)
    where = f"{path}.{key}" if path else key
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(where, "must be a number")
    try:  # YAML reads 400 digits as an int that no float (no CloudWatch threshold) can hold
        value = float(value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):  # .inf, .nan, 1e309 (a double overflows to infinity)
        raise SpecError(where, _NOT_FINITE)
    if strict and value <= minimum:
        raise SpecError(
            where, "must be a positive number" if minimum == 0 else f"must be > {minimum}"
        )
    if not strict and value < minimum:
        raise SpecError(where, f"must be >= {minimum:g}")
    if maximum is not None and value > maximum:
        raise SpecError(where, f"must be <= {maximum:g}")
    return float(value)


def _int(data: dict[str, Any], key: str, path: str, default: int, *, minimum: int = 1) -> int:
    value = data.get(key, default)
    where = f"{path}.{key}" if path else key
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(where, "must be an integer")
    if value < minimum:
        raise SpecError(where, f"must be >= {minimum}")
    return value


def _name(
    data: dict[str, Any],
    key: str,
    path: str,
    default: str | None,
    *,
    pattern: re.Pattern[str] = _NAME,
    rule: str = _NAME_RULE,
) -> str:
    value = data.get(key, default)
    where = f"{path}.{key}" if path else key
    if value is None:
        raise SpecError(where, "is required")
    if not isinstance(value, str) or not pattern.match(value):
        raise SpecError(where, rule)
    return value


def _aws_name(data: dict[str, Any], key: str, path: str, default: str | None) -> str:
    """A name that becomes a CloudWatch dashboard's or an ECS service's or cluster's."""
    return _name(data, key, path, default, pattern=_AWS_NAME, rule=_AWS_NAME_RULE)


def _text(data: dict[str, Any], key: str, path: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise SpecError(f"{path}.{key}" if path else key, "must be a non-empty string")
    return value


def _choice(
    data: dict[str, Any], key: str, path: str, default: str, choices: tuple[str, ...]
) -> str:
    value = data.get(key, default)
    if value not in choices:
        raise SpecError(f"{path}.{key}", f"must be one of {', '.join(choices)}")
    return value


def check_period(period: int, where: str) -> None:
    """PutMetricAlarm accepts 10, 30 (high resolution) or a multiple of 60 seconds.

    (The user guide also mentions 20 s; the API reference and cfn-lint do not, so neither does
    the spec. The evaluator accepts 20 s alarms from other sources.)
    """
    if period not in (10, 30) and period % 60:
        raise SpecError(where, "must be 10, 30 or a multiple of 60 seconds")


def _profile(data: Any, path: str, default: Profile | None) -> Profile:
    d = _mapping(data, path)
    _check_keys(d, {"period_s", "evaluation_periods", "datapoints_to_alarm"}, path)
    base = default or Profile(60, 3, 2)
    period = _int(d, "period_s", path, base.period_s)
    check_period(period, f"{path}.period_s")
    n = _int(d, "evaluation_periods", path, base.evaluation_periods)
    m = _int(d, "datapoints_to_alarm", path, min(base.datapoints_to_alarm, n))
    if m > n:
        raise SpecError(f"{path}.datapoints_to_alarm", "must be <= evaluation_periods")
    check_evaluation_range(period, n, f"{path}.evaluation_periods")
    return Profile(period, n, m)


def check_evaluation_range(period: int, n: int, where: str) -> None:
    """SpecError unless ``period`` (s) x ``n`` periods fits PutMetricAlarm's evaluation range."""
    if period * n > max_evaluation_s(period):
        raise SpecError(
            where,
            "period_s x evaluation_periods must be <= 1 day (<= 7 days when period_s >= 3600)",
        )


def parse_spec(data: Any) -> Spec:
    """Validate a spec already parsed from YAML/JSON into a :class:`Spec`."""
    if not isinstance(data, dict):
        raise SpecError("", "the document must be a mapping")
    top = {
        "service",
        "namespace",
        "region",
        "account_id",
        "versions",
        "slo",
        "latency",
        "errors",
        "worker",
        "alb",
        "baseline",
        "deployment",
        "profiles",
    }
    _check_keys(data, top, "")
    service = _aws_name(data, "service", "", None)
    namespace = _text(data, "namespace", "", "SafeDeploy")
    if namespace.startswith("AWS/"):
        raise SpecError("namespace", "must not start with 'AWS/' (reserved for AWS services)")
    # CloudWatch's rules, as the telemetry that writes the metrics applies them: a namespace it
    # refuses is never written to, and '${' or ':' would also break the generated template.
    if (problem := namespace_problem(namespace)) is not None:
        raise SpecError("namespace", problem)
    region = _name(data, "region", "", "us-east-1")
    account_id = data.get("account_id", "123456789012")
    if not isinstance(account_id, str) or not re.fullmatch(r"\d{12}", account_id):
        raise SpecError("account_id", "must be a 12-digit string")

    v = _mapping(data.get("versions"), "versions")
    _check_keys(v, {"blue", "green"}, "versions")
    versions = Versions(_name(v, "blue", "versions", "v1"), _name(v, "green", "versions", "v2"))
    if versions.blue == versions.green:
        raise SpecError("versions.green", "must differ from versions.blue")

    s = _mapping(data.get("slo"), "slo")
    _check_keys(s, {"target", "window_days", "burn_windows"}, "slo")
    target = _number(s, "target", "slo", 0.999)
    if not 0 < target < 1:
        raise SpecError("slo.target", "must be between 0 and 1 (e.g. 0.999)")
    if round(1 - target, 12) < MIN_ERROR_BUDGET:  # the burn-rate alarms divide by it
        raise SpecError(
            "slo.target", f"leaves no error budget (1 - target must be >= {MIN_ERROR_BUDGET:g})"
        )
    window_days = _int(s, "window_days", "slo", 30)
    burn = DEFAULT_BURN_WINDOWS
    if "burn_windows" in s:
        raw = s["burn_windows"]
        if not isinstance(raw, list) or not raw:
            raise SpecError("slo.burn_windows", "must be a non-empty list")
        items = []
        seen: dict[int, str] = {}  # window length -> where it was used (alarm names per window)
        for i, w in enumerate(raw):
            p = f"slo.burn_windows[{i}]"
            w = _mapping(w, p)
            _check_keys(w, {"long_s", "short_s", "burn_rate"}, p)
            for key in ("long_s", "short_s", "burn_rate"):
                if key not in w:  # a silent default burn rate would page on the wrong budget
                    raise SpecError(f"{p}.{key}", "is required in a burn window")
            long_s, short_s = _int(w, "long_s", p, 3600), _int(w, "short_s", p, 300)
            check_period(long_s, f"{p}.long_s")
            check_period(short_s, f"{p}.short_s")
            if short_s >= long_s:
                raise SpecError(f"{p}.short_s", "must be shorter than long_s")
            if long_s > 86400:
                raise SpecError(f"{p}.long_s", "must be <= 86400 (one day)")
            for key, seconds in (("long_s", long_s), ("short_s", short_s)):
                if seconds in seen:  # the alarm slo-burn-<window> would be generated twice
                    raise SpecError(
                        f"{p}.{key}", f"window {seconds} s already used by {seen[seconds]}"
                    )
                seen[seconds] = f"{p}.{key}"
            items.append(BurnWindow(long_s, short_s, _number(w, "burn_rate", p, 1.0)))
        burn = tuple(items)
    slo = Slo(target, window_days, burn)

    lat = _mapping(data.get("latency"), "latency")
    _check_keys(
        lat,
        {
            "statistic",
            "threshold_ms",
            "percentile",
            "percentile_threshold_ms",
            "evaluate_low_sample_count_percentile",
            "objective_ms",
        },
        "latency",
    )
    pct = lat.get("percentile", "p99")
    m = _PERCENTILE.match(pct) if isinstance(pct, str) else None
    if not m or not 0 < float(m.group(1)) < 100:
        raise SpecError("latency.percentile", "must look like p50, p90, p99 or p99.9")
    threshold_ms = _number(lat, "threshold_ms", "latency", 250.0)
    latency = Latency(
        _choice(lat, "statistic", "latency", "Average", ("Average", "Maximum", "Minimum")),
        threshold_ms,
        pct,
        _number(lat, "percentile_threshold_ms", "latency", 1000.0),
        _choice(
            lat, "evaluate_low_sample_count_percentile", "latency", "ignore", ("evaluate", "ignore")
        ),
        _number(lat, "objective_ms", "latency", threshold_ms),
    )

    e = _mapping(data.get("errors"), "errors")
    _check_keys(e, {"rate_threshold_percent"}, "errors")
    errors = Errors(_number(e, "rate_threshold_percent", "errors", 5.0, maximum=100.0))

    worker: Worker | None = None
    if data.get("worker", {}) is not False:
        w = _mapping(data.get("worker"), "worker")
        _check_keys(
            w,
            {
                "service",
                "backlog_threshold",
                "message_age_threshold_s",
                "dead_letter_threshold",
                "job_error_rate_threshold_percent",
                "utilization_threshold_percent",
                "versions",
            },
            "worker",
        )
        wv = _mapping(w.get("versions"), "worker.versions")
        _check_keys(wv, {"old", "new"}, "worker.versions")
        worker_versions = WorkerVersions(
            _name(wv, "old", "worker.versions", "v1"), _name(wv, "new", "worker.versions", "v2")
        )
        if worker_versions.old == worker_versions.new:
            raise SpecError("worker.versions.new", "must differ from worker.versions.old")
        worker = Worker(
            _aws_name(w, "service", "worker", "points-worker"),
            _number(w, "backlog_threshold", "worker", 100.0),
            _number(w, "message_age_threshold_s", "worker", 300.0),
            _number(w, "dead_letter_threshold", "worker", 0.0, strict=False),
            _number(w, "job_error_rate_threshold_percent", "worker", 10.0, maximum=100.0),
            _number(w, "utilization_threshold_percent", "worker", 80.0, maximum=100.0),
            worker_versions,
        )

    alb: Alb | None = None
    if data.get("alb", {}) is not False:
        a = _mapping(data.get("alb"), "alb")
        _check_keys(
            a,
            {
                "load_balancer",
                "blue_target_group",
                "green_target_group",
                "response_time_threshold_s",
                "target_5xx_threshold",
            },
            "alb",
        )
        d = Alb()
        alb = Alb(
            _text(a, "load_balancer", "alb", d.load_balancer),
            _text(a, "blue_target_group", "alb", d.blue_target_group),
            _text(a, "green_target_group", "alb", d.green_target_group),
            _number(a, "response_time_threshold_s", "alb", d.response_time_threshold_s),
            _number(a, "target_5xx_threshold", "alb", d.target_5xx_threshold, strict=False),
        )

    baseline: Baseline | None = None
    if data.get("baseline", {}) is not False:
        bl = _mapping(data.get("baseline"), "baseline")
        _check_keys(
            bl,
            {"latency_ratio", "latency_floor_ms", "error_rate_ratio", "error_rate_floor_percent"},
            "baseline",
        )
        db = Baseline()
        # A ratio of 1 or less fires when green is no worse than blue (0.5: on every healthy
        # deployment, a rollback each time); the error-rate floor is percentage points.
        baseline = Baseline(
            _number(bl, "latency_ratio", "baseline", db.latency_ratio, minimum=1.0),
            _number(bl, "latency_floor_ms", "baseline", db.latency_floor_ms),
            _number(bl, "error_rate_ratio", "baseline", db.error_rate_ratio, minimum=1.0),
            _number(
                bl,
                "error_rate_floor_percent",
                "baseline",
                db.error_rate_floor_percent,
                maximum=100.0,
            ),
        )

    dep = _mapping(data.get("deployment"), "deployment")
    _check_keys(
        dep,
        {"application", "deployment_group", "config_name", "worker_cluster", "worker_ecs_service"},
        "deployment",
    )
    deployment = Deployment(
        _name(dep, "application", "deployment", service),
        _name(dep, "deployment_group", "deployment", f"{service}-dg"),
        _name(dep, "config_name", "deployment", DEFAULT_DEPLOYMENT_CONFIG),
        _aws_name(dep, "worker_cluster", "deployment", service),  # the stack's ClusterName
        _aws_name(dep, "worker_ecs_service", "deployment", worker.service if worker else service),
    )

    profiles = dict(DEFAULT_PROFILES)
    p = _mapping(data.get("profiles"), "profiles")
    for name, body in p.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise SpecError(f"profiles.{name}", "profile names are letters, digits, '.', '_', '-'")
        profiles[name] = _profile(body, f"profiles.{name}", DEFAULT_PROFILES.get(name))

    return Spec(
        service,
        namespace,
        region,
        account_id,
        versions,
        slo,
        latency,
        errors,
        worker,
        alb,
        baseline=baseline,
        deployment=deployment,
        profiles=profiles,
    )


def load_spec(path: str | Path) -> Spec:
    """Read and validate a YAML (or JSON) spec file; :class:`SpecError` on any problem."""
    return parse_spec(read_spec_document(path))


def read_spec_document(path: str | Path) -> Any:
    """The data of a spec file, unvalidated, as :func:`load_spec` reads it: JSON, or YAML with
    YAML 1.2 numbers (``1e3`` is a number), a key given twice refused. :class:`SpecError` for
    a file that cannot be read or parsed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(
            "", f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    try:
        return parse_document(text, str(path))
    except InputError as exc:
        raise SpecError("", str(exc)) from None


def _stage_name(flag: str, value: str, pattern: str, rule: str) -> str:
    return _name({flag: value}, flag, "", None, pattern=re.compile(pattern), rule=rule)


def with_names(spec: Spec, service: str | None = None, worker_service: str | None = None) -> Spec:
    """``spec`` for another instance of the service (a stage of ``deploy/stack.yaml``): the
    service and worker names replaced, and with them the deployment targets the spec derives
    from them (the CodeDeploy application ``<service>``, its group ``<service>-dg``, the ECS
    cluster ``<service>`` and the worker's ECS service), so a stage's request shapes never point at another stage's deployment group.

    Raises :class:`SpecError` for a name the stack refuses as its ``ServiceName`` /
    ``WorkerServiceName`` (:data:`STACK_SERVICE_NAME`) or a worker name given to a spec without
    a worker."""
    if service is not None:
        name = _stage_name("--service", service, STACK_SERVICE_NAME, STACK_SERVICE_NAME_RULE)
        old, dep = spec.service, spec.deployment
        dep = replace(
            dep,
            application=name if dep.application == old else dep.application,
            deployment_group=f"{name}-dg"
            if dep.deployment_group == f"{old}-dg"
            else dep.deployment_group,
            worker_ecs_service=name
            if spec.worker is None and dep.worker_ecs_service == old
            else dep.worker_ecs_service,
            # deploy/stack.yaml names its ECS cluster after ServiceName
            worker_cluster=name if dep.worker_cluster == old else dep.worker_cluster,
        )
        spec = replace(spec, service=name, deployment=dep)
    if worker_service is not None:
        if spec.worker is None:
            raise SpecError("--worker-service", "the spec has no worker section")
        name = _stage_name(
            "--worker-service",
            worker_service,
            STACK_WORKER_SERVICE_NAME,
            STACK_WORKER_SERVICE_NAME_RULE,
        )
        dep = spec.deployment
        if dep.worker_ecs_service == spec.worker.service:
            dep = replace(dep, worker_ecs_service=name)
        spec = replace(spec, worker=replace(spec.worker, service=name), deployment=dep)
    return spec
