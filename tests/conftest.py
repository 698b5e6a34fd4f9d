"""Shared test fixtures: tiny seeded configurations and paths to optional real corpora."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tinytf.config import ModelConfig
from tinytf.model import TinyGPT

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# The test models are tiny: extra intra-op threads gain nothing, and on a busy machine
# their spin-waiting made one small forward ~100x slower (0.94 s against 3 ms, measured).
torch.set_num_threads(1)


@pytest.fixture
def tiny_config() -> ModelConfig:
    return ModelConfig(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=16)


@pytest.fixture
def tiny_model(tiny_config: ModelConfig) -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(tiny_config).eval()


@pytest.fixture
def shakespeare_path() -> Path:
    path = SHARED_DATA / "tinyshakespeare.txt"
    if not path.exists():
        pytest.skip(f"real corpus not present at {path} (only beside the project's checkout)")
    return path
