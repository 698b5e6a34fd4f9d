"""Figure builders: the numbers in each figure are the tensor's, axes carry the tokens,
masked cells are empty, legends and guide lines say what they show."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
import torch

from explorer import figures
from explorer.render import format_duration, token_label, token_spans_html, visible_token


def cells(trace) -> np.ndarray:
    """A heatmap trace's z as floats (an empty cell is NaN)."""
    return np.asarray(trace.z, dtype=float)


@pytest.fixture
def captured(tiny_model):
    torch.manual_seed(1)
    idx = torch.randint(0, tiny_model.config.vocab_size, (1, 6))
    with torch.no_grad():
        return tiny_model(idx, capture=True).cache


def test_attention_heatmap_values_and_token_axes(captured):
    tokens = ["a", "b", "a", "c", "d", "a"]  # repeated tokens keep their own columns
    pattern = captured["blocks.1.attn.pattern"][0, 1]  # (T, T)
    fig = figures.attention_heatmap(pattern, tokens, title="L1 H1")
    trace = fig.data[0]

    np.testing.assert_allclose(cells(trace), pattern.numpy(), rtol=0, atol=1e-7)
    assert list(fig.layout.xaxis.ticktext) == tokens
    assert list(fig.layout.yaxis.ticktext) == tokens
    assert list(fig.layout.xaxis.tickvals) == list(range(6))
    assert fig.layout.yaxis.autorange == "reversed"  # row 0 (first query) on top
    assert (trace.zmin, trace.zmax) == (0.0, 1.0)
    # Hover names both tokens of a cell: customdata[i][j] = [query i, key j].
    assert list(trace.customdata[3][0]) == ["c", "a"]


def test_masked_scores_cells_are_empty_not_large_numbers(captured):
    masked = captured["blocks.0.attn.masked_scores"][0, 0]  # -inf above the diagonal
    fig = figures.attention_heatmap(masked, list("abcdef"), kind="scores")
    trace = fig.data[0]
    upper = np.triu_indices(6, k=1)
    lower = np.tril_indices(6)

    assert np.isnan(cells(trace)[upper]).all()
    # What the browser gets: the same matrix, NaN where masked (plotly.js leaves it empty).
    sent = json.loads(fig.to_json())["data"][0]["z"]
    if isinstance(sent, dict):  # plotly 6 and later: a typed array, base64-encoded
        decoded = np.frombuffer(base64.b64decode(sent["bdata"]), dtype=sent["dtype"])
    else:  # plotly 5: nested lists, NaN sent as null
        decoded = np.array(sent, dtype=float)
    decoded = decoded.reshape(6, 6)
    assert np.isnan(decoded[upper]).all() and np.isfinite(decoded[lower]).all()
    np.testing.assert_allclose(cells(trace)[lower], masked.numpy()[lower], atol=1e-7)
    assert trace.hoverongaps is False
    assert trace.zmid == 0.0  # signed scores: diverging scale centred on 0


def test_shape_mismatch_between_matrix_and_tokens_is_refused():
    with pytest.raises(ValueError, match=r"expected shape \(3, 3\)"):
        figures.attention_heatmap(np.eye(4), ["a", "b", "c"])


def test_attention_grid_has_every_layer_and_head(captured, tiny_config):
    patterns = torch.stack(
        [captured[f"blocks.{i}.attn.pattern"][0] for i in range(tiny_config.n_layer)]
    )  # (L, nh, T, T)
    tokens = list("uvwxyz")
    fig = figures.attention_grid(patterns, tokens)

    assert len(fig.data) == tiny_config.n_layer * tiny_config.n_head
    titles = [a.text for a in fig.layout.annotations]
    assert titles == [
        "layer 0 · head 0",
        "layer 0 · head 1",
        "layer 1 · head 0",
        "layer 1 · head 1",
    ]
    # Traces go row by row: trace 3 is layer 1, head 1.
    np.testing.assert_allclose(cells(fig.data[3]), patterns[1, 1].numpy(), atol=1e-7)
    assert fig.layout.coloraxis.cmin == 0.0 and fig.layout.coloraxis.cmax == 1.0
    assert list(fig.layout.xaxis4.ticktext) == tokens


def test_mask_heatmap_is_lower_triangular():
    fig = figures.mask_heatmap(4, list("abcd"))
    np.testing.assert_array_equal(cells(fig.data[0]), np.tril(np.ones((4, 4))))


def test_matrix_heatmap_prints_values_and_handles_vectors():
    values = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.25, -1.0]])
    fig = figures.matrix_heatmap(values, row_labels=["x", "y"], title="q")
    trace = fig.data[0]
    np.testing.assert_array_equal(cells(trace), values.numpy())
    assert trace.texttemplate == "%{z:.2f}"
    assert list(fig.layout.yaxis.ticktext) == ["x", "y"]

    vector = figures.matrix_heatmap(torch.tensor([1.0, 2.0]), decimals=3)
    assert cells(vector.data[0]).shape == (1, 2)
    assert vector.data[0].texttemplate == "%{z:.3f}"


def test_heads_heatmap_one_panel_per_head_on_a_shared_symmetric_scale():
    values = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3) - 8
    fig = figures.heads_heatmap(values, row_labels=list("abc"))
    assert len(fig.data) == 2
    np.testing.assert_array_equal(cells(fig.data[1]), values[1].numpy())
    assert fig.layout.coloraxis.cmin == -9 and fig.layout.coloraxis.cmax == 9


def test_loss_figure_marks_minimum_and_uniform_guess():
    curve = figures.LossCurve(
        "run-a",
        steps=[1, 2, 3, 4],
        train_loss=[3.0, 2.5, 2.0, 1.8],
        eval_steps=[2, 4, 6],
        eval_train_loss=[2.4, 1.9, 1.5],
        val_loss=[2.6, 2.1, 2.3],
    )
    overlay = figures.LossCurve("run-b", eval_steps=[2], val_loss=[2.9])
    fig = figures.loss_figure([curve, overlay], vocab_size=30)

    by_name = {trace.name: trace for trace in fig.data}
    assert list(by_name["run-a · train (step)"].y) == [3.0, 2.5, 2.0, 1.8]
    assert list(by_name["run-a · val"].y) == [2.6, 2.1, 2.3]
    star = by_name["run-a · min val"]
    assert (star.x[0], star.y[0]) == (4, 2.1)
    assert by_name["run-b · val"].line.dash == "dot"  # overlays are dotted
    uniform = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(uniform) == 1 and uniform[0].y0 == pytest.approx(math.log(30))


def test_loss_figure_without_points_is_empty_but_valid():
    fig = figures.loss_figure([figures.LossCurve("empty")], vocab_size=None)
    assert len(fig.data) == 0 and len(fig.layout.shapes) == 0


def test_token_frequency_figure_keeps_order():
    fig = figures.token_frequency_figure(["e", "t", "a"], [50, 30, 10])
    assert list(fig.data[0].x) == [50, 30, 10]
    assert list(fig.layout.yaxis.ticktext) == ["e", "t", "a"]


def test_sampler_keep_figure_counts_and_empties_dropped_tokens():
    labels = ["a", "b", "c", "d"]
    base = torch.tensor([0.1, 0.5, 0.3, 0.1])
    kept = {
        "greedy": torch.tensor([0.0, 1.0, 0.0, 0.0]),
        "top-k": torch.tensor([0.0, 0.625, 0.375, 0.0]),
    }
    fig = figures.sampler_keep_figure(labels, base, kept, top=3)
    bars, heat = fig.data

    assert list(bars.customdata) == ["b", "c", "a"]  # most likely first
    np.testing.assert_allclose(bars.y, [0.5, 0.3, 0.1])
    grid = cells(heat)
    np.testing.assert_allclose(grid[0], [1.0, np.nan, np.nan])
    np.testing.assert_allclose(grid[1], [0.625, 0.375, np.nan])
    assert list(fig.layout.yaxis2.ticktext) == ["greedy (1 kept)", "top-k (2 kept)"]


def test_token_spans_escape_corpus_markup_and_alternate_colours():
    page = token_spans_html(["<script>", "a&b", "\n", "x"])
    assert "<script>" not in page and "&lt;script&gt;" in page and "a&amp;b" in page
    spans = page.split("<span ")[1:]
    assert len(spans) == 4
    assert "#dbe7f3" in spans[0] and "#f6dfcf" in spans[1]
    assert "↵" in spans[2]


def test_token_labels_make_whitespace_visible_and_mark_unknowns():
    assert visible_token(" ") == "·" and visible_token("\n") == "↵" and visible_token("ab") == "ab"
    assert token_label("zebra", unknown=True) == "⟨zebra⟩?"


def test_format_duration():
    assert format_duration(None) == "—"
    assert format_duration(5.4) == "5 s"
    assert format_duration(125) == "2 min 05 s"
    assert format_duration(3720) == "1 h 02 min"


def test_attention_grid_of_a_long_prompt_drops_token_hover():
    T = figures.GRID_HOVER_TOKENS + 1
    patterns = torch.softmax(torch.randn(1, 2, T, T), dim=-1)
    fig = figures.attention_grid(patterns, [str(i) for i in range(T)])
    assert all(trace.customdata is None for trace in fig.data)
    assert "customdata" not in fig.data[0].hovertemplate
