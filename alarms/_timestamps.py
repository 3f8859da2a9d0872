"""Which EMF lines of a recording CloudWatch would have refused for their timestamp.

CloudWatch accepts metric data stamped up to 14 days before and 2 hours after it ingests the data
(``telemetry.cloudwatch_rules.timestamp_age_problem``, which cites the sources). A recording has no
ingestion times, and the replaying machine's clock says nothing about them either. What it has is
order: a log is written in time order, and each line is shipped with the lines written around it.
So the lines around a line stand for the time it was ingested, and a line whose timestamp is far
from theirs (a clock at 0, a stale or a year-9999 stamp) is the outlier. The median or the latest
timestamp of the whole file would not do: a run may rightly last longer than 14 days, or pause.

The rule: a line is judged by its :data:`NEIGHBOURS` nearest EMF lines with a timestamp in the same
recording (50 before and 50 after; at the ends of a recording, the 100 first or last). Their
timestamps are sorted and a quarter at each end (:data:`SET_ASIDE`, 25 of 100) set aside; the
earliest and the latest left, each widened by the lines' spacing times the lines set aside (the
last line of a steady recording lies that far beyond them), bound when the line was ingested.
CloudWatch would have refused it if its timestamp is more than 14 days before that interval or
more than 2 hours after it. So up to 25 outliers among 100 lines, in a burst or scattered, at the
start, the end or in the middle of a file, cannot move the bounds; a longer burst is taken for
the recording's own time. A line next to a gap of the recording (a service stopped overnight)
has neighbours on its own side of the gap, so it is kept; a long run keeps every line, and the
replay refuses it as too long rather than cutting it. The lines of a recording of one or two
lines are kept: without a majority nothing says which one is right.

Only the timestamps of up to 202 lines and the records of up to 101 lines are held at a time.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TypeVar

from telemetry import cloudwatch_rules as _rules

T = TypeVar("T")

#: How many lines around a line stand for its ingestion time.
NEIGHBOURS = 100
#: How many of them, at most, at each end of their sorted timestamps are set aside as possible
#: outliers themselves (a quarter of fewer neighbours; at least one of 3 or more).
SET_ASIDE = 25


def _set_aside(n: int) -> int:
    """How many of ``n`` sorted neighbour timestamps are set aside at each end."""
    return 0 if n < 3 else max(1, min(SET_ASIDE, n // 4))


def ingestion_bounds(neighbours: list[float]) -> tuple[float, float] | None:
    """The interval (epoch seconds) the sorted timestamps ``neighbours`` bound the ingestion time
    of the line among them to: from the earliest to the latest timestamp left once the extremes
    are set aside, each widened by the lines' spacing times the lines set aside (a line at the
    end of a steady recording is that far beyond the latest kept neighbour); ``None`` with fewer
    than 2 neighbours (no majority to judge by)."""
    n = len(neighbours)
    if n < 2:
        return None
    k = _set_aside(n)
    return _widened(neighbours[k], neighbours[n - 1 - k], n, k)


def _widened(lo: float, hi: float, n: int, k: int) -> tuple[float, float]:
    spacing = (hi - lo) / max(1, n - 1 - 2 * k)
    slack = (k + 1) * spacing
    return lo - slack, hi + slack


class _Window:
    """The sorted timestamps of the lines ``lo .. hi - 1`` of a recording, moved forward only
    (one insertion and one removal per line in the middle of a recording)."""

    def __init__(self) -> None:
        self.sorted: list[float] = []
        self.lo = self.hi = 0

    def move(self, lo: int, hi: int, times: deque[float], first: int) -> None:
        s = self.sorted
        while self.hi < hi:
            bisect.insort(s, times[self.hi - first])
            self.hi += 1
        while self.lo < lo:
            del s[bisect.bisect_left(s, times[self.lo - first])]
            self.lo += 1

    def bounds_without(self, ts: float) -> tuple[float, float] | None:
        """:func:`ingestion_bounds` of the window without one line stamped ``ts`` (in it)."""
        s = self.sorted
        n = len(s) - 1  # the others
        if n < 2:
            return None
        k = _set_aside(n)
        p = bisect.bisect_left(s, ts)  # where the line itself is (any equal value will do)
        top = n - 1 - k
        return _widened(s[k] if k < p else s[k + 1], s[top] if top < p else s[top + 1], n, k)


def screen(items: Iterable[tuple[T, float | None]]) -> Iterator[tuple[T, str | None]]:
    """``(item, problem)`` for each ``(item, timestamp)`` of one recording, in input order for the
    items with a timestamp (epoch seconds); ``problem`` is why CloudWatch would have refused the
    line for its timestamp (``telemetry.cloudwatch_rules.timestamp_age_problem``) or ``None``.
    Items without a timestamp (``None``: not EMF, or no valid time) are passed on at once with
    ``None``, ahead of the timestamped items still waiting for the lines after them."""
    half = NEIGHBOURS // 2
    times: deque[float] = deque()  # timestamps of the timestamped items from index `first`
    first = 0
    pending: deque[tuple[T, float]] = deque()  # timestamped items from index `judge` on
    judge = 0
    read = 0
    window = _Window()

    def verdict(i: int, ts: float, end: int | None) -> str | None:
        lo = max(0, i - half)
        if end is not None:  # at the end of a recording: the last NEIGHBOURS lines
            lo = max(0, min(lo, end - NEIGHBOURS - 1))
        hi = lo + NEIGHBOURS + 1 if end is None else min(end, lo + NEIGHBOURS + 1)
        window.move(lo, hi, times, first)
        bounds = window.bounds_without(ts)
        if bounds is None:
            return None  # a recording of one or two lines: no majority to judge by
        return _rules.timestamp_age_problem(ts, *bounds)

    for item, ts in items:
        if ts is None:
            yield item, None
            continue
        times.append(ts)
        pending.append((item, ts))
        read += 1
        # the window of `judge` is complete once NEIGHBOURS + 1 lines from its start are read
        while pending and read >= max(0, judge - half) + NEIGHBOURS + 1:
            head, head_ts = pending.popleft()
            yield head, verdict(judge, head_ts, None)
            judge += 1
            while first < judge - NEIGHBOURS - 1:  # no later window reaches back this far
                times.popleft()
                first += 1
    while pending:
        head, head_ts = pending.popleft()
        yield head, verdict(judge, head_ts, read)
        judge += 1
