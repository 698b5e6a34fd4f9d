"""Run a prompt through a model with every intermediate kept, for the analysis pages.

No Streamlit here. Unknown words in the prompt are not an error: they become `<unk>` (id
0), which the model has an embedding for, and their labels read ⟨word⟩? so nobody mistakes
them for what was typed.

    view = run_prompt(model, tokenizer, "Beautiful is better")
    view.labels, view.unknown, view.pattern(layer=0, head=1)    # (T, T)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from explorer.render import token_label
from tinytf.attention import causal_mask
from tinytf.model import TinyGPT
from tinytf.tokenizer import Tokenizer


class PromptError(ValueError):
    """A prompt that gives nothing to look at (no token at all)."""


@dataclass
class PromptView:
    """A prompt's tokens, as the model saw them, and the forward pass's intermediates."""

    ids: list[int]  # token ids, cropped to the model's context
    tokens: list[str]  # the pieces as typed
    unknown: list[bool]  # True where a piece became <unk>
    cropped: int  # tokens dropped from the front to fit block_size
    cache: dict[str, Tensor]  # model(idx, capture=True).cache, batch of one

    @property
    def labels(self) -> list[str]:
        """Axis labels: whitespace made visible, unknown pieces as ⟨piece⟩?."""
        return [token_label(t, u) for t, u in zip(self.tokens, self.unknown, strict=True)]

    @property
    def unknown_tokens(self) -> list[str]:
        return [t for t, u in zip(self.tokens, self.unknown, strict=True) if u]

    def n_layers_heads(self) -> tuple[int, int]:
        pattern = self.cache["blocks.0.attn.pattern"]  # (1, nh, T, T)
        n_layer = sum(1 for name in self.cache if name.endswith(".attn.pattern"))
        return n_layer, pattern.size(1)

    def pattern(self, layer: int, head: int) -> Tensor:
        """(T, T) softmax weights of one head."""
        return self.cache[f"blocks.{layer}.attn.pattern"][0, head]

    def scores(self, layer: int, head: int) -> Tensor:
        """(T, T) raw scores Q Kᵀ / sqrt(hs), before the mask."""
        return self.cache[f"blocks.{layer}.attn.scores"][0, head]

    def masked_scores(self, layer: int, head: int) -> Tensor:
        """(T, T) scores with the future set to -inf."""
        return self.cache[f"blocks.{layer}.attn.masked_scores"][0, head]

    def mask(self) -> Tensor:
        """(T, T) bool, True where a query may look at a key."""
        T = len(self.ids)
        return causal_mask(T, T)

    def all_patterns(self) -> Tensor:
        """(L, nh, T, T) every head of every layer."""
        n_layer, _ = self.n_layers_heads()
        return torch.stack([self.cache[f"blocks.{i}.attn.pattern"][0] for i in range(n_layer)])


def encode_for_model(
    tokenizer: Tokenizer, text: str, block_size: int
) -> tuple[list[int], list[str], list[bool], int]:
    """(ids, pieces, unknown flags, cropped count) of `text`, cut to its last block_size.

    Raises:
        PromptError: the text holds no token at all.
    """
    encoding = tokenizer.encode_prompt(text)
    if not encoding.ids:
        raise PromptError("the prompt is empty: type at least one character or word")
    cropped = max(0, len(encoding.ids) - block_size)
    return (
        encoding.ids[cropped:],
        encoding.tokens[cropped:],
        encoding.unknown[cropped:],
        cropped,
    )


@torch.no_grad()
def run_prompt(model: TinyGPT, tokenizer: Tokenizer, text: str) -> PromptView:
    """Encode `text` and run it through `model` with capture on (eval mode, no gradients)."""
    ids, tokens, unknown, cropped = encode_for_model(tokenizer, text, model.config.block_size)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        out = model(torch.tensor([ids], device=device), capture=True)
    finally:
        model.train(was_training)
    cache = {name: tensor.detach().cpu() for name, tensor in out.cache.items()}
    return PromptView(ids=ids, tokens=tokens, unknown=unknown, cropped=cropped, cache=cache)


@torch.no_grad()
def output_differences(model: TinyGPT, ids: list[int], position: int, new_id: int) -> Tensor:
    """(T,) largest |logit change| at each position when token `position` becomes `new_id`.

    A causal model must give exact zeros before `position`: nothing there can see it.
    """
    if not 0 <= position < len(ids):
        raise ValueError(f"position {position} is outside the prompt of {len(ids)} tokens")
    changed = list(ids)
    changed[position] = new_id
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        batch = torch.tensor([ids, changed], device=device)  # (2, T)
        logits = model(batch).logits.cpu()  # (2, T, V)
    finally:
        model.train(was_training)
    return (logits[0] - logits[1]).abs().amax(dim=-1)  # (T,)
