"""Presets: valid as written, fitted to short corpora, and the zen default outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinytf import cli
from tinytf.config import ConfigError, ModelConfig
from tinytf.corpus import load_corpus
from tinytf.data import check_fits
from tinytf.presets import (
    PRESETS,
    default_preset_for,
    fit_to_corpus,
    get_preset,
)
from tinytf.runs import list_runs, read_metrics
from tinytf.tokenizer import build_tokenizer


def zen_tokens(level: str) -> int:
    text = load_corpus("zen").text
    return len(build_tokenizer(level, text).encode(text))


def test_every_preset_builds_a_valid_model_config():
    for preset in PRESETS.values():
        ModelConfig(vocab_size=50, **preset.model_kwargs())
        assert preset.name in PRESETS and preset.description


def test_small_preset_is_the_documented_shakespeare_model():
    small = get_preset("small")
    assert small.model_kwargs() == {
        "block_size": 64, "n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0
    }  # fmt: skip
    assert small.train.batch_size == 12


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match=r"^preset: unknown preset 'huge'; choose one of tiny"):
        get_preset("huge")


def test_fit_shrinks_the_context_for_zen_words():
    n_tokens = zen_tokens("word")  # about 180: 18 validation tokens
    fitted = fit_to_corpus(get_preset("tiny"), n_tokens)
    assert fitted.model["block_size"] == 16  # largest power of two below 18
    check_fits(n_tokens, fitted.model["block_size"], fitted.train.val_fraction)
    assert get_preset("tiny").model["block_size"] == 32  # the preset itself is untouched


def test_fit_leaves_a_corpus_that_fits_alone():
    tiny = get_preset("tiny")
    assert fit_to_corpus(tiny, zen_tokens("char")) == tiny


def test_fit_caps_the_batch_at_the_training_windows():
    fitted = fit_to_corpus(get_preset("small"), 60, val_fraction=0.5)
    assert fitted.model["block_size"] == 16  # 30 tokens per split
    assert fitted.train.batch_size == 12  # 30 - 16 = 14 windows: 12 still fits
    tighter = fit_to_corpus(get_preset("tiny"), 40, val_fraction=0.5)
    assert tighter.model["block_size"] == 16 and tighter.train.batch_size == 4


def test_fit_refuses_a_corpus_too_short_for_any_context():
    with pytest.raises(ConfigError, match=r"^block_size:"):
        fit_to_corpus(get_preset("tiny"), 12)


def test_default_preset_by_size():
    assert default_preset_for(200) == "tiny"
    assert default_preset_for(1_000_000) == "small"


def test_zen_word_default_memorises_and_overfits(tmp_path: Path, capsys):
    """`python -m tinytf train --corpus zen --level word` with no other option: the
    training loss falls below 0.5 while the final validation loss sits above its minimum."""
    status = cli.main(["train", "--corpus", "zen", "--level", "word", "--runs-dir", str(tmp_path)])
    assert status == 0
    (run,) = list_runs(tmp_path)
    evals = [r for r in read_metrics(run.path) if r["val_loss"] is not None]
    assert evals[-1]["train_loss"] < 0.5
    assert evals[-1]["val_loss"] > min(r["val_loss"] for r in evals)
    assert "step 300/300 | train" in capsys.readouterr().out
