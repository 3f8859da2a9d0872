"""Data safety of the version left serving (blue after a rollback, green after a success): it must
serve every balance, the other's writes included.

Both versions share one store, so after a rollback blue must show every point green granted. The
check reads each affected user's balance and full history through the surviving version's HTTP API
and compares it with what clients were told (every 2xx grant/redemption the listener acknowledged)
and, when given, with the store read directly.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rehearsal.timeline import Write

MAX_PAGES = 1000  # per user; a bound, far above what a rehearsal writes


@dataclass
class SafetyReport:
    """Outcome of the check; ``ok`` only when nothing is missing or inconsistent."""

    served_by: str
    users: int = 0
    writes_checked: int = 0
    writes_by_other: int = 0  # acknowledged by the version that is no longer serving
    problems: list[str] = field(default_factory=list)
    store_checked: bool = False  # balances were also compared with the store read directly

    @property
    def ok(self) -> bool:
        return not self.problems and self.users > 0

    def describe(self) -> str:
        """One sentence: the verdict and what was checked (the console summary, the report)."""
        verdict = "OK" if self.ok else "FAILED"
        head = f"Data safety {verdict} on {self.served_by}, the version left serving"
        if not self.users:
            return f"{head}: no write was acknowledged to a client, so nothing could be checked."
        other = {"blue": "green", "green": "blue"}.get(self.served_by, "the other version")
        writes = (
            f"{self.writes_checked} writes acknowledged to clients ({self.writes_by_other} made"
            f" by {other}) for {self.users} users"
        )
        if not self.ok:
            return f"{head}: {len(self.problems)} problems in the {writes}."
        store = ", and each balance matches the store" if self.store_checked else ""
        return (
            f"{head}: all {writes} are in the histories {self.served_by} serves, each history"
            f" adds up to its balance{store}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "served_by": self.served_by,
            "users": self.users,
            "writes_checked": self.writes_checked,
            "writes_by_other_version": self.writes_by_other,
            "problems": self.problems[:50],
            "problem_count": len(self.problems),
        }


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def fetch_user(base_url: str, user_id: str) -> tuple[int, list[dict[str, Any]]]:
    """Balance and full history (all pages) of ``user_id`` from the API at ``base_url``."""
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    balance = None
    for _ in range(MAX_PAGES):
        query = {"limit": "100"}
        if cursor:
            query["cursor"] = cursor
        url = f"{base_url}/v1/users/{urllib.parse.quote(user_id)}/points?{urllib.parse.urlencode(query)}"
        page = _get_json(url)
        if balance is None:
            balance = int(page["balance"])
        entries.extend(page.get("entries", page.get("history", [])))
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return int(balance or 0), entries


def check(
    base_url: str,
    served_by: str,
    writes: Iterable[Write],
    store_balance: Callable[[str], int] | None = None,
) -> SafetyReport:
    """Check every acknowledged write through the API at ``base_url`` (the surviving version)."""
    report = SafetyReport(served_by=served_by, store_checked=store_balance is not None)
    by_user: dict[str, list[Write]] = defaultdict(list)
    for write in writes:
        by_user[write.user_id].append(write)
    for user_id, user_writes in sorted(by_user.items()):
        report.users += 1
        try:
            balance, entries = fetch_user(base_url, user_id)
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            report.problems.append(f"{user_id}: {served_by} could not serve the balance ({exc})")
            continue
        seen = {(str(e.get("kind")), str(e.get("order_id"))): e for e in entries}
        net = sum(
            int(e.get("points", 0)) * (1 if e.get("kind") == "grant" else -1) for e in entries
        )
        if net != balance:
            report.problems.append(f"{user_id}: balance {balance} but the history adds up to {net}")
        if store_balance is not None:
            try:
                stored = store_balance(user_id)
            except Exception as exc:  # the store's own errors are findings, not crashes
                report.problems.append(f"{user_id}: the store could not be read ({exc})")
                stored = balance
            if stored != balance:
                report.problems.append(f"{user_id}: API balance {balance}, store says {stored}")
        for write in user_writes:
            report.writes_checked += 1
            if write.target != served_by:
                report.writes_by_other += 1
            entry = seen.get((write.kind, write.order_id))
            if entry is None:
                report.problems.append(
                    f"{user_id}: {write.kind} {write.order_id} acknowledged by {write.target} "
                    f"is missing from {served_by}'s history"
                )
            elif int(entry.get("points", -1)) != write.points:
                report.problems.append(
                    f"{user_id}: {write.kind} {write.order_id} has {entry.get('points')} points, "
                    f"{write.target} acknowledged {write.points}"
                )
    return report
