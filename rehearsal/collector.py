"""Collect what the two versions write: EMF lines to ``emf.jsonl`` and to the live alarm evaluator,
everything else (JSON access/application logs) to one log file per version."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from alarms import Evaluation, decode_emf


class LiveEvaluator(Protocol):
    """What the collector needs from ``alarms.Evaluator``."""

    def ingest_record(self, obj: Mapping[str, Any]) -> int: ...

    def advance(self, now: float) -> list[Evaluation]: ...

    @property
    def states(self) -> dict[str, str]: ...

    @property
    def stats(self) -> dict[str, Any]: ...

    @property
    def rejection_warnings(self) -> list[str]: ...


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
        self.evaluations: list[Evaluation] = []
        self.last_states: dict[str, str] = {}
        self._closed = False

    def on_line(self, name: str, line: str) -> None:
        """Supervisor line handler: route one stdout line of child ``name``."""
        record = decode_emf(line)  # decoded once, outside the lock
        if record is not None:
            with self._lock:
                if self._closed:
                    return
                self._emf.write(line + "\n")
                self.emf_lines[name] = self.emf_lines.get(name, 0) + 1
                self._evaluator.ingest_record(record)
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

    def advance(self, now_epoch_s: float) -> list[Evaluation]:
        """Run the evaluations due up to ``now_epoch_s``; return them (they are also kept)."""
        with self._lock:
            done = self._evaluator.advance(now_epoch_s)
            self.evaluations.extend(done)
            self.last_states = dict(self._evaluator.states)
        return done

    def states(self) -> dict[str, str]:
        with self._lock:
            return dict(self._evaluator.states)

    def cloudwatch_rejects(self) -> dict[str, Any]:
        """The versions' metric values CloudWatch would reject (``telemetry.cloudwatch_rules``),
        which the evaluator left out: ``{"count": n, "warnings": [one line per kind]}``."""
        with self._lock:
            return {
                "count": int(self._evaluator.stats.get("rejected", 0)),
                "warnings": list(self._evaluator.rejection_warnings),
            }

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
