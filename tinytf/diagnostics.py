"""Checks and worked examples that show the model does what the lesson says.

Shared by the tests and the explorer:
- `hand_worked_attention`: three tokens, head size 2, numbers small enough to follow
  with pencil and paper, run through the model's own attention code;
- `causal_check`: change every token after a position and show that no logit at or
  before it moves, and that every attention pattern is zero above its diagonal;
- `block_walkthrough`: one transformer block computed one step at a time from its own
  weights, ending exactly where the block's forward ends;
- `controlled_block`: a block with weights chosen by hand (identity, a documented
  pattern) or by a seed, to feed the walk-through.

Shape alphabet as in model.py: B batch, T positions, C width, nh heads, hs head size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from tinytf.attention import CausalSelfAttention
from tinytf.config import ModelConfig
from tinytf.device import GLOBAL_RNG_LOCK
from tinytf.model import Block, ModelOutput, TinyGPT

CONTROLLED_KINDS = ("identity", "hand-set", "random")
LOGIT_TOLERANCE = 1e-6  # largest logit change the causal check accepts
ROW_SUM_TOLERANCE = 1e-5  # float32 rounding over up to block_size terms stays well below

# The hand-worked example: query, key and value vectors of three tokens, head size 2.
_HAND_Q = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
_HAND_K = [[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]
_HAND_V = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]


# One line per step of `block_walkthrough`, in order.
STEP_EXPLANATIONS = {
    "ln1": "LayerNorm: each position's vector set to mean 0 and variance 1, then × γ + β",
    "q": "queries, ln1 @ W_qᵀ + b_q cut into heads: what each position looks for",
    "k": "keys, ln1 @ W_kᵀ + b_k cut into heads: what each position can be found by",
    "v": "values, ln1 @ W_vᵀ + b_v cut into heads: what each position hands on",
    "scores": "q · k for every pair of positions, divided by sqrt(head size)",
    "masked_scores": "scores of later positions set to -inf: no looking ahead",
    "softmax": "each row made into weights ≥ 0 that sum to 1: the attention pattern",
    "weighted_sum": "per head, each position's weighted average of the values (pattern @ v)",
    "attn_proj": "the heads laid side by side and mixed by the output projection W_o",
    "resid_mid": "first residual: the block's input plus the attention output",
    "ln2": "LayerNorm again, on the stream after attention",
    "ffn": "feed-forward: widen 4×, GELU, narrow back, each position on its own",
    "resid_post": "second residual: the stream plus the feed-forward output",
}


class DiagnosticsError(ValueError):
    """A diagnostic asked for something that cannot be checked; the message says why."""


def hand_worked_attention() -> dict[str, Tensor]:
    """Causal attention of 3 tokens with d_k = 2, small enough to redo by hand.

    Q = [[1, 0], [0, 1], [1, 1]], K = [[1, 0], [1, 1], [0, 2]], V = [[1, 0], [0, 2], [1, 1]].
    The steps run through the model's own attention code (one head of size 2).

    Returns:
        q, k, v (3, 2); qk = Q Kᵀ, scaled = qk / sqrt(2), masked (-inf above the
        diagonal), weights = softmax of each row, all (3, 3); output = weights @ V (3, 2).
    """
    q, k, v = (torch.tensor(m).view(1, 1, 3, 2) for m in (_HAND_Q, _HAND_K, _HAND_V))
    config = ModelConfig(vocab_size=1, block_size=3, n_layer=1, n_head=1, n_embd=2)
    attention = CausalSelfAttention(config).eval()

    record: dict[str, Tensor] = {}
    with torch.no_grad():
        attention._by_hand(q, k, v, record)  # the model's teaching path, step by step
        qk = q @ k.transpose(-2, -1)  # (1, 1, 3, 3), before the scaling the model folds in

    steps = {
        "q": q,
        "k": k,
        "v": v,
        "qk": qk,
        "scaled": record["scores"],
        "masked": record["masked_scores"],
        "weights": record["pattern"],
        "output": record["z"],
    }
    return {name: t[0, 0] for name, t in steps.items()}  # drop batch and head: (3, 2), (3, 3)


@dataclass(frozen=True)
class HeadCheck:
    """One head's attention pattern, checked on the original and the changed ids."""

    layer: int
    head: int
    above_diagonal: float  # largest |weight| on a future position (must be exactly 0)
    row_sum_error: float  # largest |row sum - 1|


@dataclass(frozen=True)
class CausalCheck:
    """Result of `causal_check`."""

    position: int  # the last position whose past is kept
    ids: list[int]  # the ids as given
    changed_ids: list[int]  # the same ids with every token after `position` replaced
    max_logit_diff: float  # largest logit change at positions 0 .. position
    max_above_diagonal: float
    max_row_sum_error: float
    heads: list[HeadCheck]
    passed: bool


def causal_check(
    model: TinyGPT, ids: list[int] | Tensor, position: int, seed: int = 0
) -> CausalCheck:
    """Show that positions up to `position` cannot see the tokens after it.

    Every token after `position` is replaced by a different one (chosen with `seed`); the
    logits at positions 0 .. position must not move (fused and by-hand attention both),
    and every layer's and head's attention pattern must be exactly zero above the
    diagonal with rows summing to 1.

    Args:
        model: the model, run in eval mode without gradients (its mode is restored).
        ids: (T,) or (1, T) token ids, T at most block_size.
        position: 0 .. T - 1.
    """
    original = _checked_ids(model, ids)
    T, V = original.numel(), model.config.vocab_size
    if not 0 <= position < T:
        raise DiagnosticsError(f"position: must be in 0 .. {T - 1}, got {position}")

    # Adding 1 .. V-1 modulo V always lands on another token.
    generator = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, V, (T,), generator=generator)
    changed = original.clone()
    changed[position + 1 :] = (original[position + 1 :] + shift[position + 1 :]) % V

    # Outputs: fused original, fused changed, by-hand original, by-hand changed.
    outputs = _run_both_paths(model, [original, changed])
    diff = 0.0
    for first, second in [(outputs[0], outputs[1]), (outputs[2], outputs[3])]:
        delta = (first.logits - second.logits)[:, : position + 1].abs().max()
        diff = max(diff, float(delta))

    heads = _check_patterns([outputs[2].cache, outputs[3].cache], model.config.n_layer)
    above = max(h.above_diagonal for h in heads)
    row_error = max(h.row_sum_error for h in heads)
    return CausalCheck(
        position=position,
        ids=original.tolist(),
        changed_ids=changed.tolist(),
        max_logit_diff=diff,
        max_above_diagonal=above,
        max_row_sum_error=row_error,
        heads=heads,
        passed=diff < LOGIT_TOLERANCE and above == 0.0 and row_error < ROW_SUM_TOLERANCE,
    )


def _checked_ids(model: TinyGPT, ids: list[int] | Tensor) -> Tensor:
    original = torch.as_tensor(ids, dtype=torch.long).cpu()
    if original.dim() == 2 and original.size(0) == 1:
        original = original[0]
    if original.dim() != 1 or original.numel() == 0:
        raise DiagnosticsError(
            f"ids: expected a non-empty (T,) sequence, got {tuple(original.shape)}"
        )
    block_size, V = model.config.block_size, model.config.vocab_size
    if original.numel() > block_size:
        raise DiagnosticsError(f"ids: {original.numel()} tokens exceed block_size={block_size}")
    if V < 2:
        raise DiagnosticsError("vocab_size: needs at least 2 tokens to replace one by another")
    if original.min() < 0 or original.max() >= V:
        raise DiagnosticsError(f"ids: token ids must be in 0 .. {V - 1}")
    return original


def _run_both_paths(model: TinyGPT, sequences: list[Tensor]) -> list[ModelOutput]:
    """Outputs for each sequence: fused first, then by hand (with the cache)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [
                model(seq.unsqueeze(0).to(device), capture=capture)
                for capture in (False, True)
                for seq in sequences
            ]
    finally:
        model.train(was_training)


def _check_patterns(caches: list[dict[str, Tensor]], n_layer: int) -> list[HeadCheck]:
    """Per layer and head, the worst values over the runs in `caches`."""
    checks = []
    for layer in range(n_layer):
        # Both runs stacked: (runs, nh, T, T).
        pattern = torch.stack([c[f"blocks.{layer}.attn.pattern"][0] for c in caches])
        pattern = pattern.float().cpu()
        T = pattern.size(-1)
        future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)  # (T, T)
        for head in range(pattern.size(1)):
            weights = pattern[:, head]  # (runs, T, T)
            above = float(weights[:, future].abs().max()) if T > 1 else 0.0
            row_error = float((weights.sum(dim=-1) - 1).abs().max())
            checks.append(HeadCheck(layer, head, above, row_error))
    return checks


@dataclass(frozen=True)
class Step:
    """One named step of the block walk-through."""

    name: str
    tensor: Tensor
    explanation: str


def block_walkthrough(block: Block, x: Tensor) -> list[Step]:
    """Compute one block step by step from its own weights, without calling its modules.

    Args:
        block: a `Block`; dropout is not applied (the result is the eval-mode forward).
        x: (B, T, C), or (T, C) for one sequence, whose steps then have no batch axis.

    Returns:
        Steps ln1, q, k, v, scores, masked_scores, softmax, weighted_sum, attn_proj,
        resid_mid, ln2, ffn, resid_post. q, k, v and weighted_sum are per head
        (B, nh, T, hs); scores, masked_scores and softmax are (B, nh, T, T); weighted_sum
        is pattern @ V before the heads are laid side by side; the rest are (B, T, C).
    """
    single = x.dim() == 2
    x = x.unsqueeze(0) if single else x  # (B, T, C)
    B, T, C = x.shape
    attn, mlp = block.attn, block.mlp
    nh, hs = attn.n_head, attn.head_size

    with torch.no_grad():
        ln1 = _layer_norm(x, block.ln1.weight, block.ln1.bias, block.ln1.eps)

        # 1. One weight matrix holds W_q, W_k, W_v stacked; each row block is one of them.
        w_q, w_k, w_v = attn.qkv.weight.split(C, dim=0)  # each (C, C)
        b_q, b_k, b_v = (None,) * 3 if attn.qkv.bias is None else attn.qkv.bias.split(C)
        q = _split_heads(_linear(ln1, w_q, b_q), nh)  # (B, nh, T, hs)
        k = _split_heads(_linear(ln1, w_k, b_k), nh)  # (B, nh, T, hs)
        v = _split_heads(_linear(ln1, w_v, b_v), nh)  # (B, nh, T, hs)

        # 2. Scores, the causal mask and softmax, written out.
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(diagonal=1)
        masked = scores.masked_fill(future, float("-inf"))  # (B, nh, T, T)
        shifted = torch.exp(masked - masked.amax(dim=-1, keepdim=True))
        pattern = shifted / shifted.sum(dim=-1, keepdim=True)  # (B, nh, T, T)

        # 3. Mix the values, lay the heads side by side, project, add to the stream.
        weighted = pattern @ v  # (B, nh, T, hs)
        heads = weighted.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        attn_proj = _linear(heads, attn.proj.weight, attn.proj.bias)
        resid_mid = x + attn_proj

        # 4. The feed-forward on the normed stream, added to the stream again.
        ln2 = _layer_norm(resid_mid, block.ln2.weight, block.ln2.bias, block.ln2.eps)
        hidden = _gelu(_linear(ln2, mlp.up.weight, mlp.up.bias))  # (B, T, 4C)
        ffn = _linear(hidden, mlp.down.weight, mlp.down.bias)
        resid_post = resid_mid + ffn

    tensors = {
        "ln1": ln1,
        "q": q,
        "k": k,
        "v": v,
        "scores": scores,
        "masked_scores": masked,
        "softmax": pattern,
        "weighted_sum": weighted,
        "attn_proj": attn_proj,
        "resid_mid": resid_mid,
        "ln2": ln2,
        "ffn": ffn,
        "resid_post": resid_post,
    }
    return [
        Step(name, t[0] if single else t, STEP_EXPLANATIONS[name]) for name, t in tensors.items()
    ]


def _layer_norm(x: Tensor, weight: Tensor, bias: Tensor | None, eps: float) -> Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased, as LayerNorm uses
    normed = (x - mean) / torch.sqrt(var + eps)
    return normed * weight + (0 if bias is None else bias)


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return x @ weight.T + (0 if bias is None else bias)


def _split_heads(t: Tensor, n_head: int) -> Tensor:
    B, T, C = t.shape
    return t.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, nh, T, hs)


def _gelu(x: Tensor) -> Tensor:
    """GELU with the exact normal CDF, as F.gelu computes by default."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def controlled_block(kind: str, n_embd: int, n_head: int, seed: int = 0) -> Block:
    """A block (eval mode, no dropout) whose weights are known, for the walk-through.

    - "identity": W_q = W_k = W_v = W_o = I, every bias 0, LayerNorms γ = 1, β = 0, the
      feed-forward all zeros. So q = k = v = ln1, and resid_post = resid_mid.
    - "hand-set": W_q = 0, so every score is 0 and each position averages the values of
      itself and all positions before it (a running mean); W_k = W_v = W_o = I; the
      feed-forward passes its first C hidden units through GELU (W_up = [I; 0],
      W_down = [I, 0]), so ffn = GELU(ln2). Biases 0, LayerNorms plain.
    - "random": PyTorch's default initialisation under `seed`, with LayerNorm γ and β
      drawn as 1 + 0.1·N(0, 1) and 0.1·N(0, 1) so that they matter too.

    The global random state is left as it was.
    """
    if kind not in CONTROLLED_KINDS:
        raise DiagnosticsError(f"kind: must be one of {CONTROLLED_KINDS}, got {kind!r}")
    # Learned positions: the block never sees them, and they allow an odd width.
    config = ModelConfig(
        vocab_size=1, block_size=1, n_layer=1, n_head=n_head, n_embd=n_embd, positions="learned"
    )
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        block = Block(config)
        with torch.no_grad():
            if kind == "random":
                for norm in (block.ln1, block.ln2):
                    norm.weight.copy_(1 + 0.1 * torch.randn(n_embd))
                    norm.bias.copy_(0.1 * torch.randn(n_embd))
            else:
                _set_by_hand(block, kind, n_embd)
    return block.eval()


def _set_by_hand(block: Block, kind: str, n_embd: int) -> None:
    eye = torch.eye(n_embd)
    for param in block.parameters():
        param.zero_()
    for norm in (block.ln1, block.ln2):
        norm.weight.fill_(1.0)

    w_q = eye if kind == "identity" else torch.zeros(n_embd, n_embd)
    block.attn.qkv.weight.copy_(torch.cat([w_q, eye, eye]))  # (3C, C)
    block.attn.proj.weight.copy_(eye)
    if kind == "hand-set":
        block.mlp.up.weight[:n_embd].copy_(eye)  # (4C, C): first C rows
        block.mlp.down.weight[:, :n_embd].copy_(eye)  # (C, 4C): first C columns
