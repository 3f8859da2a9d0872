"""A statistical judge of green against blue, in the manner of Kayenta's canary analysis.

Each metric compares the two versions' samples of the same window (here: the requests each one
answered, as clients saw them at the listener) with a Mann-Whitney U test
(``scipy.stats.mannwhitneyu``, two-sided) and an effect size. A metric is

* ``NoData`` when either version has fewer than ``min_samples`` samples;
* ``High`` (green worse, for a metric where more is bad) when the difference is significant at
  ``confidence`` (p < 1 - confidence) *and* its effect size is beyond the metric's tolerance;
* ``Low`` when it is significantly *lower* beyond the tolerance (reported; it passes, since only
  an increase hurts here);
* ``Pass`` otherwise.

The score is Kayenta's: the weights of the passing metrics over the weights of the metrics with
data, in percent. ``score >= pass_score`` is ``Pass``, ``>= marginal_score`` ``Marginal``, below
that ``Fail``; a ``High`` critical metric fails the whole judgement; no metric with data is
``NoData``.

Effect sizes (why not just the p-value: with hundreds of samples a harmless 1 ms difference is
"significant"):

* ``latency_ms`` - the Hodges-Lehmann estimate of the shift (median of every green-minus-blue
  difference, ms) must exceed ``max(min_shift, relative_shift x blue's median)``: green at twice
  blue's latency and at least 25 ms slower, by default. A green 3x slower than a fast blue is
  caught well below any static threshold; a slow-but-normal day, slow on both versions, is not.
* ``failed`` - 1 for a 5xx or a 429, else 0: the difference of the failure rates must exceed
  ``min_shift`` (5 percentage points by default).

Sources: Kayenta's Mann-Whitney classifier and scorer (Spinnaker "Canary analysis" docs: metric
classifications High/Low/Pass/NoData, weighted group scores, marginal and pass thresholds).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rehearsal.listener import Record

HIGH, LOW, PASS, NODATA = "High", "Low", "Pass", "NoData"
FAIL, MARGINAL = "Fail", "Marginal"
BASELINE, CANARY = "blue", "green"


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of the judgement. ``effect``: ``"shift"`` (Hodges-Lehmann, in the metric's
    unit, floored at ``relative_shift`` x the baseline's median) or ``"rate"`` (difference of
    means, for 0/1 samples)."""

    name: str
    weight: float
    effect: str = "shift"
    min_shift: float = 0.0
    relative_shift: float = 0.0
    critical: bool = False


DEFAULT_METRICS = (
    Metric("latency_ms", weight=60, effect="shift", min_shift=25.0, relative_shift=1.0),
    Metric("failed", weight=40, effect="rate", min_shift=0.05),
)


@dataclass(frozen=True, slots=True)
class JudgeConfig:
    """The judge's settings. ``window_s``: how far back one judgement looks (seconds, never
    before the last traffic change); ``interval_s``: how often the rehearsal judges;
    ``consecutive``: failing judgements in a row before a rollback."""

    metrics: tuple[Metric, ...] = DEFAULT_METRICS
    confidence: float = 0.99
    min_samples: int = 8
    pass_score: float = 95.0
    marginal_score: float = 75.0
    window_s: float = 10.0
    interval_s: float = 1.0
    consecutive: int = 2

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence!r}")
        if self.min_samples < 3:
            raise ValueError(f"min_samples must be >= 3, got {self.min_samples!r}")
        if not 0 <= self.marginal_score <= self.pass_score <= 100:
            raise ValueError("scores must satisfy 0 <= marginal_score <= pass_score <= 100")
        if self.window_s <= 0 or self.interval_s <= 0 or self.consecutive < 1:
            raise ValueError("window_s and interval_s must be > 0, consecutive >= 1")
        if not self.metrics or any(m.weight <= 0 for m in self.metrics):
            raise ValueError("at least one metric, every weight > 0")


@dataclass(frozen=True, slots=True)
class MetricResult:
    name: str
    classification: str
    baseline_n: int
    canary_n: int
    p_value: float | None = None
    effect: float | None = None  # the shift (metric's unit) or the rate difference
    tolerance: float | None = None  # the effect beyond which the metric is High/Low
    baseline_median: float | None = None
    canary_median: float | None = None

    def to_dict(self) -> dict[str, Any]:
        def tidy(v: Any) -> Any:
            if isinstance(v, float):
                return float(f"{v:.4g}") if math.isfinite(v) else None
            return v

        return {k: tidy(v) for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class Verdict:
    result: str  # Pass, Marginal, Fail, NoData
    score: float | None
    metrics: tuple[MetricResult, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> bool:
        return self.result == FAIL

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "score": None if self.score is None else round(self.score, 1),
            "metrics": [m.to_dict() for m in self.metrics],
        }

    def describe(self) -> str:
        parts = [
            f"{m.name} {m.classification}"
            + (f" (p={m.p_value:.2g}, effect {m.effect:.3g})" if m.p_value is not None else "")
            for m in self.metrics
        ]
        score = "-" if self.score is None else f"{self.score:.0f}"
        return f"judge {self.result} (score {score}): " + ", ".join(parts)


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


#: At most this many values of each sample go into the Hodges-Lehmann estimate: it takes every
#: pairwise difference, and 20 000 requests a side in one window would be 400 million of them
#: (3 GB). Evenly spaced order statistics keep each sample's distribution.
HL_MAX_SAMPLES = 2000


def _thin(values: Sequence[float]) -> Any:
    import numpy as np

    arr = np.sort(np.asarray(values, float))
    if len(arr) <= HL_MAX_SAMPLES:
        return arr
    return arr[np.linspace(0, len(arr) - 1, HL_MAX_SAMPLES).round().astype(int)]


def _hodges_lehmann(canary: Sequence[float], baseline: Sequence[float]) -> float:
    """The median of every pairwise difference canary - baseline (the shift MWU tests); above
    :data:`HL_MAX_SAMPLES` a side, of evenly spaced order statistics of that side."""
    import numpy as np

    return float(np.median(np.subtract.outer(_thin(canary), _thin(baseline))))


def classify(
    metric: Metric, baseline: Sequence[float], canary: Sequence[float], config: JudgeConfig
) -> MetricResult:
    """One metric's classification (see the module docstring)."""
    nb, nc = len(baseline), len(canary)
    if nb < config.min_samples or nc < config.min_samples:
        return MetricResult(metric.name, NODATA, nb, nc)
    from scipy.stats import mannwhitneyu

    base_median, can_median = _median(baseline), _median(canary)
    if metric.effect == "rate":
        effect = sum(canary) / nc - sum(baseline) / nb
        tolerance = metric.min_shift
    else:
        effect = _hodges_lehmann(canary, baseline)
        tolerance = max(metric.min_shift, metric.relative_shift * abs(base_median))
    if min(canary) == max(canary) == min(baseline) == max(baseline):
        p = 1.0  # every sample equal: nothing to test (scipy would divide by a zero variance)
    else:
        p = float(mannwhitneyu(canary, baseline, alternative="two-sided").pvalue)
    significant = math.isfinite(p) and p < 1 - config.confidence
    if significant and effect > tolerance:
        label = HIGH
    elif significant and effect < -tolerance:
        label = LOW
    else:
        label = PASS
    return MetricResult(metric.name, label, nb, nc, p, effect, tolerance, base_median, can_median)


def judge(
    baseline: Mapping[str, Sequence[float]],
    canary: Mapping[str, Sequence[float]],
    config: JudgeConfig | None = None,
) -> Verdict:
    """Judge ``canary`` against ``baseline``: per metric name, the samples of each version."""
    config = config or JudgeConfig()
    results = tuple(
        classify(m, baseline.get(m.name, ()), canary.get(m.name, ()), config)
        for m in config.metrics
    )
    weights = {m.name: m.weight for m in config.metrics}
    with_data = [r for r in results if r.classification != NODATA]
    if not with_data:
        return Verdict(NODATA, None, results)
    critical = {m.name for m in config.metrics if m.critical}
    if any(r.classification == HIGH and r.name in critical for r in with_data):
        return Verdict(FAIL, 0.0, results)
    passing = sum(weights[r.name] for r in with_data if r.classification != HIGH)
    score = 100.0 * passing / sum(weights[r.name] for r in with_data)
    if score >= config.pass_score:
        result = PASS
    elif score >= config.marginal_score:
        result = MARGINAL
    else:
        result = FAIL
    return Verdict(result, score, results)


def samples(records: Iterable[Record], since: float, until: float) -> dict[str, dict[str, list]]:
    """Per version, the judge's samples of the requests answered in ``[since, until)``:
    ``latency_ms`` and ``failed`` (1 for a 5xx or a 429)."""
    out: dict[str, dict[str, list]] = {}
    for r in records:
        if since <= r.time < until:
            version = out.setdefault(r.target, {"latency_ms": [], "failed": []})
            version["latency_ms"].append(r.latency_ms)
            version["failed"].append(1.0 if r.status >= 500 or r.status == 429 else 0.0)
    return out


def window_start(now: float, traffic: Sequence[tuple[float, int]], window_s: float) -> float:
    """The judged window's start: ``window_s`` back, but never before the last traffic change
    (a window across a shift would compare green at one load with blue at another)."""
    last_change = max((at for at, _ in traffic if at <= now), default=now - window_s)
    return max(now - window_s, last_change)


def judge_at(
    records: Iterable[Record],
    traffic: Sequence[tuple[float, int]],
    now: float,
    config: JudgeConfig | None = None,
) -> Verdict:
    """The judgement the rehearsal makes at ``now`` (epoch s) from the listener's records."""
    config = config or JudgeConfig()
    by_version = samples(records, window_start(now, traffic, config.window_s), now)
    return judge(by_version.get(BASELINE, {}), by_version.get(CANARY, {}), config)


def replay(
    records: Sequence[Record],
    traffic: Sequence[tuple[float, int]],
    start: float,
    end: float,
    config: JudgeConfig | None = None,
) -> tuple[list[tuple[float, Verdict]], float | None]:
    """Judge every ``interval_s`` from ``start`` to ``end`` (epoch s) as the rehearsal does;
    returns the judgements and when the judge would have rolled back (``None``: never).

    A stretch without any request is judged once (``NoData``) and then skipped to the next
    request: a recording with a gap of days (or one record far from the others) costs one
    judgement, not one a second; each judgement reads only its window (the records sorted once)."""
    config = config or JudgeConfig()
    ordered = sorted(records, key=lambda r: r.time)
    times = [r.time for r in ordered]
    out: list[tuple[float, Verdict]] = []
    fired, streak = None, 0
    steps = int(max(0.0, end - start) / config.interval_s)
    i = 1
    while i <= steps:
        now = start + i * config.interval_s
        since = window_start(now, traffic, config.window_s)
        lo, hi = bisect_left(times, since), bisect_left(times, now)
        by_version = samples(ordered[lo:hi], since, now)
        verdict = judge(by_version.get(BASELINE, {}), by_version.get(CANARY, {}), config)
        out.append((now, verdict))
        streak = streak + 1 if verdict.failed else 0
        if fired is None and streak >= config.consecutive:
            fired = now
        if lo == hi and hi < len(times):
            # No request in [since, now) nor until the next one: every judgement before a
            # moment past it would be NoData too (windows only move forward).
            i = max(i + 1, math.floor((times[hi] - start) / config.interval_s) + 1)
        else:
            i += 1
    return out, fired


#: The name a judge's rollback carries where an alarm's name would be (decision, report).
TRIGGER_NAME = "judge"


class JudgeTrigger:
    """The judge as a rollback trigger in the rehearsal: called by the controller at every tick
    with the time, judges every ``interval_s`` once green has traffic, and returns
    ``[TRIGGER_NAME]`` after ``consecutive`` failing judgements in a row (else ``[]``).

    ``history`` keeps every judgement (epoch s, :class:`Verdict`) for the report."""

    name = TRIGGER_NAME  # what the controller reports as firing

    def __init__(self, timeline: Any, config: JudgeConfig | None = None) -> None:
        self.timeline = timeline
        self.config = config or JudgeConfig()
        self.history: list[tuple[float, Verdict]] = []
        #: the start of the window each judgement looked at (epoch s), parallel to ``history``
        self.windows: list[float] = []
        self._next = 0.0
        self._streak = 0

    def __call__(self, now: float) -> list[str]:
        tl, config = self.timeline, self.config
        if tl.t0 is None or now < tl.t0 or now < self._next:
            return [TRIGGER_NAME] if self._streak >= config.consecutive else []
        self._next = now + config.interval_s
        since = window_start(now, list(tl.traffic), config.window_s)
        by_version = samples(tl.snapshot(since), since, now)
        verdict = judge(by_version.get(BASELINE, {}), by_version.get(CANARY, {}), config)
        self.history.append((now, verdict))
        self.windows.append(since)
        self._streak = self._streak + 1 if verdict.failed else 0
        return [TRIGGER_NAME] if self._streak >= config.consecutive else []

    @property
    def deciding(self) -> tuple[float, Verdict] | None:
        """The last failing judgement, if the judge fired; else the last one."""
        failing = [h for h in self.history if h[1].failed]
        return failing[-1] if failing else (self.history[-1] if self.history else None)

    def explain(self) -> tuple[str, tuple[float, float]] | None:
        """Why the judge fired: the deciding (last failing) judgement's sentence and the window it
        judged, ``(start, end)`` in epoch s; ``None`` if no judgement failed."""
        for (at, verdict), since in zip(
            reversed(self.history), reversed(self.windows), strict=True
        ):
            if verdict.failed:
                return verdict.describe(), (since, at)
        return None

    def to_dict(self, t0: float | None) -> dict[str, Any]:
        origin = t0 or 0.0
        return {
            "config": {
                **{k: v for k, v in asdict(self.config).items() if k != "metrics"},
                "metrics": [asdict(m) for m in self.config.metrics],
            },
            "judgements": [
                {
                    "t": round(at - origin, 2),
                    "window_start": round(since - origin, 2),
                    **v.to_dict(),
                    "line": v.describe(),
                }
                for (at, v), since in zip(self.history, self.windows, strict=True)
            ],
        }


def what_fired(name: str | None) -> str:
    """The rollback's cause for people: ``"the judge failed green"`` or ``"<alarm> went to
    ALARM"``."""
    return "the judge failed green" if name == TRIGGER_NAME else f"{name} went to ALARM"
