"""Causal mask: why no position can see the future, and the check that it cannot."""

from __future__ import annotations

import streamlit as st

from explorer import figures, insight
from explorer.attention_view import PromptError, output_differences, run_prompt
from explorer.models import current_source
from explorer.render import token_label
from explorer.state import keep_page_state
from tinytf.diagnostics import DiagnosticsError, causal_check

keep_page_state("causal_")
st.title("Causal mask")
st.markdown(
    "A position may attend to itself and to earlier positions only. Scores of later "
    "positions are set to -∞ before the softmax, which turns them into weights of exactly 0."
)

source = current_source()
if source is None:
    st.stop()
st.caption(f"Model: {source.label}")

st.text_input("Prompt", key="causal_prompt", max_chars=2000)
try:
    view = run_prompt(source.model, source.tokenizer, st.session_state.causal_prompt)
except PromptError as error:
    st.error(str(error))
    st.stop()
if view.unknown_tokens:
    st.warning(f"Read as <unk>: {', '.join(repr(t) for t in dict.fromkeys(view.unknown_tokens))}")

labels, T = view.labels, len(view.ids)
n_layer, n_head = view.n_layers_heads()
st.session_state.causal_layer = min(st.session_state.causal_layer, n_layer - 1)
st.session_state.causal_head = min(st.session_state.causal_head, n_head - 1)
left, right = st.columns(2)
layer = left.selectbox("Layer", range(n_layer), key="causal_layer")
head = right.selectbox("Head", range(n_head), key="causal_head")

small = T <= 12
mask_col, masked_col, soft_col = st.columns(3)
with mask_col:
    insight.chart(figures.mask_heatmap(T, labels), "causal_mask", key="causal_mask")
with masked_col:
    insight.chart(
        figures.attention_heatmap(
            view.masked_scores(layer, head),
            labels,
            kind="scores",
            title="masked scores (empty = -∞)",
            show_values=small,
        ),
        f"masked_scores_layer{layer}_head{head}",
        key="causal_masked",
    )
with soft_col:
    insight.chart(
        figures.attention_heatmap(
            view.pattern(layer, head),
            labels,
            title="softmax of each row (rows sum to 1)",
            show_values=small,
        ),
        f"softmax_layer{layer}_head{head}",
        key="causal_softmax",
    )
insight.head_badges(view.cache, layer, head, source.model.config.head_size)

st.subheader("The live check: change a later token")
if T < 2:
    st.info("Type a prompt of at least two tokens to change one of them.")
    st.stop()
st.session_state.causal_position = min(max(st.session_state.causal_position, 1), T - 1)
position = st.slider("Token to change (position)", 1, T - 1, key="causal_position")
st.text_input(
    "Replace it with",
    key="causal_replacement",
    placeholder="empty: the next token of the vocabulary",
    max_chars=200,
)


def replacement_id() -> int:
    """The id the user typed, else the id after the current one (never the same)."""
    typed = st.session_state.causal_replacement
    vocab_size = source.tokenizer.vocab_size
    if typed:
        encoding = source.tokenizer.encode_prompt(typed)
        if len(encoding.ids) == 1 and not encoding.unknown[0]:
            return encoding.ids[0]
        st.warning(f"{typed!r} is not one token of this vocabulary; using the next token instead.")
    return (view.ids[position] + 1) % vocab_size


new_id = replacement_id()
new_label = token_label(source.tokenizer.token_strings([new_id])[0])
diffs = output_differences(source.model, view.ids, position, new_id)
before = float(diffs[:position].max())
st.markdown(
    f"Position {position}: **{labels[position]}** → **{new_label}**. Largest change of any "
    f"logit at positions 0 … {position - 1}: **{before:.3g}**; at positions {position} … "
    f"{T - 1}: {float(diffs[position:].max()):.3g}."
)
st.plotly_chart(
    figures.matrix_heatmap(
        diffs,
        col_labels=labels,
        row_labels=["max |Δ logit|"],
        title="How much each position's output moved",
        signed=False,
        decimals=3,
    ),
    key="causal_diffs",
)

try:
    check = causal_check(source.model, view.ids, position - 1)
except DiagnosticsError as error:
    st.error(f"The causal check cannot run: {error}")
    st.stop()
verdict = st.success if check.passed else st.error
verdict(
    f"causal_check (every token after position {position - 1} replaced at random, fused and "
    f"by-hand attention): largest logit difference {check.max_logit_diff:.3g}, largest "
    f"weight above the diagonal {check.max_above_diagonal:.3g}, largest row-sum error "
    f"{check.max_row_sum_error:.3g}: {'passed' if check.passed else 'FAILED'}."
)
