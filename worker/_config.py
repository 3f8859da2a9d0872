"""Worker settings, read from documented environment variables (see docs/worker.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from points.environment_variables import AWS_ENDPOINT_URL

# One set of rules (and one error type) for every setting of the ledger, the API and the worker.
from points.settings import DEFAULT_REGION, ConfigError, env_float, env_int, env_url, region_from
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

__all__ = ["WorkerConfig", "queue_url_from", "sqs_endpoint_from"]


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
        """Read the ``WORKER_*`` / AWS variables; :class:`ConfigError` names the bad one."""
        env = os.environ if env is None else env
        queue_url = queue_url_from(env)
        if queue_url is None:
            raise ConfigError(
                f"{QUEUE_URL} is required (the SQS queue URL; `python -m worker setup-queues` "
                "creates one locally and prints it)"
            )
        cfg = cls(
            queue_url=queue_url,
            region=region_from(env),
            endpoint_url=sqs_endpoint_from(env),
            concurrency=env_int(env, WORKER_CONCURRENCY, 10, low=1, high=256),
            batch_size=env_int(env, WORKER_BATCH_SIZE, 10, low=1, high=10),
            wait_time_s=env_int(env, WORKER_WAIT_TIME_S, 10, low=0, high=20),
            visibility_timeout_s=env_int(env, WORKER_VISIBILITY_TIMEOUT_S, 30, low=1, high=43_200),
            queue_poll_s=env_float(env, WORKER_QUEUE_POLL_S, 10.0, low=0.0, high=3600.0),
            stop_timeout_s=env_float(env, WORKER_STOP_TIMEOUT_S, 20.0, low=1.0, high=120.0),
            job_timeout_s=env_float(env, WORKER_JOB_TIMEOUT_S, 300.0, low=1.0, high=43_200.0),
            simulated_work_ms=env_float(
                env, WORKER_SIMULATED_WORK_MS, 0.0, low=0.0, high=600_000.0
            ),
            simulated_failure_rate=env_float(
                env, WORKER_SIMULATED_FAILURE_RATE, 0.0, low=0.0, high=1.0
            ),
        )
        if cfg.stop_timeout_s <= cfg.wait_time_s:
            # The last long poll must be able to return inside the stop budget, or messages it
            # picks up stay invisible until their visibility timeout instead of being released.
            raise ConfigError(
                f"{WORKER_STOP_TIMEOUT_S} ({cfg.stop_timeout_s:g}) must be greater than "
                f"{WORKER_WAIT_TIME_S} ({cfg.wait_time_s})"
            )
        return cfg


def queue_url_from(env: Mapping[str, str]) -> str | None:
    """``QUEUE_URL``, an http(s) URL, or None when unset or blank."""
    return env_url(env, QUEUE_URL)


def sqs_endpoint_from(env: Mapping[str, str]) -> str | None:
    """``AWS_ENDPOINT_URL_SQS``, then ``AWS_ENDPOINT_URL`` (botocore's names), else AWS itself.

    The service-specific name lets SQS and the store (``AWS_ENDPOINT_URL``) live on different
    local endpoints.
    """
    return env_url(env, AWS_ENDPOINT_URL_SQS) or env_url(env, AWS_ENDPOINT_URL)
