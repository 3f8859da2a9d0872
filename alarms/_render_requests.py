"""Render a policy as plain JSON in the AWS request shapes (PutMetricAlarm, PutCompositeAlarm,
PutDashboard, UpdateDeploymentGroup, UpdateService) with the spec's values filled in."""

from __future__ import annotations

import json
import re
from typing import Any

from ._policy import Policy, param_values, resolve
from ._spec import Spec


def _sub(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{([A-Za-z0-9:]+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def render_requests(
    spec: Spec, policy: Policy, dashboard: dict[str, Any], profile: str
) -> dict[str, Any]:
    """The JSON form: ``{"MetricAlarms", "CompositeAlarms", "Dashboards", "CodeDeploy",
    "EcsServices", "SloPageAlarm", "Service", "Profile"}`` with every parameter filled in."""
    values = param_values(spec)
    alarms = [resolve(a, lambda p: values[p.name]) for a in policy.metric_alarms]
    body = _sub(json.dumps(dashboard, separators=(",", ":")), values)
    dep = spec.deployment
    out: dict[str, Any] = {
        "Service": spec.service,
        "Profile": profile,
        "MetricAlarms": alarms,
        "CompositeAlarms": [dict(c) for c in policy.composites],
        "Dashboards": [{"DashboardName": spec.service, "DashboardBody": body}],
        "CodeDeploy": {
            "applicationName": dep.application,
            "currentDeploymentGroupName": dep.deployment_group,
            "deploymentConfigName": dep.config_name,
            "alarmConfiguration": {
                "enabled": True,
                "ignorePollAlarmFailure": False,
                "alarms": [{"name": n} for n in policy.rollback],
            },
            "autoRollbackConfiguration": {
                "enabled": True,
                "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
            },
        },
        "SloPageAlarm": policy.page,
    }
    if spec.worker is not None:
        out["EcsServices"] = [
            {
                "cluster": dep.worker_cluster,
                "service": dep.worker_ecs_service,
                "deploymentConfiguration": {
                    "alarms": {
                        "alarmNames": policy.worker_rollback,
                        "enable": True,
                        "rollback": True,
                    },
                    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                },
            }
        ]
    return out
