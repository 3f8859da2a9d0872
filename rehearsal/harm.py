"""Harm accounting: what a deployment did to clients, per version and for the whole run, from the
requests the listener answered (what clients saw, not what the services measured).

A request is *harmed* when it failed (a 5xx, the listener's own 502/503 included, or a 429
refusal) or, answered otherwise, took longer than the spec's latency objective
(``latency.objective_ms``). Each request counts in exactly one of ``server_errors``,
``throttled`` and ``slow``, so ``harmed`` is their sum; users are counted once each however many
of their requests were harmed. The headline figure is green's: the harm the new version did.

``requests.jsonl`` keeps every listener record of a run (one JSON object a line, see
:func:`write_requests`), so harm and the judge can be computed again offline.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alarms import number_text
from rehearsal.listener import Record

NEW_VERSION = "green"
_USER_PATH = re.compile(r"^/v1/users/([^/?#]+)")


def user_of(path: str, body: bytes) -> str | None:
    """The points API's end user of a request: ``/v1/users/<id>/...`` or a JSON body's
    ``user_id``; ``None`` when the request names none (``/healthz``, a malformed body)."""
    m = _USER_PATH.match(path)
    if m:
        return m.group(1)
    if not body or not body.lstrip().startswith(b"{"):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    user = data.get("user_id") if isinstance(data, dict) else None
    return user if isinstance(user, str) and user else None


@dataclass(frozen=True, slots=True)
class Harm:
    """One version's (or the run's) requests as clients saw them. Latency in milliseconds."""

    requests: int = 0
    server_errors: int = 0  # 5xx, the listener's 502/503 included
    throttled: int = 0  # 429
    slow: int = 0  # neither of the above, but slower than the objective
    harmed: int = 0  # server_errors + throttled + slow
    users: int = 0  # distinct users with at least one request
    users_harmed: int = 0  # distinct users with at least one harmed request
    worst_wait_ms: float = 0.0  # the longest a client waited for an answer

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}


def classify(record: Record, objective_ms: float) -> str | None:
    """``"server_errors"``, ``"throttled"``, ``"slow"`` or ``None`` (not harmed): each request
    falls in at most one category, failures first."""
    if record.status >= 500:
        return "server_errors"
    if record.status == 429:
        return "throttled"
    if record.latency_ms > objective_ms:
        return "slow"
    return None


def _harm(records: list[Record], objective_ms: float) -> Harm:
    counts = {"server_errors": 0, "throttled": 0, "slow": 0}
    users: set[str] = set()
    harmed_users: set[str] = set()
    worst = 0.0
    for r in records:
        worst = max(worst, r.latency_ms)
        if r.user is not None:
            users.add(r.user)
        kind = classify(r, objective_ms)
        if kind is None:
            continue
        counts[kind] += 1
        if r.user is not None:
            harmed_users.add(r.user)
    return Harm(
        requests=len(records),
        harmed=sum(counts.values()),
        users=len(users),
        users_harmed=len(harmed_users),
        worst_wait_ms=worst,
        **counts,
    )


def account(
    records: Iterable[Record], objective_ms: float, *, sent_before: float | None = None
) -> dict[str, Any]:
    """The ``harm`` document: ``{"objective_ms", "harmed_requests", "harmed_users",
    "by_version": {name: Harm dict}, "total": Harm dict}``; the two headline figures are the new
    version's (green). ``sent_before`` (epoch s) keeps only requests sent before then (a request
    is sent ``latency_ms`` before the listener records it): the harm a rollback at that moment
    would have left, since requests already sent still finish on the version that got them."""
    if not objective_ms > 0:
        raise ValueError(f"the latency objective must be > 0 ms, got {objective_ms!r}")
    kept = [
        r for r in records if sent_before is None or r.time - r.latency_ms / 1000.0 < sent_before
    ]
    by_version: dict[str, list[Record]] = {}
    for r in kept:
        by_version.setdefault(r.target, []).append(r)
    versions = {name: _harm(recs, objective_ms) for name, recs in sorted(by_version.items())}
    new = versions.get(NEW_VERSION, Harm())
    return {
        "objective_ms": objective_ms,
        "harmed_requests": new.harmed,
        "harmed_users": new.users_harmed,
        "by_version": {name: h.to_dict() for name, h in versions.items()},
        "total": _harm(kept, objective_ms).to_dict(),
    }


def describe(harm: dict[str, Any]) -> str:
    """One sentence for people: green's harm, then the whole run's."""
    g = harm["by_version"].get(NEW_VERSION, Harm().to_dict())
    t = harm["total"]
    objective = f"{number_text(harm['objective_ms'])} ms"  # a threshold: never rounded
    return (
        f"Harm by green: {g['harmed']} of its {g['requests']} requests harmed "
        f"({g['server_errors']} server errors, {g['throttled']} refused with 429, {g['slow']} "
        f"slower than {objective}) for {g['users_harmed']} users; worst client wait "
        f"{g['worst_wait_ms'] / 1000:.1f} s. Whole run: {t['harmed']} of {t['requests']} "
        f"requests harmed for {t['users_harmed']} users."
    )


def write_requests(path: Path, records: Iterable[Record]) -> None:
    """Every listener record, one JSON object a line: ``{"time", "target", "method", "path",
    "status", "latency_ms", "user", "trace_id"}`` (time: epoch seconds at the answer;
    ``trace_id``: the X-Ray trace id forwarded, ``1-xxxxxxxx-<24 hex>``)."""
    with path.open("w") as fh:
        for r in records:
            fh.write(json.dumps(asdict(r), separators=(",", ":")) + "\n")


def _number(d: dict[str, Any], key: str) -> float:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _record(d: Any) -> Record:
    """One line's record, refusing what the listener never writes: a non-finite time, a negative
    or non-finite latency (NaN would silently pass the judge), a status that is no HTTP status."""
    if not isinstance(d, dict):
        raise TypeError(f"expected a JSON object, got {type(d).__name__}")
    status = d["status"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
        raise ValueError(f"status must be an HTTP status (100-999), got {status!r}")
    latency = _number(d, "latency_ms")
    if latency < 0:
        raise ValueError(f"latency_ms must be >= 0, got {latency!r}")
    user = d.get("user")
    trace_id = d.get("trace_id")  # absent in runs recorded before it was kept
    if trace_id is not None and not (isinstance(trace_id, str) and len(trace_id) <= 64):
        raise ValueError(f"trace_id must be an X-Ray trace id, got {trace_id!r:.80}")
    return Record(
        _number(d, "time"),
        str(d["target"]),
        str(d["method"]),
        str(d["path"]),
        status,
        latency,
        None if user is None else str(user),
        trace_id,
    )


def read_requests(path: Path) -> list[Record]:
    """The records :func:`write_requests` wrote. Raises ValueError naming the bad line (not JSON,
    a field missing, a non-finite time, a negative or non-finite latency, a status outside
    100-999, what http.client accepts) or a file that is not UTF-8 text."""
    out = []
    with path.open(encoding="utf-8") as fh:
        number = 0
        try:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    out.append(_record(json.loads(line)))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{path}:{number}: not a request record ({exc})") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}:{number + 1}: not UTF-8 text") from None
    return out
