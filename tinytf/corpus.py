"""Training text: two corpora built into Python itself, or any UTF-8 text file.

The built-in corpora need no download, so the explorer works offline:
- `zen`: the Zen of Python (about 820 characters), the extreme-scarcity case where a
  model can only memorise;
- `pydoc`: the interactive help topics shipped with Python (about 465,000 characters),
  enough English and code for a small model to learn spelling and layout.

Every text is checked the same way, whether it comes from a file or an upload: valid
UTF-8, no NUL bytes, not empty. Line endings become "\\n" and a leading byte-order mark is
dropped, so a file saved on Windows trains exactly like the same file saved on Linux.

    corpus = load_corpus("zen")            # or "pydoc", or a path
    corpus = corpus_from_bytes(data, "notes.txt")   # an upload
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

BUILTIN_CORPORA = ("zen", "pydoc")

_BOM = "\ufeff"
# The `this` module's text opens with a title line; the corpus keeps only the aphorisms.
_ZEN_TITLE = "The Zen of Python, by Tim Peters\n\n"


class CorpusError(ValueError):
    """Text that cannot be used for training; the message says which and why."""


@dataclass(frozen=True)
class Corpus:
    """A training text and where it came from."""

    name: str  # short label: "zen", "pydoc", a file name or an upload's name
    text: str  # UTF-8 decoded, "\n" line endings, no byte-order mark, never blank
    source: str  # "builtin", the file path, or "upload"


def load_corpus(source: str) -> Corpus:
    """Load a built-in corpus by name (`zen`, `pydoc`) or a UTF-8 text file by path.

    Raises:
        CorpusError: a missing path, a directory, a binary or non-UTF-8 file, or no text.
    """
    if source == "zen":
        return Corpus(name="zen", text=_zen_text(), source="builtin")
    if source == "pydoc":
        return Corpus(name="pydoc", text=_pydoc_text(), source="builtin")

    path = Path(source)
    if not path.exists():
        raise CorpusError(
            f"{source}: no such file (built-in corpora: {', '.join(BUILTIN_CORPORA)})"
        )
    if path.is_dir():
        raise CorpusError(f"{source}: is a directory, not a text file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorpusError(f"{source}: cannot be read ({error.strerror or error})") from error
    return Corpus(name=path.name, text=_clean_text(data, str(path)), source=str(path))


def corpus_from_bytes(data: bytes, name: str) -> Corpus:
    """Check and decode uploaded bytes, exactly as a file on disk would be."""
    return Corpus(name=name, text=_clean_text(data, name), source="upload")


def _clean_text(data: bytes, label: str) -> str:
    """Decode UTF-8, refuse binary or empty input, normalise line endings and the BOM."""
    # A NUL byte never appears in text, but is common in binaries (and in UTF-16, which
    # would otherwise decode into garbage that happens to be valid UTF-8).
    nul = data.find(b"\x00")
    if nul >= 0:
        raise CorpusError(f"{label}: looks binary (NUL byte at offset {nul}), not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"{label}: not valid UTF-8 (bad byte 0x{data[error.start]:02x} "
            f"at byte offset {error.start})"
        ) from error

    text = text.removeprefix(_BOM)
    # CRLF first, so that its CR is not turned into a second line break.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise CorpusError(f"{label}: is empty (no text besides whitespace)")
    return text


def _zen_text() -> str:
    """The Zen of Python, decoded from the `this` module without printing it."""
    # Importing `this` prints the poem (once per process); the text itself is stored
    # ROT13-encoded in `this.s`, with the decoding table in `this.d`.
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    text = "".join(this.d.get(char, char) for char in this.s)
    return text.removeprefix(_ZEN_TITLE)


def _pydoc_text() -> str:
    """Python's help topics, in sorted key order, separated by blank lines."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key].strip("\n") for key in sorted(topics))
