"""Fused attention against attention by hand under mixed precision (bf16 / fp16 autocast).

Training runs the fused kernel under bf16 autocast on CUDA while the explorer's views run
the by-hand path; the two must agree to within what half precision allows, with a cache
(the mask offset by the cached positions) and without. The CUDA cases are the point and
are marked `gpu`; the CPU bf16 case runs everywhere, so the comparison itself is exercised
on machines without a GPU.
"""

from __future__ import annotations

import pytest
import torch

from tinytf.attention import CausalSelfAttention, LayerCache
from tinytf.config import ModelConfig
from tinytf.model import TinyGPT

CONFIG = ModelConfig(vocab_size=37, block_size=24, n_layer=2, n_head=4, n_embd=64)

# Half precision keeps 8 (bf16) or 11 (fp16) significant bits; after the projections, the
# scores, softmax and the weighted sum, differences of a few units in the last place of
# values near 1 are expected, so tolerances sit a little above 2^-8 and 2^-11 times a few.
TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 4e-3}

CASES = [
    pytest.param("cpu", torch.bfloat16, id="cpu-bf16"),
    pytest.param(
        "cuda",
        torch.bfloat16,
        id="cuda-bf16",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ],
    ),
    pytest.param(
        "cuda",
        torch.float16,
        id="cuda-fp16",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ],
    ),
]


def _attention(device: str) -> CausalSelfAttention:
    torch.manual_seed(0)
    # nn.Linear's default init (not the model's 0.02) gives scores of order 1, where a
    # wrong mask or scale would show as a large difference rather than hide in the noise.
    return CausalSelfAttention(CONFIG).to(device).eval()


def _input(device: str, length: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, length, CONFIG.n_embd, generator=generator).to(device)  # (B, T, C)


def _close(fused: torch.Tensor, by_hand: torch.Tensor, dtype: torch.dtype) -> None:
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(fused.float(), by_hand.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize(("device", "dtype"), CASES)
def test_fused_matches_by_hand_without_cache(device: str, dtype: torch.dtype) -> None:
    attention, x = _attention(device), _input(device, CONFIG.block_size, seed=1)
    with torch.no_grad(), torch.autocast(device_type=device, dtype=dtype):
        fused = attention(x)
        by_hand = attention(x, record={})
    assert fused.dtype == dtype  # autocast really ran the projections in half precision
    _close(fused, by_hand, dtype)


@pytest.mark.parametrize(("device", "dtype"), CASES)
@pytest.mark.parametrize("n_new", [1, 5], ids=["one-new", "five-new"])
def test_fused_matches_by_hand_with_cache(device: str, dtype: torch.dtype, n_new: int) -> None:
    """The cached path builds its own offset mask (T < S); both paths must apply it alike."""
    attention = _attention(device)
    past_x, new_x = _input(device, 11, seed=2), _input(device, n_new, seed=3)
    with torch.no_grad(), torch.autocast(device_type=device, dtype=dtype):
        past = LayerCache(CONFIG.block_size)
        attention(past_x, cache=past)
        fused_cache, hand_cache = past.clone(), past.clone()
        fused = attention(new_x, cache=fused_cache)
        by_hand = attention(new_x, cache=hand_cache, record={})
    _close(fused, by_hand, dtype)
    assert fused_cache.keys.shape == hand_cache.keys.shape == (2, CONFIG.n_head, 11 + n_new, 16)


@pytest.mark.parametrize(("device", "dtype"), CASES)
def test_whole_model_logits_agree_under_autocast(device: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = TinyGPT(CONFIG).to(device).eval()
    generator = torch.Generator().manual_seed(4)
    idx = torch.randint(CONFIG.vocab_size, (2, CONFIG.block_size), generator=generator)
    idx = idx.to(device)
    with torch.no_grad(), torch.autocast(device_type=device, dtype=dtype):
        fused = model(idx).logits
        by_hand = model(idx, capture=True).logits
    # The logits of a freshly initialised model are small (std ~0.1), so compare the
    # difference with their own scale rather than with an absolute tolerance.
    scale = by_hand.float().abs().max()
    assert (fused.float() - by_hand.float()).abs().max() <= TOLERANCE[dtype] * scale
