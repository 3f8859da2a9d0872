"""Harm accounting on a synthetic timeline: each request in one category, users counted once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alarms import parse_spec
from rehearsal.harm import account, describe, read_requests, user_of, write_requests
from rehearsal.listener import Record
from rehearsal.report import _throttled_apart


def _r(t: float, target: str, status: int, ms: float, user: str | None) -> Record:
    return Record(t, target, "GET", "/x", status, ms, user)


TIMELINE = [
    _r(100.0, "blue", 200, 5, "u1"),
    _r(100.1, "blue", 200, 300, "u2"),  # blue slow: blue's harm, not green's
    _r(101.0, "green", 200, 10, "u1"),  # fine
    _r(101.5, "green", 200, 251, "u1"),  # slow
    _r(102.0, "green", 429, 2000, "u1"),  # refused and slow: counted once, as refused
    _r(102.5, "green", 502, 1, "u3"),  # listener 502: a server error
    _r(103.0, "green", 503, 900, "u3"),  # server error and slow: once, as a server error
    _r(103.5, "green", 200, 250, "u4"),  # exactly the objective: not slower than it
    _r(104.0, "green", 409, 20, "u5"),  # an everyday 4xx is no harm
    _r(104.5, "green", 429, 3, None),  # no user named: counted, no user
]


def test_each_request_counts_in_one_category_and_users_once() -> None:
    harm = account(TIMELINE, 250)
    g = harm["by_version"]["green"]
    assert g == {
        "requests": 8,
        "server_errors": 2,
        "throttled": 2,
        "slow": 1,
        "harmed": 5,
        "users": 4,  # u1, u3, u4, u5
        "users_harmed": 2,  # u1 (three harmed requests) and u3 (two)
        "worst_wait_ms": 2000.0,
    }
    assert harm["harmed_requests"] == 5 and harm["harmed_users"] == 2
    b = harm["by_version"]["blue"]
    assert (b["requests"], b["slow"], b["harmed"], b["users_harmed"]) == (2, 1, 1, 1)
    t = harm["total"]
    assert (t["requests"], t["harmed"], t["users"], t["users_harmed"]) == (10, 6, 5, 3)
    assert "5 of its 8 requests harmed" in describe(harm)


def test_the_objective_moves_the_slow_count() -> None:
    assert account(TIMELINE, 1000)["by_version"]["green"]["slow"] == 0
    assert account(TIMELINE, 5)["by_version"]["green"]["slow"] == 4  # 10, 251, 250, 20 ms
    with pytest.raises(ValueError, match="objective"):
        account(TIMELINE, 0)


def test_sent_before_keeps_requests_already_sent_at_a_rollback() -> None:
    # The 429 answered at 102.0 after 2 s was sent at 100.0: it was in flight at 101.3; the 251 ms one answered at 101.5 was sent at 101.249.
    harm = account(TIMELINE, 250, sent_before=101.3)
    g = harm["by_version"]["green"]
    assert (g["requests"], g["throttled"], g["slow"]) == (3, 1, 1)


def test_no_green_traffic_is_no_harm() -> None:
    harm = account(TIMELINE[:2], 250)
    assert harm["harmed_requests"] == 0 and "green" not in harm["by_version"]
    assert "0 of its 0 requests" in describe(harm)


@pytest.mark.parametrize(
    ("path", "body", "user"),
    [
        ("/v1/users/u-000042/points?limit=10", b"", "u-000042"),
        ("/v1/points/grants", b'{"user_id": "alice", "order_id": "o"}', "alice"),
        ("/v1/points/grants", b'{"user_id": 7}', None),
        ("/v1/points/grants", b"not json", None),
        ("/v1/points/grants", b"[1, 2]", None),
        ("/healthz", b"", None),
    ],
)
def test_user_of_a_request(path: str, body: bytes, user: str | None) -> None:
    assert user_of(path, body) == user


def test_requests_file_round_trips_and_names_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    write_requests(path, TIMELINE)
    assert read_requests(path) == TIMELINE
    path.write_text(path.read_text() + '{"time": 1}\n')
    with pytest.raises(ValueError, match=r"requests.jsonl:11: not a request record"):
        read_requests(path)


def test_spec_names_the_latency_objective() -> None:
    assert parse_spec({"service": "s"}).latency.objective_ms == 250.0
    assert (
        parse_spec({"service": "s", "latency": {"threshold_ms": 100}}).latency.objective_ms == 100
    )
    spec = parse_spec({"service": "s", "latency": {"objective_ms": 400}})
    assert spec.latency.objective_ms == 400
    with pytest.raises(ValueError, match=r"latency\.objective_ms"):
        parse_spec({"service": "s", "latency": {"objective_ms": -1}})


def test_locust_429_rows_fold_into_their_own_column() -> None:
    rows = [
        {"Type": "POST", "Name": "/g", "Request Count": "90"},
        {"Type": "POST", "Name": "/g [429]", "Request Count": "10"},
        {"Type": "GET", "Name": "/only-refused [429]", "Request Count": "4"},
        {"Type": "", "Name": "Aggregated", "Request Count": "104"},
    ]
    folded = {r["Name"]: (r["Request Count"], r.get("429", "0")) for r in _throttled_apart(rows)}
    assert folded == {
        "/g": ("90", "10"),
        "/only-refused": ("0", "4"),
        "Aggregated": ("90", "14"),
    }


def test_the_report_shows_harm_and_the_judge_at_the_top() -> None:
    from rehearsal.judge import JudgeConfig, judge
    from rehearsal.report import render_html

    verdict = judge(
        {"latency_ms": [5.0 + i % 3 for i in range(50)], "failed": [0.0] * 50},
        {"latency_ms": [900.0 + i for i in range(12)], "failed": [1.0] * 3 + [0.0] * 9},
        JudgeConfig(),
    )
    result = {"scenario": "regression", "deployment_config": "X", "outcome": "rolled_back",
              "alarm": "judge", "alarm_time_s": 5.0, "requests": 10, "errors": 0, "traffic": [],
              "harm": account(TIMELINE, 250)}  # fmt: skip
    details = {"options": {"time_scale": 1.0}, "t0": 0.0, "green_percent_at_alarm": 10,
               "judge": {"judgements": [{"t": 5.0, **verdict.to_dict()}]}}  # fmt: skip
    from rehearsal.explain import Explanation, JudgedWindow

    why = Explanation(judged=JudgedWindow(verdict.describe(), (1.0, 5.0), 5.0), version="v2")
    page = render_html(result, details, "<svg/>", [], [], [], explanation=why)
    # Next to the decision: before the "Why it rolled back" section (log lines, tables), which
    # used to push harm a screen down.
    assert page.index("Rolled back: the judge") < page.index("Harm by green")
    assert page.index("Harm by green") < page.index("<h2>Why it rolled back</h2>")
    top = page.split("<h2>Timeline</h2>", 1)[0]
    assert "Rolled back: the judge failed green 5.0 s after" in top
    assert "Harm by green: 5 of its 8 requests harmed" in top
    assert "<td>green</td><td>8</td><td>2</td><td>2</td><td>1</td><td>5</td><td>2</td>" in top
    assert "Judge (green against blue, Mann-Whitney U): Fail, score 0" in top
    assert "<td>latency_ms</td><td>High</td>" in top


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('"latency_ms":NaN', "latency_ms must be a finite number"),
        ('"latency_ms":Infinity', "latency_ms must be a finite number"),
        ('"latency_ms":-3.5', "latency_ms must be >= 0"),
        ('"latency_ms":"12"', "latency_ms must be a finite number"),
        ('"time":Infinity', "time must be a finite number"),
        ('"status":1e400', "status must be an HTTP status"),
        ('"status":200.5', "status must be an HTTP status"),
        ('"status":42', "status must be an HTTP status"),
        ('"status":true', "status must be an HTTP status"),
        ('"trace_id":42', "trace_id must be an X-Ray trace id"),
        ('"trace_id":"' + "x" * 65 + '"', "trace_id must be an X-Ray trace id"),
    ],
)
def test_a_record_the_listener_never_writes_is_refused_naming_its_line(
    tmp_path: Path, line: str, message: str
) -> None:
    # NaN or negative latencies used to pass: a NaN latency made the judge say Pass for a run it
    # fails; an infinite status or time ended in a traceback.
    record = {"time": 1.0, "target": "green", "method": "GET", "path": "/x", "status": 200,
              "latency_ms": 5.0, "user": None}  # fmt: skip
    key = line.split(":", 1)[0].strip('"')
    good = json.dumps(record)
    bad = json.dumps({k: v for k, v in record.items() if k != key})[:-1] + ", " + line + "}"
    path = tmp_path / "requests.jsonl"
    path.write_text(good + "\n" + bad + "\n")
    with pytest.raises(ValueError, match=rf"requests.jsonl:2: not a request record \({message}"):
        read_requests(path)


def test_a_requests_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b'{"time": 1}\n\x9e\xff\x00garbage')
    with pytest.raises(ValueError, match=r"requests.jsonl:\d+: not UTF-8 text"):
        read_requests(path)


def test_the_objective_is_printed_as_given_never_rounded() -> None:
    assert "slower than 250.0004 ms" in describe(account(TIMELINE, 250.0004))
    assert "slower than 250 ms" in describe(account(TIMELINE, 250.0))
