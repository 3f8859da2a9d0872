"""Settings from arguments and the environment, following the OpenTelemetry and EMF conventions."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from telemetry import cloudwatch_rules as rules
from telemetry import environment_variables as ev

# kept for callers of the old names
EMF_NAMESPACE = ev.AWS_EMF_NAMESPACE
EMF_ENVIRONMENT = ev.AWS_EMF_ENVIRONMENT
EMF_AGENT_ENDPOINT = ev.AWS_EMF_AGENT_ENDPOINT
EMF_LOG_GROUP_NAME = ev.AWS_EMF_LOG_GROUP_NAME

DEFAULT_NAMESPACE = "SafeDeploy"
DEFAULT_SERVICE = "unknown_service"
DEFAULT_VERSION = "dev"
DEFAULT_AGENT_ENDPOINT = "tcp://127.0.0.1:25888"
DEFAULT_EXCLUDE = r"^/(healthz|readyz|livez|ping)/?$"
DEFAULT_OUTPUT_BUFFER_BYTES = 4 * 1024 * 1024
DEFAULT_SHUTDOWN_TIMEOUT_S = 2.0

#: Spellings of a yes/no variable (``TELEMETRY_JSON_LOGS``), any case.
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
#: ``AWS_EMF_ENVIRONMENT`` values, any case ("" = unset).
EMF_ENVIRONMENTS = ("local", "lambda", "agent", "ec2", "ecs")
#: Characters of a bad value shown in a problem line: a 2000-character variable is a mistake
#: to name, not to print in full.
MAX_SHOWN_CHARS = 100


def shown(value: object) -> str:
    """``repr(value)`` for a problem line, cut to :data:`MAX_SHOWN_CHARS` characters of the
    value with a note of its full length: ``'xxx...'... (2000 characters)``. Never raises: an
    integer too long for ``repr`` (over 4300 digits) or an object whose ``repr`` fails is
    described by its type."""
    if isinstance(value, str) and len(value) > MAX_SHOWN_CHARS:
        return f"{value[:MAX_SHOWN_CHARS]!r}... ({len(value)} characters)"
    try:
        text = repr(value)
    except Exception:  # int's string-conversion limit, a failing __repr__
        if isinstance(value, int):
            return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
        return f"<{type(value).__name__} that cannot be shown>"
    if len(text) > MAX_SHOWN_CHARS:
        return f"{text[:MAX_SHOWN_CHARS]}... ({len(text)} characters)"
    return text


def agent_address(endpoint: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an ``AWS_EMF_AGENT_ENDPOINT`` (``tcp://host:port`` or
    ``udp://host:port``). Raises ``ValueError`` naming the variable and saying why."""
    expected = "expected tcp://host:port or udp://host:port"
    try:
        url = urlsplit(endpoint)
        port = url.port  # raises for a port that is not a number in 0..65535
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535"
        problem = f"{ev.AWS_EMF_AGENT_ENDPOINT}={shown(endpoint)}: {expected} ({exc})"
        raise ValueError(problem) from None
    if url.scheme not in ("tcp", "udp") or not url.hostname or not port:
        raise ValueError(f"{ev.AWS_EMF_AGENT_ENDPOINT}={shown(endpoint)}: {expected}")
    return url.scheme, url.hostname, port


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
    output_buffer_bytes: int = DEFAULT_OUTPUT_BUFFER_BYTES
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    traces_file: str = ""  # OTLP JSON lines of every exported span ("" = none)
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # invalid settings replaced by their defaults

    @property
    def uses_agent(self) -> bool:
        env = self.emf_environment.lower()
        return env in ("agent", "ec2") or (
            env not in ("local", "lambda") and bool(self.agent_endpoint)
        )

    @property
    def log_group_name(self) -> str:
        """``_aws.LogGroupName`` for the agent: the setting, else ``<service>-metrics`` with the
        characters CloudWatch Logs refuses replaced by ``_``."""
        if self.log_group:
            return self.log_group
        name = "".join(
            c if c.isascii() and (c.isalnum() or c in "._-/#") else "_" for c in self.service
        )
        return f"{name}-metrics"[: rules.MAX_LOG_GROUP_NAME_LENGTH]


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
    max_values: int | None = None,
    access_log_sample: float | None = None,
    max_routes: int | None = None,
    exclude_paths: str | None = None,
    worker_slots: int | None = None,
    json_logs: bool | None = None,
    log_level: str | None = None,
    output_buffer_bytes: int | None = None,
    shutdown_timeout_s: float | None = None,
    traces_file: str | None = None,
) -> Settings:
    """Arguments win over the environment, which wins over the defaults. Never raises: an
    invalid value is replaced by its default and described in ``Settings.problems`` (one line
    naming the variable)."""
    env = os.environ if env is None else env
    problems: list[str] = []
    res = parse_resource_attributes(env.get(ev.OTEL_RESOURCE_ATTRIBUTES, ""))

    def number(
        name: str, given: float | None, default: float, lo: float, hi: float, whole: bool = False
    ) -> float:
        raw = given if given is not None else env.get(name)
        if raw is None or raw == "":
            return default
        try:
            if isinstance(raw, bool):
                raise TypeError
            if isinstance(raw, str) and (not raw.isascii() or "_" in raw):
                raise ValueError  # float() also reads non-ASCII digits and '1_0': a mistake, not a number
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            problems.append(f"{name}={shown(raw)} is not a number; using {default}")
            return default
        if not (math.isfinite(value) and lo <= value <= hi):
            problems.append(f"{name}={shown(raw)} is outside [{lo}, {hi}]; using {default}")
            return default
        if whole and not value.is_integer():
            # a count: 1.9 routes is a mistake to name, not 1 route
            problems.append(f"{name}={shown(raw)} is not a whole number; using {default}")
            return default
        return value

    def choice(name: str, given: str | None, default: str, allowed: tuple[str, ...]) -> str:
        raw = given if given is not None else env.get(name, "")
        if not raw:
            return default
        if str(raw).lower() not in allowed:
            problems.append(f"{name}={shown(raw)} is not one of {allowed}; using {default!r}")
            return default
        return str(raw).lower()

    def dimension(name: str, candidates: tuple[tuple[str, object], ...], default: str) -> str:
        """The first non-empty candidate (source, value) if CloudWatch accepts it as a dimension
        value; otherwise the default, with one problem line naming the source."""
        for source, raw in candidates:
            if raw is None or raw == "":
                continue
            why = rules.dimension_value_problem(raw)
            if why is None:
                return str(raw)
            problems.append(f"{source}={shown(raw)}: {why} ({name} dimension); using {default!r}")
            return default
        return default

    fallback_service = DEFAULT_SERVICE
    if default_service and rules.dimension_value_problem(default_service) is None:
        fallback_service = default_service
    resolved_service = dimension(
        "Service",
        (
            ("configure(service=...)", service),
            (ev.OTEL_SERVICE_NAME, env.get(ev.OTEL_SERVICE_NAME)),
            (f"{ev.OTEL_RESOURCE_ATTRIBUTES} service.name", res.get("service.name")),
            ("configure(default_service=...)", default_service),
        ),
        fallback_service,
    )
    resolved_version = dimension(
        "Version",
        (
            ("configure(version=...)", version),
            (ev.APP_VERSION, env.get(ev.APP_VERSION)),
            (f"{ev.OTEL_RESOURCE_ATTRIBUTES} service.version", res.get("service.version")),
        ),
        DEFAULT_VERSION,
    )
    ns = namespace if namespace is not None else env.get(ev.AWS_EMF_NAMESPACE)
    if not ns:
        ns = DEFAULT_NAMESPACE
    elif (why := rules.namespace_problem(ns)) is not None:
        problems.append(f"{ev.AWS_EMF_NAMESPACE}={shown(ns)}: {why}; using {DEFAULT_NAMESPACE!r}")
        ns = DEFAULT_NAMESPACE
    log_group = env.get(ev.AWS_EMF_LOG_GROUP_NAME, "")
    if log_group and (why := rules.log_group_problem(log_group)) is not None:
        problems.append(f"{ev.AWS_EMF_LOG_GROUP_NAME}={shown(log_group)}: {why}; using the default")
        log_group = ""
    resolution = int(
        choice(ev.TELEMETRY_STORAGE_RESOLUTION, _str(storage_resolution), "60", ("60", "1"))
    )
    emf_environment = env.get(ev.AWS_EMF_ENVIRONMENT, "")
    if emf_environment and emf_environment.lower() not in EMF_ENVIRONMENTS:
        problems.append(
            f"{ev.AWS_EMF_ENVIRONMENT}={shown(emf_environment)} is not one of Local, Lambda, "
            "Agent, EC2, ECS; using unset"
        )
        emf_environment = ""
    agent_endpoint = env.get(ev.AWS_EMF_AGENT_ENDPOINT, "")
    if agent_endpoint:
        try:
            agent_address(agent_endpoint)
        except ValueError as exc:
            agent = emf_environment.lower() in ("agent", "ec2")
            instead = f"using {DEFAULT_AGENT_ENDPOINT!r}" if agent else "EMF goes to stdout"
            problems.append(f"{exc}; {instead}")
            agent_endpoint = ""
    exclude = exclude_paths if exclude_paths is not None else env.get(ev.TELEMETRY_EXCLUDE_PATHS)
    if exclude is None:
        exclude = DEFAULT_EXCLUDE
    elif not isinstance(exclude, str):  # a bytes pattern compiles, then fails on every path
        problems.append(
            f"{ev.TELEMETRY_EXCLUDE_PATHS}={shown(exclude)} is not a str regular expression; "
            f"using {DEFAULT_EXCLUDE!r}"
        )
        exclude = DEFAULT_EXCLUDE
    else:
        try:
            re.compile(exclude)
        except (re.error, TypeError, RecursionError, OverflowError) as exc:
            problems.append(
                f"{ev.TELEMETRY_EXCLUDE_PATHS}={shown(exclude)} is not a regular expression "
                f"({exc}); using {DEFAULT_EXCLUDE!r}"
            )
            exclude = DEFAULT_EXCLUDE
    level = str(log_level or env.get(ev.TELEMETRY_LOG_LEVEL) or "INFO")
    if level.upper() not in logging.getLevelNamesMapping():
        levels = ", ".join(n for n in logging.getLevelNamesMapping() if n != "NOTSET")
        problems.append(
            f"{ev.TELEMETRY_LOG_LEVEL}={shown(level)} is not a level ({levels}); using 'INFO'"
        )
        level = "INFO"
    if json_logs is not None and not isinstance(json_logs, bool):
        # bool("false") is True: a word or number here is a mistake to name, not to read
        problems.append(
            f"{ev.TELEMETRY_JSON_LOGS}={shown(json_logs)} is not True or False; using true"
        )
        json_logs = True
    if json_logs is None:
        raw_json_logs = env.get(ev.TELEMETRY_JSON_LOGS, "")
        word = raw_json_logs.strip().lower()
        json_logs = word not in FALSE_WORDS
        if word and word not in TRUE_WORDS + FALSE_WORDS:
            problems.append(
                f"{ev.TELEMETRY_JSON_LOGS}={shown(raw_json_logs)} is not one of "
                f"{', '.join(TRUE_WORDS + FALSE_WORDS)}; using true"
            )

    def traces_path() -> str:
        raw = traces_file if traces_file is not None else env.get(ev.TELEMETRY_TRACES_FILE, "")
        try:
            path = os.fspath(raw)  # type: ignore[arg-type]
        except TypeError:
            path = None
        if not isinstance(path, str):  # str(5) would create a file named '5'
            problems.append(
                f"{ev.TELEMETRY_TRACES_FILE}={shown(raw)} is not a path (str or os.PathLike of "
                "str); spans not written to a file"
            )
            return ""
        return path

    return Settings(
        service=resolved_service,
        version=resolved_version,
        namespace=ns,
        flush_interval_s=number(ev.TELEMETRY_FLUSH_INTERVAL_S, flush_interval_s, 5.0, 0.05, 3600.0),
        storage_resolution=resolution,
        histogram=choice(ev.TELEMETRY_HISTOGRAM, histogram, "counts", ("counts", "values")),
        access_log_sample=number(ev.TELEMETRY_ACCESS_LOG_SAMPLE, access_log_sample, 1.0, 0.0, 1.0),
        max_routes=int(number(ev.TELEMETRY_MAX_ROUTES, max_routes, 50, 1, 10_000, whole=True)),
        max_values=int(
            number(ev.TELEMETRY_MAX_VALUES, max_values, 10_000, 100, 1_000_000, whole=True)
        ),
        exclude_paths=exclude,
        worker_slots=int(
            number(ev.TELEMETRY_WORKER_SLOTS, worker_slots, 1, 1, 100_000, whole=True)
        ),
        emf_environment=emf_environment,
        agent_endpoint=agent_endpoint,
        log_group=log_group,
        log_level=level.upper(),
        json_logs=bool(json_logs),
        output_buffer_bytes=int(
            number(
                ev.TELEMETRY_OUTPUT_BUFFER_BYTES,
                output_buffer_bytes,
                DEFAULT_OUTPUT_BUFFER_BYTES,
                64 * 1024,
                1024**3,
                whole=True,
            )
        ),
        shutdown_timeout_s=number(
            ev.TELEMETRY_SHUTDOWN_TIMEOUT_S,
            shutdown_timeout_s,
            DEFAULT_SHUTDOWN_TIMEOUT_S,
            0.0,
            600.0,
        ),
        traces_file=traces_path(),
        resource_attributes=res,
        problems=tuple(problems),
    )


def _str(value: object) -> str | None:
    return None if value is None else str(value)
