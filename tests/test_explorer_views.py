"""The explorer's logic behind the pages, without Streamlit: prompts, samplers, the block
stepper, the corpus summary, the runs table and the config form."""

from __future__ import annotations

import pytest
import torch

from explorer.attention_view import PromptError, encode_for_model, output_differences, run_prompt
from explorer.block_view import agreement, controlled_input, controlled_setup, walkthrough
from explorer.corpus_view import summarize_corpus
from explorer.runs_view import COLUMNS, runs_table
from explorer.sampler_view import (
    Knobs,
    column_settings,
    column_stats,
    describe,
    reuse_caption,
    step_view,
)
from explorer.train_form import FIELDS, configs_from_values, field_values
from tinytf.config import ConfigError, TrainConfig
from tinytf.corpus import Corpus
from tinytf.presets import PRESETS
from tinytf.runs import list_runs, start_run
from tinytf.sampling import SAMPLERS, Generation, SamplingError, filter_probs
from tinytf.tokenizer import build_tokenizer

TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 3


@pytest.fixture
def word_tokenizer():
    return build_tokenizer("word", TEXT)


@pytest.fixture
def word_model(tiny_config, word_tokenizer):
    from tinytf.model import TinyGPT

    torch.manual_seed(0)
    config = tiny_config.replace(vocab_size=word_tokenizer.vocab_size)
    return TinyGPT(config).eval()


# --- prompts ---------------------------------------------------------------------------------


def test_run_prompt_marks_unknown_words_and_keeps_their_place(word_model, word_tokenizer):
    view = run_prompt(word_model, word_tokenizer, "the zebra sat")
    assert view.tokens == ["the", "zebra", "sat"]
    assert view.unknown == [False, True, False]
    assert view.ids[1] == 0  # <unk>
    assert view.labels == ["the", "⟨zebra⟩?", "sat"]
    assert view.unknown_tokens == ["zebra"]
    assert view.n_layers_heads() == (2, 2)
    assert view.all_patterns().shape == (2, 2, 3, 3)
    assert torch.equal(view.mask(), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())


def test_long_prompt_is_cropped_like_the_model_does(word_tokenizer):
    ids, tokens, unknown, cropped = encode_for_model(word_tokenizer, TEXT, block_size=5)
    all_tokens = word_tokenizer.split(TEXT)
    assert cropped == len(all_tokens) - 5
    assert tokens == all_tokens[-5:] and len(ids) == len(unknown) == 5


def test_empty_prompt_is_refused(word_tokenizer, word_model):
    with pytest.raises(PromptError, match="empty"):
        run_prompt(word_model, word_tokenizer, "   ")


def test_changing_a_token_moves_only_its_position_and_later(word_model):
    ids = [1, 2, 3, 4, 5, 6]
    diffs = output_differences(word_model, ids, position=3, new_id=7)
    assert torch.all(diffs[:3] == 0)
    assert torch.all(diffs[3:] > 0)


# --- samplers --------------------------------------------------------------------------------


def test_each_column_reads_its_own_knob():
    settings = column_settings(Knobs(temperature=1.7, top_k=3, top_p=0.5, ttp_temperature=0.6))
    assert list(settings) == list(SAMPLERS)
    assert settings["temperature"].temperature == 1.7
    assert settings["top-k"].top_k == 3 and settings["top-k"].temperature == 1.0
    assert settings["top-p"].top_p == 0.5
    assert settings["temperature-top-p"].temperature == 0.6
    assert describe(settings["greedy"]) == "always the most likely token"
    assert describe(settings["top-k"]) == "T=1, k=3"
    with pytest.raises(SamplingError, match="top_p"):
        column_settings(Knobs(top_p=1.5))


def test_step_view_applies_every_cut_to_one_distribution(word_model):
    settings = column_settings(Knobs(top_k=3, top_p=0.5))
    context = [1, 2, 3]
    logits = word_model(torch.tensor([context])).logits[0, -1]
    view = step_view(logits, settings)
    torch.testing.assert_close(view.base_probs, torch.softmax(logits, dim=-1))
    assert view.kept["greedy"] == 1 and view.kept["top-k"] == 3
    expected = filter_probs(logits, settings["top-p"])
    assert view.kept["top-p"] == expected.kept
    torch.testing.assert_close(view.kept_probs["top-p"], expected.probs_after)


def test_reuse_caption_says_how_much_the_model_ran():
    fresh = Generation([1], [2, 3, 4], reused_steps=0)
    assert reuse_caption(fresh) == "model ran for all 3 steps"
    knob_turned = Generation([1], [2, 3, 4], reused_steps=2)
    assert reuse_caption(knob_turned).startswith("model ran for 1 of 3 steps; the first 2 ")


def test_column_stats_of_a_loop():
    stats = column_stats([5, 6, 5, 6, 5, 6])
    assert stats.distinct[1] == pytest.approx(2 / 6)
    assert stats.repeat.length == 4


# --- block stepper ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["identity", "hand-set", "random"])
def test_walkthrough_of_a_controlled_block_agrees_with_its_forward(kind):
    block, x, labels = controlled_setup(kind, "abcab", seed=3)
    steps = walkthrough(block, x)
    assert next(s.name for s in steps) == "ln1" and steps[-1].name == "resid_post"
    assert len(steps) == 13 and labels == list("abcab")
    assert agreement(block, x, steps) < 1e-5


def test_controlled_input_repeats_vectors_of_repeated_characters():
    x, _labels = controlled_input("abca", width=4, seed=0)
    assert x.shape == (4, 4)
    assert torch.equal(x[0], x[3]) and not torch.equal(x[0], x[1])
    assert controlled_input("a b", 4, 0)[1] == ["a", "·", "b"]
    assert controlled_input("", 4, 0)[0].shape == (1, 4)


# --- data, runs, form -----------------------------------------------------------------------


def test_corpus_summary_counts():
    summary = summarize_corpus(Corpus("t", TEXT, "upload"), "word", val_fraction=0.25, top=3)
    tokens = build_tokenizer("word", TEXT).split(TEXT)
    assert summary.n_tokens == len(tokens)
    assert summary.n_val == int(len(tokens) * 0.25)
    assert summary.n_train + summary.n_val == len(tokens)
    assert next(iter(summary.top_tokens["token"])) == "the"
    assert summary.top_tokens["count"].iloc[0] == tokens.count("the")
    assert summary.vocab_size == build_tokenizer("word", TEXT).vocab_size


def test_runs_table_row(tmp_path):
    trainer = start_run(
        Corpus("t", TEXT * 4, "upload"),
        "char",
        {"block_size": 8, "n_layer": 1, "n_head": 1, "n_embd": 8},
        TrainConfig(batch_size=2, max_steps=2, eval_interval=1, eval_batches=1, device="cpu"),
        name="row",
        root=tmp_path,
    )
    trainer.train()
    table = runs_table(list_runs(tmp_path))
    assert list(table.columns) == list(COLUMNS)
    row = table.iloc[0]
    assert (row["name"], row["corpus"], row["level"], row["status"]) == (
        "row",
        "t",
        "char",
        "finished",
    )
    assert row["config"].startswith("1×1×8, ctx 8")
    assert row["steps"] == "2/2"
    assert row["best val loss"] == pytest.approx(trainer.best_val_loss)


def test_form_values_round_trip_through_the_configs():
    preset = PRESETS["small"]
    values = field_values(preset.model, preset.train)
    assert set(values) == {f.key for f in FIELDS} | {"train_device"}
    model, train = configs_from_values(values)
    assert model == dict(preset.model)
    for field in FIELDS:
        if field.part == "train":
            assert getattr(train, field.name) == getattr(preset.train, field.name)


def test_form_refuses_an_impossible_train_config():
    values = field_values(PRESETS["tiny"].model, PRESETS["tiny"].train)
    values["train_f_batch_size"] = 0
    with pytest.raises(ConfigError, match="batch_size"):
        configs_from_values(values)
