"""``make bench``: run every ``benchmarks/bench_*.py`` (or those named) and update BENCHMARKS.md.

Each benchmark module has ``main(argv: list[str]) -> None`` and writes its own section.
``python -m benchmarks.run ingest models`` runs only those; ``--quick`` asks each for a small size;
options after the names go to each benchmark (``python -m benchmarks.run features --only snapshots``).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # names first, then options passed to each benchmark as given (``--only snapshots``)
    first_flag = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, flags = argv[:first_flag], argv[first_flag:]
    found = sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))
    for name in names or found:
        if name not in found:
            print(f"unknown benchmark {name!r}; have: {', '.join(found)}", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        importlib.import_module(f"benchmarks.bench_{name}").main(flags)
        print(f"== {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
