"""Checkpoints and atomic files: save so a crash never leaves half a file, load safely.

Saving writes to a temporary file in the same folder, flushes it to disk, then renames it
over the target (`os.replace` is atomic on one filesystem), so a reader sees the old file
or the new one, never a mix. The same helper writes the run's JSON files.

Loading goes through `torch.load(..., weights_only=True)` only: the unpickler then accepts
tensors and plain containers and refuses any other pickled object, which could otherwise
run code when loaded. Everything saved is therefore tensors or plain Python (dict, list,
tuple, str, int, float, bool, None); `save_checkpoint` checks this before writing.

    save_checkpoint(path, model, optimizer, step, rng_state, extra={"best_val_loss": 1.9})
    ckpt = load_checkpoint(path, map_location="cpu")    # CheckpointError on any problem
    load_weights(model, ckpt)                           # names a missing key or bad shape
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor, nn

FORMAT = "tinytf-checkpoint"
VERSION = 1
_KEYS = ("format", "version", "step", "model", "optimizer", "rng", "extra")
_PLAIN = (str, int, float, bool, type(None), Tensor)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be saved or used; the message names the file and why."""


@dataclass
class Checkpoint:
    """What `load_checkpoint` gives back."""

    path: Path
    step: int  # optimiser steps done when it was saved
    model_state: dict[str, Tensor]  # the model's state_dict
    optimizer_state: dict[str, Any] | None  # the optimiser's state_dict, if saved
    rng_state: dict[str, Any]  # see `capture_rng`
    extra: dict[str, Any]  # configs, best val loss so far, elapsed time, ...


# ---------------------------------------------------------------------------------------
# Atomic writes


def _temp_path(path: Path) -> Path:
    # Hidden and with a random part: two writers never share one, and folder listings
    # (runs, checkpoints) skip names that start with a dot.
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every OS, so best effort.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`.

    On any failure the temporary file is removed and `path` keeps its old content.
    """
    path = Path(path)
    temp = _temp_path(path)
    try:
        with open(temp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def atomic_write_json(path: Path | str, data: Any) -> None:
    """Write `data` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------
# RNG state


def capture_rng(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Every random stream a training step draws from, as tensors.

    torch's CPU RNG (dropout on the CPU), the batch generator, and CUDA's RNG when training
    on CUDA. MPS has its own stream, not saved: a resumed MPS run is close, not identical.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "batches": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator, device: torch.device) -> None:
    """Put back what `capture_rng` saved (the CUDA part only when training on CUDA)."""
    torch.set_rng_state(state["torch"].cpu())
    generator.set_state(state["batches"].cpu())
    cuda_states = state.get("cuda")
    if device.type == "cuda" and cuda_states and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


# ---------------------------------------------------------------------------------------
# Save and load


def _check_plain(value: Any, where: str) -> None:
    """Refuse anything weights_only loading would later refuse, naming where it sits."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(f"{where}: key {key!r} is not a str or int")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise CheckpointError(
            f"{where}: a {type(value).__name__} cannot go in a checkpoint "
            "(only tensors and plain Python values load safely)"
        )


def save_checkpoint(
    path: Path | str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    step: int,
    rng_state: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    """Save weights, optimiser state, step, RNG states and `extra`, atomically."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "rng": rng_state,
        "extra": extra,
    }
    _check_plain(payload, "checkpoint")
    atomic_write(path, lambda file: torch.save(payload, file))


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint saved by `save_checkpoint`, with its tensors on `map_location`.

    Raises:
        CheckpointError: no such file, truncated or not a checkpoint, a pickled object
            that is not plain data, or missing parts. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch names the refused class or function as "GLOBAL module.name"; without one
        # the pickle stream itself is damaged.
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if refused is None:
            raise CheckpointError(
                f"{path}: not a readable checkpoint, truncated or damaged (bad pickle data)"
            ) from error
        raise CheckpointError(
            f"{path}: refused, it holds a pickled object ({refused.group(1)}) that is not "
            "plain data and could run code when loaded"
        ) from error
    except Exception as error:  # torch raises many kinds for a damaged file
        raise CheckpointError(
            f"{path}: not a readable checkpoint, truncated or damaged ({_first_line(error)})"
        ) from error

    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tinytf checkpoint (no '{FORMAT}' marker)")
    missing = [key for key in _KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing {', '.join(missing)}")
    if payload["version"] != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload['version']}, this tinytf reads {VERSION}"
        )
    return Checkpoint(
        path=path,
        step=int(payload["step"]),
        model_state=payload["model"],
        optimizer_state=payload["optimizer"],
        rng_state=payload["rng"],
        extra=payload["extra"],
    )


def load_weights(model: nn.Module, checkpoint: Checkpoint) -> None:
    """Copy the checkpoint's weights into `model`, naming any key or shape that differs."""
    expected = model.state_dict()
    saved = checkpoint.model_state
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{checkpoint.path}: weights do not match the model "
            f"(missing: {', '.join(missing) or 'none'}; "
            f"unexpected: {', '.join(unexpected) or 'none'})"
        )
    for name, tensor in expected.items():
        if saved[name].shape != tensor.shape:
            raise CheckpointError(
                f"{checkpoint.path}: {name} has shape {tuple(saved[name].shape)} in the "
                f"checkpoint but {tuple(tensor.shape)} in the model built from the config "
                "(vocabulary or sizes differ)"
            )
    model.load_state_dict(saved)
