"""Reading settings from the environment: one set of rules and one error for every package.

Each helper takes the environment as a mapping (``os.environ`` or a test's dict) and the variable's
name (a constant from an ``environment_variables`` module), and raises :class:`ConfigError` with a
one-line message that names the variable, so a misconfigured task fails at start-up with a
readable reason instead of misbehaving later. Unset and blank mean "the default" everywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from points.environment_variables import AWS_DEFAULT_REGION, AWS_REGION

DEFAULT_REGION = "us-east-1"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """An environment variable has a value the process cannot use."""


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs, newlines included, become one space), at most
    ``limit`` characters (cut with "..."): for a CLI's error line that quotes a peer's answer,
    e.g. an HTML error page botocore makes the message of, when an endpoint is not the service."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    raise ConfigError(f"{name} must be true or false (1/0, yes/no, on/off); got {value!r:.80}")


def _number_text(text: str) -> str:
    """``text`` when it is written in ASCII without ``_``; else ValueError. Python's ``int()`` and
    ``float()`` also read other scripts' digits (fullwidth, Arabic-Indic) and ``1_000``: a setting
    written so is almost certainly a mistake (a pasted value), not a number meant."""
    if not text.isascii() or "_" in text:
        raise ValueError(text)
    return text


def env_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    low: float,
    high: float,
) -> float:
    """A finite number in ``[low, high]``; unset or blank means ``default``."""
    text = _raw(env, name)
    if text is None:
        return default
    try:
        value = float(_number_text(text))
    except ValueError:
        raise ConfigError(f"{name} must be a number; got {env[name]!r:.80}") from None
    if not math.isfinite(value) or value < low or value > high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}; got {env[name]!r:.80}")
    return value


def env_int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    """A whole number in ``[low, high]``; unset or blank means ``default``."""
    text = _raw(env, name)
    if text is None:
        return default
    try:
        value = int(_number_text(text))
    except ValueError:
        raise ConfigError(f"{name} must be a whole number; got {env[name]!r:.80}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}; got {env[name]!r:.80}")
    return value


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> Any:
    """One of ``choices`` (case-insensitive, returned in lower case); unset or blank means
    ``default``."""
    text = _raw(env, name)
    if text is None:
        return default
    if text.lower() not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {env[name]!r:.80}")
    return text.lower()


def env_url(env: Mapping[str, str], name: str) -> str | None:
    """An ``http(s)://host...`` URL, or None when unset or blank.

    Checked here because botocore raises a bare ``ValueError`` (a traceback, or a 500 in the API)
    on first use of an endpoint without a scheme or host.
    """
    text = _raw(env, name)
    if text is None:
        return None
    if not is_http_url(text):
        raise ConfigError(f"{name} must be an http(s) URL, got {text!r}")
    return text


def is_http_url(text: str) -> bool:
    """True for an absolute ``http``/``https`` URL with a host and no whitespace."""
    if any(c.isspace() for c in text):
        return False
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:  # e.g. an unbalanced "[" in the host, or a port out of range
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


#: botocore's rule for a region name (``botocore.utils.validate_region_name``: a DNS host label,
#: not all digits). botocore checks it only when a client is created, with an error that reads
#: like a connection failure; a bad region is configuration.
_REGION = re.compile(r"(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)")


def region_from(env: Mapping[str, str]) -> str:
    """The AWS region: ``AWS_REGION``, then ``AWS_DEFAULT_REGION`` (botocore's order), then
    us-east-1. :class:`ConfigError` names the variable if its value is not a region name."""
    for name in (AWS_REGION, AWS_DEFAULT_REGION):
        value = _raw(env, name)
        if value is not None:
            if not _REGION.fullmatch(value):
                raise ConfigError(
                    f"{name} must be a region name such as us-east-1 (letters, digits and "
                    f"'-'); got {env[name]!r:.80}"
                )
            return value
    return DEFAULT_REGION
