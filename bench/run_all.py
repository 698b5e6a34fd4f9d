"""Run every benchmark in turn with its defaults; each rewrites its section of
docs/benchmarks.md. About 20 minutes on two CPU cores.

    .venv/bin/python -m bench.run_all                 # all of them
    .venv/bin/python -m bench.run_all views generation   # some, by short name
    .venv/bin/python -m bench.run_all --device cuda   # those that run on a GPU, on the GPU
"""

from __future__ import annotations

import argparse
import importlib
import time

SCRIPTS = {
    "train_peer": "bench.bench_train_peer",
    "generation": "bench.bench_generation",
    "time_to_loss": "bench.bench_time_to_loss",
    "views": "bench.bench_views",
    "app": "bench.bench_app",
}


# The benchmarks with a --device option; the others measure the CPU by design (the
# explorer's views and the app on a laptop, time to a loss on these two cores).
ON_DEVICE = ("train_peer", "generation")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"some of: {', '.join(SCRIPTS)} (default all)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    default = list(ON_DEVICE) if args.device != "cpu" else list(SCRIPTS)
    names = args.names or default
    unknown = [name for name in names if name not in SCRIPTS]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(SCRIPTS)}")
    if args.device != "cpu" and set(names) - set(ON_DEVICE):
        raise SystemExit(f"--device {args.device}: only {', '.join(ON_DEVICE)} run there")
    for name in names:
        started = time.perf_counter()
        print(f"=== {name} ===", flush=True)
        extra = [] if args.device == "cpu" else ["--device", args.device]
        importlib.import_module(SCRIPTS[name]).main(extra)
        print(f"=== {name}: {time.perf_counter() - started:.0f} s ===", flush=True)


if __name__ == "__main__":
    main()
