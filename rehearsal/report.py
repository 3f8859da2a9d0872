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
from urllib.parse import quote

from alarms import Evaluation, number_text
from rehearsal import explain as why
from rehearsal import harm as harms
from rehearsal.files import write_atomic
from rehearsal.judge import TRIGGER_NAME as JUDGE_TRIGGER
from rehearsal.judge import what_fired
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
    drain: tuple[str, float, float] | None = None,
) -> str:
    """The report's figure (latency, traffic, alarm states; the decision and the loser's drain
    marked) as inline SVG."""
    import matplotlib.pyplot as plt

    fig = figure(timeline, evaluations, rollback_alarms, decision, latency_alarms, drain)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def figure(
    timeline: Timeline,
    evaluations: Sequence[Evaluation],
    rollback_alarms: list[str],
    decision: Decision,
    latency_alarms: dict[str, float] | None = None,
    drain: tuple[str, float, float] | None = None,
) -> Any:
    """The report's matplotlib figure. ``latency_alarms``: rollback alarms on a millisecond
    metric and their thresholds; the value each evaluation saw is drawn over the latencies.
    ``drain``: (version, from, stopped at), epoch seconds: shaded on every panel."""
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
        _mark_drain((ax_lat, ax_rps, ax_w, ax_alarm), drain, t0)
        _unit_ticks(ax_lat, ax_alarm)
    return fig


def _mark_drain(axes: Sequence[Any], drain: tuple[str, float, float] | None, t0: float) -> None:
    """Shade the stopped version's drain: it gets no new requests and finishes its own."""
    if drain is None:
        return
    name, start, stop = drain
    for i, ax in enumerate(axes):
        ax.axvspan(start - t0, stop - t0, color="#999999", alpha=0.15, lw=0,
                   label=f"{name} draining, then stopped" if i == 0 else None)  # fmt: skip
    _legend(axes[0])


def _ms(value: float, _pos: Any = None) -> str:
    """A latency tick: ``5 ms``, ``250 ms``, ``2 s``."""
    if value >= 1000:
        return f"{value / 1000:g} s"
    return f"{value:g} ms"


def _unit_ticks(ax_lat: Any, ax_time: Any) -> None:
    """Tick labels with their units: latencies in ms/s, times in s."""
    from matplotlib.ticker import FuncFormatter

    ax_lat.yaxis.set_major_formatter(FuncFormatter(_ms))
    ax_lat.yaxis.set_minor_formatter(FuncFormatter(lambda v, p: ""))
    ax_lat.set_ylabel("latency")
    for ax in ax_lat.figure.axes:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, p: f"{v:+g} s" if v else "0"))
    ax_time.set_xlabel("time since green first took traffic")


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
            f"{short} threshold {number_text(threshold)} ms", (0, threshold),
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


def _judge_html(judge: dict[str, Any] | None) -> str:
    """The judge's deciding judgement (its last failing one, else its last), metric by metric."""
    if not judge or not judge.get("judgements"):
        return ""
    judgements = judge["judgements"]
    failing = [j for j in judgements if j["result"] == "Fail"]
    j = failing[-1] if failing else judgements[-1]
    rows = [
        [m["name"], m["classification"], m["baseline_n"], m["canary_n"], m["baseline_median"],
         m["canary_median"], m["p_value"], m["effect"], m["tolerance"]]
        for m in j["metrics"]
    ]  # fmt: skip
    head = (
        f"<p>Judge (green against blue, Mann-Whitney U): {html.escape(j['result'])}, score "
        f"{_cell(j['score'])} at {_cell(j['t'])} s; {len(failing)} failing of "
        f"{len(judgements)} judgements.</p>"
    )
    return head + _table(
        rows,
        ["metric", "classification", "blue n", "green n", "blue median", "green median",
         "p-value", "effect", "tolerance"],
    )  # fmt: skip


def _throttled_apart(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Locust's rows with each route's ``[429]`` row (see ``loadtest.locustfile``) folded into a
    ``429`` column of the route's row; a route that only ever got 429 keeps a row of its own."""
    from loadtest import THROTTLED_SUFFIX

    plain = {(r.get("Type"), r.get("Name")): dict(r) for r in rows}
    out: dict[tuple[Any, Any], dict[str, str]] = {}
    refused = 0
    for key, row in plain.items():
        name = key[1] or ""
        if name.endswith(THROTTLED_SUFFIX):
            base = (key[0], name.removesuffix(THROTTLED_SUFFIX))
            empty = {"Type": key[0] or "", "Name": base[1], "Request Count": "0"}
            target = out.setdefault(base, plain.get(base) or empty)
            target["429"] = row.get("Request Count") or "0"
            refused += _int(target["429"])
        else:
            out.setdefault(key, row)
    # Locust's "Aggregated" row counts the 429 rows too: show them apart there as well.
    for key, row in out.items():
        if key[1] == "Aggregated":
            row["Request Count"] = str(_int(row.get("Request Count")) - refused)
            row["429"] = str(refused)
    return list(out.values())


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _cell(value: Any) -> str:
    """A table cell: numbers exactly as given (a 0.75 time scale reads 0.75); measured figures
    are formatted where they are read."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        value = "-"
    elif isinstance(value, float):
        value = number_text(value)
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


def _request_rows(requests: Sequence[why.SlowRequest]) -> str:
    """A request table (UTC time, route, status, duration in the service, what the client
    waited, trace id, user), then each request's span breakdown and log lines."""
    rows = [
        [why.utc(r.started_at), r.route, r.status if r.status is not None else "-",
         why.duration_text(r.duration_ms),
         why.duration_text(r.client_ms) if r.client_ms is not None else "-",
         r.trace_id, r.user or "-"]
        for r in requests
    ]  # fmt: skip
    table = _table(
        rows, ["UTC time", "route", "status", "duration", "client waited", "trace id", "user"]
    )
    details = "".join(
        f"<p><code>{html.escape(r.trace_id)}</code>: {html.escape(r.breakdown())}</p>"
        + (
            f'<pre class="logs">{html.escape(chr(10).join(r.log_lines))}</pre>'
            if r.log_lines
            else "<p><em>No log line with this trace id.</em></p>"
        )
        for r in requests
    )
    return table + details


def render_explanation(e: why.Explanation) -> str:
    """The "Why it rolled back" section: the alarms that fired, the requests behind them (joined
    with ``traces.jsonl`` and the version's log by trace id), and the grey alarms in words."""
    if not e.fired and e.judged is None:
        return ""
    parts = ['<div class="why"><h2>Why it rolled back</h2><ul>']
    if e.judged is not None:
        parts.append(
            f"<li>{html.escape(e.judged.line)}; judged window {why.utc(e.judged.window[0])} - "
            f"{why.utc(e.judged.window[1])}, decision {why.utc(e.judged.decided_at)}</li>"
        )
    parts += [f"<li>{html.escape(f.line())}</li>" for f in e.fired]
    parts.append("</ul>")
    version = html.escape(e.version or "the new version")
    starts = [f.window[0] for f in e.fired] + ([e.judged.window[0]] if e.judged else [])
    decided = e.fired[0].decided_at if e.fired else e.judged.decided_at  # type: ignore[union-attr]
    window = f"{why.utc(min(starts))} - {why.utc(decided)}"
    what = (
        "the breaching periods and the judged window"
        if e.fired and e.judged
        else ("the breaching periods" if e.fired else "the judged window")
    )
    parts.append(
        f"<p>{e.requests_in_window} request(s) of {version} ended in {what} "
        f"({window}); spans from <code>traces.jsonl</code>, log lines from the version's log, "
        "joined by trace id.</p>"
    )
    if e.slowest:
        parts.append(f"<h3>Slowest requests of {version}</h3>" + _request_rows(e.slowest))
    if e.failed:
        parts.append(f"<h3>Failed requests of {version}</h3>" + _request_rows(e.failed))
    elif e.slowest:
        parts.append(f"<p>No request of {version} failed (5xx or 429) in those periods.</p>")
    if e.grey:
        parts.append("<h3>Rollback alarms that were grey (INSUFFICIENT_DATA)</h3><ul>")
        parts += [f"<li><b>{html.escape(g.name)}</b>: {html.escape(g.why)}</li>" for g in e.grey]
        parts.append("</ul>")
    for note in e.notes:
        parts.append(f"<p><em>{html.escape(note)}</em></p>")
    if e.unreadable_trace_lines:
        parts.append(
            f"<p><em>{e.unreadable_trace_lines} line(s) of traces.jsonl could not be read.</em></p>"
        )
    parts.append("</div>")
    return "".join(parts)


def render_html(
    result: dict[str, Any],
    details: dict[str, Any],
    svg: str,
    transitions: Sequence[Evaluation],
    locust_rows: list[dict[str, str]],
    files: list[str],
    safety: SafetyReport | None = None,
    explanation: why.Explanation | None = None,
) -> str:
    """The report page. ``transitions``: the alarm state changes to list (see
    :func:`rehearsal.model.is_reported_transition`); ``details["t0"]`` is time 0;
    ``explanation``: the "Why it rolled back" section, right under the decision."""
    outcome = result["outcome"]
    badge = "#d62728" if outcome == "rolled_back" else "#2ca02c"
    headline = (
        f"Rolled back: {html.escape(what_fired(result['alarm']))} "
        f"{result['alarm_time_s']} s after green first took traffic, at green "
        f"{details.get('green_percent_at_alarm')} %."
        if outcome == "rolled_back"
        else "Succeeded: no rollback alarm fired; all traffic on green, blue terminated."
    )
    harm = result.get("harm")
    harm_html = ""
    if harm:
        harm_rows = [
            [name, h["requests"], h["server_errors"], h["throttled"], h["slow"], h["harmed"],
             h["users_harmed"], f"{h['worst_wait_ms'] / 1000:.2f}"]
            for name, h in [*harm["by_version"].items(), ("whole run", harm["total"])]
        ]  # fmt: skip
        harm_html = f"<p>{html.escape(harms.describe(harm))}</p>" + _table(
            harm_rows,
            ["version", "requests", "5xx", "429", f"slower than {number_text(harm['objective_ms'])} ms",
             "harmed", "users harmed", "worst wait (s)"],
        )  # fmt: skip
    harm_html += _judge_html(details.get("judge"))
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
         r.get("429", "0"), r.get("50%"), r.get("99%"), _rate(r.get("Requests/s"))]
        for r in _throttled_apart(locust_rows)
    ]  # fmt: skip
    file_items = "".join(
        f'<li><a href="{html.escape(quote(f))}"><code>{html.escape(f)}</code></a></li>'
        for f in files
    )
    why_section = render_explanation(explanation) if explanation is not None else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Rehearsal: {html.escape(result["scenario"])} - {html.escape(outcome or "")}</title>
<style>
{_page_css(badge)}
.why {{ border-left: 4px solid #d62728; padding: .2em 1em; background: #fdf3f3; }}
pre.logs {{ font-size: 11px; white-space: pre-wrap; word-break: break-all; margin: .2em 0 .6em;
  background: #f7f7f7; padding: .4em; }}
</style></head><body>
<h1>Blue/green rehearsal <span class="badge">{html.escape(outcome or "")}</span></h1>
<p>{headline}</p>
{harm_html}
{why_section}
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
{_table(locust, ["type", "name", "answered (not 429)", "failures", "429 (refused)", "p50 ms", "p99 ms", "req/s"]) if locust else "<p>No Locust statistics.</p>"}
<h2>Files</h2>
<ul>{file_items}</ul>
</body></html>
"""


def _page_css(badge: str) -> str:
    """The style both rehearsal reports share (the API's and the worker's); ``badge``: the
    outcome badge's colour."""
    return (
        "body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; "
        "color: #222; }\n"
        ".badge { display: inline-block; padding: .2em .7em; border-radius: .3em; color: #fff;\n"
        f"  background: {badge}; font-weight: 600; }}\n"
        "table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: 13px; }\n"
        "td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: left; "
        "vertical-align: top; }\n"
        "th { background: #f4f4f4; } svg { max-width: 100%; height: auto; }\n"
        "code { background: #f4f4f4; padding: 0 .2em; }"
    )


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
    records = timeline.all_records()
    result["harm"] = harms.account(records, details.get("latency_objective_ms") or 250.0)
    harms.write_requests(out / "requests.jsonl", records)
    write_atomic(out / "result.json", json.dumps(result, indent=2) + "\n")

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
    write_atomic(out / "run.json", json.dumps(details, indent=2, default=str) + "\n")

    drain = details.get("drain") or {}
    svg = plot(
        timeline,
        evaluations,
        details.get("rollback_alarms", []),
        decision,
        _latency_alarms(out / "alarms.json", details.get("rollback_alarms", [])),
        (drain["version"], drain["from"], drain["stopped_at"])
        if drain.get("from") and drain.get("stopped_at")
        else None,
    )
    explanation = _explanation(out, decision, evaluations, details)
    files = sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and "points.db" not in p.name
    )
    report = out / "report.html"
    files = sorted({*files, "report.html"})
    write_atomic(
        report,
        render_html(
            result, details, svg, transitions, _locust_rows(out), files, safety, explanation
        ),
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
    write_atomic(out / "result.json", json.dumps(result, indent=2) + "\n")
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
    write_atomic(report, page)
    details = {"phases": [o.details for o in outcomes]}
    write_atomic(out / "run.json", json.dumps(details, indent=2, default=str) + "\n")
    return Outcome(
        result=result,
        report_path=report,
        safety=last.safety,
        details={**last.details, "phases": phases},
        writes=[w for o in outcomes for w in o.writes],
    )


def _judged(decision: Decision, details: dict[str, Any]) -> why.JudgedWindow | None:
    """The judge's deciding judgement from ``run.json``'s ``judge`` section, if it fired."""
    if JUDGE_TRIGGER not in decision.alarms_firing:
        return None
    t0 = details.get("t0") or 0.0
    failing = [
        j
        for j in (details.get("judge") or {}).get("judgements", [])
        if j.get("result") == "Fail" and isinstance(j.get("t"), int | float)
    ]
    if not failing:
        return None
    last = failing[-1]
    start = last.get("window_start", last["t"])
    return why.JudgedWindow(
        line=str(last.get("line") or "judge Fail"),
        window=(t0 + start, t0 + last["t"]),
        decided_at=decision.decided_at,
    )


def _explanation(
    out: Path, decision: Decision, evaluations: Sequence[Evaluation], details: dict[str, Any]
) -> why.Explanation | None:
    """ "Why it rolled back", for a rollback (``None`` otherwise)."""
    if not decision.rolled_back:
        return None
    try:
        defs = json.loads((out / "alarms.json").read_text())
    except (OSError, ValueError):
        defs = {}
    side = (details.get("versions") or {}).get(decision.stopped)  # its label, e.g. v2
    return why.explain(
        judged=_judged(decision, details),
        out=out,
        defs=defs,
        evaluations=evaluations,
        firing=decision.alarms_firing,
        rollback_alarms=details.get("rollback_alarms", []),
        started_at=details.get("t0"),
        decided_at=decision.decided_at,
        version=side.get("version") if isinstance(side, dict) else side,
        log_name=decision.stopped,
    )
