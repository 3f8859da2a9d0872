"""`make bench`: run every ``benchmarks/*_bench.py`` module's ``main()`` in turn (or those named).

``python -m benchmarks [NAME ...] [OPTION ...]``; options (read by the benchmarks that know them,
from ``sys.argv``): ``--quick`` (shorter runs: ``gunicorn_bench``, ``telemetry_bench``),
``--no-instructions`` (``gunicorn_bench`` without its callgrind count).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

OPTIONS = ("--quick", "--no-instructions")


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    bad = [a for a in args if a.startswith("-") and a not in OPTIONS]
    if bad:
        print(f"benchmarks: unknown option {bad[0]!r}; have {list(OPTIONS)}", file=sys.stderr)
        return 2
    wanted = {a for a in args if not a.startswith("-")}
    names = sorted(p.stem for p in Path(__file__).parent.glob("*_bench.py"))
    unknown = wanted - set(names) - {n.removesuffix("_bench") for n in names}
    if unknown:
        print(
            f"benchmarks: unknown benchmark {sorted(unknown)[0]!r}; have {names}", file=sys.stderr
        )
        return 2
    for name in names:
        if wanted and name not in wanted and name.removesuffix("_bench") not in wanted:
            continue
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").main()
        print(f"--- {name}: {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
