"""``python -m rehearsal judge DIR``: the statistical judge, offline, over a recorded run.

It replays the judge every second over the requests the run's listener recorded
(``DIR/requests.jsonl``), with the traffic steps the run took (``DIR/run.json``), exactly as
``--judge`` judges live, and says when it would have rolled back and how much harm green had done
by then. Exit status: 0 done, 2 bad arguments or a run directory without the files (one line).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from rehearsal import _arguments as arguments
from rehearsal.harm import account, read_requests
from rehearsal.judge import JudgeConfig, replay


def load_run(run_dir: Path) -> tuple[list, list[tuple[float, int]], float, float]:
    """``(records, traffic [(epoch s, green %)], t0, objective_ms)`` of a recorded run.

    Raises ValueError naming the missing or unreadable file."""
    for name in ("requests.jsonl", "run.json", "result.json"):
        if not (run_dir / name).is_file():
            raise ValueError(f"{run_dir / name} does not exist (is {run_dir} a rehearsal's --out?)")
    try:
        details = json.loads((run_dir / "run.json").read_text())
        result = json.loads((run_dir / "result.json").read_text())
        t0 = float(details["t0"])
        steps = [(t0 + float(t), float(p)) for t, p in result["traffic"]]
        objective = float(details.get("latency_objective_ms", 250.0))
        if not all(math.isfinite(x) for x in (t0, objective, *(at for at, _ in steps))):
            raise ValueError("t0, the traffic steps and the objective must be finite numbers")
        if objective <= 0:
            raise ValueError(f"latency_objective_ms must be > 0, got {objective:g}")
        if not all(0 <= p <= 100 and p == int(p) for _, p in steps):
            raise ValueError("each traffic step's green share must be a whole percent 0..100")
        traffic = [(at, int(p)) for at, p in steps]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{run_dir}: run.json/result.json unreadable ({exc})") from None
    return read_requests(run_dir / "requests.jsonl"), traffic, t0, objective


def judge_run(run_dir: Path, config: JudgeConfig | None = None) -> dict[str, Any]:
    """The offline judgement of a recorded run: every judgement (``t`` from green's first
    traffic), when the judge would have fired (``fired_s``, ``None``: never) and green's harm
    at that moment (requests already sent then still count)."""
    config = config or JudgeConfig()
    records, traffic, t0, objective = load_run(run_dir)
    end = max((r.time for r in records), default=t0)
    judgements, fired = replay(records, traffic, t0, end, config)
    harm = account(records, objective, sent_before=fired) if fired is not None else None
    return {
        "fired_s": None if fired is None else round(fired - t0, 2),
        "harm_at_fired": harm,
        "judgements": [{"t": round(at - t0, 2), **v.to_dict()} for at, v in judgements],
    }


def build_parser() -> argparse.ArgumentParser:
    p = arguments.Parser(
        label="rehearsal judge",
        prog="python -m rehearsal judge",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("run_dir", type=Path, metavar="DIR", help="a rehearsal's --out directory")
    p.add_argument("--json", action="store_true", help="every judgement as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        doc = judge_run(args.run_dir)
    except ValueError as exc:
        print(f"rehearsal judge: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    last = None
    for j in doc["judgements"]:
        if j["result"] != last:
            metrics = ", ".join(f"{m['name']} {m['classification']}" for m in j["metrics"])
            print(f"{j['t']:+7.1f}s {j['result']:<8} score {j['score']}  ({metrics})")
            last = j["result"]
    if doc["fired_s"] is None:
        print("The judge would not have rolled back.")
    else:
        harm = doc["harm_at_fired"]
        print(
            f"The judge would have rolled back {doc['fired_s']} s after green first took "
            f"traffic; green had harmed {harm['harmed_requests']} requests "
            f"({harm['harmed_users']} users) by then, requests already sent included."
        )
    return 0
