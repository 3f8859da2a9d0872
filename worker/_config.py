"""Worker settings, read from documented environment variables (see docs/worker.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# One set of rules (and one error type) for every setting of the points domain, API and worker.
from sample_api.config import ConfigError, env_float, env_int

__all__ = ["ConfigError", "WorkerConfig", "region_from", "sqs_endpoint_from"]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything the worker loop needs; build it with :meth:`from_env`."""

    queue_url: str
    region: str = "us-east-1"
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
        """Read the ``WORKER_*`` / AWS variables; :class:`ConfigError` names the bad one."""
        env = os.environ if env is None else env
        queue_url = env.get("QUEUE_URL", "").strip()
        if not queue_url:
            raise ConfigError(
                "QUEUE_URL is required (the SQS queue URL; `python -m worker setup-queues` "
                "creates one locally and prints it)"
            )
        if not queue_url.startswith(("http://", "https://")):
            raise ConfigError(f"QUEUE_URL must be an http(s) URL, got {queue_url!r}")
        cfg = cls(
            queue_url=queue_url,
            region=region_from(env),
            endpoint_url=sqs_endpoint_from(env),
            concurrency=env_int(env, "WORKER_CONCURRENCY", 10, low=1, high=256),
            batch_size=env_int(env, "WORKER_BATCH_SIZE", 10, low=1, high=10),
            wait_time_s=env_int(env, "WORKER_WAIT_TIME_S", 10, low=0, high=20),
            visibility_timeout_s=env_int(
                env, "WORKER_VISIBILITY_TIMEOUT_S", 30, low=1, high=43_200
            ),
            queue_poll_s=env_float(env, "WORKER_QUEUE_POLL_S", 10.0, low=0.0, high=3600.0),
            stop_timeout_s=env_float(env, "WORKER_STOP_TIMEOUT_S", 20.0, low=1.0, high=120.0),
            job_timeout_s=env_float(env, "WORKER_JOB_TIMEOUT_S", 300.0, low=1.0, high=43_200.0),
            simulated_work_ms=env_float(
                env, "WORKER_SIMULATED_WORK_MS", 0.0, low=0.0, high=600_000.0
            ),
            simulated_failure_rate=env_float(
                env, "WORKER_SIMULATED_FAILURE_RATE", 0.0, low=0.0, high=1.0
            ),
        )
        if cfg.stop_timeout_s <= cfg.wait_time_s:
            # The last long poll must be able to return inside the stop budget, or messages it
            # picks up stay invisible until their visibility timeout instead of being released.
            raise ConfigError(
                f"WORKER_STOP_TIMEOUT_S ({cfg.stop_timeout_s:g}) must be greater than "
                f"WORKER_WAIT_TIME_S ({cfg.wait_time_s})"
            )
        return cfg


def sqs_endpoint_from(env: Mapping[str, str]) -> str | None:
    """``AWS_ENDPOINT_URL_SQS``, then ``AWS_ENDPOINT_URL`` (botocore's names), else AWS itself.

    The service-specific name lets SQS and the store (``AWS_ENDPOINT_URL``) live on different
    local endpoints.
    """
    for name in ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"):
        url = env.get(name, "").strip()
        if url:
            # botocore would raise a bare ValueError (a traceback) on anything else
            if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
                raise ConfigError(f"{name} must be an http(s) URL, got {url!r}")
            return url
    return None


def region_from(env: Mapping[str, str]) -> str:
    """``AWS_REGION``, then ``AWS_DEFAULT_REGION``, then us-east-1."""
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
