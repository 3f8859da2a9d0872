"""Argument types of the rehearsal's command lines: every number within a documented range.

A value outside its range is one line naming the option (argparse adds the name), exit 2: an
unbounded option let a run wait practically forever (``--bake 1e300``), finish at once with
nothing measured (``--time-scale 1e-300``), or ask for more load than any machine makes.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from rehearsal.schedule import MAX_BAKE_S

#: ``--time-scale``: from a thousandth (a 10-minute linear deployment in 0.6 s) to a thousand
#: times the configuration's real durations.
TIME_SCALE_RANGE = (0.001, 1000.0)
#: ``--rps``: the load the listener is driven with; far above what one machine serves.
MAX_RPS = 10_000.0
#: SQS's longest MessageRetentionPeriod (14 days): an older message no longer exists, so a delay
#: objective above it could never be missed.
MAX_DELAY_OBJECTIVE_S = 14 * 86400.0


#: gunicorn's app reference: ``MODULE[:NAME]``, NAME a variable or a factory call, ``f(...)``.
_WSGI_APP = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*(?:\([^\n]*\))?)?")


def wsgi_app(text: str) -> str:
    """A WSGI app reference as gunicorn takes it (``sample_api.wsgi:app``, ``pkg.mod:create()``).

    Anything else is refused: the value is handed to gunicorn's command line, where ``--daemon``
    or ``--bind=0.0.0.0:80`` would be an option, not an app."""
    if not _WSGI_APP.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"expected MODULE:NAME (a dotted module and a variable or factory call in it), "
            f"got {text[:80]!r}{'...' if len(text) > 80 else ''}"
        )
    return text


#: ``--max-minutes``: a week; a run or a matrix is meant to finish within a working session or a
#: night.
MAX_MINUTES = 7 * 1440.0
#: ``--max-minutes`` when not given (a run, a pipeline, a comparison)
DEFAULT_MAX_MINUTES = 60.0


class Parser(argparse.ArgumentParser):
    """The rehearsal's command lines: an error is one line, ``<label>: error: ... (see --help)``
    with exit status 2, not argparse's usage block; no abbreviated options (``--min`` for
    ``--min-healthy-percent``: a typo or a later option must not silently change the meaning)."""

    def __init__(self, *args: Any, label: str = "rehearsal", **kwargs: Any) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})
        self.label = label

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.label}: error: {message} (see --help)\n")


def number(low: float, high: float = math.inf, *, above: bool = False) -> Callable[[str], float]:
    """A finite number in ``[low, high]`` (``(low, high]`` when ``above``)."""
    low_text = f"> {low:g}" if above else f">= {low:g}"
    wanted = f"a number {low_text}" + (f" and <= {high:g}" if high < math.inf else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = (value > low if above else value >= low) and value <= high
        if not (ok and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    return parse


def integer(low: int, high: int) -> Callable[[str], int]:
    """A whole number in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer {low}-{high}, got {text!r}")
        return value

    return parse


def out_dir(text: str) -> Path:
    """An output directory: not empty (``--out ""`` is the current directory, where a run would
    clean and write its files among the user's own)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a directory, got {text!r}")
    return Path(text)


#: Shared by every rehearsal command line.
time_scale = number(*TIME_SCALE_RANGE)
bake = number(0.0, MAX_BAKE_S)
rps = number(0.0, MAX_RPS, above=True)
