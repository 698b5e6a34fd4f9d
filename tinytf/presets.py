"""Named starting configurations, and fitting them to a corpus that is too short.

- `tiny`: 2 layers, 4 heads, 64 wide, context 32, 300 steps at 3e-3. Made for the Zen of
  Python: at word level it memorises the training text (train loss far below 0.5) in
  seconds on two CPU cores while the validation loss climbs, which is overfitting in
  plain view.
- `small`: 4 layers, 4 heads, 128 wide, context 64, batch 12: a real text such as tiny
  Shakespeare at character level, where the validation loss keeps falling for thousands
  of steps.

A preset is a pair (model fields without vocab_size, TrainConfig); the tokenizer supplies
the vocabulary. Zen at word level has only ~180 tokens, so its last 10% (18 tokens) cannot
hold a context of 32: `fit_to_corpus` shrinks the context (and the batch) until both splits
hold at least a window or two.

    preset = fit_to_corpus(get_preset(default_preset_for(len(ids))), len(ids))
    trainer = Trainer(preset.model_kwargs(), preset.train, ids, tokenizer)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tinytf.config import ConfigError, TrainConfig
from tinytf.data import check_fits, split_sizes

# Below this many tokens a corpus gets `tiny`; above, `small`. Zen is ~800 characters,
# the pydoc topics and tiny Shakespeare are hundreds of thousands.
SMALL_CORPUS_TOKENS = 50_000


@dataclass(frozen=True)
class Preset:
    """A named (model fields, TrainConfig) pair. Frozen; derive changed copies."""

    name: str
    description: str
    model: Mapping[str, Any]  # ModelConfig fields except vocab_size (read-only)
    train: TrainConfig

    def model_kwargs(self) -> dict[str, Any]:
        """A fresh dict of the model fields, safe to change."""
        return dict(self.model)

    def with_model(self, **changes: Any) -> Preset:
        return dataclasses.replace(self, model=MappingProxyType({**self.model, **changes}))

    def with_train(self, **changes: Any) -> Preset:
        return dataclasses.replace(self, train=self.train.replace(**changes))


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        description="2 layers x 64 wide, context 32: memorises a tiny text in seconds",
        model=MappingProxyType(
            {"block_size": 32, "n_layer": 2, "n_head": 4, "n_embd": 64, "dropout": 0.0}
        ),
        train=TrainConfig(
            batch_size=16,
            max_steps=300,
            learning_rate=3e-3,
            warmup_steps=20,
            eval_interval=25,
            eval_batches=8,
        ),
    ),
    "small": Preset(
        name="small",
        description="4 layers x 128 wide, context 64: real text such as Shakespeare",
        model=MappingProxyType(
            {"block_size": 64, "n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0}
        ),
        # lr 3e-3 after a short warmup reaches a validation loss of 2.0 on tiny Shakespeare
        # in 0.64x-0.80x the steps of the plain lr 1e-3 recipe, depending on the seed
        # (bench/bench_time_to_loss.py), and 1.8 by about step 1,350. Within a few percent
        # of these steps: lr 2e-3 or 4e-3, no gradient clipping, no weight decay. 5e-3 took
        # more steps; batch 8, 16 or 24 more seconds on two CPU cores; a decay over 1,000
        # or 1,200 steps reaches 2.0 a little sooner, but over 1,200 it stopped short of 1.8.
        train=TrainConfig(
            batch_size=12,
            max_steps=1500,
            learning_rate=3e-3,
            warmup_steps=20,
            eval_interval=100,
            eval_batches=16,
        ),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; ConfigError naming the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"preset: unknown preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None


def default_preset_for(n_tokens: int) -> str:
    """The preset name that suits a corpus of `n_tokens` tokens."""
    return "tiny" if n_tokens < SMALL_CORPUS_TOKENS else "small"


def _largest_power_of_two(limit: int) -> int:
    return 1 << (limit.bit_length() - 1)


def fit_to_corpus(preset: Preset, n_tokens: int, val_fraction: float | None = None) -> Preset:
    """Shrink the context (to a power of two) and the batch so both splits fit.

    The context becomes the largest power of two that leaves each split at least one
    window of block_size + 1 tokens (usually a few); the batch is capped at the number of
    distinct training windows. A preset that already fits comes back unchanged.

    Raises:
        ConfigError: the corpus is too short for even a context of 1.
    """
    if val_fraction is not None:
        preset = preset.with_train(val_fraction=val_fraction)
    train = preset.train
    n_train, n_val = split_sizes(n_tokens, train.val_fraction)
    n_train = int(n_train * train.train_fraction)

    block = preset.model["block_size"]
    room = min(n_train, n_val) - 1  # the longest context both splits can hold
    if room < 1:
        check_fits(n_tokens, 1, train.val_fraction, train.train_fraction)
    if block > room:
        block = _largest_power_of_two(room)
        preset = preset.with_model(block_size=block)
    check_fits(n_tokens, block, train.val_fraction, train.train_fraction)

    windows = n_train - block
    if train.batch_size > windows:
        preset = preset.with_train(batch_size=max(1, windows))
    return preset
