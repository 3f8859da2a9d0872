"""Storage backends for the points ledger. ``open_storage()`` picks one from the environment.

Backends are registered by name in ``BACKENDS``; each entry opens a store from an environment
mapping. ``sqlite`` is the default; ``dynamodb`` lives in ``sample_api.storage.dynamodb``, which
must expose ``from_env(env: Mapping[str, str]) -> Storage`` and is imported only when selected
(so the SQLite path never needs boto3).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping

from sample_api.storage.base import (
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


def _open_sqlite(env: Mapping[str, str]) -> Storage:
    from sample_api.storage.sqlite import SQLiteStorage

    return SQLiteStorage(env.get("POINTS_DB_PATH") or DEFAULT_DB_PATH)


def _open_dynamodb(env: Mapping[str, str]) -> Storage:
    try:
        module = importlib.import_module("sample_api.storage.dynamodb")
    except ModuleNotFoundError as exc:
        if exc.name != "sample_api.storage.dynamodb":
            raise ValueError(f"POINTS_STORE=dynamodb needs {exc.name!r} installed") from None
        raise ValueError("POINTS_STORE=dynamodb is not available in this build") from None
    return module.from_env(env)


BACKENDS: dict[str, Callable[[Mapping[str, str]], Storage]] = {
    "sqlite": _open_sqlite,
    "dynamodb": _open_dynamodb,
}


def open_storage(env: Mapping[str, str] | None = None) -> Storage:
    """Open the backend named by ``POINTS_STORE`` (default ``sqlite``).

    Raises ``ValueError`` with a one-line message naming the variable when the configuration is
    unusable. Opening does no I/O for SQLite: an unreachable store shows up as
    :class:`StorageUnavailable` on first use (``/readyz`` answers 503), not as a crash at start-up.
    """
    env = os.environ if env is None else env
    name = (env.get("POINTS_STORE") or "sqlite").strip().lower()
    try:
        opener = BACKENDS[name]
    except KeyError:
        choices = ", ".join(sorted(BACKENDS))
        raise ValueError(
            f"POINTS_STORE must be one of {choices}; got {env.get('POINTS_STORE')!r}"
        ) from None
    return opener(env)


__all__ = [
    "BACKENDS",
    "DEFAULT_DB_PATH",
    "HistoryPage",
    "IdempotencyConflict",
    "InsufficientPoints",
    "InvalidCursor",
    "LedgerEntry",
    "Outcome",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "open_storage",
]
