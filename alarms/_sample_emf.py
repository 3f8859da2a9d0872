"""Synthetic EMF in the shape telemetry writes (for tests, the replay demo and the benchmark).

One line per window, version and route with the dimension sets ``[Service]``,
``[Service, Version]`` and ``[Service, Route]``: counters as one number, ``Latency`` as a
``{"Values", "Counts", "Min", "Max", "Count", "Sum"}`` histogram; and one worker line per window.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

# A fixed latency shape (multiples of the typical latency and their share of requests).
_SHAPE = (
    (0.5, 0.10),
    (0.7, 0.20),
    (0.9, 0.25),
    (1.1, 0.20),
    (1.4, 0.12),
    (2.0, 0.08),
    (3.0, 0.04),
    (6.0, 0.01),
)

Curve = Callable[[float, str], float]


def _histogram(n: int, typical_ms: float) -> dict[str, object]:
    values, counts, left = [], [], n
    for i, (factor, share) in enumerate(_SHAPE):
        c = left if i == len(_SHAPE) - 1 else min(left, round(n * share))
        left -= c
        if c:
            values.append(round(typical_ms * factor, 3))
            counts.append(c)
    total = sum(v * c for v, c in zip(values, counts, strict=True))
    return {
        "Values": values,
        "Counts": counts,
        "Min": values[0],
        "Max": values[-1],
        "Count": sum(counts),
        "Sum": round(total, 3),
    }


def api_lines(
    start: float,
    seconds: float,
    *,
    rps: float = 200.0,
    window_s: int = 5,
    service: str = "points-service",
    versions: dict[str, float] | None = None,
    routes: tuple[str, ...] = ("/v1/orders", "/v1/users/<user_id>/points"),
    latency_ms: Curve = lambda t, v: 20.0,
    error_ratio: Curve = lambda t, v: 0.0,
    high_resolution: bool = False,
    namespace: str = "SafeDeploy",
) -> Iterator[str]:
    """EMF lines of an API serving ``rps`` requests/s, split by ``versions`` {version: share}."""
    versions = versions or {"v1": 1.0}
    metric = {"Unit": "Count"}
    res = {"StorageResolution": 1} if high_resolution else {}
    metrics = [
        {"Name": "Requests", **metric, **res},
        {"Name": "ServerErrors", **metric, **res},
        {"Name": "ClientErrors", **metric, **res},
        {"Name": "Latency", "Unit": "Milliseconds", **res},
    ]
    dims = [["Service"], ["Service", "Version"], ["Service", "Route"]]
    t = int(start) - int(start) % window_s
    end = start + seconds
    carry = 0.0
    while t < end:
        for version, share in versions.items():
            for route in routes:
                exact = rps * window_s * share / len(routes) + carry
                n = int(exact)
                carry = exact - n
                if n <= 0:
                    continue
                errors = round(n * error_ratio(t, version))
                doc = {
                    "_aws": {
                        "Timestamp": t * 1000,
                        "CloudWatchMetrics": [
                            {"Namespace": namespace, "Dimensions": dims, "Metrics": metrics}
                        ],
                    },
                    "Service": service,
                    "Version": version,
                    "Route": route,
                    "Requests": n,
                    "ServerErrors": errors,
                    "ClientErrors": 0,
                    "Latency": _histogram(n, latency_ms(t, version)),
                }
                yield json.dumps(doc, separators=(",", ":"))
        t += window_s


def worker_lines(
    start: float,
    seconds: float,
    *,
    jobs_per_s: float = 20.0,
    window_s: int = 5,
    service: str = "points-worker",
    version: str = "v1",
    backlog: Callable[[float], float] = lambda t: 2.0,
    message_age_s: Callable[[float], float] = lambda t: 0.5,
    job_error_ratio: Callable[[float], float] = lambda t: 0.0,
    dead_letter: Callable[[float], float] = lambda t: 0.0,
    namespace: str = "SafeDeploy",
) -> Iterator[str]:
    """EMF lines of a queue worker (job counters by version, queue gauges by service)."""
    t = int(start) - int(start) % window_s
    while t < start + seconds:
        n = max(1, round(jobs_per_s * window_s))
        yield json.dumps(
            {
                "_aws": {
                    "Timestamp": t * 1000,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": namespace,
                            "Dimensions": [["Service"], ["Service", "Version"]],
                            "Metrics": [
                                {"Name": "Jobs", "Unit": "Count"},
                                {"Name": "JobErrors", "Unit": "Count"},
                                {"Name": "JobDuration", "Unit": "Milliseconds"},
                            ],
                        }
                    ],
                },
                "Service": service,
                "Version": version,
                "Jobs": n,
                "JobErrors": round(n * job_error_ratio(t)),
                "JobDuration": _histogram(n, 15.0),
            },
            separators=(",", ":"),
        )
        age = message_age_s(t)
        yield json.dumps(
            {
                "_aws": {
                    "Timestamp": t * 1000,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": namespace,
                            "Dimensions": [["Service"]],
                            "Metrics": [
                                {"Name": "QueueBacklog", "Unit": "Count"},
                                {"Name": "DeadLetterBacklog", "Unit": "Count"},
                                {"Name": "MessageAge", "Unit": "Seconds"},
                            ],
                        }
                    ],
                },
                "Service": service,
                "QueueBacklog": backlog(t),
                "DeadLetterBacklog": dead_letter(t),
                "MessageAge": [age, age / 2],
            },
            separators=(",", ":"),
        )
        t += window_s
