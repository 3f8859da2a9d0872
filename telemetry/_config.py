"""Settings from arguments and the environment, following the OpenTelemetry and EMF conventions."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

# The AWS_EMF_* names are aws-embedded-metrics' own (its EnvironmentConfigurationProvider).
from aws_embedded_metrics.config import environment_configuration_provider as _emf_env

_EMF = _emf_env.ENV_VAR_PREFIX + "_"
EMF_NAMESPACE = _EMF + _emf_env.NAMESPACE
EMF_ENVIRONMENT = _EMF + _emf_env.ENVIRONMENT_OVERRIDE
EMF_AGENT_ENDPOINT = _EMF + _emf_env.AGENT_ENDPOINT
EMF_LOG_GROUP_NAME = _EMF + _emf_env.LOG_GROUP_NAME

DEFAULT_NAMESPACE = "SafeDeploy"
DEFAULT_SERVICE = "unknown_service"
DEFAULT_VERSION = "dev"
DEFAULT_AGENT_ENDPOINT = "tcp://127.0.0.1:25888"
DEFAULT_EXCLUDE = r"^/(healthz|readyz|livez|ping)/?$"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``configure()`` decided; see docs/telemetry.md for each variable."""

    service: str = DEFAULT_SERVICE
    version: str = DEFAULT_VERSION
    namespace: str = DEFAULT_NAMESPACE
    flush_interval_s: float = 5.0
    storage_resolution: int = 60
    histogram: str = "counts"  # "counts" (Values/Counts, <= 1 % error) or "values" (raw samples)
    access_log_sample: float = 1.0
    max_routes: int = 50
    max_values: int = 10_000  # raw samples kept per series and window in "values" mode
    exclude_paths: str = DEFAULT_EXCLUDE
    worker_slots: int = 1
    emf_environment: str = ""  # AWS_EMF_ENVIRONMENT: Local|ECS|EC2|Agent|Lambda ("" = stdout)
    agent_endpoint: str = ""  # AWS_EMF_AGENT_ENDPOINT; set -> CloudWatch agent sink
    log_group: str = ""  # AWS_EMF_LOG_GROUP_NAME, only sent to the agent
    log_level: str = "INFO"
    json_logs: bool = True
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # invalid settings replaced by their defaults

    @property
    def uses_agent(self) -> bool:
        env = self.emf_environment.lower()
        return env in ("agent", "ec2") or (
            env not in ("local", "lambda") and bool(self.agent_endpoint)
        )


def parse_resource_attributes(raw: str) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES``: ``k1=v1,k2=v2`` with percent-encoded values."""
    out: dict[str, str] = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            out[key.strip()] = unquote(value.strip())
    return out


def load(
    env: Mapping[str, str] | None = None,
    *,
    service: str | None = None,
    version: str | None = None,
    default_service: str | None = None,
    namespace: str | None = None,
    flush_interval_s: float | None = None,
    storage_resolution: int | None = None,
    histogram: str | None = None,
    access_log_sample: float | None = None,
    max_routes: int | None = None,
    exclude_paths: str | None = None,
    worker_slots: int | None = None,
    json_logs: bool | None = None,
    log_level: str | None = None,
) -> Settings:
    """Arguments win over the environment, which wins over the defaults. Never raises."""
    env = os.environ if env is None else env
    problems: list[str] = []
    res = parse_resource_attributes(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))

    def number(name: str, given: float | None, default: float, lo: float, hi: float) -> float:
        raw = given if given is not None else env.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except (TypeError, ValueError):
            problems.append(f"{name}={raw!r} is not a number; using {default}")
            return default
        if not (math.isfinite(value) and lo <= value <= hi):
            problems.append(f"{name}={raw!r} is outside [{lo}, {hi}]; using {default}")
            return default
        return value

    def choice(name: str, given: str | None, default: str, allowed: tuple[str, ...]) -> str:
        raw = given if given is not None else env.get(name, "")
        if not raw:
            return default
        if str(raw).lower() not in allowed:
            problems.append(f"{name}={raw!r} is not one of {allowed}; using {default!r}")
            return default
        return str(raw).lower()

    resolution = int(
        choice("TELEMETRY_STORAGE_RESOLUTION", _str(storage_resolution), "60", ("60", "1"))
    )
    return Settings(
        service=service
        or env.get("OTEL_SERVICE_NAME")
        or res.get("service.name")
        or default_service
        or DEFAULT_SERVICE,
        version=version or env.get("APP_VERSION") or res.get("service.version") or DEFAULT_VERSION,
        namespace=namespace or env.get(EMF_NAMESPACE) or DEFAULT_NAMESPACE,
        flush_interval_s=number("TELEMETRY_FLUSH_INTERVAL_S", flush_interval_s, 5.0, 0.05, 3600.0),
        storage_resolution=resolution,
        histogram=choice("TELEMETRY_HISTOGRAM", histogram, "counts", ("counts", "values")),
        access_log_sample=number("TELEMETRY_ACCESS_LOG_SAMPLE", access_log_sample, 1.0, 0.0, 1.0),
        max_routes=int(number("TELEMETRY_MAX_ROUTES", max_routes, 50, 1, 10_000)),
        max_values=int(number("TELEMETRY_MAX_VALUES", None, 10_000, 100, 1_000_000)),
        exclude_paths=exclude_paths
        if exclude_paths is not None
        else env.get("TELEMETRY_EXCLUDE_PATHS", DEFAULT_EXCLUDE),
        worker_slots=int(number("TELEMETRY_WORKER_SLOTS", worker_slots, 1, 1, 100_000)),
        emf_environment=env.get(EMF_ENVIRONMENT, ""),
        agent_endpoint=env.get(EMF_AGENT_ENDPOINT, ""),
        log_group=env.get(EMF_LOG_GROUP_NAME, ""),
        log_level=(log_level or env.get("TELEMETRY_LOG_LEVEL") or "INFO").upper(),
        json_logs=json_logs
        if json_logs is not None
        else env.get("TELEMETRY_JSON_LOGS", "true").lower() not in ("0", "false", "no"),
        resource_attributes=res,
        problems=tuple(problems),
    )


def _str(value: object) -> str | None:
    return None if value is None else str(value)
