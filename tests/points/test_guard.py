"""``python -m points guard``: the one-way-door check between two ECS task definitions."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from points.guard import EXIT_ONE_WAY_DOOR, main
from tests.support.processes import ROOT

TASKDEF = json.loads((ROOT / "deploy" / "taskdef.json").read_text(encoding="utf-8"))
DECLARED = {"v1": None, "v2": ("1,2", "1"), "v3": ("1,2", "2")}


def taskdef(version: str, *, labels: bool = False, described: bool = False) -> dict:
    """deploy/taskdef.json declaring ``version``'s formats (v1 declares nothing: the defaults;
    ``labels`` repeats the declaration as Docker labels)."""
    task = copy.deepcopy(TASKDEF)
    app = task["containerDefinitions"][0]
    if DECLARED[version]:
        read, write = DECLARED[version]
        if labels:  # they repeat the environment: the app reads only that
            app["dockerLabels"] = {"points.formats.read": read, "points.format.write": write}
        app["environment"] += [
            {"name": "POINTS_FORMATS_READ", "value": read},
            {"name": "POINTS_FORMAT_WRITE", "value": write},
        ]
    if described:  # the shape of `aws ecs describe-task-definition`
        return {"taskDefinition": {**task, "family": "points-api", "revision": int(version[1])}}
    return task


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("running", "candidate", "status"),
    [
        ("v1", "v2", 0),
        ("v2", "v3", 0),
        ("v1", "v3", EXIT_ONE_WAY_DOOR),
        ("v3", "v2", 0),  # rollback after activation
        ("v3", "v1", EXIT_ONE_WAY_DOOR),  # rollback across the door
    ],
)
@pytest.mark.parametrize("shape", ["env", "labels", "described"])
def test_decisions(tmp_path, capsys, running: str, candidate: str, status: int, shape: str) -> None:
    options = {"labels": shape == "labels", "described": shape == "described"}
    args = [
        "--running",
        str(write(tmp_path, "running.json", taskdef(running, **options))),
        "--candidate",
        str(write(tmp_path, "candidate.json", taskdef(candidate, **options))),
    ]
    assert main(args) == status
    out, err = capsys.readouterr()
    line = out if status == 0 else err
    assert line.count("\n") == 1 and line.startswith("guard: ")
    assert ("one-way door" in line) is (status != 0)


def test_the_refusal_names_both_revisions_and_the_way_out(tmp_path, capsys) -> None:
    running = write(tmp_path, "r.json", taskdef("v1", described=True))
    candidate = write(tmp_path, "c.json", taskdef("v3", described=True))
    assert main(["--running", str(running), "--candidate", str(candidate)]) == 3
    assert capsys.readouterr().err == (
        "guard: one-way door: candidate points-api:3 writes ledger format 2, which running "
        "points-api:1 (the rollback target; reads 1, writes 1) cannot read; deploy the prepare "
        "version first (reads 1,2, writes 1)\n"
    )


def test_store_formats_refuse_a_rollback_the_declarations_allow(tmp_path) -> None:
    running = str(write(tmp_path, "r.json", taskdef("v2")))
    candidate = str(write(tmp_path, "c.json", taskdef("v1")))
    assert main(["--running", running, "--candidate", candidate]) == 0
    assert main(["--running", running, "--candidate", candidate, "--store-formats", "1,2"]) == 3


@pytest.mark.parametrize(
    ("store", "status"),
    [
        ("1", 0),
        ("1,2", 0),
        (" 2 , 1 ", 0),
        # a format of a later release in the store: no candidate of this build reads it, a
        # genuine one-way door (exit 3), not bad input
        ("3", 3),
        ("1,999", 3),
    ],
)
def test_store_formats_well_formed(tmp_path, capsys, store: str, status: int) -> None:
    running = str(write(tmp_path, "r.json", taskdef("v2")))
    candidate = str(write(tmp_path, "c.json", taskdef("v3")))
    assert main(["--running", running, "--candidate", candidate, "--store-formats", store]) == (
        status
    )
    out, err = capsys.readouterr()
    assert (out if status == 0 else err).count("\n") == 1


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("0", "--store-formats must be comma-separated ledger format numbers from 1 to 999"),
        ("000", "--store-formats must be comma-separated"),
        ("1,0", "--store-formats must be comma-separated"),
        ("-1", "--store-formats must be comma-separated"),
        ("", "--store-formats must be comma-separated"),
        (" ", "--store-formats must be comma-separated"),
        (",", "--store-formats must be comma-separated"),
        ("1,,2", "--store-formats must be comma-separated"),
        ("1.5", "--store-formats must be comma-separated"),
        ("1e0", "--store-formats must be comma-separated"),
        ("+1", "--store-formats must be comma-separated"),
        ("\u0661", "--store-formats must be comma-separated"),  # an Arabic-Indic digit one
        ("1000", "--store-formats must be comma-separated"),
        ("9" * 10_000, "--store-formats must be comma-separated"),
        ("1,1", "--store-formats names ledger format 1 twice"),
        ("2,1,2", "--store-formats names ledger format 2 twice"),
    ],
)
def test_bad_store_formats_are_one_line_and_exit_2(tmp_path, capsys, store, message) -> None:
    running = str(write(tmp_path, "r.json", taskdef("v2")))
    candidate = str(write(tmp_path, "c.json", taskdef("v3")))
    assert main(["--running", running, "--candidate", candidate, "--store-formats", store]) == 2
    err = capsys.readouterr().err
    assert err.startswith("guard: error: ") and err.count("\n") == 1
    assert message in err
    assert len(err) < 600


def _with_app(**changes) -> dict:
    task = taskdef("v2")
    task["containerDefinitions"][0].update(changes)
    return task


def _two_declaring() -> dict:
    task = taskdef("v2")
    task["containerDefinitions"][1]["environment"] = [{"name": "POINTS_FORMAT_WRITE", "value": "1"}]
    return task


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("{not json", [], "is not JSON"),
        ("\udcff", [], "is not UTF-8"),
        ([], [], "is not a task definition"),
        ({"family": "x"}, [], "is not a task definition (no containerDefinitions)"),
        ("[" * 100_000 + "]" * 100_000, [], ""),
        (_with_app(environment={"a": 1}), [], "environment must be a list"),
        (
            _with_app(dockerLabels={"points.format.write": "2"}),
            [],
            "POINTS_FORMAT_WRITE='1' and label points.format.write='2' disagree",
        ),
        (
            _with_app(environment=[{"name": "POINTS_FORMATS_READ", "value": "${Formats}"}]),
            [],
            "POINTS_FORMATS_READ must be comma-separated ledger format numbers",
        ),
        (
            _with_app(environment=[{"name": "POINTS_FORMAT_WRITE", "value": "2"}]),
            [],
            "POINTS_FORMAT_WRITE=2 must be one of POINTS_FORMATS_READ",
        ),
        (_two_declaring(), [], "all declare ledger formats; name the app's with --container"),
        (taskdef("v2"), ["--container", "web"], "no container named 'web'"),
        ({"containerDefinitions": []}, [], "is not a task definition (no container in it)"),
        (
            _with_app(
                environment=[
                    {"name": "POINTS_FORMATS_READ", "value": "1,2"},
                    {"name": "POINTS_FORMAT_WRITE", "value": "1"},
                    {"name": "POINTS_FORMAT_WRITE", "value": "2"},
                ]
            ),
            [],
            "POINTS_FORMAT_WRITE is set twice, to '1' and '2'",
        ),
        (taskdef("v2"), ["--store-formats", "one"], "--store-formats must be comma-separated"),
        # A label alone describes formats the app never sees (it reads only its environment):
        # trusting "reads 1,2" on an app that reads 1 would call v1 -> v3 safe.
        (
            {
                "containerDefinitions": [
                    {"name": "app", "dockerLabels": {"points.formats.read": "1,2"}}
                ]
            },
            [],
            "POINTS_FORMATS_READ unset (default '1') and label points.formats.read='1,2' disagree",
        ),
        # Values the guard cannot see: what the app runs with is not in the task definition.
        (
            _with_app(secrets=[{"name": "POINTS_FORMAT_WRITE", "valueFrom": "arn:aws:ssm:x"}]),
            [],
            "POINTS_FORMAT_WRITE comes from secrets, which the guard cannot read",
        ),
        # ECS takes only a list; read as "no secrets", a format variable in it would be unseen
        (
            _with_app(secrets={"POINTS_FORMAT_WRITE": "arn:aws:ssm:x"}),
            [],
            "secrets must be a list",
        ),
        (
            {
                "containerDefinitions": [
                    {"name": "app", "environmentFiles": [{"type": "s3", "value": "arn:x"}]}
                ]
            },
            [],
            "POINTS_FORMATS_READ is not in the environment and the container has environmentFiles",
        ),
        (
            _with_app(environment=[{"name": "POINTS_FORMAT_WRITE", "value": "9" * 10_000}]),
            [],
            "POINTS_FORMAT_WRITE must be a ledger format number",
        ),
        (
            _with_app(
                environment=[{"name": "POINTS_FORMAT_WRITE", "value": "1"}] * 2
                + [{"name": "POINTS_FORMAT_WRITE", "value": "x" * 10_000}]
            ),
            [],
            "POINTS_FORMAT_WRITE is set twice",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, extra, message) -> None:
    path = tmp_path / "candidate.json"
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8", "surrogateescape"))
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    running = write(tmp_path, "running.json", taskdef("v1"))
    assert main(["--running", str(running), "--candidate", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("guard: error: ") and err.count("\n") == 1
    assert message in err
    assert len(err) < 600  # a huge value is cut, not echoed whole


@pytest.mark.parametrize(
    ("candidate", "status"),
    [
        # labels that agree with what the app runs with (here the defaults) are fine
        ({"name": "app", "dockerLabels": {"points.format.write": "1"}}, 0),
        # an environment variable entry whose name is not a string is not a declaration
        ({"name": "app", "environment": [{"name": ["POINTS_FORMAT_WRITE"], "value": "2"}]}, 0),
        # a sidecar's environment files do not hide the app's declared formats
        (None, EXIT_ONE_WAY_DOOR),
    ],
)
def test_odd_but_judgeable_containers(tmp_path, capsys, candidate, status) -> None:
    if candidate is None:
        task = taskdef("v3")
        task["containerDefinitions"][1]["environmentFiles"] = [{"type": "s3", "value": "arn:x"}]
    else:
        task = {"family": "f", "containerDefinitions": [candidate]}
    running = write(tmp_path, "running.json", taskdef("v1"))
    path = write(tmp_path, "candidate.json", task)
    assert main(["--running", str(running), "--candidate", str(path)]) == status
    out, err = capsys.readouterr()
    assert (out + err).count("\n") == 1 and "Traceback" not in err


def test_a_family_with_a_line_break_stays_on_one_line(tmp_path, capsys) -> None:
    candidate = {**taskdef("v3"), "family": "x\n\x1b[31m", "revision": 2}
    running = write(tmp_path, "running.json", taskdef("v1"))
    path = write(tmp_path, "candidate.json", candidate)
    assert main(["--running", str(running), "--candidate", str(path)]) == EXIT_ONE_WAY_DOOR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err


def test_declarations_that_mean_the_same_agree(tmp_path, capsys) -> None:
    # "1,2" and "2,1" are the same formats: neither a disagreement nor a duplicate
    candidate = _with_app(
        environment=[
            {"name": "POINTS_FORMATS_READ", "value": "1,2"},
            {"name": "POINTS_FORMATS_READ", "value": " 2,1"},
            {"name": "POINTS_FORMAT_WRITE", "value": "1"},
        ],
        dockerLabels={"points.formats.read": "2, 1", "points.format.write": " 1 "},
    )
    running = write(tmp_path, "running.json", taskdef("v1"))
    path = write(tmp_path, "candidate.json", candidate)
    assert main(["--running", str(running), "--candidate", str(path)]) == 0, capsys.readouterr()


@pytest.mark.parametrize("path", ["missing.json", "."])
def test_unreadable_files(tmp_path, capsys, path: str) -> None:
    running = write(tmp_path, "running.json", taskdef("v1"))
    assert main(["--running", str(running), "--candidate", str(tmp_path / path)]) == 2
    assert capsys.readouterr().err.startswith("guard: error: cannot read")


def test_an_endless_or_huge_input_is_refused_not_read_to_the_end(tmp_path, capsys) -> None:
    """``--candidate /dev/zero`` read until memory ran out (found by review r35)."""
    running = write(tmp_path, "running.json", taskdef("v1"))
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps(taskdef("v1")) + " " * (1024 * 1024), encoding="utf-8")
    assert main(["--running", str(running), "--candidate", str(huge)]) == 2
    assert "larger than 1024 KiB" in capsys.readouterr().err
    if Path("/dev/zero").exists():
        args = ["--running", str(running), "--candidate", "/dev/zero"]
        done = subprocess.run(
            [sys.executable, "-m", "points", "guard", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and "larger than" in done.stderr, done.stderr


def test_the_command_line(tmp_path) -> None:
    running = write(tmp_path, "r.json", taskdef("v1"))
    candidate = write(tmp_path, "c.json", taskdef("v3"))
    run = subprocess.run(
        [sys.executable, "-m", "points", "guard", "--running", running, "--candidate", candidate],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert run.returncode == 3 and run.stdout == ""
    assert run.stderr.startswith("guard: one-way door: candidate ")
    usage = subprocess.run(
        [sys.executable, "-m", "points", "nope"], capture_output=True, text=True, timeout=60
    )
    assert usage.returncode == 2
    assert usage.stderr == "points: error: expected a command (guard), got 'nope'\n"
    missing = subprocess.run(
        [sys.executable, "-m", "points", "guard"], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_the_guard_needs_only_the_standard_library(tmp_path) -> None:
    # the release build runs it with the image's python3 before anything is installed: -S
    # leaves site-packages (Flask, boto3, ...) out of sys.path, so an import of one fails here
    running = write(tmp_path, "r.json", taskdef("v1"))
    candidate = write(tmp_path, "c.json", taskdef("v3"))
    probe = (
        "import json, os, runpy, sys\n"
        "sys.argv = ['points', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('points', run_name='__main__')\n"
        "finally:\n"
        "    names = sorted({m.split('.')[0] for m in sys.modules})\n"
        "    json.dump(names, open(os.environ['MODULES_OUT'], 'w'))\n"
    )
    args = ["guard", "--running", str(running), "--candidate", str(candidate)]
    run = subprocess.run(
        [sys.executable, "-S", "-c", probe, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "MODULES_OUT": str(tmp_path / "modules.json")},
        timeout=60,
    )
    assert run.returncode == EXIT_ONE_WAY_DOOR, run.stderr
    loaded = set(json.loads((tmp_path / "modules.json").read_text(encoding="utf-8")))
    assert loaded - set(sys.stdlib_module_names) - {"points", "__main__"} == set()
