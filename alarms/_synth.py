"""``synth``: a spec's alarms, dashboard and rollback configuration, in one of two renderings.

The policy (``_policy``) and the dashboard (``_dashboard``) are built once; ``_render_requests``
writes them as JSON in the AWS request shapes, ``_render_cfn`` as a CloudFormation template.
"""

from __future__ import annotations

from typing import Any

from ._dashboard import dashboard
from ._policy import build
from ._render_cfn import render_cfn
from ._render_requests import render_requests
from ._spec import Spec


def synth(spec: Spec, format: str = "json", profile: str | None = None) -> dict[str, Any]:
    """Generate everything for ``spec``.

    ``format="json"`` returns ``{"MetricAlarms", "CompositeAlarms", "Dashboards", "CodeDeploy",
    "EcsServices", ...}`` in the AWS request shapes; ``format="cloudformation"`` a template.
    ``profile`` defaults to ``"production"``.
    """
    profile = profile or "production"
    policy = build(spec, profile)
    dash = dashboard(spec, policy)
    if format == "json":
        return render_requests(spec, policy, dash, profile)
    if format in ("cloudformation", "cfn"):
        return render_cfn(spec, policy, dash, profile)
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


def worker_rollback_alarm_names(defs: dict[str, Any]) -> list[str]:
    """The alarms the worker's ECS service rolls back on (``deploymentConfiguration.alarms``),
    from JSON defs or a template; ``[]`` when the spec has no worker."""
    services = defs.get("EcsServices")
    if services is not None:
        return list(services[0]["deploymentConfiguration"]["alarms"]["alarmNames"])
    value = defs.get("Outputs", {}).get("WorkerDeploymentAlarmNames", {}).get("Value")
    if isinstance(value, str):
        return [n for n in value.split(",") if n]
    return []
