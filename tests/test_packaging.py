"""Each extra installs what it promises: a fresh virtual environment with only the wheel and that
extra runs the package's command for real (the ``[flask]`` extra has its own test in
tests/telemetry/test_fresh_venv.py).

One wheel is built per session and one environment per extra; pip downloads from PyPI (or its
cache) on a clean machine, so these tests take a minute or two in all.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from points.domain import points_for
from tests.conftest import FAKE_AWS_ENV
from tests.support.issuer import ISSUER
from tests.support.processes import ROOT, gunicorn, stop
from tests.worker.conftest import Ledger, wait_for
from worker._sample import sample_orders

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: Distributions no extra below may bring in unless it says so.
WATCHED = ("flask", "werkzeug", "pyrate_limiter", "gunicorn", "boto3", "yaml", "locust",
           "matplotlib", "moto", "pytest")  # fmt: skip

# Run inside the fresh environment: import one package and report what that loaded and what
# the environment has installed at all.
PROBE = textwrap.dedent(
    """
    import importlib, importlib.util, json, sys
    watched = sys.argv[2].split(",")
    module = importlib.import_module(sys.argv[1])
    loaded = sorted({m.split(".")[0] for m in sys.modules})
    print(json.dumps({
        "file": module.__file__,
        "loaded": loaded,
        "installed": [m for m in watched if importlib.util.find_spec(m) is not None],
    }))
    """
)


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that would put the work tree on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of what the build needs (the tree stays clean)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "LICENSE", "README.md"):
        shutil.copy(ROOT / name, src)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture(scope="session")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``fresh_venv("worker")``: the ``bin`` directory of an environment holding only
    ``<wheel>[worker]`` and its dependencies (made once per extra)."""

    @functools.cache
    def make(extra: str) -> Path:
        venv = tmp_path_factory.mktemp(f"venv-{extra}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        install = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[{extra}]"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert install.returncode == 0, install.stderr[-3000:]
        return venv / "bin"

    return make


def _run(bin_dir: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A command of the fresh environment, outside the work tree."""
    return subprocess.run(
        [str(bin_dir / "python"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=_clean_env(**env),
    )


def _probe(bin_dir: Path, module: str, cwd: Path) -> dict:
    proc = _run(bin_dir, "-c", PROBE, module, ",".join(WATCHED), cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["file"].startswith(str(bin_dir.parent)), "imported from the work tree"
    return report


# -- [worker] ---------------------------------------------------------------------------------


def test_worker_extra_imports_no_web_stack(fresh_venv: Callable[[str], Path], tmp_path: Path):
    bin_dir = fresh_venv("worker")
    report = _probe(bin_dir, "worker", tmp_path)
    assert report["installed"] == ["boto3"]
    assert not {"flask", "werkzeug", "pyrate_limiter", "sample_api"} & set(report["loaded"])
    help_ = _run(bin_dir, "-m", "worker", "--help", cwd=tmp_path)
    assert help_.returncode == 0 and "send-sample" in help_.stdout, help_.stderr[-2000:]


def test_worker_extra_credits_orders_from_a_real_queue(
    fresh_venv: Callable[[str], Path], aws_endpoint: str, tmp_path: Path
) -> None:
    bin_dir = fresh_venv("worker")
    aws = {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": aws_endpoint}
    name = f"fresh-{uuid.uuid4().hex[:10]}"
    setup = _run(bin_dir, "-m", "worker", "setup-queues", "--name", name, cwd=tmp_path, **aws)
    assert setup.returncode == 0, setup.stderr[-2000:]
    urls = dict(line.split("=", 1) for line in setup.stdout.splitlines())
    count, seed = 12, 7
    send = _run(bin_dir, "-m", "worker", "send-sample", "--count", str(count), "--seed",
                str(seed), "--queue-url", urls["QUEUE_URL"], cwd=tmp_path, **aws)  # fmt: skip
    assert send.returncode == 0, send.stderr[-2000:]
    assert json.loads(send.stdout)["messages"] == count

    db_path = tmp_path / "points.db"
    ledger = Ledger(db_path)
    env = _clean_env(**aws, QUEUE_URL=urls["QUEUE_URL"], POINTS_DB_PATH=str(db_path),
                     WORKER_WAIT_TIME_S="1", OTEL_SERVICE_NAME="points-worker")  # fmt: skip
    log = tmp_path / "worker.err"
    with log.open("wb") as err:
        proc = subprocess.Popen([str(bin_dir / "python"), "-m", "worker"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)  # fmt: skip
        try:
            wait_for(lambda: ledger.count() >= count or proc.poll() is not None, 60, "credits")
            assert proc.poll() is None, log.read_text()[-2000:]
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)  # a bound against a hang, not a speed target
        finally:
            stop(proc)
    assert proc.returncode == 0, log.read_text()[-2000:]
    expected = sorted(
        (o.user_id, o.order_id, points_for(o.amount_jpy))
        for o in sample_orders(count, users=50, seed=seed)
    )
    assert sorted(ledger.rows()) == expected


# -- [alarms] ---------------------------------------------------------------------------------


def test_alarms_extra_synthesizes_the_shipped_spec(
    fresh_venv: Callable[[str], Path], tmp_path: Path
) -> None:
    bin_dir = fresh_venv("alarms")
    report = _probe(bin_dir, "alarms", tmp_path)
    assert report["installed"] == ["boto3", "yaml"]
    assert not {"flask", "sample_api", "worker", "rehearsal"} & set(report["loaded"])
    spec = _run(bin_dir, "-c", "import alarms; print(alarms.POINTS_SERVICE_SPEC)", cwd=tmp_path)
    assert spec.returncode == 0, spec.stderr[-2000:]
    synth = _run(bin_dir, "-m", "alarms", "synth", "--spec", spec.stdout.strip(), "--format",
                 "json", cwd=tmp_path)  # fmt: skip
    assert synth.returncode == 0, synth.stderr[-2000:]
    assert json.loads(synth.stdout), "an empty set of alarms"


# -- [loadtest] -------------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[str]:
    """The points service (this environment's) for the load generator to drive."""
    env = {**ISSUER.env(), "POINTS_DB_PATH": str(tmp_path / "points.db"), "WEB_CONCURRENCY": "1"}
    with gunicorn(env=env) as (base, _proc):
        yield base


def test_loadtest_extra_runs_the_locustfile(
    fresh_venv: Callable[[str], Path], api: str, tmp_path: Path
) -> None:
    bin_dir = fresh_venv("loadtest")
    report = _probe(bin_dir, "loadtest", tmp_path)
    # Locust itself depends on Flask (its web UI); none of the service's own stack comes along
    assert {"locust", "flask"} <= set(report["installed"])
    assert not {"gunicorn", "pyrate_limiter", "boto3", "matplotlib", "moto"} & set(
        report["installed"]
    )
    assert "locust" not in report["loaded"]  # the package namespace does not patch with gevent
    path = _run(bin_dir, "-c", "import loadtest; print(loadtest.LOCUSTFILE)", cwd=tmp_path)
    assert path.returncode == 0, path.stderr[-2000:]
    out = tmp_path / "load"
    run = _run(bin_dir, "-m", "locust", "-f", path.stdout.strip(), "--headless", "--host", api,
               "--csv", str(out), "--only-summary", "--loglevel", "WARNING", "--run-time", "3s",
               "--stop-timeout", "5", cwd=tmp_path, LOAD_SHAPE="steady", LOAD_RPS="10",
               LOAD_DURATION_S="3", **ISSUER.load_env())  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    import csv

    with (tmp_path / "load_stats.csv").open(newline="") as fh:
        total = next(row for row in csv.DictReader(fh) if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0
