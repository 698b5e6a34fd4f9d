"""Data: pick the training text and the tokeniser level, and see what the model will see."""

from __future__ import annotations

import streamlit as st

from explorer import cached
from explorer.corpus_view import MAX_UPLOAD_BYTES
from explorer.figures import token_frequency_figure
from explorer.render import format_count, token_spans_html
from explorer.state import keep_page_state
from tinytf.config import TrainConfig
from tinytf.corpus import CorpusError, corpus_from_bytes
from tinytf.tokenizer import TokenizerError

SOURCES = {
    "zen": "Zen of Python (built in, ~820 characters)",
    "pydoc": "Python help topics (built in, ~465,000 characters)",
    "upload": "Upload a .txt file",
    "path": "A text file on the server",
}

keep_page_state("data_")
st.title("Data")
st.caption(f"Training device: {cached.device_line()}")

left, right = st.columns(2)
left.radio("Corpus", list(SOURCES), format_func=SOURCES.get, key="data_source")
right.radio(
    "Tokeniser level",
    ["char", "word"],
    key="data_level",
    horizontal=True,
    help="char: one token per character. word: words, punctuation marks and newlines.",
)


def chosen_corpus():
    """The corpus the form points at, or None after telling the user what is missing."""
    source = st.session_state.data_source
    if source == "upload":
        upload = right.file_uploader("UTF-8 text file", type=["txt"], key="data_upload")
        if upload is None:
            st.info("Upload a UTF-8 .txt file to train on it.")
            return None
        if upload.size > MAX_UPLOAD_BYTES:
            raise CorpusError(
                f"{upload.name}: {upload.size / 2**20:.1f} MB is over the "
                f"{MAX_UPLOAD_BYTES // 2**20} MB upload limit"
            )
        return corpus_from_bytes(upload.getvalue(), upload.name)
    if source == "path":
        right.text_input("Path on the server", key="data_path", placeholder="/data/book.txt")
        if not st.session_state.data_path.strip():
            st.info("Type the path of a UTF-8 text file on the machine running the app.")
            return None
        return cached.corpus_from_source(st.session_state.data_path.strip())
    return cached.corpus_from_source(source)


try:
    corpus = chosen_corpus()
except CorpusError as error:
    st.error(f"This corpus cannot be used: {error}")
    corpus = None
if corpus is None:
    current = st.session_state.data_corpus
    if current is not None:
        st.caption(f"Training still uses the last good corpus: **{current.name}**.")
    st.stop()

val_fraction = TrainConfig().val_fraction
try:
    summary = cached.corpus_summary(corpus, st.session_state.data_level, val_fraction)
except TokenizerError as error:
    st.error(f"This corpus cannot be tokenised: {error}")
    st.stop()
st.session_state.data_corpus = corpus

st.subheader(f"{corpus.name} at {summary.level} level")
cols = st.columns(5)
cols[0].metric("Characters", format_count(summary.n_chars))
cols[1].metric("Tokens", format_count(summary.n_tokens))
cols[2].metric("Vocabulary", format_count(summary.vocab_size), help="<unk> included")
cols[3].metric("Train tokens", format_count(summary.n_train))
cols[4].metric("Val tokens", format_count(summary.n_val), help=f"the last {val_fraction:.0%}")
if summary.n_val < 2:
    st.warning(
        f"Only {summary.n_val} validation tokens: too short for any context. Training will "
        "refuse it; use a longer text."
    )
st.caption(
    f"A context of block_size tokens needs block_size + 1 tokens in each split: at most "
    f"{max(summary.n_val - 1, 0):,} here. The validation split is the end of the text."
)

chart, table = st.columns([3, 2])
chart.plotly_chart(
    token_frequency_figure(
        list(summary.top_tokens["token"]),
        list(summary.top_tokens["count"]),
        title="Most frequent tokens",
    ),
    width="stretch",
)
table.dataframe(
    summary.top_tokens,
    hide_index=True,
    column_config={"share": st.column_config.NumberColumn(format="percent")},
    width="stretch",
)

if st.toggle("Show the start of the text cut into tokens", key="data_show_preview"):
    st.markdown(token_spans_html(summary.preview), unsafe_allow_html=True)
