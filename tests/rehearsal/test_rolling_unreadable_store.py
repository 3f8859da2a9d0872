"""A store the worker rehearsal cannot read at the end: no exactly-once verdict, the reason in
``run.json`` (``store_unreadable``), "Exactly-once NOT CHECKED" in the summary and the report, the
harm from the tasks' log lines (``credits_from``, ``credit_log_lines_missing: null``) and exit
status 1; beside it, the same run with a readable store. The real SQLite store from ``points``;
``run_worker`` is replaced by the reading of the store and the real outputs."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rehearsal.__main__ import main
from rehearsal.model import SUCCEEDED
from rehearsal.rolling import runner
from rehearsal.rolling.exactly_once import check_store
from rehearsal.rolling.model import Credits, RolloutDecision, RunData, WorkerOptions, WorkerOutcome
from rehearsal.rolling.report import write_outputs
from tests.rehearsal.test_rolling_drain import LOST, _missing, _no_ledger_yet, _not_a_database
from tests.rehearsal.test_rolling_exactly_once import ORDERS, credit

UNREADABLE = [_missing, _not_a_database, _no_ledger_yet]
T0 = ORDERS[0].sent_at


def test_a_readable_store_gives_the_verdict_and_the_ledgers_credit_times(tmp_path: Path) -> None:
    db = tmp_path / "points.db"
    credit(db, ORDERS)
    store = check_store(db, ORDERS)
    assert store.unreadable is None
    assert store.report is not None and store.report.ok, store.report
    assert store.credits is not None and set(store.credits) == {o.order_id for o in ORDERS}
    assert all(isinstance(t, float) for t in store.credits.values())


@pytest.mark.parametrize("unreadable", UNREADABLE)
def test_a_store_that_cannot_be_read_gives_no_verdict_and_says_why(
    tmp_path: Path, unreadable: Callable[[Path], None]
) -> None:
    db = tmp_path / "points.db"
    unreadable(db)
    store = check_store(db, ORDERS)
    assert store.report is None and store.credits is None
    assert store.unreadable is not None and store.unreadable.startswith("points.db: ")
    assert len(store.unreadable) > len("points.db: ")  # SQLite's reason follows


def _run(out: Path, db: Path) -> WorkerOutcome:
    """What ``run_worker`` returns after a healthy run: the store read as the runner reads it;
    every credit log line seen except ``LOST``'s (its task SIGKILLed)."""
    store = check_store(db, ORDERS)
    details = {"options": {"time_scale": 1.0, "rate": 20.0}, "rounds": [[1, 1]], "tasks": []}
    if store.unreadable:
        details["store_unreadable"] = store.unreadable
    lines = {o.order_id: o.sent_at + 0.5 for o in ORDERS if o is not LOST}
    data = RunData(
        options=WorkerOptions(scenario="healthy", out=out, tasks=1),
        versions=("v1", "v2"),
        rollback_alarms=[],
        healthy_s=40.0,
        bake_s=30.0,
        t0=T0,
        monitoring=True,
        produced=ORDERS,
        send_failures=0,
        credits=Credits(first=dict(lines), credited_at=dict(lines)),
        evaluations=[],
        emf_lines={},
        ledger_credits=store.credits,
    )
    (out / "emf.jsonl").touch()
    decision = RolloutDecision(SUCCEEDED, T0 + 60, new_tasks=1, replaced=1, round=1)
    return write_outputs(data, decision, store.report, details)


def _rehearse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: Path) -> tuple[int, Path]:
    out = tmp_path / "out"
    monkeypatch.setattr(runner, "run_worker", lambda options: _run(options.out, db))
    status = main(["--target", "worker", "--scenario", "healthy", "--no-progress",
                   "--out", str(out)])  # fmt: skip
    return status, out


@pytest.mark.parametrize("unreadable", UNREADABLE)
def test_an_unreadable_store_is_said_everywhere_and_fails_the_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    unreadable: Callable[[Path], None],
) -> None:
    db = tmp_path / "points.db"
    unreadable(db)
    status, out = _rehearse(tmp_path, monkeypatch, db)
    printed = capsys.readouterr().out
    assert status == 1

    why = json.loads((out / "run.json").read_text())["store_unreadable"]
    assert why.startswith("points.db: ")
    result = json.loads((out / "result.json").read_text())
    assert result["exactly_once"] is False
    harm = result["harm"]
    assert harm["credits_from"] == "log lines" and harm["credit_log_lines_missing"] is None
    assert harm["never_credited"] == 1  # the lost line, with nothing to correct it

    said = f"Exactly-once NOT CHECKED: the store could not be read ({why})."
    assert said in printed
    assert "the store could not be read, so credits are the tasks' log lines'" in printed
    page = (out / "report.html").read_text(encoding="utf-8")
    assert html.escape(said) in page
    assert html.escape("(by the tasks' log lines: the store could not be read)") in page


def test_a_readable_store_gives_the_verdict_everywhere_and_passes_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "points.db"
    credit(db, ORDERS)
    status, out = _rehearse(tmp_path, monkeypatch, db)
    printed = capsys.readouterr().out
    assert status == 0, printed

    assert "store_unreadable" not in json.loads((out / "run.json").read_text())
    result = json.loads((out / "result.json").read_text())
    assert result["exactly_once"] is True
    harm = result["harm"]
    assert harm["credits_from"] == "ledger" and harm["credit_log_lines_missing"] == 1
    assert harm["never_credited"] == 0
    assert "Exactly-once OK" in printed and "NOT CHECKED" not in printed
    assert "NOT CHECKED" not in (out / "report.html").read_text(encoding="utf-8")
