"""The release pipeline's stages as consecutive rehearsals (`python -m rehearsal pipeline`, whose
CLI is in rehearsal/__main__.py).

deploy/pipeline.yaml deploys a release to pre-production, bakes it while its rollback alarms are
watched, and only then to production. Here each stage is one rehearsal (:func:`rehearsal.run`) of
the same release with the stage's own deployment configuration and bake time, in its own output
directory; the first stage that rolls back stops the pipeline, so a regression caught in
pre-production never reaches production. The report is one row per stage (``pipeline.json`` and
the printed table).

Stages are written ``NAME[=CONFIG[@BAKE_S]]`` (``--stage``, repeated, in order): CONFIG is any
``--deployment-config`` (a CodeDeploy name, ``custom:...``, ``ecs:...``), BAKE_S the stage's bake
in seconds (scaled like every duration). The default is the pipeline template's two stages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rehearsal import schedule as schedules
from rehearsal.files import write_atomic
from rehearsal.model import ROLLED_BACK, Options, Outcome

#: Stage names become directory names.
_STAGE_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
NOT_RUN = "not_run"


@dataclass(frozen=True)
class Stage:
    """One environment of the pipeline: where it runs the release and how traffic shifts there."""

    name: str
    deployment_config: str = schedules.DEFAULT_CONFIG
    bake_s: float | None = None  # None: the run's --bake

    @classmethod
    def parse(cls, text: str) -> Stage:
        """``NAME[=CONFIG[@BAKE_S]]``; :class:`schedules.ConfigError` (a ValueError) if bad."""
        name, eq, rest = text.partition("=")
        if not _STAGE_NAME.fullmatch(name):
            raise schedules.ConfigError(
                f"stage name {name!r} must be 1-32 of a-z 0-9 - starting with a letter"
            )
        config, at, bake = rest.partition("@")
        # "a=" or "a=x@" is a value left out by mistake, not a request for the default.
        if (eq and not config) or (at and not bake):
            missing = "CONFIG after '='" if eq and not config else "BAKE_S after '@'"
            raise schedules.ConfigError(
                f"stage {text!r}: no {missing} (NAME[=CONFIG[@BAKE_S]]; leave out '=' for the "
                "default configuration)"
            )
        stage = cls(name, schedules.canonical(config) if config else schedules.DEFAULT_CONFIG)
        if bake:
            if not schedules.plain_number(bake):  # float() reads other digits, "1_0", "6e1", "inf"
                raise schedules.ConfigError(
                    f"stage {name}: bake {bake!r} is not a plain decimal number of seconds "
                    "(digits 0-9, an optional fraction)"
                )
            stage = replace(stage, bake_s=float(bake))
        schedules.build(stage.deployment_config, bake_s=stage.bake_s or 0.0)  # validates both
        return stage


#: The two stages of deploy/pipeline.yaml: pre-production, then production.
DEFAULT_STAGES = (Stage("pre-production"), Stage("production"))


def run_pipeline(
    stages: Sequence[Stage],
    base: Options,
    *,
    runner: Callable[[Options], Outcome] | None = None,
    report: Callable[[str], None] = lambda line: None,
) -> list[dict[str, Any]]:
    """Run ``stages`` in order with ``base``'s options (each in ``base.out/<stage>``), stopping
    at the first rollback. Returns one row per stage (later stages ``not_run``) and writes them to
    ``base.out/pipeline.json``. ``runner`` defaults to :func:`rehearsal.run`."""
    if not stages:
        raise ValueError("a pipeline needs at least one stage")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must differ: {names}")
    if runner is None:
        from rehearsal.runner import run as runner
    rows: list[dict[str, Any]] = []
    stopped_at: str | None = None
    for stage in stages:
        if stopped_at is not None:
            rows.append({"stage": stage.name, "outcome": NOT_RUN,
                         "reason": f"stopped at {stopped_at}"})  # fmt: skip
            continue
        options = replace(
            base,
            out=base.out / stage.name,
            deployment_config=stage.deployment_config,
            bake_s=base.bake_s if stage.bake_s is None else stage.bake_s,
        )
        report(f"stage {stage.name}: {stage.deployment_config}, bake {options.bake_s:g} s")
        outcome = runner(options)
        result = outcome.result
        rows.append(
            {
                "stage": stage.name,
                "outcome": result["outcome"],
                "deployment_config": stage.deployment_config,
                "alarm": result.get("alarm"),
                "alarm_time_s": result.get("alarm_time_s"),
                "requests": result.get("requests"),
                "errors": result.get("errors"),
                "data_safe": None if outcome.safety is None else outcome.safety.ok,
                "report": str(outcome.report_path),
            }
        )
        report(f"stage {stage.name}: {result['outcome']}")
        if result["outcome"] == ROLLED_BACK:
            stopped_at = stage.name
    base.out.mkdir(parents=True, exist_ok=True)
    write_atomic(base.out / "pipeline.json", json.dumps({"stages": rows}, indent=2) + "\n")
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The one-row-per-stage report for people."""
    header = ("stage", "outcome", "deployment config", "alarm", "at (s)", "requests", "errors")
    body = [
        (
            r["stage"],
            r["outcome"],
            r.get("deployment_config") or "-",
            r.get("alarm") or "-",
            "-" if r.get("alarm_time_s") is None else str(r["alarm_time_s"]),
            "-" if r.get("requests") is None else str(r["requests"]),
            "-" if r.get("errors") is None else str(r["errors"]),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in (header, *body)]  # fmt: skip
    return "\n".join(lines)


def final_outcome(rows: Sequence[dict[str, Any]]) -> str:
    """``released`` when every stage succeeded, else ``stopped at <stage>``."""
    for row in rows:
        if row["outcome"] == ROLLED_BACK:
            return f"stopped at {row['stage']}"
    return "released"
