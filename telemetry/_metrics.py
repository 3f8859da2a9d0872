"""Per-process metric aggregation over time windows, written as CloudWatch EMF lines.

Windows are aligned to UTC multiples of the flush interval (a 5 s window never straddles a 10 s
or 60 s alarm period) and each line's ``Timestamp`` is its window start. A background thread
(started lazily, re-created after ``fork``) flushes every window once it has ended; ``flush(final=
True)`` at exit writes the rest. After a fork the child starts with no data, so a window's data is
written by exactly one process, exactly once.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable
from itertools import islice
from operator import itemgetter

from aws_embedded_metrics import constants as emf_limits

from telemetry import _errors, catalog
from telemetry import cloudwatch_rules as rules
from telemetry._config import Settings, shown
from telemetry._histogram import INV_LOG_GAMMA, MAX_PER_ARRAY, TINY, Histogram, Samples
from telemetry.sinks import Sink

_ceil, _log, _isfinite = math.ceil, math.log, math.isfinite
_BUCKET_SCALE = INV_LOG_GAMMA.__mul__  # log(value) * this, rounded up: Histogram's bucket
_first, _second, _third, _fourth = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(3)

MAX_EVENT_BYTES = 1_000_000  # EMF: 1 MB per log event
MAX_METRICS = emf_limits.MAX_METRICS_PER_EVENT  # 100 per directive
MAX_DIMENSIONS = emf_limits.MAX_DIMENSION_SET_SIZE  # 30 per dimension set
MAX_DIM_VALUE = emf_limits.MAX_DIMENSION_VALUE_LENGTH  # 1024 characters
MAX_GAUGE_VALUES = MAX_PER_ARRAY
MAX_PENDING = 20_000  # request entries waiting for the flush thread

_DEFS = {m.name: m for m in catalog.METRICS}
_API_SETS = catalog.get("Requests").dimension_sets


def _dims_of(sets: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
    out: list[str] = []
    for s in sets:
        if len(s) > MAX_DIMENSIONS:
            raise ValueError(f"dimension set {s} has more than {MAX_DIMENSIONS} dimensions")
        out.extend(d for d in s if d not in out)
    return tuple(out)


#: metrics whose dimension sets use ``Route`` (the value comes from the current request)
_NEEDS_ROUTE = frozenset(
    m.name for m in catalog.METRICS if any(catalog.ROUTE in s for s in m.dimension_sets)
)

#: counters written (zero included) in every line of a (dimension sets, component) group
_ZERO_COUNTERS: dict[tuple[tuple[tuple[str, ...], ...], str], tuple[str, ...]] = {}
for _m in catalog.METRICS:
    if _m.kind == "counter" and _m.role != "SELF":
        _group = (_m.dimension_sets, _m.component)
        _ZERO_COUNTERS[_group] = (*_ZERO_COUNTERS.get(_group, ()), _m.name)


_EXACT_INT = 2.0**53


def _num(v: float) -> float | int:
    """``3`` rather than ``3.0`` (shorter lines); only where the float is an exact integer that
    JSON readers keep exact (not ``1e200`` as a 201-digit number)."""
    try:
        f = float(v)
    except OverflowError:  # an int sum beyond any float: out of range, dropped and counted
        return math.inf
    return int(f) if -_EXACT_INT < f < _EXACT_INT and f.is_integer() else f


def _out_of_range(v: object) -> bool:
    """True if CloudWatch would reject a number in ``v`` (a value, a list, a Values/Counts
    object): NaN, infinite, magnitude above 2^360 or non-zero below 2^-360."""
    if isinstance(v, dict):
        return any(_out_of_range(x) for x in v.values())
    if isinstance(v, list):
        return any(_out_of_range(x) for x in v)
    if isinstance(v, int):
        return not -rules.MAX_VALUE <= v <= rules.MAX_VALUE
    m = abs(v)  # type: ignore[arg-type]
    return not (m <= rules.MAX_VALUE and (m == 0.0 or m >= rules.MIN_MAGNITUDE))


#: Seconds a line may take from the flush to CloudWatch (the output buffer, the log driver):
#: a window is written only if CloudWatch takes its time that much later too.
DELIVERY_MARGIN_S = 60.0


def _stale(start: float, now: float) -> str | None:
    """Why CloudWatch would refuse a window stamped ``start`` written at ``now`` (more than 14
    days old when it arrives, up to ``DELIVERY_MARGIN_S`` later; more than 2 hours ahead)."""
    return rules.timestamp_age_problem(start, now + DELIVERY_MARGIN_S) or (
        rules.timestamp_age_problem(start, now)
    )


class _Series:
    """The data of one dimension-value combination in one window."""

    __slots__ = ("counters", "dists", "gauges", "route", "sets", "zero_filled")

    def __init__(self, sets: tuple[tuple[str, ...], ...], route: str | None) -> None:
        self.sets = sets
        self.route = route
        self.counters: dict[str, float] = {}
        self.dists: dict[str, Histogram | Samples] = {}
        self.gauges: dict[str, list[float]] = {}
        self.zero_filled: set[str] = set()

    def zero_fill(self, component: str) -> None:
        if component not in self.zero_filled:
            self.zero_filled.add(component)
            for name in _ZERO_COUNTERS.get((self.sets, component), ()):
                self.counters.setdefault(name, 0)


class _Window:
    __slots__ = ("api", "end", "routes", "series", "start")

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.api: dict[str, _Series] = {}  # raw route -> its RED series (capped routes shared)
        self.series: dict[tuple, _Series] = {}
        self.routes: set[str] = set()


_instances: weakref.WeakSet[Aggregator] = weakref.WeakSet()


class Aggregator:
    """Thread-safe, fork-safe metric aggregator for one process."""

    def __init__(
        self, settings: Settings, sink: Sink, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.clock = clock  # wall clock (epoch seconds); injectable for tests and benchmarks
        self.sink = sink
        self.interval_ms = max(1, round(settings.flush_interval_s * 1000))
        self._counts_mode = settings.histogram == "counts"
        self._lock = threading.Lock()
        #: request entries ``(time, route, status, latency_ms)`` waiting for the flush thread;
        #: appended by :meth:`record_request` or, on the request path, by ``telemetry.flask``
        #: itself (no call), which then calls :meth:`after_record` when the flush thread is
        #: not running or more than ``MAX_PENDING`` entries wait
        self.pending: deque[tuple[float, str, int, float]] = deque()
        self._windows: dict[int, _Window] = {}
        self._cur: _Window | None = None
        self.flush_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        # worker utilization: busy seconds per window start (ms), jobs in progress
        self._busy: dict[int, float] = {}
        self._active: dict[int, float] = {}
        self._next_job = 0
        self._util_next: int | None = None
        self.lines_written = 0
        _instances.add(self)

    # -- recording (hot path) ------------------------------------------------------------------

    def _window(self, now: float) -> _Window:
        """The window containing ``now``; the caller holds the lock."""
        w = self._cur
        if w is not None and w.start <= now < w.end:
            return w
        start_ms = (int(now * 1000) // self.interval_ms) * self.interval_ms
        w = self._windows.get(start_ms)
        if w is None:
            w = self._windows[start_ms] = _Window(
                start_ms / 1000, (start_ms + self.interval_ms) / 1000
            )
        if self._cur is None or w.start >= self._cur.start:
            self._cur = w
        return w

    def _route(self, w: _Window, route: str) -> str:
        routes = w.routes
        if route not in routes:
            if len(routes) >= self.settings.max_routes:
                return catalog.OVERFLOW_VALUE
            routes.add(route)
        return route

    def _series(self, w: _Window, sets: tuple, route: str | None) -> _Series:
        key = (sets, route)
        s = w.series.get(key)
        if s is None:
            s = w.series[key] = _Series(sets, route)
        return s

    def _dist(self, s: _Series, name: str) -> Histogram | Samples:
        d = s.dists.get(name)
        if d is None:
            d = s.dists[name] = (
                Histogram() if self._counts_mode else Samples(self.settings.max_values)
            )
        return d

    def record_request(self, route: str, status: int, latency_ms: float) -> None:
        """RED for one request: ``Requests``, ``ServerErrors``, ``ClientErrors``, ``Latency``.

        The request path only appends to a deque (atomic, no lock); the flush thread folds the
        entries into their windows. Bounded: past ``MAX_PENDING`` entries the caller folds them.
        """
        q = self.pending
        q.append((self.clock(), route, status, latency_ms))
        if self.flush_thread is None or len(q) > MAX_PENDING:
            self.after_record()

    def after_record(self) -> None:
        """After an entry was appended to :attr:`pending`: fold the entries here if more than
        ``MAX_PENDING`` wait (the flush thread is behind), and start the flush thread if it is
        not running (first request, or the first after a fork)."""
        if len(self.pending) > MAX_PENDING:
            with self._lock:
                self._drain()
        if self.flush_thread is None:
            self._start_thread()

    def _drain(self) -> None:
        """Fold the pending request entries into their windows; the caller holds the lock.

        The entries of each window are folded per series with C-level loops (``map``,
        ``Counter``, ``sum``, ``min``, ``max``): the same counts, buckets, minimum, maximum and
        sum (added in the same order) as folding them one by one (:meth:`_fold_each`)."""
        q = self.pending
        n = len(q)
        if not n:
            return
        # only this (locked) method pops; producers append at the right: n pops never fail
        entries = list(islice(iter(q.popleft, None), n))
        times = list(map(_first, entries))
        w = self._window(min(times))
        if max(times) < w.end:  # all in one window
            self._fold(w, entries)
            return
        # a flush right after a window ended: split by window, each in the order they came
        per_window: dict[_Window, list[tuple]] = {}
        cur: _Window | None = None
        part: list[tuple] = []
        for e in entries:
            now = e[0]
            if cur is None or not (cur.start <= now < cur.end):
                cur = self._window(now)
                part = per_window.setdefault(cur, [])
            part.append(e)
        for window, part in per_window.items():
            self._fold(window, part)

    def _fold(self, w: _Window, entries: list[tuple]) -> None:
        """Fold ``entries`` (all of window ``w``, in the order they came) into ``w``."""
        # each route's series, in the order the routes first came (the route cap depends on it)
        series = {}
        for route in dict.fromkeys(map(_second, entries)):
            s = w.api.get(route)
            series[route] = s if s is not None else self._api_series(w, route)
        groups: dict[_Series, list[tuple]]
        if len(series) == 1:
            groups = {next(iter(series.values())): entries}
        else:  # per series (capped routes share one), each in the order the entries came
            groups = {}
            for e in entries:
                s = series[e[1]]
                g = groups.get(s)
                if g is None:
                    groups[s] = [e]
                else:
                    g.append(e)
        for s, g in groups.items():
            c = s.counters
            c["Requests"] += len(g)
            statuses = list(map(_third, g))
            if max(statuses) >= 400:
                for status, k in Counter(statuses).items():
                    if status >= 500:
                        c["ServerErrors"] += k
                    elif status >= 400:
                        c["ClientErrors"] += k
            lats = list(map(_fourth, g))
            d = s.dists["Latency"]
            total = sum(lats, d.sum) if type(d) is Histogram else 0.0
            if type(d) is Histogram and min(lats) >= TINY and _isfinite(total):
                d.count += len(lats)
                d.sum = total  # the same additions in the same order as one by one
                d.min = min(d.min, min(lats))
                d.max = max(d.max, max(lats))
                b = d.buckets
                for i, k in Counter(map(_ceil, map(_BUCKET_SCALE, map(_log, lats)))).items():
                    b[i] = b.get(i, 0) + k
            else:
                for v in lats:
                    d.add(v)

    def _fold_each(self, entries: list[tuple]) -> None:
        """Fold ``entries`` one by one (a batch spanning windows)."""
        w: _Window | None = None
        for now, route, status, latency_ms in entries:
            if w is None or not (w.start <= now < w.end):
                w = self._window(now)
            s = w.api.get(route)
            if s is None:
                s = self._api_series(w, route)
            c = s.counters
            c["Requests"] += 1
            if status >= 400:
                if status >= 500:
                    c["ServerErrors"] += 1
                else:
                    c["ClientErrors"] += 1
            s.dists["Latency"].add(latency_ms)

    def _api_series(self, w: _Window, route: str) -> _Series:
        """The RED series of ``route`` in ``w`` (the overflow series past the cap), cached."""
        s = self._series(w, _API_SETS, self._route(w, route))
        s.zero_fill("api")
        self._dist(s, "Latency")
        w.api[route] = s
        return s

    def add(self, metric: catalog.MetricDef, value: float, route: str | None = None) -> None:
        """One observation of a declared metric; a value CloudWatch would reject is counted
        (``invalid_value``) and dropped."""
        if 0.0 < abs(value) < rules.MIN_MAGNITUDE:
            value = 0.0  # the nearest value CloudWatch accepts
        why = rules.value_problem(value)
        if why is not None:
            _errors.record("invalid_value", f"{metric.name}: {shown(value)}: {why}")
            return
        value = float(value)  # an int would be written as such (Min/Max), however long
        now = self.clock()
        with self._lock:
            w = self._window(now)
            if metric.name in _NEEDS_ROUTE:
                route = self._route(w, route or catalog.UNMATCHED_ROUTE)
            else:
                route = None
            s = self._series(w, metric.dimension_sets, route)
            s.zero_fill(metric.component)
            if metric.kind == "counter":
                s.counters[metric.name] = s.counters.get(metric.name, 0) + value
            elif metric.kind == "distribution":
                d = self._dist(s, metric.name)
                d.add(value)
                if isinstance(d, Samples) and d.dropped == 1:
                    _errors.record("buffer_full", f"{metric.name}: more than {d.limit} values")
            else:
                g = s.gauges.setdefault(metric.name, [])
                g.append(value)
                if len(g) > MAX_GAUGE_VALUES:
                    del g[0]
        if self.flush_thread is None:
            self._start_thread()

    # -- worker utilization ----------------------------------------------------------------------

    def job_started(self) -> int:
        with self._lock:
            self._next_job += 1
            token = self._next_job
            now = self.clock()
            self._active[token] = now
            if self._util_next is None:
                w = self._window(now)
                self._util_next = round(w.start * 1000)
        if self.flush_thread is None:
            self._start_thread()
        return token

    def job_finished(self, token: int) -> None:
        with self._lock:
            start = self._active.pop(token, None)
            if start is not None:
                self._credit(start, self.clock())

    def _credit(self, start: float, end: float) -> None:
        """Add busy time ``[start, end)`` to the windows it overlaps (bounded loop)."""
        step = self.interval_ms
        ws = (int(start * 1000) // step) * step
        for _ in range(1000):
            if ws / 1000 >= end:
                break
            lo, hi = max(start, ws / 1000), min(end, (ws + step) / 1000)
            if hi > lo:
                self._busy[ws] = self._busy.get(ws, 0.0) + (hi - lo)
            ws += step

    def _utilization(self, upto_ms: int, now: float) -> None:
        """Write ``WorkerUtilization`` for every window that ended before ``upto_ms``."""
        if self._util_next is None:
            return
        step = self.interval_ms
        if (upto_ms - self._util_next) // step > 1000:  # suspended for long: skip the gap
            self._util_next = upto_ms - step
        metric = _DEFS["WorkerUtilization"]
        slots = self.settings.worker_slots
        while self._util_next < upto_ms:
            ws = self._util_next
            end = min((ws + step) / 1000, now)
            for token, since in list(self._active.items()):
                if since < end:
                    self._credit(since, end)
                    self._active[token] = end
            length = end - ws / 1000
            if length > 0:
                busy = self._busy.pop(ws, 0.0)
                pct = min(100.0, 100.0 * busy / (length * slots))
                w = self._windows.get(ws)
                if w is None:
                    w = self._windows[ws] = _Window(ws / 1000, (ws + step) / 1000)
                s = self._series(w, metric.dimension_sets, None)
                s.zero_fill("worker")
                s.gauges.setdefault(metric.name, []).append(round(pct, 3))
            self._util_next = ws + step

    # -- flushing ------------------------------------------------------------------------------

    def _start_thread(self) -> None:
        with self._lock:
            if self.flush_thread is not None or self._closed:
                return
            t = threading.Thread(target=self._run, name="telemetry-flush", daemon=True)
            self.flush_thread = t
        t.start()

    def _run(self) -> None:
        stop = self._stop
        step = self.interval_ms / 1000
        while True:
            now = time.time()
            wait = (math.floor(now / step) + 1) * step - now + 0.002
            if stop.wait(wait):
                return
            self.flush()

    def flush(self, final: bool = False) -> int:
        """Write every ended window (all windows if ``final``); return the number of lines."""
        try:
            with self._lock:
                self._drain()
                now = self.clock()
                cur_ms = (int(now * 1000) // self.interval_ms) * self.interval_ms
                self._utilization(cur_ms + self.interval_ms if final else cur_ms, now)
                ready = sorted(k for k, w in self._windows.items() if final or w.end <= now)
                windows = [self._windows.pop(k) for k in ready]
                if self._cur is not None and round(self._cur.start * 1000) in ready:
                    self._cur = None
            lines: list[str] = []
            kept = []
            for w in windows:
                stale = _stale(w.start, now)
                if stale is not None:
                    _errors.record(
                        "invalid_timestamp",
                        f"window {w.start:.0f} dropped: its time {stale} (the clock moved, or "
                        "the process was suspended, since it was recorded)",
                    )
                    continue
                kept.append(w)
                try:
                    lines.extend(self._serialize(w))
                except Exception as exc:  # one window lost, not the flush
                    _errors.record("serialize", f"window {w.start} dropped: {exc!r}")
            pending = _errors.take_pending()
            if pending:
                last = kept[-1].start if kept else (cur_ms - self.interval_ms) / 1000
                w = _Window(last, last + self.interval_ms / 1000)
                s = self._series(w, catalog.get("TelemetryErrors").dimension_sets, None)
                s.counters["TelemetryErrors"] = pending
                lines.extend(self._serialize(w))
            if lines:
                self._write(lines)
            return len(lines)
        except Exception as exc:  # never raise into the app (or kill the flush thread)
            _errors.record("flush", repr(exc))
            return 0

    def _write(self, lines: list[str]) -> None:
        try:
            self.sink.write(lines)
            self.lines_written += len(lines)
        except Exception as exc:
            _errors.record("sink", f"{len(lines)} EMF line(s) dropped: {exc!r}")

    def close(self) -> None:
        """Stop the flush thread and write everything (idempotent)."""
        with self._lock:
            self._closed = True
            thread = self.flush_thread
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.flush(final=True)

    # -- EMF -----------------------------------------------------------------------------------

    def _serialize(self, w: _Window) -> list[str]:
        """The lines of one window; a series that fails is dropped and counted alone (the other
        series, and the other windows of the same flush, are still written)."""
        st = self.settings
        ts = round(w.start * 1000)
        out: list[str] = []
        for s in w.series.values():
            try:
                out.extend(self._lines(st, ts, s))
            except Exception as exc:
                _errors.record("serialize", f"series {s.sets} {s.route!r} dropped: {exc!r}")
        return out

    def _lines(self, st: Settings, ts: int, s: _Series) -> list[str]:
        dims = _dims_of(s.sets)
        values = {catalog.SERVICE: st.service, catalog.VERSION: st.version}
        if s.route is not None:
            values[catalog.ROUTE] = s.route
        base: dict[str, str] = {}
        for d in dims:
            raw = values.get(d, "none")
            clean = rules.sanitize_dimension_value(raw)
            if clean is not raw:
                _errors.record("invalid_dimension", f"{d}={raw[:100]!r} written as {clean[:100]!r}")
            base[d] = clean
        dimension_sets = [list(x) for x in s.sets]
        # metric -> list of per-line values (a distribution may need several lines)
        chunked: list[tuple[catalog.MetricDef, list]] = []
        for m in catalog.METRICS:
            if m.name in s.counters:
                chunked.append((m, [_num(s.counters[m.name])]))
            elif m.name in s.dists:
                d = s.dists[m.name]
                if d.count:
                    chunked.append((m, d.chunks()))
                if isinstance(d, Samples) and d.dropped:
                    _errors.record("buffer_full", f"{m.name}: {d.dropped} value(s) dropped")
            elif m.name in s.gauges:
                g = s.gauges[m.name]
                chunked.append((m, [_num(g[0]) if len(g) == 1 else [_num(x) for x in g]]))
        for k in range(len(chunked) - 1, -1, -1):
            m, parts = chunked[k]
            if any(_out_of_range(p) for p in parts):
                _errors.record(
                    "invalid_value", f"{m.name}: outside CloudWatch's range (+-2^360); dropped"
                )
                del chunked[k]
        lines: list[str] = []
        depth = max((len(c) for _, c in chunked), default=0)
        for i in range(depth):
            present = [(m, c[i]) for m, c in chunked if len(c) > i]
            for j in range(0, len(present), MAX_METRICS):
                part = present[j : j + MAX_METRICS]
                metrics = []
                for m, _ in part:
                    md: dict[str, object] = {"Name": m.name, "Unit": m.unit}
                    if st.storage_resolution == 1:
                        md["StorageResolution"] = 1
                    metrics.append(md)
                doc: dict[str, object] = {
                    "_aws": {
                        "Timestamp": ts,
                        "CloudWatchMetrics": [
                            {
                                "Namespace": st.namespace,
                                "Dimensions": dimension_sets,
                                "Metrics": metrics,
                            }
                        ],
                    },
                    **base,
                }
                if st.uses_agent:
                    doc["_aws"]["LogGroupName"] = st.log_group_name  # type: ignore[index]
                for m, v in part:
                    doc[m.name] = v
                line = json.dumps(doc, separators=(",", ":"), allow_nan=False)
                if len(line.encode()) > MAX_EVENT_BYTES:
                    _errors.record("event_too_large", f"{len(line)} bytes; line dropped")
                    continue
                lines.append(line)
        return lines

    # -- fork ----------------------------------------------------------------------------------

    def _before_fork(self) -> None:
        self._lock.acquire()

    def _after_fork_parent(self) -> None:
        self._lock.release()

    def _after_fork_child(self) -> None:
        # The parent still owns (and will flush) its windows; the child starts empty.
        self._lock = threading.Lock()
        self.pending = deque()
        self._windows = {}
        self._cur = None
        self.flush_thread = None
        self._stop = threading.Event()
        self._busy = {}
        self._active = {}
        self._util_next = None
        self.lines_written = 0
        reset = getattr(self.sink, "after_fork", None)
        if reset is not None:
            reset()


def _each(method: str):
    def run() -> None:
        for agg in list(_instances):
            getattr(agg, method)()

    return run


os.register_at_fork(
    before=_each("_before_fork"),
    after_in_parent=_each("_after_fork_parent"),
    after_in_child=_each("_after_fork_child"),
)
