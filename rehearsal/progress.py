"""Live progress: one updating line on a terminal, plain lines every few seconds otherwise."""

from __future__ import annotations

import math
import shutil
import sys
import time
from typing import TextIO

SHORT_STATE = {"OK": "ok", "ALARM": "ALARM", "INSUFFICIENT_DATA": "no-data"}


def _ms(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value / 1000:.1f}s" if value >= 1000 else f"{value:.0f}ms"


def format_line(
    t: float,
    phase: str,
    green_percent: int,
    window: dict[str, dict[str, float]],
    states: dict[str, str],
) -> str:
    """``+23s shifting green 10% | blue 36/s p50 3ms p99 9ms | green ... | alarms 1 ALARM 4 ok``."""
    parts = [f"{t:+6.0f}s {phase:<9} green {green_percent:3d}%"]
    for target in ("blue", "green"):
        s = window.get(target)
        if not s:
            parts.append(f"{target} idle")
            continue
        extra = f" 429:{int(s['429'])}" if s.get("429") else ""
        extra += f" 5xx:{int(s['5xx'])}" if s.get("5xx") else ""
        parts.append(
            f"{target} {s['rps']:4.0f}/s p50 {_ms(s['p50']):>6} p99 {_ms(s['p99']):>6}{extra}"
        )
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    summary = " ".join(
        f"{counts[k]} {SHORT_STATE[k]}" for k in ("ALARM", "OK", "INSUFFICIENT_DATA") if k in counts
    )
    firing = [name for name, state in states.items() if state == "ALARM"]
    alarm_part = f"alarms {summary or '-'}"
    if firing:
        alarm_part += f" ({', '.join(firing)})"
    parts.append(alarm_part)
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

    def update(self, line: str) -> None:
        now = time.monotonic()
        if self.tty:
            width = shutil.get_terminal_size((160, 24)).columns - 1
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
