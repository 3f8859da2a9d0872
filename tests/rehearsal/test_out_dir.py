"""The rehearsal's output directory: a run cleans it first, so it must never clean someone else's
files (``--out ""`` is the current directory; ``--out /var/log`` holds the system's logs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rehearsal.model import ROOT, Options, not_a_run_directory
from rehearsal.runner import run


def _rehearsal(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rehearsal", *args], cwd=cwd, capture_output=True, text=True,
        timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def _foreign(tmp_path: Path) -> Path:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "important.log").write_text("keep me\n")
    (mine / "report.html").write_text("<p>my report</p>\n")
    return mine


@pytest.mark.parametrize("out", ["", "   "])
def test_an_empty_out_exits_2_and_writes_nothing_in_the_current_directory(
    out: str, tmp_path: Path
) -> None:
    proc = _rehearsal("--scenario", "healthy", "--out", out, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [[], ["pipeline"], ["compare"]])
def test_a_directory_of_other_files_is_refused_and_kept(command: list[str], tmp_path: Path) -> None:
    mine = _foreign(tmp_path)
    if command == ["compare"]:
        # compare runs into subdirectories of --out: its own --out is only refused when empty
        proc = _rehearsal("compare", "--out", "", cwd=tmp_path)
    else:
        proc = _rehearsal(*command, "--scenario", "healthy", "--out", str(mine), cwd=tmp_path)
        assert "important.log" in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (mine / "important.log").read_text() == "keep me\n"
    assert sorted(p.name for p in mine.iterdir()) == ["important.log", "report.html"]


@pytest.mark.parametrize("scenario", ["healthy", "two-phase"])
def test_the_library_refuses_to_clean_a_directory_of_other_files(
    scenario: str, tmp_path: Path
) -> None:
    mine = _foreign(tmp_path)
    (mine / "points.db").write_text("not ours")
    with pytest.raises(ValueError, match="no rehearsal output"):
        run(Options(scenario=scenario, out=mine, progress=False))
    assert sorted(p.name for p in mine.iterdir()) == ["important.log", "points.db", "report.html"]


def test_a_previous_run_or_an_empty_or_new_directory_may_be_cleaned(tmp_path: Path) -> None:
    assert not_a_run_directory(tmp_path / "new") is None
    assert not_a_run_directory(tmp_path) is None  # empty
    old = _foreign(tmp_path)
    assert "important.log, report.html" in (not_a_run_directory(old) or "")
    (old / "run.json").write_text("{}")
    assert not_a_run_directory(old) is None
    two_phase = tmp_path / "two-phase"
    (two_phase / "1-prepare").mkdir(parents=True)
    (two_phase / "points.db").write_text("")
    (two_phase / "1-prepare" / "alarms.json").write_text("{}")  # a stage's own output
    assert not_a_run_directory(two_phase) is None


#: Another run holding its output directory, as rehearsal.files.claim does: flock on it.
_HOLD = """
import fcntl, os, sys, time
fcntl.flock(os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY), fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(
    "command",
    [
        ["--scenario", "regression", "--app", "nosuch.module:app"],  # would start, then fail
        ["--target", "worker", "--scenario", "regression"],
        ["pipeline", "--scenario", "regression"],
        ["compare", "--configs", "ECSAllAtOnce", "--detection", "judge"],
    ],
)
def test_a_directory_another_run_is_using_is_refused_and_kept(
    command: list[str], tmp_path: Path
) -> None:
    # A second run into the directory of a running one would delete its store and files and
    # write its own among them; it is refused before anything starts.
    out = tmp_path / "busy"
    out.mkdir()
    (out / "run.json").write_text("{}\n")
    (out / "points.db").write_text("the running rehearsal's store\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        proc = _rehearsal(*command, "--out", str(out), cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "another rehearsal is running into it" in proc.stderr
    assert (out / "points.db").read_text() == "the running rehearsal's store\n"
    assert sorted(p.name for p in out.iterdir()) == ["points.db", "run.json"]
    # once the other run has ended (its lock goes with its process), the directory is usable
    from rehearsal.files import claim

    assert claim(out) is None
