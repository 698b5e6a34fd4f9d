"""Block stepper: one transformer block, computed one step at a time."""

from __future__ import annotations

import streamlit as st

from explorer import figures
from explorer.attention_view import PromptError, run_prompt
from explorer.block_view import MAX_TEXT, STEP_TITLES, agreement, controlled_setup, walkthrough
from explorer.models import current_source
from explorer.state import keep_page_state

KINDS = {
    "identity": "identity weights",
    "hand-set": "hand-set (running mean of the values)",
    "random": "seeded random",
    "trained": "a block of the run picked in the sidebar",
}
N_STEPS = len(STEP_TITLES)

keep_page_state("block_")
st.title("Block stepper")

left, right = st.columns([2, 1])
left.radio("Weights", list(KINDS), format_func=KINDS.get, key="block_kind", horizontal=True)
kind = st.session_state.block_kind


def trained_setup():
    """Block `block_layer` of the sidebar's run, fed the residual stream of the prompt."""
    source = current_source()
    if source is None:
        st.stop()
    n_layer = source.model.config.n_layer
    st.session_state.block_layer = min(st.session_state.block_layer, n_layer - 1)
    layer = right.selectbox("Block", range(n_layer), key="block_layer")
    right.text_input("Input text", key="block_text", max_chars=200)
    try:
        view = run_prompt(source.model, source.tokenizer, st.session_state.block_text)
    except PromptError as error:
        st.error(str(error))
        st.stop()
    st.caption(f"Model: {source.label}; the input is the stream entering block {layer}.")
    return source.model.blocks[layer], view.cache[f"blocks.{layer}.resid_pre"][0], view.labels


if kind == "trained":
    block, x, labels = trained_setup()
else:
    right.text_input(f"Input (up to {MAX_TEXT} characters)", key="block_text", max_chars=200)
    if kind == "random":
        right.number_input("Seed", 0, 2**31 - 1, step=1, key="block_seed")
    block, x, labels = controlled_setup(
        kind, st.session_state.block_text, st.session_state.block_seed
    )
    st.caption("Each distinct character gets a fixed vector of 4 numbers (seeded), 2 heads of 2.")

steps = walkthrough(block, x)


def move(delta: int) -> None:
    st.session_state.block_step = min(max(st.session_state.block_step + delta, 0), N_STEPS - 1)


back, progress, forward = st.columns([1, 6, 1])
back.button(
    "◀ Back", on_click=move, args=(-1,), disabled=st.session_state.block_step == 0, key="block_back"
)
forward.button(
    "Next ▶",
    on_click=move,
    args=(1,),
    key="block_next",
    disabled=st.session_state.block_step == N_STEPS - 1,
)
index = st.session_state.block_step
step = steps[index]
progress.progress(
    (index + 1) / N_STEPS, text=f"Step {index + 1} of {N_STEPS}: {STEP_TITLES[step.name]}"
)
st.markdown(f"**{STEP_TITLES[step.name]}**: {step.explanation}.")

tensor = step.tensor
readable = tensor.shape[-1] <= 16 and tensor.shape[-2] <= 16
if tensor.dim() == 3:  # per head: (nh, T, hs) or (nh, T, T)
    is_square = tensor.shape[-1] == len(labels) and step.name not in ("q", "k", "v", "weighted_sum")
    figure = figures.heads_heatmap(
        tensor,
        row_labels=labels,
        col_labels=labels if is_square else None,
        signed=step.name != "softmax",
        show_values=readable,
        title=f"{step.name}: {tuple(tensor.shape)} (heads, positions, …)",
    )
else:
    figure = figures.matrix_heatmap(
        tensor,
        row_labels=labels,
        show_values=readable,
        title=f"{step.name}: {tuple(tensor.shape)} (positions, width)",
    )
st.plotly_chart(figure, key="block_figure")

if index == N_STEPS - 1:
    difference = agreement(block, x, steps)
    st.metric("max |block.forward(x) − this step|", f"{difference:.2e}")
    if difference < 1e-5:
        st.success("The step-by-step result agrees with the block's own forward pass.")
    else:
        st.error("The walk-through and the block's forward pass disagree.")
