"""Unit tests of the shared points domain (validation and the points rule)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from points.domain import (
    ValidationError,
    parse_rate,
    points_for,
    validate_grant,
    validate_limit,
    validate_redemption,
)


@pytest.mark.parametrize(
    ("amount", "rate", "points"),
    [
        (1, "0.01", 0),
        (99, "0.01", 0),
        (100, "0.01", 1),
        (12_345, "0.01", 123),
        (10_000_000, "0.01", 100_000),
        (333, "0.03", 9),  # 9.99 -> 9: floor, exactly (0.03 is not exact in binary)
        (10, "0.1", 1),
        (5, "0", 0),
        (7, "1", 7),
    ],
)
def test_points_are_floored_exactly(amount: int, rate: str, points: int) -> None:
    assert points_for(amount, Decimal(rate)) == points


def test_parse_rate() -> None:
    assert parse_rate(None) == Decimal("0.01")
    assert parse_rate(" ") == Decimal("0.01")
    assert parse_rate("0.02") == Decimal("0.02")
    for bad in ("x", "-0.1", "1.5", "NaN"):
        with pytest.raises(ValueError, match="POINTS_RATE"):
            parse_rate(bad)
    # other scripts' digits and "_" are a pasted value, not a number meant (as for every
    # number setting); Decimal() alone reads fullwidth one (U+FF11) as a rate of 1
    for bad in ("\uff11", "0.\u0661", "1_0", "0_1"):
        with pytest.raises(ValueError, match="POINTS_RATE must be a decimal number"):
            parse_rate(bad)
    with pytest.raises(ValueError, match="POINTS_RATE") as info:
        parse_rate("9" * 100_000)
    assert len(str(info.value)) < 200


def test_validate_grant_and_redemption() -> None:
    g = validate_grant({"user_id": "u", "order_id": "o", "amount_jpy": 5})
    assert (g.user_id, g.order_id, g.amount_jpy) == ("u", "o", 5)
    r = validate_redemption({"user_id": "u", "order_id": "o", "points": 5})
    assert r.points == 5
    with pytest.raises(ValidationError) as info:
        validate_grant({"user_id": "u", "order_id": "o", "amount_jpy": 5, "zzz": 1, "aaa": 2})
    assert info.value.field == "aaa"
    with pytest.raises(ValidationError) as info:
        validate_grant(["not", "an", "object"])
    assert info.value.field is None


@pytest.mark.parametrize(("text", "value"), [(None, 20), ("1", 1), ("100", 100), ("007", 7)])
def test_validate_limit(text: str | None, value: int) -> None:
    assert validate_limit(text) == value


@pytest.mark.parametrize("text", ["", "0", "101", "-1", "1.0", " 5", "²", "99999999999"])
def test_validate_limit_rejects(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_limit(text)
    assert info.value.field == "limit"
