"""Repetition statistics under the Samplers page's columns, checked on hand-counted inputs."""

from __future__ import annotations

import random

import pytest

from explorer.text_stats import RepeatedSpan, distinct_n, longest_repeated_span, text_stats


def brute_force_longest_repeat(tokens: list) -> int:
    """Every pair of starts, every length: the slow reference for the O(N²) version."""
    best = 0
    for i in range(len(tokens)):
        for j in range(i + 1, len(tokens)):
            length = 0
            while j + length < len(tokens) and tokens[i + length] == tokens[j + length]:
                length += 1
            best = max(best, length)
    return best


def test_distinct_n_counts_by_hand():
    tokens = list("abab")
    assert distinct_n(tokens, 1) == pytest.approx(2 / 4)  # a, b
    assert distinct_n(tokens, 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert distinct_n(tokens, 3) == pytest.approx(2 / 2)  # aba, bab
    assert distinct_n(list("abcd"), 2) == 1.0


def test_distinct_n_of_too_short_sequence_is_zero_and_bad_order_refused():
    assert distinct_n(["a"], 2) == 0.0
    assert distinct_n([], 1) == 0.0
    with pytest.raises(ValueError, match="n must be"):
        distinct_n(["a"], 0)


def test_longest_repeated_span_of_a_loop_overlaps():
    # "the cat " repeated: the span from the first "the" to the last char repeats shifted.
    tokens = ["the", "cat", "the", "cat", "the", "cat"]
    span = longest_repeated_span(tokens)
    assert span == RepeatedSpan(length=4, first=0, second=2)
    assert (
        tokens[span.first : span.first + span.length]
        == tokens[span.second : span.second + span.length]
    )


def test_longest_repeated_span_without_repeat_is_empty():
    assert longest_repeated_span(list("abcdef")).length == 0
    assert longest_repeated_span([]).length == 0


def test_longest_repeated_span_matches_brute_force_on_random_ids():
    rng = random.Random(0)
    for _ in range(40):
        tokens = [rng.randrange(4) for _ in range(rng.randrange(0, 30))]
        span = longest_repeated_span(tokens)
        assert span.length == brute_force_longest_repeat(tokens)
        if span.length:
            a = tokens[span.first : span.first + span.length]
            b = tokens[span.second : span.second + span.length]
            assert a == b and span.second > span.first


def test_text_stats_bundles_orders_and_repeat():
    stats = text_stats([1, 2, 1, 2, 1], orders=(1, 2))
    assert stats.n_tokens == 5
    assert stats.distinct == {1: pytest.approx(2 / 5), 2: pytest.approx(2 / 4)}
    assert stats.repeat.length == 3  # 1 2 1 at 0 and at 2
