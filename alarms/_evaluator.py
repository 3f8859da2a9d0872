"""An offline CloudWatch alarm evaluator fed with EMF lines (incremental; see docs/alarms.md).

Data path: every EMF sample that some alarm needs is pre-aggregated on arrival into a bucket of
its series (namespace, metric, exact dimension set, unit filter) at the series' granularity
(``gcd(period, evaluation interval)``): count, sum, min, max and, for percentile alarms, a
value -> count map. A datapoint of a period merges the buckets it covers; results are cached
until the series receives new data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import _emf
from ._expr import ExpressionError, MathExpr, Rule, eval_rule, parse_math, parse_rule, rule_names

OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")
SIMPLE_STATS = ("SampleCount", "Sum", "Average", "Minimum", "Maximum")
_OPS = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
_OP_TEXT = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}
#: Guard against an epoch in milliseconds passed where seconds are expected.
_MAX_EPOCH_S = 1e11


def iso(epoch_s: float) -> str:
    """UTC ISO 8601 with a ``Z`` suffix (whole seconds when possible)."""
    dt = datetime.fromtimestamp(epoch_s, UTC)
    text = dt.isoformat(timespec="milliseconds" if epoch_s % 1 else "seconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluation of one alarm (``time`` and datapoint starts are epoch seconds)."""

    time: float
    alarm: str
    state: str
    previous_state: str
    value: float | None
    datapoints: tuple[tuple[float, float | None], ...]
    reason: str

    @property
    def changed(self) -> bool:
        return self.state != self.previous_state

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape printed by ``replay``: times as ISO 8601 UTC strings."""
        return {
            "time": iso(self.time),
            "alarm": self.alarm,
            "state": self.state,
            "previous_state": self.previous_state,
            "value": self.value,
            "datapoints": [[iso(s), v] for s, v in self.datapoints],
            "reason": self.reason,
        }


def low_sample_minimum(percentile: float) -> float:
    """Samples a period needs before a percentile is trusted (CloudWatch's documented rule)."""
    p = percentile / 100.0
    if p in (0.0, 1.0):  # p0/p100: the documented formula never trusts them (no finite minimum)
        return math.inf
    return 10.0 / (1.0 - p) if p >= 0.5 else 10.0 / p


def decide(
    flags: Sequence[bool | None], n: int, m: int, treat: str, current: str
) -> tuple[str, str]:
    """CloudWatch's M-of-N decision over an evaluation range (oldest first).

    ``flags``: True = breaching, False = not breaching, None = missing. Returns the new state
    (``current`` when the state is kept) and a short explanation.
    """
    real = [f for f in flags if f is not None]
    if len(real) >= n:
        used = real[-n:]
        hits = sum(used)
        return (ALARM if hits >= m else OK), f"{hits} of the last {n} datapoints breaching"
    if not real:
        state = {
            "missing": INSUFFICIENT,
            "ignore": current,
            "breaching": ALARM,
            "notBreaching": OK,
        }[treat]
        return state, f"no datapoints in the evaluation range (TreatMissingData={treat})"
    hits = sum(real)
    if treat in ("breaching", "notBreaching"):
        fills = n - len(real)
        total = hits + (fills if treat == "breaching" else 0)
        return (ALARM if total >= m else OK), (
            f"{hits} of {len(real)} datapoints breaching, {fills} missing treated as {treat}"
        )
    first = next(i for i, f in enumerate(flags) if f is not None)
    age = len(flags) - first  # the newest datapoint is 1 period old
    if flags[first] and age >= m and all(f is not False for f in flags[first + 1 :]):
        if treat == "ignore":
            return current, "too few datapoints; TreatMissingData=ignore keeps the state"
        return ALARM, (
            f"premature alarm: oldest datapoint breaching {age} periods ago, newer ones"
            " breaching or missing"
        )
    return (ALARM if hits >= m else OK), (
        f"{hits} of {len(real)} available datapoints breaching (missing ones not counted)"
    )


# --- data -------------------------------------------------------------------------------------


class _Series:
    """Samples of one metric identity (unit ``None`` = any unit) bucketed at ``gran`` seconds."""

    __slots__ = ("buckets", "gran", "unit", "values", "version")

    def __init__(self, gran: int, unit: str | None) -> None:
        self.gran = gran
        self.unit = unit
        self.values = False  # keep value -> count maps (a percentile alarm reads this series)
        self.buckets: dict[int, list] = {}
        self.version = 0

    def add(
        self,
        bucket: int,
        samples: list[tuple[float, float]],
        stats: tuple[float, float, float, float] | None,
    ) -> None:
        agg = self.buckets.get(bucket)
        if agg is None:
            vmap0: dict[float, float] | None = {} if self.values else None
            agg = self.buckets[bucket] = [0.0, 0.0, math.inf, -math.inf, vmap0, True]
        self.version += 1
        vmap = agg[4]
        if stats is not None:
            # Exact figures written next to the histogram: they give count/sum/min/max.
            c, s, lo, hi = stats
            agg[0] += c
            agg[1] += s
            if lo < agg[2]:
                agg[2] = lo
            if hi > agg[3]:
                agg[3] = hi
            if not samples:
                agg[5] = False  # no values: no percentile for this bucket
            elif vmap is not None:
                for v, n in samples:
                    vmap[v] = vmap.get(v, 0.0) + n
            return
        count, total, lo, hi = agg[0], agg[1], agg[2], agg[3]
        for v, c in samples:
            count += c
            total += v * c
            if v < lo:
                lo = v
            if v > hi:
                hi = v
            if vmap is not None:
                vmap[v] = vmap.get(v, 0.0) + c
        agg[0], agg[1], agg[2], agg[3] = count, total, lo, hi

    def merged(self, start: int, period: int) -> list | None:
        if period == self.gran:
            return self.buckets.get(start)
        parts = [
            b
            for t in range(start, start + period, self.gran)
            if (b := self.buckets.get(t)) is not None
        ]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        vmap: dict[float, float] | None = {} if self.values else None
        agg = [0.0, 0.0, math.inf, -math.inf, vmap, True]
        for p in parts:
            agg[0] += p[0]
            agg[1] += p[1]
            agg[2] = min(agg[2], p[2])
            agg[3] = max(agg[3], p[3])
            agg[5] = agg[5] and p[5]
            if vmap is not None and p[4]:
                for v, c in p[4].items():
                    vmap[v] = vmap.get(v, 0.0) + c
        return agg

    def prune(self, before: int) -> None:
        for t in [t for t in self.buckets if t < before]:
            del self.buckets[t]


PERCENTILE_METHODS = ("nearest_rank", "interpolate")


def _percentile(vmap: Mapping[float, float], p: float, method: str = "nearest_rank") -> float:
    """pNN of weighted samples (value -> count).

    ``nearest_rank``: the smallest sample v with at least p% of the samples <= v.
    ``interpolate``: linear interpolation between the closest ranks, ``(n - 1) * p/100``
    (numpy's default), so it can fall between two samples.
    """
    count = sum(vmap.values())
    if method == "interpolate":
        pos = (count - 1) * p / 100.0  # 0-based fractional rank
        lower = math.floor(pos + 1e-9)
        seen = 0.0
        low_value: float | None = None
        for v in sorted(vmap):
            seen += vmap[v]
            if low_value is None and seen > lower:
                low_value = v
                if seen > lower + 1 or pos - lower < 1e-9:
                    return v  # both neighbouring ranks hold this value
            elif low_value is not None:
                return low_value + (v - low_value) * (pos - lower)
        return max(vmap)
    rank = max(1.0, math.ceil(p / 100.0 * count - 1e-9))
    seen = 0.0
    for v in sorted(vmap):
        seen += vmap[v]
        if seen >= rank:
            return v
    return max(vmap)  # pragma: no cover - counts always reach the rank


class _Query:
    """One statistic of one series over a period: ``value(start) -> (value | None, samples)``."""

    __slots__ = (
        "cache",
        "cache_version",
        "method",
        "namespace",
        "pct",
        "period",
        "series",
        "stat",
    )

    def __init__(
        self, series: _Series, namespace: str, stat: str, period: int, method: str = "nearest_rank"
    ) -> None:
        self.method = method
        self.series = series
        self.namespace = namespace
        self.stat = stat
        self.pct = float(stat[1:]) if stat.startswith("p") else None
        self.period = period
        self.cache: dict[int, tuple[float | None, float]] = {}
        self.cache_version = -1

    def value(self, start: int) -> tuple[float | None, float]:
        s = self.series
        if self.cache_version != s.version:
            self.cache.clear()
            self.cache_version = s.version
        hit = self.cache.get(start)
        if hit is not None:
            return hit
        agg = s.merged(start, self.period)
        if agg is None or agg[0] <= 0:
            out: tuple[float | None, float] = (None, 0.0)
        else:
            count = agg[0]
            stat = self.stat
            if stat == "Average":
                v: float | None = agg[1] / count
            elif stat == "Sum":
                v = agg[1]
            elif stat == "Maximum":
                v = agg[3]
            elif stat == "Minimum":
                v = agg[2]
            elif stat == "SampleCount":
                v = count
            elif agg[2] < 0 or not agg[5] or not agg[4]:
                v = None  # percentiles need raw, non-negative samples
            else:
                v = _percentile(agg[4], self.pct, self.method)  # type: ignore[arg-type]
            out = (v, count)
        self.cache[start] = out
        return out


class _Alarm:
    __slots__ = (
        "aws_only",
        "expr",
        "inputs",
        "low_min",
        "m",
        "n",
        "name",
        "op",
        "period",
        "query",
        "threshold",
        "tick",
        "treat",
        "unsupported",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.unsupported: str | None = None
        self.query: _Query | None = None
        self.expr: MathExpr | None = None
        self.inputs: dict[str, _Query] = {}
        self.low_min: float | None = None
        self.aws_only = False
        self.period = 60
        self.tick = 60
        self.n = self.m = 1
        self.threshold = 0.0
        self.op = "GreaterThanThreshold"
        self.treat = "missing"


class _Composite:
    __slots__ = ("deps", "name", "rule", "unsupported")

    def __init__(self, name: str) -> None:
        self.name = name
        self.rule: Rule | None = None
        self.deps: set[str] = set()
        self.unsupported: str | None = None


def _dims_key(dims: Any) -> tuple[tuple[str, str], ...]:
    if not dims:
        return ()
    return tuple(sorted((str(d["Name"]), str(d["Value"])) for d in dims))


class Evaluator:
    """CloudWatch's alarm evaluation over EMF data, incremental and offline.

    ``defs`` is ``synth(..., format="json")`` output (``MetricAlarms``/``CompositeAlarms``) or any
    CloudFormation template dict with ``AWS::CloudWatch::Alarm``/``CompositeAlarm`` resources.

    Options (each one an assumption where CloudWatch's documentation is silent):
    ``start`` first evaluation time (default: the earliest data, or the first ``advance``);
    ``range_extra`` datapoints fetched beyond N (evaluation range N + 2, documented 5 for N = 3);
    ``alignment`` "rolling" (periods end at the evaluation time, aligned to the evaluation
    interval) or "period" (periods at UTC multiples of the period); ``datapoint_delay_s`` a
    period is evaluated once it ended at least this long before the evaluation time;
    ``max_lateness_s`` drop samples older than the last evaluation minus this (None = keep);
    ``low_sample_scope`` "newest" or "any" datapoint checked by EvaluateLowSampleCountPercentile;
    ``params`` values for template parameters without a default (or to override one);
    ``tick_s`` evaluate every alarm at this interval instead of CloudWatch's 60 s / 10 s;
    ``percentile_method`` "nearest_rank" or "interpolate" (CloudWatch does not publish its own).
    """

    def __init__(
        self,
        defs: Mapping[str, Any],
        *,
        start: float | None = None,
        range_extra: int = 2,
        alignment: str = "rolling",
        datapoint_delay_s: float = 0.0,
        max_lateness_s: float | None = None,
        low_sample_scope: str = "newest",
        params: Mapping[str, str] | None = None,
        tick_s: int | None = None,
        percentile_method: str = "nearest_rank",
    ) -> None:
        if percentile_method not in PERCENTILE_METHODS:
            raise ValueError("percentile_method must be 'nearest_rank' or 'interpolate'")
        self.percentile_method = percentile_method
        if alignment not in ("rolling", "period"):
            raise ValueError("alignment must be 'rolling' or 'period'")
        if low_sample_scope not in ("newest", "any"):
            raise ValueError("low_sample_scope must be 'newest' or 'any'")
        if range_extra < 0 or datapoint_delay_s < 0:
            raise ValueError("range_extra and datapoint_delay_s must be >= 0")
        if tick_s is not None and (tick_s <= 0 or tick_s % 10):
            raise ValueError("tick_s must be a positive multiple of 10")
        self.tick_s = tick_s
        self.range_extra = int(range_extra)
        self.alignment = alignment
        self.datapoint_delay_s = float(datapoint_delay_s)
        self.max_lateness_s = max_lateness_s
        self.low_sample_scope = low_sample_scope
        self.warnings: list[str] = []
        self.stats = {
            "lines": 0,
            "emf_lines": 0,
            "bad_lines": 0,
            "samples": 0.0,
            "values": 0,
            "late_dropped": 0,
        }
        metric_defs, composite_defs = self._definitions(defs, params or {})
        self._index: dict[tuple[str, str, tuple], list[_Series]] = {}
        self._series: dict[tuple, _Series] = {}
        self._alarms: list[_Alarm] = [self._compile(a) for a in metric_defs]
        self._composites = self._compile_composites(composite_defs)
        names = [a.name for a in self._alarms] + [c.name for c in self._composites]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"duplicate alarm name {dup!r}")
        self._states: dict[str, str] = dict.fromkeys(names, INSUFFICIENT)
        self._ns_seen: set[str] = set()
        self._start = start
        self._next: int | None = None
        self._last_tick: int | None = None
        self._min_ts: float | None = None
        self._max_ts: float | None = None
        self._horizon = max(
            [(a.n + self.range_extra + 1) * a.period + a.tick for a in self._alarms] or [60]
        ) + int(self.datapoint_delay_s)
        self._next_prune = 0

    # -- definitions -------------------------------------------------------------------------
    @staticmethod
    def _definitions(defs: Mapping[str, Any], params: Mapping[str, str]) -> tuple[list, list]:
        if not isinstance(defs, Mapping):
            raise ValueError("alarm definitions must be a JSON object")
        if "Resources" in defs:
            from ._cfn import template_alarms

            return template_alarms(defs, params)
        if "MetricAlarms" not in defs and "CompositeAlarms" not in defs:
            raise ValueError("no MetricAlarms/CompositeAlarms and no CloudFormation Resources")
        metric, composite = defs.get("MetricAlarms") or [], defs.get("CompositeAlarms") or []
        if not isinstance(metric, list) or not isinstance(composite, list):
            raise ValueError("MetricAlarms and CompositeAlarms must be lists")
        return metric, composite

    def _tick_for(self, period: int) -> int:
        if self.tick_s is not None:
            return self.tick_s
        return 10 if period < 60 else 60  # CloudWatch's schedule

    def _series_for(
        self,
        ns: str,
        name: str,
        dims: Any,
        unit: str | None,
        period: int,
        tick: int,
        percentile: bool,
    ) -> _Series:
        gran = math.gcd(period, tick) if self.alignment == "rolling" else period
        ident = (ns, name, _dims_key(dims))
        key = (*ident, unit, gran)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = _Series(gran, unit)
            self._index.setdefault(ident, []).append(s)
        s.values = s.values or percentile
        return s

    def _query(
        self, a: _Alarm, ns: Any, name: Any, dims: Any, unit: Any, stat: Any, period: int
    ) -> _Query:
        if not isinstance(ns, str) or not isinstance(name, str):
            raise ExpressionError("Namespace and MetricName are required")
        if not isinstance(stat, str) or not (stat in SIMPLE_STATS or _is_pct(stat)):
            raise ExpressionError(f"statistic {stat!r} is not supported")
        series = self._series_for(ns, name, dims, unit, period, a.tick, stat.startswith("p"))
        return _Query(series, ns, stat, period, self.percentile_method)

    def _compile(self, d: Mapping[str, Any]) -> _Alarm:
        if not isinstance(d, Mapping) or not isinstance(d.get("AlarmName"), str):
            raise ValueError("every metric alarm needs an AlarmName")
        a = _Alarm(d["AlarmName"])
        try:
            a.op = d["ComparisonOperator"]
            if a.op not in _OPS:
                raise ExpressionError(f"ComparisonOperator {a.op} is not supported")
            if "ThresholdMetricId" in d:
                raise ExpressionError("anomaly detection bands are not supported")
            a.threshold = float(d["Threshold"])
            a.n = int(d["EvaluationPeriods"])
            a.m = int(d.get("DatapointsToAlarm") or a.n)
            if not 1 <= a.m <= a.n:
                raise ExpressionError("DatapointsToAlarm must be between 1 and EvaluationPeriods")
            a.treat = d.get("TreatMissingData") or "missing"
            if a.treat not in TREATMENTS:
                raise ExpressionError(f"TreatMissingData {a.treat!r} is not valid")
            if d.get("Metrics"):
                self._compile_math(a, d["Metrics"])
            else:
                a.period = _period(d.get("Period"))
                a.tick = self._tick_for(a.period)
                stat = d.get("Statistic") or d.get("ExtendedStatistic")
                a.query = self._query(
                    a,
                    d.get("Namespace"),
                    d.get("MetricName"),
                    d.get("Dimensions"),
                    d.get("Unit"),
                    stat,
                    a.period,
                )
                a.aws_only = a.query.namespace.startswith("AWS/")
                if (
                    a.query.pct is not None
                    and d.get("EvaluateLowSampleCountPercentile") == "ignore"
                ):
                    a.low_min = low_sample_minimum(a.query.pct)
        except (ExpressionError, KeyError, TypeError, ValueError) as exc:
            msg = str(exc) if isinstance(exc, ExpressionError | ValueError) else f"missing {exc}"
            a.unsupported = msg
            self.warnings.append(f"alarm {a.name}: {msg}; it stays INSUFFICIENT_DATA")
        return a

    def _compile_math(self, a: _Alarm, metrics: Any) -> None:
        if not isinstance(metrics, list) or len(metrics) > 10:
            raise ExpressionError("Metrics must be a list of at most 10 queries")
        exprs: dict[str, MathExpr] = {}
        stats: dict[str, dict] = {}
        ret = [q for q in metrics if q.get("ReturnData", True)]
        if len(ret) != 1:
            raise ExpressionError("exactly one query must have ReturnData true")
        for q in metrics:
            if "Expression" in q:
                exprs[q["Id"]] = parse_math(str(q["Expression"]))
            elif "MetricStat" in q:
                stats[q["Id"]] = q["MetricStat"]
            else:
                raise ExpressionError(f"query {q.get('Id')} has neither Expression nor MetricStat")
        periods = {_period(ms.get("Period")) for ms in stats.values()}
        if len(periods) != 1:
            raise ExpressionError("metric math alarms need MetricStat queries of one Period")
        a.period = periods.pop()
        a.tick = self._tick_for(a.period)
        for qid, ms in stats.items():
            m = ms["Metric"]
            a.inputs[qid] = self._query(
                a,
                m.get("Namespace"),
                m.get("MetricName"),
                m.get("Dimensions"),
                ms.get("Unit"),
                ms.get("Stat"),
                a.period,
            )
        a.aws_only = all(q.namespace.startswith("AWS/") for q in a.inputs.values())
        a.expr = _chain(ret[0]["Id"], exprs, set(stats))

    def _compile_composites(self, defs: list) -> list[_Composite]:
        out: dict[str, _Composite] = {}
        for d in defs:
            if not isinstance(d, Mapping) or not isinstance(d.get("AlarmName"), str):
                raise ValueError("every composite alarm needs an AlarmName")
            c = _Composite(d["AlarmName"])
            try:
                c.rule = parse_rule(str(d["AlarmRule"]))
                c.deps = rule_names(c.rule)
            except (ExpressionError, KeyError) as exc:
                c.unsupported = str(exc)
                self.warnings.append(f"composite {c.name}: {exc}; it stays INSUFFICIENT_DATA")
            out[c.name] = c
        known = {a.name for a in self._alarms} | set(out)
        for c in out.values():
            for dep in sorted(c.deps - known):
                self.warnings.append(
                    f"composite {c.name}: unknown alarm {dep!r} (INSUFFICIENT_DATA)"
                )
        # Topological order: children before the composites that read them.
        ordered: list[_Composite] = []
        state: dict[str, int] = {}

        def visit(c: _Composite) -> None:
            if state.get(c.name) == 2:
                return
            if state.get(c.name) == 1:
                raise ValueError(f"composite alarm cycle through {c.name!r}")
            state[c.name] = 1
            for dep in sorted(c.deps):
                if dep in out:
                    visit(out[dep])
            state[c.name] = 2
            ordered.append(c)

        for c in out.values():
            visit(c)
        return ordered

    # -- ingestion ---------------------------------------------------------------------------
    def ingest_line(self, line: str | bytes) -> int:
        """Ingest one log line; returns the metric values read (0 for non-EMF or bad lines)."""
        self.stats["lines"] += 1
        obj = _emf.decode_line(line)
        if obj is None:
            self.stats["bad_lines"] += 1
            return 0
        return self.ingest_record(obj)

    def ingest(self, lines: Iterable[str | bytes]) -> int:
        """Ingest many lines; returns the metric values read."""
        return sum(self.ingest_line(line) for line in lines)

    def ingest_record(self, obj: Mapping[str, Any]) -> int:
        """Ingest one decoded EMF object; malformed parts are counted, never raised."""
        try:
            ts = float(obj["_aws"]["Timestamp"]) / 1000.0
            if not 0.0 <= ts < _MAX_EPOCH_S:  # also NaN/inf: no real record is stamped there
                raise ValueError
        except (KeyError, TypeError, ValueError):
            self.stats["bad_lines"] += 1
            return 0
        self.stats["emf_lines"] += 1
        if (
            self.max_lateness_s is not None
            and self._last_tick is not None
            and (ts < self._last_tick - self.max_lateness_s)
        ):
            self.stats["late_dropped"] += 1
            return 0
        read = 0
        index = self._index
        for d in _emf.directives(obj):  # type: ignore[arg-type]
            ns = d.get("Namespace")
            dimsets = d.get("Dimensions") or [[]]
            metrics = d.get("Metrics")
            if (
                not isinstance(ns, str)
                or not isinstance(metrics, list)
                or not isinstance(dimsets, list)
            ):
                self.stats["bad_lines"] += 1
                continue
            self._ns_seen.add(ns)
            keys = []
            for ds in dimsets:
                if not isinstance(ds, list):
                    continue
                try:
                    keys.append(tuple(sorted((k, str(obj[k])) for k in ds)))
                except (KeyError, TypeError):
                    self.stats["bad_lines"] += 1  # a dimension without a value: CloudWatch drops it
            for md in metrics:
                if not isinstance(md, dict) or not isinstance(md.get("Name"), str):
                    continue
                name = md["Name"]
                parsed = _emf.samples(obj.get(name))
                if parsed is None:
                    self.stats["bad_lines"] += 1
                    continue
                smp, sset = parsed
                n_samples = sset[0] if sset is not None else sum(c for _, c in smp)
                read += 1
                self.stats["samples"] += n_samples
                targets = [s for k in keys for s in index.get((ns, name, k), ())]
                if not targets:
                    continue
                unit = md.get("Unit") or "None"
                res = 1 if md.get("StorageResolution") == 1 else 60
                t0 = int(ts // res) * res  # a standard-resolution sample is stored per minute
                for s in targets:
                    if s.unit is None or s.unit == unit:
                        s.add(t0 - t0 % s.gran, smp, sset)
        self.stats["values"] += read
        if self._min_ts is None or ts < self._min_ts:
            self._min_ts = ts
        if self._max_ts is None or ts > self._max_ts:
            self._max_ts = ts
        return read

    # -- evaluation --------------------------------------------------------------------------
    @property
    def states(self) -> dict[str, str]:
        """Alarm name -> current state."""
        return dict(self._states)

    @property
    def data_range(self) -> tuple[float, float] | None:
        """Earliest and latest EMF timestamps ingested (epoch seconds), if any."""
        return None if self._min_ts is None else (self._min_ts, self._max_ts)  # type: ignore[return-value]

    @property
    def alarm_names(self) -> list[str]:
        return list(self._states)

    def advance(self, now: float) -> list[Evaluation]:
        """Run every evaluation due at or before ``now`` (epoch seconds), in time order."""
        if not math.isfinite(now) or now > _MAX_EPOCH_S:
            raise ValueError(f"now={now!r} is not an epoch time in seconds")
        if self._next is None:
            base = (
                self._start
                if self._start is not None
                else (self._min_ts if self._min_ts is not None else now)
            )
            self._next = math.ceil(base / 10.0) * 10
        out: list[Evaluation] = []
        while self._next <= now:
            out += self._tick(self._next)
            self._last_tick = self._next
            self._next += 10
        return out

    def _tick(self, t: int) -> list[Evaluation]:
        out = []
        for a in self._alarms:
            if t % a.tick == 0:
                out.append(self._evaluate(a, t))
        # Composites follow their children: right after any metric alarm evaluation (and once a
        # minute when there is none, e.g. rules over TRUE/FALSE or unknown alarms).
        if out or t % 60 == 0:
            for c in self._composites:
                out.append(self._evaluate_composite(c, t))
        if t >= self._next_prune:
            cutoff = t - self._horizon
            for s in self._series.values():
                s.prune(cutoff)
            for a in self._alarms:  # cached datapoints behind the window are never asked again
                for q in self._queries(a):
                    q.cache = {k: v for k, v in q.cache.items() if k >= cutoff}
            self._next_prune = t + 3600
        return out

    def _starts(self, a: _Alarm, t: int) -> list[int]:
        end = t - self.datapoint_delay_s
        if self.alignment == "rolling":
            g = math.gcd(a.period, a.tick)
            newest = int(end // g) * g - a.period
        else:
            newest = int(end // a.period) * a.period - a.period
        return [newest - k * a.period for k in range(a.n + self.range_extra - 1, -1, -1)]

    def _point(self, a: _Alarm, start: int) -> tuple[float | None, float]:
        if a.query is not None:
            return a.query.value(start)
        values = {qid: q.value(start)[0] for qid, q in a.inputs.items()}
        if all(v is None for v in values.values()):
            return None, 0.0
        return a.expr(values), 1.0  # type: ignore[misc]

    def _evaluate(self, a: _Alarm, t: int) -> Evaluation:
        prev = self._states[a.name]
        if a.unsupported:
            return Evaluation(t, a.name, prev, prev, None, (), f"not evaluated: {a.unsupported}")
        starts = self._starts(a, t)
        points = [self._point(a, s) for s in starts]
        datapoints = tuple((float(s), v) for s, (v, _) in zip(starts, points, strict=True))
        newest = next((v for v, _ in reversed(points) if v is not None), None)
        if a.aws_only and not any(q.namespace in self._ns_seen for q in self._queries(a)):
            return Evaluation(
                t,
                a.name,
                INSUFFICIENT,
                prev,
                None,
                datapoints,
                "no data: AWS/ namespaces are published by AWS services, not EMF",
            )
        if a.low_min is not None:
            real = [(v, c) for v, c in points if v is not None]
            check = real[-1:] if self.low_sample_scope == "newest" else real[-a.n :]
            low = [c for _, c in check if c < a.low_min]
            if low:
                return Evaluation(
                    t,
                    a.name,
                    prev,
                    prev,
                    newest,
                    datapoints,
                    f"EvaluateLowSampleCountPercentile=ignore: a period has {low[0]:g} samples"
                    f" (< {a.low_min:g}); state unchanged",
                )
        cmp = _OPS[a.op]
        flags = [None if v is None else cmp(v, a.threshold) for v, _ in points]
        state, why = decide(flags, a.n, a.m, a.treat, prev)
        reason = (
            f"{why} ({_OP_TEXT[a.op]} {a.threshold:g}; {a.m} of {a.n} to alarm;"
            f" range {len(flags)} x {a.period} s)"
        )
        self._states[a.name] = state
        return Evaluation(t, a.name, state, prev, newest, datapoints, reason)

    @staticmethod
    def _queries(a: _Alarm) -> list[_Query]:
        return [a.query] if a.query is not None else list(a.inputs.values())

    def _evaluate_composite(self, c: _Composite, t: int) -> Evaluation:
        prev = self._states[c.name]
        if c.rule is None:
            return Evaluation(t, c.name, prev, prev, None, (), f"not evaluated: {c.unsupported}")
        state = ALARM if eval_rule(c.rule, self._states) else OK
        self._states[c.name] = state
        children = ", ".join(f"{n}={self._states.get(n, INSUFFICIENT)}" for n in sorted(c.deps))
        return Evaluation(t, c.name, state, prev, None, (), f"rule is {state == ALARM}: {children}")


def _is_pct(stat: str) -> bool:
    try:
        return stat.startswith("p") and 0 <= float(stat[1:]) <= 100  # PutMetricAlarm: p0..p100
    except ValueError:
        return False


def _period(value: Any) -> int:
    period = int(value)
    if period not in (1, 5, 10, 20, 30) and (period <= 0 or period % 60):
        raise ExpressionError(f"Period {value} is not 10, 20, 30 or a multiple of 60")
    return period


def _chain(ret: str, exprs: dict[str, MathExpr], stat_ids: set[str]) -> MathExpr:
    """Compose expressions that refer to other expressions into one function of the stat ids."""
    if ret in stat_ids:
        return parse_math(ret)
    seen: set[str] = set()

    def resolve(eid: str) -> MathExpr:
        if eid in seen:
            raise ExpressionError(f"expression cycle through {eid}")
        seen.add(eid)
        e = exprs[eid]
        unknown = e.ids - stat_ids - set(exprs)
        if unknown:
            raise ExpressionError(f"expression {eid} uses unknown id {sorted(unknown)[0]}")
        subs = {i: resolve(i) for i in e.ids if i in exprs}
        if not subs:
            return e

        def fn(env: Mapping[str, float]) -> float:
            values = dict(env)
            for i, sub in subs.items():
                v = sub(env)
                if v is None:
                    raise ZeroDivisionError  # a dropped inner point drops the outer one
                values[i] = v
            return e._fn(values)

        ids = frozenset((e.ids - set(subs)).union(*(s.ids for s in subs.values())))
        return MathExpr(e.text, ids, fn)

    return resolve(ret)
