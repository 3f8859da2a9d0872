"""Fixtures shared by every test package."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.processes import moto_server

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """One moto server for the session, reached over HTTP like AWS itself (boto3 clients)."""
    with moto_server() as url:
        yield url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, aws_endpoint: str) -> dict[str, str]:
    """Fake credentials and ``AWS_ENDPOINT_URL`` pointing at the local moto server."""
    env = {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": aws_endpoint}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


_TIME_FUNCTIONS = {name: getattr(time, name) for name in ("sleep", "time", "monotonic")}


@pytest.fixture(autouse=True)
def _time_module_left_intact() -> Iterator[None]:
    """Fail the test that replaced a function of the shared ``time`` module (use monkeypatch):
    every later test that waits or measures would silently stop waiting."""
    yield
    changed = [n for n, f in _TIME_FUNCTIONS.items() if getattr(time, n) is not f]
    for name in changed:
        setattr(time, name, _TIME_FUNCTIONS[name])
    if changed:
        pytest.fail(f"the test replaced time.{', time.'.join(changed)} for the whole session")
