"""The ``storage`` fixture: every backend in ``BACKEND_ENVS`` runs the whole contract suite.

A backend is added by registering a factory that returns the environment ``open_storage()`` needs
(``POINTS_STORE`` and the backend's own variables). The factory gets the pytest ``request`` (so it
can use other fixtures, e.g. ``request.getfixturevalue("aws_env")``) and a temporary directory.
Tests use unique user and order ids, so a backend may share one table between tests.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from points.storage import Storage, open_storage
from tests.conftest import FAKE_AWS_ENV
from tests.support.processes import child, free_port

EnvFactory = Callable[[pytest.FixtureRequest, Path], dict[str, str]]


def _sqlite_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    return {"POINTS_STORE": "sqlite", "POINTS_DB_PATH": str(tmp_path / "points.db")}


# moto's TransactWriteItems is not isolated between concurrent requests (it snapshots whole tables
# and restores them on a cancelled transaction, erasing what another request committed meanwhile),
# whereas DynamoDB serializes transactions. So the DynamoDB backend runs against its own moto
# server that handles one request at a time: real boto3 over HTTP, DynamoDB's isolation.
_SERIAL_MOTO = (
    "import sys; from werkzeug.serving import run_simple; "
    "from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app; "
    "run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), "
    "threaded=False)"
)


@pytest.fixture(scope="session")
def serial_moto_endpoint() -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with child([sys.executable, "-c", _SERIAL_MOTO, str(port)], ready_url=url + "/moto-api/"):
        yield url


def _dynamodb_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    from points.storage.dynamodb import create_table

    endpoint = request.getfixturevalue("serial_moto_endpoint")
    env = {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": endpoint}
    monkeypatch = request.getfixturevalue("monkeypatch")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    create_table("points-contract", region=env["AWS_REGION"], endpoint_url=endpoint)
    return {**env, "POINTS_STORE": "dynamodb", "POINTS_TABLE": "points-contract"}


BACKEND_ENVS: dict[str, EnvFactory] = {
    "sqlite": _sqlite_env,
    "dynamodb": _dynamodb_env,
}


@pytest.fixture(params=sorted(BACKEND_ENVS))
def storage_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Environment that opens the backend under test (also usable from child processes)."""
    return BACKEND_ENVS[request.param](request, tmp_path)


@pytest.fixture
def storage(storage_env: dict[str, str]) -> Iterator[Storage]:
    store = open_storage(storage_env)
    try:
        yield store
    finally:
        store.close()
