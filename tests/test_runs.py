"""Run folders: exact resume, the record, listing, loading, deleting, names, metrics."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from tinytf import training
from tinytf.checkpoint import CheckpointError
from tinytf.config import ConfigError, TrainConfig
from tinytf.corpus import load_corpus
from tinytf.runs import (
    METRIC_COLUMNS,
    RunError,
    RunFolder,
    delete_run,
    list_runs,
    load_run,
    read_metrics,
    resume_run,
    runs_root,
    sanitize_name,
    start_run,
)
from tinytf.training import StepMetrics, TrainingError

# Dropout on, so the resume tests also prove the RNG streams are restored.
MODEL = {"block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.1}


def train_config(**changes) -> TrainConfig:
    settings = {
        "batch_size": 4,
        "max_steps": 12,
        "eval_interval": 4,
        "eval_batches": 2,
        "warmup_steps": 3,
    }
    return TrainConfig(**{**settings, **changes})


def start(root: Path, level: str = "char", **changes):
    return start_run(load_corpus("zen"), level, MODEL, train_config(**changes), root=root)


def losses(trainer, **kwargs) -> tuple[list[float], object]:
    events: list = []
    result = trainer.train(on_event=events.append, **kwargs)
    return [e.loss for e in events if isinstance(e, StepMetrics)], result


def weights(path: Path, kind: str = "last") -> dict[str, torch.Tensor]:
    return load_run(path, checkpoint=kind).model.state_dict()


# ---------------------------------------------------------------------------------------
# Resume


def test_stopped_then_resumed_equals_straight(tmp_path: Path):
    straight, _ = losses(start(tmp_path / "a"))

    trainer = start(tmp_path / "b")
    first, result = losses(trainer, should_stop=lambda: trainer.step >= 6)
    assert (result.status, len(first)) == ("stopped", 6)
    assert RunFolder(trainer.run.path).read_record()["status"] == "stopped"

    resumed = resume_run(trainer.run.path)
    assert resumed.step == 6
    second, result = losses(resumed)
    assert result.status == "finished"

    assert first + second == straight  # exact float equality, step by step
    a, b = list_runs(tmp_path / "a")[0].path, trainer.run.path
    for name, tensor in weights(a).items():
        assert torch.equal(weights(b)[name], tensor)
    rows_a = [r["_raw"][:4] for r in read_metrics(a)]  # step, train, val, lr
    rows_b = [r["_raw"][:4] for r in read_metrics(b)]
    assert rows_a == rows_b


def test_finished_then_extended_equals_straight_with_a_flat_schedule(tmp_path: Path):
    flat = {"warmup_steps": 0, "learning_rate": 2e-3, "min_lr": 2e-3}
    straight, _ = losses(start(tmp_path / "a", max_steps=10, **flat))

    trainer = start(tmp_path / "b", max_steps=6, **flat)
    first, result = losses(trainer)
    assert result.status == "finished"
    second, result = losses(resume_run(trainer.run.path, extra_steps=4))
    assert result.step == 10
    assert first + second == straight
    assert json.loads((trainer.run.path / "config.json").read_text())["train"]["max_steps"] == 10


def test_resume_drops_metric_rows_after_the_checkpoint(tmp_path: Path):
    trainer = start(tmp_path)
    losses(trainer, should_stop=lambda: trainer.step >= 5)
    run = RunFolder(trainer.run.path)
    run.append_metrics(step=6, train_loss=9.0, lr=1e-3)  # as if written after last.pt
    resume_run(run.path)
    assert [r["step"] for r in read_metrics(run.path)] == list(range(6))


def test_resume_refuses_a_finished_run_without_more_steps(tmp_path: Path):
    trainer = start(tmp_path, max_steps=4)
    losses(trainer)
    with pytest.raises(ConfigError, match=r"^max_steps: the run is already at step 4"):
        resume_run(trainer.run.path)
    with pytest.raises(ConfigError, match=r"^steps:"):
        resume_run(trainer.run.path, extra_steps=0)


# ---------------------------------------------------------------------------------------
# The record and metrics


def test_run_record_and_files(tmp_path: Path):
    trainer = start(tmp_path, max_steps=8)
    losses(trainer)
    folder = trainer.run.path
    assert folder.parent == tmp_path and folder.name.endswith("_zen-char")
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.pt", "config.json", "corpus.txt", "last.pt", "metrics.csv", "run.json",
        "tokenizer.json",
    ]  # fmt: skip
    record = json.loads((folder / "run.json").read_text())
    evals = [r for r in read_metrics(folder) if r["val_loss"] is not None]
    best = min(evals, key=lambda r: r["val_loss"])
    assert record["status"] == "finished" and record["error"] is None
    assert (record["name"], record["corpus"], record["level"]) == ("zen-char", "zen", "char")
    assert (record["last_step"], record["max_steps"], record["seed"]) == (8, 8, 1337)
    assert record["best_step"] == best["step"]
    assert record["best_val_loss"] == pytest.approx(best["val_loss"], rel=1e-6)
    assert record["last_val_loss"] == pytest.approx(evals[-1]["val_loss"], rel=1e-6)
    assert record["last_train_loss"] == pytest.approx(evals[-1]["train_loss"], rel=1e-6)
    assert record["device"].startswith("CPU") and record["n_params"] == trainer.n_params
    assert set(record["versions"]) == {"python", "torch", "tinytf"}
    assert record["created"] <= record["updated"]
    assert load_run(folder, "best").step == best["step"]


def test_metrics_rows_one_per_step_with_evals_marked(tmp_path: Path):
    trainer = start(tmp_path, max_steps=9)
    losses(trainer)
    rows = read_metrics(trainer.run.path)
    header = (trainer.run.path / "metrics.csv").read_text().splitlines()[0]
    assert header == ",".join(METRIC_COLUMNS)
    assert [r["step"] for r in rows] == list(range(10))
    assert [r["step"] for r in rows if r["val_loss"] is not None] == [0, 4, 8, 9]
    assert rows[0]["lr"] is None and rows[1]["lr"] > 0 and rows[1]["tokens_per_s"] > 0


def test_reader_ignores_a_partial_last_line(tmp_path: Path):
    trainer = start(tmp_path, max_steps=3)
    losses(trainer)
    with open(trainer.run.metrics_path, "a") as file:
        file.write("4,2.5,,0.00")  # a writer killed mid-line
    assert [r["step"] for r in read_metrics(trainer.run.path)] == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------
# Failures leave the right things behind


def test_bad_config_makes_no_folder(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"^n_head:"):
        start_run(load_corpus("zen"), "char", {**MODEL, "n_head": 3}, train_config(), root=tmp_path)
    with pytest.raises(ConfigError, match=r"^block_size:"):
        start_run(
            load_corpus("zen"), "word", MODEL | {"block_size": 64}, train_config(), root=tmp_path
        )
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_failure_before_any_checkpoint_removes_the_fresh_folder(tmp_path: Path, monkeypatch):
    trainer = start(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(training, "save_checkpoint", disk_full)
    with pytest.raises(TrainingError, match=r"after step 0: OSError: No space left"):
        trainer.train()
    assert list(tmp_path.iterdir()) == []


def test_failure_later_marks_failed_and_keeps_the_checkpoint(tmp_path: Path):
    trainer = start(tmp_path)

    def fail(event):
        if isinstance(event, StepMetrics) and event.step == 6:
            raise ValueError("disk full")

    with pytest.raises(TrainingError, match=r"disk full"):
        trainer.train(on_event=fail)
    record = RunFolder(trainer.run.path).read_record()
    assert record["status"] == "failed" and "disk full" in record["error"]
    assert load_run(trainer.run.path, "last").step == 4  # the last good checkpoint
    assert list_runs(tmp_path)[0].status == "failed"


# ---------------------------------------------------------------------------------------
# Listing, loading, deleting


def test_list_runs_flags_broken_folders(tmp_path: Path):
    good = start(tmp_path, max_steps=2)
    losses(good)
    (tmp_path / "20200101-000000_empty").mkdir()
    garbled = tmp_path / "20200101-000001_garbled"
    garbled.mkdir()
    (garbled / "run.json").write_text("{not json")
    (tmp_path / ".20200101-000002_hidden").mkdir()
    (tmp_path / "notes.txt").write_text("not a folder")

    infos = {info.path.name: info for info in list_runs(tmp_path)}
    assert set(infos) == {good.run.path.name, "20200101-000000_empty", "20200101-000001_garbled"}
    assert infos[good.run.path.name].status == "finished"
    assert infos["20200101-000000_empty"].status == "broken"
    assert "run.json: missing" in infos["20200101-000000_empty"].problem
    assert "unreadable" in infos["20200101-000001_garbled"].problem
    assert list_runs(tmp_path / "nowhere") == []


def test_a_running_record_whose_process_is_gone_lists_as_interrupted(tmp_path: Path):
    trainer = start(tmp_path, max_steps=2)
    losses(trainer)
    dead_pid = 2**22 + 12345  # above Linux's pid_max default
    trainer.run.update_record(status="running", pid=dead_pid)
    assert list_runs(tmp_path)[0].status == "interrupted"
    trainer.run.update_record(pid=os.getpid())
    assert list_runs(tmp_path)[0].status == "running"
    with pytest.raises(RunError, match=r"still training"):
        resume_run(trainer.run.path, extra_steps=2)


def test_load_run_refuses_a_checkpoint_of_another_vocabulary(tmp_path: Path):
    word = start(tmp_path / "w", level="word", max_steps=2)
    char = start(tmp_path / "c", max_steps=2)
    losses(word), losses(char)
    (char.run.path / "best.pt").write_bytes((word.run.path / "best.pt").read_bytes())
    with pytest.raises(CheckpointError, match=r"best\.pt: saved for another model.*vocab_size"):
        load_run(char.run.path, "best")


def test_load_run_reports_missing_files(tmp_path: Path):
    trainer = start(tmp_path, max_steps=2)
    losses(trainer)
    (trainer.run.path / "last.pt").unlink()
    with pytest.raises(CheckpointError, match=r"no such checkpoint"):
        load_run(trainer.run.path, "last")
    (trainer.run.path / "tokenizer.json").write_text("[]")
    with pytest.raises(RunError, match=r"tokenizer.json"):
        load_run(trainer.run.path)
    (trainer.run.path / "tokenizer.json").unlink()
    with pytest.raises(RunError) as missing:
        load_run(trainer.run.path)
    # Regression: the path was named twice ("…/tokenizer.json: …/tokenizer.json: no such").
    assert str(missing.value).count("tokenizer.json") == 1
    assert str(missing.value).endswith("no such tokenizer file")
    with pytest.raises(RunError, match=r"no such run folder"):
        load_run(tmp_path / "nope")


def test_loaded_model_matches_the_trained_one(tmp_path: Path):
    trainer = start(tmp_path, max_steps=4)
    losses(trainer)
    loaded = load_run(trainer.run.path, "last")
    assert not loaded.model.training and loaded.step == 4
    assert loaded.tokenizer == trainer.tokenizer
    idx = torch.tensor([trainer.train_ids[:8].tolist()])
    trainer.model.eval()
    assert torch.equal(loaded.model(idx).logits, trainer.model(idx).logits)


def test_delete_run_refuses_anything_not_directly_inside_the_root(tmp_path: Path):
    root = tmp_path / "runs"
    trainer = start(root, max_steps=2)
    losses(trainer)
    outside = tmp_path / "precious"
    outside.mkdir()
    nested = trainer.run.path / "sub"
    nested.mkdir()
    link = root / "20200101-000000_link"
    link.symlink_to(outside, target_is_directory=True)

    for bad in (outside, "../precious", root, nested, link, root / ".." / "precious"):
        with pytest.raises(RunError):
            delete_run(root, bad)
    assert outside.exists() and nested.exists()

    delete_run(root, trainer.run.path.name)
    assert not trainer.run.path.exists()
    with pytest.raises(RunError, match=r"no such run folder"):
        delete_run(root, trainer.run.path)


# ---------------------------------------------------------------------------------------
# Names and places


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc", "etc"),
        ("a/b\\c", "a-b-c"),
        ("x" * 500, "x" * 64),
        ("bell\x07and\nnewline\x00", "bell-and-newline"),
        (".hidden", "hidden"),
        ("..", "run"),
        ("", "run"),
        ("zen-word_v1.2", "zen-word_v1.2"),
        ("naïve café", "na-ve-caf"),
    ],
)
def test_sanitize_name(raw: str, expected: str):
    assert sanitize_name(raw) == expected


def test_hostile_names_stay_inside_the_root_and_never_collide(tmp_path: Path):
    paths = []
    for name in ("../../etc", "/abs/path", "../../etc"):
        trainer = start_run(
            load_corpus("zen"), "char", MODEL, train_config(), name=name, root=tmp_path
        )
        paths.append(trainer.run.path)
    assert all(p.parent == tmp_path for p in paths)
    assert len(set(paths)) == 3
    assert paths[2].name.endswith("_etc-2") or paths[2].name.endswith("_etc")


def test_runs_root_argument_then_environment_then_cwd(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TINYTF_RUNS", str(tmp_path / "env"))
    assert runs_root(tmp_path / "arg") == tmp_path / "arg"
    assert runs_root() == tmp_path / "env"
    monkeypatch.delenv("TINYTF_RUNS")
    monkeypatch.chdir(tmp_path)
    assert runs_root() == tmp_path / "runs"


def test_initial_eval_row_is_near_ln_vocab(tmp_path: Path):
    trainer = start(tmp_path, max_steps=1)
    losses(trainer)
    first = read_metrics(trainer.run.path)[0]
    assert first["step"] == 0
    assert abs(first["val_loss"] - math.log(trainer.tokenizer.vocab_size)) < 0.2
