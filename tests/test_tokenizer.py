"""Character and word tokenizers: splitting, round trips, unknown tokens, the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinytf.corpus import load_corpus
from tinytf.tokenizer import (
    UNK,
    CharTokenizer,
    Encoding,
    TokenizerError,
    WordTokenizer,
    build_tokenizer,
    load_tokenizer,
)

ZEN = load_corpus("zen").text


@pytest.mark.parametrize("level", ["char", "word"])
def test_zen_round_trips_exactly(level: str) -> None:
    tok = build_tokenizer(level, ZEN)
    ids = tok.encode(ZEN)
    assert 0 not in ids
    assert tok.decode(ids) == ZEN


def test_char_vocab_is_unk_then_sorted_characters() -> None:
    tok = build_tokenizer("char", "hello\nworld")
    assert tok.vocab == [UNK, "\n", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.vocab_size == 9
    assert tok.encode("low") == [5, 6, 8]
    assert tok.level == "char"
    assert isinstance(tok, CharTokenizer)


def test_word_split_example_from_the_brief() -> None:
    tok = build_tokenizer("word", "Greed is good.")
    assert tok.vocab == [UNK, ".", "Greed", "good", "is"]
    assert tok.split("Greed is good.") == ["Greed", "is", "good", "."]
    assert tok.decode(tok.encode("Greed is good.")) == "Greed is good."


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("don't stop", ["don't", "stop"]),
        ("say (yes) now", ["say", "(", "yes", ")", "now"]),
        ("a, b; c", ["a", ",", "b", ";", "c"]),
        ("Hello -- world", ["Hello", " -- ", "world"]),
        ("one-- and only one --obvious", ["one", "-- ", "and", "only", "one", " --", "obvious"]),
        ("than *right* now", ["than", " *", "right", "* ", "now"]),
        ('He said "hi" to me.', ["He", "said", ' "', "hi", '" ', "to", "me", "."]),
        ("pi is 3.14, or 1,000.", ["pi", "is", "3.14", ",", "or", "1,000", "."]),
        ("Wait... what?!", ["Wait", "...", "what", "?", "!"]),
        ("line one\nline two\n", ["line", "one", "\n", "line", "two", "\n"]),
        ("the students' books", ["the", "students", "' ", "books"]),
        ("“Quoted,” she said’s", ["“", "Quoted", ",", "”", "she", "said’s"]),
        ("* *", ["* ", "*"]),
    ],
)
def test_word_split_and_exact_round_trip(text: str, tokens: list[str]) -> None:
    assert WordTokenizer.split(text) == tokens
    assert WordTokenizer.join(tokens) == text


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ("double  spaces   here", "double spaces here"),
        ("  indented\ttab \n", "indented tab\n"),
        ("a , b", "a, b"),
        ("f(x)", "f (x)"),
        ("a  --  b", "a -- b"),
    ],
)
def test_word_round_trip_documented_normalisations(text: str, decoded: str) -> None:
    assert WordTokenizer.join(WordTokenizer.split(text)) == decoded


def test_newlines_survive_as_tokens() -> None:
    text = "first.\n\nsecond line\n"
    tok = build_tokenizer("word", text)
    assert tok.split(text).count("\n") == 3
    assert tok.decode(tok.encode(text)) == text


def test_unknown_tokens_are_id_zero_and_flagged() -> None:
    tok = build_tokenizer("word", "Greed is good.")
    enc = tok.encode_prompt("Greed is great!")
    assert enc == Encoding(
        ids=[2, 4, 0, 0],
        tokens=["Greed", "is", "great", "!"],
        unknown=[False, False, True, True],
    )
    assert tok.encode("Greed is great!") == enc.ids
    assert tok.decode(enc.ids) == f"Greed is {UNK} {UNK}"


def test_char_unknown_flagged() -> None:
    tok = build_tokenizer("char", "abc")
    enc = tok.encode_prompt("abz")
    assert enc.ids == [1, 2, 0]
    assert enc.tokens == ["a", "b", "z"]
    assert enc.unknown == [False, False, True]


def test_token_strings_and_out_of_range_id() -> None:
    tok = build_tokenizer("char", "ab")
    assert tok.token_strings([2, 0, 1]) == ["b", UNK, "a"]
    with pytest.raises(TokenizerError, match="token id 3 is outside the vocabulary of 3"):
        tok.decode([3])


def test_vocab_is_deterministic() -> None:
    assert build_tokenizer("word", ZEN).vocab == build_tokenizer("word", ZEN).vocab
    vocab = build_tokenizer("word", ZEN).vocab
    assert vocab[0] == UNK
    assert vocab[1:] == sorted(vocab[1:])


def test_pydoc_word_vocab_is_moderate() -> None:
    tok = build_tokenizer("word", load_corpus("pydoc").text)
    assert 1_000 < tok.vocab_size < 20_000


@pytest.mark.parametrize("level", ["char", "word"])
def test_save_and_load_identical(tmp_path: Path, level: str) -> None:
    tok = build_tokenizer(level, ZEN + "\ncafé “quotes” -- naïve")
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    loaded = load_tokenizer(path)
    assert type(loaded) is type(tok)
    assert loaded == tok
    assert loaded.vocab == tok.vocab
    assert json.loads(path.read_text(encoding="utf-8"))["level"] == level
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]  # no temp file left


def test_unknown_level_refused() -> None:
    with pytest.raises(TokenizerError, match="level: must be one of"):
        build_tokenizer("byte", "abc")


def test_text_without_tokens_refused() -> None:
    with pytest.raises(TokenizerError, match="no word tokens"):
        build_tokenizer("word", "   \t ")


def _write(path: Path, data: object) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _file(level: object, vocab: object) -> dict[str, object]:
    return {"format": "tinytf-tokenizer", "version": 1, "level": level, "vocab": vocab}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format": "tinytf-tokenizer", "vocab": [', "not valid JSON"),
        ("[1, 2]", "not a tinytf tokenizer file"),
        ({"level": "char", "vocab": [UNK]}, "not a tinytf tokenizer file"),
        (_file("byte", [UNK, "a"]), "level must be one of"),
        (_file("char", [UNK, "a", "a"]), "token 'a' appears twice"),
        (_file("char", ["a", UNK]), "id 0 must be '<unk>'"),
        (_file("char", [UNK, "ab"]), "char tokens must be single characters"),
        (_file("word", [UNK, ""]), "word tokens must be non-empty"),
        (_file("word", [UNK, 3]), "must be a list of strings"),
        (_file("word", None), "must be a list of strings"),
    ],
)
def test_bad_files_refused_with_tokenizer_error(
    tmp_path: Path, content: object, message: str
) -> None:
    path = _write(tmp_path / "tok.json", content)
    with pytest.raises(TokenizerError, match=message):
        load_tokenizer(path)


def test_missing_file_refused(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="no such tokenizer file"):
        load_tokenizer(tmp_path / "absent.json")
