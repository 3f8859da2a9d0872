"""The repository holds nothing tied to one machine: a fresh clone works anywhere."""

from __future__ import annotations

import subprocess

from tests.support.processes import ROOT


def _tracked_symlinks() -> dict[str, str]:
    """Tracked symbolic links: path -> target (git stores the target as the blob)."""
    out = subprocess.run(
        ["git", "ls-files", "-s", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    links = {}
    for entry in filter(None, out.split("\0")):
        meta, path = entry.split("\t", 1)
        mode, blob, _stage = meta.split()
        if mode == "120000":
            target = subprocess.run(
                ["git", "cat-file", "blob", blob], cwd=ROOT, capture_output=True, timeout=60
            ).stdout.decode()
            links[path] = target
    return links


def test_no_tracked_symlink_points_at_a_machine_path_or_the_venv() -> None:
    # a committed `.venv -> <a checkout's .venv>` made `make install` fail in every fresh clone
    # ("Too many levels of symbolic links"); `.venv/` in .gitignore matches only a directory
    bad = {
        path: target
        for path, target in _tracked_symlinks().items()
        if target.startswith("/") or path.split("/")[0] == ".venv"
    }
    assert bad == {}
