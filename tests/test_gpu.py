"""The CUDA path end to end: training under bf16 autocast with the fused AdamW, cached
generation, checkpoints that load on the CPU, and two-GPU DDP.

Every test here needs a CUDA GPU and skips with that reason where there is none (CI has
none); `scripts/gpu_check.sh` runs them with the other GPU checks on a lent machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tinytf.config import ModelConfig, TrainConfig
from tinytf.corpus import load_corpus
from tinytf.model import TinyGPT
from tinytf.runs import load_run, start_run
from tinytf.sampling import SAMPLERS, SamplerSettings, generate
from tinytf.training import StepMetrics

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = {"block_size": 32, "n_layer": 2, "n_head": 4, "n_embd": 64}


def test_training_on_cuda_uses_bf16_autocast_and_the_fused_adamw(tmp_path: Path) -> None:
    train = TrainConfig(batch_size=8, max_steps=20, warmup_steps=2, eval_interval=10, device="cuda")
    trainer = start_run(load_corpus("zen"), "char", MODEL, train, root=tmp_path)
    assert trainer.device.type == "cuda"
    assert trainer.optimizer.defaults["fused"] is True

    steps = []
    result = trainer.train(on_event=lambda e: steps.append(e) if isinstance(e, StepMetrics) else 0)
    assert result.status == "finished"
    assert all(torch.isfinite(torch.tensor(m.loss)) for m in steps)
    assert steps[-1].loss < steps[0].loss
    assert all(m.mfu is None or 0 < m.mfu < 1 for m in steps)  # None: a GPU not in the table

    # The weights stay float32 (autocast casts per operation), and the run loads on the CPU.
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    loaded = load_run(result.run_dir, checkpoint="last", device="cpu")
    assert loaded.step == 20
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value.cpu()), name


@pytest.mark.parametrize("kind", SAMPLERS)
def test_cached_equals_uncached_on_cuda_past_the_context(kind: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=31, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = TinyGPT(config).to("cuda").eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(50)  # far from uniform, so the samplers disagree
    settings = {
        "greedy": SamplerSettings(kind="greedy"),
        "temperature": SamplerSettings(kind="temperature", temperature=0.9),
        "top-k": SamplerSettings(kind="top-k", top_k=4),
        "top-p": SamplerSettings(kind="top-p", top_p=0.8),
        "temperature-top-p": SamplerSettings(kind="temperature-top-p", temperature=1.3, top_p=0.8),
    }[kind]
    prompt = [1, 2, 3, 4, 5]
    cached = generate(model, prompt, 40, settings, seed=3, use_cache=True)
    full = generate(model, prompt, 40, settings, seed=3, use_cache=False)
    assert cached.new_ids == full.new_ids


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_torchrun_on_two_gpus_writes_one_run(tmp_path: Path) -> None:
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
        *("-m", "tinytf", "train", "--corpus", "zen", "--level", "char", "--device", "cuda"),
        *("--steps", "6", "--eval-interval", "3", "--batch-size", "4", "--block-size", "16"),
        *("--layers", "1", "--heads", "2", "--width", "32"),
        *("--runs-dir", str(tmp_path / "runs")),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [run] = list((tmp_path / "runs").iterdir())
    loaded = load_run(run, checkpoint="last", device="cpu")
    assert loaded.record["status"] == "finished" and loaded.step == 6
