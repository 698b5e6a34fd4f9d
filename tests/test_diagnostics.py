"""The hand-worked attention example, the causal check, and the block walk-through."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tinytf.attention
from tinytf.config import ModelConfig
from tinytf.diagnostics import (
    STEP_EXPLANATIONS,
    DiagnosticsError,
    block_walkthrough,
    causal_check,
    controlled_block,
    hand_worked_attention,
)
from tinytf.model import TinyGPT

INF = float("inf")
STEP_NAMES = [
    "ln1",
    "q",
    "k",
    "v",
    "scores",
    "masked_scores",
    "softmax",
    "weighted_sum",
    "attn_proj",
    "resid_mid",
    "ln2",
    "ffn",
    "resid_post",
]


def _assert_close(tensor: torch.Tensor, expected: list[list[float]]) -> None:
    assert torch.allclose(tensor, torch.tensor(expected, dtype=torch.float32), atol=1e-6), tensor


def test_hand_worked_attention_matches_pencil_and_paper() -> None:
    ex = hand_worked_attention()
    _assert_close(ex["q"], [[1, 0], [0, 1], [1, 1]])
    _assert_close(ex["k"], [[1, 0], [1, 1], [0, 2]])
    _assert_close(ex["v"], [[1, 0], [0, 2], [1, 1]])

    # Q Kᵀ: row i holds q_i · k_j, e.g. q_2 · k_1 = 1·1 + 1·1 = 2.
    _assert_close(ex["qk"], [[1, 1, 0], [0, 1, 2], [1, 2, 2]])
    # ÷ sqrt(2): 1 / 1.414214 = 0.707107, 2 / 1.414214 = 1.414214.
    r, s = 0.707107, 1.414214
    _assert_close(ex["scaled"], [[r, r, 0], [0, r, s], [r, s, s]])
    assert ex["masked"].tolist()[0][1:] == [-INF, -INF]
    assert ex["masked"].tolist()[1][2] == -INF
    _assert_close(ex["masked"].clamp(min=-9), [[r, -9, -9], [0, r, -9], [r, s, s]])

    # Row 1: e^0 = 1 and e^0.707107 = 2.028115, over 3.028115.
    # Row 2: e^0.707107 = 2.028115, e^1.414214 = 4.113250 twice, over 10.254615.
    _assert_close(
        ex["weights"],
        [[1, 0, 0], [0.330238, 0.669762, 0], [0.197776, 0.401112, 0.401112]],
    )
    # Row 1: 0.330238·[1, 0] + 0.669762·[0, 2]; row 2 adds 0.401112·[1, 1].
    _assert_close(ex["output"], [[1, 0], [0.330238, 1.339523], [0.598888, 1.203336]])


def test_hand_worked_attention_agrees_with_pytorch() -> None:
    ex = hand_worked_attention()
    expected = F.scaled_dot_product_attention(ex["q"], ex["k"], ex["v"], is_causal=True)
    assert torch.allclose(ex["output"], expected, atol=1e-6)


@pytest.fixture
def model() -> TinyGPT:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=16)
    return TinyGPT(config).eval()


IDS = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]


@pytest.mark.parametrize("position", [0, 4, 9])
def test_causal_check_passes_on_the_model(model: TinyGPT, position: int) -> None:
    check = causal_check(model, IDS, position, seed=1)
    assert check.passed
    assert check.max_logit_diff < 1e-6
    assert check.max_above_diagonal == 0.0
    assert check.max_row_sum_error < 1e-5
    assert [(h.layer, h.head) for h in check.heads] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert check.changed_ids[: position + 1] == IDS[: position + 1]
    assert all(
        a != b for a, b in zip(check.changed_ids[position + 1 :], IDS[position + 1 :], strict=True)
    )


def test_causal_check_accepts_tensors_and_restores_training(model: TinyGPT) -> None:
    model.train()
    check = causal_check(model, torch.tensor([IDS]), 3)
    assert check.passed
    assert check.ids == IDS
    assert model.training


def test_causal_check_catches_a_leaky_mask(model: TinyGPT, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mask that lets every position see the future must fail the check."""

    def see_everything(n_queries: int, n_keys: int, device: object = None) -> torch.Tensor:
        return torch.ones(n_queries, n_keys, dtype=torch.bool)

    monkeypatch.setattr(tinytf.attention, "causal_mask", see_everything)
    check = causal_check(model, IDS, 4)
    assert not check.passed
    assert check.max_above_diagonal > 0
    assert check.max_logit_diff > 1e-6


def test_causal_check_refuses_bad_requests(model: TinyGPT) -> None:
    with pytest.raises(DiagnosticsError, match=r"position: must be in 0 \.\. 9, got 10"):
        causal_check(model, IDS, 10)
    with pytest.raises(DiagnosticsError, match="13 tokens exceed block_size=12"):
        causal_check(model, list(range(13)), 0)
    with pytest.raises(DiagnosticsError, match=r"token ids must be in 0 \.\. 22"):
        causal_check(model, [1, 23], 0)


def _block_forward(block: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    record: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        out = block(x, record=record)
    return out, record


@pytest.mark.parametrize("kind", ["identity", "hand-set", "random"])
def test_walkthrough_ends_at_the_blocks_forward(kind: str) -> None:
    block = controlled_block(kind, n_embd=8, n_head=2, seed=4)
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    steps = block_walkthrough(block, x)
    assert [s.name for s in steps] == STEP_NAMES
    out, _ = _block_forward(block, x)
    assert (steps[-1].tensor - out).abs().max() < 1e-6


def test_walkthrough_matches_every_recorded_step_of_a_model_block(model: TinyGPT) -> None:
    block = model.blocks[1]
    x = torch.randn(1, 7, 16, generator=torch.Generator().manual_seed(1))
    steps = {s.name: s.tensor for s in block_walkthrough(block, x[0])}  # (T, C) input
    _, rec = _block_forward(block, x)
    pairs = {
        "ln1": "ln1_out",
        "q": "attn.q",
        "k": "attn.k",
        "v": "attn.v",
        "scores": "attn.scores",
        "masked_scores": "attn.masked_scores",
        "softmax": "attn.pattern",
        "weighted_sum": "attn.z",
        "attn_proj": "attn_out",
        "resid_mid": "resid_mid",
        "ln2": "ln2_out",
        "ffn": "mlp_out",
        "resid_post": "resid_post",
    }
    for name, key in pairs.items():
        expected = rec[key][0]  # the walk-through dropped the batch axis
        assert steps[name].shape == expected.shape, name
        finite = torch.isfinite(expected)
        assert torch.equal(finite, torch.isfinite(steps[name])), name
        assert (steps[name][finite] - expected[finite]).abs().max() < 1e-6, name


def test_identity_block_q_k_v_equal_ln1() -> None:
    block = controlled_block("identity", n_embd=6, n_head=3, seed=0)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    steps = {s.name: s.tensor for s in block_walkthrough(block, x)}
    ln1_heads = steps["ln1"].view(4, 3, 2).transpose(0, 1)  # (nh, T, hs)
    for name in ("q", "k", "v"):
        assert torch.equal(steps[name], ln1_heads)
    assert torch.equal(steps["ffn"], torch.zeros(4, 6))
    assert torch.equal(steps["resid_post"], steps["resid_mid"])
    # A plain LayerNorm: every position has mean 0 and variance 1 (up to eps).
    assert steps["ln1"].mean(dim=-1).abs().max() < 1e-6
    assert (steps["ln1"].var(dim=-1, unbiased=False) - 1).abs().max() < 1e-4


def test_hand_set_block_is_a_running_mean() -> None:
    block = controlled_block("hand-set", n_embd=4, n_head=2)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    steps = {s.name: s.tensor for s in block_walkthrough(block, x)}
    row2 = [1 / 3, 1 / 3, 1 / 3, 0.0, 0.0]
    for head in range(2):
        assert torch.allclose(steps["softmax"][head, 2], torch.tensor(row2))
    ln1 = steps["ln1"]
    running_mean = torch.cumsum(ln1, dim=0) / torch.arange(1, 6).unsqueeze(1)
    assert torch.allclose(steps["attn_proj"], running_mean, atol=1e-6)
    assert torch.allclose(steps["ffn"], F.gelu(steps["ln2"]), atol=1e-6)


def test_controlled_blocks_are_seeded_and_leave_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = controlled_block("random", n_embd=8, n_head=2, seed=5)
    b = controlled_block("random", n_embd=8, n_head=2, seed=5)
    c = controlled_block("random", n_embd=8, n_head=2, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.attn.qkv.weight, b.attn.qkv.weight)
    assert torch.equal(a.ln1.weight, b.ln1.weight)
    assert not torch.equal(a.attn.qkv.weight, c.attn.qkv.weight)
    assert not a.training


def test_controlled_block_odd_width_and_bad_kind() -> None:
    block = controlled_block("identity", n_embd=3, n_head=1)
    assert block.attn.qkv.weight.shape == (9, 3)
    with pytest.raises(DiagnosticsError, match="kind: must be one of"):
        controlled_block("zeros", n_embd=4, n_head=2)


def test_step_explanations_are_one_line_each() -> None:
    assert list(STEP_EXPLANATIONS) == STEP_NAMES
    assert all(text and "\n" not in text for text in STEP_EXPLANATIONS.values())
