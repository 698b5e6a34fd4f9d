"""Tokenizers: text to integer ids and back, one character or one word at a time.

Both levels share one interface (`Tokenizer`) and one file format (JSON). Id 0 is always
`<unk>`, which stands for any token the training text never contained; the rest of the
vocabulary is sorted, so the same text always gives the same ids.

    tok = build_tokenizer("word", text)
    ids = tok.encode("Greed is good.")      # four ids
    tok.decode(ids)                         # "Greed is good."
    enc = tok.encode_prompt("Greed is great.")   # enc.unknown marks "great" if unseen
    tok.save(path); load_tokenizer(path) == tok

How the word level splits and joins text is described on `WordTokenizer`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

UNK = "<unk>"
LEVELS = ("char", "word")

_FORMAT = "tinytf-tokenizer"
_VERSION = 1


class TokenizerError(ValueError):
    """A tokenizer that cannot be built, loaded or used; the message says why."""


@dataclass
class Encoding:
    """A prompt cut into tokens, for display: each piece, its id, and whether it is known."""

    ids: list[int]  # token ids, 0 where the piece is not in the vocabulary
    tokens: list[str]  # the pieces of the text, as written
    unknown: list[bool]  # True where the piece was mapped to <unk>


class Tokenizer:
    """The shared interface; `CharTokenizer` and `WordTokenizer` say how to split and join.

    `vocab[i]` is the token with id i; `vocab[0]` is always `<unk>`.
    """

    level = ""

    def __init__(self, vocab: Sequence[str]) -> None:
        _check_vocab(vocab, self.level)
        self.vocab = list(vocab)
        self._ids = {token: i for i, token in enumerate(self.vocab)}

    @classmethod
    def from_text(cls, text: str) -> Tokenizer:
        """The vocabulary of `text`: `<unk>`, then every distinct token in sorted order."""
        tokens = set(cls.split(text)) - {UNK}
        if not tokens:
            raise TokenizerError(f"the text has no {cls.level} tokens to build a vocabulary from")
        return cls([UNK, *sorted(tokens)])

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @staticmethod
    def split(text: str) -> list[str]:
        """Cut text into token strings (known to the vocabulary or not)."""
        raise NotImplementedError

    @staticmethod
    def join(tokens: Sequence[str]) -> str:
        """Put token strings back together into text."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; tokens outside the vocabulary become 0 (`<unk>`)."""
        return [self._ids.get(token, 0) for token in self.split(text)]

    def encode_prompt(self, text: str) -> Encoding:
        """Like `encode`, but keeps each piece and flags the unknown ones, for display."""
        tokens = self.split(text)
        ids = [self._ids.get(token, 0) for token in tokens]
        unknown = [i == 0 for i in ids]
        return Encoding(ids=ids, tokens=tokens, unknown=unknown)

    def token_strings(self, ids: Iterable[int]) -> list[str]:
        """The vocabulary entry of each id (`<unk>` for 0)."""
        strings = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise TokenizerError(f"token id {i} is outside the vocabulary of {self.vocab_size}")
            strings.append(self.vocab[i])
        return strings

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids; id 0 comes out as the literal `<unk>`."""
        return self.join(self.token_strings(ids))

    def to_dict(self) -> dict[str, object]:
        return {"format": _FORMAT, "version": _VERSION, "level": self.level, "vocab": self.vocab}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokenizer as JSON, atomically: a reader never sees half a file."""
        path = Path(path)
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
        ) as handle:
            handle.write(text)
        try:
            os.replace(handle.name, path)
        except OSError:
            os.unlink(handle.name)
            raise

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tokenizer):
            return NotImplemented
        return self.level == other.level and self.vocab == other.vocab

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class CharTokenizer(Tokenizer):
    """One token per character: a small vocabulary, long sequences, exact round trips."""

    level = "char"

    @staticmethod
    def split(text: str) -> list[str]:
        return list(text)

    @staticmethod
    def join(tokens: Sequence[str]) -> str:
        return "".join(tokens)


# Marks that attach to the word before them (no space before, a space after) ...
_CLOSING = frozenset(".,;:!?)]}%’”»…")
# ... and marks that attach to the word after them (a space before, none after).
_OPENING = frozenset("([{‘“«¿¡")

# A word: letters, digits and underscores, with inner apostrophes ("don't") and, between
# digits, inner points and commas ("3.14", "1,000"). A mark: a run of one repeated
# punctuation character ("--", "..."). The rest is whitespace, newlines kept apart.
_PIECES = re.compile(
    r"(?P<word>\w+(?:['’]\w+|(?<=\d)[.,]\d\w*)*)"
    r"|(?P<newline>\n)"
    r"|(?P<mark>(?P<char>[^\w\s])(?P=char)*)"
    r"|(?P<space>[^\S\n]+)"
)


class WordTokenizer(Tokenizer):
    """Words, punctuation marks and newlines as tokens; spaces are put back when decoding.

    Splitting: a token is a word (``\\w+`` with inner apostrophes, and inner ``.`` or ``,``
    between digits), a run of one repeated punctuation character, or a newline. Spaces are
    not tokens, with one exception below. "Greed is good." -> ["Greed", "is", "good", "."].

    Joining: one space between two tokens when the first is a word or a closing mark
    (``. , ; : ! ? ) ] } % ’ ” » …``) and the second is a word or an opening mark
    (``( [ { ‘ “ « ¿ ¡``); no space otherwise, so none around newlines.

    The exception: other marks (``- -- * / " ' & + =`` and so on) are spaced every which
    way in real text ("one-- and", "--obvious", "*right*", "Hello -- world"), so no rule
    can put their spaces back. Their token keeps the space written on either side:
    "idea -- let's" -> ["idea", " -- ", "let's"], and joining adds no space around them.

    Round trips are exact for ordinary prose, the Zen of Python among it. They are not
    exact where:
    - runs of spaces or tabs occur: they become one space (next to a mark) or the word
      separator; spaces at the start or end of a line are dropped unless a mark keeps one;
    - a closing mark is spaced unusually: "a , b" -> "a, b", "end.Next" -> "end. Next";
    - an opening mark touches the word before it, or is followed by a space:
      "f(x)" -> "f (x)", "( x" -> "(x)"; a closing mark right before an opening one
      gains a space: "a)(b" -> "a) (b";
    - other whitespace (tab, no-break space) separates words as a plain space does.
    """

    level = "word"

    @staticmethod
    def split(text: str) -> list[str]:
        # `lastgroup` names the outermost group that matched: word, newline, mark or space.
        pieces = [(m.lastgroup, m.group()) for m in _PIECES.finditer(text)]
        tokens = []
        space_taken = -1  # index of a space piece a free mark already holds
        for i, (kind, piece) in enumerate(pieces):
            if kind == "space":
                continue
            if kind == "mark" and _mark_class(piece) == "free":
                before = i > 0 and pieces[i - 1][0] == "space" and space_taken != i - 1
                after = i + 1 < len(pieces) and pieces[i + 1][0] == "space"
                if after:
                    space_taken = i + 1
                piece = " " * before + piece + " " * after
            tokens.append(piece)
        return tokens

    @staticmethod
    def join(tokens: Sequence[str]) -> str:
        parts = []
        previous = "newline"
        for token in tokens:
            kind = _token_class(token)
            if previous in ("word", "closing") and kind in ("word", "opening"):
                parts.append(" ")
            parts.append(token)
            previous = kind
        return "".join(parts)


def _mark_class(mark: str) -> str:
    if mark[0] in _CLOSING:
        return "closing"
    if mark[0] in _OPENING:
        return "opening"
    return "free"


def _token_class(token: str) -> str:
    """word, newline, closing, opening or free (a mark that carries its own spaces)."""
    if token == "\n":
        return "newline"
    if token == UNK or re.match(r"\w", token):
        return "word"
    return _mark_class(token.strip(" "))


_TOKENIZERS: dict[str, type[Tokenizer]] = {"char": CharTokenizer, "word": WordTokenizer}


def build_tokenizer(level: str, text: str) -> Tokenizer:
    """A tokenizer of the given level ("char" or "word") whose vocabulary is `text`'s."""
    if level not in _TOKENIZERS:
        raise TokenizerError(f"level: must be one of {LEVELS}, got {level!r}")
    return _TOKENIZERS[level].from_text(text)


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Read a tokenizer saved by `Tokenizer.save`, checking it thoroughly.

    Raises:
        TokenizerError: missing or unreadable file, bad JSON, wrong format or level,
            a vocabulary with duplicates or without `<unk>` at id 0.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise TokenizerError(f"{path}: no such tokenizer file") from error
    except (OSError, UnicodeDecodeError) as error:
        raise TokenizerError(f"{path}: cannot be read ({error})") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise TokenizerError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from error

    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise TokenizerError(f"{path}: not a tinytf tokenizer file")
    if data.get("version") != _VERSION:
        raise TokenizerError(f"{path}: unsupported version {data.get('version')!r}")
    level = data.get("level")
    if level not in _TOKENIZERS:
        raise TokenizerError(f"{path}: level must be one of {LEVELS}, got {level!r}")
    try:
        return _TOKENIZERS[level](data.get("vocab"))
    except TokenizerError as error:
        raise TokenizerError(f"{path}: {error}") from error


def _check_vocab(vocab: object, level: str) -> None:
    if not isinstance(vocab, (list, tuple)) or not all(isinstance(t, str) for t in vocab):
        raise TokenizerError("vocab: must be a list of strings")
    if not vocab or vocab[0] != UNK:
        raise TokenizerError(f"vocab: id 0 must be {UNK!r}")
    seen = set()
    for token in vocab:
        if token in seen:
            raise TokenizerError(f"vocab: token {token!r} appears twice")
        seen.add(token)
    bad = [t for t in vocab[1:] if (len(t) != 1 if level == "char" else not t)]
    if bad:
        expected = "single characters" if level == "char" else "non-empty strings"
        raise TokenizerError(f"vocab: {level} tokens must be {expected}, got {bad[0]!r}")
