"""Multi-head causal self-attention, written out one step at a time.

Shape alphabet (shared with model.py):
    B batch, T new positions, S positions in view (cached past + T),
    C width n_embd, nh heads, hs head size = C // nh.

Two paths compute the same thing:
- the teaching path (`record` given) does every step by hand and keeps each intermediate:
  scores = Q Kᵀ / sqrt(hs), the causal mask, softmax, pattern @ V;
- the fast path (`record` is None) hands the same computation to PyTorch's fused
  `scaled_dot_product_attention`, which never materialises the (T, S) matrices.
Tests hold the two paths equal.

Reference: Vaswani et al. 2017, "Attention Is All You Need", section 3.2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinytf.config import ModelConfig

KeyValue = tuple[Tensor, Tensor]  # keys and values, each (B, nh, S, hs)


class LayerCache:
    """One layer's keys and values of the positions seen so far, for generation.

    The buffers are allocated once, for `capacity` positions, on the first call; each later
    call writes its new keys and values after the ones already there. Growing the cache with
    torch.cat instead would copy every cached position again at every new token.

    The cache is filled in place: extending it twice from the same length writes the same
    slots twice, so a cache follows one line of text (copy it with `clone` to branch).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.length = 0
        self._keys: Tensor | None = None  # (B, nh, capacity, hs) once allocated
        self._values: Tensor | None = None

    def extend(self, k: Tensor, v: Tensor) -> KeyValue:
        """Append (B, nh, T, hs) keys and values; the views of all S positions so far."""
        end = self.length + k.size(2)
        if end > self.capacity:
            raise ValueError(f"{end} positions do not fit the cache of {self.capacity}")
        if self._keys is None:
            B, nh, _, hs = k.shape
            self._keys = k.new_empty(B, nh, self.capacity, hs)
            self._values = v.new_empty(B, nh, self.capacity, hs)
        self._keys[:, :, self.length : end] = k
        self._values[:, :, self.length : end] = v
        self.length = end
        return self.keys, self.values

    @property
    def keys(self) -> Tensor:
        """(B, nh, S, hs) the cached keys (a view of the buffer)."""
        return self._keys[:, :, : self.length]

    @property
    def values(self) -> Tensor:
        """(B, nh, S, hs) the cached values (a view of the buffer)."""
        return self._values[:, :, : self.length]

    def clone(self) -> LayerCache:
        """An independent copy, to extend along another line."""
        copy = LayerCache(self.capacity)
        copy.length = self.length
        if self._keys is not None:
            copy._keys, copy._values = self._keys.clone(), self._values.clone()
        return copy


def causal_mask(n_queries: int, n_keys: int, device: torch.device | None = None) -> Tensor:
    """Boolean (n_queries, n_keys) mask, True where a query may look at a key.

    The queries are the last `n_queries` of the `n_keys` positions, so query i sits at
    absolute position n_keys - n_queries + i and sees every key up to and including itself.
    """
    offset = n_keys - n_queries
    rows = torch.arange(n_queries, device=device).unsqueeze(1) + offset  # (Tq, 1)
    cols = torch.arange(n_keys, device=device).unsqueeze(0)  # (1, S)
    return cols <= rows  # (Tq, S)


class CausalSelfAttention(nn.Module):
    """nh heads of scaled dot-product attention over earlier positions only."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_size = config.head_size
        self.dropout = config.dropout

        # One matrix makes Q, K and V together (one matmul instead of three); its output
        # is split into the three right after.
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        cache: LayerCache | None = None,
        record: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """Attend over the positions in `cache` (if any) and `x`.

        Args:
            x: (B, T, C) the layer-normed residual stream of the new positions.
            cache: keys and values of the S - T earlier positions; this call's are added.
            record: when a dict, every intermediate is computed by hand and stored in it.

        Returns:
            (B, T, C) output.
        """
        B, T, C = x.shape

        # 1. Project to queries, keys and values and give each head its own slice.
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, C)
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)

        # 2. Put the new keys and values after the cached ones.
        if cache is not None:
            k, v = cache.extend(k, v)  # each (B, nh, S, hs)

        y = self._fused(q, k, v) if record is None else self._by_hand(q, k, v, record)
        # y: (B, nh, T, hs)

        # 3. Lay the heads side by side again and mix them with the output projection.
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.proj(y))

    def _fused(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        T, S = q.size(2), k.size(2)
        dropout_p = self.dropout if self.training else 0.0
        if T == S:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        # With a cache, PyTorch's is_causal aligns the mask top-left, which is wrong
        # here: the queries are the last T of S positions. One new token sees every key.
        mask = None if T == 1 else causal_mask(T, S, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)

    def _by_hand(self, q: Tensor, k: Tensor, v: Tensor, record: dict[str, Tensor]) -> Tensor:
        T, S = q.size(2), k.size(2)

        # Scaling by 1/sqrt(hs) keeps the scores' spread near 1 whatever the head size,
        # so softmax does not saturate into a one-hot at initialisation.
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_size)  # (B, nh, T, S)

        # A position may not look ahead: later keys get -inf, which softmax turns into 0.
        allowed = causal_mask(T, S, q.device)  # (T, S)
        masked_scores = scores.masked_fill(~allowed, float("-inf"))  # (B, nh, T, S)

        pattern = torch.softmax(masked_scores, dim=-1)  # (B, nh, T, S), rows sum to 1
        z = self.attn_dropout(pattern) @ v  # (B, nh, T, hs)

        record.update(
            q=q, k=k, v=v, scores=scores, masked_scores=masked_scores, pattern=pattern, z=z
        )
        return z
