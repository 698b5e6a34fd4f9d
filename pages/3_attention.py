"""Attention: where each position of a prompt looks, for every layer and head."""

from __future__ import annotations

import streamlit as st

from explorer import figures, insight
from explorer.attention_view import PromptError, run_prompt
from explorer.models import current_source
from explorer.state import keep_page_state

keep_page_state("attn_")
st.title("Attention")

source = current_source()
if source is None:
    st.stop()
st.caption(f"Model: {source.label}")

st.text_input("Prompt", key="attn_prompt", max_chars=2000)
try:
    view = run_prompt(source.model, source.tokenizer, st.session_state.attn_prompt)
except PromptError as error:
    st.error(str(error))
    st.stop()

if view.unknown_tokens:
    unknown = ", ".join(repr(t) for t in dict.fromkeys(view.unknown_tokens))
    st.warning(f"Not in this run's vocabulary, read as <unk> and labelled ⟨…⟩?: {unknown}")
if view.cropped:
    st.info(
        f"The prompt is longer than the context of {len(view.ids)} tokens: its first "
        f"{view.cropped} tokens are left out, as the model itself would."
    )

n_layer, n_head = view.n_layers_heads()
st.session_state.attn_layer = min(st.session_state.attn_layer, n_layer - 1)
st.session_state.attn_head = min(st.session_state.attn_head, n_head - 1)
left, right = st.columns(2)
layer = left.selectbox("Layer", range(n_layer), key="attn_layer")
head = right.selectbox("Head", range(n_head), key="attn_head")

labels = view.labels
small = len(labels) <= 12
insight.head_badges(view.cache, layer, head, source.model.config.head_size)
insight.chart(
    figures.attention_heatmap(
        view.pattern(layer, head),
        labels,
        title=f"Layer {layer}, head {head}: attention weights",
        show_values=small,
    ),
    f"attention_layer{layer}_head{head}",
    key="attn_main",
)
insight.attention_download(view.cache, view.tokens, "attention_tensors", key="attn_npz")

st.subheader("From scores to weights")
st.caption(
    "Raw scores q·k/√hs, the causal mask, the masked scores (future cells left empty: they "
    "are -∞) and each row's softmax."
)
steps = st.columns(4)
panels = [
    (
        figures.attention_heatmap(
            view.scores(layer, head), labels, title="scores", kind="scores", show_values=small
        ),
        "attn_scores",
    ),
    (figures.mask_heatmap(len(labels), labels), "attn_mask"),
    (
        figures.attention_heatmap(
            view.masked_scores(layer, head),
            labels,
            title="masked scores",
            kind="scores",
            show_values=small,
        ),
        "attn_masked",
    ),
    (
        figures.attention_heatmap(
            view.pattern(layer, head), labels, title="softmax", show_values=small
        ),
        "attn_softmax",
    ),
]
for column, (figure, key) in zip(steps, panels, strict=True):
    figure.update_layout(height=360, yaxis_title=None, xaxis_title=None)
    with column:
        insight.chart(figure, f"{key}_layer{layer}_head{head}", key=key)

if st.toggle("Overview: every layer and head", key="attn_show_grid"):
    insight.chart(
        figures.attention_grid(view.all_patterns(), labels), "attention_grid", key="attn_grid"
    )
