"""Fixtures for the points service: an app on a temporary SQLite file, a local token issuer
and an OpenAPI checker."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.test import TestResponse

from sample_api import Config, RateLimitSettings, create_app
from sample_api.app import load_openapi
from sample_api.state import state_of
from sample_api.tokens import auth_settings_from
from tests.support.issuer import ISSUER, bearer, grant_token, user_token
from tests.telemetry.conftest import tel  # noqa: F401 (telemetry into memory, for the tests that read it back)

#: The AUTH_* settings every test app uses unless told otherwise.
AUTH = auth_settings_from(ISSUER.env())
GRANTS = "/v1/points/grants"
REDEMPTIONS = "/v1/points/redemptions"
_HISTORY = re.compile(r"^/v1/users/([^/?]*)/points$")


def rightful_headers(method: str, path: str, body: Any = None) -> dict[str, str]:
    """The token of whoever may make this request: the order system for grants, the user the
    points belong to for redemptions and history; none for anything else."""
    path = path.split("?", 1)[0]
    if method == "POST" and path == GRANTS:
        return bearer(grant_token())
    if method == "POST" and path == REDEMPTIONS:
        user = body.get("user_id") if isinstance(body, dict) else None
        return bearer(user_token(user if isinstance(user, str) and user else "alice"))
    match = _HISTORY.match(path)
    if match and urllib.parse.unquote(match.group(1)):
        return bearer(user_token(urllib.parse.unquote(match.group(1))))
    return {}


OPENAPI = load_openapi()
_DOC_URI = "urn:points-service:openapi"
_REGISTRY = Registry().with_resource(
    _DOC_URI, Resource.from_contents(OPENAPI, default_specification=DRAFT202012)
)
_TEMPLATES = [
    (re.compile("^" + re.sub(r"\{[^/}]+\}", "[^/]+", template) + "$"), template)
    for template in OPENAPI["paths"]
]


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def check_openapi(method: str, path: str, response: TestResponse) -> None:
    """Assert that ``response`` is one the OpenAPI document declares for ``method path``."""
    template = next((t for rx, t in _TEMPLATES if rx.match(path)), None)
    operation = OPENAPI["paths"].get(template, {}).get(method.lower()) if template else None
    if operation is None:
        # Unknown route or method: only the generic problem responses apply.
        assert response.status_code in (404, 405), (method, path, response.status_code)
        assert response.mimetype == "application/problem+json"
        schema_uri = f"{_DOC_URI}#/components/schemas/Problem"
    else:
        status = str(response.status_code)
        declared = operation["responses"]
        key = status if status in declared else "default"
        assert key in declared, f"{method} {template}: {status} is not declared"
        content = declared[key]["content"]
        assert response.mimetype in content, (method, template, status, response.mimetype)
        schema_uri = (
            f"{_DOC_URI}#/"
            + _pointer("paths", template, method.lower(), "responses", key, "content")
            + "/"
            + _pointer(response.mimetype, "schema")
        )
        _check_headers(declared[key].get("headers", {}), response, f"{method} {template} {status}")
    validator = Draft202012Validator({"$ref": schema_uri}, registry=_REGISTRY)
    errors = sorted(validator.iter_errors(response.get_json()), key=str)
    assert not errors, f"{method} {path} -> {response.status_code}: {errors[0].message}"


def _check_headers(declared: dict[str, Any], response: TestResponse, where: str) -> None:
    """Declared response headers: present when required, and their values fit their schema."""
    for name, spec in declared.items():
        value = response.headers.get(name)
        if value is None:
            assert not spec.get("required"), f"{where}: header {name} is missing"
            continue
        schema = spec.get("schema", {})
        if schema.get("type") == "integer":
            assert re.fullmatch(r"-?[0-9]+", value), f"{where}: {name}: {value!r}"
            instance: Any = int(value)
        else:
            instance = value
        errors = list(Draft202012Validator(schema).iter_errors(instance))
        assert not errors, f"{where}: header {name}: {errors[0].message}"


_RIGHTFUL = object()


def _body_of(kwargs: dict[str, Any]) -> Any:
    """The JSON a request sends (``json=``, or raw ``data=`` that parses), to pick its caller."""
    if "json" in kwargs:
        return kwargs["json"]
    data = kwargs.get("data")
    if isinstance(data, str | bytes):
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            return None
    return None


class Api:
    """A test client that checks every response against the OpenAPI document.

    Requests carry the rightful caller's token (:func:`rightful_headers`) unless ``token=``
    names another (``None``: no Authorization header)."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def request(
        self, method: str, path: str, *, token: Any = _RIGHTFUL, **kwargs: Any
    ) -> TestResponse:
        headers = dict(kwargs.pop("headers", None) or {})
        if token is _RIGHTFUL:
            headers = {**rightful_headers(method, path, _body_of(kwargs)), **headers}
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = self.client.open(path, method=method, headers=headers, **kwargs)
        assert response.status_code < 500 or response.status_code == 503, response.get_data()
        check_openapi(method, path.split("?", 1)[0], response)
        return response

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("POST", path, **kwargs)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "points.db"


@pytest.fixture
def config(db_path: Path) -> Config:
    return Config(version="test-1", db_path=str(db_path), auth=AUTH)


@pytest.fixture
def make_app(config: Config) -> Iterator[Callable[..., Flask]]:
    """Build an app on the test's database; keyword arguments replace fields of the config."""
    apps: list[Flask] = []

    def make(**changes: Any) -> Flask:
        limiter = changes.pop("rate_limit", None)
        cfg = replace(config, **changes)
        if limiter is not None:
            cfg = replace(cfg, rate_limit=RateLimitSettings(**limiter))
        app = create_app(cfg)
        apps.append(app)
        return app

    yield make
    for app in apps:
        state_of(app).storage.close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def api(app: Flask) -> Api:
    return Api(app.test_client())


def ledger_snapshot(db_path: Path) -> tuple:
    """Everything stored, read straight from the file (independent of the code under test)."""
    if not db_path.exists():
        return ((), ())
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        ledger = tuple(conn.execute("SELECT * FROM ledger ORDER BY seq"))
        balances = tuple(conn.execute("SELECT * FROM balances ORDER BY user_id"))
    return ledger, balances
