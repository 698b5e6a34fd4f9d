"""Figures of the scarcity lab, the scrubber and "why this token": their numbers are the
data's, their colours and lines mean what the legends say; the badges catch broken
attention."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from explorer.figures import LossCurve
from explorer.figures_scarcity import (
    CHOSEN_COLOUR,
    CUT_COLOUR,
    KEPT_COLOUR,
    SPLIT_DASH,
    attention_badges,
    cumulative_figure,
    fraction_label,
    fractions_figure,
    logits_figure,
    loss_colour,
    passage_html,
    renormalised_figure,
)
from tinytf.explain import explain_step
from tinytf.sampling import SamplerSettings

LABELS = [f"t{i}" for i in range(8)]
LOGITS = torch.tensor([0.5, 2.0, -1.0, 1.0, 0.0, 3.0, -2.0, 1.5])  # order: 5,1,7,3,0,4,2,6


def curve(offset: float) -> LossCurve:
    return LossCurve(
        label=f"run {offset}",
        eval_steps=[0, 10, 20],
        eval_train_loss=[3.0, 2.0 - offset, 1.0 - offset],
        val_loss=[3.0, 2.5, 2.4 + offset],
    )


def test_fraction_label():
    assert [fraction_label(f) for f in (0.01, 0.05, 0.25, 1.0, 0.005)] == [
        "1%",
        "5%",
        "25%",
        "100%",
        "0.5%",
    ]


def test_fractions_figure_colour_by_fraction_dash_by_split():
    fig = fractions_figure([(1.0, curve(0.0)), (0.05, curve(0.5))], vocab_size=20)
    names = [trace.name for trace in fig.data]
    assert names == ["5% · train", "5% · val", "100% · train", "100% · val"]
    colours = [trace.line.color for trace in fig.data]
    assert colours[0] == colours[1] != colours[2] == colours[3]
    assert [trace.line.dash for trace in fig.data] == [SPLIT_DASH["train"], SPLIT_DASH["val"]] * 2
    assert list(fig.data[0].y) == [3.0, 1.5, 0.5]  # the 5% run's train estimates
    assert list(fig.data[3].y) == [3.0, 2.5, 2.4]
    assert fig.layout.shapes[0].y0 == pytest.approx(math.log(20))


def test_passage_html_escapes_and_colours():
    html = passage_html(["<b>", "&", "\n", "ok"], [float("nan"), 0.0, 1.0, 2.0])
    assert "<b>" not in html.replace('<div style="', "")
    assert "&lt;b&gt;" in html and "&amp;" in html
    assert "↵" in html
    assert 'title="2.000 nats"' in html
    assert loss_colour(2.0, 2.0) in html  # the largest loss at full red
    assert loss_colour(0.0, 2.0) == "rgb(255,255,255)"
    signed = passage_html(["a", "b"], [-1.0, 1.0], signed=True)
    assert loss_colour(-1.0, 1.0, signed=True) == "rgb(46,160,67)"
    assert 'title="-1.000 nats"' in signed and 'title="+1.000 nats"' in signed
    with pytest.raises(ValueError, match="values"):
        passage_html(["a"], [1.0, 2.0])


def test_logits_figure_top_k_cut_and_order():
    choice = explain_step(LOGITS, SamplerSettings(kind="top-k", top_k=3), draw=0.5)
    fig = logits_figure(choice, LABELS, top=6)
    bars = fig.data[-1]
    assert list(fig.layout.xaxis.ticktext) == ["t5", "t1", "t7", "t3", "t0", "t4"]
    assert list(bars.y) == pytest.approx([3.0, 2.0, 1.5, 1.0, 0.5, 0.0])
    assert list(bars.marker.color) == [KEPT_COLOUR] * 3 + [CUT_COLOUR] * 3
    assert fig.layout.shapes[0].x0 == 2.5  # between the third and fourth bar
    assert fig.layout.shapes[1].y0 == pytest.approx(1.5)  # the third-best logit


def test_logits_figure_with_temperature_shows_both_scores():
    choice = explain_step(LOGITS, SamplerSettings(kind="temperature", temperature=2.0), 0.3)
    fig = logits_figure(choice, LABELS)
    raw, scaled = fig.data
    assert list(raw.y)[:2] == pytest.approx([3.0, 2.0])
    assert list(scaled.y)[:2] == pytest.approx([1.5, 1.0])
    assert len(raw.y) == 8  # all tokens, fewer than `top`


def test_shown_tokens_reach_down_to_the_chosen_one():
    choice = explain_step(LOGITS, SamplerSettings(kind="temperature", temperature=1.0), 0.999)
    assert choice.chosen_rank > 2
    fig = renormalised_figure(choice, LABELS, top=2)
    assert len(fig.data[0].x) == choice.chosen_rank + 1


def test_renormalised_figure_top_p():
    choice = explain_step(LOGITS, SamplerSettings(kind="top-p", top_p=0.8), draw=0.2)
    fig = renormalised_figure(choice, LABELS)
    before, after, running = fig.data
    order = choice.order.tolist()
    assert list(before.y) == pytest.approx(choice.probs_before[order].tolist())
    assert sum(after.y) == pytest.approx(1.0)
    assert list(running.y) == pytest.approx(torch.cumsum(choice.probs_before[order], 0).tolist())
    assert fig.layout.shapes[0].y0 == 0.8
    assert f"{choice.kept} kept" in fig.layout.title.text


def test_cumulative_figure_marks_the_draw_on_the_chosen_segment():
    choice = explain_step(LOGITS, SamplerSettings(kind="top-k", top_k=4), draw=0.9)
    fig = cumulative_figure(choice, LABELS)
    bar = fig.data[0]
    starts, widths = list(bar.base), list(bar.x)
    assert len(widths) == 4
    assert starts[0] == 0.0
    assert starts[-1] + widths[-1] == pytest.approx(1.0)
    chosen_index = list(bar.marker.color).index(CHOSEN_COLOUR)
    assert starts[chosen_index] <= 0.9 < starts[chosen_index] + widths[chosen_index]
    assert choice.order[chosen_index] == choice.chosen
    assert fig.layout.shapes[0].x0 == 0.9


def captured(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]), capture=True).cache


def test_badges_pass_on_a_real_model(tiny_model, tiny_config):
    cache = captured(tiny_model, [1, 5, 2, 7, 3])
    badges = attention_badges(cache, layer=1, head=0, head_size=tiny_config.head_size)
    assert [b.label for b in badges] == [
        "rows sum to 1",
        "exactly 0 above the diagonal",
        "no NaN or inf",
        f"scale 1/√{tiny_config.head_size}",
    ]
    assert all(b.ok for b in badges), badges


def test_badges_catch_broken_attention(tiny_model, tiny_config):
    hs = tiny_config.head_size
    cache = {k: v.clone() for k, v in captured(tiny_model, [1, 5, 2, 7, 3]).items()}

    leaky = dict(cache)
    pattern = cache["blocks.0.attn.pattern"].clone()
    pattern[0, 0, 1, 3] = 0.1  # weight on a future key
    pattern[0, 0, 2] *= 1.01  # a row that no longer sums to 1
    leaky["blocks.0.attn.pattern"] = pattern
    rows, zero, finite, scale = attention_badges(leaky, 0, 0, hs)
    assert not rows.ok and not zero.ok and finite.ok and scale.ok
    assert "1 of 10 future cells" in zero.detail

    unscaled = dict(cache)
    q, k = cache["blocks.0.attn.q"], cache["blocks.0.attn.k"]
    unscaled["blocks.0.attn.scores"] = q @ k.transpose(-2, -1) / hs  # 1/hs, not 1/sqrt(hs)
    assert not attention_badges(unscaled, 0, 1, hs)[3].ok
    assert not attention_badges(cache, 0, 1, hs * 4)[3].ok  # the wrong head size

    broken = dict(cache)
    nan_pattern = cache["blocks.1.attn.pattern"].clone()
    nan_pattern[0, 1, 4, 0] = float("nan")
    broken["blocks.1.attn.pattern"] = nan_pattern
    rows, _, finite, _ = attention_badges(broken, 1, 1, hs)
    assert not finite.ok and not rows.ok
    assert attention_badges(broken, 1, 0, hs)[2].ok  # the other head is fine


def test_badges_on_patterns_alone():
    """A snapshot keeps only the weights: the scale badge is left out."""
    pattern = np.tril(np.ones((3, 3))) / np.arange(1, 4)[:, None]
    badges = attention_badges({"blocks.0.attn.pattern": pattern[None]}, 0, 0, head_size=4)
    assert len(badges) == 3 and all(b.ok for b in badges)
