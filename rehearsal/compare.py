"""``python -m rehearsal compare``: the same regression under several deployment configurations
and detection setups, side by side: when it was detected, how many requests and users green
harmed, and how long a healthy deployment of the same configuration takes.

Detection setups (``--detection``):

* ``static-1m`` - static thresholds on 60 s periods, 2 of 3 (the spec's ``production`` profile,
  without the green-vs-blue ratio alarms): alarms as CodeDeploy users commonly configure them;
* ``alarms-10s`` - the packaged alarms (10 s high-resolution periods, 2 of 3, ratio alarms
  included), without the judge;
* ``judge`` - the packaged defaults: the 10 s alarms and the statistical judge;
* ``judge-only`` - the judge alone.

Every run is a real rehearsal (:func:`rehearsal.run`) of the ``regression`` scenario, one at a
time; its output goes to ``OUT/<config>-<setup>-<n>/`` (the console lines to ``console.txt``: not a ``*.log``, which the run cleans at its start).
The whole comparison is bounded: it prints its longest possible duration before it starts (each
run lasts at most its schedule, the time-scaled steps and bake, plus start-up and drain), and
``--max-minutes`` refuses a matrix that could take longer. Writes ``OUT/compare.json`` and
``OUT/compare.png``. Exit status: 0 done, 1 a run failed, 2 bad arguments (one line), 130
interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alarms import SpecError, load_spec, read_spec_document
from rehearsal import _arguments as arguments
from rehearsal import schedule as schedules
from rehearsal.files import claim, write_atomic
from rehearsal.model import DEFAULT_SPEC, Options
from rehearsal.supervisor import Interrupted

CONFIGS = (
    "CodeDeployDefault.ECSAllAtOnce",
    "CodeDeployDefault.ECSCanary10Percent5Minutes",
    "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
)


@dataclass(frozen=True)
class Setup:
    """A detection setup: which alarms roll back (profile, ratio alarms or not) and the judge."""

    name: str
    label: str
    profile: str = "rehearsal"
    ratio_alarms: bool = True
    alarms: bool = True
    judge: bool = False


SETUPS = {
    s.name: s
    for s in (
        Setup("static-1m", "static alarms, 60 s periods", "production", ratio_alarms=False),
        Setup("alarms-10s", "packaged alarms, 10 s periods"),
        Setup("judge", "packaged defaults: 10 s alarms + judge", judge=True),
        Setup("judge-only", "judge alone", alarms=False, judge=True),
    )
}
DEFAULT_SETUPS = ("static-1m", "alarms-10s", "judge")
#: Per run, beyond its schedule: versions starting, the 5 s warm-up, 5 s of load after the
#: decision, the stopped version's drain, the safety check and the report. An undetected
#: regression is the slow case: the safety check then reads every history through the
#: rate-limited green (80-100 s measured).
OVERHEAD_S = 120.0


def _list(choices: tuple[str, ...] | dict[str, Any], canon: Any = None) -> Any:
    def parse(text: str) -> list[str]:
        items = [canon(t.strip()) if canon else t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        for item in items:
            if canon is None and item not in choices:
                raise argparse.ArgumentTypeError(
                    f"unknown {item!r} (choose from {', '.join(choices)})"
                )
        # A repeated item would run its cells twice into the same output directories, the
        # second overwriting the first, and count both in one cell of the summary.
        repeated = sorted({item for item in items if items.count(item) > 1})
        if repeated:
            raise argparse.ArgumentTypeError(f"{', '.join(repeated)} given more than once")
        return items

    return parse


def _runs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = arguments.Parser(
        label="rehearsal compare",
        prog="python -m rehearsal compare",
        description=(
            "The same regression under several deployment configurations and detection setups, "
            "side by side: when it was detected, how many requests and users green harmed, and "
            "how long a healthy deployment of the same configuration takes."
        ),
    )
    p.add_argument("--configs", type=_list((), schedules.canonical), default=list(CONFIGS),
                   metavar="A,B", help="deployment configurations (default: all-at-once, "
                   "canary 10%% 5 min, linear 10%% every minute)")  # fmt: skip
    p.add_argument("--detection", type=_list(SETUPS), default=list(DEFAULT_SETUPS),
                   metavar="A,B", help=f"detection setups among {', '.join(SETUPS)} "
                   f"(default: {','.join(DEFAULT_SETUPS)})")  # fmt: skip
    p.add_argument("--runs", type=_runs, default=1, metavar="N",
                   help="runs per cell (default: %(default)s)")  # fmt: skip
    p.add_argument("--time-scale", type=arguments.time_scale, default=0.75, metavar="X",
                   help="deployment time scale, as the rehearsal's (default: %(default)s)")  # fmt: skip
    p.add_argument("--bake", type=arguments.bake, default=60.0, metavar="SECONDS",
                   help="bake time before scaling (default: %(default)s)")  # fmt: skip
    p.add_argument("--out", type=arguments.out_dir, default=Path("out/compare"), metavar="DIR",
                   help="output directory (default: %(default)s)")  # fmt: skip
    p.add_argument("--max-minutes", type=arguments.number(0, arguments.MAX_MINUTES, above=True),
                   default=arguments.DEFAULT_MAX_MINUTES, metavar="M",
                   help="refuse a matrix that could last longer (default: %(default)s)")  # fmt: skip
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC, metavar="FILE",
                   help="alarm spec (default: the packaged one)")  # fmt: skip
    return p


def _spec_without_ratios(spec: Path, out: Path) -> Path:
    """A copy of ``spec`` with ``baseline: false``: static thresholds only."""
    import yaml

    # read as the alarms read it: YAML 1.1 would take ``1e3`` for text and write it back quoted
    data = read_spec_document(spec)
    data["baseline"] = False
    path = out / "spec-static.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def bound_s(configs: list[str], setups: list[str], runs: int, scale: float, bake: float) -> float:
    """The longest the matrix can take: every run to the end of its schedule, plus overhead."""
    per = [schedules.build(c, time_scale=scale, bake_s=bake).total_s for c in configs]
    return runs * len(setups) * sum(t + OVERHEAD_S for t in per)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (configuration, setup): medians over its runs."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["config"], row["detection"]), []).append(row)
    out = []
    for (config, detection), runs in cells.items():
        detected = [r for r in runs if r["outcome"] == "rolled_back"]
        out.append(
            {
                "config": config,
                "detection": detection,
                "runs": len(runs),
                "detected": len(detected),
                "detection_s": _median([r["detection_s"] for r in detected]),
                "green_percent": _median([r["green_percent"] for r in detected]),
                "harmed_requests": _median([r["harmed_requests"] for r in runs]),
                "harmed_users": _median([r["harmed_users"] for r in runs]),
                "healthy_s": runs[0]["healthy_s"],
                "healthy_scaled_s": runs[0]["healthy_scaled_s"],
            }
        )
    return out


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:.1f}" if value % 1 else f"{value:.0f}"
    return f"{value}{unit}"


def table(summary: list[dict[str, Any]]) -> str:
    """The comparison as a plain-text table."""
    head = ("configuration", "detection", "detected", "after", "at green", "harmed req",
            "harmed users", "healthy takes")  # fmt: skip
    lines = [head]
    for s in summary:
        lines.append(
            (
                s["config"].removeprefix("CodeDeployDefault."),
                s["detection"],
                f"{s['detected']}/{s['runs']}",
                _fmt(s["detection_s"], " s"),
                _fmt(s["green_percent"], " %"),
                # Not detected: the harm went on after the run ended; the count is a floor.
                ("" if s["detected"] else ">=") + _fmt(s["harmed_requests"]),
                ("" if s["detected"] else ">=") + _fmt(s["harmed_users"]),
                f"{_fmt(s['healthy_s'], ' s')} ({_fmt(s['healthy_scaled_s'], ' s')} scaled)",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    )


def _short_config(name: str) -> str:
    """``CodeDeployDefault.ECSLinear10PercentEvery1Minutes`` -> ``Linear 10%\nevery 1 min``."""
    import re

    short = name.removeprefix("CodeDeployDefault.ECS")
    short = re.sub(r"(\d+)Percent", r" \1%", short)
    short = re.sub(r"Every(\d+)Minutes?", r"\nevery \1 min", short)
    return re.sub(r"(\d+)Minutes?", r"\n\1 min", short)


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    """Harmed requests (log scale) and detection time per configuration, one bar per setup."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(s["config"] for s in summary))
    setups = list(dict.fromkeys(s["detection"] for s in summary))
    cell = {(s["config"], s["detection"]): s for s in summary}
    width = 0.8 / max(1, len(setups))
    fig, (ax_h, ax_d) = plt.subplots(1, 2, figsize=(13, 4.8))
    for i, setup in enumerate(setups):
        xs = [c + (i - (len(setups) - 1) / 2) * width for c in range(len(configs))]
        harmed = [(cell.get((c, setup)) or {}).get("harmed_requests") for c in configs]
        found = [(cell.get((c, setup)) or {}).get("detection_s") for c in configs]
        bars = ax_h.bar(xs, [max(h or 0, 0.5) for h in harmed], width, label=setup)
        for bar, h, f in zip(bars, harmed, found, strict=True):
            # Not detected: the harm went on after the run ended, so the count is a floor.
            text = _fmt(h) if f is not None or h is None else f">={_fmt(h)}"
            ax_h.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          ha="center", va="bottom", fontsize=8)  # fmt: skip
        ax_d.bar(xs, [f if f is not None else 0 for f in found], width, label=setup)
        for x, f in zip(xs, found, strict=True):
            if f is None:
                ax_d.annotate("not\ndetected", (x, 0), ha="center", va="bottom", fontsize=7)
    names = [_short_config(c) for c in configs]
    for ax, title in (
        (ax_h, "Harmed requests served by green (median; log scale)"),
        (ax_d, "Detection: seconds from green's first traffic (median)"),
    ):
        ax.set_xticks(range(len(configs)), names)
        ax.set_title(title, loc="left", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    ax_h.set_yscale("log")
    ax_h.set_ylim(bottom=0.5)
    ax_d.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_cell(config: str, setup: Setup, index: int, args: argparse.Namespace) -> dict[str, Any]:
    """One regression rehearsal of ``config`` under ``setup``; its figures."""
    from rehearsal.runner import run

    out = args.out / f"{config.removeprefix('CodeDeployDefault.')}-{setup.name}-{index}"
    out.mkdir(parents=True, exist_ok=True)
    spec = args.spec if setup.ratio_alarms else _spec_without_ratios(args.spec, args.out)
    options = Options(
        scenario="regression",
        out=out,
        deployment_config=config,
        time_scale=args.time_scale,
        bake_s=args.bake,
        spec=spec,
        progress=False,
        judge=setup.judge,
        alarm_rollback=setup.alarms,
        alarm_profile=setup.profile,
    )
    with (out / "console.txt").open("w") as log, contextlib.redirect_stdout(log):
        outcome = run(options)
    r, d = outcome.result, outcome.details
    return {
        "config": config,
        "detection": setup.name,
        "run": index,
        "out": str(out),
        "outcome": r["outcome"],
        "trigger": r["alarm"],
        "detection_s": r["alarm_time_s"],
        "green_percent": d.get("green_percent_at_alarm"),
        "harmed_requests": r["harm"]["harmed_requests"],
        "harmed_users": r["harm"]["harmed_users"],
        "healthy_s": schedules.build(config, time_scale=1.0, bake_s=args.bake).total_s,
        "healthy_scaled_s": schedules.build(
            config, time_scale=args.time_scale, bake_s=args.bake
        ).total_s,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for config in args.configs:
            schedules.build(config, time_scale=args.time_scale, bake_s=args.bake)
    except schedules.ConfigError as exc:
        print(f"rehearsal compare: error: {exc}", file=sys.stderr)
        return 2
    if not args.spec.is_file():
        print(f"rehearsal compare: error: alarm spec {str(args.spec)!r} does not exist",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        load_spec(args.spec)  # before any run: a bad spec would fail (or crash) only once started
    except SpecError as exc:
        print(f"rehearsal compare: error: --spec {str(args.spec)!r}: {exc}", file=sys.stderr)
        return 2
    bound = bound_s(args.configs, args.detection, args.runs, args.time_scale, args.bake)
    if bound > args.max_minutes * 60:
        print(
            f"rehearsal compare: error: this matrix could take up to {bound / 60:.0f} minutes, "
            f"above --max-minutes {args.max_minutes:g}; lower --runs or --time-scale, or raise "
            "--max-minutes",
            file=sys.stderr,
        )
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"rehearsal compare: error: --out {str(args.out)!r}: {exc}", file=sys.stderr)
        return 2
    busy = claim(args.out)  # its runs write into subdirectories another compare would reuse
    if busy:
        print(f"rehearsal compare: error: --out {str(args.out)!r}: {busy}", file=sys.stderr)
        return 2
    cells = [(c, SETUPS[s], i) for c in args.configs for s in args.detection
             for i in range(1, args.runs + 1)]  # fmt: skip
    print(
        f"compare: {len(cells)} regression rehearsals, one at a time (time scale "
        f"{args.time_scale:g}); at most {bound / 60:.1f} minutes, usually much less (a rollback "
        "ends a run early)",
        flush=True,
    )
    rows = []
    started = time.monotonic()
    try:
        for n, (config, setup, index) in enumerate(cells, 1):
            row = run_cell(config, setup, index, args)
            rows.append(row)
            print(
                f"  [{n}/{len(cells)}] {config.removeprefix('CodeDeployDefault.')} "
                f"{setup.name} #{index}: {row['outcome']} after {_fmt(row['detection_s'], ' s')}"
                f", {row['harmed_requests']} harmed requests ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    except (KeyboardInterrupt, Interrupted):
        print("rehearsal compare: interrupted; every child process was stopped", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, TimeoutError, OSError) as exc:
        print(f"rehearsal compare: a run failed: {exc}", file=sys.stderr)
        return 1
    summary = summarise(rows)
    write_atomic(
        args.out / "compare.json", json.dumps({"runs": rows, "summary": summary}, indent=2) + "\n"
    )
    plot(summary, args.out / "compare.png")
    print()
    print(table(summary))
    print(f"\nDetails: {args.out / 'compare.json'}\nPlot: {args.out / 'compare.png'}")
    return 0
