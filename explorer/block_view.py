"""The Block stepper's inputs and steps. No Streamlit here.

block, x, labels = controlled_setup("hand-set", "abcab", seed=0)
steps = walkthrough(block, x)           # 13 steps, LN1 ... resid_post
agreement(block, x, steps)              # max |block(x) - last step|, ~1e-7
"""

from __future__ import annotations

import torch
from torch import Tensor

from explorer.render import visible_token
from tinytf.diagnostics import Step, block_walkthrough, controlled_block
from tinytf.model import Block

CONTROLLED_WIDTH = 4  # n_embd of the controlled blocks: few enough numbers to read
CONTROLLED_HEADS = 2
MAX_TEXT = 8  # positions in the controlled input

STEP_TITLES = {
    "ln1": "LayerNorm 1",
    "q": "Queries Q",
    "k": "Keys K",
    "v": "Values V",
    "scores": "Scores",
    "masked_scores": "Causal mask applied",
    "softmax": "Softmax",
    "weighted_sum": "Weighted sum of values",
    "attn_proj": "Output projection",
    "resid_mid": "Residual 1",
    "ln2": "LayerNorm 2",
    "ffn": "Feed-forward",
    "resid_post": "Residual 2 (block output)",
}


def controlled_input(text: str, width: int, seed: int) -> tuple[Tensor, list[str]]:
    """(T, width) input for a controlled block: one seeded vector per distinct character,
    so a repeated character has the same vector wherever it appears; and its labels.

    The global random state is left alone (the vectors come from a private generator).
    """
    text = text[:MAX_TEXT] or "a"
    alphabet = sorted(set(text))
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(len(alphabet), width, generator=generator).round(decimals=1)
    x = torch.stack([table[alphabet.index(ch)] for ch in text])  # (T, C)
    return x, [visible_token(ch) for ch in text]


def controlled_setup(kind: str, text: str, seed: int) -> tuple[Block, Tensor, list[str]]:
    """A controlled block (identity, hand-set or random) and its input."""
    block = controlled_block(kind, CONTROLLED_WIDTH, CONTROLLED_HEADS, seed=seed)
    x, labels = controlled_input(text, CONTROLLED_WIDTH, seed)
    return block, x, labels


def walkthrough(block: Block, x: Tensor) -> list[Step]:
    """`block_walkthrough` on a (T, C) input (no batch axis in the steps)."""
    return block_walkthrough(block, x)


@torch.no_grad()
def agreement(block: Block, x: Tensor, steps: list[Step]) -> float:
    """Largest |block.forward(x) - the walk-through's last step|."""
    was_training = block.training
    block.eval()
    try:
        out = block(x.unsqueeze(0))  # (1, T, C)
    finally:
        block.train(was_training)
    return float((out[0] - steps[-1].tensor).abs().max())
