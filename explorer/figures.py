"""Figure builders: arrays and labels in, Plotly figures out. No Streamlit here.

Every builder is a pure function so tests can check a figure's numbers against the tensor
it came from. Conventions shared by all heatmaps:
- cells are indexed by position (0, 1, 2, ...) and the axes carry the tokens as tick text,
  so a token that occurs twice keeps two columns (category axes would merge them);
- matrices read like matrices: row 0 at the top;
- a masked cell is NaN, which Plotly leaves empty, never a huge negative number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PATTERN_SCALE = "Blues"  # attention weights, 0 to 1
SCORE_SCALE = "RdBu_r"  # signed values, centred on 0
MASK_SCALE = [[0.0, "#f2f2f2"], [1.0, "#3b6ea5"]]  # blocked, allowed
GRID_HOVER_TOKENS = 32  # longer prompts: the overview grid's hover names positions only
RUN_COLOURS = ("#3b6ea5", "#d0613f", "#4f9a5c", "#8a5fb0", "#b8913a", "#4aa3a8", "#c05a8c")


def to_numpy(values: object) -> np.ndarray:
    """A float64 array from a tensor, array or nested list (detached, on the CPU)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def masked_to_nan(values: object) -> np.ndarray:
    """The same array with ±inf (masked scores) replaced by NaN, so cells show empty."""
    array = to_numpy(values).copy()
    array[np.isinf(array)] = np.nan
    return array


def _token_axis(tokens: Sequence[str], title: str) -> dict:
    return dict(
        title=title,
        tickmode="array",
        tickvals=list(range(len(tokens))),
        ticktext=list(tokens),
        tickangle=0,
    )


def _matrix_trace(
    values: object,
    *,
    colorscale: object,
    zmin: float | None = None,
    zmax: float | None = None,
    zmid: float | None = None,
    text_format: str | None = None,
    hover: str = "row %{y} · col %{x}<br>value %{z:.4f}<extra></extra>",
    customdata: object = None,
    coloraxis: str | None = None,
    showscale: bool = True,
) -> go.Heatmap:
    array = masked_to_nan(values)
    # Arrays, not nested lists: Plotly checks a nested list cell by cell (about 100 ms for
    # one 64 x 64 heatmap with its hover labels), and an array in one go. A NaN cell goes
    # to the browser as NaN, which plotly.js draws as a gap, as it does a null.
    trace = go.Heatmap(
        z=array,
        x=list(range(array.shape[1])),
        y=list(range(array.shape[0])),
        colorscale=None if coloraxis else colorscale,
        zmin=zmin,
        zmax=zmax,
        zmid=zmid,
        hovertemplate=hover,
        customdata=customdata,
        texttemplate=text_format,
        hoverongaps=False,
        showscale=showscale,
    )
    if coloraxis:
        trace.update(coloraxis=coloraxis)
    return trace


def _pair_labels(row_labels: Sequence[str], col_labels: Sequence[str]) -> np.ndarray:
    """(R, C, 2) customdata for hover text: [i, j] holds [row label i, column label j].

    An object array: Plotly takes it as it is, where an array of numpy strings would be
    converted element by element first.
    """
    labels = np.empty((len(row_labels), len(col_labels), 2), dtype=object)
    labels[:, :, 0] = np.asarray(list(row_labels), dtype=object)[:, None]
    labels[:, :, 1] = np.asarray(list(col_labels), dtype=object)[None, :]
    return labels


def _check_shape(array: np.ndarray, rows: int, cols: int, what: str) -> None:
    if array.ndim != 2 or array.shape != (rows, cols):
        raise ValueError(f"{what}: expected shape ({rows}, {cols}), got {tuple(array.shape)}")


# --- attention ---------------------------------------------------------------------------


def attention_heatmap(
    pattern: object,
    query_tokens: Sequence[str],
    key_tokens: Sequence[str] | None = None,
    *,
    title: str = "attention pattern",
    kind: str = "pattern",
    show_values: bool = False,
) -> go.Figure:
    """One (T, S) attention matrix: queries down, keys across, exact value on hover.

    Args:
        pattern: (T, S) softmax weights, or raw / masked scores when kind is "scores".
        query_tokens: T labels for the rows; key_tokens: S labels (defaults to the rows').
        kind: "pattern" (0..1 scale), "scores" (signed scale centred on 0) or "mask".
        show_values: print each cell's value on it (small matrices only).
    """
    key_tokens = list(query_tokens if key_tokens is None else key_tokens)
    array = masked_to_nan(pattern)
    _check_shape(array, len(query_tokens), len(key_tokens), title)
    style = {
        "pattern": dict(colorscale=PATTERN_SCALE, zmin=0.0, zmax=1.0),
        "scores": dict(colorscale=SCORE_SCALE, zmid=0.0),
        "mask": dict(colorscale=MASK_SCALE, zmin=0.0, zmax=1.0, showscale=False),
    }[kind]
    trace = _matrix_trace(
        array,
        **style,
        text_format="%{z:.2f}" if show_values else None,
        hover="query %{y} %{customdata[0]}<br>key %{x} %{customdata[1]}"
        "<br>value %{z:.4f}<extra></extra>",
        customdata=_pair_labels(query_tokens, key_tokens),
    )
    fig = go.Figure(trace)
    fig.update_layout(
        title=title,
        xaxis=_token_axis(key_tokens, "key (attended to)"),
        yaxis={**_token_axis(query_tokens, "query (attending)"), "autorange": "reversed"},
        margin=dict(l=10, r=10, t=50, b=10),
    )
    return fig


def attention_grid(patterns: object, tokens: Sequence[str], *, title: str = "") -> go.Figure:
    """Every head of every layer at once: a (n_layer, n_head) grid of small heatmaps.

    Args:
        patterns: (L, nh, T, T) attention weights, one batch element.
        tokens: T labels for both axes.
    """
    array = to_numpy(patterns)
    if array.ndim != 4:
        raise ValueError(f"patterns: expected (L, nh, T, T), got shape {tuple(array.shape)}")
    n_layer, n_head, T, _ = array.shape
    fig = make_subplots(
        rows=n_layer,
        cols=n_head,
        subplot_titles=[f"layer {i} · head {h}" for i in range(n_layer) for h in range(n_head)],
        horizontal_spacing=0.02,
        vertical_spacing=0.06,
    )
    # Token names on hover cost two strings per cell and panel; past a few dozen positions
    # the grid is an overview, and positions alone keep the figure light.
    light = T > GRID_HOVER_TOKENS
    custom = None if light else _pair_labels(tokens, tokens)
    names = "" if light else " %{customdata[0]}"
    key_names = "" if light else " %{customdata[1]}"
    for layer in range(n_layer):
        for head in range(n_head):
            trace = _matrix_trace(
                array[layer, head],
                colorscale=PATTERN_SCALE,
                coloraxis="coloraxis",
                hover=f"layer {layer} head {head}<br>query %{{y}}{names}"
                f"<br>key %{{x}}{key_names}<br>weight %{{z:.4f}}<extra></extra>",
                customdata=custom,
            )
            fig.add_trace(trace, row=layer + 1, col=head + 1)
    # Past two dozen positions the panels are too small for token names: leaving the tick
    # lists out also spares Plotly checking them on every one of the L x nh axes.
    if T <= 24:
        fig.update_xaxes(**_token_axis(tokens, ""))
        fig.update_yaxes(**_token_axis(tokens, ""), autorange="reversed")
    else:
        fig.update_xaxes(showticklabels=False)
        fig.update_yaxes(showticklabels=False, autorange="reversed")
    fig.update_layout(
        title=title or None,
        coloraxis=dict(colorscale=PATTERN_SCALE, cmin=0.0, cmax=1.0),
        height=max(260, 230 * n_layer),
        margin=dict(l=10, r=10, t=60, b=10),
    )
    return fig


def mask_heatmap(n_positions: int, tokens: Sequence[str] | None = None) -> go.Figure:
    """The causal mask: 1 where a query may look at a key (on or below the diagonal)."""
    tokens = list(tokens) if tokens is not None else [str(i) for i in range(n_positions)]
    allowed = np.tril(np.ones((n_positions, n_positions)))
    return attention_heatmap(
        allowed, tokens, title="causal mask (1 = may look)", kind="mask", show_values=True
    )


# --- any matrix with numbers on it ---------------------------------------------------------


def matrix_heatmap(
    values: object,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str = "",
    signed: bool = True,
    show_values: bool = True,
    decimals: int = 2,
) -> go.Figure:
    """A 2-D tensor as a heatmap with its numbers printed on the cells.

    Rows are usually positions (labelled with tokens) and columns features.
    """
    array = masked_to_nan(values)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{title or 'matrix'}: expected 2 dimensions, got {array.ndim}")
    rows, cols = array.shape
    row_labels = list(row_labels) if row_labels is not None else [str(i) for i in range(rows)]
    col_labels = list(col_labels) if col_labels is not None else [str(j) for j in range(cols)]
    _check_shape(array, len(row_labels), len(col_labels), title or "matrix")
    style = dict(colorscale=SCORE_SCALE, zmid=0.0) if signed else dict(colorscale=PATTERN_SCALE)
    trace = _matrix_trace(
        array,
        **style,
        text_format=f"%{{z:.{decimals}f}}" if show_values else None,
        hover="%{customdata[0]} · %{customdata[1]}<br>value %{z:.4f}<extra></extra>",
        customdata=_pair_labels(row_labels, col_labels),
    )
    fig = go.Figure(trace)
    fig.update_layout(
        title=title or None,
        xaxis=_token_axis(col_labels, ""),
        yaxis={**_token_axis(row_labels, ""), "autorange": "reversed"},
        height=max(220, 34 * rows + 110),
        margin=dict(l=10, r=10, t=50 if title else 20, b=10),
    )
    return fig


def heads_heatmap(
    values: object,
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str] | None = None,
    title: str = "",
    signed: bool = True,
    show_values: bool = True,
) -> go.Figure:
    """(nh, R, K) per-head matrices side by side, one panel per head, one shared scale."""
    array = masked_to_nan(values)
    if array.ndim != 3:
        raise ValueError(f"{title or 'heads'}: expected (nh, rows, cols), got {array.shape}")
    n_head, rows, cols = array.shape
    col_labels = list(col_labels) if col_labels is not None else [str(j) for j in range(cols)]
    fig = make_subplots(
        rows=1,
        cols=n_head,
        subplot_titles=[f"head {h}" for h in range(n_head)],
        horizontal_spacing=0.04,
    )
    finite = array[np.isfinite(array)]
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    axis = (
        dict(colorscale=SCORE_SCALE, cmin=-bound, cmax=bound)
        if signed
        else dict(colorscale=PATTERN_SCALE, cmin=0.0, cmax=max(bound, 1e-9))
    )
    for head in range(n_head):
        trace = _matrix_trace(
            array[head],
            colorscale=None,
            coloraxis="coloraxis",
            text_format="%{z:.2f}" if show_values else None,
            hover=f"head {head}<br>%{{customdata[0]}} · %{{customdata[1]}}"
            "<br>value %{z:.4f}<extra></extra>",
            customdata=_pair_labels(row_labels, col_labels),
        )
        fig.add_trace(trace, row=1, col=head + 1)
    fig.update_xaxes(**_token_axis(col_labels, ""))
    fig.update_yaxes(**_token_axis(list(row_labels), ""), autorange="reversed")
    fig.update_layout(
        title=title or None,
        coloraxis=axis,
        height=max(220, 34 * rows + 110),
        margin=dict(l=10, r=10, t=60, b=10),
    )
    return fig


# --- loss curves -----------------------------------------------------------------------------


@dataclass
class LossCurve:
    """One run's losses: every step's training loss and the periodic evaluations."""

    label: str
    steps: Sequence[int] = field(default_factory=list)  # optimiser steps with a train loss
    train_loss: Sequence[float] = field(default_factory=list)
    eval_steps: Sequence[int] = field(default_factory=list)
    eval_train_loss: Sequence[float] = field(default_factory=list)
    val_loss: Sequence[float] = field(default_factory=list)


def loss_figure(
    curves: Sequence[LossCurve],
    *,
    vocab_size: int | None = None,
    max_steps: int | None = None,
    title: str = "loss",
) -> go.Figure:
    """Train and val loss of one or more runs on shared axes.

    The first curve is the main one (solid); later ones are overlays (dotted). The lowest
    val loss of each run is starred; a dashed line marks ln(V), the loss of a uniform guess
    over the vocabulary, which an untrained model starts near.
    """
    fig = go.Figure()
    for index, curve in enumerate(curves):
        colour = RUN_COLOURS[index % len(RUN_COLOURS)]
        dash = "solid" if index == 0 else "dot"
        name = curve.label
        if len(curve.steps):
            fig.add_scatter(
                x=list(curve.steps),
                y=list(curve.train_loss),
                mode="lines",
                name=f"{name} · train (step)",
                line=dict(color=colour, width=1, dash=dash),
                opacity=0.45,
                legendgroup=name,
            )
        if len(curve.eval_steps):
            fig.add_scatter(
                x=list(curve.eval_steps),
                y=list(curve.val_loss),
                mode="lines+markers",
                name=f"{name} · val",
                line=dict(color=colour, width=2.5, dash=dash),
                legendgroup=name,
            )
            best = int(np.nanargmin(np.asarray(curve.val_loss, dtype=float)))
            fig.add_scatter(
                x=[curve.eval_steps[best]],
                y=[curve.val_loss[best]],
                mode="markers+text",
                name=f"{name} · min val",
                marker=dict(
                    symbol="star", size=14, color=colour, line=dict(color="black", width=1)
                ),
                text=[f"min {curve.val_loss[best]:.3f}"],
                textposition="top center",
                legendgroup=name,
                showlegend=False,
                hovertemplate="lowest val loss %{y:.4f} at step %{x}<extra></extra>",
            )
    if vocab_size is not None and vocab_size > 1:
        uniform = math.log(vocab_size)
        fig.add_hline(
            y=uniform,
            line=dict(color="grey", dash="dash", width=1),
            annotation_text=f"uniform guess ln({vocab_size}) = {uniform:.2f}",
            annotation_position="top right",
        )
    fig.update_layout(
        title=title,
        xaxis=dict(title="step", range=[0, max_steps] if max_steps else None),
        yaxis=dict(title="cross-entropy (nats)", rangemode="tozero"),
        legend=dict(orientation="h", yanchor="top", y=-0.18, x=0),
        height=420,
        margin=dict(l=10, r=10, t=50, b=10),
    )
    return fig


# --- corpus and sampling ---------------------------------------------------------------------


def token_frequency_figure(
    tokens: Sequence[str], counts: Sequence[int], *, title: str = ""
) -> go.Figure:
    """Horizontal bars of the most frequent tokens, most frequent at the top."""
    fig = go.Figure(
        go.Bar(
            x=list(counts),
            y=list(range(len(tokens))),
            orientation="h",
            customdata=list(tokens),
            hovertemplate="%{customdata}: %{x:,}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title or None,
        xaxis=dict(title="occurrences"),
        yaxis={**_token_axis(tokens, ""), "autorange": "reversed"},
        height=max(240, 22 * len(tokens) + 80),
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
    )
    return fig


def sampler_keep_figure(
    token_labels: Sequence[str],
    base_probs: object,
    kept_probs: Mapping[str, object],
    *,
    top: int = 20,
    title: str = "",
) -> go.Figure:
    """Which tokens each sampler keeps at one step, and with what probability.

    Args:
        token_labels: V labels.
        base_probs: (V,) softmax of the raw logits (temperature 1), the reference.
        kept_probs: sampler name -> (V,) probabilities after its filter, 0 where dropped.
        top: how many of the most likely tokens (under base_probs) to show.

    Top panel: the reference distribution. Bottom: one row per sampler, a cell per token
    with its renormalised probability; dropped tokens are empty cells. The row label
    counts the tokens the sampler kept over the whole vocabulary.
    """
    base = to_numpy(base_probs)
    order = np.argsort(-base, kind="stable")[: min(top, base.size)]
    labels = [token_labels[i] for i in order]
    names = list(kept_probs)
    rows = []
    row_labels = []
    for name in names:
        probs = to_numpy(kept_probs[name])
        kept = int((probs > 0).sum())
        rows.append(np.where(probs[order] > 0, probs[order], np.nan))
        row_labels.append(f"{name} ({kept} kept)")
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.4, 0.6], vertical_spacing=0.06
    )
    fig.add_trace(
        go.Bar(
            x=list(range(len(order))),
            y=base[order].tolist(),
            customdata=labels,
            marker_color="#9aaec4",
            name="softmax(logits)",
            hovertemplate="%{customdata}: p=%{y:.4f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    matrix = np.vstack(rows) if rows else np.zeros((0, len(order)))
    fig.add_trace(
        go.Heatmap(
            z=matrix,
            x=list(range(len(order))),
            y=list(range(len(names))),
            colorscale=PATTERN_SCALE,
            zmin=0.0,
            zmax=1.0,
            texttemplate="%{z:.2f}",
            hoverongaps=False,
            customdata=_pair_labels(row_labels, labels),
            hovertemplate="%{customdata[0]}<br>%{customdata[1]}: p=%{z:.4f}<extra></extra>",
            colorbar=dict(title="p kept", len=0.55, y=0.28),
        ),
        row=2,
        col=1,
    )
    fig.update_xaxes(**_token_axis(labels, ""), row=2, col=1)
    fig.update_yaxes(title="p", row=1, col=1)
    fig.update_yaxes(**_token_axis(row_labels, ""), autorange="reversed", row=2, col=1)
    fig.update_layout(
        title=title or None,
        showlegend=False,
        height=200 + 36 * len(names) + 140,
        margin=dict(l=10, r=10, t=50 if title else 20, b=10),
    )
    return fig
