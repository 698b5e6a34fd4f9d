"""Samplers: one prompt, five ways to pick the next token, side by side on the same seed."""

from __future__ import annotations

import streamlit as st

from explorer import figures, insight
from explorer.attention_view import PromptError, encode_for_model
from explorer.models import current_source, generate_cached
from explorer.render import token_label
from explorer.sampler_view import (
    LABELS,
    Knobs,
    column_settings,
    column_stats,
    describe,
    reuse_caption,
    step_view,
)
from explorer.state import keep_page_state
from tinytf.sampling import SAMPLERS, SamplingError

keep_page_state("samp_")
st.title("Samplers")
st.caption(
    "Every column draws the same uniform random numbers (same seed), so their texts differ "
    "only by how each cuts the next-token distribution."
)

source = current_source()
if source is None:
    st.stop()
st.caption(f"Model: {source.label}")
lesson_message = st.session_state.samp_lesson_message
if lesson_message:
    (st.error if lesson_message[0] == "error" else st.success)(lesson_message[1])
    st.session_state.samp_lesson_message = None

prompt_col, seed_col, length_col = st.columns([4, 1, 2])
prompt_col.text_input("Prompt", key="samp_prompt", max_chars=2000)
seed_col.number_input("Seed", 0, 2**31 - 1, step=1, key="samp_seed")
length_col.slider("New tokens", 5, 300, step=5, key="samp_new_tokens")

try:
    ids, pieces, unknown, cropped = encode_for_model(
        source.tokenizer, st.session_state.samp_prompt, source.model.config.block_size
    )
except PromptError as error:
    st.error(str(error))
    st.stop()
if any(unknown):
    words = [p for p, u in zip(pieces, unknown, strict=True) if u]
    st.warning(f"Read as <unk>: {', '.join(repr(w) for w in dict.fromkeys(words))}")

max_k = max(2, min(100, source.tokenizer.vocab_size))
st.session_state.samp_top_k = min(st.session_state.samp_top_k, max_k)
columns = dict(zip(SAMPLERS, st.columns(len(SAMPLERS)), strict=True))
columns["temperature"].slider("T", 0.05, 2.5, step=0.05, key="samp_temperature")
columns["top-k"].slider("k", 1, max_k, key="samp_top_k")
columns["top-p"].slider("p", 0.05, 1.0, step=0.05, key="samp_top_p")
columns["temperature-top-p"].slider("T", 0.05, 2.5, step=0.05, key="samp_ttp_temperature")
columns["temperature-top-p"].slider("p", 0.05, 1.0, step=0.05, key="samp_ttp_top_p")
columns["greedy"].caption("no knob")

state = st.session_state
try:
    settings = column_settings(
        Knobs(
            state.samp_temperature,
            state.samp_top_k,
            state.samp_top_p,
            state.samp_ttp_temperature,
            state.samp_ttp_top_p,
        )
    )
except SamplingError as error:
    st.error(f"Sampler setting refused: {error}")
    st.stop()

# Each column's last generation is held with its logits: after a knob change the column
# re-samples from them for as long as its text stays the same, and only then runs the model.
held = state.samp_held if state.samp_held_for == (source.key, tuple(ids)) else {}
generations = {}
for kind, column in columns.items():
    generation = generate_cached(
        source.model,
        source.key,
        tuple(ids),
        state.samp_new_tokens,
        settings[kind],
        int(state.samp_seed),
        _reuse=held.get(kind),
    )
    generations[kind] = generation
    stats = column_stats(generation.new_ids)
    repeat = stats.repeat
    with column:
        st.markdown(f"**{LABELS[kind]}**  \n{describe(settings[kind])}")
        st.code(source.tokenizer.decode(generation.ids), language=None, wrap_lines=True)
        st.caption(
            " · ".join(f"distinct-{n} {value:.2f}" for n, value in stats.distinct.items())
            + f"  \nlongest repeat: {repeat.length} tokens"
        )
        if repeat.length:
            span = generation.new_ids[repeat.first : repeat.first + repeat.length]
            st.caption(f"repeated: {source.tokenizer.decode(span)!r}")
        memo = insight.generation_memo(source.run_path, source.tokenizer, generation.new_ids)
        st.caption(insight.memo_caption(memo))
        st.caption(reuse_caption(generation))
state.samp_held, state.samp_held_for = generations, (source.key, tuple(ids))
insight.check_lesson_text(generations, source.tokenizer)

st.subheader("The next-token distribution at one step")
left, right = st.columns([3, 2])
state.samp_step = min(state.samp_step, state.samp_new_tokens - 1)
left.slider("Step", 0, state.samp_new_tokens - 1, key="samp_step")
right.selectbox(
    "Context: the prompt and the text so far of",
    SAMPLERS,
    format_func=LABELS.get,
    key="samp_context",
)
context_generation = generations[state.samp_context]
context = context_generation.ids[: len(ids) + state.samp_step]
view = step_view(context_generation.logits[state.samp_step], settings)
vocab_labels = [token_label(t) for t in source.tokenizer.vocab]
keep_figure = figures.sampler_keep_figure(
    vocab_labels,
    view.base_probs,
    {LABELS[k]: p for k, p in view.kept_probs.items()},
    title=f"After {len(context)} tokens: who keeps what",
)
insight.chart(keep_figure, f"samplers_step_{state.samp_step}", key="samp_keep")

st.subheader("Why this token")
st.caption(
    "One generated token's whole path: the scores, the temperature, the cut, the "
    "renormalised probabilities and the random draw that picked it."
)
why_col, position_col = st.columns([2, 3])
why_col.selectbox("Column", SAMPLERS, format_func=LABELS.get, key="samp_why_column")
state.samp_why_position = min(state.samp_why_position, state.samp_new_tokens - 1)
position_col.slider(
    "Generated token (0 = the first new one)", 0, state.samp_new_tokens - 1, key="samp_why_position"
)
why_kind = state.samp_why_column
insight.draw_why_token(
    source.tokenizer,
    generations[why_kind],
    settings[why_kind],
    state.samp_why_position,
    key="samp_why",
)

st.subheader("Take it away: a lesson file")
insight.draw_lesson_controls(source, state.app_checkpoint, why_kind, settings[why_kind])
