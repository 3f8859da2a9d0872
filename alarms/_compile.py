"""The definition compiler: alarm definitions (``synth`` JSON or any CloudFormation template) into
alarms that read series of the bucket store (see ``_store``), with one warning per alarm the
evaluator cannot evaluate (it stays INSUFFICIENT_DATA)."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from typing import Any

from ._expr import ExpressionError, MathExpr, Rule, parse_math, parse_rule, rule_names
from ._rules import COMPARISONS, TREATMENTS, low_sample_minimum, max_evaluation_s
from ._store import SIMPLE_STATS, Query, Series

#: PutMetricAlarm / PutCompositeAlarm: AlarmName is 1-255 characters, "can't contain ASCII
#: control characters" (CloudWatch API reference).
MAX_ALARM_NAME = 255


def _alarm_name(d: Any, what: str) -> str:
    """The AlarmName of definition ``d``; ValueError for one CloudWatch refuses (a newline or an
    escape sequence in it would also forge rows of replay's table)."""
    name = d.get("AlarmName") if isinstance(d, Mapping) else None
    if not isinstance(name, str):
        raise ValueError(f"every {what} needs an AlarmName")
    if not 1 <= len(name) <= MAX_ALARM_NAME:
        raise ValueError(
            f"{what} AlarmName {name[:40]!r} is {len(name)} characters; CloudWatch takes 1-255"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(
            f"{what} AlarmName {name[:60]!r} has ASCII control characters, which CloudWatch refuses"
        )
    return name


class Alarm:
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
        self.query: Query | None = None
        self.expr: MathExpr | None = None
        self.inputs: dict[str, Query] = {}
        self.low_min: float | None = None
        self.aws_only = False
        self.period = 60
        self.tick = 60
        self.n = self.m = 1
        self.threshold = 0.0
        self.op = "GreaterThanThreshold"
        self.treat = "missing"


class Composite:
    __slots__ = ("deps", "name", "rule", "unsupported")

    def __init__(self, name: str) -> None:
        self.name = name
        self.rule: Rule | None = None
        self.deps: set[str] = set()
        self.unsupported: str | None = None


def _dims_key(dims: Any) -> tuple[tuple[str, str], ...]:
    if not dims:
        return ()
    if not isinstance(dims, list) or not all(
        isinstance(d, Mapping) and _dimension_text(d.get("Name")) and "Value" in d for d in dims
    ):
        raise ExpressionError("Dimensions must be a list of {Name, Value} objects")
    values = [_dimension_text(d["Value"]) for d in dims]
    if None in values:  # str() of null or an object is no dimension value CloudWatch keeps
        raise ExpressionError("a dimension Value must be text (or a number in a template)")
    return tuple(sorted((str(d["Name"]), str(v)) for d, v in zip(dims, values, strict=True)))


def _dimension_text(value: Any) -> str | None:
    """A dimension's name or value as CloudWatch keeps it: text, or a template's YAML number."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


# ASCII digits only: int()/float() also read '1_0', other scripts' digits and padding, which
# PutMetricAlarm and CloudFormation refuse.
_WHOLE_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _whole(value: Any, name: str) -> int:
    """An integer field (JSON number or, in a template, its text); 10.5 is not 10."""
    if isinstance(value, str) and _WHOLE_TEXT.fullmatch(value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ExpressionError(f"{name} {value!r:.40} is not a whole number")


def _finite(value: Any, name: str) -> float:
    """A Double field (JSON number or, in a template, its text), finite: NaN never breaches."""
    number = math.nan
    if (isinstance(value, str) and _NUMBER_TEXT.fullmatch(value)) or (
        isinstance(value, (int, float)) and not isinstance(value, bool)
    ):
        with contextlib.suppress(OverflowError):  # an int past a float's range stays NaN
            number = float(value)
    if not math.isfinite(number):
        raise ExpressionError(f"{name} {value!r:.40} is not a finite number")
    return number


def _flag(value: Any, name: str) -> bool:
    """A Boolean field: JSON true/false or, in a CloudFormation template, "true"/"false"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ExpressionError(f"{name} must be true or false, not {value!r:.40}")


def definitions(defs: Mapping[str, Any], params: Mapping[str, str]) -> tuple[list, list]:
    """``(metric alarm definitions, composite alarm definitions)`` in the PutMetricAlarm /
    PutCompositeAlarm shapes, from ``synth`` JSON or a CloudFormation template.

    Raises ValueError (``TemplateError`` for templates) when ``defs`` holds no alarms."""
    if not isinstance(defs, Mapping):
        raise ValueError("alarm definitions must be a JSON object")
    if "Resources" in defs:
        from ._read_cfn import template_alarms

        return template_alarms(defs, params)
    if "MetricAlarms" not in defs and "CompositeAlarms" not in defs:
        raise ValueError("no MetricAlarms/CompositeAlarms and no CloudFormation Resources")
    metric, composite = defs.get("MetricAlarms") or [], defs.get("CompositeAlarms") or []
    if not isinstance(metric, list) or not isinstance(composite, list):
        raise ValueError("MetricAlarms and CompositeAlarms must be lists")
    return metric, composite


class Compiler:
    """Compiles definitions into :class:`Alarm`/:class:`Composite` objects, creating the store's
    series they read (``series``; ``index`` maps a metric identity to its series)."""

    def __init__(self, *, tick_s: int | None, alignment: str, percentile_method: str) -> None:
        self.tick_s = tick_s
        self.alignment = alignment
        self.percentile_method = percentile_method
        self.warnings: list[str] = []
        self.index: dict[tuple[str, str, tuple], list[Series]] = {}
        self.series: dict[tuple, Series] = {}

    def tick_for(self, period: int) -> int:
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
    ) -> Series:
        gran = math.gcd(period, tick) if self.alignment == "rolling" else period
        ident = (ns, name, _dims_key(dims))
        key = (*ident, unit, gran)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series(gran, unit)
            self.index.setdefault(ident, []).append(s)
        s.values = s.values or percentile
        return s

    def _query(
        self, a: Alarm, ns: Any, name: Any, dims: Any, unit: Any, stat: Any, period: int
    ) -> Query:
        if not isinstance(ns, str) or not isinstance(name, str):
            raise ExpressionError("Namespace and MetricName are required")
        if not isinstance(stat, str) or not (stat in SIMPLE_STATS or _is_pct(stat)):
            raise ExpressionError(f"statistic {stat!r} is not supported")
        series = self._series_for(ns, name, dims, unit, period, a.tick, stat.startswith("p"))
        return Query(series, ns, stat, period, self.percentile_method)

    def alarm(self, d: Mapping[str, Any]) -> Alarm:
        """One metric alarm (PutMetricAlarm shape); an unsupported one is kept with a warning.

        Raises ValueError only when the definition has no AlarmName CloudWatch would take."""
        a = Alarm(_alarm_name(d, "metric alarm"))
        try:
            a.op = d["ComparisonOperator"]
            if a.op not in COMPARISONS:
                raise ExpressionError(f"ComparisonOperator {a.op} is not supported")
            if "ThresholdMetricId" in d:
                raise ExpressionError("anomaly detection bands are not supported")
            a.threshold = _finite(d["Threshold"], "Threshold")
            a.n = _whole(d["EvaluationPeriods"], "EvaluationPeriods")
            # only an absent one defaults to EvaluationPeriods: 0 is refused below, not read as N
            m = d.get("DatapointsToAlarm")
            a.m = a.n if m is None else _whole(m, "DatapointsToAlarm")
            if a.n < 1:
                raise ExpressionError("EvaluationPeriods must be at least 1")
            if not 1 <= a.m <= a.n:
                raise ExpressionError("DatapointsToAlarm must be between 1 and EvaluationPeriods")
            a.treat = d.get("TreatMissingData") or "missing"
            if a.treat not in TREATMENTS:
                raise ExpressionError(f"TreatMissingData {a.treat!r} is not valid")
            if d.get("Metrics"):
                self._compile_math(a, d["Metrics"])
            else:
                a.period = _period(d.get("Period"))
                a.tick = self.tick_for(a.period)
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
            _check_window(a.period, a.n)
        except (ExpressionError, KeyError, TypeError, ValueError, OverflowError) as exc:
            # OverflowError: int() of an infinite number (JSON's Infinity, YAML's .inf)
            msg = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            a.unsupported = msg
            self.warnings.append(f"alarm {a.name}: {msg}; it stays INSUFFICIENT_DATA")
        return a

    def _compile_math(self, a: Alarm, metrics: Any) -> None:
        if not isinstance(metrics, list) or len(metrics) > 10:
            raise ExpressionError("Metrics must be a list of at most 10 queries")
        exprs: dict[str, MathExpr] = {}
        stats: dict[str, dict] = {}
        if not all(isinstance(q, Mapping) for q in metrics):
            raise ExpressionError("each query in Metrics must be an object")
        ret = [q for q in metrics if _flag(q.get("ReturnData", True), "ReturnData")]
        if len(ret) != 1:
            raise ExpressionError("exactly one query must have ReturnData true")
        for q in metrics:
            if "Expression" in q:
                exprs[q["Id"]] = parse_math(str(q["Expression"]))
            elif "MetricStat" in q:
                stats[q["Id"]] = q["MetricStat"]
            else:
                raise ExpressionError(f"query {q.get('Id')} has neither Expression nor MetricStat")
        if not all(isinstance(ms, Mapping) for ms in stats.values()):
            raise ExpressionError("each MetricStat must be an object")
        periods = {_period(ms.get("Period")) for ms in stats.values()}
        if len(periods) != 1:
            raise ExpressionError("metric math alarms need MetricStat queries of one Period")
        a.period = periods.pop()
        a.tick = self.tick_for(a.period)
        for qid, ms in stats.items():
            m = ms["Metric"]
            if not isinstance(m, Mapping):
                raise ExpressionError(f"query {qid}: MetricStat.Metric must be an object")
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

    def composites(self, defs: list, metric_names: set[str]) -> list[Composite]:
        """The composite alarms, children first. Raises ValueError for a cycle or a missing name."""
        out: dict[str, Composite] = {}
        for d in defs:
            c = Composite(_alarm_name(d, "composite alarm"))
            try:
                c.rule = parse_rule(str(d["AlarmRule"]))
                c.deps = rule_names(c.rule)
            except (ExpressionError, KeyError) as exc:
                c.unsupported = str(exc)
                self.warnings.append(f"composite {c.name}: {exc}; it stays INSUFFICIENT_DATA")
            out[c.name] = c
        known = metric_names | set(out)
        for c in out.values():
            for dep in sorted(c.deps - known):
                self.warnings.append(
                    f"composite {c.name}: unknown alarm {dep!r} (INSUFFICIENT_DATA)"
                )
        # Topological order: children before the composites that read them.
        ordered: list[Composite] = []
        state: dict[str, int] = {}

        def visit(c: Composite) -> None:
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


#: A percentile statistic as PutMetricAlarm's ExtendedStatistic writes it: ``p`` and a plain
#: decimal number (``p99``, ``p99.9``), not what Python's float() also reads (``p1e1``, ``p 50``,
#: ``p5_0``, ``pnan``).
_PERCENTILE = re.compile(r"p([0-9]{1,3}(?:\.[0-9]+)?)")


def _is_pct(stat: str) -> bool:
    m = _PERCENTILE.fullmatch(stat)
    return m is not None and float(m[1]) <= 100  # PutMetricAlarm: p0..p100


def _period(value: Any) -> int:
    period = _whole(value, "Period")
    if period not in (1, 5, 10, 20, 30) and (period <= 0 or period % 60):
        raise ExpressionError(f"Period {value} is not 10, 20, 30 or a multiple of 60")
    return period


def _check_window(period: int, n: int) -> None:
    """PutMetricAlarm's limit: Period x EvaluationPeriods at most one day, or seven days for
    periods of an hour or more (it also bounds the work of every evaluation)."""
    limit = max_evaluation_s(period)
    if period * n > limit:
        raise ExpressionError(
            f"Period x EvaluationPeriods is {period * n} s, above PutMetricAlarm's limit of"
            f" {limit} s"
        )


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
