"""CloudWatch's M-of-N and missing-data rules, starting with the documentation's example table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarms import decide

KEEP = "keep"
# (M, N, range oldest..newest, missing, ignore, breaching, notBreaching) - the documented table.
TABLE = [
    (3, 3, "0 - X - X", "OK", "OK", "OK", "OK"),
    (3, 3, "0 - - - -", "OK", "OK", "OK", "OK"),
    (3, 3, "- - - - -", "INSUFFICIENT_DATA", KEEP, "ALARM", "OK"),
    (3, 3, "0 X X - X", "ALARM", "ALARM", "ALARM", "ALARM"),
    (3, 3, "- - X - -", "ALARM", KEEP, "ALARM", "OK"),
    (2, 3, "0 - X - X", "ALARM", "ALARM", "ALARM", "ALARM"),
    (2, 3, "0 0 X 0 X", "ALARM", "ALARM", "ALARM", "ALARM"),
    (2, 3, "0 - X - -", "OK", "OK", "ALARM", "OK"),
    (2, 3, "- - - - 0", "OK", "OK", "ALARM", "OK"),
    (2, 3, "- - - X -", "ALARM", KEEP, "ALARM", "OK"),
]
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")


def flags(text: str) -> list[bool | None]:
    return [{"0": False, "X": True, "-": None}[c] for c in text.split()]


CASES = [
    pytest.param(m, n, rng, treat, row[3 + i], id=f"{m}of{n} [{rng}] {treat}")
    for row in TABLE
    for m, n, rng in [row[:3]]
    for i, treat in enumerate(TREATMENTS)
]


@pytest.mark.parametrize(("m", "n", "rng", "treat", "expected"), CASES)
@pytest.mark.parametrize("current", ["OK", "ALARM", "INSUFFICIENT_DATA"])
def test_documented_table(
    m: int, n: int, rng: str, treat: str, expected: str, current: str
) -> None:
    state, reason = decide(flags(rng), n, m, treat, current)
    assert state == (current if expected == KEEP else expected), reason
    assert reason


def test_newest_n_real_datapoints_are_used_when_enough_exist() -> None:
    # 4 real datapoints: the oldest breaching one is outside the newest 3.
    assert decide(flags("X 0 - 0 X"), 3, 2, "missing", "OK")[0] == "OK"
    assert decide(flags("0 X - 0 X"), 3, 2, "missing", "OK")[0] == "ALARM"


def test_fills_only_as_many_as_needed() -> None:
    # one real not-breaching point + 2 fills with breaching reaches 2 of 3 but not 3 of 3
    assert decide(flags("- - - 0 -"), 3, 2, "breaching", "OK")[0] == "ALARM"
    assert decide(flags("- - - 0 -"), 3, 3, "breaching", "OK")[0] == "OK"


def test_premature_alarm_needs_the_breach_to_be_m_periods_old() -> None:
    # newest datapoint is 1 period old: not yet M=2 old -> no premature alarm
    assert decide(flags("- - - - X"), 3, 2, "missing", "OK")[0] == "OK"
    # a later not-breaching datapoint cancels the premature alarm
    assert decide(flags("- - X 0 -"), 3, 2, "missing", "OK")[0] == "OK"


# -- properties over every range ------------------------------------------------------------

STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")


@st.composite
def ranges(draw: st.DrawFn) -> tuple[int, int, list[bool | None]]:
    n = draw(st.integers(1, 6))
    m = draw(st.integers(1, n))
    extra = draw(st.integers(0, 3))
    rng = draw(
        st.lists(st.sampled_from([True, False, None]), min_size=n + extra, max_size=n + extra)
    )
    return m, n, rng


@given(ranges(), st.sampled_from(TREATMENTS), st.sampled_from(STATES))
def test_enough_real_datapoints_make_the_treatment_irrelevant(case, treat, current) -> None:
    m, n, rng = case
    real = [f for f in rng if f is not None]
    state, _ = decide(rng, n, m, treat, current)
    if len(real) >= n:
        assert state == ("ALARM" if sum(real[-n:]) >= m else "OK")
    if all(f is None for f in rng) and treat == "missing":
        assert state == "INSUFFICIENT_DATA"
    if state == "INSUFFICIENT_DATA":  # only "missing" with no data (or "ignore" keeping it)
        assert not real or (treat == "ignore" and current == "INSUFFICIENT_DATA")


@given(ranges(), st.sampled_from(STATES))
def test_breaching_fill_never_alarms_less_than_not_breaching(case, current) -> None:
    m, n, rng = case
    order = {"OK": 0, "INSUFFICIENT_DATA": 0, "ALARM": 1}
    hi = decide(rng, n, m, "breaching", current)[0]
    lo = decide(rng, n, m, "notBreaching", current)[0]
    assert order[hi] >= order[lo]
