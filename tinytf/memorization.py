"""How much of a generated text was copied from the training text.

Two measures, both on tokens (characters or words, whatever the model writes):

- the memorisation rate: the share of the generated n-grams (every window of n
  consecutive tokens) that occur verbatim somewhere in the training text. n is 8 at
  character level and 4 at word level (`default_n`): short enough that a copied phrase
  shows, long enough that common spellings and word pairs do not count as copying;
- the longest verbatim span: the longest run of consecutive generated tokens that appears,
  in the same order, somewhere in the training text.

    index = training_index(tokenizer.split(train_text))     # built once, cached by text
    result = memorization_rate(tokenizer.split(sample), index, default_n("char"))
    result.rate, result.longest_span, result.longest_span_text

Pass only the generated tokens, not the prompt: a prompt taken from the training text
would count as copied.

How it stays fast on a training text of ~500k tokens:
1. tokens become small integers (a token the training text never holds gets an id of its
   own, so it can never match);
2. the n-grams of the training text are the rows of an (N - n + 1, n) integer array, sorted
   once per n; each generated n-gram is then an exact binary search (no hashing);
3. the longest span is a binary search on its length L: if some L-gram is copied, so is
   every shorter piece of it. Each probe hashes every training window of length L in one
   vectorised step (a polynomial hash from prefix sums) and confirms a hit token by token,
   so a hash collision can never make up a match.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_N = {"char": 8, "word": 4}

# Odd, so it has an inverse modulo 2**64 (numpy's uint64 arithmetic wraps modulo 2**64).
_HASH_BASE = 0x9E3779B97F4A7C15
_HASH_BASE_INV = pow(_HASH_BASE, -1, 2**64)


class MemorizationError(ValueError):
    """A request that cannot be measured (n below 1, an unknown level)."""


def default_n(level: str) -> int:
    """The n-gram length for a tokenizer level: 8 characters, or 4 words."""
    try:
        return DEFAULT_N[level]
    except KeyError:
        raise MemorizationError(
            f"level: must be one of {tuple(DEFAULT_N)}, got {level!r}"
        ) from None


@dataclass(frozen=True)
class MemorizationResult:
    """How much of one generated text occurs verbatim in the training text."""

    rate: float | None  # copied / n_grams; None when the text is shorter than n tokens
    n_grams: int  # generated windows of n tokens (len - n + 1, or 0)
    copied: int  # how many of them occur in the training text
    n: int  # the n-gram length used
    longest_span: int  # tokens in the longest run found verbatim in the training text
    longest_span_text: str  # that run, joined back into text
    span_start: int | None = None  # where the run starts among the generated tokens


@dataclass
class TrainingIndex:
    """The training tokens as integers, with what the searches need built lazily."""

    ids: np.ndarray  # (N,) int64, one id per training token
    vocab: dict[str, int]  # token -> id
    _ngrams: dict[int, np.ndarray] = field(default_factory=dict)  # n -> sorted unique rows
    _prefix: np.ndarray | None = None  # (N + 1,) uint64 prefix sums for the span hash

    def __len__(self) -> int:
        return int(self.ids.size)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """(len,) ids of `tokens`; each unseen token gets an id above all training ids."""
        unseen: dict[str, int] = {}
        ids = []
        for token in tokens:
            known = self.vocab.get(token)
            if known is None:
                known = unseen.setdefault(token, len(self.vocab) + len(unseen))
            ids.append(known)
        return np.asarray(ids, dtype=np.int64)

    def ngram_table(self, n: int) -> np.ndarray:
        """Sorted, distinct training n-grams as one opaque row each (built once per n)."""
        if n not in self._ngrams:
            self._ngrams[n] = np.unique(_rows(self.ids, n))
        return self._ngrams[n]

    def prefix(self) -> np.ndarray:
        if self._prefix is None:
            self._prefix = _hash_prefix(self.ids)
        return self._prefix


def _build_index(tokens: tuple[str, ...]) -> TrainingIndex:
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in tokens), np.int64, len(tokens))
    return TrainingIndex(ids=ids, vocab=vocab)


@functools.lru_cache(maxsize=4)
def _cached_index(tokens: tuple[str, ...]) -> TrainingIndex:
    return _build_index(tokens)


def training_index(training_tokens: Sequence[str]) -> TrainingIndex:
    """The index of a training text's tokens, cached for the last few texts."""
    return _cached_index(tuple(training_tokens))


def _rows(ids: np.ndarray, n: int) -> np.ndarray:
    """(len - n + 1,) windows of n ids, each packed into one comparable void value."""
    if ids.size < n:
        return np.empty(0, dtype=np.dtype((np.void, 8 * n)))
    windows = np.lib.stride_tricks.sliding_window_view(ids, n)  # (W, n)
    packed = np.ascontiguousarray(windows).view(np.dtype((np.void, 8 * n)))  # (W, 1)
    return packed.ravel()


def _hash_prefix(ids: np.ndarray) -> np.ndarray:
    """(N + 1,) uint64: S[k] = sum over j < k of (id_j + 1) * base^-j, modulo 2**64.

    The window [i, i + L) then hashes to (S[i + L] - S[i]) * base^i, which equals
    sum over t < L of (id_{i+t} + 1) * base^-t: the same value wherever the window sits.
    """
    with np.errstate(over="ignore"):
        inverse_powers = _powers(_HASH_BASE_INV, ids.size)
        terms = (ids.astype(np.uint64) + np.uint64(1)) * inverse_powers
        prefix = np.zeros(ids.size + 1, dtype=np.uint64)
        np.cumsum(terms, out=prefix[1:])
    return prefix


def _powers(base: int, count: int) -> np.ndarray:
    """(count,) uint64: base^0 .. base^(count - 1), modulo 2**64."""
    powers = np.full(count, base, dtype=np.uint64)
    if count:
        powers[0] = 1
    with np.errstate(over="ignore"):
        return np.cumprod(powers, dtype=np.uint64)


def _window_hashes(prefix: np.ndarray, length: int) -> np.ndarray:
    """(N - length + 1,) hashes of every window of `length` tokens."""
    count = prefix.size - length
    with np.errstate(over="ignore"):
        sums = prefix[length:] - prefix[:count]
        return sums * _powers(_HASH_BASE, count)


def _copied_count(index: TrainingIndex, generated: np.ndarray, n: int) -> int:
    """How many of the generated n-gram windows occur in the training n-gram table."""
    table = index.ngram_table(n)
    windows = _rows(generated, n)
    if table.size == 0 or windows.size == 0:
        return 0
    where = np.searchsorted(table, windows)
    found = table[np.minimum(where, table.size - 1)] == windows
    return int(found.sum())


def _find_span(
    index: TrainingIndex, generated: np.ndarray, length: int, gen_prefix: np.ndarray
) -> int | None:
    """Where a generated run of `length` tokens found verbatim in training starts, or None."""
    if length > len(index):
        return None
    # The few generated hashes are sorted, and every training hash is looked up among
    # them: O(N log G) with G a few hundred, instead of sorting the N training hashes.
    gen_hashes = _window_hashes(gen_prefix, length)
    order = np.argsort(gen_hashes, kind="stable")
    sorted_gen = gen_hashes[order]
    train_hashes = _window_hashes(index.prefix(), length)
    where = np.minimum(np.searchsorted(sorted_gen, train_hashes), sorted_gen.size - 1)
    for train_start in np.nonzero(sorted_gen[where] == train_hashes)[0]:
        piece = index.ids[train_start : train_start + length]
        first = np.searchsorted(sorted_gen, train_hashes[train_start], side="left")
        last = np.searchsorted(sorted_gen, train_hashes[train_start], side="right")
        for slot in range(first, last):
            start = int(order[slot])
            if np.array_equal(generated[start : start + length], piece):
                return start
    return None


def longest_verbatim_span(
    generated_tokens: Sequence[str], training: Sequence[str] | TrainingIndex
) -> tuple[int, int | None]:
    """(length, start) of the longest generated run found verbatim in the training text.

    start is None when not even one token occurs there (length 0).
    """
    index = training if isinstance(training, TrainingIndex) else training_index(training)
    generated = index.encode(generated_tokens)
    gen_prefix = _hash_prefix(generated)

    # Binary search: `best` is a length known to be found, `above` one known not to be.
    best, best_start, above = 0, None, generated.size + 1
    while above - best > 1:
        middle = (best + above) // 2
        start = _find_span(index, generated, middle, gen_prefix)
        if start is None:
            above = middle
        else:
            best, best_start = middle, start
    return best, best_start


def memorization_rate(
    generated_tokens: Sequence[str],
    training_tokens: Sequence[str] | TrainingIndex,
    n: int,
    join: Callable[[Sequence[str]], str] = "".join,
) -> MemorizationResult:
    """The share of generated n-grams found verbatim in the training text, and the
    longest verbatim span.

    Args:
        generated_tokens: the generated tokens only (leave the prompt out).
        training_tokens: the training text's tokens, or a `training_index` of them.
        n: the n-gram length (see `default_n`).
        join: puts the longest span's tokens back into text (a tokenizer's `join` at
            word level; plain concatenation suits characters).

    Returns:
        A `MemorizationResult`; its rate is None when the text has fewer than n tokens,
        since there is no n-gram to judge.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise MemorizationError(f"n: must be a whole number of at least 1, got {n!r}")
    if isinstance(training_tokens, TrainingIndex):
        index = training_tokens
    else:
        index = training_index(training_tokens)
    generated = index.encode(generated_tokens)

    n_grams = max(0, generated.size - n + 1)
    copied = _copied_count(index, generated, n) if n_grams else 0
    length, start = longest_verbatim_span(generated_tokens, index)
    span = [] if start is None else list(generated_tokens[start : start + length])
    return MemorizationResult(
        rate=copied / n_grams if n_grams else None,
        n_grams=n_grams,
        copied=copied,
        n=n,
        longest_span=length,
        longest_span_text=join(span),
        span_start=start,
    )
