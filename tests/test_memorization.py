"""Memorisation rate and longest verbatim span: hand-made cases, then the fast search held
equal to a brute-force one on random texts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytf.memorization import (
    MemorizationError,
    default_n,
    longest_verbatim_span,
    memorization_rate,
    training_index,
)
from tinytf.tokenizer import WordTokenizer

TRAINING = "the quick brown fox jumps over the lazy dog. a stitch in time saves nine."


def brute_force(generated: list[str], training: list[str], n: int) -> tuple[int, int, int]:
    """(copied, n_grams, longest span) by checking every window against every window."""
    train_ngrams = {tuple(training[i : i + n]) for i in range(len(training) - n + 1)}
    windows = [tuple(generated[i : i + n]) for i in range(len(generated) - n + 1)]
    copied = sum(w in train_ngrams for w in windows)
    longest = 0
    for start in range(len(generated)):
        for end in range(start + 1, len(generated) + 1):
            piece = generated[start:end]
            found = any(
                training[j : j + len(piece)] == piece for j in range(len(training) - len(piece) + 1)
            )
            if found:
                longest = max(longest, end - start)
    return copied, len(windows), longest


def test_default_n_per_level():
    assert default_n("char") == 8
    assert default_n("word") == 4
    with pytest.raises(MemorizationError, match="level"):
        default_n("byte")


def test_text_copied_from_the_corpus_scores_one():
    copied = list(TRAINING[4:40])
    result = memorization_rate(copied, list(TRAINING), 8)
    assert result.rate == 1.0
    assert result.n_grams == len(copied) - 8 + 1
    assert result.longest_span == len(copied)
    assert result.longest_span_text == TRAINING[4:40]
    assert result.span_start == 0


def test_text_of_unseen_ngrams_scores_zero():
    # Every letter occurs in the training text, but no 3 of them in this order.
    result = memorization_rate(list("zqxzqxzqx"), list("zq xz qx"), 3)
    assert result.rate == 0.0
    assert result.copied == 0
    assert result.n_grams == 7
    assert result.longest_span == 2  # "zq", "xz" and "qx" each occur


def test_hand_made_mix_gives_its_exact_share():
    # Word level, n = 2: five bigrams, of which "the quick", "quick brown" and
    # "lazy dog" occur in the training text, "brown cat" and "cat lazy" do not.
    training = WordTokenizer.split(TRAINING)
    generated = ["the", "quick", "brown", "cat", "lazy", "dog"]
    result = memorization_rate(generated, training, 2, join=WordTokenizer.join)
    assert (result.copied, result.n_grams) == (3, 5)
    assert result.rate == pytest.approx(0.6)
    assert result.longest_span == 3
    assert result.longest_span_text == "the quick brown"
    assert result.span_start == 0


def test_longest_span_is_exact_and_found_where_it_is():
    training = list("abcdefghij")
    generated = list("xxcdefyyghijzz")
    length, start = longest_verbatim_span(generated, training)
    assert (length, start) == (4, 2)  # "cdef" (four) beats "ghij" (four, found later)
    result = memorization_rate(generated, training, 3)
    assert result.longest_span_text == "cdef"


def test_text_shorter_than_n_has_no_rate():
    result = memorization_rate(list("abc"), list(TRAINING), 8)
    assert result.rate is None
    assert result.n_grams == 0
    assert result.copied == 0
    # The span is still measured: "abc" is not in the text, "a" and "b" are.
    assert result.longest_span == 1


def test_empty_generation_and_unknown_tokens():
    assert memorization_rate([], list(TRAINING), 4).longest_span == 0
    result = memorization_rate(["<unk>", "€"], list(TRAINING), 1)
    assert result.rate == 0.0
    assert result.longest_span == 0
    assert result.span_start is None
    assert result.longest_span_text == ""


def test_bad_n_is_refused():
    with pytest.raises(MemorizationError, match="n:"):
        memorization_rate(list("abc"), list("abc"), 0)


def test_index_is_built_once_per_training_text():
    tokens = list(TRAINING)
    assert training_index(tokens) is training_index(list(TRAINING))
    index = training_index(tokens)
    assert memorization_rate(list("quick"), index, 3).rate == 1.0


def test_repetitive_training_text():
    """Many identical windows share one hash; the search still answers exactly."""
    training = list("ab" * 500)
    generated = list("abababbaba")
    assert longest_verbatim_span(generated, training) == (6, 0)  # "ababab", then "bb"


@settings(max_examples=150, deadline=None)
@given(
    generated=st.lists(st.sampled_from("abcd"), max_size=25),
    training=st.lists(st.sampled_from("abcde"), min_size=1, max_size=60),
    n=st.integers(1, 5),
)
def test_fast_search_equals_brute_force(generated, training, n):
    copied, n_grams, longest = brute_force(generated, training, n)
    result = memorization_rate(generated, training, n)
    assert (result.copied, result.n_grams, result.longest_span) == (copied, n_grams, longest)
    if result.span_start is not None:
        span = generated[result.span_start : result.span_start + result.longest_span]
        assert "".join(span) in "".join(training)
