"""Token ids to training batches: the train/val split and random windows.

The validation split is the *last* `val_fraction` of the tokens, one contiguous piece, so
no validation window overlaps a training window except at the single seam. A batch is
`batch_size` windows of `block_size + 1` tokens at random starts: x is each window without
its last token, y the same window shifted by one, so position t of y is the token that
follows positions 0..t of x.

    train_ids, val_ids = split_ids(ids, val_fraction=0.1)
    train_ids = take_fraction(train_ids, 0.25, block_size)   # a smaller training set
    x, y = get_batch(train_ids, 16, 32, generator, device)   # each (B, T)
"""

from __future__ import annotations

import torch
from torch import Tensor

from tinytf.config import ConfigError


def split_sizes(n_tokens: int, val_fraction: float) -> tuple[int, int]:
    """(train tokens, val tokens): val is `val_fraction` of n_tokens, rounded down."""
    n_val = int(n_tokens * val_fraction)
    return n_tokens - n_val, n_val


def check_fits(
    n_tokens: int, block_size: int, val_fraction: float, train_fraction: float = 1.0
) -> None:
    """Raise ConfigError unless each split holds at least one window of block_size + 1.

    The message names the field to change (block_size, or val_fraction / train_fraction
    when the context is already as small as it can usefully be).
    """
    n_train, n_val = split_sizes(n_tokens, val_fraction)
    n_train = int(n_train * train_fraction)
    need = block_size + 1
    if n_val < need:
        raise ConfigError(
            f"block_size: a context of {block_size} needs at least {need} validation tokens, "
            f"but val_fraction={val_fraction} of the {n_tokens:,} tokens leaves {n_val}; "
            "use a shorter context, a larger val_fraction or a longer text"
        )
    if n_train < need:
        field = "train_fraction" if train_fraction < 1.0 else "block_size"
        raise ConfigError(
            f"{field}: a context of {block_size} needs at least {need} training tokens, "
            f"but the training split of the {n_tokens:,} tokens "
            f"(train_fraction={train_fraction}) holds {n_train}; "
            "use a shorter context or more text"
        )


def split_ids(ids: Tensor, val_fraction: float) -> tuple[Tensor, Tensor]:
    """Split a 1-D id tensor into (train, val); val is the last val_fraction of it."""
    if ids.dim() != 1:
        raise ValueError(f"token ids must be 1-D, got shape {tuple(ids.shape)}")
    n_train, _ = split_sizes(ids.numel(), val_fraction)
    return ids[:n_train], ids[n_train:]


def take_fraction(train_ids: Tensor, fraction: float, block_size: int) -> Tensor:
    """The first `fraction` of the training split (a prefix, so 1% is inside 5% is inside
    25%); the validation split is left alone so the curves stay comparable.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"train_fraction: must be in (0, 1], got {fraction!r}")
    n_keep = int(train_ids.numel() * fraction)
    if n_keep < block_size + 1:
        raise ConfigError(
            f"train_fraction: {fraction} of {train_ids.numel():,} training tokens leaves "
            f"{n_keep}, fewer than one window of block_size + 1 = {block_size + 1}"
        )
    return train_ids[:n_keep]


def get_batch(
    split_ids: Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """`batch_size` random windows of `split_ids`, as inputs x and next-token targets y.

    The starts come from `generator` (a CPU generator), so the same generator state always
    gives the same batch, whatever the device.

    Returns:
        x, y: (B, T) int64 on `device`, with y[:, t] == split_ids[start + t + 1].
    """
    n_starts = split_ids.numel() - block_size
    if n_starts < 1:
        raise ConfigError(
            f"block_size: {block_size} does not fit a split of {split_ids.numel()} tokens"
        )
    starts = torch.randint(n_starts, (batch_size,), generator=generator)  # (B,)
    offsets = starts.unsqueeze(1) + torch.arange(block_size + 1)  # (B, T + 1)
    windows = split_ids[offsets]  # (B, T + 1)
    x = windows[:, :-1]  # (B, T)
    y = windows[:, 1:]  # (B, T)
    return x.to(device), y.to(device)
