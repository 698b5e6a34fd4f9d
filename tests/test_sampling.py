"""Samplers: the cuts on hand-made distributions, the draw, and generation with a cache."""

from __future__ import annotations

import math

import pytest
import torch

from tinytf.config import ModelConfig
from tinytf.model import TinyGPT
from tinytf.sampling import (
    SAMPLERS,
    SamplerSettings,
    SamplingError,
    draw_token,
    filter_probs,
    generate,
)

# Probabilities 0.5, 0.3, 0.2: their logs are logits that softmax maps straight back.
THREE = torch.log(torch.tensor([0.5, 0.3, 0.2]))

ALL_SETTINGS = [
    SamplerSettings(kind="greedy"),
    SamplerSettings(kind="temperature", temperature=0.8),
    SamplerSettings(kind="top-k", temperature=1.2, top_k=5),
    SamplerSettings(kind="top-p", top_p=0.7),
    SamplerSettings(kind="temperature-top-p", temperature=1.5, top_p=0.8),
]


def _close(tensor: torch.Tensor, expected: list[float]) -> bool:
    return torch.allclose(tensor, torch.tensor(expected), atol=1e-6)


@pytest.mark.parametrize(
    ("top_p", "kept", "after"),
    [
        (0.6, 2, [0.625, 0.375, 0.0]),  # 0.5 falls short of 0.6; 0.3 carries it across
        (0.5, 1, [1.0, 0.0, 0.0]),  # the first token alone reaches 0.5
        (0.8, 2, [0.625, 0.375, 0.0]),  # 0.5 + 0.3 reaches 0.8 exactly
        (0.81, 3, [0.5, 0.3, 0.2]),
        (1.0, 3, [0.5, 0.3, 0.2]),
        (1e-9, 1, [1.0, 0.0, 0.0]),  # never empty
    ],
)
def test_top_p_keeps_the_token_that_crosses_p(top_p: float, kept: int, after: list[float]) -> None:
    result = filter_probs(THREE, SamplerSettings(kind="top-p", top_p=top_p))
    assert result.kept == kept
    assert _close(result.probs_before, [0.5, 0.3, 0.2])
    assert _close(result.probs_after, after)
    assert result.keep.tolist() == [a > 0 for a in after]


def test_top_p_ignores_temperature_but_temperature_top_p_applies_it_first() -> None:
    # At T = 2, softmax(log p / 2) is proportional to sqrt(p): sqrt(.5), sqrt(.3), sqrt(.2)
    # = 0.707107, 0.547723, 0.447214, over their sum 1.702043.
    hot = [0.415446, 0.321803, 0.262751]
    plain = filter_probs(THREE, SamplerSettings(kind="top-p", temperature=2.0, top_p=0.75))
    tempered = filter_probs(
        THREE, SamplerSettings(kind="temperature-top-p", temperature=2.0, top_p=0.75)
    )
    assert plain.kept == 2  # 0.5 + 0.3 reaches 0.75
    assert _close(tempered.probs_before, hot)
    assert tempered.kept == 3  # 0.4154 + 0.3218 = 0.7372 falls short of 0.75


def test_temperature_divides_logits_before_softmax() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0])
    result = filter_probs(logits, SamplerSettings(kind="temperature", temperature=0.5))
    # softmax([4, 2, 0]) = [e^4, e^2, 1] / (e^4 + e^2 + 1) = [54.598150, 7.389056, 1] / 62.987206
    assert _close(result.probs_before, [0.866813, 0.117310, 0.015876])
    assert torch.allclose(result.probs_after, result.probs_before, atol=1e-7)
    assert result.kept == 3


def test_top_k_keeps_k_largest_and_k_above_vocab_is_no_cut() -> None:
    logits = torch.tensor([0.0, 3.0, 1.0, 2.0])
    two = filter_probs(logits, SamplerSettings(kind="top-k", top_k=2))
    assert two.keep.tolist() == [False, True, False, True]
    # e^3 / (e^3 + e^2) = 20.085537 / 27.474093
    assert _close(two.probs_after, [0.0, 0.731059, 0.0, 0.268941])
    wide = filter_probs(logits, SamplerSettings(kind="top-k", top_k=50))
    assert wide.kept == 4
    assert torch.allclose(wide.probs_after, torch.softmax(logits, dim=0))


def test_ties_go_to_the_lower_id() -> None:
    logits = torch.tensor([1.0, 5.0, 5.0, 5.0, 0.0])
    assert filter_probs(logits, SamplerSettings(kind="greedy")).keep.tolist() == [
        False,
        True,
        False,
        False,
        False,
    ]
    top2 = filter_probs(logits, SamplerSettings(kind="top-k", top_k=2))
    assert top2.keep.tolist() == [False, True, True, False, False]
    assert top2.order.tolist() == [1, 2, 3, 0, 4]


@pytest.mark.parametrize("kind", SAMPLERS)
def test_temperature_zero_is_greedy_for_every_kind(kind: str) -> None:
    settings = SamplerSettings(kind=kind, temperature=0.0, top_k=2, top_p=0.9)
    result = filter_probs(torch.tensor([0.1, 2.0, 1.9, -1.0]), settings)
    assert result.kept == 1
    assert result.probs_after.tolist() == [0.0, 1.0, 0.0, 0.0]
    assert draw_token(result, 0.999) == 1


def test_draw_walks_the_cumulative_bar_from_the_most_likely() -> None:
    logits = torch.log(torch.tensor([0.2, 0.5, 0.3]))  # bar order: id 1, id 2, id 0
    result = filter_probs(logits, SamplerSettings(kind="temperature"))
    assert [draw_token(result, u) for u in (0.0, 0.49, 0.51, 0.79, 0.81, 0.9999)] == [
        1,
        1,
        2,
        2,
        0,
        0,
    ]
    cut = filter_probs(logits, SamplerSettings(kind="top-p", top_p=0.6))
    assert [draw_token(cut, u) for u in (0.6, 0.624, 0.626, 0.9999)] == [1, 1, 2, 2]


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"kind": "nucleus"}, "kind: must be one of"),
        ({"temperature": -0.1}, "temperature: must be 0 or more"),
        ({"temperature": float("nan")}, "temperature: must be a finite number"),
        ({"kind": "top-p", "top_p": 0.0}, r"top_p: must be in \(0, 1\]"),
        ({"kind": "top-p", "top_p": 1.5}, r"top_p: must be in \(0, 1\]"),
        ({"kind": "top-k", "top_k": 0}, "top_k: must be a whole number of at least 1"),
        ({"kind": "top-k", "top_k": 2.5}, "top_k: must be a whole number"),
        ({"kind": "top-k"}, "top_k: the top-k sampler needs"),
        ({"kind": "top-p"}, "top_p: the top-p sampler needs"),
        ({"kind": "temperature-top-p"}, "top_p: the temperature-top-p sampler needs"),
    ],
)
def test_invalid_knobs_refused_naming_the_knob(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(SamplingError, match=message):
        SamplerSettings(**knobs)


def test_filter_refuses_a_batch_of_logits() -> None:
    with pytest.raises(SamplingError, match=r"logits: expected one position's \(V,\) scores"):
        filter_probs(torch.zeros(2, 3), SamplerSettings())


@pytest.fixture
def model() -> TinyGPT:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=23, block_size=8, n_layer=2, n_head=2, n_embd=16)
    model = TinyGPT(config)
    # Larger weights than the initialisation, so the distributions are far from uniform
    # and the samplers disagree.
    with torch.no_grad():
        model.lm_head.weight.mul_(100)
    return model.eval()


PROMPT = [3, 1, 4, 1, 5]


def test_same_seed_same_text_different_seed_different_text(model: TinyGPT) -> None:
    settings = SamplerSettings(kind="temperature")
    first = generate(model, PROMPT, 20, settings, seed=7)
    again = generate(model, PROMPT, 20, settings, seed=7)
    other = generate(model, PROMPT, 20, settings, seed=8)
    assert first.new_ids == again.new_ids
    assert first.new_ids != other.new_ids
    assert first.prompt_ids == PROMPT
    assert first.ids == PROMPT + first.new_ids
    assert len(first.new_ids) == 20


def test_samplers_share_one_random_stream(model: TinyGPT) -> None:
    plain = generate(model, PROMPT, 15, SamplerSettings(), seed=3, record_steps=True)
    no_cut = SamplerSettings(kind="top-k", top_k=1000)
    wide = generate(model, PROMPT, 15, no_cut, seed=3, record_steps=True)
    greedy = generate(model, PROMPT, 15, SamplerSettings(kind="greedy"), seed=3, record_steps=True)
    assert wide.new_ids == plain.new_ids  # top-k with k > V is plain temperature sampling
    assert [s.draw for s in greedy.steps] == [s.draw for s in plain.steps]


@pytest.mark.parametrize("settings", ALL_SETTINGS, ids=lambda s: s.kind)
def test_step_records_are_consistent(model: TinyGPT, settings: SamplerSettings) -> None:
    gen = generate(model, PROMPT, 12, settings, seed=1, record_steps=True)
    assert [s.chosen_id for s in gen.steps] == gen.new_ids
    assert [s.position for s in gen.steps] == list(range(len(PROMPT), len(PROMPT) + 12))
    for step in gen.steps:
        assert 0.0 <= step.draw < 1.0
        assert len(step.candidates) == 10
        before = [c.prob_before for c in step.candidates]
        assert before == sorted(before, reverse=True)
        assert sum(c.prob_after > 0 for c in step.candidates) == min(step.kept, 10)
        assert step.chosen_prob > 0
        if settings.is_greedy:
            assert step.kept == 1
            assert step.chosen_id == step.candidates[0].token_id
        if settings.kind == "top-k":
            assert step.kept == 5
    assert not generate(model, PROMPT, 3, settings).steps  # nothing recorded unless asked


@pytest.mark.parametrize("settings", ALL_SETTINGS, ids=lambda s: s.kind)
def test_cached_equals_uncached_past_the_context(model: TinyGPT, settings: SamplerSettings) -> None:
    # block_size 8, a prompt of 5 and 20 new tokens: the window fills and slides.
    cached = generate(model, PROMPT, 20, settings, seed=5, use_cache=True)
    full = generate(model, PROMPT, 20, settings, seed=5, use_cache=False)
    assert cached.new_ids == full.new_ids


def test_cache_runs_one_position_per_token_until_the_window_is_full(model: TinyGPT) -> None:
    lengths = []
    hook = model.register_forward_hook(lambda module, args, out: lengths.append(args[0].size(1)))
    try:
        generate(model, PROMPT, 6, SamplerSettings(), use_cache=True)
        cached, lengths[:] = list(lengths), []
        generate(model, PROMPT, 6, SamplerSettings(), use_cache=False)
    finally:
        hook.remove()
    # prompt 5, then 1 each up to 8 positions, then the whole window of 8 again
    assert cached == [5, 1, 1, 1, 8, 8]
    assert lengths == [5, 6, 7, 8, 8, 8]


def test_long_prompt_cropped_to_the_last_block(model: TinyGPT) -> None:
    long_prompt = list(range(20))
    settings = SamplerSettings(kind="temperature", temperature=0.9)
    long = generate(model, long_prompt, 6, settings, seed=2)
    short = generate(model, long_prompt[-8:], 6, settings, seed=2)
    assert long.new_ids == short.new_ids
    assert long.prompt_ids == long_prompt


def test_bad_requests_refused(model: TinyGPT) -> None:
    with pytest.raises(SamplingError, match="prompt_ids: empty"):
        generate(model, [], 5, SamplerSettings())
    with pytest.raises(SamplingError, match="token id 23 is outside the vocabulary of 23"):
        generate(model, [1, 23], 5, SamplerSettings())
    with pytest.raises(SamplingError, match="max_new_tokens: must be 0 or more"):
        generate(model, [1], -1, SamplerSettings())
    assert generate(model, [1], 0, SamplerSettings()).new_ids == []


def test_training_mode_restored_and_no_gradients(model: TinyGPT) -> None:
    model.train()
    generate(model, PROMPT, 3, SamplerSettings())
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    generate(model, PROMPT, 3, SamplerSettings())
    assert not model.training


def test_probabilities_sum_to_one_on_real_logits(model: TinyGPT) -> None:
    logits = model(torch.tensor([PROMPT])).logits[0, -1]
    for settings in ALL_SETTINGS:
        result = filter_probs(logits, settings)
        assert math.isclose(float(result.probs_after.sum()), 1.0, rel_tol=1e-6)
        assert math.isclose(float(result.probs_before.sum()), 1.0, rel_tol=1e-6)
        assert bool((result.probs_after[~result.keep] == 0).all())


# ---------------------------------------------------------------------------------------
# Re-sampling from held logits (what a sampler knob does on the Samplers page)


def test_kept_logits_are_the_ones_each_step_was_drawn_from(model: TinyGPT) -> None:
    gen = generate(model, PROMPT, 12, SamplerSettings(), seed=4, keep_logits=True)
    assert gen.logits.shape == (12, 23) and gen.logits.dtype == torch.float32
    assert not gen.logits.is_inference()  # usable outside generate, pickles with the rest
    for i in (0, 2, 11):  # before, while and after the window of 8 is full
        context = gen.ids[: len(PROMPT) + i][-8:]
        expected = model(torch.tensor([context])).logits[0, -1]
        torch.testing.assert_close(gen.logits[i], expected, atol=1e-5, rtol=1e-5)
    assert generate(model, PROMPT, 3, SamplerSettings()).logits is None  # only when asked
    assert generate(model, PROMPT, 0, SamplerSettings(), keep_logits=True).logits.shape == (0, 23)


KNOB_CHANGES = [
    (SamplerSettings(kind="temperature", temperature=1.0), SamplerSettings(temperature=1.1)),
    (
        SamplerSettings(kind="top-k", top_k=5),
        SamplerSettings(kind="top-k", top_k=2),
    ),
    (SamplerSettings(kind="top-p", top_p=0.9), SamplerSettings(kind="top-p", top_p=0.6)),
    (
        SamplerSettings(kind="temperature-top-p", temperature=0.8, top_p=0.9),
        SamplerSettings(kind="temperature-top-p", temperature=1.4, top_p=0.9),
    ),
    (SamplerSettings(kind="temperature"), SamplerSettings(kind="greedy")),
]


@pytest.mark.parametrize(("before", "after"), KNOB_CHANGES, ids=lambda s: s.kind)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resampling_from_held_logits_equals_a_fresh_generation(
    model: TinyGPT, before: SamplerSettings, after: SamplerSettings, seed: int
) -> None:
    # 20 new tokens on a context of 8: the agreement may end before or after it is full.
    held = generate(model, PROMPT, 20, before, seed=seed, keep_logits=True)
    fresh = generate(model, PROMPT, 20, after, seed=seed, keep_logits=True, record_steps=True)
    again = generate(
        model, PROMPT, 20, after, seed=seed, keep_logits=True, record_steps=True, reuse=held
    )
    assert again.new_ids == fresh.new_ids
    assert [s.draw for s in again.steps] == [s.draw for s in fresh.steps]
    torch.testing.assert_close(again.logits, fresh.logits, atol=1e-5, rtol=1e-5)

    # Held logits serve every step up to and including the first token that differs.
    shared = next(
        (i for i, (a, b) in enumerate(zip(held.new_ids, fresh.new_ids, strict=True)) if a != b),
        19,
    )
    assert again.reused_steps == shared + 1


def test_same_settings_reuse_every_step_and_run_no_model(model: TinyGPT) -> None:
    settings = SamplerSettings(kind="top-p", top_p=0.8)
    held = generate(model, PROMPT, 20, settings, seed=3, keep_logits=True)
    calls = []
    hook = model.register_forward_hook(lambda module, args, out: calls.append(args[0].size(1)))
    try:
        again = generate(model, PROMPT, 20, settings, seed=3, keep_logits=True, reuse=held)
        shorter = generate(model, PROMPT, 7, settings, seed=3, reuse=held)
        assert calls == []  # every step's logits were held
        longer = generate(model, PROMPT, 25, settings, seed=3, reuse=held)
    finally:
        hook.remove()
    assert again.new_ids == held.new_ids and again.reused_steps == 20
    torch.testing.assert_close(again.logits, held.logits, atol=0, rtol=0)
    assert shorter.new_ids == held.new_ids[:7]
    # Longer: the 20 held steps, then the model runs once per further token (the window
    # of 8 is full by then, so each of the 5 calls runs the whole window).
    assert longer.new_ids[:20] == held.new_ids and longer.reused_steps == 20
    assert calls == [8] * 5
    assert longer.new_ids == generate(model, PROMPT, 25, settings, seed=3).new_ids


def test_after_the_texts_part_the_model_runs_once_over_the_prefix_then_per_token() -> None:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=23, block_size=64, n_layer=1, n_head=2, n_embd=16)
    wide = TinyGPT(config).eval()
    with torch.no_grad():
        wide.lm_head.weight.mul_(100)
    held = generate(wide, PROMPT, 30, SamplerSettings(kind="greedy"), keep_logits=True)
    settings = SamplerSettings(kind="temperature", temperature=2.0)
    calls = []
    hook = wide.register_forward_hook(lambda module, args, out: calls.append(args[0].size(1)))
    try:
        again = generate(wide, PROMPT, 30, settings, seed=1, reuse=held)
    finally:
        hook.remove()
    n = again.reused_steps
    assert 1 <= n < 30
    # One call over the prompt and the n tokens picked from held logits, then one position
    # per token, the key/value cache built by that first call.
    assert calls == [len(PROMPT) + n] + [1] * (30 - n - 1)
    assert again.new_ids == generate(wide, PROMPT, 30, settings, seed=1).new_ids


def test_reuse_refuses_what_it_cannot_use(model: TinyGPT) -> None:
    settings = SamplerSettings()
    no_logits = generate(model, PROMPT, 5, settings)
    with pytest.raises(SamplingError, match=r"reuse: .* kept no logits"):
        generate(model, PROMPT, 5, settings, reuse=no_logits)
    held = generate(model, PROMPT, 5, settings, keep_logits=True)
    with pytest.raises(SamplingError, match=r"reuse: .* another prompt"):
        generate(model, PROMPT[:-1], 5, settings, reuse=held)
    other_vocab = TinyGPT(ModelConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(SamplingError, match=r"reuse: its logits are \(5, 23\)"):
        generate(other_vocab, PROMPT, 5, settings, reuse=held)
