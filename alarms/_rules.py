"""CloudWatch's decision rules: comparison operators, the M-of-N rule with TreatMissingData, and
the EvaluateLowSampleCountPercentile minimum (sources: the CloudWatch User Guide, "Configuring how
CloudWatch alarms treat missing data" and "Percentile-based alarms and low data samples")."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")
#: ComparisonOperator -> test of (value, threshold).
COMPARISONS = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
#: ComparisonOperator -> the operator as people write it (reasons, the replay table).
COMPARISON_TEXT = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}


def max_evaluation_s(period: int) -> int:
    """PutMetricAlarm's longest evaluation range, Period x EvaluationPeriods, in seconds: seven
    days, and one day when Period is under an hour (API reference, PutMetricAlarm, "Period")."""
    return 7 * 86400 if period >= 3600 else 86400


def low_sample_minimum(percentile: float) -> float:
    """Samples a period needs before a percentile is trusted (CloudWatch's documented rule: fewer
    than ``10/(1-p)`` for p >= 0.5, ``10/p`` below, are too few): the least whole count that is
    not fewer, e.g. 100 for p90, 1000 for p99, 34 for p70; ``inf`` for p0 and p100.

    Computed exactly from the percentile as written (``90`` of ``p90``): in binary floating point
    ``10 / (1 - 0.9)`` is 100.00000000000003, which would call a period of 100 samples too few."""
    p = Fraction(repr(float(percentile))) / 100
    if p in (0, 1):  # p0/p100: the documented formula never trusts them (no finite minimum)
        return math.inf
    return float(math.ceil(10 / (1 - p) if p >= Fraction(1, 2) else 10 / p))


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
