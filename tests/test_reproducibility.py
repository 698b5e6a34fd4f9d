"""Reproducibility as a promise: the same config and seed on the CPU give the same losses
to the last digit, run after run, and a run's folder holds everything needed to re-run it.

Two real `python -m tinytf train` processes with one config and seed must write the same
loss columns in metrics.csv and bit-identical checkpoints. Then the run is trained again
in this process from its config.json alone (corpus by name, tokenizer level, model and
train configs), with the thread count its run.json records: the same losses, the same
weights. The thread count matters: the CPU kernels split sums by thread, so 1 and 2
threads differ in the last digits (measured, docs/reliability.md).

Already proven elsewhere: another seed gives other losses (test_training), and a resumed
run equals one that ran straight through (test_runs, test_crashes).
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
from tinytf.runs import RunFolder, list_runs, load_run, read_metrics, tokenizer_fingerprint
from tinytf.tokenizer import build_tokenizer
from tinytf.training import EvalMetrics, StepMetrics, Trainer

REPO_ROOT = Path(__file__).resolve().parent.parent
ARGS = ["train", "--corpus", "zen", "--level", "word", "--steps", "40", "--eval-interval", "10"]
ARGS += ["--block-size", "8", "--layers", "2", "--width", "32", "--heads", "4"]
ARGS += ["--batch-size", "8", "--seed", "4242", "--device", "cpu"]
THREADS = 1  # the tests' own thread count (tests/conftest.py), given to the processes too


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> list[Path]:
    """The same command twice, as two processes side by side."""
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    processes, roots = [], []
    for index in range(2):
        root = tmp_path_factory.mktemp(f"repro{index}")
        roots.append(root)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tinytf", *ARGS, "--runs-dir", str(root)],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    return [list_runs(root)[0].path for root in roots]


def loss_columns(run: Path) -> list[tuple[str, str, str]]:
    return [tuple(row["_raw"][:3]) for row in read_metrics(run)]


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_write_the_same_losses_to_the_last_digit(two_runs):
    first, second = (loss_columns(run) for run in two_runs)
    assert len(first) == 41  # step 0 and every step to 40
    assert first == second
    for kind in ("best", "last"):
        weights = [load_run(run, kind).model.state_dict() for run in two_runs]
        assert same_tensors(*weights), kind


def test_the_run_folder_alone_re_runs_it(two_runs):
    run = two_runs[0]
    config = RunFolder(run).read_config()
    record = RunFolder(run).read_record()

    # 1. What the record says about where it ran: this machine's versions and threads.
    assert record["versions"]["torch"] == torch.__version__
    assert THREADS == torch.get_num_threads() == 1
    assert record["device"] == "CPU: 1 thread"
    assert record["seed"] == config["train"]["seed"] == 4242

    # 2. The same corpus, tokenizer and configs, from config.json alone.
    source = config["corpus"]
    corpus = load_corpus(source["name"] if source["source"] == "builtin" else source["source"])
    assert len(corpus.text) == source["chars"]
    tokenizer = build_tokenizer(config["level"], corpus.text)
    assert tokenizer_fingerprint(tokenizer) == config["tokenizer_sha256"]
    model_config = ModelConfig(**config["model"])
    train_config = TrainConfig(**config["train"])

    # 3. Trained again here, without a run folder: the same rows and the same weights.
    trainer = Trainer(model_config, train_config, tokenizer.encode(corpus.text), tokenizer)
    rows: dict[int, tuple[str, str, str]] = {}

    def collect(event) -> None:
        if isinstance(event, StepMetrics):
            rows[event.step] = (str(event.step), f"{event.loss:.8g}", "")
        elif isinstance(event, EvalMetrics):
            rows[event.step] = (
                str(event.step),
                f"{event.train_loss:.8g}",
                f"{event.val_loss:.8g}",
            )

    trainer.train(on_event=collect)
    assert [rows[step] for step in sorted(rows)] == loss_columns(run)
    assert same_tensors(trainer.model.state_dict(), load_run(run, "last").model.state_dict())
