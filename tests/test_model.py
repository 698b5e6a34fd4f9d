"""The model and its attention: fast path against slow path, cache against full recompute,
hand-computed position values, the causal mask, the initial loss, and config errors."""

from __future__ import annotations

import math

import pytest
import torch

from tinytf.attention import LayerCache, causal_mask
from tinytf.config import ConfigError, ModelConfig, TrainConfig
from tinytf.model import TinyGPT, sinusoidal_positions

B, T = 2, 9


@pytest.fixture
def idx(tiny_config: ModelConfig) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, tiny_config.vocab_size, (B, T), generator=generator)


def _block_outputs(model: TinyGPT, idx: torch.Tensor, capture: bool) -> tuple[torch.Tensor, list]:
    """Logits and each block's output, from the fused (capture=False) or by-hand path."""
    outputs: list[torch.Tensor] = []
    hooks = [
        block.register_forward_hook(lambda module, args, out: outputs.append(out[0]))
        for block in model.blocks
    ]
    try:
        logits = model(idx, capture=capture).logits
    finally:
        for hook in hooks:
            hook.remove()
    return logits, outputs


@pytest.mark.parametrize("train_mode", [False, True], ids=["eval", "train-dropout-0"])
def test_fused_and_by_hand_attention_agree(
    tiny_model: TinyGPT, idx: torch.Tensor, train_mode: bool
) -> None:
    tiny_model.train(train_mode)
    fused_logits, fused_layers = _block_outputs(tiny_model, idx, capture=False)
    hand_logits, hand_layers = _block_outputs(tiny_model, idx, capture=True)
    assert len(fused_layers) == len(hand_layers) == tiny_model.config.n_layer
    assert (fused_logits - hand_logits).abs().max() < 1e-5
    for fused, by_hand in zip(fused_layers, hand_layers, strict=True):
        assert (fused - by_hand).abs().max() < 1e-5


def test_capture_names_and_shapes(tiny_model: TinyGPT, idx: torch.Tensor) -> None:
    cfg = tiny_model.config
    C, nh, hs, V = cfg.n_embd, cfg.n_head, cfg.head_size, cfg.vocab_size
    cache = tiny_model(idx, capture=True).cache
    expected = {"ln_final_out": (B, T, C), "logits": (B, T, V)}
    for i in range(cfg.n_layer):
        for name in ("resid_pre", "ln1_out", "attn_out", "resid_mid", "ln2_out", "mlp_out"):
            expected[f"blocks.{i}.{name}"] = (B, T, C)
        expected[f"blocks.{i}.resid_post"] = (B, T, C)
        for name in ("q", "k", "v", "z"):
            expected[f"blocks.{i}.attn.{name}"] = (B, nh, T, hs)
        for name in ("scores", "masked_scores", "pattern"):
            expected[f"blocks.{i}.attn.{name}"] = (B, nh, T, T)
        expected[f"blocks.{i}.mlp.hidden"] = (B, T, 4 * C)
    assert {name: tuple(t.shape) for name, t in cache.items()} == expected
    assert tiny_model(idx).cache is None


def test_patterns_are_causal_and_rows_sum_to_one(tiny_model: TinyGPT, idx: torch.Tensor) -> None:
    cache = tiny_model(idx, capture=True).cache
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    for i in range(tiny_model.config.n_layer):
        pattern = cache[f"blocks.{i}.attn.pattern"]  # (B, nh, T, T)
        assert bool((pattern[..., future] == 0).all())
        assert bool((pattern[..., ~future] > 0).all())
        assert (pattern.sum(dim=-1) - 1).abs().max() < 1e-6
        masked = cache[f"blocks.{i}.attn.masked_scores"]
        assert bool(torch.isneginf(masked[..., future]).all())


def test_causal_mask_aligns_queries_to_the_last_keys() -> None:
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert causal_mask(3, 3).tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]


def test_initial_loss_is_near_log_vocab() -> None:
    torch.manual_seed(0)
    V = 65
    model = TinyGPT(ModelConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=32))
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, V, (8, 16), generator=generator)
    y = torch.randint(0, V, (8, 16), generator=generator)
    with torch.no_grad():
        loss = float(model(x, y).loss)
    assert abs(loss - math.log(V)) < 0.2  # measured 4.157 against ln(65) = 4.174


def test_loss_gradient_reaches_every_parameter(tiny_model: TinyGPT, idx: torch.Tensor) -> None:
    tiny_model.train()
    loss = tiny_model(idx, idx.roll(-1, dims=1)).loss
    loss.backward()
    for name, param in tiny_model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_long_prompt_cropped_to_last_block(tiny_model: TinyGPT, tiny_config: ModelConfig) -> None:
    long = torch.randint(0, tiny_config.vocab_size, (1, 20), generator=torch.Generator())
    cropped = long[:, -tiny_config.block_size :]
    out = tiny_model(long).logits
    assert out.shape == (1, tiny_config.block_size, tiny_config.vocab_size)
    assert torch.equal(out, tiny_model(cropped).logits)


def test_too_long_with_targets_or_past_refused(tiny_model: TinyGPT) -> None:
    long = torch.zeros(1, 13, dtype=torch.long)
    with pytest.raises(ValueError, match="13 positions do not fit the context of 12"):
        tiny_model(long, long)
    past = tiny_model(torch.zeros(1, 12, dtype=torch.long), use_cache=True).past
    with pytest.raises(ValueError, match="13 positions do not fit"):
        tiny_model(torch.zeros(1, 1, dtype=torch.long), past=past)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_cached_forward_equals_full_forward(positions: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=16)
    model = TinyGPT(config.replace(positions=positions)).eval()
    ids = torch.randint(0, 23, (B, 12), generator=torch.Generator().manual_seed(3))
    full = model(ids).logits

    # The first 5 at once, then one token at a time, then the last 3 together (T > 1 with
    # a cache, where the mask must align the queries to the last keys).
    out = model(ids[:, :5], use_cache=True)
    pieces, past = [out.logits], out.past
    for t in range(5, 9):
        out = model(ids[:, t : t + 1], past=past, use_cache=True)
        pieces.append(out.logits)
        past = out.past
    out = model(ids[:, 9:], past=past, use_cache=True)
    pieces.append(out.logits)

    assert out.past.length == 12
    assert [layer.keys.shape for layer in out.past.layers] == [(B, 2, 12, 8)] * 2
    assert (torch.cat(pieces, dim=1) - full).abs().max() < 1e-5


def test_sinusoidal_table_against_hand_values() -> None:
    table = sinusoidal_positions(3, 4)
    # Width 4: column pairs turn at frequencies 1 and 10000^(-2/4) = 0.01.
    # Position 1: sin(1), cos(1), sin(0.01), cos(0.01); position 2: sin(2), cos(2), ...
    expected = [
        [0.0, 1.0, 0.0, 1.0],
        [0.841471, 0.540302, 0.010000, 0.999950],
        [0.909297, -0.416147, 0.019999, 0.999800],
    ]
    assert torch.allclose(table, torch.tensor(expected), atol=1e-6)
    model = TinyGPT(ModelConfig(vocab_size=5, block_size=6, n_layer=1, n_head=1, n_embd=4))
    assert torch.equal(model.pos_table[:3], table)
    assert "pos_table" not in model.state_dict()


def test_odd_width_sinusoidal_refused_naming_n_embd() -> None:
    with pytest.raises(ConfigError, match=r"^n_embd: sinusoidal positions need an even width"):
        ModelConfig(vocab_size=5, n_head=3, n_embd=9)
    with pytest.raises(ValueError, match="even width"):
        sinusoidal_positions(4, 5)


def test_learned_positions_work_with_odd_width() -> None:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=11, block_size=6, n_head=3, n_embd=9, positions="learned")
    model = TinyGPT(config)
    ids = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(0))
    out = model(ids, ids)
    assert out.logits.shape == (2, 6, 11)
    out.loss.backward()
    assert model.pos_embed.weight.grad.abs().sum() > 0
    assert not hasattr(model, "pos_table")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_head": 3, "n_embd": 16}, "n_head"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"block_size": 0}, "block_size"),
        ({"n_layer": 0}, "n_layer"),
        ({"n_head": 0}, "n_head"),
        ({"n_embd": 0}, "n_embd"),
        ({"dropout": 1.0}, "dropout"),
        ({"positions": "rotary"}, "positions"),
    ],
)
def test_model_config_errors_name_the_field(changes: dict[str, object], field: str) -> None:
    base = {"vocab_size": 10, "block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 8}
    with pytest.raises(ConfigError, match=f"^{field}: "):
        ModelConfig(**{**base, **changes})


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_val_fraction_outside_open_unit_interval_refused(fraction: float) -> None:
    with pytest.raises(ConfigError, match=r"^val_fraction: must be in"):
        TrainConfig(val_fraction=fraction)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"max_steps": 0}, "max_steps"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_train_config_errors_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}: "):
        TrainConfig(**changes)


def test_dropout_model_is_deterministic_in_eval(tiny_config: ModelConfig) -> None:
    torch.manual_seed(0)
    model = TinyGPT(tiny_config.replace(dropout=0.3)).eval()
    ids = torch.randint(0, tiny_config.vocab_size, (1, 8), generator=torch.Generator())
    fused = model(ids).logits
    assert torch.equal(fused, model(ids).logits)
    assert (fused - model(ids, capture=True).logits).abs().max() < 1e-5


def test_cache_is_written_in_place_and_clones_are_independent(tiny_model: TinyGPT) -> None:
    """New keys go into the buffer allocated at the first call: nothing cached is copied."""
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        past = tiny_model(ids[:, :4], use_cache=True).past
        buffer = past.layers[0].keys.data_ptr()
        branch = past.clone()

        same = tiny_model(ids[:, 4:5], past=past, use_cache=True).past
        tiny_model(ids[:, 5:6], past=branch, use_cache=True)

    assert same is past and past.length == 5 and past.layers[0].keys.data_ptr() == buffer
    assert branch.length == 5 and branch.layers[0].keys.data_ptr() != buffer
    # Different fifth tokens (5 and 6) leave different fifth keys in each copy.
    assert not torch.equal(past.layers[0].keys[:, :, 4], branch.layers[0].keys[:, :, 4])
    assert torch.equal(past.layers[0].keys[:, :, :4], branch.layers[0].keys[:, :, :4])


def test_layer_cache_refuses_more_than_its_capacity() -> None:
    cache = LayerCache(capacity=3)
    k = torch.zeros(1, 2, 2, 4)
    cache.extend(k, k)
    with pytest.raises(ValueError, match="4 positions do not fit the cache of 3"):
        cache.extend(k, k)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_token_and_position_vectors_start_at_comparable_sizes(positions: str) -> None:
    """Neither swamps the other at the first LayerNorm (tokens at 0.02 beside sin/cos did)."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=128)
    model = TinyGPT(config.replace(positions=positions))
    token_rms = model.tok_embed.weight.pow(2).mean().sqrt()
    position_rms = model.positions(0, config.block_size).pow(2).mean().sqrt()
    assert 0.5 < float((token_rms / position_rms).detach()) < 2.0
