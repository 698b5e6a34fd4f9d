"""A tiny GPT-style language model: embeddings, pre-LayerNorm blocks, LM head.

Shape alphabet (every comment after a reshape uses it):
    B batch, T positions in this call, S positions in view (cached + T),
    C width n_embd, nh heads, hs head size, V vocabulary size.

Reading order: sinusoidal positions, the feed-forward, one block, the whole model.

References:
- Vaswani et al. 2017, "Attention Is All You Need" (positions, section 3.5);
- Radford et al. 2019, GPT-2 (LayerNorm before each sub-layer, a final LayerNorm,
  residual projections initialised smaller by 1/sqrt(2 * n_layer)).

Intermediates the explorer shows are named after interpretability habits: `resid_pre`,
`attn.scores`, `attn.masked_scores`, `attn.pattern`, `resid_mid`, `mlp_out`, `resid_post`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinytf.attention import CausalSelfAttention, LayerCache
from tinytf.config import ModelConfig


def sinusoidal_positions(n_positions: int, width: int) -> Tensor:
    """(n_positions, width) table: column 2i holds sin(pos / 10000^(2i/width)), 2i+1 the cos.

    Each pair of columns is a clock of its own frequency, from one turn every 2π positions
    down to one turn every 10000·2π, so nearby positions get similar vectors.
    """
    if width % 2:
        raise ValueError(f"sinusoidal positions need an even width, got {width}")
    position = torch.arange(n_positions, dtype=torch.float32).unsqueeze(1)  # (P, 1)
    frequency = torch.exp(
        torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width)
    )  # (width / 2,)
    table = torch.zeros(n_positions, width)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table  # (P, width)


class FeedForward(nn.Module):
    """Position-wise MLP: widen 4x, GELU, narrow back. Each position on its own."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.down = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, record: dict[str, Tensor] | None = None) -> Tensor:
        hidden = F.gelu(self.up(x))  # (B, T, 4C)
        if record is not None:
            record["mlp.hidden"] = hidden
        return self.dropout(self.down(hidden))  # (B, T, C)


class Block(nn.Module):
    """x + attn(LN1(x)), then + mlp(LN2(.)): the pre-LayerNorm residual block."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.mlp = FeedForward(config)

    def forward(
        self,
        x: Tensor,
        cache: LayerCache | None = None,
        record: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """(B, T, C) in, (B, T, C) out; `cache` (if given) gains this call's keys and values."""
        attn_record = None if record is None else {}

        normed = self.ln1(x)  # (B, T, C)
        attn_out = self.attn(normed, cache=cache, record=attn_record)
        mid = x + attn_out  # (B, T, C)

        normed2 = self.ln2(mid)
        mlp_out = self.mlp(normed2, record=record)
        out = mid + mlp_out  # (B, T, C)

        if record is not None:
            record.update({f"attn.{name}": t for name, t in attn_record.items()})
            record.update(
                resid_pre=x,
                ln1_out=normed,
                attn_out=attn_out,
                resid_mid=mid,
                ln2_out=normed2,
                mlp_out=mlp_out,
                resid_post=out,
            )
        return out


class KVCache:
    """Every layer's cached keys and values, for generating one token at a time.

    Made by the model's first call with use_cache=True and filled in place by each call
    it is passed to, so the object a call returns is the one it was given.
    """

    def __init__(self, n_layer: int, capacity: int) -> None:
        self.layers = [LayerCache(capacity) for _ in range(n_layer)]

    @property
    def length(self) -> int:
        """How many positions are cached."""
        return self.layers[0].length

    def clone(self) -> KVCache:
        """An independent copy, to continue a prefix in two different ways."""
        copy = KVCache(0, 0)
        copy.layers = [layer.clone() for layer in self.layers]
        return copy


@dataclass
class ModelOutput:
    """What one forward pass gives back."""

    logits: Tensor  # (B, T, V) next-token scores at every position
    loss: Tensor | None = None  # mean cross-entropy, when targets were given
    cache: dict[str, Tensor] | None = None  # named intermediates, when capture=True
    past: KVCache | None = None  # every layer's keys and values, when use_cache=True


class TinyGPT(nn.Module):
    """Token embedding + positions, n_layer blocks, final LayerNorm, LM head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_embed = nn.Embedding(config.vocab_size, config.n_embd)
        if config.positions == "learned":
            self.pos_embed = nn.Embedding(config.block_size, config.n_embd)
        else:
            # Not a parameter and not saved: it is rebuilt from the config on load.
            table = sinusoidal_positions(config.block_size, config.n_embd)
            self.register_buffer("pos_table", table, persistent=False)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_final = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        # The sinusoidal table is fixed, each entry a sin or cos of RMS 0.71. Token vectors
        # started at GPT-2's std 0.02 would be 35 times smaller, and after the first
        # LayerNorm the model would see where a token stands far more than which token it
        # is. Starting them at std 1 puts the two on an equal footing. (Learned positions
        # start at 0.02 like the tokens, as in GPT-2.) On tiny Shakespeare this cut the
        # steps to a validation loss of 2.0 from 1,250 to 1,000 at lr 1e-3, and let lr 3e-3
        # work at all (650 steps instead of no progress past 2.36): docs/benchmarks.md.
        if self.config.positions == "sinusoidal":
            nn.init.normal_(self.tok_embed.weight, mean=0.0, std=1.0)
        # Each block adds two projections into the residual stream; shrinking them keeps
        # the stream's variance from growing with depth (GPT-2, section 2.3).
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.down.weight, mean=0.0, std=residual_std)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def positions(self, start: int, length: int) -> Tensor:
        """(length, C) position vectors for absolute positions start .. start+length-1."""
        if self.config.positions == "learned":
            index = torch.arange(start, start + length, device=self.tok_embed.weight.device)
            return self.pos_embed(index)
        return self.pos_table[start : start + length]

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        *,
        capture: bool = False,
        past: KVCache | None = None,
        use_cache: bool = False,
    ) -> ModelOutput:
        """Run the model on token ids.

        Args:
            idx: (B, T) token ids. Without targets or a cache, a T beyond block_size is
                cropped to the last block_size tokens, as a prompt is.
            targets: (B, T) next-token ids; gives the mean cross-entropy loss.
            capture: keep every intermediate, by name, in `output.cache`, and compute
                attention by hand (otherwise the fused kernel runs).
            past: the cache an earlier call returned; this call's keys and values are
                added to it (in place).
            use_cache: return the cache, holding every position so far, in `output.past`
                (a new one when `past` is None).
        """
        start = 0 if past is None else past.length
        idx = self._crop(idx, targets, start)
        T = idx.size(1)

        x = self.tok_embed(idx) + self.positions(start, T)  # (B, T, C)
        x = self.embed_dropout(x)

        if use_cache and past is None:
            past = KVCache(len(self.blocks), self.config.block_size)
        cache: dict[str, Tensor] | None = {} if capture else None
        for i, block in enumerate(self.blocks):
            record = {} if capture else None
            x = block(x, cache=None if past is None else past.layers[i], record=record)
            if capture:
                cache.update({f"blocks.{i}.{name}": t for name, t in record.items()})

        x = self.ln_final(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, V)
        if capture:
            cache["ln_final_out"] = x
            cache["logits"] = logits

        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return ModelOutput(logits=logits, loss=loss, cache=cache, past=past if use_cache else None)

    def _crop(self, idx: Tensor, targets: Tensor | None, start: int) -> Tensor:
        block_size = self.config.block_size
        if start + idx.size(1) <= block_size:
            return idx
        if targets is not None or start > 0:
            raise ValueError(
                f"{start + idx.size(1)} positions do not fit the context of {block_size}"
            )
        return idx[:, -block_size:]
