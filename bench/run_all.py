"""Run every benchmark in turn with its defaults; each rewrites its section of
docs/benchmarks.md. About 20 minutes on two CPU cores.

    .venv/bin/python -m bench.run_all                 # all of them
    .venv/bin/python -m bench.run_all views generation   # some, by short name
"""

from __future__ import annotations

import importlib
import sys
import time

SCRIPTS = {
    "train_peer": "bench.bench_train_peer",
    "generation": "bench.bench_generation",
    "time_to_loss": "bench.bench_time_to_loss",
    "views": "bench.bench_views",
    "app": "bench.bench_app",
}


def main(argv: list[str] | None = None) -> None:
    names = (sys.argv[1:] if argv is None else argv) or list(SCRIPTS)
    unknown = [name for name in names if name not in SCRIPTS]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(SCRIPTS)}")
    for name in names:
        started = time.perf_counter()
        print(f"=== {name} ===", flush=True)
        importlib.import_module(SCRIPTS[name]).main([])
        print(f"=== {name}: {time.perf_counter() - started:.0f} s ===", flush=True)


if __name__ == "__main__":
    main()
