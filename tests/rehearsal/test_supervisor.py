"""The supervisor stops whole process groups, reads output lines, and survives bad handlers."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from rehearsal import supervisor
from rehearsal.supervisor import Interrupted, Supervisor, group_pids, signals_raise


def test_stop_all_kills_the_whole_group_even_grandchildren(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    # A parent that starts a grandchild in the same group, like gunicorn's master and workers.
    child = sup.start("tree", ["sh", "-c", "sleep 300 & sleep 300"])
    deadline = time.monotonic() + 10
    while len(group_pids(child.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_pids(child.pid)) >= 2
    sup.stop_all(timeout_s=5)
    assert group_pids(child.pid) == []
    assert not child.alive()


def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(300)"
    lines: list[str] = []
    child = sup.start(
        "stubborn", [sys.executable, "-c", code], on_line=lambda _n, line: lines.append(line)
    )
    deadline = time.monotonic() + 10
    while not lines and time.monotonic() < deadline:
        time.sleep(0.05)
    sup.stop("stubborn", timeout_s=0.5)
    assert group_pids(child.pid) == []
    assert lines == ["up"]


def test_output_lines_reach_the_handler_and_a_failing_handler_does_not_stop_reading(
    tmp_path: Path,
) -> None:
    sup = Supervisor(tmp_path)
    seen: list[tuple[str, str]] = []

    def handler(name: str, line: str) -> None:
        if line == "boom":
            raise RuntimeError("handler bug")
        seen.append((name, line))

    child = sup.start(
        "talker", ["sh", "-c", "echo one; echo boom; echo two; echo err >&2"], on_line=handler
    )
    child.proc.wait(10)
    sup.stop("talker", timeout_s=5)  # waits for the reader thread too
    assert seen == [("talker", "one"), ("talker", "two")]
    assert (tmp_path / "talker.stderr.log").read_text() == "err\n"


def test_ctrl_c_while_a_child_starts_leaves_it_registered_so_it_is_stopped(
    tmp_path: Path, monkeypatch
) -> None:
    real_popen = supervisor.subprocess.Popen

    def popen_then_ctrl_c(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # arrives before start() has recorded the child
        time.sleep(0.2)
        return proc

    monkeypatch.setattr(supervisor.subprocess, "Popen", popen_then_ctrl_c)
    sup = Supervisor(tmp_path)
    with pytest.raises(Interrupted, match="SIGINT"), signals_raise():
        sup.start("late", ["sleep", "300"])
    assert "late" in sup.children
    pid = sup.children["late"].pid
    sup.stop_all(timeout_s=5)
    assert group_pids(pid) == []
