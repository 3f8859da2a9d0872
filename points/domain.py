"""The points domain, shared by the API and the worker: validation, the points rule, the service.

Both entry points go through :class:`PointsService`, so a purchase granted by the API and by the
worker is still credited once (idempotency is keyed by ``order_id`` in the store).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from points.environment_variables import POINTS_RATE
from points.settings import ConfigError, _number_text
from points.storage.base import Outcome, Storage

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
MIN_AMOUNT_JPY = 1
MAX_AMOUNT_JPY = 10_000_000
MAX_POINTS = MAX_AMOUNT_JPY  # a redemption can never ask for more than the largest grant could give
DEFAULT_RATE = Decimal("0.01")  # 1 point per 100 JPY
DEFAULT_HISTORY_LIMIT = 20
MAX_HISTORY_LIMIT = 100
_LIMIT_PATTERN = re.compile(r"[0-9]{1,4}")


class ValidationError(ValueError):
    """Input that breaks the contract. ``field`` names the offending field, if there is one."""

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


@dataclass(frozen=True, slots=True)
class GrantRequest:
    user_id: str
    order_id: str
    amount_jpy: int


@dataclass(frozen=True, slots=True)
class RedemptionRequest:
    user_id: str
    order_id: str
    points: int


def parse_rate(text: str | None) -> Decimal:
    """Points per JPY, from configuration text (``POINTS_RATE``): a decimal in [0, 1], default
    0.01. Raises :class:`~points.settings.ConfigError` (a ``ValueError``) if unusable."""
    if text is None or text.strip() == "":
        return DEFAULT_RATE
    try:
        # ASCII without "_", as every number setting: Decimal() also reads U+FF11 and "1_0"
        rate = Decimal(_number_text(text.strip()))
    except (InvalidOperation, ValueError):
        raise ConfigError(f"{POINTS_RATE} must be a decimal number, got {text!r:.80}") from None
    if not rate.is_finite() or rate < 0 or rate > 1:
        raise ConfigError(f"{POINTS_RATE} must be between 0 and 1, got {text!r:.80}")
    return rate


def rate_from(env: Mapping[str, str]) -> Decimal:
    """``POINTS_RATE`` of ``env`` (see :func:`parse_rate`)."""
    return parse_rate(env.get(POINTS_RATE))


def points_for(amount_jpy: int, rate: Decimal = DEFAULT_RATE) -> int:
    """floor(amount_jpy x rate), computed exactly (no binary floating point)."""
    return int((Decimal(amount_jpy) * rate).to_integral_value(rounding=ROUND_FLOOR))


def validate_id(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field)
    if not ID_PATTERN.fullmatch(value):
        raise ValidationError(
            f"{field} must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'", field
        )
    return value


def validate_int(value: Any, field: str, low: int, high: int) -> int:
    # bool is an int subclass in Python; JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer", field)
    if not low <= value <= high:
        raise ValidationError(f"{field} must be between {low:,} and {high:,}", field)
    return value


def validate_limit(text: str | None) -> int:
    """A history page size from query text: 1 to ``MAX_HISTORY_LIMIT`` (default 20 when absent)."""
    if text is None:
        return DEFAULT_HISTORY_LIMIT
    if not _LIMIT_PATTERN.fullmatch(text) or not 1 <= int(text) <= MAX_HISTORY_LIMIT:
        raise ValidationError(
            f"limit must be an integer between 1 and {MAX_HISTORY_LIMIT}", "limit"
        )
    return int(text)


def _check_fields(payload: Any, required: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise ValidationError("the body must be a JSON object")
    unknown = sorted(set(payload) - set(required))
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}", unknown[0])
    for name in required:
        if name not in payload:
            raise ValidationError(f"{name} is required", name)
    return payload


def validate_grant(payload: Any) -> GrantRequest:
    """Check a grant body (API) or an order event (worker); raise :class:`ValidationError`."""
    body = _check_fields(payload, ("user_id", "order_id", "amount_jpy"))
    return GrantRequest(
        user_id=validate_id(body["user_id"], "user_id"),
        order_id=validate_id(body["order_id"], "order_id"),
        amount_jpy=validate_int(body["amount_jpy"], "amount_jpy", MIN_AMOUNT_JPY, MAX_AMOUNT_JPY),
    )


def validate_redemption(payload: Any) -> RedemptionRequest:
    body = _check_fields(payload, ("user_id", "order_id", "points"))
    return RedemptionRequest(
        user_id=validate_id(body["user_id"], "user_id"),
        order_id=validate_id(body["order_id"], "order_id"),
        points=validate_int(body["points"], "points", 1, MAX_POINTS),
    )


class PointsService:
    """Grants and redemptions over any :class:`~points.storage.base.Storage`."""

    def __init__(self, storage: Storage, rate: Decimal = DEFAULT_RATE) -> None:
        self.storage = storage
        self.rate = rate

    def grant(self, request: GrantRequest) -> Outcome:
        return self.storage.grant(
            user_id=request.user_id,
            order_id=request.order_id,
            amount_jpy=request.amount_jpy,
            points=points_for(request.amount_jpy, self.rate),
        )

    def redeem(self, request: RedemptionRequest) -> Outcome:
        return self.storage.redeem(
            user_id=request.user_id, order_id=request.order_id, points=request.points
        )
