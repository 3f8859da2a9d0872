"""Writing a run's files so that a reader never sees half of one, and one run at a time in a
directory."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

#: The output directories this process holds (see :func:`claim`): path -> open descriptor.
_claimed: dict[str, int] = {}


def claim(out: Path) -> str | None:
    """Lock the existing directory ``out`` for this process until it exits (``flock`` on the
    directory itself: no file added, released by the kernel even after ``kill -9``; the
    descriptor is not inherited by children). ``None`` once held, else why it cannot be.

    A second run into a directory a run is using would delete that run's files, its store
    included, and write its own among them: the first run's data safety check would then
    read the second's store, and both runs' outputs would be a mix. It is refused instead."""
    key = os.path.realpath(out)
    if key in _claimed:
        return None
    try:
        fd = os.open(key, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        return f"cannot open it ({exc.strerror or exc})"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return (
            "another rehearsal is running into it; wait for it to end or choose another directory"
        )
    _claimed[key] = fd
    return None


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same directory and
    ``os.replace``: an interrupted write (Ctrl-C, a full disk, text that cannot be encoded)
    leaves the previous file, or none, never a truncated one.

    Raises:
        OSError, UnicodeEncodeError: from the write; the temporary file is removed.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
