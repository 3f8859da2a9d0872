"""Deprecated: the points ledger's storage moved to :mod:`points.storage`.

This module re-exports it (the same objects) so code written against the old import path keeps
working; importing it warns once (``DeprecationWarning``). Import ``points.storage`` instead.
"""

from __future__ import annotations

import warnings

from points.storage import *  # noqa: F403 - the whole public API, re-exported as it was
from points.storage import __all__  # noqa: F401

warnings.warn(
    "sample_api.storage moved to points.storage; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
