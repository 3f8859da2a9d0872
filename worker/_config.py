"""Worker settings, read from documented environment variables (see docs/worker.md)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from points.environment_variables import AWS_ENDPOINT_URL

# One set of rules (and one error type) for every setting of the ledger, the API and the worker.
from points.settings import (
    DEFAULT_REGION,
    ConfigError,
    env_float,
    env_int,
    env_url,
    is_http_url,
    region_from,
)
from worker.environment_variables import (
    AWS_ENDPOINT_URL_SQS,
    QUEUE_URL,
    WORKER_BATCH_SIZE,
    WORKER_CONCURRENCY,
    WORKER_JOB_TIMEOUT_S,
    WORKER_QUEUE_POLL_S,
    WORKER_SIMULATED_FAILURE_RATE,
    WORKER_SIMULATED_WORK_MS,
    WORKER_STOP_TIMEOUT_S,
    WORKER_VISIBILITY_TIMEOUT_S,
    WORKER_WAIT_TIME_S,
)

__all__ = [
    "SETTINGS",
    "Setting",
    "WorkerConfig",
    "check_queue_region",
    "check_url",
    "queue_url_from",
    "sqs_endpoint_from",
]


@dataclass(frozen=True, slots=True)
class Setting:
    """One tunable of the worker: its variable, its ``run`` option, bounds and default."""

    env: str
    option: str
    field: str
    kind: type[int] | type[float]
    default: float
    low: float
    high: float
    help: str

    def read(self, env: Mapping[str, str]) -> float:
        """The value from ``env`` (unset or blank: the default); :class:`ConfigError` names
        the variable."""
        return self._read(env, self.env)

    def _read(self, env: Mapping[str, str], name: str) -> float:
        if self.kind is int:
            return env_int(env, name, int(self.default), low=int(self.low), high=int(self.high))
        return env_float(env, name, self.default, low=self.low, high=self.high)

    def check_option(self, text: str) -> str:
        """Validate an option's text by the variable's rules; ``ValueError`` says why, without
        a name (the caller names the option). Returns the text, to be read like the variable."""
        if not text.strip():
            raise ValueError("must not be empty")
        try:
            self._read({"value": text}, "value")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("value ")) from None
        return text

    def describe(self) -> str:
        """``default 10; 1 to 256``: for --help and docs."""

        def fmt(v: float) -> str:
            return f"{v:,.0f}" if float(v).is_integer() else f"{v:g}"

        return f"default {fmt(self.default)}; {fmt(self.low)} to {fmt(self.high)}"


#: Every ``WORKER_*`` setting, once: read by :meth:`WorkerConfig.from_env`, offered as options
#: of ``python -m worker run`` and listed by its ``--help``.
SETTINGS: tuple[Setting, ...] = (
    Setting(WORKER_CONCURRENCY, "--concurrency", "concurrency", int, 10, 1, 256,
            "job slots: jobs running at once (utilization's 100%%)"),
    Setting(WORKER_BATCH_SIZE, "--batch-size", "batch_size", int, 10, 1, 10,
            "messages per ReceiveMessage"),
    Setting(WORKER_WAIT_TIME_S, "--wait-time", "wait_time_s", int, 10, 0, 20,
            "long-poll wait, seconds"),
    Setting(WORKER_VISIBILITY_TIMEOUT_S, "--visibility-timeout", "visibility_timeout_s", int,
            30, 1, 43_200, "visibility timeout on receive and per extension, seconds"),
    Setting(WORKER_QUEUE_POLL_S, "--queue-poll", "queue_poll_s", float, 10.0, 0.0, 3600.0,
            "seconds between queue/DLQ depth reads; 0 disables"),
    Setting(WORKER_STOP_TIMEOUT_S, "--stop-timeout", "stop_timeout_s", float, 20.0, 1.0,
            120.0, "stop budget after SIGTERM/SIGINT, seconds (more than the long-poll wait)"),
    Setting(WORKER_JOB_TIMEOUT_S, "--job-timeout", "job_timeout_s", float, 300.0, 1.0,
            43_200.0, "seconds after which a job's visibility is no longer extended"),
    Setting(WORKER_SIMULATED_WORK_MS, "--simulated-work-ms", "simulated_work_ms", float, 0.0,
            0.0, 600_000.0, "fault injection: sleep this long in every job, ms"),
    Setting(WORKER_SIMULATED_FAILURE_RATE, "--simulated-failure-rate",
            "simulated_failure_rate", float, 0.0, 0.0, 1.0,
            "fault injection: share of jobs that fail"),
)  # fmt: skip
_BY_ENV = {s.env: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything the worker loop needs; build it with :meth:`from_env`."""

    queue_url: str
    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    concurrency: int = 10
    batch_size: int = 10
    wait_time_s: int = 10
    visibility_timeout_s: int = 30
    queue_poll_s: float = 10.0
    stop_timeout_s: float = 20.0
    job_timeout_s: float = 300.0
    simulated_work_ms: float = 0.0
    simulated_failure_rate: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        """Read ``QUEUE_URL``, the :data:`SETTINGS` and the AWS variables.

        Raises :class:`ConfigError` naming the first bad variable (one line).
        """
        env = os.environ if env is None else env
        queue_url = queue_url_from(env)
        if queue_url is None:
            raise ConfigError(
                f"{QUEUE_URL} is required (the SQS queue URL; `python -m worker setup-queues` "
                "creates one locally and prints it)"
            )
        values = {s.field: s.read(env) for s in SETTINGS}
        region = region_from(env)
        check_queue_region(queue_url, region)
        cfg = cls(
            queue_url=queue_url,
            region=region,
            endpoint_url=sqs_endpoint_from(env),
            **values,  # type: ignore[arg-type]
        )
        if cfg.stop_timeout_s <= cfg.wait_time_s:
            # The last long poll must be able to return inside the stop budget, or messages it
            # picks up stay invisible until their visibility timeout instead of being released.
            stop, wait = _BY_ENV[WORKER_STOP_TIMEOUT_S], _BY_ENV[WORKER_WAIT_TIME_S]
            raise ConfigError(
                f"{stop.env}/{stop.option} ({cfg.stop_timeout_s:g}) must be greater than "
                f"{wait.env}/{wait.option} ({cfg.wait_time_s})"
            )
        return cfg


#: Hosts of AWS queue URLs and the region each names: ``sqs.<region>.amazonaws.com`` (and
#: ``sqs-fips.``, ``.amazonaws.com.cn``), the legacy ``<region>.queue.amazonaws.com`` and
#: ``queue.amazonaws.com`` (us-east-1). SQS API reference, "Amazon SQS queue and message
#: identifiers" / AWS General Reference, "Amazon SQS endpoints".
_AWS_QUEUE_HOST = re.compile(
    r"sqs(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"|(?:(?P<legacy>[a-z0-9-]+)\.)?queue\.amazonaws\.com(?:\.cn)?"
)


def check_queue_region(queue_url: str, region: str) -> None:
    """Raise :class:`ConfigError` if ``queue_url`` is an AWS queue URL of another region than
    ``region`` (the client's).

    The client sends every call to its own region's endpoint, whatever host the queue URL names,
    and SQS there answers that the queue does not exist: a queue that exists in another region
    would be reported as missing. URLs of other hosts (moto, LocalStack) are not checked."""
    host = (urlsplit(queue_url).hostname or "").lower()
    match = _AWS_QUEUE_HOST.fullmatch(host)
    if match is None:
        return
    queue_region = match["region"] or match["legacy"] or DEFAULT_REGION
    if queue_region != region:
        raise ConfigError(
            f"queue URL {queue_url[:200]!r} names region {queue_region}, but the SQS client's "
            f"region is {region} (AWS_REGION / AWS_DEFAULT_REGION; its endpoint would answer "
            f"that the queue does not exist): set AWS_REGION={queue_region}"
        )


def check_url(text: str) -> str:
    """``text`` if it is an http(s) URL with a host; ``ValueError`` ("must be ...") if not."""
    if not is_http_url(text.strip()):
        raise ValueError(f"must be an http(s) URL, got {text!r:.200}")
    return text.strip()


def queue_url_from(env: Mapping[str, str]) -> str | None:
    """``QUEUE_URL``, an http(s) URL, or None when unset or blank."""
    return env_url(env, QUEUE_URL)


def sqs_endpoint_from(env: Mapping[str, str]) -> str | None:
    """``AWS_ENDPOINT_URL_SQS``, then ``AWS_ENDPOINT_URL`` (botocore's names), else AWS itself.

    The service-specific name lets SQS and the store (``AWS_ENDPOINT_URL``) live on different
    local endpoints.
    """
    return env_url(env, AWS_ENDPOINT_URL_SQS) or env_url(env, AWS_ENDPOINT_URL)
