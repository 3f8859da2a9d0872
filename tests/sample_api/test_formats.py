"""Ledger formats over HTTP: three versions (v1, v2 prepare, v3 activate) on one SQLite file.

A version that cannot read what is stored says so (503 ``ledger-format-unsupported`` naming
the formats and records) instead of serving a wrong balance, and changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from points.formats import PRESETS
from sample_api.app import check_config
from tests.sample_api.conftest import Api, ledger_snapshot
from tests.sample_api.test_http import assert_problem

GRANTS = "/v1/points/grants"
REDEMPTIONS = "/v1/points/redemptions"


@pytest.fixture
def apis(make_app) -> dict[str, Api]:
    return {
        name: Api(make_app(version=name, formats=formats).test_client())
        for name, formats in PRESETS.items()
    }


def grant(api: Api, user: str, order: str, amount: int = 1000):
    return api.post(GRANTS, json={"user_id": user, "order_id": order, "amount_jpy": amount})


def test_version_declares_the_formats(apis: dict[str, Api]) -> None:
    assert apis["v1"].get("/version").get_json()["ledger_formats"] == {"read": [1], "write": 1}
    assert apis["v2"].get("/version").get_json()["ledger_formats"] == {"read": [1, 2], "write": 1}
    assert apis["v3"].get("/version").get_json()["ledger_formats"] == {"read": [1, 2], "write": 2}


def test_v1_refuses_a_store_v3_wrote_to(apis: dict[str, Api], db_path: Path) -> None:
    v1, v2, v3 = apis["v1"], apis["v2"], apis["v3"]
    assert grant(v1, "old", "o1").status_code == 201
    assert v1.get("/readyz").status_code == 200
    new = grant(v3, "new", "o2", amount=1234).get_json()
    assert new["points"] == 12 and new["balance"] == 12
    before = ledger_snapshot(db_path)

    body = assert_problem(v1.get("/readyz"), 503, slug="ledger-format-unsupported")
    assert (body["formats_readable"], body["formats_found"]) == ([1], [2])
    assert "reads 1, writes 1" in body["detail"]
    for response in (
        grant(v1, "old", "o3"),
        grant(v1, "new", "o4"),
        v1.post(REDEMPTIONS, json={"user_id": "new", "order_id": "r1", "points": 1}),
    ):
        body = assert_problem(response, 503, slug="ledger-format-unsupported")
        assert body["formats_found"] == [2]
    body = assert_problem(v1.get("/v1/users/new/points"), 503, slug="ledger-format-unsupported")
    assert body["user_id"] == "new" and body["records"] == [new["grant_id"]]
    # What it can read it still serves; nothing was written or rewritten.
    assert v1.get("/v1/users/old/points").get_json()["balance"] == 10
    assert ledger_snapshot(db_path) == before

    # The prepare version serves v3's writes (and the 12 points are 12, not 12,000).
    page = v2.get("/v1/users/new/points").get_json()
    assert page["balance"] == 12 and [e["points"] for e in page["entries"]] == [12]
    assert v2.get("/readyz").status_code == 200
    redeemed = v2.post(REDEMPTIONS, json={"user_id": "new", "order_id": "r1", "points": 5})
    assert redeemed.status_code == 201 and redeemed.get_json()["balance"] == 7
    assert v3.get("/v1/users/new/points").get_json()["balance"] == 7


def test_formats_a_version_cannot_use_are_a_start_up_error() -> None:
    with pytest.raises(ValueError, match="POINTS_FORMAT_WRITE=2 must be one of"):
        check_config({"POINTS_FORMATS_READ": "1", "POINTS_FORMAT_WRITE": "2"})
    with pytest.raises(ValueError, match="ledger format 3 is unknown"):
        check_config({"POINTS_FORMATS_READ": "1,3"})
