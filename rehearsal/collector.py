"""Collect what the two versions write: EMF lines to ``emf.jsonl`` and to the live alarm evaluator,
everything else (JSON access/application logs) to one log file per version."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import IO, Any, Protocol


class LiveEvaluator(Protocol):
    """What the collector needs from ``alarms.Evaluator``."""

    def ingest_line(self, line: str) -> int: ...

    def advance(self, now_epoch_s: float) -> list[Any]: ...

    @property
    def states(self) -> dict[str, str]: ...


def is_emf(line: str) -> bool:
    """True for a JSON object line carrying an ``_aws`` metadata object (an EMF event)."""
    if not line.startswith("{") or '"_aws"' not in line:
        return False
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get("_aws"), dict)


class Collector:
    """Thread-safe sink for the children's stdout lines, and the evaluator's only door."""

    def __init__(self, out_dir: Path, evaluator: LiveEvaluator) -> None:
        self._emf: IO[str] = open(out_dir / "emf.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self._logs: dict[str, IO[str]] = {}
        self._out_dir = out_dir
        self._evaluator = evaluator
        self._lock = threading.Lock()
        self.emf_lines: dict[str, int] = {}
        self.other_lines: dict[str, int] = {}
        self.evaluations: list[dict[str, Any]] = []
        self.last_states: dict[str, str] = {}
        self._closed = False

    def on_line(self, name: str, line: str) -> None:
        """Supervisor line handler: route one stdout line of child ``name``."""
        if is_emf(line):
            with self._lock:
                if self._closed:
                    return
                self._emf.write(line + "\n")
                self.emf_lines[name] = self.emf_lines.get(name, 0) + 1
                self._evaluator.ingest_line(line)
            return
        with self._lock:
            if self._closed:
                return
            log = self._logs.get(name)
            if log is None:
                log = self._logs[name] = open(  # noqa: SIM115 - closed in close()
                    self._out_dir / f"{name}.log", "a", encoding="utf-8"
                )
            log.write(line + "\n")
            self.other_lines[name] = self.other_lines.get(name, 0) + 1

    def advance(self, now_epoch_s: float) -> list[dict[str, Any]]:
        """Run the evaluations due up to ``now_epoch_s``; return them as dicts (also kept)."""
        with self._lock:
            done = self._evaluator.advance(now_epoch_s)
            states = dict(self._evaluator.states)
        out = [_as_dict(e) for e in done]
        with self._lock:
            self.evaluations.extend(out)
            self.last_states = states
        return out

    def states(self) -> dict[str, str]:
        with self._lock:
            return dict(self._evaluator.states)

    def flush(self) -> None:
        with self._lock:
            self._emf.flush()
            for log in self._logs.values():
                log.flush()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._emf.close()
            for log in self._logs.values():
                log.close()


def _as_dict(evaluation: Any) -> dict[str, Any]:
    """The evaluation as ``replay`` prints it, plus ``epoch`` (its time in epoch seconds)."""
    if hasattr(evaluation, "to_dict"):
        out = dict(evaluation.to_dict())
    elif isinstance(evaluation, dict):
        out = dict(evaluation)
    else:
        out = {
            k: getattr(evaluation, k, None) for k in ("time", "alarm", "state", "previous_state")
        }
    raw = getattr(evaluation, "time", None)
    out["epoch"] = raw if isinstance(raw, int | float) else out.get("epoch")
    return out
