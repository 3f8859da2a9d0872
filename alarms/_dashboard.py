"""The CloudWatch dashboard of a spec: a RED row, the alarm status, a USE row and a deployment
note (see docs/alarms.md)."""

from __future__ import annotations

from typing import Any

from ._policy import Policy
from ._spec import Spec


def dashboard(spec: Spec, policy: Policy) -> dict[str, Any]:
    """The dashboard body with ``${...}`` placeholders (CloudFormation Fn::Sub syntax)."""
    profile, rollback = policy.profile, policy.rollback
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
    latency_rows: list[list[Any]] = [
        [ns, "Latency", "Service", svc, "Version", v, {"stat": stat, "label": f"{c} {stat}"}]
        for c, v in versions
        for stat in ("p50", "p90", "p99", "Average")
    ]
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
    alarm_names = policy.alarm_names
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
    console = f"https://{region}.console.aws.amazon.com"
    note = (
        f"## Deployment of {svc}\n\n"
        f"Blue `${{BlueVersion}}` -> green `${{GreenVersion}}` with CodeDeploy"
        f" `{spec.deployment.config_name}`"
        " (auto rollback on DEPLOYMENT_FAILURE and DEPLOYMENT_STOP_ON_ALARM).\n\n"
        "Rollback alarms: " + ", ".join(f"`{r}`" for r in rollback) + "\n\n"
        f"Alarm periods: {period} s, {profile.datapoints_to_alarm} of"
        f" {profile.evaluation_periods} datapoints.\n\n"
        f"[CodeDeploy deployment group]({console}/codesuite/codedeploy/applications/"
        f"${{CodeDeployApplication}}/deployment-groups/${{DeploymentGroupName}}?region={region})"
        f" | [deployments]({console}/codesuite/codedeploy/deployments?region={region})"
    )
    widgets.append(
        {"type": "text", "x": 18, "y": 6, "width": 6, "height": 6, "properties": {"markdown": note}}
    )
    widgets.append(slowest_requests_widget(region))
    return {"widgets": widgets}


#: Logs Insights: the new version's slowest requests, from the access lines telemetry writes
#: (docs/telemetry.md); their trace ids open in X-Ray.
SLOWEST_REQUESTS_QUERY = (
    "SOURCE '${LogGroupName}'"
    " | fields @timestamp, route, status, duration_ms, rate_limit_wait_ms, user_id, trace_id"
    " | filter logger = 'telemetry.access' and version = '${GreenVersion}'"
    " | sort duration_ms desc"
    " | limit 20"
)


def slowest_requests_widget(region: str) -> dict[str, Any]:
    """A Logs Insights table of green's slowest requests (trace ids to open in X-Ray)."""
    return {
        "type": "log",
        "x": 0,
        "y": 12,
        "width": 24,
        "height": 6,
        "properties": {
            "title": "Slowest requests of green (${GreenVersion}): open a trace_id in X-Ray",
            "region": region,
            "view": "table",
            "query": SLOWEST_REQUESTS_QUERY,
        },
    }
