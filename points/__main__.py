"""``python -m points <command>``: the ledger's command-line tools.

* ``guard`` - refuse a one-way door between two ECS task definitions (:mod:`points.guard`).

Bad arguments: one line on stderr, exit status 2.
"""

from __future__ import annotations

import sys

COMMANDS = ("guard",)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        print("usage: python -m points guard --running FILE --candidate FILE [...]  (guard --help)")
        return 0
    if not args or args[0] not in COMMANDS:
        got = repr(args[0]) if args else "nothing"
        print(
            f"points: error: expected a command ({', '.join(COMMANDS)}), got {got}", file=sys.stderr
        )
        return 2
    from points.guard import main as guard

    return guard(args[1:])


if __name__ == "__main__":
    sys.exit(main())
