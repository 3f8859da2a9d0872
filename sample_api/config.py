"""Settings of the points service, read once from the environment (``Config.from_env()``).

Every bad value raises :class:`~points.settings.ConfigError` with a one-line message that names
the variable, so a misconfigured task fails at start-up with a readable reason instead of
misbehaving later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from points.domain import DEFAULT_RATE, rate_from
from points.environment_variables import POINTS_DB_PATH, POINTS_STORE
from points.formats import DEFAULT_FORMATS, Formats, formats_from
from points.settings import env_choice, env_flag, env_float, env_int
from points.storage import DEFAULT_BACKEND, DEFAULT_DB_PATH, backend_from, db_path_from
from sample_api.environment_variables import (
    APP_VERSION,
    RATE_LIMIT_BURST,
    RATE_LIMIT_ENABLED,
    RATE_LIMIT_MAX_WAIT_S,
    RATE_LIMIT_MODE,
    RATE_LIMIT_RPS,
)
from sample_api.tokens import AuthSettings, auth_settings_from

__all__ = ["MAX_BODY_BYTES", "Config", "RateLimitMode", "RateLimitSettings"]

MAX_BODY_BYTES = 16 * 1024

RateLimitMode = Literal["delay", "reject"]

#: ``RATE_LIMIT_RPS``'s accepted range (tokens per second per worker).
RATE_LIMIT_RPS_RANGE = (0.001, 1_000_000.0)


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """The request rate limiter (see ``sample_api.ratelimit``). Off by default."""

    enabled: bool = False
    rps: float = 50.0
    burst: int = 10
    mode: RateLimitMode = "delay"
    max_wait_s: float = 5.0

    def to_dict(self) -> dict[str, Any]:
        # "process": each gunicorn worker has its own bucket (effective rate = rps x workers).
        return {
            "enabled": self.enabled,
            "rps": self.rps,
            "burst": self.burst,
            "mode": self.mode,
            "max_wait_s": self.max_wait_s,
            "scope": "process",
        }


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the app needs; build it with :meth:`from_env` or directly in tests."""

    version: str = "dev"
    store: str = DEFAULT_BACKEND
    db_path: str = DEFAULT_DB_PATH
    points_rate: Decimal = DEFAULT_RATE
    #: The ledger formats this version reads and writes (default: reads 1, writes 1).
    formats: Formats = DEFAULT_FORMATS
    rate_limit: RateLimitSettings = field(default_factory=RateLimitSettings)
    max_body_bytes: int = MAX_BODY_BYTES
    # Bearer tokens (sample_api.tokens). The default, jwt with no issuer, refuses to start.
    auth: AuthSettings = field(default_factory=AuthSettings)
    # The rest of the environment, for backends that read their own variables (POINTS_TABLE, AWS_*).
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read and check every setting; raise :class:`ConfigError` naming the first bad variable.

        Environment variables (names in :mod:`sample_api.environment_variables` and
        :mod:`points.environment_variables`): ``APP_VERSION`` (default ``dev``);
        ``POINTS_STORE``, ``POINTS_DB_PATH``, ``POINTS_RATE``, ``POINTS_FORMATS_READ`` (default
        ``1``), ``POINTS_FORMAT_WRITE`` (default ``1``) (the ledger's); ``RATE_LIMIT_ENABLED``
        (default false), ``RATE_LIMIT_RPS`` (0.001-1e6, default 50), ``RATE_LIMIT_BURST``
        (1-1e6, default 10), ``RATE_LIMIT_MODE`` (``delay``/``reject``, default ``delay``),
        ``RATE_LIMIT_MAX_WAIT_S`` (0-3600 s, default 5); the ``AUTH_*`` variables (see
        :func:`sample_api.tokens.auth_settings_from`: ``AUTH_MODE`` ``jwt``/``off``, default
        ``jwt``, which requires ``AUTH_ISSUER``, ``AUTH_AUDIENCE`` and one of ``AUTH_JWKS_FILE``
        / ``AUTH_JWKS_URL``). The backend's own variables
        (``POINTS_TABLE``, ``AWS_*``) stay in :attr:`env` for ``open_storage()``.
        """
        env = dict(os.environ if env is None else env)
        return cls(
            version=(env.get(APP_VERSION) or "dev").strip() or "dev",
            store=backend_from(env),
            db_path=db_path_from(env),
            points_rate=rate_from(env),
            formats=formats_from(env),
            rate_limit=RateLimitSettings(
                enabled=env_flag(env, RATE_LIMIT_ENABLED, False),
                rps=env_float(
                    env,
                    RATE_LIMIT_RPS,
                    50.0,
                    low=RATE_LIMIT_RPS_RANGE[0],
                    high=RATE_LIMIT_RPS_RANGE[1],
                ),
                burst=env_int(env, RATE_LIMIT_BURST, 10, low=1, high=1_000_000),
                mode=env_choice(env, RATE_LIMIT_MODE, "delay", ("delay", "reject")),
                max_wait_s=env_float(env, RATE_LIMIT_MAX_WAIT_S, 5.0, low=0, high=3600),
            ),
            auth=auth_settings_from(env),
            env=env,
        )

    def storage_env(self) -> dict[str, str]:
        """The environment ``open_storage()`` gets: ours, with the fields of this config on top."""
        return {
            **self.env,
            POINTS_STORE: self.store,
            POINTS_DB_PATH: self.db_path,
            **self.formats.to_env(),
        }
