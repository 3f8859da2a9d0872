"""Live progress: one updating line on a terminal, plain lines every few seconds otherwise."""

from __future__ import annotations

import math
import shutil
import sys
import time
from typing import TextIO

from rehearsal.model import alarm_name_prefix

SHORT_STATE = {"OK": "ok", "ALARM": "ALARM", "INSUFFICIENT_DATA": "no-data"}


def _ms(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value / 1000:.1f}s" if value >= 1000 else f"{value:.0f}ms"


def offset(seconds: float, width: int = 0) -> str:
    """Seconds from t0 as ``+23s`` (right-aligned in ``width``): rounded first, so a moment just
    before zero reads ``+0s``, never ``-0s``."""
    whole = round(seconds) if math.isfinite(seconds) else 0
    return f"{whole:+{width}d}s" if width else f"{whole:+d}s"


COMPACT_LEGEND = "progress: time phase green% | per version, last 5 s: req/s p50/p99 | alarms"
#: A terminal at least this wide gets the full line (it fits in 119 columns unless many counts
#: or firing alarms are appended: then it is cut at the width); a narrower one the compact line.
FULL_COLUMNS = 120
SHORT_PHASE = {"warm-up": "warm", "shifting": "shift", "baking": "bake", "after": "after"}


def format_line(
    t: float,
    phase: str,
    green_percent: int,
    window: dict[str, dict[str, float]],
    states: dict[str, str],
    compact: bool = False,
) -> str:
    """``+23s shifting green  10% | blue  36/s p50 3ms p99 9ms | green ... | alarms 1 ALARM 4 ok``
    (firing alarms named after the counts, without their common prefix).

    ``compact``: the same within 80 columns, green first (the version being judged):
    ``+23s shift 10% | green 4/s 1.5s/3.2s 429:6 | blue 36/s 6ms/31ms | 1 ALARM 2 ok``
    (latency as p50/p99; alarms without data are left out)."""
    if compact:
        return _compact(t, phase, green_percent, window, states)
    parts = [f"{offset(t, 5)} {phase:<8} green {green_percent:3d}%"]
    for target in ("blue", "green"):
        s = window.get(target)
        if not s:
            parts.append(f"{target} idle")
            continue
        extra = _refusals(s)
        parts.append(f"{target} {s['rps']:3.0f}/s p50 {_ms(s['p50'])} p99 {_ms(s['p99'])}{extra}")
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    summary = " ".join(
        f"{counts[k]} {SHORT_STATE[k]}" for k in ("ALARM", "OK", "INSUFFICIENT_DATA") if k in counts
    )
    prefix = alarm_name_prefix(list(states))
    firing = [name.removeprefix(prefix) for name, state in states.items() if state == "ALARM"]
    alarm_part = f"alarms {summary or '-'}"
    if firing:
        alarm_part += f" ({', '.join(firing)})"
    parts.append(alarm_part)
    return " | ".join(parts)


def _refusals(s: dict[str, float]) -> str:
    """`` 429:N 5xx:M`` for a version's window, leaving out counts that are zero."""
    return "".join(f" {code}:{int(s[code])}" for code in ("429", "5xx") if s.get(code))


def _compact(
    t: float,
    phase: str,
    green_percent: int,
    window: dict[str, dict[str, float]],
    states: dict[str, str],
) -> str:
    parts = [f"{offset(t)} {SHORT_PHASE.get(phase, phase)} {green_percent}%"]
    for target in ("green", "blue"):
        s = window.get(target)
        if not s:
            parts.append(f"{target} idle")
            continue
        extra = _refusals(s)
        parts.append(f"{target} {s['rps']:.0f}/s {_ms(s['p50'])}/{_ms(s['p99'])}{extra}")
    counts = {k: sum(1 for v in states.values() if v == k) for k in ("ALARM", "OK")}
    parts.append(" ".join(f"{n} {SHORT_STATE[k]}" for k, n in counts.items() if n) or "alarms -")
    return " | ".join(parts)


class Progress:
    """Writes progress lines; on a TTY the line is rewritten in place."""

    def __init__(
        self, stream: TextIO | None = None, *, tty: bool | None = None, every_s: float = 5.0
    ) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = every_s
        self._last = 0.0
        self._open = False
        self._legend_shown = False

    def update(self, line: str, short: str | None = None) -> None:
        """Show ``line``; on a terminal narrower than :data:`FULL_COLUMNS`, ``short`` (after a
        one-line legend); either is cut to the width."""
        now = time.monotonic()
        if self.tty:
            columns = shutil.get_terminal_size((160, 24)).columns
            width = columns - 1
            if short is not None and columns < FULL_COLUMNS:
                if not self._legend_shown:
                    self._legend_shown = True
                    self.message(COMPACT_LEGEND[:width])
                line = short
            self.stream.write("\r\x1b[K" + line[:width])
            self.stream.flush()
            self._open = True
        elif now - self._last >= self.every_s:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last = now

    def message(self, text: str) -> None:
        """A line that stays (events: traffic shifts, alarms, rollback)."""
        if self._open:
            self.stream.write("\r\x1b[K")
            self._open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
