"""The ``storage`` fixture: every backend in ``BACKEND_ENVS`` runs the whole contract suite.

A backend is added by registering a factory that returns the environment ``open_storage()`` needs
(``POINTS_STORE`` and the backend's own variables). The factory gets the pytest ``request`` (so it
can use other fixtures, e.g. ``request.getfixturevalue("aws_env")``) and a temporary directory.
Tests use unique user and order ids, so a backend may share one table between tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sample_api.storage import Storage, open_storage

EnvFactory = Callable[[pytest.FixtureRequest, Path], dict[str, str]]


def _sqlite_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    return {"POINTS_STORE": "sqlite", "POINTS_DB_PATH": str(tmp_path / "points.db")}


BACKEND_ENVS: dict[str, EnvFactory] = {
    "sqlite": _sqlite_env,
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
