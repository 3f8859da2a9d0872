"""The evaluator: CloudWatch's evaluation schedule over EMF lines, incremental and offline.

It ingests EMF into the bucket store (``_store``), evaluates the alarms the compiler built
(``_compile``) on CloudWatch's schedule, and applies CloudWatch's decision rules (``_rules``).
See docs/alarms.md for the semantics and the assumptions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from telemetry import cloudwatch_rules as _cw

from . import _emf, _timestamps
from ._compile import Alarm, Compiler, Composite, definitions
from ._expr import eval_rule
from ._format import iso, number_text, value_text
from ._rules import ALARM, COMPARISON_TEXT, COMPARISONS, INSUFFICIENT, OK, decide
from ._store import PERCENTILE_METHODS, Query

MAX_DIMENSIONS_PER_METRIC = _emf.MAX_DIMENSIONS_PER_METRIC
_EVENT_TOO_LARGE = (
    f"a log event of more than {_emf.MAX_EVENT_BYTES} bytes (CloudWatch Logs takes at most 1 MB"
    " per event); CloudWatch extracts no metric from the line"
)

#: Distinct rejection reasons kept (the rest are counted together): hostile input cannot grow it.
_MAX_REJECTION_KINDS = 50
_UNSEEN = object()
#: Bounds of the options: each evaluation reads N + ``range_extra`` datapoints, so an unbounded
#: value would make one evaluation run for hours; a delay beyond a day is no evaluation at all.
MAX_RANGE_EXTRA = 100
MAX_DATAPOINT_DELAY_S = 86400.0
#: The last time an EMF timestamp can name (9999-12-31); also a guard against an epoch in
#: milliseconds passed where seconds are expected.
_MAX_EPOCH_S = _cw.MAX_TIMESTAMP_MS / 1000.0


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
    #: The metric alarm's Threshold and ComparisonOperator (None for composites and alarms that
    #: are not evaluated); not part of ``to_dict``, whose shape ``replay --json`` keeps.
    threshold: float | None = None
    comparison: str | None = None

    @property
    def changed(self) -> bool:
        return self.state != self.previous_state

    def state_value(self) -> float | None:
        """The value a change of state is shown with, as CloudWatch's state reason shows it
        ("Threshold Crossed: 1 out of the last 3 datapoints [12.5 (...)] was not greater than
        the threshold (250.0) (minimum 2 datapoints for ALARM -> OK transition)"): to ALARM the
        newest breaching datapoint, to OK the newest one that did not breach, i.e. the value
        that brought it back, not the last breaching one. None when no datapoint did (missing
        data treated as breaching / not breaching decided). :attr:`value` (the newest datapoint)
        for any other evaluation."""
        compare = COMPARISONS.get(self.comparison or "")
        if (
            not (self.changed and self.datapoints)
            or compare is None
            or self.state not in (ALARM, OK)
        ):
            return self.value
        wanted = self.state == ALARM
        return next(
            (
                v
                for _, v in reversed(self.datapoints)
                if v is not None and compare(v, self.threshold) == wanted
            ),
            None,
        )

    def value_vs_threshold(self) -> str:
        """:meth:`state_value` and the alarm's condition: ``"1523.5 (> 250)"``; ``"no data
        (> 250)"`` without a value; ``""`` for composites and alarms that were not evaluated.
        The value has enough digits never to look equal to the threshold, or beyond it, when it
        is not."""
        if self.threshold is None or self.comparison is None:
            return ""
        op = COMPARISON_TEXT.get(self.comparison, self.comparison)
        value = self.state_value()
        shown = "no data" if value is None else value_text(value, self.threshold)
        return f"{shown} ({op} {number_text(self.threshold)})"

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


class Evaluator:
    """CloudWatch's alarm evaluation over EMF data, incremental and offline.

    ``defs`` is ``synth(..., format="json")`` output (``MetricAlarms``/``CompositeAlarms``) or any
    CloudFormation template dict with ``AWS::CloudWatch::Alarm``/``CompositeAlarm`` resources.

    Options (each one an assumption where CloudWatch's documentation is silent):
    ``start`` first evaluation time (default: the earliest data, or the first ``advance``);
    ``range_extra`` datapoints fetched beyond N (evaluation range N + 2, documented 5 for N = 3;
    0..100);
    ``alignment`` "rolling" (periods end at the evaluation time, aligned to the evaluation
    interval) or "period" (periods at UTC multiples of the period); ``datapoint_delay_s`` a
    period is evaluated once it ended at least this long before the evaluation time (0..86400 s);
    ``max_lateness_s`` drop samples older than the last evaluation minus this (finite, >= 0;
    None = keep);
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
        if isinstance(range_extra, bool) or not isinstance(range_extra, int):
            raise ValueError("range_extra must be an integer")
        if not 0 <= range_extra <= MAX_RANGE_EXTRA:
            raise ValueError(f"range_extra must be 0..{MAX_RANGE_EXTRA}")
        if not 0 <= datapoint_delay_s <= MAX_DATAPOINT_DELAY_S:  # NaN fails too
            raise ValueError(f"datapoint_delay_s must be 0..{MAX_DATAPOINT_DELAY_S:g} seconds")
        if max_lateness_s is not None and not 0 <= max_lateness_s < math.inf:
            raise ValueError("max_lateness_s must be a finite number of seconds >= 0")
        if start is not None and not 0 <= start <= _MAX_EPOCH_S:
            raise ValueError(f"start={start!r} is not an epoch time in seconds (1970..9999)")
        if tick_s is not None and (tick_s <= 0 or tick_s % 10):
            raise ValueError("tick_s must be a positive multiple of 10")
        self.tick_s = tick_s
        self.range_extra = int(range_extra)
        self.alignment = alignment
        self.datapoint_delay_s = float(datapoint_delay_s)
        self.max_lateness_s = max_lateness_s
        self.low_sample_scope = low_sample_scope
        self.stats = {
            "lines": 0,
            "emf_lines": 0,
            "bad_lines": 0,
            "samples": 0.0,
            "values": 0,
            "late_dropped": 0,
            "rejected": 0,
        }
        #: Metric data CloudWatch would reject, by reason (see :attr:`rejection_warnings`).
        self.rejections: dict[str, int] = {}
        #: Where each reason was first met, for reasons that name a kind, not a value.
        self._first_seen: dict[str, str] = {}
        self._check = _emf.CloudWatchCheck()
        self._seen: dict[object, str | None] = {}
        metric_defs, composite_defs = definitions(defs, params or {})
        compiler = Compiler(tick_s=tick_s, alignment=alignment, percentile_method=percentile_method)
        self._alarms: list[Alarm] = [compiler.alarm(a) for a in metric_defs]
        self._composites = compiler.composites(composite_defs, {a.name for a in self._alarms})
        self.warnings = compiler.warnings
        self._index = compiler.index
        self._series = compiler.series
        names = [a.name for a in self._alarms] + [c.name for c in self._composites]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"duplicate alarm name {dup!r}")
        self._states: dict[str, str] = dict.fromkeys(names, INSUFFICIENT)
        self._ns_seen: set[str] = set()
        #: line numbers of the recording being ingested whose event is too large (see ingest)
        self._oversized: set[int] = set()
        self._start = start
        self._next: int | None = None
        self._last_tick: int | None = None
        self._min_ts: float | None = None
        self._max_ts: float | None = None
        self._horizon = max(
            [(a.n + self.range_extra + 1) * a.period + a.tick for a in self._alarms] or [60]
        ) + int(self.datapoint_delay_s)
        self._next_prune = 0

    # -- ingestion ---------------------------------------------------------------------------
    def ingest_line(self, line: str | bytes) -> int:
        """Ingest one log line as it arrives (live); returns the metric values read (0 for
        non-EMF or bad lines). Its timestamp is checked on its own (a number of milliseconds from
        1970 to 9999), not against other lines: see :meth:`ingest` for a recording."""
        self.stats["lines"] += 1
        obj, too_large = _emf.decode_event(line)
        if obj is None:
            self.stats["bad_lines"] += 1
            return 0
        if too_large:
            return self._reject_document(obj, _EVENT_TOO_LARGE, None)
        return self.ingest_record(obj)

    def ingest(self, lines: Iterable[str | bytes], source: str = "input") -> int:
        """Ingest the lines of one recording (one log file or stream, in the order written);
        returns the metric values read. Unlike :meth:`ingest_line`, each EMF line's timestamp is
        also judged by the lines around it, which stand for the time CloudWatch ingested it
        (``alarms._timestamps``): a line CloudWatch would have refused as more than 14 days in
        the past or 2 hours in the future of that time is left out and counted in
        :attr:`rejections`, with ``source`` and the line number of the first one. Give each file
        its own call: lines are judged by lines of the same recording."""
        read = 0
        for (line_no, obj), problem in _timestamps.screen(self._timestamped(lines)):
            if obj is None:
                continue
            if line_no in self._oversized:
                self._oversized.discard(line_no)
                self._reject_document(obj, _EVENT_TOO_LARGE, (source, line_no))
            else:
                read += self._ingest(obj, problem, (source, line_no))
        return read

    def _timestamped(
        self, lines: Iterable[str | bytes]
    ) -> Iterator[tuple[tuple[int, dict[str, Any] | None], float | None]]:
        for line_no, line in enumerate(lines, 1):
            self.stats["lines"] += 1
            obj, too_large = _emf.decode_event(line)
            if obj is None:
                self.stats["bad_lines"] += 1
                yield (line_no, None), None
            elif too_large:  # CloudWatch Logs never takes it: no time to judge others by
                self._oversized.add(line_no)
                yield (line_no, obj), None
            else:
                yield (line_no, obj), _emf.timestamp_s(obj)

    def ingest_record(self, obj: Mapping[str, Any]) -> int:
        """Ingest one decoded EMF object; malformed parts are counted, never raised."""
        return self._ingest(obj, None, None)

    def _ingest(
        self, obj: Mapping[str, Any], age_problem: str | None, where: tuple[str, int] | None
    ) -> int:
        """Ingest one EMF object; ``age_problem``: why CloudWatch would have refused its
        timestamp given when it was ingested (:meth:`ingest`); ``where``: (source, line number)."""
        raw, problem = _emf.timestamp_ms(obj)  # type: ignore[arg-type]
        if problem is not None or age_problem is not None:
            return self._reject_line(obj, raw, problem, age_problem, where)
        crowded = next(
            (
                len(m)
                for d in _emf.directives(obj)  # type: ignore[arg-type]
                if isinstance(m := d.get("Metrics"), list)
                and len(m) > _emf.MAX_METRICS_PER_DIRECTIVE
            ),
            None,
        )
        if crowded is not None:
            return self._reject_document(
                obj,
                f"a directive of {crowded} metrics (the EMF specification: at most "
                f"{_emf.MAX_METRICS_PER_DIRECTIVE}); CloudWatch extracts no metric from the line",
                where,
            )
        ts = raw / 1000.0
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
        check = self._check
        # Cached answers, one lookup each: namespaces and metric names (str) and dimension sets
        # (tuples) never collide; bounded against hostile input with ever new names.
        seen = self._seen
        if len(seen) > 10_000:
            seen.clear()
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
            # What CloudWatch would reject is warned about and left out, as CloudWatch leaves it
            # out: an alarm on it would see no data in production either.
            ns_problem = seen.get(ns, _UNSEEN)
            if ns_problem is _UNSEEN:
                ns_problem = seen[ns] = check.namespace(ns)
            if ns_problem is None:
                self._ns_seen.add(ns)
            keys = []
            dim_problems = []
            for ds in dimsets:
                if not isinstance(ds, list):
                    continue
                try:
                    key = tuple(sorted((k, obj[k]) for k in ds))
                    problem = seen.get(key, _UNSEEN)  # type: ignore[call-overload]
                except (KeyError, TypeError):
                    # a name that is no string, a value that is an array or object, or a name
                    # with no value: the slow path says which
                    problem = self._set_problem(ds, obj)
                    if problem is None:  # a dimension without a value: CloudWatch drops it
                        self.stats["bad_lines"] += 1
                        continue
                    dim_problems.append(problem)
                    continue
                if problem is _UNSEEN:
                    problem = self._key_problem(key)
                if problem is None:
                    keys.append(key)
                else:
                    dim_problems.append(problem)
            for md in metrics:
                if not isinstance(md, dict) or not isinstance(md.get("Name"), str):
                    continue
                name = md["Name"]
                value = obj.get(name)
                parsed = _emf.samples(value)
                if parsed is None:
                    problem = _emf.value_rejection(value)
                    if problem is None:
                        self.stats["bad_lines"] += 1
                    else:
                        self._reject(f"{ns}/{name}: {problem}", max(1, len(dimsets)))
                    continue
                problem = seen.get(name, _UNSEEN)
                if problem is _UNSEEN:
                    problem = seen[name] = check.metric_name(name)
                problem = ns_problem or problem
                if problem is not None:
                    self._reject(f"namespace {problem}" if ns_problem else f"metric {problem}",
                                 max(1, len(dimsets)))  # fmt: skip
                    continue
                # The EMF specification: Unit MUST be a MetricDatum unit, StorageResolution 1 or
                # 60; CloudWatch Logs extracts no metric from a directive that breaks them.
                unit = md.get("Unit")
                res = md.get("StorageResolution")
                if unit is not None and (not isinstance(unit, str) or unit not in _cw.UNITS):
                    self._reject(
                        f"{ns}/{name}: Unit {_emf.short_repr(unit)} is not a CloudWatch unit",
                        max(1, len(dimsets)),
                    )
                    continue
                if res is not None and not (type(res) is int and res in (1, 60)):
                    self._reject(
                        f"{ns}/{name}: StorageResolution {_emf.short_repr(res)} is not 1 or 60",
                        max(1, len(dimsets)),
                    )
                    continue
                for dp in dim_problems:
                    self._reject(f"{ns}: dimension {dp}", 1)
                if not keys:
                    continue
                smp, sset = parsed
                n_samples = sset[0] if sset is not None else sum(c for _, c in smp)
                read += 1
                self.stats["samples"] += n_samples
                targets = [s for k in keys for s in index.get((ns, name, k), ())]
                if not targets:
                    continue
                unit = unit or "None"
                res = 1 if res == 1 else 60
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

    def _reject_line(
        self,
        obj: Mapping[str, Any],
        raw: Any,
        problem: str | None,
        age_problem: str | None,
        where: tuple[str, int] | None,
    ) -> int:
        """Leave out a line CloudWatch extracts no metric from for its timestamp: warned about
        and counted per metric value in it; a line without metrics is only a bad line."""
        n = _emf.metric_values(obj)  # type: ignore[arg-type]
        if not n:
            self.stats["bad_lines"] += 1
            return 0
        self.stats["emf_lines"] += 1
        if problem is None:  # a time, but not one CloudWatch takes when the line was ingested
            problem = f"{age_problem} (offline: the time of the lines around it)"
            shown = f"{number_text(raw)} = {iso(raw / 1000.0)}"
        else:
            shown = _emf.short_repr(raw)
        at = f"{where[0]} line {where[1]}" if where else "e.g."
        self._reject(f"_aws.Timestamp {problem}", n, f"{at}: {shown}")
        return 0

    def _reject_document(
        self, obj: Mapping[str, Any], problem: str, where: tuple[str, int] | None
    ) -> int:
        """Leave out a whole EMF document CloudWatch extracts no metric from (too large an event,
        a directive of more than 100 metrics): warned about and counted per metric value in it;
        a document without metrics is only a bad line."""
        n = _emf.metric_values(obj)  # type: ignore[arg-type]
        if not n:
            self.stats["bad_lines"] += 1
            return 0
        self.stats["emf_lines"] += 1
        example = f"{where[0]} line {where[1]}" if where else None
        self._reject(problem, n, example)
        return 0

    def _set_problem(self, names: list[Any], obj: Mapping[str, Any]) -> str | None:
        """Why CloudWatch would reject a dimension set that cannot be a cache key: a name that
        is not a string, or a value that is an array or an object (``None``: every name is a
        string and one has no value, which drops the set)."""
        for name in names:
            if not isinstance(name, str):
                return f"name {self._check.dimension(name, '')}"
        for name in names:
            if name in obj and (problem := self._check.dimension(name, obj[name])):
                return f"{name} {problem}"
        return None

    def _key_problem(self, key: tuple[tuple[str, Any], ...]) -> str | None:
        """Why CloudWatch would reject a dimension set (``None``: accepted)."""
        if len(key) > MAX_DIMENSIONS_PER_METRIC:
            problem: str | None = (
                f"set of {len(key)} dimensions (at most {MAX_DIMENSIONS_PER_METRIC} per metric)"
            )
        else:
            problem = next((f"{k} {p}" for k, v in key if (p := self._check.dimension(k, v))), None)
        self._seen[key] = problem
        return problem

    def _reject(self, problem: str, n: int, example: str | None = None) -> None:
        self.stats["rejected"] += n
        if problem not in self.rejections and len(self.rejections) >= _MAX_REJECTION_KINDS:
            problem = "other problems"
        elif example is not None and problem not in self._first_seen:
            self._first_seen[problem] = example
        self.rejections[problem] = self.rejections.get(problem, 0) + n

    @property
    def rejection_warnings(self) -> list[str]:
        """One line per kind of metric data CloudWatch would reject (``telemetry.cloudwatch_rules``),
        most frequent first: ``"12 metric values CloudWatch would reject: NS/Latency: ..."``. The
        evaluator leaves such data out, as CloudWatch would."""
        ranked = sorted(self.rejections.items(), key=lambda kv: (-kv[1], kv[0]))
        return [
            f"{n} metric values CloudWatch would reject: {why}"
            + (f" (first: {self._first_seen[why]})" if why in self._first_seen else "")
            for why, n in ranked
        ]

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

    def _starts(self, a: Alarm, t: int) -> list[int]:
        end = t - self.datapoint_delay_s
        if self.alignment == "rolling":
            g = math.gcd(a.period, a.tick)
            newest = int(end // g) * g - a.period
        else:
            newest = int(end // a.period) * a.period - a.period
        return [newest - k * a.period for k in range(a.n + self.range_extra - 1, -1, -1)]

    def _point(self, a: Alarm, start: int) -> tuple[float | None, float]:
        if a.query is not None:
            return a.query.value(start)
        values = {qid: q.value(start)[0] for qid, q in a.inputs.items()}
        if all(v is None for v in values.values()):
            return None, 0.0
        return a.expr(values), 1.0  # type: ignore[misc]

    def _evaluate(self, a: Alarm, t: int) -> Evaluation:
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
                    a.threshold,
                    a.op,
                )
        cmp = COMPARISONS[a.op]
        flags = [None if v is None else cmp(v, a.threshold) for v, _ in points]
        state, why = decide(flags, a.n, a.m, a.treat, prev)
        reason = (
            f"{why} ({COMPARISON_TEXT[a.op]} {number_text(a.threshold)}; {a.m} of {a.n} to alarm;"
            f" range {len(flags)} x {a.period} s)"
        )
        self._states[a.name] = state
        return Evaluation(t, a.name, state, prev, newest, datapoints, reason, a.threshold, a.op)

    @staticmethod
    def _queries(a: Alarm) -> list[Query]:
        return [a.query] if a.query is not None else list(a.inputs.values())

    def _evaluate_composite(self, c: Composite, t: int) -> Evaluation:
        prev = self._states[c.name]
        if c.rule is None:
            return Evaluation(t, c.name, prev, prev, None, (), f"not evaluated: {c.unsupported}")
        state = ALARM if eval_rule(c.rule, self._states) else OK
        self._states[c.name] = state
        children = ", ".join(f"{n}={self._states.get(n, INSUFFICIENT)}" for n in sorted(c.deps))
        return Evaluation(t, c.name, state, prev, None, (), f"rule is {state == ALARM}: {children}")
