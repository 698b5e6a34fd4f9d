"""Snapshots: taken from a tiny model, saved, listed, loaded back, compared."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinytf.config import ModelConfig
from tinytf.model import TinyGPT
from tinytf.sampling import generate
from tinytf.snapshots import (
    SAMPLE_SETTINGS,
    SnapshotError,
    list_snapshots,
    load_snapshot,
    probe_and_passage,
    save_snapshot,
    snapshot_diff,
    snapshot_path,
    take_snapshot,
    token_losses,
)
from tinytf.tokenizer import CharTokenizer

TEXT = "abracadabra, said the cat to the bat; the bat said abracadabra back.\n" * 3


@pytest.fixture
def tokenizer() -> CharTokenizer:
    return CharTokenizer.from_text(TEXT)


@pytest.fixture
def model(tokenizer: CharTokenizer) -> TinyGPT:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=8, n_layer=2, n_head=2, n_embd=16
    )
    return TinyGPT(config).eval()


def probe_passage(tokenizer: CharTokenizer) -> tuple[list[int], list[int]]:
    ids = tokenizer.encode(TEXT)
    return probe_and_passage(ids[:150], ids[150:], block_size=8)


def test_token_losses_equal_a_full_context_forward_within_the_window(model, tokenizer):
    """Tokens predicted by the first window get exactly the loss of one plain forward."""
    passage = tokenizer.encode(TEXT[:9])  # 9 tokens: one window of 8 inputs
    losses = token_losses(model, passage)
    assert math.isnan(losses[0])
    x = torch.tensor([passage[:-1]])
    expected = F.cross_entropy(model(x).logits[0], torch.tensor(passage[1:]), reduction="none")
    np.testing.assert_allclose(losses[1:], expected.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_token_losses_of_a_long_passage_use_half_a_window_of_context_or_more(model, tokenizer):
    passage = tokenizer.encode(TEXT[:40])
    losses = token_losses(model, passage)
    assert not np.isnan(losses[1:]).any()
    # Token 13 first appears in the window starting at 8 (stride 4): context 8..12.
    x = torch.tensor([passage[8:13]])
    expected = F.cross_entropy(model(x).logits[0, -1:], torch.tensor([passage[13]])).detach()
    assert losses[13] == pytest.approx(expected.item(), rel=1e-5)


def test_snapshot_contents(model, tokenizer):
    probe, passage = probe_passage(tokenizer)
    snap = take_snapshot(model, tokenizer, probe, passage, step=10, seed=3)
    T = len(probe)
    assert snap.patterns.shape == (2, 2, T, T)
    np.testing.assert_allclose(snap.patterns.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(snap.patterns, k=1) == 0)
    assert snap.token_losses.shape == (len(passage),)
    # The sample is exactly what generate gives from the probe's first token and the seed.
    expected = generate(model, probe[:1], len(snap.sample_ids) - 1, SAMPLE_SETTINGS, seed=3)
    assert snap.sample_ids.tolist() == expected.ids
    assert snap.sample_text == tokenizer.decode(expected.ids)
    assert snap.probe_tokens == tokenizer.token_strings(probe)


def test_taking_a_snapshot_leaves_global_rng_and_mode_alone(model, tokenizer):
    probe, passage = probe_passage(tokenizer)
    model.train()
    torch.manual_seed(5)
    take_snapshot(model, tokenizer, probe, passage, step=0)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))
    assert model.training


def test_save_list_load_round_trip(model, tokenizer, tmp_path):
    probe, passage = probe_passage(tokenizer)
    for step in (50, 0, 25):
        save_snapshot(tmp_path, take_snapshot(model, tokenizer, probe, passage, step=step))
    assert list_snapshots(tmp_path) == [0, 25, 50]
    assert snapshot_path(tmp_path, 25).name == "step_000025.npz"
    # No temporary files left behind by the atomic writes.
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [
        "step_000000.npz",
        "step_000025.npz",
        "step_000050.npz",
    ]

    original = take_snapshot(model, tokenizer, probe, passage, step=25)
    loaded = load_snapshot(tmp_path, 25)
    assert loaded.step == 25
    np.testing.assert_array_equal(loaded.patterns, original.patterns)
    np.testing.assert_array_equal(loaded.token_losses, original.token_losses)
    np.testing.assert_array_equal(loaded.sample_ids, original.sample_ids)
    assert loaded.sample_text == original.sample_text
    assert loaded.passage_tokens == original.passage_tokens
    assert loaded.mean_loss == pytest.approx(original.mean_loss)


def test_list_snapshots_without_folder(tmp_path):
    assert list_snapshots(tmp_path) == []


def test_bad_snapshot_files(tmp_path, model, tokenizer):
    with pytest.raises(SnapshotError, match="no snapshot for step 7"):
        load_snapshot(tmp_path, 7)
    path = snapshot_path(tmp_path, 3)
    path.parent.mkdir()
    path.write_bytes(b"not a zip")
    with pytest.raises(SnapshotError, match="unreadable"):
        load_snapshot(tmp_path, 3)
    np.savez(snapshot_path(tmp_path, 4), patterns=np.zeros(2))
    with pytest.raises(SnapshotError, match="not a snapshot"):
        load_snapshot(tmp_path, 4)
    # An archive holding a pickled object is refused, never unpickled.
    probe, passage = probe_and_passage(
        tokenizer.encode(TEXT)[:150], tokenizer.encode(TEXT)[150:], 8
    )
    save_snapshot(tmp_path, take_snapshot(model, tokenizer, probe, passage, step=5))
    with np.load(snapshot_path(tmp_path, 5)) as archive:
        arrays = dict(archive)
    arrays["meta"] = np.array([{"format": "tinytf-snapshot"}], dtype=object)
    np.savez(snapshot_path(tmp_path, 5), **arrays)
    with pytest.raises(SnapshotError, match="unreadable"):
        load_snapshot(tmp_path, 5)


def test_snapshot_diff(model, tokenizer):
    probe, passage = probe_passage(tokenizer)
    before = take_snapshot(model, tokenizer, probe, passage, step=0)

    # One optimiser step on the passage itself lowers its loss.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.tensor([passage[:8]]), torch.tensor([passage[1:9]])
    model.train()
    model(x, y).loss.backward()
    optimizer.step()
    after = take_snapshot(model, tokenizer, probe, passage, step=1)

    diff = snapshot_diff(before, after)
    assert (diff.prev_step, diff.step) == (0, 1)
    np.testing.assert_allclose(diff.loss_change, after.token_losses - before.token_losses)
    assert diff.mean_loss_after < diff.mean_loss_before
    assert diff.pattern_change.shape == (2, 2)
    assert diff.pattern_change.max() > 0
    same = snapshot_diff(after, after)
    assert not same.sample_changed and same.first_sample_difference is None
    assert same.pattern_change.max() == 0
    if diff.sample_changed:
        k = diff.first_sample_difference
        assert before.sample_ids[k] != after.sample_ids[k]
        assert before.sample_ids[:k].tolist() == after.sample_ids[:k].tolist()


def test_snapshot_diff_refuses_snapshots_of_different_runs(model, tokenizer):
    probe, passage = probe_passage(tokenizer)
    a = take_snapshot(model, tokenizer, probe, passage, step=0)
    b = take_snapshot(model, tokenizer, probe, passage[:-1], step=1)
    with pytest.raises(SnapshotError, match="not from the same run"):
        snapshot_diff(a, b)


def test_bad_probe_or_passage(model, tokenizer):
    with pytest.raises(SnapshotError, match="probe_ids"):
        take_snapshot(model, tokenizer, list(range(1, 10)), [1, 2], step=0)
    with pytest.raises(SnapshotError, match="passage_ids"):
        take_snapshot(model, tokenizer, [1, 2], [1], step=0)
