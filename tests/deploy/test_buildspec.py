"""deploy/buildspec.yml's commands, run by bash as CodeBuild runs them (one shell for every phase),
with `aws` and `docker` replaced by recording stand-ins: a retried build of the same commit reuses
the pushed image, a new one is built for linux/amd64 from the digest-pinned base, errors stop it,
and a pre-deploy hook can stop the release before the deployment is created."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy._cfn import DEPLOY, ROOT, load
from tests.deploy.test_revision import OUTPUTS

SPEC = yaml.safe_load((DEPLOY / "buildspec.yml").read_text())
COMMIT = "0123456789abcdef0123456789abcdef01234567"

# Stand-ins: each call is appended to calls.log; `describe-images` answers as FAKE_DESCRIBE says.
_AWS = r"""#!/usr/bin/env bash
echo "aws $*" >> "$CALLS"
case "$1 $2" in
  "sts get-caller-identity") echo 123456789012 ;;
  "ecr get-login-password") echo secret ;;
  "ecr describe-images")
    case "$FAKE_DESCRIBE" in
      exists) echo '{"imageDetails": [{}]}' ;;
      missing) echo "An error occurred (ImageNotFoundException) when calling the DescribeImages operation" >&2; exit 254 ;;
      denied) echo "An error occurred (AccessDeniedException) when calling the DescribeImages operation" >&2; exit 254 ;;
    esac ;;
  "cloudformation describe-stacks") cat "$FAKE_OUTPUTS" ;;
  *) echo "unexpected aws call: $*" >&2; exit 2 ;;
esac
"""
_DOCKER = r"""#!/usr/bin/env bash
echo "docker $*" >> "$CALLS"
if [ "$1" = login ]; then cat > /dev/null; fi
"""


def _script() -> str:
    """The build's commands in phase order, stopping at the first failure (CodeBuild fails the
    build; post_build would then stop at its CODEBUILD_BUILD_SUCCEEDING check)."""
    commands = [
        command
        for phase in ("install", "pre_build", "build", "post_build")
        for command in SPEC["phases"].get(phase, {}).get("commands", [])
    ]
    return "set -eo pipefail\n" + "\n".join(commands) + "\n"


def _workspace(tmp_path: Path, hooks: dict[str, str] | None = None) -> Path:
    """A source checkout as CodeBuild sees it: the Dockerfile and deploy/ (own pre-deploy.d)."""
    work = tmp_path / "src"
    (work / "deploy" / "pre-deploy.d").mkdir(parents=True)
    (work / "Dockerfile").symlink_to(ROOT / "Dockerfile")
    for item in DEPLOY.iterdir():
        if item.name != "pre-deploy.d":
            (work / "deploy" / item.name).symlink_to(item)
    for name, text in (hooks or {}).items():
        hook = work / "deploy" / "pre-deploy.d" / name
        hook.write_text(text)
        hook.chmod(0o755 if text.startswith("#!") else 0o644)  # scripts executable, notes not
    return work


def _run(
    tmp_path: Path,
    describe: str,
    hooks: dict[str, str] | None = None,
    variables: dict[str, str] | None = None,
):
    work = _workspace(tmp_path, hooks)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("aws", _AWS), ("docker", _DOCKER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    # python3: the venv's interpreter (render_revision.py needs only the standard library)
    (bin_dir / "python3").symlink_to(sys.executable)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps([{"OutputKey": k, "OutputValue": v} for k, v in OUTPUTS.items()]))
    calls = tmp_path / "calls.log"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        **{k: str(v) for k, v in SPEC["env"]["variables"].items()},
        "RUN_TESTS": "false",  # `make test` is what this suite is
        "AWS_REGION": "us-east-1",
        "CODEBUILD_RESOLVED_SOURCE_VERSION": COMMIT,
        "CODEBUILD_BUILD_SUCCEEDING": "1",
        "CALLS": str(calls),
        "FAKE_DESCRIBE": describe,
        "FAKE_OUTPUTS": str(outputs),
        **(variables or {}),
    }
    proc = subprocess.run(
        ["bash", "-c", _script()],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = calls.read_text().splitlines() if calls.exists() else []
    return proc, log, work


def _docker(log: list[str], verb: str) -> list[str]:
    return [line for line in log if line.startswith(f"docker {verb} ")]


def test_new_commit_is_built_for_amd64_from_the_pinned_base_and_pushed(tmp_path: Path) -> None:
    proc, log, work = _run(tmp_path, "missing")
    assert proc.returncode == 0, proc.stderr
    tag = COMMIT[:12]
    repo = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/points-service:{tag}"
    [build] = _docker(log, "build")
    assert "--platform linux/amd64" in build
    base = re.search(r"--build-arg PYTHON_IMAGE=(\S+)", build).group(1)
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert base == f"public.ecr.aws/docker/library/{default.group(1)}"
    assert re.fullmatch(r"\S+:[\w.-]+@sha256:[0-9a-f]{64}", base)
    assert f"-t {repo}" in build
    assert _docker(log, "push") == [f"docker push {repo}"]
    assert json.loads((work / "imageDetail.json").read_text()) == {"ImageURI": repo}
    taskdef = json.loads((work / "taskdef.json").read_text())
    env = {e["name"]: e["value"] for e in taskdef["containerDefinitions"][0]["environment"]}
    assert env["APP_VERSION"] == tag
    assert (work / "appspec.yaml").is_file()


def test_retried_build_of_the_same_commit_reuses_the_pushed_image(tmp_path: Path) -> None:
    """Immutable tags: pushing the commit's tag a second time would fail the retried build."""
    proc, log, work = _run(tmp_path, "exists")
    assert proc.returncode == 0, proc.stderr
    assert _docker(log, "build") == [] and _docker(log, "push") == []
    repo = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/points-service:{COMMIT[:12]}"
    assert json.loads((work / "imageDetail.json").read_text()) == {"ImageURI": repo}
    assert (work / "taskdef.json").is_file()


def test_other_describe_errors_stop_the_build(tmp_path: Path) -> None:
    proc, log, work = _run(tmp_path, "denied")
    assert proc.returncode != 0
    assert "AccessDeniedException" in proc.stderr
    assert _docker(log, "build") == [] and _docker(log, "push") == []
    assert not (work / "imageDetail.json").exists()


@pytest.mark.parametrize("status", [0, 3])
def test_pre_deploy_hooks_run_after_rendering_and_can_stop_the_release(
    tmp_path: Path, status: int
) -> None:
    hook = f'#!/bin/sh\ntest -f taskdef.json && echo "hook saw $IMAGE_TAG" >> "$CALLS"\nexit {status}\n'
    proc, log, _ = _run(tmp_path, "missing", {"10-check": hook, "notes.txt": "not executable"})
    assert f"hook saw {COMMIT[:12]}" in log
    assert (proc.returncode == 0) == (status == 0), proc.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [("RUN_TESTS", "TRUE"), ("RUN_TESTS", "yes"), ("RUN_TESTS", ""), ("DRY_RUN", "True")],
)
def test_a_switch_that_is_neither_true_nor_false_stops_the_build(
    tmp_path: Path, name: str, value: str
) -> None:
    """RUN_TESTS=TRUE must not skip the tests (only "false" does), DRY_RUN=yes must not change
    the stack (only "true" is a dry run): anything else stops the build before it builds."""
    proc, log, _ = _run(tmp_path, "missing", variables={name: value})
    assert proc.returncode != 0
    assert f"{name} must be true or false" in proc.stderr
    assert _docker(log, "build") == [] and not any("describe-images" in c for c in log)


def test_docs_build_commands_force_the_task_platform() -> None:
    """Every `docker build` the docs tell users to run targets the task definitions' CPU."""
    arch = load(DEPLOY / "stack.yaml")["Resources"]["ApiTaskDefinition"]["Properties"][
        "RuntimePlatform"
    ]["CpuArchitecture"]
    platform = {"X86_64": "linux/amd64", "ARM64": "linux/arm64"}[arch]
    docs = (ROOT / "docs" / "deploy-to-aws.md").read_text().replace("\\\n", " ")
    builds = re.findall(r"^\s*docker build .*$", docs, re.M)
    assert builds
    for line in builds:
        assert f"--platform {platform}" in line, line
    assert SPEC["env"]["variables"]["IMAGE_PLATFORM"] == platform


@pytest.mark.parametrize(
    "version",
    ["v" * 65, "-v2", ".v2", "v 2", "v2/x", "v2:x", "v2\nv3", "v2$x", "\u0662", "v2*"],
)
def test_a_version_the_revision_or_docker_would_refuse_stops_the_build_before_it_builds(
    tmp_path: Path, version: str
) -> None:
    """APP_VERSION is the image tag: one render_revision.py --version refuses (or Docker does)
    was built and pushed first, then refused, the immutable tag taken; now nothing is called."""
    proc, log, work = _run(tmp_path, "missing", variables={"APP_VERSION": version})
    assert proc.returncode != 0
    assert "APP_VERSION (the image tag) must be 1-64" in proc.stderr, proc.stderr
    assert log == [] and not (work / "imageDetail.json").exists()


@pytest.mark.parametrize("version", ["v" * 64, "v2", "_v2", "2.0.1-rc_1", "V2"])
def test_a_version_both_take_is_built_under_that_tag(tmp_path: Path, version: str) -> None:
    proc, log, _ = _run(tmp_path, "missing", variables={"APP_VERSION": version})
    assert proc.returncode == 0, proc.stderr
    [build] = _docker(log, "build")
    assert build.split(" -t ")[1].split()[0].endswith(f"/points-service:{version}")


def test_no_commit_and_no_version_stops_the_build(tmp_path: Path) -> None:
    proc, log, _ = _run(tmp_path, "missing", variables={"CODEBUILD_RESOLVED_SOURCE_VERSION": ""})
    assert proc.returncode != 0 and "must be 1-64" in proc.stderr
    assert log == []
