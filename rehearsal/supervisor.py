"""Start child processes in their own process groups, read their output, and always stop them.

Every child runs in a new session (its own process group), so stopping it signals the whole group
(gunicorn's master and its workers, Locust). On Linux each child also gets ``PR_SET_PDEATHSIG``:
should the rehearsal itself be killed outright, the kernel sends the child SIGTERM.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LineHandler = Callable[[str, str], None]  # (child name, line without the newline)


_PR_SET_PDEATHSIG = 1
try:  # resolved here, in the parent: the child must not load libraries between fork and exec
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _prctl = None


def _pdeathsig() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


@dataclass
class Child:
    """A running child: its process, its name and the threads reading its output."""

    name: str
    proc: subprocess.Popen[bytes]
    readers: list[threading.Thread] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


def group_pids(pgid: int) -> list[int]:
    """PIDs of live processes whose process group is ``pgid`` (read from ``/proc``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # Fields after the command name (which may contain spaces) start after the last ')'.
        rest = stat[stat.rfind(b")") + 2 :].split()
        if len(rest) > 2 and int(rest[2]) == pgid and rest[0] != b"Z":
            found.append(int(entry))
    return found


class Supervisor:
    """Owns every child process of a rehearsal; :meth:`stop_all` leaves none behind."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}
        self._lock = threading.Lock()

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        on_line: LineHandler | None = None,
    ) -> Child:
        """Start ``args``; stdout lines go to ``on_line`` (or a log file), stderr to a log file."""
        if name in self.children and self.children[name].alive():
            raise RuntimeError(f"child {name!r} is already running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stderr_log = open(self.log_dir / f"{name}.stderr.log", "ab")  # noqa: SIM115 - owned by the reader
        # A Ctrl-C between the fork and the registration below would leave a child nobody stops.
        with _signals_deferred():
            proc = subprocess.Popen(
                list(args),
                env={**os.environ, **(env or {})},
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr_log,
                start_new_session=True,
                preexec_fn=_pdeathsig if _prctl is not None else None,
            )
            child = Child(name, proc)
            with self._lock:
                self.children[name] = child
        stderr_log.close()  # the child holds its own descriptor
        assert proc.stdout is not None
        reader = threading.Thread(
            target=self._read,
            args=(name, proc.stdout, on_line),
            name=f"{name}-stdout",
            daemon=True,
        )
        reader.start()
        child.readers.append(reader)
        return child

    def _read(self, name: str, stream: IO[bytes], on_line: LineHandler | None) -> None:
        log = None if on_line else open(self.log_dir / f"{name}.stdout.log", "ab")  # noqa: SIM115
        try:
            for raw in stream:
                if on_line is None:
                    assert log is not None
                    log.write(raw)
                    continue
                with contextlib.suppress(Exception):  # a handler bug must not stop the reading
                    on_line(name, raw.decode("utf-8", "replace").rstrip("\r\n"))
        finally:
            stream.close()
            if log is not None:
                log.close()

    def stop(
        self, name: str, timeout_s: float = 10.0, first: signal.Signals = signal.SIGTERM
    ) -> int | None:
        """Signal ``name``'s process group (``first``, SIGTERM by default), SIGKILL it after
        ``timeout_s``; wait for its output readers."""
        child = self.children.get(name)
        if child is None:
            return None
        proc = child.proc
        pgid = proc.pid
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, first)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                proc.wait(5)
        # Workers of a master that exited first: make sure nothing of the group lingers.
        deadline = time.monotonic() + 5
        while group_pids(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in group_pids(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for reader in child.readers:
            reader.join(5)
        return proc.returncode

    def stop_all(self, timeout_s: float = 10.0) -> None:
        """Stop every child (SIGTERM to all groups at once, then wait, then SIGKILL)."""
        with self._lock:
            children = list(self.children.values())
        for child in children:
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            self.stop(child.name, timeout_s)

    def pgids(self) -> dict[str, int]:
        """Process group id (= the child's pid) of each child started so far."""
        with self._lock:
            return {name: child.pid for name, child in self.children.items()}


class Interrupted(Exception):
    """SIGTERM (or SIGINT) asked the rehearsal to stop."""


#: Signal handlers run in the main thread only, which is also the only one starting children.
_deferral: dict[str, object] = {"depth": 0, "pending": None}


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold back :class:`Interrupted` until the block is done; then raise it if a signal came."""
    _deferral["depth"] = int(_deferral["depth"]) + 1  # type: ignore[call-overload]
    try:
        yield
    finally:
        _deferral["depth"] = int(_deferral["depth"]) - 1  # type: ignore[call-overload]
    pending = _deferral["pending"]
    if pending is not None and _deferral["depth"] == 0:
        _deferral["pending"] = None
        raise Interrupted(str(pending))


@contextlib.contextmanager
def signals_raise() -> object:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` in the main thread, so ``finally`` runs."""

    def handler(signum: int, _frame: object) -> None:
        if _deferral["depth"]:
            _deferral["pending"] = signal.Signals(signum).name
            return
        raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
