"""Where to run: pick a device, describe it, and the per-device details of a training step.

`pick_device("auto")` takes CUDA, then Apple's MPS, then the CPU. Asking for a device that
is not there is not an error: the CPU is used and a warning says so, because a saved
setting (say `--device cuda` from a GPU machine) should still run on a laptop.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from tinytf.config import DEVICE_CHOICES, ConfigError

log = logging.getLogger(__name__)

# torch has one global random generator per process, and the app trains in several threads
# of one process at once: code that seeds it, or saves and puts back its state, holds this
# lock, so one job never draws another's numbers or has its stream rewound under it.
GLOBAL_RNG_LOCK = threading.RLock()

# Used when /proc/cpuinfo gives no clock (macOS, Windows, some containers).
DEFAULT_CPU_HZ = 2.5e9

# A core with two 256-bit FMA units does 2 units x 8 float32 lanes x 2 FLOPs (multiply and
# add) = 32 float32 FLOPs per cycle. Older or smaller cores do less, AVX-512 cores more, so
# the CPU peak (and the MFU built on it) is a rough yardstick, not a measurement.
CPU_FLOPS_PER_CYCLE = 32

# Dense bf16 tensor-core peaks from the vendors' datasheets, by a substring of the name.
GPU_BF16_PEAK = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10": 125e12,
    "L4": 121e12,
    "4090": 165e12,
    "3090": 71e12,
}


@dataclass(frozen=True)
class DeviceChoice:
    """The device to use, and a warning when it is not the one asked for."""

    device: torch.device
    warning: str | None = None


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def pick_device(requested: str = "auto") -> DeviceChoice:
    """Resolve "auto", "cpu", "cuda" or "mps" to a device this machine has.

    Raises:
        ConfigError: `requested` is not one of the four names.
    """
    if requested not in DEVICE_CHOICES:
        raise ConfigError(f"device: must be one of {DEVICE_CHOICES}, got {requested!r}")

    if requested == "auto":
        if torch.cuda.is_available():
            return DeviceChoice(torch.device("cuda"))
        if _mps_available():
            return DeviceChoice(torch.device("mps"))
        return DeviceChoice(torch.device("cpu"))

    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
    if available[requested]:
        return DeviceChoice(torch.device(requested))
    warning = f"device {requested!r} is not available on this machine; using the CPU instead"
    log.warning(warning)
    return DeviceChoice(torch.device("cpu"), warning)


def describe_device(device: torch.device | str) -> str:
    """One line for people: "CUDA: NVIDIA H200 (139.8 GiB)", "CPU: 2 threads"."""
    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"CUDA: {props.name} ({props.total_memory / 2**30:.1f} GiB)"
    if device.type == "mps":
        return f"MPS: Apple GPU ({platform.machine()})"
    threads = torch.get_num_threads()
    return f"CPU: {threads} thread{'s' if threads != 1 else ''}"


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (tensor cores, fp32 master weights); nothing elsewhere.

    On the CPU bf16 matmuls are often slower than fp32 and the losses would differ from
    the reference fp32 runs the tests compare against, so the CPU stays in fp32.
    """
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def _fused_adamw_on(device_type: str) -> bool:
    probe = torch.zeros(1, device=device_type, requires_grad=True)
    try:
        # AdamW checks at construction that its fused kernel exists for the parameters'
        # device: CUDA for years, the CPU since torch 2.4, MPS since 2.5.
        torch.optim.AdamW([probe], fused=True)
    except (RuntimeError, ValueError):
        return False
    return True


def fused_adamw_supported(device: torch.device) -> bool:
    """Whether this torch has AdamW's fused kernel for `device`'s type.

    The fused step updates every parameter in one pass instead of a chain of per-tensor
    operations; on two CPU cores it takes the optimiser step for the `small` preset from
    about 3.5 ms to 1.2 ms (about 5% of a training step), with the same updates to within
    float rounding.
    """
    return _fused_adamw_on(torch.device(device).type)


@contextlib.contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Run a block (an evaluation, a sample) without moving the training RNG streams.

    Evaluations then cannot change which dropout masks later steps draw, so a run that is
    stopped and resumed draws exactly what an uninterrupted one does. The state is read
    and put back under GLOBAL_RNG_LOCK (not held in between: an evaluation is long).
    """
    with GLOBAL_RNG_LOCK:
        cpu_state = torch.get_rng_state()
        cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        yield
    finally:
        with GLOBAL_RNG_LOCK:
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, device)


def cpu_clock_hz(cpuinfo: Path = Path("/proc/cpuinfo")) -> float:
    """Highest "cpu MHz" in /proc/cpuinfo, in Hz; DEFAULT_CPU_HZ when there is none."""
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        return DEFAULT_CPU_HZ
    clocks = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz":
            with contextlib.suppress(ValueError):
                clocks.append(float(value) * 1e6)
    return max(clocks) if clocks else DEFAULT_CPU_HZ


def peak_flops(device: torch.device) -> float | None:
    """Rough peak FLOP/s of `device` for MFU, or None when unknown (MPS, unlisted GPUs).

    CPU: CPU_FLOPS_PER_CYCLE x torch's threads (at most the cores) x the clock.
    """
    if device.type == "cuda":
        name = torch.cuda.get_device_properties(device).name
        return next((peak for key, peak in GPU_BF16_PEAK.items() if key in name), None)
    if device.type == "cpu":
        cores = min(torch.get_num_threads(), os.cpu_count() or 1)
        return CPU_FLOPS_PER_CYCLE * cores * cpu_clock_hz()
    return None
