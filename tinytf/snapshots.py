"""Snapshots: what the model looked like at one evaluation, small enough to keep them all.

At each evaluation a run can save, per step, in `<run>/snapshots/step_000123.npz`:
- the attention patterns of a fixed probe prompt, every layer and head: (L, nh, T, T);
- a sample from a fixed seed (the same prompt, sampler and seed at every step);
- the loss of every token of a fixed validation passage, -log p(token | what came before).

Because the probe, the seed and the passage never change, two snapshots differ only by
the weights, so scrubbing through them shows training itself: attention sharpening, the
sample turning into words, the passage's tokens getting cheaper one by one.

    snap = take_snapshot(model, tokenizer, probe_ids, passage_ids, step=100, seed=0)
    save_snapshot(run_dir, snap)
    list_snapshots(run_dir)                      # [0, 25, 50, ...]
    diff = snapshot_diff(load_snapshot(run_dir, 25), load_snapshot(run_dir, 50))

Files are plain `np.savez` archives of numeric arrays plus one JSON string (no pickled
objects; they load with allow_pickle=False) and are written atomically.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinytf.checkpoint import atomic_write
from tinytf.model import TinyGPT
from tinytf.sampling import SamplerSettings, generate
from tinytf.tokenizer import Tokenizer

SNAPSHOT_DIR = "snapshots"
FORMAT = "tinytf-snapshot"
VERSION = 1
PROBE_TOKENS = 24  # the probe prompt's length at most: a heatmap stays readable
PASSAGE_TOKENS = 96  # the validation passage's length at most
SAMPLE_TOKENS = {"char": 80, "word": 30}
SAMPLE_SETTINGS = SamplerSettings(kind="temperature", temperature=0.8)

_FILE = re.compile(r"^step_(\d{6,})\.npz$")
_ARRAYS = ("patterns", "probe_ids", "passage_ids", "token_losses", "sample_ids", "meta")


class SnapshotError(ValueError):
    """A snapshot that cannot be taken, found or read; the message names the file."""


@dataclass
class Snapshot:
    """One evaluation's view of the model (arrays on the CPU)."""

    step: int
    seed: int  # the sample's seed
    probe_ids: np.ndarray  # (T,) int64, the probe prompt
    patterns: np.ndarray  # (L, nh, T, T) float32 attention weights of the probe
    passage_ids: np.ndarray  # (P,) int64, the start of the validation split
    token_losses: np.ndarray  # (P,) float32; entry t is the loss of token t (NaN at 0)
    sample_ids: np.ndarray  # (S,) int64, the sample's prompt and new tokens
    sample_prompt_len: int  # how many of sample_ids are its prompt
    probe_tokens: list[str]  # token strings, for labels
    passage_tokens: list[str]
    sample_text: str

    @property
    def mean_loss(self) -> float:
        """Mean loss over the passage's scored tokens (all but the first)."""
        return float(np.nanmean(self.token_losses))


@dataclass(frozen=True)
class SnapshotDiff:
    """What changed between two snapshots of one run."""

    prev_step: int
    step: int
    loss_change: np.ndarray  # (P,) current minus previous per-token loss (NaN at 0)
    mean_loss_before: float
    mean_loss_after: float
    sample_changed: bool
    first_sample_difference: int | None  # index into sample_ids where they part, or None
    pattern_change: np.ndarray  # (L, nh) largest |Δ weight| of each head


def snapshot_path(run_dir: Path | str, step: int) -> Path:
    return Path(run_dir) / SNAPSHOT_DIR / f"step_{step:06d}.npz"


def probe_and_passage(
    train_ids: Sequence[int], val_ids: Sequence[int], block_size: int
) -> tuple[list[int], list[int]]:
    """The fixed probe prompt (first tokens of the training text) and passage (first
    tokens of the validation split), sized for the context."""
    probe = [int(i) for i in train_ids[: min(PROBE_TOKENS, block_size)]]
    passage = [int(i) for i in val_ids[:PASSAGE_TOKENS]]
    if not probe or len(passage) < 2:
        raise SnapshotError("snapshot: needs at least one training token and two validation tokens")
    return probe, passage


@torch.no_grad()
def token_losses(model: TinyGPT, passage_ids: Sequence[int]) -> np.ndarray:
    """(P,) loss of each passage token given the tokens before it; NaN for the first.

    A passage longer than the context is read in overlapping windows of block_size
    tokens that advance by half a window; each token's loss comes from the first window
    that predicts it, so every token after the first half-window sees at least half a
    window of context (a token near the start sees all it has).
    """
    block = model.config.block_size
    device = next(model.parameters()).device
    ids = torch.tensor(list(passage_ids), dtype=torch.long)
    losses = torch.full((ids.numel(),), float("nan"))
    stride = max(1, block // 2)
    for start in range(0, ids.numel() - 1, stride):
        window = ids[start : start + block + 1]  # (t + 1,)
        x, y = window[:-1].unsqueeze(0).to(device), window[1:]  # (1, t), (t,)
        logits = model(x).logits[0].float().cpu()  # (t, V)
        window_losses = F.cross_entropy(logits, y, reduction="none")  # (t,)
        targets = torch.arange(start + 1, start + window.numel())
        fresh = torch.isnan(losses[targets])
        losses[targets[fresh]] = window_losses[fresh]
    return losses.numpy().astype(np.float32)


@torch.no_grad()
def take_snapshot(
    model: TinyGPT,
    tokenizer: Tokenizer,
    probe_ids: Sequence[int],
    passage_ids: Sequence[int],
    step: int,
    seed: int = 0,
) -> Snapshot:
    """Attention of the probe, a fixed-seed sample and the passage's per-token losses.

    Args:
        model: on any device; run in eval mode, its mode restored after. No global
            random state is touched (the sample has its own seeded generator), so taking
            a snapshot inside a training loop changes nothing about the training.
        probe_ids: (T,) the probe prompt, at most block_size tokens.
        passage_ids: (P,) the validation passage, at least two tokens.
        step: the optimiser steps behind the weights.
        seed: the sample's seed.
    """
    block = model.config.block_size
    if not 0 < len(probe_ids) <= block:
        raise SnapshotError(f"probe_ids: need 1 to {block} tokens, got {len(probe_ids)}")
    if len(passage_ids) < 2:
        raise SnapshotError(f"passage_ids: need at least 2 tokens, got {len(passage_ids)}")
    was_training = model.training
    model.eval()
    try:
        # 1. Attention of the probe, every layer and head.
        device = next(model.parameters()).device
        probe = torch.tensor([list(probe_ids)], device=device)  # (1, T)
        cache = model(probe, capture=True).cache
        patterns = torch.stack(
            [cache[f"blocks.{i}.attn.pattern"][0] for i in range(model.config.n_layer)]
        )  # (L, nh, T, T)

        # 2. The passage's per-token losses, then 3. the sample.
        losses = token_losses(model, passage_ids)
        n_new = SAMPLE_TOKENS.get(tokenizer.level, 60)
        prompt = [int(probe_ids[0])]
        sample = generate(model, prompt, n_new, SAMPLE_SETTINGS, seed=seed)
    finally:
        model.train(was_training)
    return Snapshot(
        step=int(step),
        seed=int(seed),
        probe_ids=np.asarray(probe_ids, dtype=np.int64),
        patterns=patterns.float().cpu().numpy(),
        passage_ids=np.asarray(passage_ids, dtype=np.int64),
        token_losses=losses,
        sample_ids=np.asarray(sample.ids, dtype=np.int64),
        sample_prompt_len=len(prompt),
        probe_tokens=tokenizer.token_strings(probe_ids),
        passage_tokens=tokenizer.token_strings(passage_ids),
        sample_text=tokenizer.decode(sample.ids),
    )


def save_snapshot(run_dir: Path | str, snapshot: Snapshot) -> Path:
    """Write `<run_dir>/snapshots/step_NNNNNN.npz` atomically; returns its path."""
    path = snapshot_path(run_dir, snapshot.step)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "step": snapshot.step,
        "seed": snapshot.seed,
        "sample_prompt_len": snapshot.sample_prompt_len,
        "probe_tokens": snapshot.probe_tokens,
        "passage_tokens": snapshot.passage_tokens,
        "sample_text": snapshot.sample_text,
    }
    arrays = {
        "patterns": snapshot.patterns,
        "probe_ids": snapshot.probe_ids,
        "passage_ids": snapshot.passage_ids,
        "token_losses": snapshot.token_losses,
        "sample_ids": snapshot.sample_ids,
        "meta": np.array(json.dumps(meta, ensure_ascii=False)),
    }
    atomic_write(path, lambda file: np.savez(file, **arrays))
    return path


def list_snapshots(run_dir: Path | str) -> list[int]:
    """Steps that have a snapshot in this run, in order (empty when there are none)."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    if not folder.is_dir():
        return []
    steps = [int(m.group(1)) for p in folder.iterdir() if (m := _FILE.match(p.name))]
    return sorted(steps)


def load_snapshot(run_dir: Path | str, step: int) -> Snapshot:
    """Read one step's snapshot, checking its format and shapes.

    Raises:
        SnapshotError: missing, damaged or foreign file (the message names it).
    """
    path = snapshot_path(run_dir, step)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in _ARRAYS if name not in archive.files]
            if missing:
                raise SnapshotError(f"{path}: not a snapshot (no {', '.join(missing)})")
            arrays = {name: archive[name] for name in _ARRAYS}
        meta = json.loads(str(arrays["meta"]))
    except FileNotFoundError as error:
        raise SnapshotError(f"{path}: no snapshot for step {step}") from error
    except (OSError, ValueError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        if isinstance(error, SnapshotError):
            raise
        raise SnapshotError(f"{path}: unreadable snapshot ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SnapshotError(f"{path}: not a tinytf snapshot")
    if meta.get("version") != VERSION:
        raise SnapshotError(f"{path}: unsupported version {meta.get('version')!r}")
    snapshot = Snapshot(
        step=int(meta["step"]),
        seed=int(meta["seed"]),
        probe_ids=arrays["probe_ids"],
        patterns=arrays["patterns"],
        passage_ids=arrays["passage_ids"],
        token_losses=arrays["token_losses"],
        sample_ids=arrays["sample_ids"],
        sample_prompt_len=int(meta["sample_prompt_len"]),
        probe_tokens=list(meta["probe_tokens"]),
        passage_tokens=list(meta["passage_tokens"]),
        sample_text=str(meta["sample_text"]),
    )
    _check_shapes(snapshot, path)
    return snapshot


def _check_shapes(snapshot: Snapshot, path: Path) -> None:
    T, P = snapshot.probe_ids.size, snapshot.passage_ids.size
    patterns = snapshot.patterns
    if patterns.ndim != 4 or patterns.shape[2:] != (T, T):
        raise SnapshotError(f"{path}: patterns {patterns.shape} do not fit a probe of {T}")
    if snapshot.token_losses.shape != (P,) or len(snapshot.passage_tokens) != P:
        raise SnapshotError(f"{path}: losses or tokens do not fit a passage of {P}")
    if len(snapshot.probe_tokens) != T:
        raise SnapshotError(f"{path}: {len(snapshot.probe_tokens)} labels for {T} probe tokens")


def snapshot_diff(prev: Snapshot, cur: Snapshot) -> SnapshotDiff:
    """Per-token loss change, sample change and attention change from `prev` to `cur`.

    Raises:
        SnapshotError: the two do not share a passage and probe (not the same run).
    """
    same_passage = np.array_equal(prev.passage_ids, cur.passage_ids)
    same_probe = np.array_equal(prev.probe_ids, cur.probe_ids)
    if not (same_passage and same_probe) or prev.patterns.shape != cur.patterns.shape:
        raise SnapshotError(
            f"snapshots of steps {prev.step} and {cur.step} have different probes or "
            "passages: they are not from the same run"
        )
    a, b = prev.sample_ids, cur.sample_ids
    shared = min(a.size, b.size)
    differ = np.nonzero(a[:shared] != b[:shared])[0]
    first = int(differ[0]) if differ.size else (None if a.size == b.size else shared)
    change = np.abs(cur.patterns - prev.patterns).max(axis=(2, 3))  # (L, nh)
    return SnapshotDiff(
        prev_step=prev.step,
        step=cur.step,
        loss_change=cur.token_losses - prev.token_losses,
        mean_loss_before=prev.mean_loss,
        mean_loss_after=cur.mean_loss,
        sample_changed=first is not None,
        first_sample_difference=first,
        pattern_change=change,
    )
