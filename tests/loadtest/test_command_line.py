"""Locust's own options as the locustfile checks them (``loadtest.command_line``), no Locust."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from loadtest import command_line


@pytest.mark.parametrize(
    ("host", "base"),
    [("http://127.0.0.1:8080", "http://127.0.0.1:8080"), ("https://alb.example/", "https://alb.example"),
     ("https://alb.example/prefix/", "https://alb.example/prefix"), ("http://[::1]:80", "http://[::1]:80"),
     (" HTTP://h ", "HTTP://h")],
)  # fmt: skip
def test_a_good_host_is_kept_without_its_trailing_slash(host: str, base: str) -> None:
    assert command_line.check_host(host, required=True) == base


@pytest.mark.parametrize(
    ("host", "message"),
    [(None, "--host is required"), (" ", "--host is required"),
     ("127.0.0.1:8080", "http:// or https://"), ("ftp://h", "http:// or https://"),
     ("http://", "http:// or https://"), ("http://[::1", "http:// or https://"),
     ("http://h:99999", "port from 1 to 65535"), ("http://h:0", "port from 1 to 65535"),
     ("http://h:x", "port from 1 to 65535"), ("http://h/?a=1", "without query"),
     ("http://h/#f", "without query"), ("http://u:p@h", "credentials")],
)  # fmt: skip
def test_a_bad_host_names_the_option(host: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=r"^--host") as exc:
        command_line.check_host(host, required=True)
    assert message in str(exc.value)


def test_without_headless_the_host_may_come_from_the_web_ui() -> None:
    assert command_line.check_host(None, required=False) is None


def _options(**changes: object) -> SimpleNamespace:
    base = {"headless": True, "host": "http://h", "num_users": None, "spawn_rate": None,
            "tags": None, "web_host": "127.0.0.1"}  # fmt: skip
    return SimpleNamespace(**{**base, **changes})


@pytest.mark.parametrize("changes", [{"num_users": 5}, {"spawn_rate": 1.0}, {"num_users": 0}])
def test_users_and_spawn_rate_are_refused_with_a_shape_only(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="cannot be used with LOAD_SHAPE=steady"):
        command_line.check(_options(**changes), "steady")
    assert command_line.check(_options(**changes), None) == "http://h"


@pytest.mark.parametrize("tags", [["x"], []])
def test_tags_are_refused_the_locustfile_has_none(tags: list[str]) -> None:
    with pytest.raises(ValueError, match=r"^--tags"):
        command_line.check(_options(tags=tags), None)


@pytest.mark.parametrize("web_host", ["", "*", "0.0.0.0", "::", "10.0.0.5", "example.com"])
def test_the_web_ui_binds_to_loopback_only(web_host: str) -> None:
    with pytest.raises(ValueError, match=r"^--web-host must be a loopback address"):
        command_line.check(_options(headless=False, web_host=web_host), None)
    command_line.check(_options(headless=True, web_host=web_host), None)  # no web UI at all


@pytest.mark.parametrize("web_host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_a_loopback_web_ui_is_fine(web_host: str) -> None:
    command_line.check(_options(headless=False, web_host=web_host), None)


def test_a_worker_takes_its_host_and_users_from_the_master() -> None:
    assert command_line.check(_options(host=None, num_users=3), "steady", worker=True) is None
