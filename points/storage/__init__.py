"""Storage backends for the points ledger. ``open_storage()`` picks one from the environment.

Backends are registered by name in ``BACKENDS``; each entry opens a store from an environment
mapping. ``sqlite`` is the default; ``dynamodb`` lives in ``points.storage.dynamodb``, which
must expose ``from_env(env: Mapping[str, str]) -> Storage`` and is imported only when selected
(so the SQLite path never needs boto3).

Environment variables (names in :mod:`points.environment_variables`):

* ``POINTS_STORE`` - ``sqlite`` (default) or ``dynamodb``;
* ``POINTS_DB_PATH`` - the SQLite file (default ``./points.db``);
* ``POINTS_TABLE``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` - DynamoDB;
* ``POINTS_FORMATS_READ``, ``POINTS_FORMAT_WRITE`` - the ledger formats this version reads and
  writes (default 1 and 1; see :mod:`points.formats`), for every backend.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping

from points.environment_variables import POINTS_DB_PATH, POINTS_STORE
from points.formats import formats_from
from points.settings import ConfigError, env_choice
from points.storage.base import (
    FormatUnsupported,
    HistoryPage,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidCursor,
    LedgerEntry,
    Outcome,
    Storage,
    StorageError,
    StorageUnavailable,
)

DEFAULT_DB_PATH = "./points.db"
DEFAULT_BACKEND = "sqlite"


def _open_sqlite(env: Mapping[str, str]) -> Storage:
    from points.storage.sqlite import SQLiteStorage

    return SQLiteStorage(db_path_from(env), formats=formats_from(env))


def _open_dynamodb(env: Mapping[str, str]) -> Storage:
    try:
        module = importlib.import_module("points.storage.dynamodb")
    except ModuleNotFoundError as exc:
        if exc.name != "points.storage.dynamodb":
            raise ConfigError(f"{POINTS_STORE}=dynamodb needs {exc.name!r} installed") from None
        raise ConfigError(f"{POINTS_STORE}=dynamodb is not available in this build") from None
    return module.from_env(env)


BACKENDS: dict[str, Callable[[Mapping[str, str]], Storage]] = {
    "sqlite": _open_sqlite,
    "dynamodb": _open_dynamodb,
}


def backend_from(env: Mapping[str, str]) -> str:
    """The backend ``POINTS_STORE`` names (a key of ``BACKENDS``); :class:`ConfigError` for
    any other value."""
    return env_choice(env, POINTS_STORE, DEFAULT_BACKEND, tuple(sorted(BACKENDS)))


def db_path_from(env: Mapping[str, str]) -> str:
    """The SQLite file ``POINTS_DB_PATH`` names (unset or blank: ``./points.db``);
    :class:`ConfigError` for a value no file can have (a NUL character)."""
    value = env.get(POINTS_DB_PATH)
    if value is None or not value.strip():  # " " is a mistake, not a file named " "
        return DEFAULT_DB_PATH
    if "\0" in value:
        raise ConfigError(f"{POINTS_DB_PATH} must not contain a NUL character; got {value!r:.80}")
    return value


def open_storage(env: Mapping[str, str] | None = None) -> Storage:
    """Open the backend named by ``POINTS_STORE`` (default ``sqlite``); ``env`` defaults to
    ``os.environ``.

    Raises :class:`~points.settings.ConfigError` (a ``ValueError``) with a one-line message
    naming the variable when the configuration is unusable (the ledger formats included). Opening does no I/O: an unreachable
    store shows up as :class:`StorageUnavailable` on first use (the API's ``/readyz`` answers
    503), not as a crash at start-up.
    """
    env = os.environ if env is None else env
    return BACKENDS[backend_from(env)](env)


__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "DEFAULT_DB_PATH",
    "FormatUnsupported",
    "HistoryPage",
    "IdempotencyConflict",
    "InsufficientPoints",
    "InvalidCursor",
    "LedgerEntry",
    "Outcome",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "backend_from",
    "db_path_from",
    "open_storage",
]
