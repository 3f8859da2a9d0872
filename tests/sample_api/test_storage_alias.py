"""The ledger's storage moved from ``sample_api.storage`` to ``points.storage``: the old import
path still works (the same objects) and says where it went."""

from __future__ import annotations

import importlib
import sys
import warnings

import points.storage


def test_the_old_import_path_gives_the_same_objects_and_a_deprecation_warning() -> None:
    sys.modules.pop("sample_api.storage", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("sample_api.storage")
    assert any(
        issubclass(w.category, DeprecationWarning) and "points.storage" in str(w.message)
        for w in caught
    )
    assert old.__all__ == points.storage.__all__
    for name in points.storage.__all__:
        assert getattr(old, name) is getattr(points.storage, name), name
