"""README's install commands work: each one resolves to this package with its extras.

The package is not published, so ``pip install 'safe-deploy-ecs[flask]'`` cannot work; README
documents an install from a checkout path and from a git URL. Each command is taken from README,
its path or URL pointed at a copy of this checkout (a git repository for the URL form), and
resolved by pip (``--dry-run``: metadata built, nothing installed). The full install of the path
form into a fresh virtual environment is ``tests/telemetry/test_fresh_venv.py``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.slow


def _install_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- install -->\s*```sh\n(.*?)```", readme, re.S)
    assert block, "README has no install block"
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    return [c for c in commands if c]


def _checkout_copy(tmp_path: Path) -> Path:
    """The tracked files of this checkout, as a git repository with one commit tagged v-test."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        )
        .stdout.decode()
        .split("\0")
    )
    copy = tmp_path / "safe-deploy-ecs"
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"], ["tag", "v-test"]):
        subprocess.run([*git, *args], cwd=copy, check=True, capture_output=True, timeout=60)
    return copy


def test_readme_documents_only_installs_that_do_not_need_the_package_on_an_index() -> None:
    commands = _install_commands()
    assert len(commands) >= 2
    for command in commands:
        assert command[:2] == ["pip", "install"] and len(command) == 3, command
        requirement = command[2]
        # A bare name would need the package on PyPI, where it is not published.
        assert "/" in requirement and "[flask]" in requirement, requirement


@pytest.mark.timeout(600)
def test_each_readme_install_command_resolves_to_this_package(tmp_path: Path) -> None:
    copy = _checkout_copy(tmp_path)
    for n, (_, _, requirement) in enumerate(_install_commands()):
        if " @ git+" in requirement:
            name, _, _ = requirement.partition(" @ ")
            requirement = f"{name} @ git+file://{copy}@v-test"
        else:
            requirement = re.sub(r"^.*safe-deploy-ecs(?=\[)", str(copy), requirement)
        report = tmp_path / f"report-{n}.json"
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
             "--ignore-installed", "--quiet", "--report", str(report), requirement],
            capture_output=True, text=True, timeout=400, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, (requirement, proc.stderr[-3000:])
        (item,) = json.loads(report.read_text())["install"]
        assert item["metadata"]["name"] == "safe-deploy-ecs", requirement
        assert item["requested_extras"] == ["flask"], requirement
        assert "flask" in item["metadata"]["provides_extra"]
