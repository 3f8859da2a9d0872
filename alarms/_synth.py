"""Generate alarms, composite alarms, a dashboard and rollback configuration from a spec.

One generator, two renderings: plain JSON in the PutMetricAlarm / PutCompositeAlarm / PutDashboard
request shapes (values filled in from the spec), or a CloudFormation template where the versions,
target groups and load balancer are template parameters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from telemetry import catalog

from ._spec import Profile, Spec, SpecError

#: CodeDeploy watches at most this many alarms per deployment group.
MAX_DEPLOYMENT_ALARMS = 10
ALB_NAMESPACE = "AWS/ApplicationELB"

# Placeholders resolved per rendering: literal values for JSON, Ref/Sub for CloudFormation.
_PARAMS = {
    "BlueVersion": "Version value of the running (blue) version",
    "GreenVersion": "Version value of the version being deployed (green)",
    "LoadBalancerFullName": "ALB full name (app/<name>/<id>), the LoadBalancer dimension",
    "BlueTargetGroupFullName": "Blue target group full name (targetgroup/<name>/<id>)",
    "GreenTargetGroupFullName": "Green target group full name (targetgroup/<name>/<id>)",
}


class _P:
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


def _fmt(x: float) -> str:
    return f"{x:g}"


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

    def alb(
        self, name: str, description: str, metric: str, tg: _P, stat: str, threshold: float
    ) -> dict[str, Any]:
        alarm = self._base(name, description, threshold)
        alarm.update(
            Namespace=ALB_NAMESPACE,
            MetricName=metric,
            Dimensions=[
                {"Name": "TargetGroup", "Value": tg},
                {"Name": "LoadBalancer", "Value": _P("LoadBalancerFullName")},
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


def _build(spec: Spec, profile_name: str) -> dict[str, Any]:
    profile = spec.profile(profile_name)
    b = _Builder(spec, profile)
    svc, lat, n, m = (
        spec.service,
        spec.latency,
        profile.evaluation_periods,
        profile.datapoints_to_alarm,
    )
    every = f"{m} of {n} periods of {profile.period_s} s"
    green = _P("GreenVersion")
    rollback: list[str] = []

    # RED: service-wide, then the green (deploying) version.
    for prefix, dims, who in (
        ("", {"Service": svc}, "all versions"),
        ("green-", {"Service": svc, "Version": green}, "the green version"),
    ):
        a = b.simple(
            f"{prefix}latency-{_SHORT[lat.statistic]}",
            f"Latency {lat.statistic} of {who} > {_fmt(lat.threshold_ms)} ms in {every}.",
            "Latency",
            dims,
            lat.statistic,
            lat.threshold_ms,
        )
        p = b.simple(
            f"{prefix}latency-{lat.percentile.replace('.', '_')}",
            f"Latency {lat.percentile} of {who} > {_fmt(lat.percentile_threshold_ms)} ms in {every};"
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
            f"Server errors of {who} > {_fmt(spec.errors.rate_threshold_percent)}% of requests in"
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

    if spec.alb is not None:
        for color in ("blue", "green"):
            tg = _P(f"{color.capitalize()}TargetGroupFullName")
            x = b.alb(
                f"alb-{color}-5xx",
                f"ALB: {color} target group returned > {_fmt(spec.alb.target_5xx_threshold)}"
                f" 5xx responses per period in {every}.",
                "HTTPCode_Target_5XX_Count",
                tg,
                "Sum",
                spec.alb.target_5xx_threshold,
            )
            y = b.alb(
                f"alb-{color}-response-time",
                f"ALB: {color} target group response time Average >"
                f" {_fmt(spec.alb.response_time_threshold_s)} s in {every}.",
                "TargetResponseTime",
                tg,
                "Average",
                spec.alb.response_time_threshold_s,
            )
            if color == "green":
                rollback += [x["AlarmName"], y["AlarmName"]]

    # SLO burn rate: one metric-math alarm per window, pairs AND-ed, pairs OR-ed.
    budget = round(1 - spec.slo.target, 12)
    pairs = []
    for w in spec.slo.burn_windows:
        names = []
        for seconds in (w.long_s, w.short_s):
            a = b.ratio(
                f"slo-burn-{_window(seconds)}",
                f"Error budget burn rate over {_window(seconds)} > {_fmt(w.burn_rate)}"
                f" (SLO {spec.slo.target:g} over {spec.slo.window_days} days).",
                "ServerErrors",
                "Requests",
                {"Service": svc},
                f"num / den / {budget!r}",
                "Burn rate",
                w.burn_rate,
                period=seconds,
                n=1,
                m=1,
            )
            names.append(a["AlarmName"])
        c = b.composite(
            f"slo-burn-page-{_window(w.long_s)}",
            f"Page: burn rate > {_fmt(w.burn_rate)} over both {_window(w.long_s)} and"
            f" {_window(w.short_s)}.",
            f'ALARM("{names[0]}") AND ALARM("{names[1]}")',
        )
        pairs.append(c["AlarmName"])
    page = b.composite(
        "slo-burn-page",
        f"Page: the {spec.slo.target:g} SLO's error budget burns too fast (multiwindow, multi-burn-rate).",
        " OR ".join(f'ALARM("{p}")' for p in pairs),
    )

    worker_alarms: list[str] = []
    if spec.worker is not None:
        w = spec.worker
        wd = {"Service": w.service}
        age = b.simple(
            "worker-message-age",
            f"Worker: oldest message age > {_fmt(w.message_age_threshold_s)} s in {every}.",
            "MessageAge",
            wd,
            "Maximum",
            w.message_age_threshold_s,
        )
        b.simple(
            "worker-backlog",
            f"Worker: queue backlog > {_fmt(w.backlog_threshold)} in {every}.",
            "QueueBacklog",
            wd,
            "Maximum",
            w.backlog_threshold,
        )
        b.simple(
            "worker-dlq",
            f"Worker: dead-letter queue holds > {_fmt(w.dead_letter_threshold)} messages.",
            "DeadLetterBacklog",
            wd,
            "Maximum",
            w.dead_letter_threshold,
            n=1,
            m=1,
        )
        b.ratio(
            "worker-job-error-rate",
            f"Worker: failed jobs > {_fmt(w.job_error_rate_threshold_percent)}% in {every}.",
            "JobErrors",
            "Jobs",
            wd,
            "100 * num / den",
            "Job error rate (%)",
            w.job_error_rate_threshold_percent,
        )
        g = b.ratio(
            "worker-green-job-error-rate",
            f"Worker: failed jobs of the green version > "
            f"{_fmt(w.job_error_rate_threshold_percent)}% in {every}.",
            "JobErrors",
            "Jobs",
            {"Service": w.service, "Version": green},
            "100 * num / den",
            "Job error rate (%)",
            w.job_error_rate_threshold_percent,
        )
        worker_alarms = [g["AlarmName"], age["AlarmName"]]

    if len(rollback) > MAX_DEPLOYMENT_ALARMS:
        c = b.composite(
            "deployment-rollback",
            "Any deployment alarm (folded: CodeDeploy watches at most 10).",
            " OR ".join(f'ALARM("{r}")' for r in rollback),
        )
        rollback = [c["AlarmName"]]
    if len(worker_alarms) > MAX_DEPLOYMENT_ALARMS:  # pragma: no cover - 2 today
        c = b.composite(
            "worker-deployment-rollback",
            "Any worker deployment alarm.",
            " OR ".join(f'ALARM("{r}")' for r in worker_alarms),
        )
        worker_alarms = [c["AlarmName"]]

    return {
        "metric_alarms": b.metric_alarms,
        "composites": b.composites,
        "rollback": rollback,
        "worker_rollback": worker_alarms,
        "page": page["AlarmName"],
        "dashboard": _dashboard(spec, profile, b, rollback),
    }


# -- dashboard ---------------------------------------------------------------------------------


def _dashboard(spec: Spec, profile: Profile, b: _Builder, rollback: list[str]) -> dict[str, Any]:
    """The dashboard body with ``${...}`` placeholders (CloudFormation Fn::Sub syntax)."""
    ns, svc, period = spec.namespace, spec.service, profile.period_s
    region = "${AWS::Region}"
    versions = (("blue", "${BlueVersion}"), ("green", "${GreenVersion}"))

    def per_version(metric: str, stat: str) -> list[list[Any]]:
        return [
            [ns, metric, "Service", svc, "Version", v, {"stat": stat, "label": f"{c} {stat}"}]
            for c, v in versions
        ]

    def hline(value: float, label: str) -> dict[str, Any]:
        return {"horizontal": [{"value": value, "label": label, "fill": "above"}]}

    def widget(x: int, y: int, title: str, metrics: list, **extra: Any) -> dict[str, Any]:
        props = {
            "title": title,
            "region": region,
            "view": "timeSeries",
            "period": period,
            "metrics": metrics,
            **extra,
        }
        return {"type": "metric", "x": x, "y": y, "width": 6, "height": 6, "properties": props}

    lat = spec.latency
    err_rows: list[list[Any]] = []
    for i, (c, v) in enumerate(versions):
        err_rows += [
            [
                ns,
                "ServerErrors",
                "Service",
                svc,
                "Version",
                v,
                {"stat": "Sum", "id": f"e{i}", "label": f"{c} 5xx"},
            ],
            [
                ns,
                "Requests",
                "Service",
                svc,
                "Version",
                v,
                {"stat": "Sum", "id": f"r{i}", "visible": False},
            ],
            [
                {
                    "expression": f"100 * e{i} / r{i}",
                    "label": f"{c} error rate (%)",
                    "id": f"rate{i}",
                    "yAxis": "right",
                }
            ],
        ]
    latency_rows: list[list[Any]] = []
    for c, v in versions:
        for stat in ("p50", "p90", "p99"):
            latency_rows.append(
                [
                    ns,
                    "Latency",
                    "Service",
                    svc,
                    "Version",
                    v,
                    {"stat": stat, "label": f"{c} {stat}"},
                ]
            )
        latency_rows.append(
            [
                ns,
                "Latency",
                "Service",
                svc,
                "Version",
                v,
                {"stat": "Average", "label": f"{c} Average"},
            ]
        )
    widgets = [
        widget(0, 0, "Rate: requests per period", per_version("Requests", "Sum")),
        widget(
            6,
            0,
            "Errors: 5xx and error rate",
            err_rows,
            annotations=hline(spec.errors.rate_threshold_percent, "error-rate alarm"),
        ),
        widget(
            12,
            0,
            "Duration: latency (ms)",
            latency_rows,
            annotations={
                "horizontal": [
                    {"value": lat.threshold_ms, "label": f"{lat.statistic} alarm", "fill": "above"},
                    {"value": lat.percentile_threshold_ms, "label": f"{lat.percentile} alarm"},
                ]
            },
        ),
    ]
    alarm_names = [a["AlarmName"] for a in b.metric_alarms + b.composites]
    widgets.append(
        {
            "type": "alarm",
            "x": 18,
            "y": 0,
            "width": 6,
            "height": 6,
            "properties": {
                "title": "Alarm status",
                "alarms": [
                    f"arn:aws:cloudwatch:{region}:${{AWS::AccountId}}:alarm:{n}"
                    for n in alarm_names[:100]
                ],
            },
        }
    )
    if spec.worker is not None:
        w, wsvc = spec.worker, spec.worker.service
        widgets += [
            widget(
                0,
                6,
                "Worker utilization: jobs and busy %",
                [
                    [ns, "Jobs", "Service", wsvc, {"stat": "Sum"}],
                    [
                        ns,
                        "WorkerUtilization",
                        "Service",
                        wsvc,
                        {"stat": "Average", "yAxis": "right"},
                    ],
                ],
            ),
            widget(
                6,
                6,
                "Worker saturation: backlog, in flight, message age",
                [
                    [ns, "QueueBacklog", "Service", wsvc, {"stat": "Maximum"}],
                    [ns, "QueueInFlight", "Service", wsvc, {"stat": "Maximum"}],
                    [ns, "MessageAge", "Service", wsvc, {"stat": "Maximum", "yAxis": "right"}],
                ],
                annotations={
                    "horizontal": [
                        {"value": w.backlog_threshold, "label": "backlog alarm"},
                        {
                            "value": w.message_age_threshold_s,
                            "label": "message-age alarm",
                            "yAxis": "right",
                        },
                    ]
                },
            ),
            widget(
                12,
                6,
                "Worker errors: failed jobs, dead letters",
                [
                    [ns, "JobErrors", "Service", wsvc, {"stat": "Sum"}],
                    [ns, "DeadLettered", "Service", wsvc, {"stat": "Sum"}],
                    [ns, "DeadLetterBacklog", "Service", wsvc, {"stat": "Maximum"}],
                ],
                annotations=hline(w.dead_letter_threshold, "DLQ alarm"),
            ),
        ]
    note = (
        f"## Deployment of {svc}\n\n"
        f"Blue `${{BlueVersion}}` -> green `${{GreenVersion}}` with CodeDeploy"
        f" `{spec.deployment.config_name}`"
        " (auto rollback on DEPLOYMENT_FAILURE and DEPLOYMENT_STOP_ON_ALARM).\n\n"
        "Rollback alarms: " + ", ".join(f"`{r}`" for r in rollback) + "\n\n"
        f"Alarm periods: {period} s, {profile.datapoints_to_alarm} of"
        f" {profile.evaluation_periods} datapoints."
    )
    widgets.append(
        {"type": "text", "x": 18, "y": 6, "width": 6, "height": 6, "properties": {"markdown": note}}
    )
    return {"widgets": widgets}


# -- renderings --------------------------------------------------------------------------------


def _walk(obj: Any, leaf: Callable[[_P], Any]) -> Any:
    if isinstance(obj, _P):
        return leaf(obj)
    if isinstance(obj, dict):
        return {k: _walk(v, leaf) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_walk(v, leaf) for v in obj]
    return obj


def _values(spec: Spec) -> dict[str, str]:
    alb = spec.alb
    return {
        "BlueVersion": spec.versions.blue,
        "GreenVersion": spec.versions.green,
        "LoadBalancerFullName": alb.load_balancer if alb else "",
        "BlueTargetGroupFullName": alb.blue_target_group if alb else "",
        "GreenTargetGroupFullName": alb.green_target_group if alb else "",
        "AWS::Region": spec.region,
        "AWS::AccountId": spec.account_id,
    }


def _sub(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{([A-Za-z0-9:]+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def _logical_id(name: str, prefix: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", name.removeprefix(prefix))
    return "".join(p[:1].upper() + p[1:] for p in parts if p) or "Alarm"


def _render_json(spec: Spec, built: dict[str, Any], profile: str) -> dict[str, Any]:
    values = _values(spec)
    alarms = [_walk(a, lambda p: values[p.name]) for a in built["metric_alarms"]]
    body = _sub(json.dumps(built["dashboard"], separators=(",", ":")), values)
    dep = spec.deployment
    out: dict[str, Any] = {
        "Service": spec.service,
        "Profile": profile,
        "MetricAlarms": alarms,
        "CompositeAlarms": [dict(c) for c in built["composites"]],
        "Dashboards": [{"DashboardName": spec.service, "DashboardBody": body}],
        "CodeDeploy": {
            "applicationName": dep.application,
            "currentDeploymentGroupName": dep.deployment_group,
            "deploymentConfigName": dep.config_name,
            "alarmConfiguration": {
                "enabled": True,
                "ignorePollAlarmFailure": False,
                "alarms": [{"name": n} for n in built["rollback"]],
            },
            "autoRollbackConfiguration": {
                "enabled": True,
                "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
            },
        },
        "SloPageAlarm": built["page"],
    }
    if spec.worker is not None:
        out["EcsServices"] = [
            {
                "cluster": dep.worker_cluster,
                "service": dep.worker_ecs_service,
                "deploymentConfiguration": {
                    "alarms": {
                        "alarmNames": built["worker_rollback"],
                        "enable": True,
                        "rollback": True,
                    },
                    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                },
            }
        ]
    return out


def _render_cfn(spec: Spec, built: dict[str, Any], profile: str) -> dict[str, Any]:
    values = _values(spec)
    prefix = f"{spec.service}-"
    params: dict[str, Any] = {}
    for name, desc in _PARAMS.items():
        if spec.alb is None and name not in ("BlueVersion", "GreenVersion"):
            continue
        params[name] = {"Type": "String", "Default": values[name], "Description": desc}
    resources: dict[str, Any] = {}
    ids: dict[str, str] = {}
    for a in built["metric_alarms"]:
        lid = _logical_id(a["AlarmName"], prefix) + "Alarm"
        ids[a["AlarmName"]] = lid
        resources[lid] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": _walk(a, lambda p: {"Ref": p.name}),
        }
    for c in built["composites"]:
        lid = _logical_id(c["AlarmName"], prefix) + "Composite"
        ids[c["AlarmName"]] = lid
        deps = [ids[n] for n in re.findall(r'\("([^"]+)"\)', c["AlarmRule"])]
        resources[lid] = {
            "Type": "AWS::CloudWatch::CompositeAlarm",
            "DependsOn": deps,
            "Properties": dict(c),
        }
    body = json.dumps(built["dashboard"], separators=(",", ":"))
    resources["Dashboard"] = {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {"DashboardName": spec.service, "DashboardBody": {"Fn::Sub": body}},
    }
    outputs: dict[str, Any] = {
        "DeploymentAlarmNames": {
            "Description": "Alarms for the CodeDeploy deployment group's AlarmConfiguration"
            " (comma-joined, at most 10; Fn::Split them)",
            "Value": ",".join(built["rollback"]),
        },
        "DeploymentConfigName": {
            "Description": "CodeDeploy deployment configuration",
            "Value": spec.deployment.config_name,
        },
        "SloPageAlarmName": {
            "Description": "Composite burn-rate page alarm",
            "Value": built["page"],
        },
        "DashboardName": {"Description": "CloudWatch dashboard", "Value": {"Ref": "Dashboard"}},
    }
    if spec.worker is not None:
        outputs["WorkerDeploymentAlarmNames"] = {
            "Description": "Alarms for the worker's ECS DeploymentConfiguration.Alarms"
            " (comma-joined; Enable and Rollback true)",
            "Value": ",".join(built["worker_rollback"]),
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"CloudWatch alarms and dashboard of {spec.service} (generated by"
        f" `python -m alarms synth`, profile {profile}).",
        "Metadata": {"SafeDeploy::Profile": profile, "SafeDeploy::Service": spec.service},
        "Parameters": params,
        "Resources": resources,
        "Outputs": outputs,
    }


def synth(spec: Spec, format: str = "json", profile: str | None = None) -> dict[str, Any]:
    """Generate everything for ``spec``.

    ``format="json"`` returns ``{"MetricAlarms", "CompositeAlarms", "Dashboards", "CodeDeploy",
    "EcsServices", ...}`` in the AWS request shapes; ``format="cloudformation"`` a template.
    ``profile`` defaults to ``"production"``.
    """
    profile = profile or "production"
    built = _build(spec, profile)
    if format == "json":
        return _render_json(spec, built, profile)
    if format in ("cloudformation", "cfn"):
        return _render_cfn(spec, built, profile)
    raise ValueError(f"unknown format {format!r} (json or cloudformation)")


def rollback_alarm_names(defs: dict[str, Any]) -> list[str]:
    """The (at most 10) alarms CodeDeploy's AlarmConfiguration watches, from JSON defs or a template."""
    if "CodeDeploy" in defs:
        return [a["name"] for a in defs["CodeDeploy"]["alarmConfiguration"]["alarms"]]
    value = defs.get("Outputs", {}).get("DeploymentAlarmNames", {}).get("Value")
    if isinstance(value, str):
        return [n for n in value.split(",") if n]
    raise ValueError(
        "no CodeDeploy alarm configuration (CodeDeploy key or DeploymentAlarmNames output)"
    )
