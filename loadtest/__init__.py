"""Load scenarios (Locust) that reproduce the alarm-triggered rollback against any endpoint.

``loadtest/locustfile.py`` is what Locust runs (``locust -f loadtest/locustfile.py --host URL``).
This package's own namespace imports no Locust (which would monkey-patch the process with
gevent): it offers the locustfile's path and the load shapes' arithmetic.
"""

from pathlib import Path

from loadtest.rates import (
    SHAPE_NAMES,
    THROTTLED_SUFFIX,
    rate_at,
    setting,
    shape_name,
    tick,
    users_for,
)

#: Path of the locustfile, for tools that start Locust (``locust -f LOCUSTFILE``).
LOCUSTFILE = Path(__file__).with_name("locustfile.py")

__all__ = [
    "LOCUSTFILE",
    "SHAPE_NAMES",
    "THROTTLED_SUFFIX",
    "rate_at",
    "setting",
    "shape_name",
    "tick",
    "users_for",
]
