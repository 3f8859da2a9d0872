"""The environment parsing every package shares (``points.settings``) and its one-line errors."""

from __future__ import annotations

import re
from typing import Any

import pytest

from points.settings import (
    ConfigError,
    env_choice,
    env_flag,
    env_float,
    env_int,
    env_url,
    is_http_url,
    one_line,
    region_from,
)
from points.storage import backend_from, open_storage


def test_config_error_is_a_value_error() -> None:
    # callers that only know ValueError (e.g. code written against open_storage before) still work
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("TRUE", True), (" yes ", True), ("on", True),
     ("0", False), ("false", False), ("No", False), ("off", False), ("", False)],
)  # fmt: skip
def test_env_flag(value: str, expected: bool) -> None:
    assert env_flag({"F": value}, "F", not expected) is expected


def test_env_flag_unset_is_the_default_and_junk_is_an_error() -> None:
    assert env_flag({}, "F", True) is True
    with pytest.raises(ConfigError, match=r"^F must be true or false .*; got 'maybe'$"):
        env_flag({"F": "maybe"}, "F", False)


@pytest.mark.parametrize(
    ("value", "message"),
    [("ten", "N must be a whole number; got 'ten'"), ("1.5", "N must be a whole number"),
     ("0", "N must be between 1 and 10; got '0'"), ("11", "N must be between 1 and 10")],
)  # fmt: skip
def test_env_int_errors_name_the_variable(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        env_int({"N": value}, "N", 5, low=1, high=10)


def test_env_int_and_float_accept_the_range_and_default_when_blank() -> None:
    assert env_int({"N": " 10 "}, "N", 5, low=1, high=10) == 10
    assert env_int({"N": "  "}, "N", 5, low=1, high=10) == 5
    assert env_float({"X": "0.25"}, "X", 1.0, low=0, high=1) == 0.25
    assert env_float({}, "X", 1.0, low=0, high=1) == 1.0


@pytest.mark.parametrize("value", ["\uff15", "\u0663", "1_0", "\uff11\uff10"])
def test_digits_of_other_scripts_and_underscores_are_not_numbers(value: str) -> None:
    """int()/float() read '\uff15' (fullwidth 5), '\u0663' (Arabic-Indic 3) and '1_0'."""
    with pytest.raises(ConfigError, match=r"^N must be a whole number"):
        env_int({"N": value}, "N", 5, low=0, high=100)
    with pytest.raises(ConfigError, match=r"^N must be a number"):
        env_float({"N": value}, "N", 5, low=0, high=100)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "2", "-0.1", "abc"])
def test_env_float_refuses_non_finite_and_out_of_range(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^X must be"):
        env_float({"X": value}, "X", 0.5, low=0, high=1)


def test_env_choice_is_case_insensitive_and_names_the_choices() -> None:
    assert env_choice({"M": " Reject "}, "M", "delay", ("delay", "reject")) == "reject"
    assert env_choice({"M": ""}, "M", "delay", ("delay", "reject")) == "delay"
    with pytest.raises(ConfigError, match=r"^M must be one of delay, reject; got 'later'$"):
        env_choice({"M": "later"}, "M", "delay", ("delay", "reject"))


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:5000", "https://sqs.us-east-1.amazonaws.com/123/q", "http://x",
     "http://[::1]:4566/", "HTTP://LOCALHOST:5000"],
)  # fmt: skip
def test_http_urls_that_botocore_can_use(url: str) -> None:
    assert is_http_url(url)
    assert env_url({"U": url}, "U") == url


@pytest.mark.parametrize(
    "url",
    ["localhost:5000", "notaurl", "http://", "https://", "http://:80", "ftp://host",
     "http://host:99999", "http://[::1", "http://ho st:5000", "//host:5000", "http:/host"],
)  # fmt: skip
def test_anything_else_is_a_one_line_error(url: str) -> None:
    assert not is_http_url(url)
    with pytest.raises(ConfigError) as info:
        env_url({"U": url}, "U")
    assert str(info.value) == f"U must be an http(s) URL, got {url!r}"


def test_unset_or_blank_url_is_none() -> None:
    assert env_url({}, "U") is None
    assert env_url({"U": "  "}, "U") is None


@pytest.mark.parametrize(
    ("env", "region"),
    [
        ({}, "us-east-1"),
        ({"AWS_DEFAULT_REGION": "eu-west-1"}, "eu-west-1"),
        ({"AWS_REGION": "ap-northeast-1", "AWS_DEFAULT_REGION": "eu-west-1"}, "ap-northeast-1"),
        ({"AWS_REGION": " ", "AWS_DEFAULT_REGION": "eu-west-1"}, "eu-west-1"),  # blank = unset
    ],
)
def test_region_lookup_follows_botocores_order(env: dict[str, str], region: str) -> None:
    assert region_from(env) == region


@pytest.mark.parametrize(
    "value",
    ["bad region!", "us_east_1", "-us-east-1", "us-east-1-", "123", "r" * 64, "us-east-1/x",
     "eu-west-\u0661"],
)  # fmt: skip
@pytest.mark.parametrize("name", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_a_region_botocore_refuses_is_a_config_error_naming_the_variable(
    name: str, value: str
) -> None:
    from botocore.exceptions import InvalidRegionError
    from botocore.utils import validate_region_name

    with pytest.raises(InvalidRegionError):  # the rule is botocore's
        validate_region_name(value)
    with pytest.raises(ConfigError, match=rf"^{name} must be a region name"):
        region_from({name: value})


@pytest.mark.parametrize("value", ["us-east-1", "ap-northeast-1", "us-gov-west-1", "local"])
def test_a_region_botocore_takes_is_taken(value: str) -> None:
    from botocore.utils import validate_region_name

    validate_region_name(value)
    assert region_from({"AWS_REGION": value}) == value


def test_backend_names() -> None:
    assert backend_from({}) == "sqlite"
    assert backend_from({"POINTS_STORE": " DynamoDB "}) == "dynamodb"
    with pytest.raises(ConfigError, match=r"^POINTS_STORE must be one of dynamodb, sqlite"):
        backend_from({"POINTS_STORE": "postgres"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "POINTS_TABLE is required when POINTS_STORE=dynamodb"),
        ({"POINTS_TABLE": "ab"}, "POINTS_TABLE must be 3-255 characters"),
        ({"POINTS_TABLE": "a table"}, "POINTS_TABLE must be 3-255 characters"),
        ({"POINTS_TABLE": "t" * 256}, "POINTS_TABLE must be 3-255 characters"),
        ({"POINTS_TABLE": "ledger", "AWS_ENDPOINT_URL": "localhost:5000"},
         "AWS_ENDPOINT_URL must be an http(s) URL"),
    ],
)  # fmt: skip
def test_dynamodb_settings_are_checked_when_opened(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        open_storage({**env, "POINTS_STORE": "dynamodb"})


@pytest.mark.parametrize(
    ("read", "value"),
    [
        (lambda env: env_int(env, "N", 1, low=1, high=10), "9" * 5_000),
        (lambda env: env_int(env, "N", 1, low=1, high=10), "x" * 5_000),
        (lambda env: env_float(env, "N", 1.0, low=0.0, high=1.0), "9" * 5_000),
        (lambda env: env_float(env, "N", 1.0, low=0.0, high=1.0), "x" * 5_000),
        (lambda env: env_choice(env, "N", "a", ("a", "b")), "x" * 5_000),
        (lambda env: env_flag(env, "N", True), "x" * 5_000),
    ],
)
def test_a_huge_bad_value_is_quoted_briefly(read: Any, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        read({"N": value})
    message = str(info.value)
    assert message.startswith("N must be") and len(message) < 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("<html>\n  <body>\r\n\tError 501\n</body>", "<html> <body> Error 501 </body>"),
        ("x" * 300, "x" * 300),
        ("x" * 301, "x" * 297 + "..."),
    ],
)
def test_one_line(text: str, expected: str) -> None:
    assert one_line(text) == expected
