"""``alarms apply``: create or update the generated resources with boto3 (idempotent).

Every alarm is compared with what ``describe_alarms`` returns and only written when it differs
(PutMetricAlarm / PutCompositeAlarm are upserts, so a rerun is harmless anyway). The endpoint
comes from the usual boto3 configuration, ``AWS_ENDPOINT_URL`` included.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from ._spec import Spec
from ._synth import synth

Report = Callable[[str], None]


class ApplyError(RuntimeError):
    """AWS refused a call (other than "not implemented by this endpoint")."""


def _not_implemented(exc: Exception) -> bool:
    """The endpoint does not implement the call (moto's server answers a bare HTTP 500).

    AWS itself answers a server fault with an error code (InternalFailure, ...); an emulator that
    lacks the action answers an HTML 500 page, which botocore reports with the code "500".
    """
    if isinstance(exc, NotImplementedError):
        return True
    text = str(exc)
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return (
        "not been implemented" in text
        or "not yet implemented" in text
        or code in ("NotImplemented", "NotImplementedError", "500")
    )


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _same(desired: Any, actual: Any) -> bool:
    """``desired`` is contained in ``actual`` (AWS adds fields and defaults of its own)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(_same(v, actual.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(desired) == len(actual)
            and all(_same(d, a) for d, a in zip(desired, actual, strict=True))
        )
    if isinstance(desired, float | int) and isinstance(actual, float | int):
        return float(desired) == float(actual)
    return desired == actual


def plan(defs: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The calls ``apply`` makes, in order: ``(service, operation, kwargs)``."""
    calls: list[tuple[str, str, dict[str, Any]]] = []
    calls += [("cloudwatch", "put_metric_alarm", a) for a in defs["MetricAlarms"]]
    calls += [("cloudwatch", "put_composite_alarm", c) for c in defs["CompositeAlarms"]]
    calls += [("cloudwatch", "put_dashboard", d) for d in defs["Dashboards"]]
    calls.append(("codedeploy", "update_deployment_group", defs["CodeDeploy"]))
    for svc in defs.get("EcsServices", []):
        calls.append(("ecs", "update_service", svc))
    return calls


def describe_plan(defs: dict[str, Any], report: Report) -> int:
    """``--dry-run``: print every call and its target, touch nothing."""
    calls = plan(defs)
    for service, op, kwargs in calls:
        target = (
            kwargs.get("AlarmName")
            or kwargs.get("DashboardName")
            or kwargs.get("currentDeploymentGroupName")
            or f"{kwargs.get('cluster')}/{kwargs.get('service')}"
        )
        detail = ""
        if op == "update_deployment_group":
            names = [a["name"] for a in kwargs["alarmConfiguration"]["alarms"]]
            detail = f" alarms={','.join(names)} autoRollback={kwargs['autoRollbackConfiguration']['events']}"
        elif op == "update_service":
            detail = (
                f" alarms={','.join(kwargs['deploymentConfiguration']['alarms']['alarmNames'])}"
            )
        report(f"would {service}.{op} {target}{detail}")
    report(f"dry run: {len(calls)} call(s), nothing changed")
    return 0


def apply(spec: Spec, profile: str, report: Report, session: Any = None) -> dict[str, int]:
    """Create or update everything for ``spec``; returns counts per outcome."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = session or boto3.session.Session()
    region = session.region_name or spec.region
    counts = {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0}
    try:
        account = session.client("sts", region_name=region).get_caller_identity()["Account"]
    except (ClientError, BotoCoreError, KeyError):
        account = spec.account_id
    # The dashboard's alarm widget needs the real ARNs: render with this account and region.
    defs = synth(dataclasses.replace(spec, region=region, account_id=account), "json", profile)
    cw = session.client("cloudwatch", region_name=region)

    def outcome(kind: str, what: str, note: str = "") -> None:
        counts[kind] += 1
        report(f"{kind} {what}{': ' + note if note else ''}")

    try:
        existing: dict[str, dict[str, Any]] = {}
        for page in cw.get_paginator("describe_alarms").paginate(
            AlarmNamePrefix=spec.service, AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        ):
            for a in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                existing[a["AlarmName"]] = a
        for a in defs["MetricAlarms"]:
            old = existing.get(a["AlarmName"])
            if old is not None and _same(a, old):
                outcome("unchanged", f"alarm {a['AlarmName']}")
                continue
            cw.put_metric_alarm(**a)
            outcome("created" if old is None else "updated", f"alarm {a['AlarmName']}")
        for c in defs["CompositeAlarms"]:
            old = existing.get(c["AlarmName"])
            if old is not None and _same(c, old):
                outcome("unchanged", f"composite alarm {c['AlarmName']}")
                continue
            try:
                cw.put_composite_alarm(**c)
            except (ClientError, NotImplementedError) as exc:
                if not _not_implemented(exc):
                    raise
                outcome(
                    "skipped", f"composite alarm {c['AlarmName']}", "not implemented by endpoint"
                )
                continue
            outcome("created" if old is None else "updated", f"composite alarm {c['AlarmName']}")
        for d in defs["Dashboards"]:
            try:
                old_body = cw.get_dashboard(DashboardName=d["DashboardName"])["DashboardBody"]
            except ClientError:
                old_body = None
            if old_body is not None and json.loads(old_body) == json.loads(d["DashboardBody"]):
                outcome("unchanged", f"dashboard {d['DashboardName']}")
                continue
            cw.put_dashboard(**d)
            outcome("created" if old_body is None else "updated", f"dashboard {d['DashboardName']}")
        _codedeploy(session, region, defs["CodeDeploy"], outcome)
        for svc in defs.get("EcsServices", []):
            _ecs(session, region, svc, outcome)
    except (ClientError, BotoCoreError) as exc:
        raise ApplyError(_one_line(exc)) from None
    return counts


def _codedeploy(session: Any, region: str, cfg: dict[str, Any], outcome: Callable) -> None:
    from botocore.exceptions import ClientError

    cd = session.client("codedeploy", region_name=region)
    what = f"deployment group {cfg['applicationName']}/{cfg['currentDeploymentGroupName']}"
    try:
        info = cd.get_deployment_group(
            applicationName=cfg["applicationName"],
            deploymentGroupName=cfg["currentDeploymentGroupName"],
        )["deploymentGroupInfo"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ApplicationDoesNotExistException", "DeploymentGroupDoesNotExistException"):
            outcome("skipped", what, f"{code} (create it with deploy/, then apply again)")
            return
        raise
    wanted = {k: cfg[k] for k in ("alarmConfiguration", "autoRollbackConfiguration")}
    if _same(wanted, info):
        outcome("unchanged", what)
        return
    try:
        cd.update_deployment_group(**cfg)
    except (ClientError, NotImplementedError) as exc:
        if not _not_implemented(exc):
            raise
        outcome("skipped", what, "update_deployment_group not implemented by endpoint")
        return
    outcome("updated", what)


def _ecs(session: Any, region: str, svc: dict[str, Any], outcome: Callable) -> None:
    ecs = session.client("ecs", region_name=region)
    what = f"ECS service {svc['cluster']}/{svc['service']}"
    try:
        found = ecs.describe_services(cluster=svc["cluster"], services=[svc["service"]])
    except ecs.exceptions.ClusterNotFoundException:
        outcome("skipped", what, "cluster not found")
        return
    services = [s for s in found.get("services", []) if s.get("status") != "INACTIVE"]
    if not services:
        outcome("skipped", what, "service not found")
        return
    current = services[0].get("deploymentConfiguration") or {}
    merged = {**current, **svc["deploymentConfiguration"]}
    if _same(svc["deploymentConfiguration"], current):
        outcome("unchanged", what)
        return
    ecs.update_service(
        cluster=svc["cluster"], service=svc["service"], deploymentConfiguration=merged
    )
    outcome("updated", what)
