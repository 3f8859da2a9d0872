"""Why it rolled back: the alarm that fired, the requests behind it and the alarms that stayed grey.

Metrics trigger a rollback; traces and logs explain it. :func:`explain` joins what a run left
behind into one typed :class:`Explanation` that the report renders (and
:func:`alarm_line` gives the console's ROLLBACK message the same sentence):

- the firing alarm's metric, statistic, version, value against the threshold, how many of its
  periods breached, and the UTC times of green's first traffic, the first breaching period (its
  start and end: periods are aligned to the clock) and the decision (from the alarm definitions and the live evaluations);
- the new version's slowest and failed requests in the breaching periods, each with its span
  breakdown ("1.9 s of 2.0 s waiting in the rate limiter") and its log lines, joined by trace id
  (``traces.jsonl`` and ``<version>.log``);
- in words, why a rollback alarm was grey (INSUFFICIENT_DATA).
"""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alarms import Evaluation, number_text, value_text
from rehearsal import harm, traces

#: Rows of each request table.
MAX_REQUESTS = 5
#: Log lines shown per request (its access line and application lines).
MAX_LOG_LINES = 6
#: Characters shown of one log line: a line of megabytes is not copied whole into the report.
MAX_LOG_LINE_CHARS = 4000
#: A client wait longer than the server span by at least this much (and 10 %) is said as time
#: queued before the service took the request (the listener's own hop costs about a millisecond).
QUEUED_MIN_MS = 50.0

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
_OP_TEXT = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}
_UNITS = {"Milliseconds": " ms", "Seconds": " s", "Percent": " %"}
#: How a child span's time reads in a breakdown.
_PHRASES = {
    "rate_limiter": "waiting in the rate limiter",
    "store.grant": "in the store (grant)",
    "store.redeem": "in the store (redemption)",
    "store.history": "in the store (history)",
}


def _version_of(dims: Sequence[Mapping[str, Any]]) -> str | None:
    """The ``Version`` dimension's value, or None."""
    return next((d.get("Value") for d in dims if d.get("Name") == "Version"), None)


def utc(epoch_s: float | None) -> str:
    """``2026-11-30 05:42:04.1 UTC``-style time of day: ``05:42:04.1Z`` (``-`` for None)."""
    if epoch_s is None:
        return "-"
    return time.strftime("%H:%M:%S", time.gmtime(epoch_s)) + f".{int(epoch_s * 10) % 10}Z"


def duration_text(ms: float) -> str:
    """``850 ms``, ``1.9 s``: milliseconds below a second, seconds above."""
    # rounded first: 999.6 ms reads 1.0 s, not "1000 ms"
    return f"{ms:.0f} ms" if round(ms) < 1000 else f"{ms / 1000:.1f} s"


@dataclass(frozen=True)
class AlarmFacts:
    """What an alarm watches, from its CloudWatch definition."""

    name: str
    metric: str  # "Latency", or a metric-math alarm's label ("Server error rate (%)")
    statistic: str  # "Average", "p90", or the expression ("100 * num / den")
    version: str | None  # the Version dimension's value (None: every version, or not ours)
    namespace: str
    unit: str  # " ms", " %", ""
    threshold: float
    comparison: str  # ">"
    period_s: int
    evaluation_periods: int
    datapoints_to_alarm: int
    low_sample_ignore: bool  # EvaluateLowSampleCountPercentile=ignore

    @classmethod
    def of(cls, alarm: Mapping[str, Any]) -> AlarmFacts:
        metrics = alarm.get("Metrics") or []
        queries = [q for q in metrics if "MetricStat" in q]
        stats = [q["MetricStat"] for q in queries]
        versions = {_version_of(s["Metric"].get("Dimensions") or []) for s in stats}
        version = (
            _version_of(alarm.get("Dimensions") or [])
            if not metrics
            # one version for every input, else none: "green / blue" is no one version's
            else (versions.pop() if len(versions) == 1 else None)
        )
        if metrics:
            shown = next((q for q in metrics if q.get("ReturnData", True)), metrics[0])
            metric = shown.get("Label") or shown.get("Expression") or shown["Id"]
            named = []
            for q in queries:
                ms = q["MetricStat"]
                own = _version_of(ms["Metric"].get("Dimensions") or [])
                # each input's version when they differ (green's and blue's)
                of = f" of {own}" if own and version is None else ""
                named.append(f"{q['Id']}: {ms['Metric']['MetricName']} {ms['Stat']}{of}")
            inputs = ", ".join(named)
            statistic = f"{shown.get('Expression', '')} ({inputs})".strip()
            namespace = stats[0]["Metric"].get("Namespace", "") if stats else ""
            period = max((int(s.get("Period", 0)) for s in stats), default=0)
        else:
            metric = alarm.get("MetricName", "")
            statistic = alarm.get("ExtendedStatistic") or alarm.get("Statistic", "")
            namespace = alarm.get("Namespace", "")
            period = int(alarm.get("Period", 0))
        unit = alarm.get("Unit") or ("Percent" if "%" in metric else "")
        n = int(alarm.get("EvaluationPeriods", 1))
        return cls(
            name=alarm["AlarmName"],
            metric=metric,
            statistic=statistic,
            version=version,
            namespace=namespace,
            unit=_UNITS.get(unit, ""),
            threshold=float(alarm.get("Threshold", 0.0)),
            comparison=str(alarm.get("ComparisonOperator", "")),
            period_s=period,
            evaluation_periods=n,
            datapoints_to_alarm=int(alarm.get("DatapointsToAlarm") or n),
            low_sample_ignore=alarm.get("EvaluateLowSampleCountPercentile") == "ignore",
        )

    def breaches(self, value: float | None) -> bool:
        compare = _COMPARE.get(self.comparison)
        return value is not None and compare is not None and compare(value, self.threshold)


@dataclass(frozen=True)
class FiredAlarm:
    """A rollback alarm in ALARM at the decision, with the periods that put it there."""

    facts: AlarmFacts
    value: float | None  # the newest breaching datapoint of the evaluation that fired
    breaching: tuple[tuple[float, float], ...]  # (period start, value) in the firing window
    started_at: float | None  # green's first traffic (epoch s)
    first_breach_at: float | None  # the first breaching period's start, in the whole run
    decided_at: float

    @property
    def window(self) -> tuple[float, float]:
        """From the first breaching period of the firing window to the decision."""
        start = min((s for s, _ in self.breaching), default=self.decided_at)
        return start, self.decided_at

    def line(self) -> str:
        """One sentence, the same in the console and in the report."""
        f = self.facts
        # never rounded: 250.0001 against > 250 must not read "= 250 ms" (alarms' own rule)
        value = "no data" if self.value is None else value_text(self.value, f.threshold) + f.unit
        threshold = number_text(f.threshold) + f.unit
        version = f" of {f.version}" if f.version else ""
        return (
            f"{f.name}: {f.metric} {f.statistic}{version} = {value} against the threshold "
            f"{_OP_TEXT.get(f.comparison, f.comparison)} {threshold}; {len(self.breaching)} of "
            f"{f.evaluation_periods} periods of {f.period_s} s breached "
            f"({f.datapoints_to_alarm} needed); green's first traffic {utc(self.started_at)}, "
            f"{self._first_period()}, decision {utc(self.decided_at)}"
        )

    def _first_period(self) -> str:
        """``first breaching period 08:00:00.0Z - 08:00:10.0Z``: exact bounds. Periods are
        aligned to the clock (UTC), so the first one usually starts before green's first
        traffic: it is then said to be the period that traffic fell in, not left to look like
        a breach before green served anything."""
        start = self.first_breach_at
        if start is None:
            return "no breaching period"
        end = start + self.facts.period_s
        text = f"first breaching period {utc(start)} - {utc(end)}"
        if self.started_at is not None and start < self.started_at < end:
            text += " (the one green's first traffic fell in: periods are aligned to the clock)"
        return text


@dataclass(frozen=True)
class Part:
    """One child span of a request: where part of its time went."""

    name: str
    duration_ms: float
    phrase: str  # "waiting in the rate limiter"


@dataclass(frozen=True)
class SlowRequest:
    """One request of the new version, its spans and its log lines."""

    started_at: float  # epoch s
    route: str
    status: int | None
    duration_ms: float
    trace_id: str  # X-Ray form, as the logs print it
    user: str | None
    parts: tuple[Part, ...]
    log_lines: tuple[str, ...]
    #: what the client waited at the listener (the load balancer), ms; None when not recorded
    client_ms: float | None = None

    @property
    def waited_ms(self) -> float:
        """The client's wait when recorded (queueing before the service included), else the
        server span's duration: what the request cost its user."""
        return self.duration_ms if self.client_ms is None else max(self.client_ms, self.duration_ms)

    def breakdown(self) -> str:
        """``client waited 13.1 s: 12.6 s before the service took it; 500 ms of 502 ms waiting
        in the rate limiter; 2 ms in the store (grant)``."""
        if not self.parts:
            text = f"{duration_text(self.duration_ms)} in the service (no child spans)"
        else:
            ranked = sorted(self.parts, key=lambda p: -p.duration_ms)
            head, rest = ranked[0], ranked[1:]
            text = "; ".join(
                [
                    f"{duration_text(head.duration_ms)} of {duration_text(self.duration_ms)} "
                    f"{head.phrase}",
                    *(f"{duration_text(p.duration_ms)} {p.phrase}" for p in rest),
                ]
            )
        queued = self.waited_ms - self.duration_ms
        if queued >= max(QUEUED_MIN_MS, 0.1 * self.duration_ms):
            # no span covers it: the request waited for a free server thread (or connection)
            return (
                f"client waited {duration_text(self.waited_ms)}: {duration_text(queued)} before "
                f"the service took it (queued: no free worker thread); then {text}"
            )
        return text


@dataclass(frozen=True)
class GreyAlarm:
    """A rollback alarm in INSUFFICIENT_DATA, and why, in words."""

    name: str
    why: str


@dataclass(frozen=True)
class JudgedWindow:
    """The statistical judge's deciding judgement: its sentence and the window it compared."""

    line: str  # "judge Fail (score 40): latency_ms High (p=..., effect ...), failed Pass"
    window: tuple[float, float]  # epoch s
    decided_at: float


@dataclass
class Explanation:
    """Everything the report's "Why it rolled back" section shows."""

    fired: list[FiredAlarm] = field(default_factory=list)
    judged: JudgedWindow | None = None
    version: str | None = None  # the new version's Version (green)
    slowest: list[SlowRequest] = field(default_factory=list)
    failed: list[SlowRequest] = field(default_factory=list)
    grey: list[GreyAlarm] = field(default_factory=list)
    requests_in_window: int = 0
    unreadable_trace_lines: int = 0
    notes: list[str] = field(default_factory=list)


def alarm_facts(defs: Mapping[str, Any]) -> dict[str, AlarmFacts]:
    """The metric alarms of an ``alarms.synth`` JSON document, by name (unreadable ones skipped)."""
    out: dict[str, AlarmFacts] = {}
    for alarm in defs.get("MetricAlarms", []):
        try:
            out[alarm["AlarmName"]] = AlarmFacts.of(alarm)
        except (KeyError, TypeError, ValueError, IndexError, OverflowError):
            continue  # OverflowError: int() of an infinite count (JSON's 1e400)
    return out


def fired_alarm(
    facts: AlarmFacts,
    evaluations: Sequence[Evaluation],
    started_at: float | None,
    decided_at: float,
) -> FiredAlarm:
    """The alarm's firing evaluation (its last one in ALARM up to the decision) explained."""
    own = [e for e in evaluations if e.alarm == facts.name and e.time <= decided_at + 1e-6]
    firing = next((e for e in reversed(own) if e.state == "ALARM"), own[-1] if own else None)
    breaching: tuple[tuple[float, float], ...] = ()
    value = None
    if firing is not None:
        value = firing.value
        # CloudWatch decides on the newest N real datapoints of its (longer) evaluation range:
        # an older breach in the range is not one of "the periods that breached"
        used = [(s, v) for s, v in firing.datapoints if v is not None]
        used = used[-facts.evaluation_periods :]
        breaching = tuple((s, v) for s, v in used if facts.breaches(v))
        if breaching:  # the newest breaching value, as CloudWatch's reason for ALARM lists it
            value = breaching[-1][1]
    first = min(
        (s for e in own for s, v in e.datapoints if v is not None and facts.breaches(v)),
        default=None,
    )
    return FiredAlarm(facts, value, breaching, started_at, first, decided_at)


def alarm_line(
    name: str,
    defs: Mapping[str, Any],
    evaluations: Sequence[Evaluation],
    started_at: float | None,
    decided_at: float,
) -> str:
    """The console's explanation of one firing alarm (the report shows the same sentence)."""
    facts = alarm_facts(defs).get(name)
    if facts is None:
        return f"{name}: in ALARM"
    return fired_alarm(facts, evaluations, started_at, decided_at).line()


def grey_reason(facts: AlarmFacts | None, last: Evaluation | None) -> str:
    """Why an alarm is INSUFFICIENT_DATA, in words."""
    reason = last.reason if last is not None else ""
    if facts is not None and facts.namespace.startswith("AWS/"):
        return (
            f"no data here: {facts.namespace} {facts.metric} is published by the AWS service "
            "itself (the load balancer), not by the application's EMF; the rehearsal's listener "
            "publishes nothing, so the alarm stays grey locally and watches the real figures "
            "on AWS"
        )
    if "EvaluateLowSampleCountPercentile" in reason:
        stat = facts.statistic if facts else "the percentile"
        return (
            f"too few requests for a {stat}: with EvaluateLowSampleCountPercentile=ignore a "
            f"period with too few samples does not change the state ({reason.split(': ', 1)[-1]}),"
            " so it was still in its first state, INSUFFICIENT_DATA, at the decision: green's "
            "periods never had enough requests for it"
        )
    if last is None:
        return "never evaluated before the decision (its first period had not ended)"
    periods = f"{facts.evaluation_periods} periods of {facts.period_s} s" if facts else "periods"
    return f"no datapoints in its {periods} yet ({reason or 'no data'})"


def grey_alarms(
    names: Iterable[str],
    facts: Mapping[str, AlarmFacts],
    evaluations: Sequence[Evaluation],
    decided_at: float,
) -> list[GreyAlarm]:
    """The rollback alarms INSUFFICIENT_DATA at the decision, with the reason in words."""
    out = []
    for name in names:
        own = [e for e in evaluations if e.alarm == name and e.time <= decided_at + 1e-6]
        last = own[-1] if own else None
        if last is None or last.state == "INSUFFICIENT_DATA":
            out.append(GreyAlarm(name, grey_reason(facts.get(name), last)))
    return out


def _shown(line: str) -> str:
    """``line``, cut to :data:`MAX_LOG_LINE_CHARS` with its length said when longer."""
    if len(line) <= MAX_LOG_LINE_CHARS:
        return line
    return f"{line[:MAX_LOG_LINE_CHARS]}... (cut: {len(line):,} characters)"


def _logs_by_trace(path: Path, wanted: set[str]) -> dict[str, list[str]]:
    """The JSON log lines of ``path`` whose ``trace_id`` is in ``wanted``, by trace id."""
    out: dict[str, list[str]] = {}
    if not wanted or not path.exists():
        return out
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if '"trace_id"' not in line:
                    continue
                try:
                    doc = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                # a log line is any line the process printed: only an object's string counts
                trace_id = doc.get("trace_id") if isinstance(doc, dict) else None
                if isinstance(trace_id, str) and trace_id in wanted:
                    out.setdefault(trace_id, []).append(_shown(line.rstrip("\n")))
    except OSError:  # a directory, no permission: the requests are shown without log lines
        pass
    return out


def _request(
    server: traces.Span, kids: list[traces.Span], logs: list[str], client_ms: float | None = None
) -> SlowRequest:
    status = server.attributes.get("http.response.status_code")
    # the ledger's user, else who called (a refused request was not read that far)
    user = server.attributes.get("user_id", server.attributes.get("caller"))
    return SlowRequest(
        started_at=server.start_ns / 1e9,
        route=str(server.attributes.get("http.route", server.name)),
        status=status if _is_status(status) else None,
        duration_ms=server.duration_ms,
        trace_id=server.xray_trace_id,
        user=str(user) if user is not None else None,
        parts=tuple(
            Part(k.name, k.duration_ms, _PHRASES.get(k.name, f"in {k.name}"))
            for k in sorted(kids, key=lambda k: k.start_ns)
        ),
        log_lines=tuple(logs[:MAX_LOG_LINES]),
        client_ms=client_ms,
    )


def _is_status(value: Any) -> bool:
    """An HTTP status code attribute (an integer; ``True`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _failed(span: traces.Span) -> bool:
    status = span.attributes.get("http.response.status_code")
    return span.failed or (_is_status(status) and (status >= 500 or status == 429))


def requests_behind(
    spans: Sequence[traces.Span],
    version: str,
    window: tuple[float, float],
    log_file: Path,
    limit: int = MAX_REQUESTS,
    client_ms: Mapping[str, float] | None = None,
) -> tuple[list[SlowRequest], list[SlowRequest], int]:
    """(slowest, failed, how many) server spans of ``version`` that ended in ``window``: a
    request's latency counts in the period it ended in (the EMF window of its completion).
    ``client_ms``: what the client waited, by X-Ray trace id (the listener's records); the
    slowest are ranked by it when known (queueing before the service included)."""
    waits = client_ms or {}
    lo, hi = window
    servers = [
        s
        for s in spans
        if s.kind == "SERVER" and s.version == version and lo <= s.end_ns / 1e9 <= hi
    ]
    # served and refused requests apart: the slowest served ones show where latency went, the
    # failed ones (5xx, 429 refusals) what clients lost
    slowest = sorted(
        (s for s in servers if not _failed(s)),
        key=lambda s: -max(waits.get(s.xray_trace_id, 0.0), s.duration_ms),
    )[:limit]
    failed = sorted((s for s in servers if _failed(s)), key=lambda s: s.start_ns)[:limit]
    chosen = {s.span_id: s for s in (*slowest, *failed)}
    kids: dict[str, list[traces.Span]] = {k: [] for k in chosen}
    for s in spans:
        if s.parent_span_id in kids:
            kids[s.parent_span_id].append(s)
    logs = _logs_by_trace(log_file, {s.xray_trace_id for s in chosen.values()})

    def build(s: traces.Span) -> SlowRequest:
        return _request(
            s, kids[s.span_id], logs.get(s.xray_trace_id, []), waits.get(s.xray_trace_id)
        )

    return [build(s) for s in slowest], [build(s) for s in failed], len(servers)


def explain(
    *,
    out: Path,
    defs: Mapping[str, Any],
    evaluations: Sequence[Evaluation],
    firing: Sequence[str],
    rollback_alarms: Sequence[str],
    started_at: float | None,
    decided_at: float,
    version: str | None,
    log_name: str = "green",
    judged: JudgedWindow | None = None,
) -> Explanation:
    """Join the run's alarms, evaluations, ``traces.jsonl`` and ``<log_name>.log``. ``judged``:
    the judge's deciding judgement when the judge was (one of) the trigger(s)."""
    facts = alarm_facts(defs)
    result = Explanation(version=version, judged=judged)
    result.fired = [
        fired_alarm(facts[n], evaluations, started_at, decided_at) for n in firing if n in facts
    ]
    result.grey = grey_alarms(rollback_alarms, facts, evaluations, decided_at)
    starts = [f.window[0] for f in result.fired] + ([judged.window[0]] if judged else [])
    if not starts or version is None:
        return result
    window = (min(starts), decided_at)
    read = traces.read(out / "traces.jsonl")
    result.unreadable_trace_lines = read.unreadable_lines
    if read.error:
        result.notes.append(f"traces.jsonl could not be read to the end ({read.error})")
    if not read.spans:
        what = "is missing" if read.missing else "holds no readable span"
        result.notes.append(f"traces.jsonl {what}: no request can be shown")
        return result
    result.slowest, result.failed, result.requests_in_window = requests_behind(
        read.spans, version, window, out / f"{log_name}.log", client_ms=_client_waits(out)
    )
    return result


def _client_waits(out: Path) -> dict[str, float]:
    """What each client waited at the listener, by trace id, from ``requests.jsonl`` ({} when
    it is missing, unreadable, or from a run that did not record trace ids). A trace id that
    several requests carried (a client may send its own ``X-Amzn-Trace-Id``, which the service
    continues) is left out: which wait is whose cannot be told."""
    try:
        records = harm.read_requests(out / "requests.jsonl")
    except (OSError, ValueError):
        return {}
    waits: dict[str, float] = {}
    shared: set[str] = set()
    for r in records:
        if r.trace_id is not None:
            if r.trace_id in waits:
                shared.add(r.trace_id)
            waits[r.trace_id] = r.latency_ms
    return {k: v for k, v in waits.items() if k not in shared}
