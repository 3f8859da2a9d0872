"""Write a rehearsal's outputs: ``result.json``, ``run.json``, ``evaluations.jsonl`` and a
self-contained ``report.html`` whose plots are inline SVG drawn with matplotlib (no network)."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rehearsal.collector import Collector
    from rehearsal.runner import Options, Outcome
    from rehearsal.safety import SafetyReport
    from rehearsal.schedule import Schedule
    from rehearsal.timeline import Timeline

COLORS = {"blue": "#1f77b4", "green": "#2ca02c"}
STATE_LEVEL = {"INSUFFICIENT_DATA": 0, "OK": 1, "ALARM": 2}
STATE_COLOR = {"INSUFFICIENT_DATA": "#bbbbbb", "OK": "#8fd18f", "ALARM": "#d62728"}


def result_document(
    options: Options, decision: dict[str, Any], timeline: Timeline
) -> dict[str, Any]:
    """The ``result.json`` document, with exactly the keys the rehearsal promises."""
    t0 = timeline.t0 or (timeline.traffic[0][0] if timeline.traffic else time.time())
    traffic = [[round(at - t0, 2), percent] for at, percent in timeline.traffic]
    totals = timeline.totals()
    return {
        "scenario": options.scenario,
        "deployment_config": options.deployment_config,
        "outcome": decision.get("outcome"),
        "alarm": decision.get("alarm"),
        "alarm_time_s": decision.get("alarm_time_s"),
        "traffic": traffic,
        "requests": totals["requests"],
        "errors": totals["errors"],
    }


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.find("<svg") :]  # drop the XML prolog and DOCTYPE: inline in HTML


def plot(
    timeline: Timeline,
    evaluations: list[dict[str, Any]],
    rollback_alarms: list[str],
    decision: dict[str, Any],
    latency_alarms: dict[str, float] | None = None,
) -> str:
    """The report's figure (latency, traffic, alarm states; the decision marked) as inline SVG."""
    import matplotlib.pyplot as plt

    fig = figure(timeline, evaluations, rollback_alarms, decision, latency_alarms)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def figure(
    timeline: Timeline,
    evaluations: list[dict[str, Any]],
    rollback_alarms: list[str],
    decision: dict[str, Any],
    latency_alarms: dict[str, float] | None = None,
) -> Any:
    """The report's matplotlib figure. ``latency_alarms``: rollback alarms on a millisecond
    metric and their thresholds; the value each evaluation saw is drawn over the latencies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = timeline.t0 or 0.0
    per_second = timeline.per_second()
    fig, (ax_lat, ax_traffic, ax_alarm) = plt.subplots(
        3,
        1,
        figsize=(11, 8.5),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 2, max(1.2, 0.35 * len(rollback_alarms))]},
    )
    for target, rows in sorted(per_second.items()):
        if not rows:
            continue
        xs = [r[0] for r in rows]
        color = COLORS.get(target, "#555555")
        ax_lat.plot(xs, [r[2] for r in rows], color=color, lw=1.2, label=f"{target} p50")
        ax_lat.plot(xs, [r[3] for r in rows], color=color, lw=1.2, ls="--", label=f"{target} p99")
        ax_traffic.plot(
            xs, [r[1] for r in rows], color=color, lw=0.8, alpha=0.6, label=f"{target} req/s"
        )
    # What the alarm itself judged: the service's EMF metric per 10 s period, and its threshold.
    markers = iter("ovs^D")
    for name, threshold in sorted((latency_alarms or {}).items()):
        points = [
            (float(e["epoch"]) - t0, float(e["value"]))
            for e in evaluations
            if e.get("alarm") == name and _num(e.get("epoch")) and _num(e.get("value"))
        ]
        if not points:
            continue
        marker = next(markers, "o")
        ax_lat.plot(
            [p[0] for p in points], [p[1] for p in points], ls="none", marker=marker, ms=5,
            color="#d62728", label=f"{_short(name, 40)} (alarm's value)",
        )  # fmt: skip
        ax_lat.axhline(threshold, color="#d62728", lw=0.8, ls=":")
        ax_lat.annotate(
            f"threshold {threshold:g} ms", (0, threshold), xycoords=("axes fraction", "data"),
            xytext=(4, 3), textcoords="offset points", color="#d62728", fontsize=8,
        )  # fmt: skip
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("latency at the listener (ms)")
    ax_lat.legend(loc="upper left", fontsize=7, ncol=3, framealpha=0.85)
    ax_lat.grid(True, which="both", alpha=0.3)

    traffic = [(at - t0, p) for at, p in timeline.traffic]
    end = max([r[0] for rows in per_second.values() for r in rows] or [1.0])
    if traffic:
        xs = [t for t, _ in traffic] + [end]
        ys = [p for _, p in traffic] + [traffic[-1][1]]
        ax_w = ax_traffic.twinx()
        ax_w.step(xs, ys, where="post", color=COLORS["green"], lw=2.2, label="green weight %")
        ax_w.step(
            xs, [100 - y for y in ys], where="post", color=COLORS["blue"], lw=2.2, alpha=0.5,
            label="blue weight %",
        )  # fmt: skip
        ax_w.set_ylim(-5, 105)
        ax_w.set_ylabel("weight (%)")
        ax_w.legend(loc="upper right", fontsize=8)
    ax_traffic.set_ylabel("requests/s")
    ax_traffic.legend(loc="upper left", fontsize=8)
    ax_traffic.grid(True, alpha=0.3)

    # Alarm states: one band per rollback alarm, coloured by the state after each evaluation.
    names = list(rollback_alarms) or sorted({e["alarm"] for e in evaluations})
    for row, name in enumerate(names):
        evs = [e for e in evaluations if e.get("alarm") == name and _num(e.get("epoch"))]
        for i, ev in enumerate(evs):
            start = float(ev["epoch"]) - t0
            stop = float(evs[i + 1]["epoch"]) - t0 if i + 1 < len(evs) else end
            ax_alarm.barh(
                row, max(stop - start, 0.5), left=start, height=0.7,
                color=STATE_COLOR.get(ev.get("state"), "#999999"), edgecolor="none",
            )  # fmt: skip
    ax_alarm.set_yticks(range(len(names)))
    ax_alarm.set_yticklabels([_short(n) for n in names], fontsize=7)
    ax_alarm.set_xlabel("seconds since green first took traffic")
    ax_alarm.set_title("rollback alarms (grey: no data, green: OK, red: ALARM)", fontsize=9)

    decided = decision.get("decided_at")
    if decided:
        x = decided - t0
        label = "rollback" if decision.get("outcome") == "rolled_back" else "blue terminated"
        color = "#d62728" if decision.get("outcome") == "rolled_back" else "#444444"
        for ax in (ax_lat, ax_traffic, ax_alarm):
            ax.axvline(x, color=color, lw=1.5, ls=":")
        ax_lat.annotate(
            f"{label} at {x:.0f} s", (x, 1), xycoords=("data", "axes fraction"),
            xytext=(4, -14), textcoords="offset points", color=color, fontsize=9,
        )  # fmt: skip
    for ax in (ax_lat, ax_traffic, ax_alarm):
        ax.axvline(0, color="#888888", lw=0.8)
    fig.tight_layout()
    return fig


def _latency_alarms(path: Path, names: list[str]) -> dict[str, float]:
    """Rollback alarms on a millisecond metric (plain metric alarms) and their thresholds."""
    try:
        defs = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for alarm in defs.get("MetricAlarms", []):
        if alarm.get("AlarmName") in names and alarm.get("Unit") == "Milliseconds":
            out[alarm["AlarmName"]] = float(alarm["Threshold"])
    return out


def _num(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _short(name: str, width: int = 48) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _locust_rows(out: Path) -> list[dict[str, str]]:
    path = out / "locust_stats.csv"
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.1f}" if math.isfinite(value) else "-"
    elif value is None:
        value = "-"
    return html.escape(str(value))


def _table(rows: list[list[Any]], header: list[str] | None = None) -> str:
    head = (
        "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    )
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def render_html(
    result: dict[str, Any],
    details: dict[str, Any],
    svg: str,
    transitions: list[dict[str, Any]],
    locust_rows: list[dict[str, str]],
    files: list[str],
) -> str:
    outcome = result["outcome"]
    badge = "#d62728" if outcome == "rolled_back" else "#2ca02c"
    headline = (
        f"Rolled back: {html.escape(str(result['alarm']))} went to ALARM "
        f"{result['alarm_time_s']} s after green first took traffic, at green "
        f"{details.get('green_percent_at_alarm')} %."
        if outcome == "rolled_back"
        else "Succeeded: no rollback alarm fired; all traffic on green, blue terminated."
    )
    safety = details.get("safety") or {}
    safety_line = (
        f"{'OK' if safety.get('ok') else 'FAILED'}: {safety.get('served_by')} serves "
        f"{safety.get('users')} users' balances; {safety.get('writes_checked')} acknowledged writes "
        f"checked, {safety.get('writes_by_other_version')} of them made by the other version."
        if safety
        else "not run"
    )
    problems = "".join(f"<li>{html.escape(p)}</li>" for p in safety.get("problems", []))
    summary_rows = [
        ["scenario", result["scenario"]],
        ["deployment configuration", result["deployment_config"]],
        ["time scale", details["options"]["time_scale"]],
        ["outcome", outcome],
        ["alarm", result["alarm"] or "-"],
        ["decision at (s)", result["alarm_time_s"] if result["alarm_time_s"] is not None else "-"],
        ["requests through the listener", result["requests"]],
        ["server errors (5xx, listener 502/503)", result["errors"]],
        ["traffic steps [t s, green %]", json.dumps(result["traffic"])],
    ]
    trans_rows = [
        [f"{t.get('t', 0):+.0f}", t.get("alarm"), t.get("previous_state"), t.get("state"),
         t.get("value"), t.get("reason", "")]
        for t in transitions
    ]  # fmt: skip
    locust = [
        [r.get("Type"), r.get("Name"), r.get("Request Count"), r.get("Failure Count"),
         r.get("50%"), r.get("99%"), _float(r.get("Requests/s"))]
        for r in locust_rows
    ]  # fmt: skip
    file_items = "".join(f"<li><code>{html.escape(f)}</code></li>" for f in files)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Rehearsal: {html.escape(result["scenario"])} - {html.escape(outcome or "")}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
.badge {{ display: inline-block; padding: .2em .7em; border-radius: .3em; color: #fff;
  background: {badge}; font-weight: 600; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; font-size: 13px; }}
td, th {{ border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }} svg {{ max-width: 100%; height: auto; }}
code {{ background: #f4f4f4; padding: 0 .2em; }}
</style></head><body>
<h1>Blue/green rehearsal <span class="badge">{html.escape(outcome or "")}</span></h1>
<p>{headline}</p>
{_table(summary_rows)}
<h2>Timeline</h2>
<p>Latency and request rate as clients saw them at the listener (like the ALB's per-target-group
metrics); alarm states as the alarms generated from the spec evaluated the services' EMF metrics.
Time 0 is when green first took traffic.</p>
{svg}
<h2>Rollback safety</h2>
<p>{html.escape(safety_line)}</p>
<ul>{problems}</ul>
<h2>Alarm state changes</h2>
<p>The rollback alarms' changes, and any alarm that went to ALARM; every evaluation of every alarm
is in <code>evaluations.jsonl</code>.</p>
{_table(trans_rows, ["t (s)", "alarm", "from", "to", "value", "reason"]) if trans_rows else "<p>None.</p>"}
<h2>Load (Locust)</h2>
{_table(locust, ["type", "name", "requests", "failures", "p50 ms", "p99 ms", "req/s"]) if locust else "<p>No Locust statistics.</p>"}
<h2>Files</h2>
<ul>{file_items}</ul>
</body></html>
"""


def write_outputs(
    options: Options,
    plan: Schedule,
    decision: dict[str, Any],
    timeline: Timeline,
    collector: Collector,
    safety: SafetyReport | None,
    details: dict[str, Any],
) -> Outcome:
    """Write every output file into ``options.out``; return the :class:`Outcome`."""
    from rehearsal.runner import Outcome

    out = options.out
    result = result_document(options, decision, timeline)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")

    t0 = timeline.t0 or 0.0
    evaluations = list(collector.evaluations)
    with (out / "evaluations.jsonl").open("w") as fh:
        for ev in evaluations:
            fh.write(json.dumps(ev, default=str) + "\n")
    watched = set(details.get("rollback_alarms", []))
    transitions = [
        {**ev, "t": float(ev["epoch"]) - t0}
        for ev in evaluations
        if ev.get("state") != ev.get("previous_state")
        and _num(ev.get("epoch"))
        and (ev.get("alarm") in watched or ev.get("state") == "ALARM")
    ]
    details = {
        **details,
        "outcome": decision.get("outcome"),
        "alarms_firing": decision.get("alarms_firing", []),
        "green_percent_at_alarm": decision.get("green_percent_at_alarm"),
        "decided_at": decision.get("decided_at"),
        "t0": timeline.t0,
        "totals": timeline.totals(),
        "emf_lines": dict(collector.emf_lines),
        "safety": safety.to_dict() if safety else None,
    }
    (out / "run.json").write_text(json.dumps(details, indent=2, default=str) + "\n")

    svg = plot(
        timeline,
        evaluations,
        details.get("rollback_alarms", []),
        decision,
        _latency_alarms(out / "alarms.json", details.get("rollback_alarms", [])),
    )
    files = sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and "points.db" not in p.name
    )
    report = out / "report.html"
    files = sorted({*files, "report.html"})
    report.write_text(
        render_html(result, details, svg, transitions, _locust_rows(out), files), encoding="utf-8"
    )
    return Outcome(result=result, report_path=report, safety=safety, details=details)
