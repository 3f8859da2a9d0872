"""deploy/pre-deploy.d/10-one-way-door, run by bash as the buildspec runs its hooks, with a
recording `aws` stand-in: the running task definition (the rollback target) against the rendered
candidate; a one-way door fails the build before the deployment is created."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy._cfn import DEPLOY, ROOT
from tests.deploy.test_revision import OUTPUTS
from tests.points.test_guard import taskdef

HOOK = DEPLOY / "pre-deploy.d" / "10-one-way-door"

_AWS = r"""#!/usr/bin/env bash
echo "aws $*" >> "$CALLS"
case "$1 $2" in
  "ecs describe-services")
    if [ -n "${FAKE_DESCRIBE_ERROR:-}" ]; then echo "$FAKE_DESCRIBE_ERROR" >&2; exit 254; fi
    printf '%s\t%s\n' "$FAKE_PRIMARY" None ;;
  "ecs describe-task-definition") cat "$FAKE_RUNNING" ;;
  *) echo "unexpected aws call: $*" >&2; exit 2 ;;
esac
"""


def _run(
    tmp_path: Path,
    running: str | None,
    candidate: str,
    *,
    describe_error: str = "",
    outputs_text: str | None = None,
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(_AWS)
    (bin_dir / "aws").chmod(0o755)
    (bin_dir / "python3").symlink_to(sys.executable)
    work = tmp_path / "src"
    work.mkdir()
    (work / "points").symlink_to(ROOT / "points")  # the source checkout's package
    outputs = [{"OutputKey": k, "OutputValue": v} for k, v in OUTPUTS.items()]
    outputs += [
        {"OutputKey": "ClusterName", "OutputValue": "points"},
        {"OutputKey": "ApiServiceName", "OutputValue": "points-api"},
    ]
    (work / "stack-outputs.json").write_text(
        json.dumps(outputs) if outputs_text is None else outputs_text
    )
    (work / "taskdef.json").write_text(json.dumps(taskdef(candidate)))
    (tmp_path / "running.json").write_text(
        json.dumps(taskdef(running, described=True)) if running else "{}"
    )
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls.log"),
        "FAKE_PRIMARY": f"arn:aws:ecs:us-east-1:123456789012:task-definition/points-api:{running[1]}"
        if running
        else "None",
        "FAKE_RUNNING": str(tmp_path / "running.json"),
        "FAKE_DESCRIBE_ERROR": describe_error,
    }
    proc = subprocess.run(
        ["bash", str(HOOK)], cwd=work, env=env, capture_output=True, text=True, timeout=60
    )
    calls = tmp_path / "calls.log"
    return proc, calls.read_text().splitlines() if calls.exists() else []


def test_the_hook_is_executable_so_the_build_runs_it() -> None:
    assert os.access(HOOK, os.X_OK)


@pytest.mark.parametrize(
    ("running", "candidate", "status"),
    [("v1", "v2", 0), ("v2", "v3", 0), ("v1", "v3", 3), ("v3", "v2", 0), ("v3", "v1", 3)],
)
def test_the_guard_runs_against_the_primary_task_set(
    tmp_path: Path, running: str, candidate: str, status: int
) -> None:
    proc, calls = _run(tmp_path, running, candidate)
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert calls[0].startswith("aws ecs describe-services --cluster points --services points-api")
    assert calls[1] == (
        "aws ecs describe-task-definition --task-definition "
        f"arn:aws:ecs:us-east-1:123456789012:task-definition/points-api:{running[1]}"
    )
    if status:
        assert proc.stderr.startswith("guard: one-way door: ") and proc.stderr.count("\n") == 1


def test_the_first_deployment_has_nothing_to_guard(tmp_path: Path) -> None:
    proc, calls = _run(tmp_path, None, "v3")
    assert proc.returncode == 0, proc.stderr
    assert "nothing to guard" in proc.stdout
    assert len(calls) == 1


def test_an_aws_error_fails_the_build_instead_of_skipping_the_guard(tmp_path: Path) -> None:
    """AccessDenied or throttling on DescribeServices is not "nothing to guard": a guard that
    cannot see the rollback target must refuse, or a one-way door walks through."""
    denied = (
        "An error occurred (AccessDeniedException) when calling the DescribeServices operation: "
        "User is not authorized to perform: ecs:DescribeServices"
    )
    proc, calls = _run(tmp_path, "v1", "v3", describe_error=denied)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "nothing to guard" not in proc.stdout
    assert "cannot read the running task definition of points-api" in proc.stderr
    assert len(calls) == 1


@pytest.mark.parametrize(
    "outputs_text",
    ["not json", "[]", '[{"OutputKey": "ClusterName", "OutputValue": "points"}]', '{"a": 1}'],
)
def test_unusable_stack_outputs_fail_in_one_line(tmp_path: Path, outputs_text: str) -> None:
    proc, calls = _run(tmp_path, "v1", "v2", outputs_text=outputs_text)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("one-way-door guard: stack-outputs.json")
    assert proc.stderr.count("\n") == 1
    assert calls == []
