"""What every benchmark shares: the machine's description, interleaved timing, tables, and
writing one section of docs/benchmarks.md.

The rules the scripts follow:
- two things are compared inside one invocation, alternating A, B, A, B, ..., so a
  machine that slows down for a while (other processes, heat) slows both alike;
- a ratio is taken per round, from the A and B measured next to each other, and the
  table gives the median of those ratios with their min-max; absolute figures from
  different runs are never divided by each other;
- every figure is a median with its min-max over the rounds.

Each script rewrites only its own section of docs/benchmarks.md, between markers (and the
introduction above the first section), so the
scripts can be run alone or together (`python -m bench.run_all`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tinytf.config import ModelConfig
from tinytf.device import CPU_FLOPS_PER_CYCLE, cpu_clock_hz, describe_device, peak_flops
from tinytf.model import TinyGPT
from tinytf.training import flops_per_token

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC_PATH = REPO_ROOT / "docs" / "benchmarks.md"
SHAKESPEARE_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

DOC_INTRO = """# Benchmarks

Written by the scripts in `bench/` (run them all with `.venv/bin/python -m bench.run_all`,
or one with `.venv/bin/python -m bench.bench_views`); each script rewrites only its own
section below. Nothing here is typed in by hand. The training and generation benchmarks
also run on a GPU (`--device cuda`, or `bash scripts/gpu_check.sh` for every GPU check at
once); their GPU figures go to sections of their own, titled with the device's name.

How to read the figures:
- each comparison runs both sides in one invocation, alternating A, B, A, B, ...;
- a ratio is taken per round from the A and B measured side by side, and the table shows
  the median ratio and its min-max; absolute times from different runs are never divided;
- every figure is a median with its min-max over the rounds;
- MFU (model FLOPs utilisation) = model FLOPs per second / the device's peak, counted as
  the Trainer counts it (`tinytf.training.flops_per_token`): 6 FLOPs per parameter per
  token for forward and backward, plus 12 x n_layer x T x C for the attention matmuls
  (the usual convention, which counts the masked half of QKᵀ too); the CPU peak is 32
  float32 FLOPs per cycle per core (two 256-bit FMA units) x cores x clock, a rough
  yardstick rather than a measured ceiling.

The machine these figures come from is shared: other processes (other parts of the
project being tested) were often running at the same time, which the load average line
of each section shows. Alternating A and B keeps the ratios fair under such load, but
the absolute figures move with it, and a round that drew a busy moment shows up in the
min-max range.
"""


# ----------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (with family/model when the name is generic)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name", platform.machine())
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def load_average() -> str:
    """1-minute load average, or "n/a" where the OS has none."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def machine_lines(device: torch.device | None = None) -> list[str]:
    """Markdown bullet lines describing where and when a benchmark ran."""
    threads = torch.get_num_threads()
    clock = cpu_clock_hz() / 1e9
    peak = peak_flops(torch.device("cpu")) or 0.0
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        f"- measured {when}, Python {platform.python_version()}, torch {torch.__version__}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores, {clock:.2f} GHz; "
        f"torch threads: {threads}; CPU capability: {torch.backends.cpu.get_cpu_capability()}",
    ]
    if device is not None and device.type == "cuda":
        gpu_peak = peak_flops(device)
        shown = (
            "unknown (not in tinytf.device.GPU_BF16_PEAK)"
            if gpu_peak is None
            else (f"{gpu_peak / 1e12:,.0f} TFLOP/s")
        )
        lines += [
            f"- GPU: {describe_device(device)}, CUDA {torch.version.cuda}",
            f"- GPU peak used for MFU (dense bf16, from the datasheet): {shown}",
        ]
    else:
        lines.append(
            f"- CPU peak used for MFU: {CPU_FLOPS_PER_CYCLE} x {threads} x {clock:.2f} GHz "
            f"= {peak / 1e9:.0f} GFLOP/s"
        )
    lines.append(
        f"- load average when the benchmark started: {load_average()} "
        "(above 0 means other processes were running on these cores)"
    )
    return lines


# ----------------------------------------------------------------------------- the device


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """`--device cpu|cuda`: CUDA figures go to a section of their own in the document."""
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where to run (default cpu); cuda runs both arms under bf16 autocast",
    )


def bench_device(name: str) -> torch.device:
    """The device a benchmark was asked for; stops with a message if it is not here."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: this machine has no CUDA GPU that torch can see")
    return torch.device(name)


def device_section(key: str, title: str, device: torch.device) -> tuple[str, str]:
    """The document section for `device`: CPU figures under `key`, others beside them."""
    if device.type == "cpu":
        return key, title
    return f"{key}_{device.type}", f"{title}, on {describe_device(device)}"


def synchronize(device: torch.device | None) -> None:
    """Wait for the GPU's queued work, so that a clock read next counts all of it."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- FLOPs


def train_flops_per_token(config: ModelConfig) -> float:
    """Forward + backward FLOPs per token, counted as the Trainer counts them for its MFU."""
    n_params = TinyGPT(config).num_parameters()
    return flops_per_token(config, n_params)


def mfu(tokens_per_s: float, flops_per_token: float, device: torch.device) -> float | None:
    """Model FLOPs utilisation as a fraction, or None when the device's peak is unknown."""
    peak = peak_flops(device)
    return None if not peak else tokens_per_s * flops_per_token / peak


# ----------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Summary:
    """Median and range of repeated measurements."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no measurements to summarise")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def show(self, fmt: str = "{:,.0f}") -> str:
        """The median, then the range in brackets (none for one value): 12,345 (12,001-12,610)."""
        if self.n == 1:
            return fmt.format(self.median)
        return f"{fmt.format(self.median)} ({fmt.format(self.low)}-{fmt.format(self.high)})"


def timed(fn: Callable[[], object], device: torch.device | None = None) -> float:
    """Seconds one call of `fn` takes, by the monotonic high-resolution clock.

    On a GPU the work is queued and runs later, so the clock starts and stops only once
    the device has finished what was queued.
    """
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleave(
    cases: dict[str, Callable[[], float]], rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Call each case once per round, in the dict's order (A, B, A, B, ...).

    Each callable measures one thing and returns the figure (tokens/s, seconds, ...).
    `warmup` rounds run first and are thrown away (first-call allocations, caches).
    """
    for _ in range(warmup):
        for case in cases.values():
            case()
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            gc.collect()
            results[name].append(case())
    return results


def paired_ratios(top: Sequence[float], bottom: Sequence[float]) -> list[float]:
    """Per-round ratios top[i] / bottom[i] of two interleaved series."""
    if len(top) != len(bottom):
        raise ValueError(f"series of different lengths: {len(top)} and {len(bottom)}")
    return [a / b for a, b in zip(top, bottom, strict=True)]


# ----------------------------------------------------------------------------- output


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; cells are str()-ed."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(key: str, title: str, body: str, path: Path = DOC_PATH) -> None:
    """Replace (or append) the section `key` of the benchmarks document.

    The section lives between `<!-- bench:key -->` and `<!-- /bench:key -->`, so other
    scripts' sections are left exactly as they were.
    """
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    section = f"{start}\n## {title}\n\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else DOC_INTRO
    # The introduction (everything before the first section) always comes from DOC_INTRO.
    first = text.find("<!-- bench:")
    text = DOC_INTRO + ("" if first < 0 else "\n" + text[first:])
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def report(key: str, title: str, body: str, write: bool = True) -> None:
    """Print a benchmark's result and, unless `write` is False, store it in the doc."""
    print(f"\n## {title}\n\n{body.strip()}\n")
    if write:
        write_section(key, title, body)
        print(f"(written to {DOC_PATH.relative_to(REPO_ROOT)})")
