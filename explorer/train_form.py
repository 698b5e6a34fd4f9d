"""The Train page's config form: its fields, their limits, and the configs they make.

No Streamlit here. Each field maps to one ModelConfig or TrainConfig field; a preset
fills them all, and the user may change any before pressing Start. The configs'
own checks (ConfigError, naming the field) decide what is possible; the form's limits
only keep the widgets in a sane range.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tinytf.config import DEVICE_CHOICES, TrainConfig


@dataclass(frozen=True)
class Field:
    """One number input of the form."""

    name: str  # the ModelConfig / TrainConfig field
    label: str
    part: str  # "model" or "train"
    low: float
    high: float
    step: float
    help: str = ""

    @property
    def key(self) -> str:
        return f"train_f_{self.name}"

    @property
    def is_int(self) -> bool:
        return float(self.step).is_integer() and float(self.low).is_integer()


FIELDS = (
    Field("n_layer", "Layers", "model", 1, 12, 1, "transformer blocks stacked"),
    Field("n_head", "Heads", "model", 1, 16, 1, "must divide the width"),
    Field("n_embd", "Width (n_embd)", "model", 2, 1024, 2, "the residual stream's size"),
    Field(
        "block_size",
        "Context (block_size)",
        "model",
        2,
        1024,
        1,
        "tokens one position can attend over",
    ),
    Field("dropout", "Dropout", "model", 0.0, 0.9, 0.05),
    Field("batch_size", "Batch size", "train", 1, 512, 1),
    Field("max_steps", "Steps", "train", 1, 100_000, 10),
    Field("learning_rate", "Learning rate", "train", 1e-5, 1.0, 1e-4),
    Field("warmup_steps", "Warmup steps", "train", 0, 10_000, 1),
    Field("eval_interval", "Evaluate every", "train", 1, 10_000, 1, "steps between evaluations"),
    Field("eval_batches", "Eval batches", "train", 1, 200, 1, "batches per loss estimate"),
    Field("seed", "Seed", "train", 0, 2**31 - 1, 1),
)
DEVICES = DEVICE_CHOICES


def field_values(model: Mapping[str, Any], train: TrainConfig) -> dict[str, Any]:
    """Session keys -> values for every field, from a model-field mapping and a TrainConfig."""
    train_fields = dataclasses.asdict(train)
    values = {}
    for field in FIELDS:
        source = model if field.part == "model" else train_fields
        values[field.key] = source[field.name]
    values["train_device"] = train.device
    return values


def configs_from_values(values: Mapping[str, Any]) -> tuple[dict[str, Any], TrainConfig]:
    """(model fields without vocab_size, TrainConfig) from the form's session values.

    Raises:
        ConfigError: the TrainConfig's checks. The model fields are checked by the Trainer,
            once the tokenizer gives the vocabulary size.
    """
    model: dict[str, Any] = {}
    train: dict[str, Any] = {}
    for field in FIELDS:
        value = values[field.key]
        value = int(value) if field.is_int else float(value)
        (model if field.part == "model" else train)[field.name] = value
    train["device"] = values.get("train_device", "auto")
    train["snapshots"] = True  # the scrubber on the Train and Runs pages reads them
    return model, TrainConfig(**train)
