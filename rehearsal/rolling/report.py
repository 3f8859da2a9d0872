"""The worker rehearsal's outputs: ``result.json``, ``run.json``, ``evaluations.jsonl`` and
``report.html`` (tasks per version, utilisation, backlog and message age, errors per version, the
rollback alarms' states, the harm and the exactly-once check)."""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alarms import Evaluation, decode_emf
from rehearsal.model import is_reported_transition
from rehearsal.report import _page_css, _svg, _table, cloudwatch_rejects_html
from rehearsal.rolling.model import RolloutDecision, RunData, WorkerOutcome

if TYPE_CHECKING:
    from rehearsal.rolling.exactly_once import ExactlyOnceReport
    from rehearsal.rolling.producer import Produced

STATE_COLOURS = {"INSUFFICIENT_DATA": "#bbbbbb", "OK": "#2ca02c", "ALARM": "#d62728"}


def _stats(value: Any) -> tuple[float, float, float] | None:
    """(sum, max, count) of one EMF metric value: a number, a list, or a Values/Counts or
    Min/Max/Sum/Count object; ``None`` when it is none of those."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value), float(value), 1.0
    if isinstance(value, list):
        nums = [float(v) for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
        return (sum(nums), max(nums), float(len(nums))) if nums else None
    if isinstance(value, dict):
        if "Values" in value and "Counts" in value:
            pairs = list(zip(value["Values"], value["Counts"], strict=False))
            if pairs:
                return (
                    sum(v * c for v, c in pairs),
                    max(v for v, _ in pairs),
                    float(sum(c for _, c in pairs)),
                )
        if {"Sum", "Max", "Count"} <= set(value):
            return float(value["Sum"]), float(value["Max"]), float(value["Count"])
    return None


def metric_series(lines: Iterable[str], t0: float) -> dict[str, dict[str, dict[float, float]]]:
    """Per-second series from EMF lines, seconds since ``t0``:
    ``{"backlog": {"queue": {t: max}}, "age": {"queue": {t: max}},
    "utilization": {version: {t: mean over tasks}}, "jobs"/"errors": {version: {t: sum}}}``."""
    acc: dict[str, dict[str, dict[float, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: [0.0, -math.inf, 0.0]))
    )
    wanted = {
        "QueueBacklog": "backlog",
        "MessageAge": "age",
        "WorkerUtilization": "utilization",
        "Jobs": "jobs",
        "JobErrors": "errors",
    }
    for line in lines:
        rec = decode_emf(line)
        if rec is None:
            continue
        try:
            t = round(float(rec["_aws"]["Timestamp"]) / 1000.0 - t0, 1)
        except (KeyError, TypeError, ValueError):
            continue
        key = str(rec.get("Version", "queue"))
        for metric, name in wanted.items():
            st = _stats(rec.get(metric))
            if st is None:
                continue
            cell = acc[name][key][t]
            cell[0] += st[0]
            cell[1] = max(cell[1], st[1])
            cell[2] += st[2]
    out: dict[str, dict[str, dict[float, float]]] = {}
    for name, by_key in acc.items():
        out[name] = {}
        for key, cells in by_key.items():
            if name in ("backlog", "age"):
                out[name][key] = {t: c[1] for t, c in sorted(cells.items())}
            elif name == "utilization":
                out[name][key] = {t: c[0] / c[2] for t, c in sorted(cells.items()) if c[2]}
            else:
                out[name][key] = {t: c[0] for t, c in sorted(cells.items())}
    return out


def harm(
    produced: Sequence[Produced],
    first_credit: Mapping[str, float],
    objective_s: float,
    dead_lettered: int,
    credited_twice: int,
    *,
    ledger: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    """The harm done to orders: credited later than ``objective_s`` after they were sent (or
    never), dead-lettered, credited more than once (must be 0); delay percentiles (seconds).

    ``first_credit``: order_id -> epoch s of its first credit log line. ``ledger``: order_id ->
    epoch s of its first grant in the store (``None``: time unreadable), the ground truth;
    ``None`` when the store could not be read. A task SIGKILLed after its stopTimeout loses the
    log lines still in its output buffer, so with the ledger an order is credited when the
    ledger has it, at its log line's time or, that line lost, at the ledger's ``created_at``
    (counted in ``credit_log_lines_missing``; an unreadable one leaves its delay out);
    ``never_credited`` counts the orders the ledger lacks. Without the ledger, the log lines
    alone, ``credits_from`` says so and ``credit_log_lines_missing`` is ``None``."""
    delays: list[float] = []
    never = missing_lines = 0
    for p in produced:
        logged = first_credit.get(p.order_id)
        if ledger is None:
            credited_at = logged
        elif p.order_id not in ledger:
            credited_at = None  # a log line the store contradicts is no credit
        elif logged is not None:
            credited_at = logged
        else:
            missing_lines += 1
            if (credited_at := ledger[p.order_id]) is None:
                continue  # credited, but when is unknown
        if credited_at is None:
            never += 1
        else:
            delays.append(credited_at - p.sent_at)
    delays.sort()

    def pct(q: float) -> float | None:
        if not delays:
            return None
        return round(delays[min(len(delays) - 1, math.ceil(q * len(delays)) - 1)], 3)

    return {
        "objective_s": objective_s,
        "delayed_past_objective": sum(1 for d in delays if d > objective_s) + never,
        "never_credited": never,
        "credits_from": "log lines" if ledger is None else "ledger",
        "credit_log_lines_missing": None if ledger is None else missing_lines,
        "dead_lettered": dead_lettered,
        "credited_twice": credited_twice,
        "delay_p50_s": pct(0.5),
        "delay_p99_s": pct(0.99),
        "delay_max_s": round(delays[-1], 3) if delays else None,
    }


def result_document(r: RunData, decision: RolloutDecision, exactly: ExactlyOnceReport | None,
                    details: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The ``result.json`` document."""
    o = r.options
    produced = r.produced
    return {
        "target": "worker",
        "scenario": o.scenario,
        "deployment": {
            "desired_count": o.tasks,
            "minimum_healthy_percent": o.min_healthy_percent,
            "maximum_percent": o.max_percent,
            "rounds": details["rounds"],
            "healthy_after_s": r.healthy_s,
            "bake_s": r.bake_s,
        },
        "outcome": decision.outcome,
        "alarm": decision.alarm,
        "alarm_time_s": decision.alarm_time_s,
        "round_at_decision": decision.round,
        "replaced_at_decision": decision.replaced,
        "new_tasks_at_decision": decision.new_tasks,
        "tasks": details["tasks"],
        "orders_produced": len(produced),
        "harm": harm(
            produced,
            # With the ledger, a duplicate line is no credit time: the store's is earlier.
            dict(r.credits.first if r.ledger_credits is None else r.credits.credited_at),
            o.delay_objective_s,
            r.credits.dead_lettered,
            len(exactly.credited_twice) if exactly else 0,
            ledger=r.ledger_credits,
        ),
        "exactly_once": bool(exactly and exactly.ok),
    }


def figure(
    series: dict[str, dict[str, dict[float, float]]],
    tasks: list[list[Any]],
    evaluations: Sequence[Evaluation],
    rollback_alarms: list[str],
    t0: float,
    decision_t: float | None,
    versions: tuple[str, str],
    thresholds: dict[str, float],
) -> Any:
    """Five panels on one time axis: tasks per version, utilisation per version, backlog and
    oldest message age, failed jobs per version, the rollback alarms' states."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {versions[0]: "#1f77b4", versions[1]: "#ff7f0e"}
    fig, axes = plt.subplots(5, 1, figsize=(11, 12), sharex=True,
                             gridspec_kw={"height_ratios": [1, 1.2, 1.2, 1, 1]})  # fmt: skip
    ax_tasks, ax_util, ax_queue, ax_err, ax_alarm = axes
    # tasks per version (steps)
    for v in versions:
        xs, ys = [], []
        for t, counts in tasks:
            xs.append(t)
            ys.append(counts.get(v, 0))
        if xs:
            ax_tasks.step(xs, ys, where="post", label=f"{v} tasks", color=colours[v])
    ax_tasks.set_ylabel("tasks")
    for v in versions:
        s = series.get("utilization", {}).get(v, {})
        if s:
            ax_util.plot(list(s), list(s.values()), ".-", ms=3, label=f"{v} utilization %",
                         color=colours[v])  # fmt: skip
    if "utilization" in thresholds:
        ax_util.axhline(thresholds["utilization"], color="#d62728", ls=":", label="alarm threshold")
    ax_util.set_ylabel("busy %")
    ax_util.set_ylim(-5, 105)
    backlog = series.get("backlog", {}).get("queue", {})
    age = series.get("age", {}).get("queue", {})
    if backlog:
        ax_queue.plot(list(backlog), list(backlog.values()), "-", label="backlog (visible)",
                      color="#9467bd")  # fmt: skip
    ax_queue.set_ylabel("messages")
    ax_queue.set_ylim(bottom=0)
    ax_age = ax_queue.twinx()
    if age:
        ax_age.plot(list(age), list(age.values()), ".", ms=3, label="message age max (s)",
                    color="#8c564b")  # fmt: skip
    ax_age.set_ylabel("age (s)")
    for v in versions:
        s = series.get("errors", {}).get(v, {})
        if s:
            ax_err.plot(list(s), list(s.values()), ".-", ms=3, label=f"{v} failed jobs/s",
                        color=colours[v])  # fmt: skip
        j = series.get("jobs", {}).get(v, {})
        if j:
            ax_err.plot(list(j), list(j.values()), "-", lw=0.8, alpha=0.5, label=f"{v} jobs/s",
                        color=colours[v])  # fmt: skip
    ax_err.set_ylabel("per second")
    # alarm states as coloured bars
    for i, name in enumerate(rollback_alarms):
        evs = sorted((e for e in evaluations if e.alarm == name), key=lambda e: e.time)
        for k, e in enumerate(evs):
            start = e.time - t0
            end = (evs[k + 1].time - t0) if k + 1 < len(evs) else start + 10
            ax_alarm.broken_barh([(start, end - start)], (i - 0.4, 0.8),
                                 color=STATE_COLOURS.get(e.state, "#bbbbbb"))  # fmt: skip
    ax_alarm.set_yticks(range(len(rollback_alarms)))
    ax_alarm.set_yticklabels([n.split("-worker-", 1)[-1] for n in rollback_alarms], fontsize=8)
    ax_alarm.set_xlabel("seconds since the first new task started")
    for ax in axes:
        if decision_t is not None:
            ax.axvline(decision_t, color="k", ls="--", lw=1)
        if ax is not ax_alarm:
            handles, labels = ax.get_legend_handles_labels()
            if ax is ax_queue:
                h2, l2 = ax_age.get_legend_handles_labels()
                handles, labels = handles + h2, labels + l2
            if handles:
                ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.08, 1), fontsize=8)
    if decision_t is not None:
        ax_tasks.annotate("decision", (decision_t, 1), xycoords=("data", "axes fraction"),
                          xytext=(3, 3), textcoords="offset points", fontsize=8)  # fmt: skip
    fig.tight_layout()
    return fig


def _not_checked(details: dict[str, Any]) -> str:
    """Why there is no exactly-once verdict."""
    if details.get("store_unreadable"):
        return f"Exactly-once NOT CHECKED: the store could not be read ({details['store_unreadable']})."
    return "Not run."


def render_html(result: dict[str, Any], details: dict[str, Any], svg: str,
                transitions: Sequence[Evaluation], exactly: ExactlyOnceReport | None,
                files: list[str]) -> str:  # fmt: skip
    outcome = result["outcome"]
    badge = "#d62728" if outcome == "rolled_back" else "#2ca02c"
    dep, h = result["deployment"], result["harm"]
    if outcome == "rolled_back":
        headline = (
            f"Rolled back: {result['alarm']} went to ALARM {result['alarm_time_s']} s after the "
            f"first new task started, in round {result['round_at_decision']} of "
            f"{len(dep['rounds'])}, with {result['replaced_at_decision']} of "
            f"{dep['desired_count']} old tasks replaced and {result['new_tasks_at_decision']} new "
            "tasks running."
        )
    else:
        headline = "Succeeded: no rollback alarm fired; every task runs the new version."
    t0 = details.get("t0") or 0.0
    options = details["options"]
    summary = [
        ["scenario", result["scenario"]],
        ["desired count, minimum healthy %, maximum %",
         f"{dep['desired_count']}, {dep['minimum_healthy_percent']}, {dep['maximum_percent']}"],
        ["rounds [stop old, start new]", json.dumps(dep["rounds"])],
        ["new task healthy after (s)", dep["healthy_after_s"]],
        ["bake (s)", dep["bake_s"]],
        ["time scale", options["time_scale"]],
        ["orders/s produced", options["rate"]],
        ["outcome", outcome],
        ["alarm", result["alarm"] or "-"],
        ["decision at (s)", result["alarm_time_s"] if result["alarm_time_s"] is not None else "-"],
        ["rollback rounds [stop new, start old]", json.dumps(details.get("rollback_rounds", []))],
        ["orders produced", result["orders_produced"]],
    ]  # fmt: skip
    harm_rows = [
        [f"credited later than {h['objective_s']} s after sent (or never)", h["delayed_past_objective"]],
        ["never credited" + (" (in the store's ledger)" if h["credits_from"] == "ledger" else
         " (by the tasks' log lines: the store could not be read)"), h["never_credited"]],
        ["credit times from the ledger (the task's log line was lost, e.g. SIGKILLed)",
         "-" if h["credit_log_lines_missing"] is None else h["credit_log_lines_missing"]],
        ["dead-lettered (gave up on the last receive)", h["dead_lettered"]],
        ["credited twice (must be 0)", h["credited_twice"]],
        ["delay sent -> credited p50 / p99 / max (s)",
         f"{h['delay_p50_s']} / {h['delay_p99_s']} / {h['delay_max_s']}"],
    ]  # fmt: skip
    trans_rows = [
        [f"{e.time - t0:+.0f}", e.alarm, e.previous_state, e.state, e.value_vs_threshold() or "-",
         e.reason]
        for e in transitions
    ]  # fmt: skip
    problems = "".join(
        f"<li>{html.escape(p)}</li>" for p in (exactly.problems[:50] if exactly else [])
    )
    file_items = "".join(f"<li><code>{html.escape(f)}</code></li>" for f in files)
    eo = exactly.describe() if exactly else _not_checked(details)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Worker rehearsal: {html.escape(result["scenario"])} - {html.escape(outcome)}</title>
<style>
{_page_css(badge)}
</style></head><body>
<h1>Worker rolling update rehearsal <span class="badge">{html.escape(outcome)}</span></h1>
<p>{html.escape(headline)}</p>
{cloudwatch_rejects_html(result.get("cloudwatch_rejects"))}
{_table(summary)}
<h2>Timeline</h2>
<p>Tasks per version, the versions' own EMF metrics (utilisation, failed jobs) and the queue's
(backlog, message age when received), and the worker rollback alarms generated from the spec as
the live evaluation saw them. Time 0 is when the first task of the new version started; the dashed
line is the decision.</p>
{svg}
<h2>Harm</h2>
{_table(harm_rows)}
<h2>Exactly-once credit</h2>
<p>{html.escape(eo)}</p>
<ul>{problems}</ul>
<h2>Alarm state changes</h2>
{_table(trans_rows, ["t (s)", "alarm", "from", "to", "value (alarm when)", "reason"]) if trans_rows else "<p>None.</p>"}
<h2>Files</h2>
<ul>{file_items}</ul>
</body></html>
"""


def _threshold(defs_path: Path, name_suffix: str) -> float | None:
    try:
        defs = json.loads(defs_path.read_text())
    except (OSError, ValueError):
        return None
    for a in defs.get("MetricAlarms", []):
        if a.get("AlarmName", "").endswith(name_suffix):
            return float(a["Threshold"])
    return None


def write_outputs(r: RunData, decision: RolloutDecision, exactly: ExactlyOnceReport | None,
                  details: dict[str, Any]) -> WorkerOutcome:  # fmt: skip
    """Write every output file into ``r.options.out``; return the outcome."""
    import matplotlib.pyplot as plt

    out = r.options.out
    result = result_document(r, decision, exactly, details)
    result["cloudwatch_rejects"] = r.cloudwatch_rejects
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    evaluations = list(r.evaluations)
    with (out / "evaluations.jsonl").open("w") as fh:
        for ev in evaluations:
            fh.write(json.dumps({**ev.to_dict(), "epoch": ev.time}) + "\n")
    watched = set(r.rollback_alarms)
    transitions = [ev for ev in evaluations if is_reported_transition(ev, watched)]
    t0 = r.t0 or decision.decided_at
    details = {
        **details,
        "outcome": decision.outcome,
        "alarms_firing": list(decision.alarms_firing),
        "decided_at": decision.decided_at,
        "t0": t0,
        "alarms_monitored": r.monitoring,
        "emf_lines": dict(r.emf_lines),
        "credits": {
            "credited_by_version": dict(r.credits.by_version),
            "duplicates": r.credits.duplicates,
            "failed_jobs": r.credits.failed,
            "dead_lettered": r.credits.dead_lettered,
        },
        "producer_send_failures": r.send_failures,
        "exactly_once": exactly.to_dict() if exactly else None,
    }
    (out / "run.json").write_text(json.dumps(details, indent=2, default=str) + "\n")
    with (out / "emf.jsonl").open(encoding="utf-8") as fh:
        series = metric_series(fh, t0)
    util = _threshold(out / "alarms.json", "-worker-new-utilization")
    fig = figure(
        series,
        result["tasks"],
        evaluations,
        r.rollback_alarms,
        t0,
        decision.alarm_time_s,
        r.versions,
        {"utilization": util} if util is not None else {},
    )
    svg = _svg(fig)
    plt.close(fig)
    report = out / "report.html"
    files = sorted(
        {
            str(p.relative_to(out))
            for p in out.rglob("*")
            if p.is_file() and "points.db" not in p.name
        }
        | {"report.html"}
    )
    report.write_text(
        render_html(result, details, svg, transitions, exactly, files), encoding="utf-8"
    )
    return WorkerOutcome(result=result, report_path=report, exactly_once=exactly, details=details)
