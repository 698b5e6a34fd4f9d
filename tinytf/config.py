"""Configuration of the model and of a training run, checked when created.

Every check names the field at fault, so a bad value from the command line or the app's
form turns into one readable line rather than a shape error deep inside torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

POSITION_KINDS = ("sinusoidal", "learned")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message starts with the field name."""


def _require_positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name}: must be a positive whole number, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the transformer. Frozen: derive a changed copy with `replace`."""

    vocab_size: int  # tokens the embedding and the LM head know, <unk> included
    block_size: int = 32  # context length: the most tokens one position can attend over
    n_layer: int = 2  # transformer blocks stacked
    n_head: int = 4  # attention heads per block; must divide n_embd
    n_embd: int = 64  # width of the residual stream
    dropout: float = 0.0  # on attention weights, sub-layer outputs and embeddings
    positions: str = "sinusoidal"  # "sinusoidal" (fixed) or "learned" position vectors
    bias: bool = True  # biases in the linear layers

    def __post_init__(self) -> None:
        _require_positive(self, "vocab_size", "block_size", "n_layer", "n_head", "n_embd")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_head: {self.n_head} heads do not divide the width n_embd={self.n_embd}"
            )
        if self.positions not in POSITION_KINDS:
            raise ConfigError(f"positions: must be one of {POSITION_KINDS}, got {self.positions!r}")
        # sin and cos fill the even and odd columns in pairs, so an odd width has no place
        # for the last cosine.
        if self.positions == "sinusoidal" and self.n_embd % 2:
            raise ConfigError(
                f"n_embd: sinusoidal positions need an even width, got {self.n_embd} "
                "(use an even width or positions='learned')"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout!r}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def replace(self, **changes: object) -> ModelConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, evaluation and where to run."""

    batch_size: int = 16  # sequences per step
    max_steps: int = 300  # optimiser steps in the whole run
    learning_rate: float = 3e-3  # peak learning rate, reached after warmup
    min_lr: float | None = None  # floor of the cosine decay; None means learning_rate / 10
    warmup_steps: int = 20  # linear warmup from 0 to the peak
    weight_decay: float = 0.1  # AdamW decay, applied to matrices only
    grad_clip: float | None = 1.0  # clip the global gradient norm; None turns it off
    eval_interval: int = 25  # estimate train and val loss every this many steps
    eval_batches: int = 8  # batches averaged in each estimate
    val_fraction: float = 0.1  # share of the tokens held out for validation, at the end
    train_fraction: float = 1.0  # share of the training split used (a prefix); val unchanged
    seed: int = 1337  # seeds weights, batches and dropout
    device: str = "auto"  # "auto" picks cuda, then mps, then cpu
    compile: bool = False  # try torch.compile; falls back to eager when it cannot
    snapshots: bool = False  # save a tinytf.snapshots snapshot at each evaluation (run folders)

    def __post_init__(self) -> None:
        _require_positive(self, "batch_size", "max_steps", "eval_interval", "eval_batches")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps: must be 0 or more, got {self.warmup_steps!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate: must be above 0, got {self.learning_rate!r}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.learning_rate:
            raise ConfigError(
                f"min_lr: must be between 0 and learning_rate={self.learning_rate}, "
                f"got {self.min_lr!r}"
            )
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay: must be 0 or more, got {self.weight_decay!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip: must be above 0 or None, got {self.grad_clip!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction: must be in (0, 1), got {self.val_fraction!r}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(f"train_fraction: must be in (0, 1], got {self.train_fraction!r}")
        if self.device not in DEVICE_CHOICES:
            raise ConfigError(f"device: must be one of {DEVICE_CHOICES}, got {self.device!r}")

    @property
    def final_lr(self) -> float:
        return self.learning_rate / 10 if self.min_lr is None else self.min_lr

    def replace(self, **changes: object) -> TrainConfig:
        return dataclasses.replace(self, **changes)
