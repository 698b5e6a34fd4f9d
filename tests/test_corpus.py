"""Built-in corpora and the checks every text file or upload goes through."""

from __future__ import annotations

from pathlib import Path
from pydoc_data.topics import topics

import pytest

from tinytf.corpus import BUILTIN_CORPORA, Corpus, CorpusError, corpus_from_bytes, load_corpus


def test_zen_is_the_aphorisms_without_title() -> None:
    corpus = load_corpus("zen")
    assert corpus == Corpus(name="zen", text=corpus.text, source="builtin")
    assert corpus.text.startswith("Beautiful is better than ugly.\nExplicit is better")
    assert corpus.text.endswith("let's do more of those!")
    assert 800 <= len(corpus.text) <= 900
    assert corpus.text.count("\n") == 18  # 19 aphorisms, one per line


def test_zen_does_not_print(capsys: pytest.CaptureFixture[str]) -> None:
    load_corpus("zen")
    assert capsys.readouterr().out == ""


def test_pydoc_is_large_and_blank_line_separated() -> None:
    corpus = load_corpus("pydoc")
    assert corpus.source == "builtin"
    assert len(corpus.text) > 300_000
    # Topics in sorted key order, one blank line between neighbours.
    keys = sorted(topics)
    first, second = topics[keys[0]].strip("\n"), topics[keys[1]].strip("\n")
    assert corpus.text.startswith(first + "\n\n" + second + "\n\n")
    assert "\r" not in corpus.text
    assert set(BUILTIN_CORPORA) == {"zen", "pydoc"}


def test_file_is_read_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes("café ünïcode\n".encode())
    corpus = load_corpus(str(path))
    assert corpus == Corpus(name="notes.txt", text="café ünïcode\n", source=str(path))


def test_line_endings_and_bom_normalised(tmp_path: Path) -> None:
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\rthree\n\r\nfour")
    assert load_corpus(str(path)).text == "one\ntwo\nthree\n\nfour"


def test_invalid_utf8_names_the_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("abc é".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"not valid UTF-8.*byte offset 4"):
        load_corpus(str(path))


@pytest.mark.parametrize("data", [b"", b"   \n\r\n\t "], ids=["empty", "whitespace"])
def test_empty_text_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "blank.txt"
    path.write_bytes(data)
    with pytest.raises(CorpusError, match="empty"):
        load_corpus(str(path))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.txt"
    with pytest.raises(CorpusError, match=r"nowhere\.txt: no such file"):
        load_corpus(str(path))


def test_directory_refused(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="is a directory"):
        load_corpus(str(tmp_path))


def test_binary_refused(tmp_path: Path) -> None:
    path = tmp_path / "image.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(CorpusError, match=r"binary \(NUL byte at offset 8\)"):
        load_corpus(str(path))


def test_utf16_refused_as_binary() -> None:
    with pytest.raises(CorpusError, match="binary"):
        corpus_from_bytes("hello".encode("utf-16"), "wide.txt")


def test_upload_checked_like_a_file() -> None:
    corpus = corpus_from_bytes(b"\xef\xbb\xbfa\r\nb", "up.txt")
    assert corpus == Corpus(name="up.txt", text="a\nb", source="upload")
    with pytest.raises(CorpusError, match=r"up.txt: not valid UTF-8.*offset 1"):
        corpus_from_bytes(b"a\xffb", "up.txt")
