"""A run's files are written whole or not at all (rehearsal.files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rehearsal.files import write_atomic


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("old")
    write_atomic(path, "new ü")
    assert path.read_text(encoding="utf-8") == "new ü"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


@pytest.mark.parametrize("existed", [True, False])
def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary(
    tmp_path: Path, existed: bool
) -> None:
    path = tmp_path / "result.json"
    if existed:
        path.write_text("previous")
    # a lone surrogate cannot be encoded: the write fails after the text before it was written
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "x" * 100_000 + "\udc80")
    assert (path.read_text() if path.exists() else None) == ("previous" if existed else None)
    assert [p.name for p in tmp_path.iterdir()] == (["result.json"] if existed else [])
