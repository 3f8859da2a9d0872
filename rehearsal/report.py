"""Write a rehearsal's outputs: ``result.json``, ``run.json``, ``evaluations.jsonl`` and a
self-contained ``report.html`` whose plots are inline SVG drawn with matplotlib (no network)."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alarms import Evaluation
from rehearsal.model import (
    Decision,
    Options,
    Outcome,
    alarm_name_prefix,
    cloudwatch_reject_lines,
    is_reported_transition,
)
from rehearsal.progress import offset

if TYPE_CHECKING:
    from rehearsal.collector import Collector
    from rehearsal.safety import SafetyReport
    from rehearsal.schedule import Schedule
    from rehearsal.timeline import Timeline

COLORS = {"blue": "#1f77b4", "green": "#2ca02c"}
STATE_LEVEL = {"INSUFFICIENT_DATA": 0, "OK": 1, "ALARM": 2}
STATE_COLOR = {"INSUFFICIENT_DATA": "#bbbbbb", "OK": "#8fd18f", "ALARM": "#d62728"}


def result_document(options: Options, decision: Decision, timeline: Timeline) -> dict[str, Any]:
    """The ``result.json`` document, with exactly the keys the rehearsal promises."""
    t0 = timeline.t0 or (timeline.traffic[0][0] if timeline.traffic else time.time())
    traffic = [[round(at - t0, 2), percent] for at, percent in timeline.traffic]
    totals = timeline.totals()
    return {
        "scenario": options.scenario,
        "deployment_config": options.deployment_config,
        "outcome": decision.outcome,
        "alarm": decision.alarm,
        "alarm_time_s": decision.alarm_time_s,
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
    evaluations: Sequence[Evaluation],
    rollback_alarms: list[str],
    decision: Decision,
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
    evaluations: Sequence[Evaluation],
    rollback_alarms: list[str],
    decision: Decision,
    latency_alarms: dict[str, float] | None = None,
) -> Any:
    """The report's matplotlib figure. ``latency_alarms``: rollback alarms on a millisecond
    metric and their thresholds; the value each evaluation saw is drawn over the latencies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    t0 = timeline.t0 or 0.0
    per_second = timeline.per_second()
    names = list(rollback_alarms) or sorted({e.alarm for e in evaluations})
    with plt.rc_context({"font.size": 10, "axes.titlesize": 10, "axes.titleweight": "bold"}):
        fig, (ax_lat, ax_rps, ax_w, ax_alarm) = plt.subplots(
            4,
            1,
            figsize=(12, 10 + 0.3 * len(names)),
            sharex=True,
            gridspec_kw={"height_ratios": [3.2, 1.4, 1.1, max(1.2, 0.4 * len(names))]},
        )
        _draw(fig, (ax_lat, ax_rps, ax_w, ax_alarm), timeline, per_second, t0, evaluations,
              names, decision, latency_alarms or {}, blended_transform_factory)  # fmt: skip
    return fig


def _legend(ax: Any) -> None:
    # Outside the plot, on the right: a legend never hides the lines it explains.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)


def _draw(
    fig: Any,
    axes: tuple[Any, Any, Any, Any],
    timeline: Timeline,
    per_second: dict[str, list[tuple[float, int, float, float]]],
    t0: float,
    evaluations: Sequence[Evaluation],
    names: list[str],
    decision: Decision,
    latency_alarms: dict[str, float],
    blended: Any,
) -> None:
    ax_lat, ax_rps, ax_w, ax_alarm = axes
    end = max([r[0] for rows in per_second.values() for r in rows] or [1.0])
    start = min([r[0] - 0.5 for rows in per_second.values() for r in rows] or [0.0])
    # The run's last second is cut short: its request count would look like a sudden drop.
    per_second = {t: [r for r in rows if r[0] < end] for t, rows in per_second.items()}

    # 1. Latency per version, per second, as clients saw it at the listener.
    ax_lat.set_title("Latency per version at the listener (p50 solid, p99 dashed; log scale)",
                     loc="left", pad=20)  # fmt: skip
    for target, rows in sorted(per_second.items()):
        rows = _gaps_filled(rows)
        xs = [r[0] for r in rows]
        color = COLORS.get(target, "#555555")
        ax_lat.plot(xs, [r[2] for r in rows], color=color, lw=1.6, label=f"{target} p50")
        ax_lat.plot(xs, [r[3] for r in rows], color=color, lw=1.2, ls="--", label=f"{target} p99")
        ax_rps.plot(xs, [r[1] for r in rows], color=color, lw=1.4, label=target)
    # What the alarm itself judged: the service's EMF metric per period, and its threshold.
    markers = iter("ovs^D")
    for name, threshold in sorted(latency_alarms.items()):
        short = _short(name.removeprefix(alarm_name_prefix(names)), 32)
        points = [
            (e.time - t0, e.value)
            for e in evaluations
            if e.alarm == name and e.value is not None and _num(e.value)
        ]
        marker = next(markers, "o")
        if points:
            ax_lat.plot(
                [p[0] for p in points], [p[1] for p in points], ls="none", marker=marker, ms=6,
                color="#d62728", label=f"{short}: alarm's value",
            )  # fmt: skip
        ax_lat.axhline(threshold, color="#d62728", lw=0.9, ls=":")
        ax_lat.annotate(
            f"{short} threshold {_exact(threshold)} ms", (0, threshold),
            xycoords=("axes fraction", "data"), xytext=(4, 3), textcoords="offset points",
            color="#d62728", fontsize=8,
        )  # fmt: skip
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("ms")
    ax_lat.grid(True, which="major", alpha=0.4)
    ax_lat.grid(True, which="minor", alpha=0.12)
    _legend(ax_lat)

    # 2. Requests per second per version.
    ax_rps.set_title("Requests per second per version", loc="left")
    ax_rps.set_ylabel("req/s")
    ax_rps.set_ylim(bottom=0)
    ax_rps.grid(True, alpha=0.3)
    _legend(ax_rps)

    # 3. The listener's weights: green's share, blue has the rest.
    ax_w.set_title("Traffic weight (share of requests sent to each version)", loc="left")
    traffic = [(at - t0, p) for at, p in timeline.traffic]
    if traffic:
        xs = [t for t, _ in traffic] + [end]
        ys = [p for _, p in traffic] + [traffic[-1][1]]
        ax_w.fill_between(xs, ys, step="post", color=COLORS["green"], alpha=0.35, lw=0)
        ax_w.step(xs, ys, where="post", color=COLORS["green"], lw=2, label="green %")
        ax_w.step(xs, [100 - y for y in ys], where="post", color=COLORS["blue"], lw=2,
                  label="blue %")  # fmt: skip
        for (x, p), nxt in zip(traffic, [*traffic[1:], (end, None)], strict=True):
            if nxt[0] - x > 0.08 * (end - start):  # label each step wide enough to hold it
                ax_w.annotate(f"green {p}%", (x, p), xytext=(4, 4 if p < 60 else -12),
                              textcoords="offset points", fontsize=8, color="#1a6e1a")  # fmt: skip
    ax_w.set_ylim(-5, 105)
    ax_w.set_yticks([0, 50, 100])
    ax_w.set_ylabel("%")
    ax_w.grid(True, alpha=0.3)
    _legend(ax_w)

    # 4. Alarm states: one band per rollback alarm; no data until its first evaluation.
    ax_alarm.set_title("Rollback alarms, as evaluated live", loc="left")
    for row, name in enumerate(names):
        ax_alarm.barh(row, end - start, left=start, height=0.7,
                      color=STATE_COLOR["INSUFFICIENT_DATA"], edgecolor="none")  # fmt: skip
        evs = [e for e in evaluations if e.alarm == name]
        for i, ev in enumerate(evs):
            left = ev.time - t0
            stop = evs[i + 1].time - t0 if i + 1 < len(evs) else end
            ax_alarm.barh(
                row, max(stop - left, 0.5), left=left, height=0.7,
                color=STATE_COLOR.get(ev.state, "#999999"), edgecolor="none",
            )  # fmt: skip
        # The name inside its band (not as a tick label): the plots keep their full width.
        ax_alarm.text(start, row, f"  {name}", va="center", ha="left", fontsize=8.5)
    ax_alarm.set_yticks([])
    ax_alarm.set_ylim(-0.6, len(names) - 0.4)
    ax_alarm.set_xlabel("seconds since green first took traffic")
    from matplotlib.patches import Patch

    ax_alarm.legend(
        handles=[Patch(color=STATE_COLOR[s], label=s) for s in ("OK", "ALARM", "INSUFFICIENT_DATA")],
        loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False,
    )  # fmt: skip

    every = (ax_lat, ax_rps, ax_w, ax_alarm)
    for ax in every:
        ax.axvline(0, color="#888888", lw=0.9)
        ax.tick_params(labelbottom=True)  # every panel keeps its time axis
    ax_lat.set_xlim(start, end + 0.5)
    decided = decision.decided_at
    if decided:
        x = decided - t0
        rolled_back = decision.rolled_back
        label = f"rollback at {x:.1f} s" if rolled_back else f"blue terminated at {x:.1f} s"
        color = "#d62728" if rolled_back else "#444444"
        for ax in every:
            ax.axvline(x, color=color, lw=1.8, ls="--")
        # Above the top panel, where no data is drawn.
        ax_lat.text(
            x, 1.0, f" {label} ", transform=blended(ax_lat.transData, ax_lat.transAxes),
            ha="center", va="bottom", color="#ffffff", fontsize=9, fontweight="bold",
            bbox={"boxstyle": "round,pad=0.25", "facecolor": color, "edgecolor": "none"},
        )  # fmt: skip
    ax_lat.text(
        0, 1.0, " green's first traffic ", transform=blended(ax_lat.transData, ax_lat.transAxes),
        ha="center", va="bottom", fontsize=8, color="#555555",
    )  # fmt: skip
    fig.tight_layout(h_pad=1.6)


def _gaps_filled(
    rows: list[tuple[float, int, float, float]],
) -> list[tuple[float, int, float, float]]:
    """Every second between a version's first and last request: a second without requests
    counts 0 and has no latency (NaN breaks the line instead of bridging the gap)."""
    if not rows:
        return rows
    have = {round(r[0] - 0.5): r for r in rows}
    first, last = min(have), max(have)
    return [have.get(sec, (sec + 0.5, 0, math.nan, math.nan)) for sec in range(first, last + 1)]


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


def _exact(x: float) -> str:
    """``x`` as given, never rounded: ``:g`` when that is exact (250, 0.75), else the full repr."""
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def _cell(value: Any) -> str:
    """A table cell: numbers exactly as given (a 0.75 time scale reads 0.75); measured figures
    are formatted where they are read."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        value = "-"
    elif isinstance(value, float):
        value = _exact(value)
    return html.escape(str(value))


def _table(rows: list[list[Any]], header: list[str] | None = None) -> str:
    head = (
        "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    )
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _rate(text: str | None) -> str | None:
    """Locust's measured requests/s (many digits) to one decimal."""
    try:
        return f"{float(text):.1f}" if text not in (None, "") else None
    except ValueError:
        return None


def render_html(
    result: dict[str, Any],
    details: dict[str, Any],
    svg: str,
    transitions: Sequence[Evaluation],
    locust_rows: list[dict[str, str]],
    files: list[str],
    safety: SafetyReport | None = None,
) -> str:
    """The report page. ``transitions``: the alarm state changes to list (see
    :func:`rehearsal.model.is_reported_transition`); ``details["t0"]`` is time 0."""
    outcome = result["outcome"]
    badge = "#d62728" if outcome == "rolled_back" else "#2ca02c"
    headline = (
        f"Rolled back: {html.escape(str(result['alarm']))} went to ALARM "
        f"{result['alarm_time_s']} s after green first took traffic, at green "
        f"{details.get('green_percent_at_alarm')} %."
        if outcome == "rolled_back"
        else "Succeeded: no rollback alarm fired; all traffic on green, blue terminated."
    )
    safety_line = safety.describe() if safety else "Not run."
    problems = "".join(
        f"<li>{html.escape(p)}</li>" for p in (safety.problems[:50] if safety else [])
    )
    door = one_way_door_html(details, safety)
    rejects = cloudwatch_rejects_html(result.get("cloudwatch_rejects"))
    t0 = details.get("t0") or 0.0
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
        [offset(e.time - t0).removesuffix("s"), e.alarm, e.previous_state, e.state, e.value_vs_threshold() or "-",
         e.reason]
        for e in transitions
    ]  # fmt: skip
    locust = [
        [r.get("Type"), r.get("Name"), r.get("Request Count"), r.get("Failure Count"),
         r.get("50%"), r.get("99%"), _rate(r.get("Requests/s"))]
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
{rejects}
{_table(summary_rows)}
<h2>Timeline</h2>
<p>Latency and request rate as clients saw them at the listener (like the ALB's per-target-group
metrics); alarm states as the alarms generated from the spec evaluated the services' EMF metrics.
Time 0 is when green first took traffic.</p>
{svg}
<h2>Data safety</h2>
<p>{html.escape(safety_line)}</p>
{door}
<ul>{problems}</ul>
<h2>Alarm state changes</h2>
<p>The rollback alarms' changes, and any alarm that went to ALARM; every evaluation of every alarm
is in <code>evaluations.jsonl</code>.</p>
{_table(trans_rows, ["t (s)", "alarm", "from", "to", "value (alarm when)", "reason"]) if trans_rows else "<p>None.</p>"}
<h2>Load (Locust)</h2>
{_table(locust, ["type", "name", "requests", "failures", "p50 ms", "p99 ms", "req/s"]) if locust else "<p>No Locust statistics.</p>"}
<h2>Files</h2>
<ul>{file_items}</ul>
</body></html>
"""


def cloudwatch_rejects_html(rejects: dict[str, Any] | None) -> str:
    """The warning about EMF CloudWatch would reject (``""`` when there was none)."""
    lines = cloudwatch_reject_lines(rejects, limit=20)
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(x.removeprefix('  - '))}</li>" for x in lines[1:])
    return f"<p><strong>{html.escape(lines[0])}</strong></p><ul>{items}</ul>"


def one_way_door_html(details: dict[str, Any], safety: SafetyReport | None) -> str:
    """The one-way door, when this deployment crossed one: a sentence on what it is, the
    guard's refusal that was overridden, and the reads the survivor failed."""
    door = details.get("one_way_door_guard") or {}
    if door.get("ok", True):
        return ""
    parts = [
        "<p><strong>One-way door.</strong> Green writes ledger records in a format blue cannot "
        "read, so once green has written, rolling back to blue cannot be safe: blue refuses "
        "(rather than misread) every user green wrote to. The safe path is two deployments: a "
        "prepare version that reads both formats and still writes the old one, then the "
        "activating version, which may only roll back to the prepare version.</p>",
        f"<p>The guard refused this deployment before any traffic shifted and was overridden: "
        f"<code>{html.escape(str(door.get('message')))}</code></p>",
    ]
    rows = [
        [u["user_id"], u["status"], ",".join(str(f) for f in u.get("formats_found") or []) or "-",
         ", ".join(u.get("records") or []) or "-", "; ".join(u.get("acknowledged") or [])]
        for u in (safety.unservable[:50] if safety else [])
    ]  # fmt: skip
    if rows:
        parts.append(
            _table(
                rows,
                [
                    "user",
                    "status",
                    "format",
                    "unreadable records",
                    "writes acknowledged to clients",
                ],
            )
        )
    return "\n".join(parts)


def write_outputs(
    options: Options,
    plan: Schedule,
    decision: Decision,
    timeline: Timeline,
    collector: Collector,
    safety: SafetyReport | None,
    details: dict[str, Any],
) -> Outcome:
    """Write every output file into ``options.out``; return the :class:`Outcome`."""
    out = options.out
    result = result_document(options, decision, timeline)
    # Was the rollback safe? (None when there was no rollback, or no check.)
    result["rollback_safe"] = safety.ok if safety is not None and decision.rolled_back else None
    result["data_safety"] = safety.to_dict() if safety is not None else None
    result["versions"] = {
        name: version["version"] for name, version in details.get("versions", {}).items()
    }
    result["one_way_door_guard"] = details.get("one_way_door_guard")
    result["cloudwatch_rejects"] = collector.cloudwatch_rejects()
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")

    evaluations = list(collector.evaluations)
    with (out / "evaluations.jsonl").open("w") as fh:
        for ev in evaluations:
            # replay's JSON shape, plus the time in epoch seconds
            fh.write(json.dumps({**ev.to_dict(), "epoch": ev.time}) + "\n")
    watched = set(details.get("rollback_alarms", []))
    transitions = [ev for ev in evaluations if is_reported_transition(ev, watched)]
    details = {
        **details,
        "outcome": decision.outcome,
        "alarms_firing": list(decision.alarms_firing),
        "green_percent_at_alarm": decision.green_percent_at_alarm,
        "decided_at": decision.decided_at,
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
        render_html(result, details, svg, transitions, _locust_rows(out), files, safety),
        encoding="utf-8",
    )
    return Outcome(result=result, report_path=report, safety=safety, details=details)


def write_two_phase(options: Options, outcomes: list[Outcome]) -> Outcome:
    """The ``two-phase`` summary: ``out/result.json`` (the last deployment's result, requests and
    errors summed over both, and ``phases``) and ``out/report.html`` linking each phase's report."""
    out = options.out
    last = outcomes[-1]
    phases = [
        {
            "phase": str(o.details["options"]["scenario"]).rpartition(":")[2],
            "out": o.report_path.parent.name,
            **o.result,
        }
        for o in outcomes
    ]
    result = {
        **last.result,
        "scenario": options.scenario,
        "requests": sum(o.result["requests"] for o in outcomes),
        "errors": sum(o.result["errors"] for o in outcomes),
        "phases": phases,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        [p["phase"], f"{p['versions'].get('blue')} -> {p['versions'].get('green')}", p["outcome"],
         p["alarm"] or "-", {True: "yes", False: "NO", None: "-"}[p["rollback_safe"]],
         (p["data_safety"] or {}).get("writes_checked", "-"), f"{p['out']}/report.html"]
        for p in phases
    ]  # fmt: skip
    header = ["phase", "deployment", "outcome", "alarm", "rollback safe",
              "acknowledged writes checked", "report"]  # fmt: skip
    table = _table(rows, header)
    safety = last.safety.describe() if last.safety else "Not run."
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rehearsal: two-phase deployment</title>
<style>body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; }}
td, th {{ border: 1px solid #ddd; padding: .25em .6em; }} table {{ border-collapse: collapse; }}
</style></head><body>
<h1>Two-phase (expand/contract) deployment</h1>
<p>The prepare version v2 reads ledger formats 1 and 2 and still writes 1; deployed and baked, it
is the version running when v3 activates format 2. v3 then regresses and rolls back to v2, which
reads what v3 wrote: the rollback is safe. (v3 straight after v1 is the one-way door the
<code>breaking</code> scenario shows.)</p>
{table}
<h2>Data safety after the last deployment</h2>
<p>{html.escape(safety)}</p>
</body></html>
"""
    report = out / "report.html"
    report.write_text(page, encoding="utf-8")
    details = {"phases": [o.details for o in outcomes]}
    (out / "run.json").write_text(json.dumps(details, indent=2, default=str) + "\n")
    return Outcome(
        result=result,
        report_path=report,
        safety=last.safety,
        details={**last.details, "phases": phases},
        writes=[w for o in outcomes for w in o.writes],
    )
