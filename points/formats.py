"""Ledger record formats: which ones a version reads and writes, and the one-way-door rule.

The ledger changed how it stores amounts. Format 1 stores ``points`` and ``balance`` in whole
points; format 2 stores them in *milli-points* (thousandths of a point), the representation
fractional accrual needs (a rate of 0.015 on 150 JPY is 2.25 points). The points rule itself is
unchanged in this release (amounts are still whole points, so format 2 values are multiples of
1000): the representation ships first, the feature after it, the usual expand/contract order.

A version that knows only format 1 would read a format-2 balance of 5 points (5000) as 5000
points and let the user redeem them: format 2 is a **one-way door** for it. So every record and
every balance carries its format, the store keeps a marker of the formats ever written to it,
and a version refuses (:class:`~points.storage.base.FormatUnsupported`) to read or write a
store or a record in a format it does not read; nothing is skipped, nothing is rewritten.

Each version declares what it reads and what it writes (:class:`Formats`, from
``POINTS_FORMATS_READ`` and ``POINTS_FORMAT_WRITE``); the three releases of the two-phase
change are the :data:`PRESETS`:

* ``v1`` reads 1, writes 1 (the version before the change; the default);
* ``v2`` *prepare*: reads 1 and 2, still writes 1 (safe to roll back to v1);
* ``v3`` *activate*: reads 1 and 2, writes 2 (may roll back to v2, never to v1).

:func:`check_transition` is the rule the rehearsal and ``python -m points guard`` apply before
any traffic shifts: two versions that may both serve one store (the running one, which is the
rollback target, and the candidate) must each read what the other writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from points.environment_variables import POINTS_FORMAT_WRITE, POINTS_FORMATS_READ
from points.settings import ConfigError

#: Whole points (the original representation).
FORMAT_POINTS = 1
#: Milli-points: ``points`` and ``balance`` in thousandths of a point.
FORMAT_MILLI_POINTS = 2
#: The formats this build knows how to decode.
KNOWN_FORMATS: tuple[int, ...] = (FORMAT_POINTS, FORMAT_MILLI_POINTS)
_SCALE = {FORMAT_POINTS: 1, FORMAT_MILLI_POINTS: 1000}


def _list(formats: Iterable[int]) -> str:
    return ",".join(str(f) for f in sorted(formats))


@dataclass(frozen=True, slots=True)
class Formats:
    """What one app version reads (``read``) and writes (``write``); ``write`` is in ``read``.

    Raises :class:`~points.settings.ConfigError` for a format this build does not know or a
    write format the version would not itself read.
    """

    read: frozenset[int]
    write: int

    def __post_init__(self) -> None:
        unknown = sorted(set(self.read) - set(KNOWN_FORMATS))
        if unknown or self.write not in KNOWN_FORMATS:
            # name the variable that holds it, as every ConfigError does
            name, bad = (
                (POINTS_FORMATS_READ, unknown[0]) if unknown else (POINTS_FORMAT_WRITE, self.write)
            )
            raise ConfigError(
                f"{name}: ledger format {bad} is unknown to this build "
                f"(it knows {_list(KNOWN_FORMATS)})"
            )
        if self.write not in self.read:
            raise ConfigError(
                f"{POINTS_FORMAT_WRITE}={self.write} must be one of {POINTS_FORMATS_READ} "
                f"({_list(self.read)}): a version must read what it writes"
            )

    @classmethod
    def of(cls, read: Iterable[int], write: int) -> Formats:
        return cls(read=frozenset(read), write=write)

    def describe(self) -> str:
        """``reads 1,2, writes 1``."""
        return f"reads {_list(self.read)}, writes {self.write}"

    def to_dict(self) -> dict[str, object]:
        return {"read": sorted(self.read), "write": self.write}

    def to_env(self) -> dict[str, str]:
        """The variables that declare these formats (for a child process or a task definition)."""
        return {POINTS_FORMATS_READ: _list(self.read), POINTS_FORMAT_WRITE: str(self.write)}


#: The releases of the two-phase change (see the module docstring).
PRESETS: dict[str, Formats] = {
    "v1": Formats.of({1}, 1),
    "v2": Formats.of({1, 2}, 1),
    "v3": Formats.of({1, 2}, 2),
}
DEFAULT_FORMATS = PRESETS["v1"]


def preset(name: str) -> Formats:
    """The formats of a named release (``v1``, ``v2``, ``v3``); ConfigError for another name."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown version {name!r}: expected one of {', '.join(sorted(PRESETS))}"
        ) from None


def _number(part: str) -> int | None:
    """A ledger format number: 1 to 999 in ASCII digits (formats are numbered from 1); else
    None."""
    part = part.strip()
    number = int(part) if part.isascii() and part.isdigit() and len(part) <= 3 else 0
    return number if number >= 1 else None


def parse_format_list(text: str, name: str, *, once: bool = False) -> frozenset[int]:
    """Comma-separated format numbers (``1,2``), each 1 to 999; ConfigError naming ``name`` and
    the text (empty, ``0``, ``-1``, ``1.5``, ``1,,2``; ``1,1`` too when ``once``)."""
    parts = [_number(part) for part in text.split(",")]
    if not text.strip() or None in parts:
        raise ConfigError(
            f"{name} must be comma-separated ledger format numbers from 1 to 999 (e.g. 1,2); "
            f"got {text!r:.80}"
        )
    twice = sorted({p for p in parts if parts.count(p) > 1 and p is not None})
    if once and twice:
        raise ConfigError(f"{name} names ledger format {twice[0]} twice; got {text!r:.80}")
    return frozenset(p for p in parts if p is not None)


def formats_from(env: Mapping[str, str]) -> Formats:
    """The declared formats: ``POINTS_FORMATS_READ`` (comma-separated, default ``1``) and
    ``POINTS_FORMAT_WRITE`` (default ``1``). Raises ConfigError naming the variable and value."""
    read_text = (env.get(POINTS_FORMATS_READ) or "").strip()
    write_text = (env.get(POINTS_FORMAT_WRITE) or "").strip()
    read = parse_format_list(read_text, POINTS_FORMATS_READ) if read_text else DEFAULT_FORMATS.read
    write = DEFAULT_FORMATS.write
    if write_text:
        number = _number(write_text)
        if number is None:
            raise ConfigError(
                f"{POINTS_FORMAT_WRITE} must be a ledger format number from 1 to 999 (e.g. 1); "
                f"got {env[POINTS_FORMAT_WRITE]!r:.80}"
            )
        write = number
    return Formats.of(read, write)


# -- stored values -------------------------------------------------------------------------------


def encode_points(points: int, fmt: int) -> int:
    """The stored integer for ``points`` whole points in format ``fmt``."""
    return points * _SCALE[fmt]


def decode_points(stored: int, fmt: int) -> int | None:
    """Whole points from a stored integer in format ``fmt``; None when it is not a whole number
    of points (fractional accrual, which this build cannot represent) or ``fmt`` is unknown."""
    scale = _SCALE.get(fmt)
    if scale is None or stored % scale:
        return None
    return stored // scale


# -- the one-way-door rule -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of :func:`check_transition`: ``ok``, and one line saying why."""

    ok: bool
    message: str


def check_transition(
    running: Formats,
    candidate: Formats,
    *,
    running_name: str = "the running version",
    candidate_name: str = "the candidate",
    store_formats: Iterable[int] = (),
) -> Decision:
    """May ``candidate`` replace ``running`` with ``running`` as the rollback target?

    During a blue/green deployment both versions serve one store, and after a rollback the
    running version serves whatever the candidate wrote, so each must read what the other
    writes. The same rule judges a rollback (``running`` = the version in service, ``candidate``
    = the rollback target): v1->v2, v2->v3 and the rollback v3->v2 pass; v1->v3 and v3->v1 are
    one-way doors. ``store_formats`` (the store's marker, when known) must all be readable by
    the candidate too.
    """
    if candidate.write not in running.read:
        return Decision(
            False,
            f"one-way door: {candidate_name} writes ledger format {candidate.write}, which "
            f"{running_name} (the rollback target; {running.describe()}) cannot read; deploy "
            f"the prepare version first (reads {_list(running.read | {candidate.write})}, "
            f"writes {running.write})",
        )
    if running.write not in candidate.read:
        return Decision(
            False,
            f"one-way door: {running_name} writes ledger format {running.write}, which "
            f"{candidate_name} ({candidate.describe()}) cannot read; roll back to a version "
            f"that reads {running.write} (the prepare version) or roll forward",
        )
    unreadable = sorted(set(store_formats) - candidate.read)
    if unreadable:
        return Decision(
            False,
            f"one-way door: the store holds ledger format {_list(unreadable)}, which "
            f"{candidate_name} ({candidate.describe()}) cannot read; roll forward instead",
        )
    return Decision(
        True,
        f"safe: {running_name} ({running.describe()}) and {candidate_name} "
        f"({candidate.describe()}) each read what the other writes",
    )
