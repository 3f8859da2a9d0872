"""What blue and green run per scenario, and the one-way-door guard before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from points import PRESETS
from rehearsal.model import Options
from rehearsal.runner import child_env, run, start_failure
from rehearsal.versions import OneWayDoor, guard, sides
from tests.support.processes import ROOT


def _sides(tmp_path: Path, scenario: str, **options):
    return sides(Options(scenario=scenario, out=tmp_path, **options), "v1", "v2")


@pytest.mark.parametrize(
    ("scenario", "labels", "releases", "regressed"),
    [
        ("regression", ("v1", "v2"), (None, None), True),
        ("healthy", ("v1", "v2"), (None, None), False),
        ("breaking", ("v1", "v3"), ("v1", "v3"), True),
    ],
)
def test_each_scenario_runs_its_versions(tmp_path, scenario, labels, releases, regressed) -> None:
    blue, green = _sides(tmp_path, scenario)
    assert (blue.label, green.label) == labels
    assert (blue.release, green.release) == releases
    assert (blue.regressed, green.regressed) == (False, regressed)


def test_per_version_app_environment_and_release(tmp_path: Path) -> None:
    blue, green = _sides(
        tmp_path,
        "healthy",
        blue_version="v2",
        green_version="v3",
        green_app="mypkg.wsgi:app",
        green_env={"POINTS_RATE": "0.02"},
    )
    assert (blue.app, green.app) == ("sample_api.wsgi:app", "mypkg.wsgi:app")
    assert blue.formats == PRESETS["v2"] and green.formats == PRESETS["v3"]
    options = Options(scenario="healthy", out=tmp_path, extra_env={"POINTS_RATE": "0.5"})
    env = child_env(
        options,
        green.label,
        tmp_path / "p.db",
        1,
        False,
        formats=green.formats,
        version_env=green.env,
    )
    assert env["APP_VERSION"] == "v3"
    assert (env["POINTS_FORMATS_READ"], env["POINTS_FORMAT_WRITE"]) == ("1,2", "2")
    assert env["POINTS_RATE"] == "0.02"  # the version's own setting wins over both versions'
    # Without a release nothing is declared: the app's defaults (today's behaviour).
    assert "POINTS_FORMAT_WRITE" not in child_env(options, "v1", tmp_path / "p.db", 1, False)


def test_two_sides_with_one_label_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="blue and green are both 'v3'"):
        _sides(tmp_path, "healthy", blue_version="v3", green_version="v3")


@pytest.mark.parametrize(
    ("blue", "green", "ok"),
    [("v1", "v2", True), ("v2", "v3", True), ("v1", "v3", False), ("v3", "v2", True),
     ("v3", "v1", False)],
)  # fmt: skip
def test_the_guard(tmp_path: Path, blue: str, green: str, ok: bool) -> None:
    decision = guard(*_sides(tmp_path, "healthy", blue_version=blue, green_version=green))
    assert decision.ok is ok


def test_the_library_refuses_a_one_way_door_before_starting_anything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    options = Options(scenario="healthy", out=out, blue_version="v1", green_version="v3")
    with pytest.raises(OneWayDoor, match="deploy the prepare version first"):
        run(options)
    assert not out.exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rehearsal", "--no-progress", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_line_refuses_v1_to_v3_with_one_line(tmp_path: Path) -> None:
    proc = _cli("--scenario", "healthy", "--blue-version", "v1", "--green-version", "v3",
                "--out", str(tmp_path / "x"))  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr == (
        "rehearsal: one-way door: green v3 writes ledger format 2, which blue v1 (the rollback "
        "target; reads 1, writes 1) cannot read; deploy the prepare version first (reads 1,2, "
        "writes 1) (--allow-one-way-door runs it anyway)\n"
    )
    assert not (tmp_path / "x").exists()
    # Rolling back across the door is refused the same way.
    proc = _cli("--scenario", "healthy", "--blue-version", "v3", "--green-version", "v1",
                "--out", str(tmp_path / "x"))  # fmt: skip
    assert proc.returncode == 4 and "roll forward" in proc.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scenario", "two-phase", "--green-version", "v3"], "does not apply"),
        (["--scenario", "healthy", "--blue-version", "v2", "--green-version", "v2"], "both 'v2'"),
        (["--scenario", "healthy", "--green-version", "v4"], "--green-version"),
        (["--scenario", "healthy", "--blue-env", "NOEQUALS"], "NAME=VALUE"),
        # handed to gunicorn's command line: an option there would not be an app
        (["--scenario", "healthy", "--app=--daemon"], "argument --app: expected MODULE:NAME"),
        (["--scenario", "healthy", "--blue-app=--bind=0.0.0.0:80"], "--blue-app: expected"),
        (["--scenario", "healthy", "--green-app", "sample api:app"], "--green-app: expected"),
        (["--scenario", "healthy", "--app", "sample_api.wsgi:"], "--app: expected"),
        (["--scenario", "healthy", "--app", "a b" * 2000], "'" + ("a b" * 30)[:80] + "'..."),
    ],
)
def test_bad_version_arguments_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = _cli(*args, "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr


@pytest.mark.parametrize(
    ("app", "needle"),
    [
        ("no_such_module:app", "ModuleNotFoundError: No module named 'no_such_module'"),
        ("sample_api.wsgi:no_such_app", "Failed to find attribute 'no_such_app'"),
    ],
)
def test_a_version_that_cannot_start_says_why(tmp_path: Path, app: str, needle: str) -> None:
    proc = _cli("--scenario", "healthy", "--green-app", app, "--out", str(tmp_path / "x"))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"green (version v2, app {app}) exited before it was ready: {needle}" in proc.stderr
    assert str(tmp_path / "x" / "logs" / "green.stderr.log") in proc.stderr


def test_start_failure_reads_the_logs_last_own_line(tmp_path: Path) -> None:
    log = tmp_path / "v.stderr.log"
    assert start_failure(log) == ""  # no log at all
    log.write_text(
        "[2026-11-30 14:46:00 +0000] [1] [INFO] Booting worker with pid: 2\n"
        'Traceback (most recent call last):\n  File "x.py", line 1\n'
        "ValueError: " + "v" * 400 + "\n"
        "[2026-11-30 14:46:00 +0000] [1] [ERROR] Reason: Worker failed to boot.\n\n"
    )
    assert start_failure(log) == ("ValueError: " + "v" * 400)[:297] + "..."
    log.write_text("[2026-11-30 14:46:00 +0000] [1] [ERROR] Reason: Worker failed to boot.\n")
    assert start_failure(log) == log.read_text().strip()  # only gunicorn's own: its last line


V3_ENV = {"POINTS_FORMATS_READ": "1,2", "POINTS_FORMAT_WRITE": "2"}


def test_the_guard_judges_what_a_version_runs_with_not_its_name(tmp_path: Path) -> None:
    # --green-env declaring format 2 makes the spec's v2 write what blue cannot read
    blue, green = _sides(tmp_path, "healthy", green_env=V3_ENV)
    assert green.formats == PRESETS["v3"] and not guard(blue, green).ok
    # both versions' environment counts too, the side's own last
    _, green = _sides(tmp_path, "healthy", extra_env=V3_ENV, green_env={"POINTS_FORMAT_WRITE": "1"})
    assert green.formats == PRESETS["v2"]
    # a release's declaration can be overridden: "v3" writing format 1 is a prepare version
    blue, green = _sides(tmp_path, "healthy", blue_version="v1", green_version="v3",
                         green_env={"POINTS_FORMAT_WRITE": "1"})  # fmt: skip
    assert green.formats == PRESETS["v2"] and guard(blue, green).ok
    # ... and what the rehearsal itself was started with reaches its children
    with pytest.MonkeyPatch.context() as mp:
        for name, value in V3_ENV.items():
            mp.setenv(name, value)
        blue, green = _sides(tmp_path, "healthy", blue_env={"POINTS_FORMAT_WRITE": "1",
                                                            "POINTS_FORMATS_READ": "1"})  # fmt: skip
        assert green.formats == PRESETS["v3"] and not guard(blue, green).ok


def test_the_library_refuses_a_door_opened_by_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(OneWayDoor, match="green v2 writes ledger format 2"):
        run(Options(scenario="healthy", out=out, green_env=V3_ENV))
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        (
            ["--green-env", "POINTS_FORMATS_READ=1,2", "--green-env", "POINTS_FORMAT_WRITE=2"],
            4,
            "one-way door: green v2 writes ledger format 2",
        ),
        (["--green-env", "POINTS_FORMAT_WRITE=x"], 2, "green: POINTS_FORMAT_WRITE must be"),
        (["--blue-env", "POINTS_FORMATS_READ=1,,2"], 2, "blue: POINTS_FORMATS_READ must be"),
        (["--blue-env", "POINTS_FORMATS_READ=2"], 2, "blue: POINTS_FORMAT_WRITE=1 must be one"),
    ],
)
def test_format_settings_in_a_versions_environment(tmp_path, args, status, needle) -> None:
    proc = _cli("--scenario", "healthy", *args, "--out", str(tmp_path / "x"))
    assert proc.returncode == status, proc.stderr
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("extra", [[], ["--allow-one-way-door"]])
def test_two_phase_is_guarded_with_the_versions_environment(tmp_path, extra) -> None:
    # green's environment would make the prepare version (v2) write format 2: v1 -> "v2" is a
    # door; run_two_phase refuses it, so the command line says so before creating anything
    proc = _cli("--scenario", "two-phase", "--green-env", "POINTS_FORMAT_WRITE=2", *extra,
                "--out", str(tmp_path / "x"))  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.startswith("rehearsal: one-way door: green v2 writes ledger format 2")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        # green's metrics would be labelled blue's: the green alarms never see data, the result
        # still says "v2", and a regression succeeds under --no-judge
        (["--green-env", "APP_VERSION=v1"], "green: APP_VERSION is set by the rehearsal"),
        (["--blue-env", "AWS_EMF_NAMESPACE=Elsewhere"], "blue: AWS_EMF_NAMESPACE is set by"),
        (["--green-env", "POINTS_DB_PATH=/tmp/other.db"], "green: POINTS_DB_PATH is set by"),
        (["--green-env", "OTEL_SERVICE_NAME=é"], "green: OTEL_SERVICE_NAME is set by"),
        (["--blue-env", "TELEMETRY_TRACES_FILE="], "blue: TELEMETRY_TRACES_FILE is set by"),
    ],
)
def test_what_the_rehearsal_measures_by_is_not_per_version(tmp_path, args, needle) -> None:
    proc = _cli("--scenario", "regression", *args, "--out", str(tmp_path / "x"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match=needle.split(" is ")[0]):  # the library too
        env = dict(a.split("=", 1) for a in args[1::2])
        side = "green_env" if args[0] == "--green-env" else "blue_env"
        _sides(tmp_path, "regression", **{side: env})


def test_a_versions_tuning_is_still_its_own(tmp_path: Path) -> None:
    # what a version is made of (its limiter, threads, rate) stays the user's to change
    env = {"RATE_LIMIT_RPS": "5", "GUNICORN_THREADS": "1", "POINTS_RATE": "0.02"}
    _, green = _sides(tmp_path, "regression", green_env=env)
    assert green.env == env
