"""Alarm policy: which alarms, composites and rollback lists a spec gives (thresholds, M of N,
missing-data treatment, the CodeDeploy limit of 10). Values that differ per deployment are
:class:`Param` placeholders; the renderers turn them into values or ``Ref``s."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from telemetry import catalog

from ._format import number_text
from ._spec import Profile, Spec, SpecError

#: CodeDeploy watches at most this many alarms per deployment group.
MAX_DEPLOYMENT_ALARMS = 10
ALB_NAMESPACE = "AWS/ApplicationELB"

# Placeholders resolved per rendering: literal values for JSON, Ref/Sub for CloudFormation.
PARAMS = {
    "BlueVersion": "Version value of the running (blue) version",
    "GreenVersion": "Version value of the version being deployed (green)",
    "WorkerVersion": "Version value of the worker's task definition (its APP_VERSION): during a"
    " rolling update, the version being rolled out",
    "LoadBalancerFullName": "ALB full name (app/<name>/<id>), the LoadBalancer dimension",
    "BlueTargetGroupFullName": "Blue target group full name (targetgroup/<name>/<id>)",
    "GreenTargetGroupFullName": "Green target group full name (targetgroup/<name>/<id>)",
    "LogGroupName": "CloudWatch Logs group of the service's JSON logs (the dashboard's"
    " Logs Insights widget)",
    "CodeDeployApplication": "CodeDeploy application (the dashboard's console link)",
    "DeploymentGroupName": "CodeDeploy deployment group (the dashboard's console link)",
}
_VERSION = r"^[A-Za-z0-9._-]{1,121}$"  # the spec's version names (and deploy/stack.yaml's)
_NO_QUOTES = r"^[^\"'\\]{1,100}$"  # CodeDeploy names: 1-100 characters
#: AllowedPattern of the parameters that reach the dashboard's JSON body (Fn::Sub puts them in
#: unescaped) and its Logs Insights query (between single quotes): a quote or backslash in one
#: would break the body or rewrite the query, so CloudFormation refuses it up front.
PARAM_PATTERNS = {
    "BlueVersion": _VERSION,
    "GreenVersion": _VERSION,
    "WorkerVersion": _VERSION,
    # CloudWatch Logs' log group name pattern (CreateLogGroup, logGroupName)
    "LogGroupName": r"^[.\-_/#A-Za-z0-9]{1,512}$",
    "CodeDeployApplication": _NO_QUOTES,
    "DeploymentGroupName": _NO_QUOTES,
}
#: Parameters without a default in the template: their values follow the stack's names (its
#: ServiceName), which a stage's template (``synth --service``) must not bake in.
NO_DEFAULT_PARAMS = ("LogGroupName", "CodeDeployApplication", "DeploymentGroupName")
#: Parameters every template has, with or without a load balancer in the spec.
ALWAYS_PARAMS = ("BlueVersion", "GreenVersion", "LogGroupName", "CodeDeployApplication",
                 "DeploymentGroupName")  # fmt: skip


class Param:
    """A reference to a template parameter (rendered as a value or a Ref)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_SHORT = {"Average": "avg", "Maximum": "max", "Minimum": "min"}


def _window(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


class _Builder:
    def __init__(self, spec: Spec, profile: Profile) -> None:
        self.spec = spec
        self.profile = profile
        self.metric_alarms: list[dict[str, Any]] = []
        self.composites: list[dict[str, Any]] = []

    # -- metric helpers ------------------------------------------------------------------
    def _dims(self, metric: str, dims: dict[str, Any]) -> list[dict[str, Any]]:
        mdef = catalog.get(metric)
        if tuple(dims) not in mdef.dimension_sets:
            raise SpecError(
                "", f"metric {metric} has no dimension set {tuple(dims)} in the catalog"
            )
        return [{"Name": k, "Value": v} for k, v in dims.items()]

    def _stat(self, id_: str, metric: str, dims: dict[str, Any], stat: str, period: int) -> dict:
        return {
            "Id": id_,
            "MetricStat": {
                "Metric": {
                    "Namespace": self.spec.namespace,
                    "MetricName": metric,
                    "Dimensions": self._dims(metric, dims),
                },
                "Period": period,
                "Stat": stat,
                "Unit": catalog.get(metric).unit,
            },
            "ReturnData": False,
        }

    def _base(
        self,
        name: str,
        description: str,
        threshold: float,
        *,
        n: int | None = None,
        m: int | None = None,
        op: str = "GreaterThanThreshold",
        missing: str = "notBreaching",
    ) -> dict[str, Any]:
        return {
            "AlarmName": f"{self.spec.service}-{name}",
            "AlarmDescription": description,
            "ActionsEnabled": True,
            "EvaluationPeriods": n or self.profile.evaluation_periods,
            "DatapointsToAlarm": m or self.profile.datapoints_to_alarm,
            "Threshold": float(threshold),
            "ComparisonOperator": op,
            "TreatMissingData": missing,
        }

    def simple(
        self,
        name: str,
        description: str,
        metric: str,
        dims: dict[str, Any],
        stat: str,
        threshold: float,
        *,
        period: int | None = None,
        n: int | None = None,
        m: int | None = None,
        low_sample: str | None = None,
    ) -> dict[str, Any]:
        alarm = self._base(name, description, threshold, n=n, m=m)
        alarm.update(
            Namespace=self.spec.namespace,
            MetricName=metric,
            Dimensions=self._dims(metric, dims),
            Period=period or self.profile.period_s,
            Unit=catalog.get(metric).unit,
        )
        if stat.startswith("p"):
            alarm["ExtendedStatistic"] = stat
            alarm["EvaluateLowSampleCountPercentile"] = low_sample or "evaluate"
        else:
            alarm["Statistic"] = stat
        self.metric_alarms.append(alarm)
        return alarm

    def ratio(
        self,
        name: str,
        description: str,
        num: str,
        den: str,
        dims: dict[str, Any],
        expression: str,
        label: str,
        threshold: float,
        *,
        period: int | None = None,
        n: int | None = None,
        m: int | None = None,
    ) -> dict[str, Any]:
        period = period or self.profile.period_s
        alarm = self._base(name, description, threshold, n=n, m=m)
        alarm["Metrics"] = [
            {"Id": "e1", "Expression": expression, "Label": label, "ReturnData": True},
            self._stat("num", num, dims, "Sum", period),
            self._stat("den", den, dims, "Sum", period),
        ]
        self.metric_alarms.append(alarm)
        return alarm

    def math(
        self,
        name: str,
        description: str,
        queries: list[dict[str, Any]],
        expression: str,
        label: str,
        threshold: float,
    ) -> dict[str, Any]:
        """A metric-math alarm over ``queries`` (``_stat`` results); missing data not breaching."""
        alarm = self._base(name, description, threshold)
        alarm["Metrics"] = [
            {"Id": "e1", "Expression": expression, "Label": label, "ReturnData": True},
            *queries,
        ]
        self.metric_alarms.append(alarm)
        return alarm

    def alb(
        self, name: str, description: str, metric: str, tg: Param, stat: str, threshold: float
    ) -> dict[str, Any]:
        alarm = self._base(name, description, threshold)
        alarm.update(
            Namespace=ALB_NAMESPACE,
            MetricName=metric,
            Dimensions=[
                {"Name": "TargetGroup", "Value": tg},
                {"Name": "LoadBalancer", "Value": Param("LoadBalancerFullName")},
            ],
            # ALB publishes one datapoint a minute: a sub-minute period would only see gaps.
            Period=max(60, self.profile.period_s),
            Statistic=stat,
        )
        self.metric_alarms.append(alarm)
        return alarm

    def composite(self, name: str, description: str, rule: str) -> dict[str, Any]:
        alarm = {
            "AlarmName": f"{self.spec.service}-{name}",
            "AlarmDescription": description,
            "ActionsEnabled": True,
            "AlarmRule": rule,
        }
        self.composites.append(alarm)
        return alarm


@dataclass
class Policy:
    """What :func:`build` decides: alarms in PutMetricAlarm / PutCompositeAlarm shape (with
    :class:`Param` placeholders), the rollback alarm lists and the page alarm."""

    profile: Profile
    metric_alarms: list[dict[str, Any]]
    composites: list[dict[str, Any]]
    rollback: list[str]  # CodeDeploy's AlarmConfiguration (at most MAX_DEPLOYMENT_ALARMS)
    worker_rollback: list[str]  # the worker's ECS deploymentConfiguration.alarms
    page: str  # the SLO burn-rate page composite

    @property
    def alarm_names(self) -> list[str]:
        return [a["AlarmName"] for a in self.metric_alarms + self.composites]


def build(spec: Spec, profile_name: str) -> Policy:
    """The alarms ``spec`` gives in profile ``profile_name`` (SpecError: no such profile)."""
    profile = spec.profile(profile_name)
    b = _Builder(spec, profile)
    svc, lat, n, m = (
        spec.service,
        spec.latency,
        profile.evaluation_periods,
        profile.datapoints_to_alarm,
    )
    every = f"{m} of {n} periods of {profile.period_s} s"
    green = Param("GreenVersion")
    rollback: list[str] = []

    # RED: service-wide, then the green (deploying) version.
    for prefix, dims, who in (
        ("", {"Service": svc}, "all versions"),
        ("green-", {"Service": svc, "Version": green}, "the green version"),
    ):
        a = b.simple(
            f"{prefix}latency-{_SHORT[lat.statistic]}",
            f"Latency {lat.statistic} of {who} > {number_text(lat.threshold_ms)} ms in {every}.",
            "Latency",
            dims,
            lat.statistic,
            lat.threshold_ms,
        )
        p = b.simple(
            f"{prefix}latency-{lat.percentile.replace('.', '_')}",
            f"Latency {lat.percentile} of {who} > {number_text(lat.percentile_threshold_ms)} ms in {every};"
            f" EvaluateLowSampleCountPercentile={lat.evaluate_low_sample_count_percentile}"
            " so that a period with too few requests does not flip the alarm.",
            "Latency",
            dims,
            lat.percentile,
            lat.percentile_threshold_ms,
            low_sample=lat.evaluate_low_sample_count_percentile,
        )
        e = b.ratio(
            f"{prefix}error-rate",
            f"Server errors of {who} > {number_text(spec.errors.rate_threshold_percent)}% of requests in"
            f" {every}; no requests is not breaching.",
            "ServerErrors",
            "Requests",
            dims,
            "100 * num / den",
            "Server error rate (%)",
            spec.errors.rate_threshold_percent,
        )
        if prefix:
            rollback += [a["AlarmName"], p["AlarmName"], e["AlarmName"]]

    if spec.baseline is not None:
        rollback += [a["AlarmName"] for a in _baseline_alarms(b, spec, every)]

    if spec.alb is not None:
        for color in ("blue", "green"):
            tg = Param(f"{color.capitalize()}TargetGroupFullName")
            x = b.alb(
                f"alb-{color}-5xx",
                f"ALB: {color} target group returned > {number_text(spec.alb.target_5xx_threshold)}"
                f" 5xx responses per period in {every}.",
                "HTTPCode_Target_5XX_Count",
                tg,
                "Sum",
                spec.alb.target_5xx_threshold,
            )
            y = b.alb(
                f"alb-{color}-response-time",
                f"ALB: {color} target group response time Average >"
                f" {number_text(spec.alb.response_time_threshold_s)} s in {every}.",
                "TargetResponseTime",
                tg,
                "Average",
                spec.alb.response_time_threshold_s,
            )
            if color == "green":
                rollback += [x["AlarmName"], y["AlarmName"]]

    # SLO burn rate: one metric-math alarm per window, pairs AND-ed, pairs OR-ed.
    # A plain decimal: metric-math syntax documents no exponents (five nines gave "1e-05").
    budget = f"{round(1 - spec.slo.target, 12):.12f}".rstrip("0").rstrip(".")
    pairs = []
    for w in spec.slo.burn_windows:
        names = []
        for seconds in (w.long_s, w.short_s):
            a = b.ratio(
                f"slo-burn-{_window(seconds)}",
                f"Error budget burn rate over {_window(seconds)} > {number_text(w.burn_rate)}"
                f" (SLO {number_text(spec.slo.target)} over {spec.slo.window_days} days).",
                "ServerErrors",
                "Requests",
                {"Service": svc},
                f"num / den / {budget}",
                "Burn rate",
                w.burn_rate,
                period=seconds,
                n=1,
                m=1,
            )
            names.append(a["AlarmName"])
        c = b.composite(
            f"slo-burn-page-{_window(w.long_s)}",
            f"Page: burn rate > {number_text(w.burn_rate)} over both {_window(w.long_s)} and"
            f" {_window(w.short_s)}.",
            f'ALARM("{names[0]}") AND ALARM("{names[1]}")',
        )
        pairs.append(c["AlarmName"])
    page = b.composite(
        "slo-burn-page",
        f"Page: the {number_text(spec.slo.target)} SLO's error budget burns too fast (multiwindow, multi-burn-rate).",
        " OR ".join(f'ALARM("{p}")' for p in pairs),
    )

    worker_alarms: list[str] = []
    if spec.worker is not None:
        w = spec.worker
        wd = {"Service": w.service}
        # The worker's own version (WorkerVersion, its task definition's APP_VERSION), never the
        # API's GreenVersion: worker tasks report the Version they run.
        new_version = {"Service": w.service, "Version": Param("WorkerVersion")}
        age = b.simple(
            "worker-message-age",
            f"Worker: oldest message age > {number_text(w.message_age_threshold_s)} s in {every}.",
            "MessageAge",
            wd,
            "Maximum",
            w.message_age_threshold_s,
        )
        backlog = b.simple(
            "worker-backlog",
            f"Worker: queue backlog > {number_text(w.backlog_threshold)} in {every}.",
            "QueueBacklog",
            wd,
            "Maximum",
            w.backlog_threshold,
        )
        b.simple(
            "worker-dlq",
            f"Worker: dead-letter queue holds > {number_text(w.dead_letter_threshold)} messages.",
            "DeadLetterBacklog",
            wd,
            "Maximum",
            w.dead_letter_threshold,
            n=1,
            m=1,
        )
        b.ratio(
            "worker-job-error-rate",
            f"Worker: failed jobs > {number_text(w.job_error_rate_threshold_percent)}% in {every}.",
            "JobErrors",
            "Jobs",
            wd,
            "100 * num / den",
            "Job error rate (%)",
            w.job_error_rate_threshold_percent,
        )
        errors = b.ratio(
            "worker-new-job-error-rate",
            f"Worker: failed jobs of the version being rolled out (WorkerVersion) > "
            f"{number_text(w.job_error_rate_threshold_percent)}% in {every}.",
            "JobErrors",
            "Jobs",
            new_version,
            "100 * num / den",
            "Job error rate (%)",
            w.job_error_rate_threshold_percent,
        )
        busy = b.simple(
            "worker-new-utilization",
            f"Worker: job slots of the version being rolled out (WorkerVersion) busy > "
            f"{number_text(w.utilization_threshold_percent)}% on average in {every}; no jobs"
            " is not breaching.",
            "WorkerUtilization",
            new_version,
            "Average",
            w.utilization_threshold_percent,
        )
        # USE: errors and utilization of the new version; saturation of the (shared) queue.
        worker_alarms = [
            errors["AlarmName"],
            busy["AlarmName"],
            backlog["AlarmName"],
            age["AlarmName"],
        ]

    if len(rollback) > MAX_DEPLOYMENT_ALARMS:
        c = b.composite(
            "deployment-rollback",
            "Any deployment alarm (folded: CodeDeploy watches at most 10).",
            " OR ".join(f'ALARM("{r}")' for r in rollback),
        )
        rollback = [c["AlarmName"]]
    if len(worker_alarms) > MAX_DEPLOYMENT_ALARMS:  # pragma: no cover - 4 today
        c = b.composite(
            "worker-deployment-rollback",
            "Any worker deployment alarm.",
            " OR ".join(f'ALARM("{r}")' for r in worker_alarms),
        )
        worker_alarms = [c["AlarmName"]]

    return Policy(
        profile=profile,
        metric_alarms=b.metric_alarms,
        composites=b.composites,
        rollback=rollback,
        worker_rollback=worker_alarms,
        page=page["AlarmName"],
    )


def _baseline_alarms(b: _Builder, spec: Spec, every: str) -> list[dict[str, Any]]:
    """Green judged against blue, as CodeDeploy rollback triggers (metric-math alarms are allowed
    there): the latency and server-error-rate ratios of the two versions in the same period.

    Missing data: CloudWatch counts a missing input as 0 in arithmetic and drops a datapoint
    that divides by zero. Each expression divides by one of blue's own series (``b / b``,
    ``be / br``), so a period without blue data yields no datapoint (not breaching: no baseline,
    no judgement; e.g. green at 100 %), and a green without requests yields 0 or no datapoint."""
    assert spec.baseline is not None
    base, lat, period = spec.baseline, spec.latency, b.profile.period_s
    svc = spec.service
    blue = {"Service": svc, "Version": Param("BlueVersion")}
    green = {"Service": svc, "Version": Param("GreenVersion")}
    floor = number_text(base.latency_floor_ms)
    latency = b.math(
        f"green-vs-blue-latency-{_SHORT[lat.statistic]}",
        f"Latency {lat.statistic} of green > {number_text(base.latency_ratio)} x (blue's + {floor} ms)"
        f" in {every}; no blue data in a period: no datapoint (not breaching).",
        [
            b._stat("g", "Latency", green, lat.statistic, period),
            b._stat("b", "Latency", blue, lat.statistic, period),
        ],
        f"g / (b + {floor}) * (b / b)",
        f"Green / blue latency {lat.statistic} (blue floored at {floor} ms)",
        base.latency_ratio,
    )
    pp = number_text(base.error_rate_floor_percent)
    errors = b.math(
        "green-vs-blue-error-rate",
        f"Server error rate of green > {number_text(base.error_rate_ratio)} x (blue's + {pp}"
        f" percentage points) in {every}; no blue or no green requests in a period: no datapoint"
        " (not breaching).",
        [
            b._stat("ge", "ServerErrors", green, "Sum", period),
            b._stat("gr", "Requests", green, "Sum", period),
            b._stat("be", "ServerErrors", blue, "Sum", period),
            b._stat("br", "Requests", blue, "Sum", period),
        ],
        f"(100 * ge / gr) / (100 * be / br + {pp})",
        f"Green / blue server error rate (blue floored at {pp} points)",
        base.error_rate_ratio,
    )
    return [latency, errors]


def resolve(obj: Any, leaf: Callable[[Param], Any]) -> Any:
    """``obj`` with every :class:`Param` replaced by ``leaf(param)``."""
    if isinstance(obj, Param):
        return leaf(obj)
    if isinstance(obj, dict):
        return {k: resolve(v, leaf) for k, v in obj.items()}
    if isinstance(obj, list):
        return [resolve(v, leaf) for v in obj]
    return obj


def param_values(spec: Spec) -> dict[str, str]:
    """The spec's value of each parameter (and of the pseudo parameters the dashboard uses)."""
    alb = spec.alb
    return {
        "BlueVersion": spec.versions.blue,
        "GreenVersion": spec.versions.green,
        "WorkerVersion": spec.worker.versions.new if spec.worker else "",
        "LoadBalancerFullName": alb.load_balancer if alb else "",
        "BlueTargetGroupFullName": alb.blue_target_group if alb else "",
        "GreenTargetGroupFullName": alb.green_target_group if alb else "",
        # deploy/stack.yaml's names (LogGroup, CodeDeployApplication, DeploymentGroup)
        "LogGroupName": f"/ecs/{spec.service}",
        "CodeDeployApplication": spec.service,
        "DeploymentGroupName": f"{spec.service}-dg",
        "AWS::Region": spec.region,
        "AWS::AccountId": spec.account_id,
    }
