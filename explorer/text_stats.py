"""Repetition statistics of a generated token sequence, shown under each sampler's column.

Greedy decoding of a small model falls into loops; these numbers make that visible:
- distinct-n: distinct n-grams divided by all n-grams (1.0 means nothing repeats;
  Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation Models");
- the longest span of tokens that occurs twice (occurrences may overlap, as a loop's do).

Pure Python on any sequence of hashable tokens (ids or strings); no Streamlit here.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RepeatedSpan:
    """The longest run of tokens that occurs at two places (possibly overlapping)."""

    length: int  # tokens in the span; 0 when nothing repeats
    first: int  # start of its first occurrence
    second: int  # start of a later occurrence


@dataclass(frozen=True)
class TextStats:
    """What the Samplers page prints under a column."""

    n_tokens: int
    distinct: dict[int, float]  # n -> distinct-n ratio
    repeat: RepeatedSpan


def distinct_n(tokens: Sequence[Hashable], n: int) -> float:
    """Share of the sequence's n-grams that are distinct; 0.0 when it has no n-gram."""
    if n < 1:
        raise ValueError(f"n must be 1 or more, got {n}")
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return len(set(grams)) / len(grams)


def longest_repeated_span(tokens: Sequence[Hashable]) -> RepeatedSpan:
    """The longest span occurring twice, found by dynamic programming in O(N²) time.

    `run[j]` holds, for the current start i, the length of the common run of tokens
    starting at i and at j (j > i); filling i from the end reuses the row of i + 1.
    """
    size = len(tokens)
    best = RepeatedSpan(0, 0, 0)
    next_row = [0] * (size + 1)
    for i in range(size - 1, -1, -1):
        row = [0] * (size + 1)
        for j in range(size - 1, i, -1):
            if tokens[i] == tokens[j]:
                row[j] = next_row[j + 1] + 1
                # Ties keep the earliest first occurrence: i only decreases.
                if row[j] >= best.length:
                    best = RepeatedSpan(row[j], i, j)
        next_row = row
    return best


def text_stats(tokens: Sequence[Hashable], orders: Sequence[int] = (1, 2, 3)) -> TextStats:
    """distinct-n for each n in `orders` and the longest repeated span."""
    return TextStats(
        n_tokens=len(tokens),
        distinct={n: distinct_n(tokens, n) for n in orders},
        repeat=longest_repeated_span(tokens),
    )
