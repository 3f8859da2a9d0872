"""Property-based: no input produces a 5xx, every answer matches /openapi.json, and a rejected
request never changes what is stored."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sample_api import Config, create_app
from tests.sample_api.conftest import AUTH, Api, ledger_snapshot, rightful_headers

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
valid_ids = st.sampled_from(["alice", "bob", "order-1", "order-2", "x_Y-9"]) | st.from_regex(
    r"[A-Za-z0-9_-]{1,64}", fullmatch=True
)
ids = st.one_of(
    st.sampled_from(["alice", "bob", "order-1", "order-2", "x_Y-9"]),
    st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    st.text(max_size=70),
    json_values,
)
amounts = st.one_of(
    st.integers(min_value=-5, max_value=10_000_005),
    st.sampled_from([1, 99, 100, 10_000_000]),
    json_values,
)


def near_valid(required: tuple[str, ...], number_field: str) -> st.SearchStrategy[dict]:
    """Bodies that are often valid, and otherwise wrong in one or two places."""
    fields = {"user_id": ids, "order_id": ids, number_field: amounts}
    other = "points" if number_field != "points" else "amount_jpy"
    complete = st.fixed_dictionaries(
        {name: fields[name] for name in required},
        optional={"extra": json_values, other: amounts},
    )
    partial = st.fixed_dictionaries({}, optional={name: fields[name] for name in required})
    return st.one_of(complete, complete, partial)


def _fresh_api(folder: Path) -> tuple[Api, Path]:
    db = folder / "points.db"
    app = create_app(Config(version="prop", db_path=str(db), auth=AUTH))
    return Api(app.test_client()), db


def _send(api: Api, db: Path, method: str, path: str, **kwargs: Any) -> None:
    before = ledger_snapshot(db)
    response = api.request(method, path, **kwargs)  # also checks the OpenAPI document
    assert response.status_code < 500, response.get_data()
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
        assert ledger_snapshot(db) == before
    elif response.status_code == 200 and method == "POST":
        assert ledger_snapshot(db) == before  # a replay stores nothing


valid_bodies = st.fixed_dictionaries(
    {
        "user_id": st.sampled_from(["alice", "bob"]),
        "order_id": valid_ids,
        "amount_jpy": st.integers(min_value=1, max_value=10_000_000),
    }
) | st.fixed_dictionaries(
    {
        "user_id": st.sampled_from(["alice", "bob"]),
        "order_id": valid_ids,
        "points": st.integers(min_value=1, max_value=2_000),
    }
)
GRANT_FIELDS = ("user_id", "order_id", "amount_jpy")
REDEMPTION_FIELDS = ("user_id", "order_id", "points")


def test_grants_and_redemptions_never_fail_or_corrupt(tmp_path: Path) -> None:
    api, db = _fresh_api(tmp_path)

    @SETTINGS
    @given(
        path=st.sampled_from(["/v1/points/grants", "/v1/points/redemptions"]),
        body=st.one_of(
            valid_bodies,
            near_valid(GRANT_FIELDS, "amount_jpy"),
            near_valid(REDEMPTION_FIELDS, "points"),
            json_values,
        ),
    )
    def run(path: str, body: Any) -> None:
        _send(api, db, "POST", path, data=json.dumps(body), content_type="application/json")

    run()
    # The properties were exercised on real data, not only on refusals.
    assert len(ledger_snapshot(db)[0]) > 0


def test_raw_bodies_and_content_types_never_fail(tmp_path: Path) -> None:
    api, db = _fresh_api(tmp_path)

    @SETTINGS
    @given(
        path=st.sampled_from(["/v1/points/grants", "/v1/points/redemptions"]),
        raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
        content_type=st.one_of(
            st.none(),
            st.sampled_from(
                ["application/json", "text/plain", "application/json; charset=utf-16", ""]
            ),
            st.text(max_size=30),
        ),
    )
    def run(path: str, raw: bytes, content_type: str | None) -> None:
        headers = {}
        if content_type is not None and all(32 <= ord(c) < 127 for c in content_type):
            headers["Content-Type"] = content_type
        _send(api, db, "POST", path, data=raw, headers=headers)

    run()


# Cursors in the shape the SQLite backend issues (base64url of "v1:<user>:<seq>"), edited the
# way a client could: any user, any integer position (negative, zero, past 64 bits).
forged_cursors = st.builds(
    lambda user, seq: base64.urlsafe_b64encode(f"v1:{user}:{seq}".encode()).decode().rstrip("="),
    st.sampled_from(["alice", "bob"]),
    st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from([2**63 - 1, 2**63]),
)


def test_any_path_method_and_query_never_fails(tmp_path: Path) -> None:
    api, db = _fresh_api(tmp_path)
    api.post(
        "/v1/points/grants",
        json={"user_id": "alice", "order_id": "o-1", "amount_jpy": 500},
    )
    segment = st.text(
        alphabet=st.characters(
            codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="/?#"
        ),
        max_size=20,
    )

    @SETTINGS
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
        path=st.one_of(
            st.builds(lambda u: f"/v1/users/{u}/points", segment),
            # Non-empty segments: the test client would read "//x" as a host name.
            st.lists(segment.filter(bool), max_size=4).map(lambda parts: "/" + "/".join(parts)),
            st.sampled_from(["/healthz", "/readyz", "/version", "/openapi.json", "/v1/points"]),
        ),
        query=st.dictionaries(
            st.sampled_from(["limit", "cursor", "x"]),
            st.text(max_size=30) | forged_cursors,
            max_size=3,
        ),
    )
    def run(method: str, path: str, query: dict[str, str]) -> None:
        before = ledger_snapshot(db)
        headers = rightful_headers(method, path)  # authorised: the property is about the input
        response = api.client.open(path, method=method, query_string=query, headers=headers)
        assert response.status_code < 500, response.get_data()
        if response.status_code >= 400 and method != "HEAD":
            assert response.mimetype == "application/problem+json"
        assert ledger_snapshot(db) == before

    run()


def test_history_paging_parameters_never_fail(tmp_path: Path) -> None:
    api, db = _fresh_api(tmp_path)
    for i in range(3):
        api.post(
            "/v1/points/grants", json={"user_id": "alice", "order_id": f"h-{i}", "amount_jpy": 500}
        )

    @SETTINGS
    @given(
        limit=st.none() | st.integers(-5, 200).map(str) | st.text(max_size=8),
        cursor=st.none() | forged_cursors | st.text(max_size=40),
    )
    def run(limit: str | None, cursor: str | None) -> None:
        query = {k: v for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        _send(api, db, "GET", "/v1/users/alice/points", query_string=query)

    run()
