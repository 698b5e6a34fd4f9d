"""Checkpoints: atomic writes, safe loading, and every way a file can be bad."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import torch

from tinytf import checkpoint as ckpt_module
from tinytf.checkpoint import (
    CheckpointError,
    atomic_write_json,
    capture_rng,
    load_checkpoint,
    load_weights,
    restore_rng,
    save_checkpoint,
)
from tinytf.config import ModelConfig
from tinytf.model import TinyGPT


class RunsCodeWhenUnpickled:
    """A payload whose unpickling calls os.system: the thing weights_only must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def saved(tmp_path: Path, name: str = "model.pt", vocab: int = 11) -> tuple[Path, TinyGPT]:
    torch.manual_seed(0)
    model = TinyGPT(ModelConfig(vocab_size=vocab, block_size=8, n_layer=1, n_head=2, n_embd=8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long)).loss.backward()
    optimizer.step()
    rng = capture_rng(torch.Generator().manual_seed(3), torch.device("cpu"))
    path = tmp_path / name
    save_checkpoint(path, model, optimizer, 7, rng, {"best_val_loss": 1.5, "configs": [1, "a"]})
    return path, model


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_round_trip(tmp_path: Path):
    path, model = saved(tmp_path)
    ckpt = load_checkpoint(path)
    assert ckpt.step == 7
    assert ckpt.extra == {"best_val_loss": 1.5, "configs": [1, "a"]}
    assert ckpt.optimizer_state["state"]  # Adam moments are there
    fresh = TinyGPT(model.config)
    load_weights(fresh, ckpt)
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor)


def test_rng_state_round_trip():
    generator = torch.Generator().manual_seed(9)
    torch.manual_seed(4)
    state = capture_rng(generator, torch.device("cpu"))
    expected = (torch.rand(3), torch.rand(3, generator=generator))
    torch.rand(5), torch.rand(5, generator=generator)  # move both streams on
    restore_rng(state, generator, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected[0])
    assert torch.equal(torch.rand(3, generator=generator), expected[1])


# ---------------------------------------------------------------------------------------
# Atomic writes


def test_failed_rename_keeps_the_old_file_and_no_temp(tmp_path: Path, monkeypatch):
    target = tmp_path / "run.json"
    atomic_write_json(target, {"version": "old"})

    def crash(src, dst):
        raise OSError("disk vanished")

    monkeypatch.setattr(ckpt_module.os, "replace", crash)
    with pytest.raises(OSError, match=r"disk vanished"):
        atomic_write_json(target, {"version": "new"})
    assert target.read_text() == '{\n  "version": "old"\n}\n'
    assert leftovers(tmp_path) == []


def test_crash_while_writing_a_checkpoint_keeps_the_old_one(tmp_path: Path, monkeypatch):
    path, model = saved(tmp_path)
    before = path.read_bytes()

    def half_then_crash(obj, file, *args, **kwargs):
        file.write(before[: len(before) // 2])
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(ckpt_module.torch, "save", half_then_crash)
    with pytest.raises(RuntimeError, match=r"killed mid-write"):
        save_checkpoint(path, model, None, 8, {}, {})
    assert path.read_bytes() == before
    assert load_checkpoint(path).step == 7
    assert leftovers(tmp_path) == []


def test_unsafe_values_are_refused_before_writing(tmp_path: Path):
    path, model = saved(tmp_path)
    with pytest.raises(CheckpointError, match=r"checkpoint\.extra\.when: a \w*Path cannot"):
        save_checkpoint(path, model, None, 8, {}, {"when": Path("/x")})
    assert load_checkpoint(path).step == 7


# ---------------------------------------------------------------------------------------
# Refusing bad files


def test_pickled_object_that_runs_code_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": "tinytf-checkpoint", "extra": {"x": RunsCodeWhenUnpickled(marker)}}
    torch.save(payload, path)

    with pytest.raises(CheckpointError, match=r"evil\.pt: refused.*pickled object \(\w+\.system\)"):
        load_checkpoint(path)
    assert not marker.exists()

    # The payload really is dangerous: an unsafe load runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_truncated_checkpoint_is_refused(tmp_path: Path):
    path, _ = saved(tmp_path)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable checkpoint"):
        load_checkpoint(cut)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable checkpoint"),
        (b"hello, not a checkpoint", "not a readable checkpoint"),
        (b"\x00garbage", "not a readable checkpoint"),
    ],
)
def test_files_that_are_not_checkpoints(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_plain_torch_file_without_the_marker_or_keys(tmp_path: Path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match=r"not a tinytf checkpoint"):
        load_checkpoint(other)
    partial = tmp_path / "partial.pt"
    torch.save({"format": "tinytf-checkpoint", "version": 1, "step": 3}, partial)
    with pytest.raises(CheckpointError, match=r"partial\.pt: checkpoint is missing model"):
        load_checkpoint(partial)


def test_missing_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match=r"no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


def test_vocabulary_mismatch_is_named(tmp_path: Path):
    path, _ = saved(tmp_path, vocab=11)
    other = TinyGPT(ModelConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(CheckpointError, match=r"tok_embed\.weight has shape \(11, 8\)"):
        load_weights(other, load_checkpoint(path))


def test_missing_weights_are_named(tmp_path: Path):
    path, _ = saved(tmp_path)
    deeper = TinyGPT(ModelConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8))
    with pytest.raises(CheckpointError, match=r"missing: blocks\.1\."):
        load_weights(deeper, load_checkpoint(path))


# ---------------------------------------------------------------------------------------
# Device mapping


def _retag_as_cuda(src: Path, dst: Path) -> None:
    """Rewrite a CPU checkpoint as if saved on cuda:0: only the storages' location tag
    changes ("cpu" -> "cuda:0" in data.pkl); the bytes of every tensor stay the same."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            zout.writestr(info, data)


def test_cuda_saved_checkpoint_loads_on_cpu(tmp_path: Path):
    path, model = saved(tmp_path)
    gpu_path = tmp_path / "gpu.pt"
    _retag_as_cuda(path, gpu_path)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"CUDA"):
            torch.load(gpu_path, weights_only=True)  # without a map it needs a GPU
    ckpt = load_checkpoint(gpu_path, map_location="cpu")
    assert all(t.device.type == "cpu" for t in ckpt.model_state.values())
    fresh = TinyGPT(model.config)
    load_weights(fresh, ckpt)
    assert torch.equal(fresh.lm_head.weight, model.lm_head.weight)


@pytest.mark.gpu
def test_real_gpu_checkpoint_loads_on_cpu(tmp_path: Path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA to save a real GPU checkpoint")
    model = TinyGPT(ModelConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    model = model.to("cuda")
    rng = capture_rng(torch.Generator().manual_seed(0), torch.device("cuda"))
    save_checkpoint(tmp_path / "gpu.pt", model, None, 1, rng, {})
    ckpt = load_checkpoint(tmp_path / "gpu.pt", map_location="cpu")
    assert ckpt.model_state["lm_head.weight"].device.type == "cpu"
    assert all(s.device.type == "cpu" for s in ckpt.rng_state["cuda"])
