"""The rollback safety check finds missing or altered writes and inconsistent balances."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from rehearsal.safety import check
from rehearsal.timeline import Write

LEDGER = {
    "u-1": [{"kind": "grant", "order_id": f"o-{i}", "points": 10} for i in range(150)],  # two pages
    "u-2": [
        {"kind": "grant", "order_id": "g-1", "points": 100},
        {"kind": "redemption", "order_id": "r-1", "points": 30},
    ],
}


class _Api(BaseHTTPRequestHandler):
    """A stand-in for the points API's balance/history route, with cursor paging."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.tokens.append(self.headers.get("Authorization"))  # type: ignore[attr-defined]
        url = urlparse(self.path)
        user = url.path.split("/")[3]
        if user in UNREADABLE:  # what a version answers for a format it does not read
            self._refuse(user)
            return
        query = parse_qs(url.query)
        limit = int(query["limit"][0])
        start = int(query.get("cursor", ["0"])[0])
        entries = LEDGER.get(user, [])
        balance = sum(e["points"] * (1 if e["kind"] == "grant" else -1) for e in entries)
        balance += self.server.skew  # type: ignore[attr-defined]
        page = entries[start : start + limit]
        nxt = str(start + limit) if start + limit < len(entries) else None
        body = json.dumps({"balance": balance, "entries": page, "next_cursor": nxt}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, user: str) -> None:
        body = json.dumps(
            {
                "type": "/problems/ledger-format-unsupported",
                "title": "Ledger format not readable by this version",
                "status": 503,
                "detail": "...",
                "formats_readable": [1],
                "formats_found": [2],
                "user_id": user,
                "records": UNREADABLE[user],
            }
        ).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


UNREADABLE = {"u-3": ["grt_a", "grt_b"]}


@pytest.fixture
def api() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.skew = 0  # type: ignore[attr-defined]
    server.tokens = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


WRITES = [
    Write("green", "grant", "u-1", "o-149", 10),  # on the second page
    Write("blue", "grant", "u-1", "o-0", 10),
    Write("green", "redemption", "u-2", "r-1", 30),
]


def test_every_acknowledged_write_found_is_ok(api) -> None:
    report = check(_url(api), "blue", WRITES, store_balance={"u-1": 1500, "u-2": 70}.get)
    assert report.ok, report.problems
    assert (report.users, report.writes_checked, report.writes_by_other) == (2, 3, 2)


def test_a_write_missing_from_the_survivors_history_is_reported(api) -> None:
    writes = [*WRITES, Write("green", "grant", "u-2", "g-lost", 50)]
    report = check(_url(api), "blue", writes)
    assert not report.ok
    assert report.problems == [
        "u-2: grant g-lost acknowledged by green is missing from blue's history"
    ]


def test_different_points_are_reported(api) -> None:
    report = check(_url(api), "blue", [Write("green", "grant", "u-2", "g-1", 99)])
    assert not report.ok and "has 100 points, green acknowledged 99" in report.problems[0]


def test_balance_not_matching_history_or_store_is_reported(api) -> None:
    api.skew = 5
    report = check(_url(api), "blue", WRITES[2:], store_balance={"u-2": 70}.get)
    assert not report.ok
    assert any("history adds up to 70" in p for p in report.problems)
    assert any("API balance 75, store says 70" in p for p in report.problems)


def test_an_unreachable_survivor_fails_the_check() -> None:
    report = check("http://127.0.0.1:9", "blue", WRITES[:1])
    assert not report.ok and "could not serve the balance" in report.problems[0]


def test_no_writes_at_all_is_not_a_pass() -> None:
    assert not check("http://127.0.0.1:9", "blue", []).ok


def test_a_user_the_survivor_cannot_read_fails_the_check_naming_records(api) -> None:
    # After a rollback across a one-way door: blue refuses the user green wrote in format 2.
    writes = [
        *WRITES,
        Write("blue", "grant", "u-3", "g-old", 5),
        Write("green", "grant", "u-3", "g-new", 7),
    ]
    report = check(_url(api), "blue", writes, store_balance={"u-1": 1500, "u-2": 70}.get)
    assert not report.ok
    assert (report.users, report.writes_checked, report.writes_by_other) == (3, 5, 3)
    assert report.unservable == [
        {
            "user_id": "u-3",
            "status": 503,
            "type": "/problems/ledger-format-unsupported",
            "formats_found": [2],
            "records": ["grt_a", "grt_b"],
            # green's (the stranded) write first
            "acknowledged": ["grant g-new (7 points, by green)", "grant g-old (5 points, by blue)"],
        }
    ]
    assert report.problems == [
        "u-3: blue cannot serve the balance (503 Ledger format not readable by this version: "
        "records in ledger format 2 (grt_a, grt_b)); 2 acknowledged writes cannot be shown, "
        "e.g. grant g-new (7 points, by green)"
    ]
    assert "cannot serve 1 of the users at all" in report.describe()
    assert report.to_dict()["unservable_count"] == 1
    one = check(_url(api), "blue", [*WRITES, Write("green", "grant", "u-3", "g-new", 7)])
    assert "); 1 acknowledged write cannot be shown, e.g. grant g-new" in one.problems[0]


def test_each_user_is_read_with_the_users_own_token(api: ThreadingHTTPServer) -> None:
    # The API shows a user's points only to that user: the check asks as each user in turn.
    report = check(_url(api), "blue", WRITES, token_for=lambda user: f"token-of-{user}")
    assert report.ok, report.problems
    assert set(api.tokens) == {"Bearer token-of-u-1", "Bearer token-of-u-2"}  # type: ignore[attr-defined]
