"""explain_step: hand-computed cases, and the same token as generate for the same draw."""

from __future__ import annotations

import math

import pytest
import torch

from tinytf.explain import entropy, explain_step, step_logits
from tinytf.sampling import SAMPLERS, SamplerSettings, SamplingError, generate

SETTINGS = {
    "greedy": SamplerSettings(kind="greedy"),
    "temperature": SamplerSettings(kind="temperature", temperature=1.3),
    "top-k": SamplerSettings(kind="top-k", top_k=3),
    "top-p": SamplerSettings(kind="top-p", top_p=0.7),
    "temperature-top-p": SamplerSettings(kind="temperature-top-p", temperature=0.7, top_p=0.8),
}


def test_top_k_by_hand():
    # probabilities at T = 1: ln of 0.5, 0.25, 0.125, 0.125 (ids 0..3)
    logits = torch.log(torch.tensor([0.5, 0.25, 0.125, 0.125]))
    choice = explain_step(logits, SamplerSettings(kind="top-k", top_k=2), draw=0.7)
    assert choice.kept == 2
    assert choice.keep_mask.tolist() == [True, True, False, False]
    assert choice.mass_removed == pytest.approx(0.25)
    assert choice.probs_after.tolist() == pytest.approx([2 / 3, 1 / 3, 0, 0])
    assert choice.cut_kind == "top-k"
    assert choice.cut == pytest.approx(math.log(0.25))
    assert choice.cumulative[:2].tolist() == pytest.approx([2 / 3, 1.0])
    assert choice.chosen == 1  # 0.7 is past 2/3
    assert choice.chosen_rank == 1
    assert choice.entropy_before == pytest.approx(
        -(0.5 * math.log(0.5) + 0.25 * math.log(0.25) + 2 * 0.125 * math.log(0.125))
    )
    assert choice.entropy_after == pytest.approx(
        -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    )


def test_temperature_scales_the_logits():
    logits = torch.tensor([2.0, 1.0, 0.0])
    choice = explain_step(logits, SamplerSettings(kind="temperature", temperature=2.0), 0.1)
    assert choice.scaled_logits.tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert choice.temperature == 2.0
    assert choice.probs_before.tolist() == pytest.approx(torch.softmax(logits / 2, 0).tolist())
    assert choice.cut_kind == "none" and choice.cut is None
    assert choice.kept == 3 and choice.mass_removed == 0.0
    assert choice.entropy_after == pytest.approx(choice.entropy_before)
    assert choice.chosen == 0


def test_top_p_and_greedy_cuts():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    choice = explain_step(logits, SamplerSettings(kind="top-p", top_p=0.8), 0.99)
    assert choice.cut_kind == "top-p" and choice.cut == 0.8
    assert choice.kept == 2  # 0.5 + 0.3 reaches 0.8
    assert choice.cumulative_before[:2].tolist() == pytest.approx([0.5, 0.8])
    assert choice.mass_removed == pytest.approx(0.2)
    assert choice.chosen == 1
    greedy = explain_step(logits, SamplerSettings(kind="greedy"), 0.99)
    assert greedy.kept == 1 and greedy.chosen == 0 and greedy.entropy_after == 0.0
    assert greedy.cut == pytest.approx(math.log(0.5))


def test_entropy_of_uniform_and_one_hot():
    assert entropy(torch.full((4,), 0.25)) == pytest.approx(math.log(4))
    assert entropy(torch.tensor([0.0, 1.0, 0.0])) == 0.0


def test_bad_draw_refused():
    with pytest.raises(SamplingError, match="draw"):
        explain_step(torch.zeros(3), SamplerSettings(kind="greedy"), 1.0)


@pytest.mark.parametrize("kind", SAMPLERS)
@pytest.mark.parametrize("use_cache", [False, True])
def test_same_token_as_generate_for_the_same_draw(tiny_model, kind, use_cache):
    """generate draws one uniform per step and inverts the kept CDF; explain_step,
    given that step's draw and logits, must land on the same token and the same cut."""
    settings = SETTINGS[kind]
    generation = generate(
        tiny_model, [3, 1, 4], 20, settings, seed=7, record_steps=True, use_cache=use_cache
    )
    ids = generation.ids
    for record in generation.steps:
        logits = step_logits(tiny_model, ids[: record.position])
        choice = explain_step(logits, settings, record.draw)
        assert choice.chosen == record.chosen_id
        assert choice.kept == record.kept
        assert float(choice.probs_after[choice.chosen]) == pytest.approx(record.chosen_prob)
        top = [c.token_id for c in record.candidates]
        assert choice.order[: len(top)].tolist() == top
