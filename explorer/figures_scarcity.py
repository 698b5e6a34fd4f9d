"""Figures of the scarcity lab, the training scrubber and "why this token". No Streamlit.

Pure builders, data in and a Plotly figure (or an HTML string) out, like `figures.py`:
- `fractions_figure`: train and val curves of runs on several fractions of one corpus,
  colour by fraction, line style by split;
- `passage_html`: a passage with each token coloured by its loss (or its loss change);
- `logits_figure`, `renormalised_figure`, `cumulative_figure`: one sampling step from
  logits to the chosen token (see `tinytf.explain.TokenChoice`);
- `attention_badges`: checks of the attention invariants on the very tensors a heatmap
  shows, for the pages to print next to it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from explorer.figures import RUN_COLOURS, LossCurve, to_numpy
from tinytf.explain import TokenChoice

SPLIT_DASH = {"train": "dash", "val": "solid"}
KEPT_COLOUR = "#3b6ea5"
CUT_COLOUR = "#c9ced6"
CHOSEN_COLOUR = "#d0613f"
RAW_COLOUR = "#9aa5b1"
ROW_SUM_TOLERANCE = 1e-5  # float32 softmax rows sum to 1 within a few ulps
SCALE_TOLERANCE = 1e-4  # relative, for scores * sqrt(hs) against q·k


def fraction_label(fraction: float) -> str:
    """0.05 -> '5%', 1.0 -> '100%', 0.005 -> '0.5%'."""
    return f"{fraction * 100:g}%"


# --- the scarcity lab ----------------------------------------------------------------------


def fractions_figure(
    curves: Sequence[tuple[float, LossCurve]],
    *,
    vocab_size: int | None = None,
    title: str = "the same model on less and less data",
) -> go.Figure:
    """Evaluation curves of one run per training fraction on shared axes.

    Each fraction has one colour (smallest first); its train estimate is dashed and its
    val estimate solid. Both are the evaluations' estimates (mean over fixed windows), so
    the gap between a fraction's two lines is its generalisation gap at that step.
    """
    fig = go.Figure()
    for index, (fraction, curve) in enumerate(sorted(curves, key=lambda pair: pair[0])):
        colour = RUN_COLOURS[index % len(RUN_COLOURS)]
        label = fraction_label(fraction)
        for split, values in (("train", curve.eval_train_loss), ("val", curve.val_loss)):
            fig.add_scatter(
                x=list(curve.eval_steps),
                y=list(values),
                mode="lines+markers",
                name=f"{label} · {split}",
                legendgroup=label,
                line=dict(
                    color=colour, dash=SPLIT_DASH[split], width=2.5 if split == "val" else 1.8
                ),
                marker=dict(size=4),
                hovertemplate=f"{label} of the data · {split}<br>step %{{x}}<br>"
                "loss %{y:.4f}<extra></extra>",
            )
    if vocab_size is not None and vocab_size > 1:
        uniform = math.log(vocab_size)
        fig.add_hline(
            y=uniform,
            line=dict(color="grey", dash="dot", width=1),
            annotation_text=f"uniform guess ln({vocab_size}) = {uniform:.2f}",
            annotation_position="top right",
        )
    fig.update_layout(
        title=title,
        xaxis=dict(title="step"),
        yaxis=dict(title="cross-entropy (nats)", rangemode="tozero"),
        legend=dict(title="training data · split (dashed train, solid val)"),
        height=460,
        margin=dict(l=10, r=10, t=50, b=10),
    )
    return fig


# --- a passage coloured by loss ----------------------------------------------------------


def _mix(low: tuple[int, int, int], high: tuple[int, int, int], t: float) -> str:
    t = min(1.0, max(0.0, t))
    r, g, b = (round(a + (z - a) * t) for a, z in zip(low, high, strict=True))
    return f"rgb({r},{g},{b})"


def loss_colour(value: float, vmax: float, signed: bool = False) -> str:
    """White to red by value / vmax; signed: green for below 0, red above; grey for NaN."""
    if value != value:  # NaN: the first token has no loss
        return "rgb(230,230,230)"
    white = (255, 255, 255)
    if signed and value < 0:
        return _mix(white, (46, 160, 67), -value / vmax)
    return _mix(white, (207, 34, 46), value / vmax)


def passage_html(
    tokens: Sequence[str],
    values: object,
    *,
    signed: bool = False,
    vmax: float | None = None,
    unit: str = "nats",
) -> str:
    """The passage as coloured <span>s, each token's value on hover (escaped HTML).

    Args:
        tokens: the token strings, as written.
        values: (len,) one number per token (NaN for none: shown grey).
        signed: colour below 0 green and above 0 red (a change), else white to red.
        vmax: the value of full colour; default the largest |value|.
    """
    array = to_numpy(values)
    if array.shape != (len(tokens),):
        raise ValueError(f"values: expected ({len(tokens)},), got {tuple(array.shape)}")
    finite = np.abs(array[np.isfinite(array)])
    scale = vmax or (float(finite.max()) if finite.size else 1.0) or 1.0
    parts = []
    for token, value in zip(tokens, array, strict=True):
        shown = html.escape(token.replace("\n", "↵"))
        if value != value:
            tip = "no value: nothing before it to predict it from"
        else:
            tip = f"{value:+.3f} {unit}" if signed else f"{value:.3f} {unit}"
        style = f"background:{loss_colour(float(value), scale, signed)};border-radius:2px"
        parts.append(f'<span title="{html.escape(tip)}" style="{style}">{shown}</span>')
        if "\n" in token:
            parts.append("\n")
    legend = (
        f"green: lower by up to {scale:.2f} {unit} · red: higher by up to {scale:.2f} {unit}"
        if signed
        else f"white: 0 {unit} · red: {scale:.2f} {unit} or more"
    )
    return (
        '<div style="white-space:pre-wrap;font-family:monospace;line-height:1.8;'
        f'font-size:0.9rem">{"".join(parts)}</div>'
        f'<div style="font-size:0.75rem;color:#666">{html.escape(legend)}</div>'
    )


# --- why this token ----------------------------------------------------------------------


def _shown_ranks(choice: TokenChoice, top: int) -> int:
    """How many tokens (most likely first) to draw: `top`, or down to the chosen one."""
    return min(choice.order.numel(), max(top, choice.chosen_rank + 1))


def _labels(choice: TokenChoice, labels: Sequence[str], count: int) -> list[str]:
    return [labels[i] for i in choice.order[:count].tolist()]


def _axis(names: Sequence[str]) -> dict:
    return dict(
        tickmode="array",
        tickvals=list(range(len(names))),
        ticktext=list(names),
        title="token, most likely first",
    )


def logits_figure(choice: TokenChoice, labels: Sequence[str], *, top: int = 20) -> go.Figure:
    """The most likely tokens' logits and logits / T, kept ones coloured, with the cut.

    The cut is drawn twice: a dotted line between the last kept token and the first cut
    one, and for top-k and greedy a horizontal line at the last kept token's logit / T.
    """
    count = _shown_ranks(choice, top)
    ids = choice.order[:count]
    names = _labels(choice, labels, count)
    kept = choice.keep_mask[ids].tolist()
    colours = [KEPT_COLOUR if k else CUT_COLOUR for k in kept]
    x = list(range(count))

    fig = go.Figure()
    if choice.temperature != 1.0:
        fig.add_bar(
            x=x,
            y=choice.logits[ids].tolist(),
            name="logit",
            marker_color=RAW_COLOUR,
            opacity=0.6,
            customdata=names,
            hovertemplate="%{customdata}: logit %{y:.3f}<extra></extra>",
        )
    fig.add_bar(
        x=x,
        y=choice.scaled_logits[ids].tolist(),
        name=f"logit / T (T = {choice.temperature:g})",
        marker_color=colours,
        customdata=names,
        hovertemplate="%{customdata}: logit / T %{y:.3f}<extra></extra>",
    )
    if choice.kept < count:
        fig.add_vline(
            x=choice.kept - 0.5,
            line=dict(color="black", dash="dot", width=1.5),
            annotation_text=f"cut: {choice.kept} kept",
            annotation_position="top",
        )
    if choice.cut_kind in ("top-k", "greedy"):
        fig.add_hline(
            y=choice.cut,
            line=dict(color=CHOSEN_COLOUR, dash="dash", width=1),
            annotation_text=f"last kept logit / T = {choice.cut:.3f}",
            annotation_position="bottom right",
        )
    rank = choice.chosen_rank
    fig.add_annotation(
        x=rank,
        y=float(choice.scaled_logits[choice.chosen]),
        text="chosen",
        showarrow=True,
        arrowhead=2,
        arrowcolor=CHOSEN_COLOUR,
        ay=-30,
    )
    fig.update_layout(
        title="1 · the scores, divided by the temperature, and the cut",
        barmode="group",
        xaxis=_axis(names),
        yaxis=dict(title="score"),
        height=380,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def renormalised_figure(choice: TokenChoice, labels: Sequence[str], *, top: int = 20) -> go.Figure:
    """Probabilities before the cut, and after it (renormalised to sum to 1).

    For top-p the running sum of the 'before' probabilities is drawn too, with p.
    """
    count = _shown_ranks(choice, top)
    ids = choice.order[:count]
    names = _labels(choice, labels, count)
    x = list(range(count))
    fig = go.Figure()
    fig.add_bar(
        x=x,
        y=choice.probs_before[ids].tolist(),
        name="before the cut",
        marker_color=CUT_COLOUR,
        customdata=names,
        hovertemplate="%{customdata}: %{y:.4f} before<extra></extra>",
    )
    fig.add_bar(
        x=x,
        y=choice.probs_after[ids].tolist(),
        name="after (renormalised)",
        marker_color=KEPT_COLOUR,
        customdata=names,
        hovertemplate="%{customdata}: %{y:.4f} after<extra></extra>",
    )
    if choice.cut_kind == "top-p":
        fig.add_scatter(
            x=x,
            y=choice.cumulative_before[:count].tolist(),
            mode="lines+markers",
            name="running sum before",
            line=dict(color="black", width=1),
        )
        fig.add_hline(
            y=choice.cut,
            line=dict(color=CHOSEN_COLOUR, dash="dash", width=1),
            annotation_text=f"p = {choice.cut:g}",
            annotation_position="top left",
        )
    fig.update_layout(
        title=(
            f"2 · {choice.kept} kept, {choice.mass_removed:.1%} of the probability removed; "
            f"entropy {choice.entropy_before:.2f} → {choice.entropy_after:.2f} nats"
        ),
        barmode="group",
        xaxis=_axis(names),
        yaxis=dict(title="probability", range=[0, 1.05]),
        height=380,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def cumulative_figure(choice: TokenChoice, labels: Sequence[str], *, named: int = 30) -> go.Figure:
    """The kept tokens end to end on [0, 1), most likely first, and the draw u on it.

    The token under u is the one chosen. Tokens beyond the `named` most likely ones
    still get their own segment, only without a printed label.
    """
    widths = choice.probs_after[choice.order].double()
    n = choice.kept
    ids = choice.order[:n].tolist()
    width = widths[:n].tolist()
    ends = choice.cumulative[:n].tolist()
    starts = [end - w for end, w in zip(ends, width, strict=True)]
    colours = [CHOSEN_COLOUR if i == choice.chosen else KEPT_COLOUR for i in ids]
    names = [labels[i] for i in ids]
    text = [
        name if rank < named and w > 0.04 else ""
        for rank, (name, w) in enumerate(zip(names, width, strict=True))
    ]
    fig = go.Figure(
        go.Bar(
            x=width,
            base=starts,
            y=["kept"] * n,
            orientation="h",
            marker=dict(color=colours, line=dict(color="white", width=1)),
            text=text,
            textposition="inside",
            insidetextanchor="middle",
            customdata=list(zip(names, starts, ends, strict=True)),
            hovertemplate="%{customdata[0]}: [%{customdata[1]:.4f}, %{customdata[2]:.4f})"
            "<extra></extra>",
            showlegend=False,
        )
    )
    fig.add_vline(
        x=choice.draw,
        line=dict(color="black", width=2),
        annotation_text=f"u = {choice.draw:.4f} → {labels[choice.chosen]}",
        annotation_position="top",
    )
    fig.update_layout(
        title="3 · the draw: a uniform u lands on one token's stretch of the bar",
        xaxis=dict(title="cumulative probability after the cut", range=[0, 1]),
        yaxis=dict(showticklabels=False),
        barmode="overlay",
        height=220,
        margin=dict(l=10, r=10, t=60, b=10),
    )
    return fig


# --- attention invariants ----------------------------------------------------------------


@dataclass(frozen=True)
class Badge:
    """One checked property of the attention shown: passed or not, and the number."""

    label: str
    ok: bool
    detail: str


def _head(cache: Mapping[str, object], layer: int, head: int, name: str) -> np.ndarray | None:
    tensor = cache.get(f"blocks.{layer}.attn.{name}")
    if tensor is None:
        return None
    array = to_numpy(tensor)
    return array[0, head] if array.ndim == 4 else array[head]


def _future_cells(n_queries: int, n_keys: int) -> np.ndarray:
    """(T, S) True above the diagonal: keys after each query (queries are the last T)."""
    rows = np.arange(n_queries)[:, None] + (n_keys - n_queries)
    return np.arange(n_keys)[None, :] > rows


def attention_badges(
    cache: Mapping[str, object], layer: int, head: int, head_size: int
) -> list[Badge]:
    """Check one head's attention against what attention must satisfy.

    Args:
        cache: a capture cache (`blocks.i.attn.pattern` (B, nh, T, S), and q, k, scores
            when present) or the same tensors without the batch axis.
        head_size: hs of the model; the scores must be q·k / sqrt(hs).

    Returns:
        Badges for: rows sum to 1, exactly zero above the diagonal, no NaN or inf, and
        (when q, k and scores are in the cache) the 1/sqrt(hs) scale.
    """
    pattern = _head(cache, layer, head, "pattern")
    if pattern is None:
        raise KeyError(f"blocks.{layer}.attn.pattern is not in the cache")
    badges = []

    # 1. Every row is a probability distribution over the keys.
    finite = bool(np.isfinite(pattern).all())
    row_error = float(np.abs(pattern.sum(axis=-1) - 1.0).max()) if finite else math.inf
    badges.append(
        Badge(
            "rows sum to 1", row_error <= ROW_SUM_TOLERANCE, f"max |row sum − 1| = {row_error:.1e}"
        )
    )

    # 2. No weight at all on a future key.
    future = pattern[_future_cells(*pattern.shape)]
    nonzero = int(np.count_nonzero(future))
    largest = float(np.nanmax(np.abs(future))) if future.size else 0.0
    detail = f"{nonzero} of {future.size} future cells non-zero (largest {largest:.1e})"
    badges.append(Badge("exactly 0 above the diagonal", nonzero == 0, detail))

    # 3. Nothing undefined in the weights or the raw scores.
    scores = _head(cache, layer, head, "scores")
    bad = int((~np.isfinite(pattern)).sum())
    if scores is not None:
        bad += int((~np.isfinite(scores)).sum())
    badges.append(
        Badge("no NaN or inf", bad == 0, f"{bad} non-finite values in the weights and raw scores")
    )

    # 4. The scores are the dot products scaled by 1/sqrt(hs), recomputed here.
    q, k = _head(cache, layer, head, "q"), _head(cache, layer, head, "k")
    if q is not None and k is not None and scores is not None:
        badges.append(_scale_badge(q, k, scores, head_size))
    return badges


def _scale_badge(q: np.ndarray, k: np.ndarray, scores: np.ndarray, head_size: int) -> Badge:
    label = f"scale 1/√{head_size}"
    if q.shape[-1] != head_size:
        return Badge(label, False, f"q has {q.shape[-1]} columns, not hs = {head_size}")
    dots = q @ k.T  # (T, S)
    error = float(np.abs(scores * math.sqrt(head_size) - dots).max())
    ok = error <= SCALE_TOLERANCE * max(1.0, float(np.abs(dots).max()))
    row, col = q.shape[0] - 1, 0  # the last query and the first key: always a real cell
    detail = (
        f"q·k at ({row}, {col}) = {dots[row, col]:.4f}, score × √{head_size} = "
        f"{scores[row, col] * math.sqrt(head_size):.4f}; max difference {error:.1e}"
    )
    return Badge(label, ok, detail)
