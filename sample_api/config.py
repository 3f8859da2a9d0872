"""Settings of the points service, read once from the environment (``Config.from_env()``).

Every bad value raises :class:`ConfigError` with a one-line message that names the variable, so a
misconfigured task fails at start-up with a readable reason instead of misbehaving later.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sample_api.domain import DEFAULT_RATE, parse_rate
from sample_api.storage import BACKENDS, DEFAULT_DB_PATH

MAX_BODY_BYTES = 16 * 1024

RateLimitMode = Literal["delay", "reject"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use."""


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
    store: str = "sqlite"
    db_path: str = DEFAULT_DB_PATH
    points_rate: Decimal = DEFAULT_RATE
    rate_limit: RateLimitSettings = field(default_factory=RateLimitSettings)
    max_body_bytes: int = MAX_BODY_BYTES
    # The rest of the environment, for backends that read their own variables (POINTS_TABLE, AWS_*).
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read and check every setting; raise :class:`ConfigError` naming the first bad variable."""
        env = dict(os.environ if env is None else env)
        store = (env.get("POINTS_STORE") or "sqlite").strip().lower()
        if store not in BACKENDS:
            raise ConfigError(
                f"POINTS_STORE must be one of {', '.join(sorted(BACKENDS))}; "
                f"got {env.get('POINTS_STORE')!r}"
            )
        try:
            points_rate = parse_rate(env.get("POINTS_RATE"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            version=(env.get("APP_VERSION") or "dev").strip() or "dev",
            store=store,
            db_path=env.get("POINTS_DB_PATH") or DEFAULT_DB_PATH,
            points_rate=points_rate,
            rate_limit=RateLimitSettings(
                enabled=env_flag(env, "RATE_LIMIT_ENABLED", False),
                rps=env_float(env, "RATE_LIMIT_RPS", 50.0, low=0.001, high=1_000_000),
                burst=env_int(env, "RATE_LIMIT_BURST", 10, low=1, high=1_000_000),
                mode=env_choice(env, "RATE_LIMIT_MODE", "delay", ("delay", "reject")),
                max_wait_s=env_float(env, "RATE_LIMIT_MAX_WAIT_S", 5.0, low=0, high=3600),
            ),
            env=env,
        )

    def storage_env(self) -> dict[str, str]:
        """The environment ``open_storage()`` gets: ours, with the fields of this config on top."""
        return {**self.env, "POINTS_STORE": self.store, "POINTS_DB_PATH": self.db_path}


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return None if value is None or value.strip() == "" else value.strip()


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A boolean variable (true/false, 1/0, yes/no, on/off); unset means ``default``."""
    value = env.get(name)
    if value is None:
        return default
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false (1/0, yes/no, on/off); got {value!r}")


def env_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    low: float,
    high: float,
) -> float:
    """A number in ``[low, high]``; unset or blank means ``default``."""
    text = _raw(env, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number; got {env[name]!r}") from None
    if not math.isfinite(value) or value < low or value > high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}; got {env[name]!r}")
    return value


def env_int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    """A whole number in ``[low, high]``; unset or blank means ``default``."""
    text = _raw(env, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number; got {env[name]!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}; got {env[name]!r}")
    return value


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> Any:
    """One of ``choices`` (case-insensitive); unset or blank means ``default``."""
    text = _raw(env, name)
    if text is None:
        return default
    if text.lower() not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {env[name]!r}")
    return text.lower()
