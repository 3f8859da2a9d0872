"""The package as other teams get it: a fresh virtual environment with only `telemetry[flask]`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.slow

DEMO = textwrap.dedent(
    """
    import importlib.util, json, sys
    import flask
    import telemetry
    from telemetry.flask import instrument

    # the base install must not drag in the demo's server, load generator or test tools
    absent = [m for m in ("locust", "moto", "pytest", "gunicorn", "boto3", "matplotlib")
              if importlib.util.find_spec(m) is not None]
    print(json.dumps({"absent_check": absent, "file": telemetry.__file__}), file=sys.stderr)

    telemetry.configure(service="tiny", version="v1")
    app = flask.Flask("tiny")

    @app.get("/hello/<name>")
    def hello(name):
        telemetry.get_logger("tiny").info("hello %s", name)
        return {"hello": name}

    instrument(app)
    client = app.test_client()
    for i in range(7):
        assert client.get(f"/hello/n{i}").status_code == 200
    assert client.get("/nope").status_code == 404
    """
)


# The install downloads the dependencies (CI: a clean machine): longer than the suite's
# default per-test timeout may allow, within the subprocess timeouts below.
@pytest.mark.timeout(700)
def test_fresh_venv_instruments_a_tiny_app(tmp_path: Path) -> None:
    # Copy only what the package build needs: the work tree itself is left untouched.
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "LICENSE", src)  # named by the metadata's license-files
    shutil.copytree(
        ROOT / "telemetry", src / "telemetry", ignore=shutil.ignore_patterns("__pycache__")
    )
    readme = ROOT / "README.md"
    (src / "README.md").write_text(readme.read_text() if readme.exists() else "# telemetry\n")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{src}[flask]"],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    (tmp_path / "demo.py").write_text(DEMO)
    run = subprocess.run(
        [str(python), str(tmp_path / "demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not the repository: import the installed package
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    check = json.loads(next(x for x in run.stderr.splitlines() if "absent_check" in x))
    assert check["absent_check"] == []
    assert check["file"].startswith(str(venv))
    lines = [json.loads(x) for x in run.stdout.splitlines()]
    emf = [x for x in lines if "_aws" in x]
    logs = [x for x in lines if "_aws" not in x]
    assert sum(x.get("Requests", 0) for x in emf) == 8
    assert {x["Route"] for x in emf if "Route" in x} == {"/hello/<name>", "UNMATCHED"}
    assert all(x["Service"] == "tiny" for x in emf)
    assert len([x for x in logs if x["logger"] == "telemetry.access"]) == 8
    assert len([x for x in logs if x["logger"] == "tiny"]) == 7
