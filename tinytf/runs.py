"""Run folders: everything one training run leaves on disk, and how to find it again.

A run lives in `<root>/<YYYYmmdd-HHMMSS>_<name>/`. The root is, in order: the `root`
argument, the TINYTF_RUNS environment variable, or `runs/` in the working directory.

    config.json     model and train configs, corpus name and source, tokenizer level
                    and fingerprint (sha256 of its level and vocabulary)
    tokenizer.json  the vocabulary
    corpus.txt      the training text itself, so a run resumes on exactly its data
    run.json        the record: status, best and last losses, device, versions, ...
    metrics.csv     one row per step (below)
    best.pt         checkpoint at the lowest validation loss
    last.pt         checkpoint at the latest evaluation (or stop)

metrics.csv has the columns step, train_loss, val_loss, lr, tokens_per_s, elapsed_s.
Plain steps carry that step's batch loss as train_loss and leave val_loss empty; steps
with an evaluation (step 0, every eval_interval, the last) carry both estimates instead
(mean over eval_batches fixed windows), so rows with a val_loss are the smooth curve.
Step 0 has empty lr and tokens_per_s. Rows are appended and flushed one by one; a reader
ignores a partial last line, and a resume drops rows after its checkpoint.

run.json statuses: created, running, finished, stopped, failed. `list_runs` also reports
"interrupted" (running, but its process on this host is gone) and "broken" (unreadable).

Every JSON file is written atomically (temporary file, then rename).

    trainer = start_run(load_corpus("zen"), "word", {"n_layer": 2}, TrainConfig())
    trainer.train(on_event=print)
    loaded = load_run(trainer.run.path, checkpoint="best")
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import platform
import re
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import tinytf
from tinytf.checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    load_weights,
)
from tinytf.config import ConfigError, ModelConfig, TrainConfig
from tinytf.corpus import Corpus
from tinytf.device import pick_device
from tinytf.distributed import SINGLE_PROCESS, DistContext
from tinytf.model import TinyGPT
from tinytf.tokenizer import Tokenizer, TokenizerError, build_tokenizer, load_tokenizer
from tinytf.training import Trainer

RUNS_ENV = "TINYTF_RUNS"
CONFIG_FORMAT = "tinytf-run"
METRIC_COLUMNS = ("step", "train_loss", "val_loss", "lr", "tokens_per_s", "elapsed_s")
CHECKPOINT_KINDS = ("best", "last")
MAX_NAME = 64
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_FLOAT_FORMATS = {"train_loss": ".8g", "val_loss": ".8g", "lr": ".6g", "tokens_per_s": ".1f"}


class RunError(RuntimeError):
    """A run folder that cannot be made, found, read or deleted; the message says which."""


# ---------------------------------------------------------------------------------------
# Names and places


def runs_root(root: Path | str | None = None) -> Path:
    """The folder runs live in: `root`, else $TINYTF_RUNS, else ./runs."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(RUNS_ENV) or Path.cwd() / "runs")


def sanitize_name(name: str) -> str:
    """A folder-safe run name: [A-Za-z0-9._-] only, at most 64 characters, no leading dot.

    Anything else (slashes, spaces, control characters) becomes "-", and runs of dots
    shrink to one, so no name can climb out of the runs folder or hide itself.
    """
    cleaned = _NAME_BAD_CHARS.sub("-", name)
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    cleaned = cleaned.lstrip(".-")[:MAX_NAME].rstrip(".-")
    return cleaned or "run"


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _is_live(record: Mapping[str, Any]) -> bool:
    """True when the record says running and its process on this host still exists."""
    if record.get("status") != "running":
        return False
    if record.get("host") != socket.gethostname():
        return True  # another machine's process cannot be checked from here
    pid = record.get("pid")
    return isinstance(pid, int) and _pid_alive(pid)


# ---------------------------------------------------------------------------------------
# One run folder


class RunFolder:
    """Paths and small atomic updates of one run folder (it must exist)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def record_path(self) -> Path:
        return self.path / "run.json"

    @property
    def tokenizer_path(self) -> Path:
        return self.path / "tokenizer.json"

    @property
    def corpus_path(self) -> Path:
        return self.path / "corpus.txt"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    def checkpoint_path(self, kind: str) -> Path:
        if kind not in CHECKPOINT_KINDS:
            raise RunError(f"checkpoint: must be one of {CHECKPOINT_KINDS}, got {kind!r}")
        return self.path / f"{kind}.pt"

    def read_json(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise RunError(f"{path}: missing") from error
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunError(f"{path}: unreadable ({error})") from error
        if not isinstance(data, dict):
            raise RunError(f"{path}: not a JSON object")
        return data

    def read_record(self) -> dict[str, Any]:
        return self.read_json(self.record_path)

    def read_config(self) -> dict[str, Any]:
        return self.read_json(self.config_path)

    def update_record(self, **fields: Any) -> dict[str, Any]:
        """Change some fields of run.json (and its `updated` time), atomically."""
        record = self.read_record()
        record.update(fields, updated=_now())
        atomic_write_json(self.record_path, record)
        return record

    def append_metrics(self, **row: float | int | None) -> None:
        """Append one metrics.csv row and flush it (a crash loses at most this line)."""
        cells = []
        for column in METRIC_COLUMNS:
            value = row.get(column)
            if value is None:
                cells.append("")
            elif column == "step":
                cells.append(str(int(value)))
            else:
                cells.append(format(float(value), _FLOAT_FORMATS.get(column, ".3f")))
        with open(self.metrics_path, "a", encoding="utf-8", newline="") as file:
            file.write(",".join(cells) + "\n")
            file.flush()

    def truncate_metrics(self, last_step: int) -> None:
        """Keep only rows up to `last_step` (a resume restarts after its checkpoint)."""
        kept = [row for row in read_metrics(self.path) if row["step"] <= last_step]
        out = io.StringIO()
        out.write(",".join(METRIC_COLUMNS) + "\n")
        for row in kept:
            out.write(",".join(row["_raw"]) + "\n")
        atomic_write_text(self.metrics_path, out.getvalue())

    def discard(self) -> None:
        """Remove the whole folder (only for a fresh run that saved nothing)."""
        shutil.rmtree(self.path, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Creating and starting runs


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "tinytf": getattr(tinytf, "__version__", "unknown"),
    }


def _make_folder(root: Path, name: str) -> Path:
    """mkdir `<stamp>_<name>`, adding -2, -3, ... when it exists; never outside root."""
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{dt.datetime.now():%Y%m%d-%H%M%S}_{name}"
    for attempt in range(1, 1000):
        folder = root / (stem if attempt == 1 else f"{stem}-{attempt}")
        if folder.resolve().parent != root.resolve():
            raise RunError(f"run name {name!r} would leave the runs folder {root}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise RunError(f"{root}: too many runs named {stem}")


def create_run(
    corpus: Corpus,
    tokenizer: Tokenizer,
    model_config: ModelConfig,
    train_config: TrainConfig,
    name: str | None = None,
    root: Path | str | None = None,
) -> RunFolder:
    """Make a run folder and write config.json, tokenizer.json, corpus.txt, run.json and
    the metrics.csv header. Check the configs first (see `start_run`); on a write error
    the new folder is removed again.
    """
    name = sanitize_name(name or f"{corpus.name}-{tokenizer.level}")
    folder = _make_folder(runs_root(root), name)
    run = RunFolder(folder)
    config = {
        "format": CONFIG_FORMAT,
        "version": 1,
        "model": dataclasses.asdict(model_config),
        "train": dataclasses.asdict(train_config),
        "corpus": {"name": corpus.name, "source": corpus.source, "chars": len(corpus.text)},
        "level": tokenizer.level,
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
    }
    now = _now()
    record = {
        "name": name,
        "status": "created",
        "error": None,
        "created": now,
        "updated": now,
        "corpus": corpus.name,
        "level": tokenizer.level,
        "best_step": None,
        "best_val_loss": None,
        "last_step": 0,
        "last_train_loss": None,
        "last_val_loss": None,
        "max_steps": train_config.max_steps,
        "seed": train_config.seed,
        "device": None,
        "n_params": None,
        "versions": _versions(),
    }
    try:
        atomic_write_json(run.config_path, config)
        tokenizer.save(run.tokenizer_path)
        atomic_write_text(run.corpus_path, corpus.text)
        atomic_write_text(run.metrics_path, ",".join(METRIC_COLUMNS) + "\n")
        atomic_write_json(run.record_path, record)
    except OSError as error:
        run.discard()
        raise RunError(f"{folder}: cannot write the run folder ({error})") from error
    return run


def start_run(
    corpus: Corpus,
    level: str,
    model: ModelConfig | Mapping[str, Any],
    train: TrainConfig,
    name: str | None = None,
    root: Path | str | None = None,
    tokenizer: Tokenizer | None = None,
    distributed: DistContext = SINGLE_PROCESS,
) -> Trainer:
    """Tokenize, build and check everything, then make the run folder; train with
    `.train()` on the returned Trainer. Under torchrun (`distributed`), only rank 0 makes
    the folder; the other ranks' trainers have no run.

    Nothing is written when the corpus, tokenizer or configs are wrong: those raise
    (ConfigError, TokenizerError) before the folder exists. Pass `tokenizer` when it is
    already built from `corpus.text` at `level`.
    """
    if tokenizer is None or tokenizer.level != level:
        tokenizer = build_tokenizer(level, corpus.text)
    ids = tokenizer.encode(corpus.text)
    trainer = Trainer(model, train, ids, tokenizer, distributed=distributed)
    if distributed.is_main:
        trainer.run = create_run(corpus, tokenizer, trainer.model_config, train, name, root)
    return trainer


# ---------------------------------------------------------------------------------------
# Listing


@dataclass(frozen=True)
class RunInfo:
    """One row of the runs table."""

    path: Path
    name: str
    status: str  # from run.json, or "interrupted" / "broken"
    problem: str | None = None  # why it is broken or failed
    created: str | None = None
    corpus: str | None = None
    level: str | None = None
    last_step: int | None = None
    max_steps: int | None = None
    best_val_loss: float | None = None
    best_step: int | None = None
    n_params: int | None = None
    record: dict[str, Any] = dataclasses.field(default_factory=dict)


def _run_info(folder: Path) -> RunInfo:
    run = RunFolder(folder)
    try:
        record = run.read_record()
        if not isinstance(record.get("status"), str):
            raise RunError(f"{run.record_path}: no status")
        if not run.config_path.is_file():
            raise RunError(f"{run.config_path}: missing")
    except RunError as error:
        return RunInfo(path=folder, name=folder.name, status="broken", problem=str(error))

    status = record["status"]
    problem = record.get("error")
    if status == "running" and not _is_live(record):
        status, problem = "interrupted", "its process ended without marking the run"
    return RunInfo(
        path=folder,
        name=str(record.get("name", folder.name)),
        status=status,
        problem=problem,
        created=record.get("created"),
        corpus=record.get("corpus"),
        level=record.get("level"),
        last_step=record.get("last_step"),
        max_steps=record.get("max_steps"),
        best_val_loss=record.get("best_val_loss"),
        best_step=record.get("best_step"),
        n_params=record.get("n_params"),
        record=record,
    )


def list_runs(root: Path | str | None = None) -> list[RunInfo]:
    """Every folder in the root, newest first; unreadable ones come back as "broken"."""
    root = runs_root(root)
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return [_run_info(folder) for folder in sorted(folders, key=lambda p: p.name, reverse=True)]


def resolve_run(run: Path | str, root: Path | str | None = None) -> Path:
    """A run folder from a path, or from a folder name inside the runs root."""
    path = Path(run)
    if path.is_dir():
        return path
    in_root = runs_root(root) / str(run)
    if Path(str(run)).name == str(run) and in_root.is_dir():
        return in_root
    raise RunError(f"{run}: no such run folder (looked in {runs_root(root)} too)")


# ---------------------------------------------------------------------------------------
# Metrics


def _parse_row(cells: list[str]) -> dict[str, Any] | None:
    if len(cells) != len(METRIC_COLUMNS):
        return None
    row: dict[str, Any] = {}
    try:
        row["step"] = int(cells[0])
        for column, cell in zip(METRIC_COLUMNS[1:], cells[1:], strict=True):
            row[column] = float(cell) if cell else None
    except ValueError:
        return None
    row["_raw"] = cells
    return row


def read_metrics(path: Path | str) -> list[dict[str, Any]]:
    """Rows of a run's metrics.csv as dicts (step: int, the rest: float or None).

    A partial last line (a writer caught mid-line) and malformed rows are skipped. Each
    row also has "_raw", its cells as written.
    """
    path = Path(path)
    file = path / "metrics.csv" if path.is_dir() else path
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise RunError(f"{file}: unreadable ({error})") from error
    lines = text.split("\n")
    complete = lines[:-1]  # the text after the last "\n" is partial (or empty)
    rows = []
    for cells in csv.reader(complete[1:]):
        row = _parse_row(cells)
        if row is not None:
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------
# Loading a trained run


@dataclass
class LoadedRun:
    """A trained model ready to sample from or look inside, in eval mode."""

    model: TinyGPT
    tokenizer: Tokenizer
    model_config: ModelConfig
    train_config: TrainConfig
    record: dict[str, Any]
    step: int  # optimiser steps behind the loaded weights
    path: Path
    checkpoint: str  # "best" or "last"


def _read_configs(run: RunFolder) -> tuple[ModelConfig, TrainConfig, dict[str, Any]]:
    config = run.read_config()
    if config.get("format") != CONFIG_FORMAT:
        raise RunError(f"{run.config_path}: not a tinytf run config")
    try:
        model_config = ModelConfig(**config["model"])
        train_config = TrainConfig(**config["train"])
    except (KeyError, TypeError, ConfigError) as error:
        raise RunError(f"{run.config_path}: bad config ({error})") from error
    return model_config, train_config, config


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """sha256 of the level and the vocabulary: tells apart two tokenizers of one size."""
    text = json.dumps([tokenizer.level, tokenizer.vocab], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_tokenizer(
    run: RunFolder, model_config: ModelConfig, config: Mapping[str, Any]
) -> Tokenizer:
    try:
        tokenizer = load_tokenizer(run.tokenizer_path)
    except TokenizerError as error:
        raise RunError(str(error)) from error  # it names the file already
    except OSError as error:
        raise RunError(f"{run.tokenizer_path}: {error}") from error
    if tokenizer.vocab_size != model_config.vocab_size:
        raise RunError(
            f"{run.tokenizer_path}: {tokenizer.vocab_size} tokens, but config.json says "
            f"vocab_size={model_config.vocab_size}"
        )
    # Runs made before the fingerprint was recorded are checked by level and size only.
    expected = config.get("tokenizer_sha256")
    found = tokenizer_fingerprint(tokenizer)
    if config.get("level", tokenizer.level) != tokenizer.level or expected not in (None, found):
        raise RunError(
            f"{run.tokenizer_path}: does not match the tokenizer this run was trained with "
            f"(a {tokenizer.level} vocabulary whose fingerprint differs from config.json's)"
        )
    return tokenizer


def _check_checkpoint(checkpoint: Checkpoint, model_config: ModelConfig) -> None:
    """The checkpoint must have been saved for this run's model config."""
    saved = checkpoint.extra.get("model_config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{checkpoint.path}: no model config inside")
    expected = dataclasses.asdict(model_config)
    differ = [key for key in expected if saved.get(key) != expected[key]]
    if differ:
        details = ", ".join(f"{k}={saved.get(k)!r} vs {expected[k]!r}" for k in differ)
        raise CheckpointError(
            f"{checkpoint.path}: saved for another model than config.json ({details})"
        )


def load_run(
    path: Path | str, checkpoint: str = "best", device: torch.device | str = "cpu"
) -> LoadedRun:
    """Load a run's model (from best.pt or last.pt), tokenizer, configs and record.

    Raises:
        RunError: missing or unreadable run files.
        CheckpointError: a damaged, unsafe or mismatched checkpoint (names the file).
    """
    run = RunFolder(path)
    if not run.path.is_dir():
        raise RunError(f"{path}: no such run folder")
    model_config, train_config, config = _read_configs(run)
    tokenizer = _read_tokenizer(run, model_config, config)
    record = run.read_record()

    if isinstance(device, str) and device == "auto":
        device = pick_device("auto").device
    ckpt = load_checkpoint(run.checkpoint_path(checkpoint), map_location="cpu")
    _check_checkpoint(ckpt, model_config)
    model = TinyGPT(model_config)
    load_weights(model, ckpt)
    model.to(device).eval()
    return LoadedRun(
        model=model,
        tokenizer=tokenizer,
        model_config=model_config,
        train_config=train_config,
        record=record,
        step=ckpt.step,
        path=run.path,
        checkpoint=checkpoint,
    )


# ---------------------------------------------------------------------------------------
# Resuming and deleting


def resume_run(
    run_dir: Path | str,
    *,
    extra_steps: int | None = None,
    max_steps: int | None = None,
    device: str | None = None,
) -> Trainer:
    """A Trainer that continues the run from its last.pt; train with `.train()`.

    Args:
        extra_steps: steps to add after the checkpoint's step; or
        max_steps: the new total; with neither, the run finishes its planned max_steps.
        device: "auto", "cpu", ... (default: the run's own setting).

    The learning-rate schedule is recomputed for the new max_steps, so extending a
    finished run restarts the cosine from part-way up. Rows of metrics.csv after the
    checkpoint are dropped. Same device, same steps: the losses equal an unbroken run.
    """
    run = RunFolder(run_dir)
    if not run.path.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    record = run.read_record()
    if _is_live(record):
        raise RunError(f"{run.path.name}: still training (pid {record.get('pid')})")
    model_config, train_config, config = _read_configs(run)
    tokenizer = _read_tokenizer(run, model_config, config)
    try:
        text = run.corpus_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RunError(f"{run.corpus_path}: cannot read the run's corpus ({error})") from error
    ckpt = load_checkpoint(run.checkpoint_path("last"), map_location="cpu")
    _check_checkpoint(ckpt, model_config)

    # 1. The new step budget.
    if extra_steps is not None and max_steps is not None:
        raise ConfigError("max_steps: give extra_steps or max_steps, not both")
    if extra_steps is not None:
        if not isinstance(extra_steps, int) or extra_steps < 1:
            raise ConfigError(f"steps: must be a positive whole number, got {extra_steps!r}")
        max_steps = ckpt.step + extra_steps
    max_steps = train_config.max_steps if max_steps is None else max_steps
    if max_steps <= ckpt.step:
        raise ConfigError(
            f"max_steps: the run is already at step {ckpt.step} of {max_steps}; "
            "give more steps to continue"
        )
    changes: dict[str, Any] = {"max_steps": max_steps}
    if device is not None:
        changes["device"] = device
    train_config = train_config.replace(**changes)

    # 2. Rebuild, restore, then point the trainer at the folder.
    trainer = Trainer(model_config, train_config, tokenizer.encode(text), tokenizer)
    trainer.restore(ckpt)
    config["train"] = dataclasses.asdict(train_config)
    atomic_write_json(run.config_path, config)
    run.truncate_metrics(ckpt.step)
    run.update_record(max_steps=max_steps)
    trainer.run = run
    return trainer


def delete_run(root: Path | str, run_dir: Path | str) -> None:
    """Delete one run folder, which must sit directly inside `root` (no links, no ..).

    Raises:
        RunError: the folder is outside the root, is the root, is a link, is missing, or
            is a run still training.
    """
    root_path = Path(root).resolve()
    target = Path(run_dir)
    if not target.is_absolute():
        target = Path(root) / target
    if target.is_symlink():
        raise RunError(f"{run_dir}: is a link; only real run folders are deleted")
    resolved = target.resolve()
    if resolved.parent != root_path or resolved.name.startswith("."):
        raise RunError(f"{run_dir}: not a run folder directly inside {root_path}; refusing")
    if not resolved.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    try:
        record = RunFolder(resolved).read_record()
    except RunError:
        record = {}  # a broken folder can still be deleted
    if _is_live(record):
        raise RunError(f"{resolved.name}: still training; stop it before deleting")
    shutil.rmtree(resolved)
