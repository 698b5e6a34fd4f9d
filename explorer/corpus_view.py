"""What the Data page shows about a corpus and a tokeniser level. No Streamlit here.

summary = summarize_corpus(corpus, "word", val_fraction=0.1)
summary.n_tokens, summary.vocab_size, summary.n_train, summary.top_tokens
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pandas as pd

from explorer.render import visible_token
from tinytf.corpus import Corpus
from tinytf.data import split_sizes
from tinytf.tokenizer import build_tokenizer

MAX_UPLOAD_BYTES = 20 * 2**20  # matches server.maxUploadSize in .streamlit/config.toml


@dataclass(frozen=True)
class CorpusSummary:
    """Counts, the most frequent tokens and a preview, for one corpus at one level."""

    name: str
    level: str
    n_chars: int
    n_tokens: int
    vocab_size: int  # <unk> included, as the model sees it
    n_train: int  # tokens in the training split
    n_val: int  # tokens in the validation split (the end of the text)
    top_tokens: pd.DataFrame  # columns: token, count, share
    preview: list[str]  # the first tokens of the text, as written


def summarize_corpus(
    corpus: Corpus,
    level: str,
    val_fraction: float = 0.1,
    top: int = 20,
    preview_chars: int = 600,
) -> CorpusSummary:
    """Tokenise `corpus` at `level` and count what the Data page reports.

    Raises:
        TokenizerError: an unknown level, or a text with no token of that level.
    """
    tokenizer = build_tokenizer(level, corpus.text)
    pieces = tokenizer.split(corpus.text)
    n_train, n_val = split_sizes(len(pieces), val_fraction)

    counts = Counter(pieces).most_common(top)
    table = pd.DataFrame(
        {
            "token": [visible_token(token) for token, _ in counts],
            "count": [count for _, count in counts],
            "share": [count / len(pieces) for _, count in counts],
        }
    )
    return CorpusSummary(
        name=corpus.name,
        level=level,
        n_chars=len(corpus.text),
        n_tokens=len(pieces),
        vocab_size=tokenizer.vocab_size,
        n_train=n_train,
        n_val=n_val,
        top_tokens=table,
        preview=tokenizer.split(corpus.text[:preview_chars]),
    )
