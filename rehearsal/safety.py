"""Data safety of the version left serving (blue after a rollback, green after a success): it must
serve every balance, the other's writes included.

Both versions share one store, so after a rollback blue must show every point green granted. The
check reads each affected user's balance and full history through the surviving version's HTTP API
and compares it with what clients were told (every 2xx grant/redemption the listener acknowledged)
and, when given, with the store read directly.

The check fails when the survivor cannot serve a user at all: after a rollback across a one-way
door (blue cannot read the ledger format green wrote) blue answers 503
``ledger-format-unsupported``; each such user is named in :attr:`SafetyReport.unservable` with
the records the problem document names and the writes that were acknowledged to clients.
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
    #: Users the survivor refused to serve: user_id, status, problem type, formats_found,
    #: records (entry ids it cannot read), acknowledged (the user's acknowledged writes).
    unservable: list[dict[str, Any]] = field(default_factory=list)
    #: Acknowledged writes checked, by who acknowledged them (blue, green, or an earlier
    #: deployment's version such as v2).
    by_target: dict[str, int] = field(default_factory=dict)

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
            cannot = (
                f"; it cannot serve {len(self.unservable)} of the users at all"
                if self.unservable
                else ""
            )
            return f"{head}: {len(self.problems)} problems in the {writes}{cannot}."
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
            "writes_by_target": dict(sorted(self.by_target.items())),
            "problems": self.problems[:50],
            "problem_count": len(self.problems),
            "unservable_users": self.unservable[:50],
            "unservable_count": len(self.unservable),
        }


def _get_json(url: str, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
        return json.loads(resp.read())


def _problem(exc: urllib.error.HTTPError) -> dict[str, Any]:
    """The problem document of an error answer (empty when it has none)."""
    try:
        body = json.loads(exc.read(65536) or b"{}")
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _unservable(
    report: SafetyReport, user_id: str, writes: list[Write], exc: urllib.error.HTTPError
) -> None:
    problem = _problem(exc)
    records = [str(r) for r in problem.get("records") or []]
    found = problem.get("formats_found") or []
    # The other version's writes first: they are the ones a rollback most often strands.
    ordered = sorted(writes, key=lambda w: w.target == report.served_by)
    acknowledged = [f"{w.kind} {w.order_id} ({w.points} points, by {w.target})" for w in ordered]
    report.unservable.append(
        {
            "user_id": user_id,
            "status": exc.code,
            "type": problem.get("type"),
            "formats_found": found,
            "records": records,
            "acknowledged": acknowledged[:20],
        }
    )
    why = problem.get("title") or exc.reason
    if found:
        why += f": records in ledger format {','.join(str(f) for f in found)}"
        if records:
            why += f" ({', '.join(records[:3])}{', ...' if len(records) > 3 else ''})"
    report.problems.append(
        f"{user_id}: {report.served_by} cannot serve the balance ({exc.code} {why}); "
        f"{len(writes)} acknowledged write{'s' if len(writes) != 1 else ''} cannot be shown, "
        f"e.g. {acknowledged[0]}"
    )


def fetch_user(
    base_url: str, user_id: str, token: str | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """Balance and full history (all pages) of ``user_id`` from the API at ``base_url``, read
    with the user's own ``token`` (the API shows a user's points only to that user)."""
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    balance = None
    for _ in range(MAX_PAGES):
        query = {"limit": "100"}
        if cursor:
            query["cursor"] = cursor
        url = f"{base_url}/v1/users/{urllib.parse.quote(user_id)}/points?{urllib.parse.urlencode(query)}"
        page = _get_json(url, token)
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
    token_for: Callable[[str], str] | None = None,
) -> SafetyReport:
    """Check every acknowledged write through the API at ``base_url`` (the surviving version);
    ``token_for(user_id)`` gives the user's bearer token."""
    report = SafetyReport(served_by=served_by, store_checked=store_balance is not None)
    by_user: dict[str, list[Write]] = defaultdict(list)
    for write in writes:
        by_user[write.user_id].append(write)
    for user_id, user_writes in sorted(by_user.items()):
        report.users += 1
        for write in user_writes:
            report.by_target[write.target] = report.by_target.get(write.target, 0) + 1
        try:
            token = token_for(user_id) if token_for is not None else None
            balance, entries = fetch_user(base_url, user_id, token)
        except urllib.error.HTTPError as exc:
            report.writes_checked += len(user_writes)
            report.writes_by_other += sum(w.target != served_by for w in user_writes)
            _unservable(report, user_id, user_writes, exc)
            continue
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
