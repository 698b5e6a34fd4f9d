"""Property-based tests (Hypothesis): random text through both tokenisers, random logits
through every sampler.

Tokenisers. The character level round-trips any text exactly. The word level documents
(WordTokenizer's docstring) that round trips are exact for ordinary prose, and lists
where they are not: runs of spaces, tabs and other whitespace collapse, unusually spaced
closing and opening marks are respaced. So the word tests generate text inside that
domain (words, single spaces, closing marks after a word, opening marks before one, free
marks with a space on each side, newlines) and demand an exact round trip; for any text
at all they demand that decoding gives the tokenizer's normal form: text that encodes to
the same ids and decodes to itself.

Samplers. Logits mix ordinary, huge (up to float32's 3.4e38), tiny and -inf scores, ties,
all-equal rows and one-hot rows; temperatures go from 1e-30 to 1e4. Whatever comes in,
the distribution has no NaN, at least one token is kept, and the draw is a valid id with
a finite logit and a non-zero probability. NaN, +inf or all -inf logits are refused by
name.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tinytf.sampling import SAMPLERS, SamplerSettings, SamplingError, draw_token, filter_probs
from tinytf.tokenizer import (
    UNK,
    CharTokenizer,
    TokenizerError,
    WordTokenizer,
    build_tokenizer,
    load_tokenizer,
)

# Moderate example counts keep the file near 10-20 s; no example database in the checkout.
SOME = settings(max_examples=150, deadline=None, database=None)
FEWER = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# ---------------------------------------------------------------------------------------
# Text strategies

# Any text Python can hold as UTF-8 (lone surrogates cannot come out of a UTF-8 decode).
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)

# Letters and digits of several scripts, right-to-left ones included.
WORD_CHARS = st.sampled_from(
    list("abcxyzABCXYZ0129_éßøçñ") + list("αβγЖжш") + list("שלוםمرحبا") + list("中文字한글")
)
WORD = st.text(WORD_CHARS, min_size=1, max_size=8)
CLOSING = st.sampled_from(list(".,;:!?)]}%’”»…"))
OPENING = st.sampled_from(list("([{‘“«¿¡"))
FREE = st.sampled_from(["-", "--", "*", "/", '"', "'", "&", "+", "=", "#", "—", "👍", "→", "<>"])


@st.composite
def prose_item(draw: st.DrawFn) -> str:
    """One word, with an optional opening mark before it and closing mark after it."""
    word = draw(WORD)
    if draw(st.booleans()):
        word = draw(OPENING) + word
    if draw(st.booleans()):
        word += draw(CLOSING)
    return word


@st.composite
def prose_line(draw: st.DrawFn) -> str:
    """Items separated by one space, or by a free mark with one space on each side."""
    items = draw(st.lists(prose_item(), max_size=6))
    line = ""
    for index, item in enumerate(items):
        if index:
            free = draw(st.one_of(st.none(), FREE))
            line += " " if free is None else f" {free} "
        line += item
    return line


# Ordinary prose: lines of items, blank lines allowed, no space at either end of a line.
PROSE = st.lists(prose_line(), min_size=1, max_size=5).map("\n".join)


def has_word_tokens(text: str) -> bool:
    return bool(WordTokenizer.split(text))


# ---------------------------------------------------------------------------------------
# Tokenisers


@SOME
@given(ANY_TEXT.filter(bool))
def test_char_round_trip_is_exact_for_any_text(text: str) -> None:
    tok = build_tokenizer("char", text)
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert all(0 < i < tok.vocab_size for i in ids)  # every symbol known, none <unk>
    assert tok.decode(ids) == text


@SOME
@given(PROSE.filter(has_word_tokens))
def test_word_round_trip_is_exact_for_ordinary_prose(text: str) -> None:
    tok = build_tokenizer("word", text)
    ids = tok.encode(text)
    assert 0 not in ids
    assert tok.decode(ids) == text


@SOME
@given(ANY_TEXT.filter(has_word_tokens))
def test_word_decode_gives_a_stable_normal_form_for_any_text(text: str) -> None:
    tok = build_tokenizer("word", text)
    ids = tok.encode(text)
    assert 0 not in ids
    normal = tok.decode(ids)
    assert tok.encode(normal) == ids  # the normal form says the same thing
    assert tok.decode(tok.encode(normal)) == normal  # and is its own normal form


@SOME
@given(st.text(st.sampled_from(" \t\r\x0b\x0c\x1c\u00a0\u2003\u2028\u3000"), max_size=20))
def test_word_level_refuses_text_of_spaces_only(text: str) -> None:
    with pytest.raises(TokenizerError, match=r"no word tokens"):
        build_tokenizer("word", text)


@SOME
@given(st.sampled_from(["char", "word"]), ANY_TEXT, ANY_TEXT)
def test_unknown_symbols_become_unk_and_are_flagged(level: str, known: str, prompt: str) -> None:
    cls = CharTokenizer if level == "char" else WordTokenizer
    assume(has_word_tokens(known) if level == "word" else known)
    tok = build_tokenizer(level, known)
    encoding = tok.encode_prompt(prompt)
    vocab = set(tok.vocab[1:])
    assert encoding.tokens == cls.split(prompt)
    assert encoding.unknown == [piece not in vocab for piece in encoding.tokens]
    assert all((i == 0) == flag for i, flag in zip(encoding.ids, encoding.unknown, strict=True))
    expected = [UNK if f else t for t, f in zip(encoding.tokens, encoding.unknown, strict=True)]
    assert tok.token_strings(encoding.ids) == expected


@FEWER
@given(st.sampled_from(["char", "word"]), ANY_TEXT)
def test_tokenizer_file_round_trip_keeps_any_vocabulary(tmp_path: Path, level: str, text: str):
    assume(has_word_tokens(text) if level == "word" else text)
    tok = build_tokenizer(level, text)
    path = tmp_path / f"{level}.json"
    tok.save(path)
    assert load_tokenizer(path) == tok


# ---------------------------------------------------------------------------------------
# Samplers

INF = math.inf
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=32)  # up to +-3.4e38
EDGE = st.sampled_from([0.0, -0.0, 1e-45, -1e-45, 1e-30, 3.4e38, -3.4e38, 88.73, -103.97, 1e4])
ENTRY = st.one_of(FINITE, EDGE, st.just(-INF))


@st.composite
def logit_rows(draw: st.DrawFn) -> list[float]:
    """A row of logits with at least one finite score, in one of several shapes."""
    size = draw(st.integers(1, 40))
    shape = draw(st.sampled_from(["mixed", "all-equal", "one-hot", "ties", "masked"]))
    if shape == "mixed":
        row = draw(st.lists(ENTRY, min_size=size, max_size=size))
    elif shape == "all-equal":
        row = [draw(st.one_of(FINITE, EDGE))] * size
    elif shape == "one-hot":
        low = draw(st.sampled_from([0.0, -INF, -3.4e38]))
        row = [low] * size
        row[draw(st.integers(0, size - 1))] = draw(st.one_of(FINITE, EDGE))
    elif shape == "ties":
        values = draw(st.lists(st.one_of(EDGE, st.just(-INF)), min_size=1, max_size=3))
        row = [draw(st.sampled_from(values)) for _ in range(size)]
    else:  # everything masked but a few
        row = [-INF] * size
        for index in draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=3)):
            row[index] = draw(FINITE)
    assume(any(math.isfinite(x) for x in row))
    return row


@st.composite
def sampler_settings(draw: st.DrawFn) -> SamplerSettings:
    kind = draw(st.sampled_from(SAMPLERS))
    temperature = draw(
        st.one_of(st.just(0.0), st.floats(1e-30, 1e4), st.sampled_from([1e-6, 0.5, 1.0, 2.0]))
    )
    top_k = draw(st.integers(1, 60)) if kind == "top-k" else None
    top_p = None
    if kind in ("top-p", "temperature-top-p"):
        top_p = draw(st.one_of(st.floats(1e-9, 1.0), st.sampled_from([1e-9, 0.5, 0.9, 1.0])))
    return SamplerSettings(kind=kind, temperature=temperature, top_k=top_k, top_p=top_p)


def lowest_argmax(row: list[float]) -> int:
    best = max(row)
    return row.index(best)


@settings(max_examples=200, deadline=None, database=None)
@given(logit_rows(), sampler_settings(), st.floats(0.0, 1.0, exclude_max=True))
def test_every_sampler_gives_a_valid_token_for_any_logits(
    row: list[float], sampler: SamplerSettings, u: float
) -> None:
    logits = torch.tensor(row, dtype=torch.float32)
    row = logits.tolist()  # the scores as float32 holds them (1e-45 rounds, and so on)
    result = filter_probs(logits, sampler)

    # 1. A distribution: no NaN, non-negative, summing to one, never empty.
    for probs in (result.probs_before, result.probs_after):
        assert not torch.isnan(probs).any(), (row, sampler)
        assert (probs >= 0).all()
    assert abs(float(result.probs_after.double().sum()) - 1.0) < 1e-5
    assert 1 <= result.kept <= len(row)
    assert int(result.keep.sum()) == result.kept

    # 2. The tokens that can be drawn outrank every token the cut dropped.
    drawable = logits[result.probs_after > 0]
    dropped = logits[~result.keep]
    if dropped.numel():
        assert float(drawable.min()) >= float(dropped.max())
    if sampler.kind == "top-k" and not sampler.is_greedy:
        assert result.kept <= sampler.top_k

    # 3. Every draw, the extremes of u included, is a kept, possible, finite-logit token.
    for draw in (u, 0.0, math.nextafter(1.0, 0.0)):
        token = draw_token(result, draw)
        assert 0 <= token < len(row)
        assert bool(result.keep[token]) and float(result.probs_after[token]) > 0
        assert math.isfinite(row[token]), (row, sampler, draw, token)
    if sampler.is_greedy:
        assert draw_token(result, u) == lowest_argmax(row)


@SOME
@given(logit_rows(), sampler_settings(), st.sampled_from(["nan", "inf", "all -inf"]))
def test_nan_inf_and_fully_masked_logits_are_refused_by_name(
    row: list[float], sampler: SamplerSettings, fault: str
) -> None:
    if fault == "all -inf":
        row = [-INF] * len(row)
    else:
        row[len(row) // 2] = math.nan if fault == "nan" else INF
    with pytest.raises(SamplingError, match=r"^logits: "):
        filter_probs(torch.tensor(row), sampler)
