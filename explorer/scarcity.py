"""The scarcity lab's logic: one configuration trained on less and less data. No Streamlit.

A lab is a group of ordinary run folders, one per fraction of the training split (a
prefix: 1% is inside 5% is inside 25%), all scored on the same validation split. The runs
train one after another inside one background job, so the lab takes one of the server's
job slots whatever the number of fractions. Each run's run.json carries the group's name
and its fraction, so the group can be found again from the folders alone.

After each run finishes, the five samplers of the Samplers page (default knobs, seed 0)
write a sample from its last.pt, and the share of the sample copied from the run's own
training text is stored beside it in memorization.json.

    job = start_scarcity(manager, owner, corpus, "char", model_fields, train_config)
    groups = list_groups()                         # group name -> runs, smallest fraction first
    table = scarcity_table([fraction_row(run) for run in groups[name]])
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from explorer.figures import LossCurve
from explorer.figures_scarcity import fraction_label
from explorer.jobs import Job, JobLimitError, JobManager
from explorer.sampler_view import LABELS, Knobs, column_settings
from explorer.train_jobs import rows_curve
from tinytf.checkpoint import atomic_write_json
from tinytf.config import ConfigError, TrainConfig
from tinytf.corpus import Corpus
from tinytf.data import check_fits, split_sizes
from tinytf.memorization import MemorizationResult, default_n, memorization_rate, training_index
from tinytf.runs import (
    RunError,
    RunFolder,
    RunInfo,
    list_runs,
    load_run,
    read_metrics,
    sanitize_name,
    start_run,
)
from tinytf.sampling import SAMPLERS, generate
from tinytf.tokenizer import Tokenizer, build_tokenizer

FRACTIONS = (0.01, 0.05, 0.25, 1.0)
FRACTION_CHOICES = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
GROUP_FIELD = "scarcity_group"
MEMO_FILE = "memorization.json"
MEMO_TOKENS = {"char": 300, "word": 80}  # generated per sampler for the memorisation rate
MEMO_SEED = 0


class ScarcityError(RuntimeError):
    """A lab that cannot be started or read; the message is meant for the user."""


# --- starting a lab ------------------------------------------------------------------------


def check_fractions(
    n_tokens: int, block_size: int, train: TrainConfig, fractions: Sequence[float]
) -> None:
    """Raise ConfigError, naming the fraction, unless every fraction holds a window."""
    if not fractions:
        raise ConfigError("fractions: pick at least one fraction of the data")
    for fraction in fractions:
        try:
            check_fits(n_tokens, block_size, train.val_fraction, fraction)
        except ConfigError as error:
            raise ConfigError(f"{fraction_label(fraction)} of the data: {error}") from error


@dataclass
class ScarcityPayload:
    """What the page needs besides the job: the group, and which run trains now."""

    group: str
    fractions: tuple[float, ...]
    root: Path | None
    run_paths: dict[float, Path] = field(default_factory=dict)  # filled as runs start
    current: float | None = None


def _group_name(name: str) -> str:
    return f"{dt.datetime.now():%Y%m%d-%H%M%S}_{sanitize_name(name)}"


def start_scarcity(
    manager: JobManager,
    owner: str,
    corpus: Corpus,
    level: str,
    model_fields: Mapping[str, Any],
    train_config: TrainConfig,
    fractions: Sequence[float] = FRACTIONS,
    name: str | None = None,
    root: Path | str | None = None,
) -> Job:
    """Check every fraction, then train them one after another in one background job.

    Raises:
        JobLimitError: the server already runs as many jobs as it allows.
        ConfigError, TokenizerError: a fraction too small for the context (named), or
            another bad setting; nothing is written then.
    """
    if not manager.has_room():
        raise JobLimitError(
            f"{manager.running_count()} training jobs are running, the most this server "
            f"allows (TINYTF_MAX_JOBS={manager.max_jobs}); wait for one to end"
        )
    fractions = tuple(sorted(set(fractions)))
    tokenizer = build_tokenizer(level, corpus.text)
    n_tokens = len(tokenizer.split(corpus.text))
    check_fractions(n_tokens, int(model_fields["block_size"]), train_config, fractions)

    base = name or f"{corpus.name}-{level}-scarcity"
    payload = ScarcityPayload(
        group=_group_name(base), fractions=fractions, root=None if root is None else Path(root)
    )

    def target(job: Job) -> str | None:
        for fraction in fractions:
            if job.stop_requested:
                return "stopped"
            payload.current = fraction
            train = train_config.replace(train_fraction=fraction)
            run_name = f"{base}-{fraction_label(fraction).replace('%', 'pct')}"
            trainer = start_run(
                corpus, level, model_fields, train, name=run_name, root=root, tokenizer=tokenizer
            )
            trainer.run.update_record(
                **{GROUP_FIELD: payload.group},
                scarcity_fractions=list(fractions),
                train_fraction=fraction,
                train_tokens=int(trainer.train_ids.numel()),
            )
            payload.run_paths[fraction] = trainer.run.path
            result = trainer.train(on_event=job.post, should_stop=job.stop_event)
            if result.status == "stopped":
                return "stopped"
            sampler_memorization(trainer.run.path)
        payload.current = None
        return None

    return manager.start(
        f"scarcity:{payload.group}", owner, target, label=payload.group, payload=payload
    )


# --- reading a lab back --------------------------------------------------------------------


def run_fraction(run: RunInfo) -> float:
    """The run's training fraction, from run.json (or its config, for older runs)."""
    value = run.record.get("train_fraction")
    if value is None:
        try:
            value = RunFolder(run.path).read_config()["train"].get("train_fraction", 1.0)
        except (RunError, KeyError, AttributeError):
            value = 1.0
    return float(value)


def list_groups(root: Path | str | None = None) -> dict[str, list[RunInfo]]:
    """Group name -> its runs, smallest fraction first; newest group first."""
    groups: dict[str, list[RunInfo]] = {}
    for run in list_runs(root):
        group = run.record.get(GROUP_FIELD)
        if isinstance(group, str):
            groups.setdefault(group, []).append(run)
    ordered = sorted(groups.items(), key=lambda item: item[0], reverse=True)
    return {group: sorted(runs, key=run_fraction) for group, runs in ordered}


def group_curves(runs: Sequence[RunInfo]) -> list[tuple[float, LossCurve]]:
    """(fraction, evaluation curve) of each run in the group, read from metrics.csv."""
    curves = []
    for run in runs:
        try:
            rows = read_metrics(run.path)
        except RunError:
            rows = []
        curves.append((run_fraction(run), rows_curve(run.name, rows)))
    return curves


@dataclass(frozen=True)
class FractionRow:
    """One line of the lab's table."""

    fraction: float
    run: str  # folder name
    status: str
    train_tokens: int | None
    step: int | None
    best_val: float | None
    best_step: int | None
    final_train: float | None
    final_val: float | None
    memorization: dict[str, dict[str, Any]]  # sampler -> stored MemorizationResult fields

    @property
    def gap(self) -> float | None:
        """Final val minus final train: how much worse on text it never saw."""
        if self.final_train is None or self.final_val is None:
            return None
        return self.final_val - self.final_train


def fraction_row(run: RunInfo) -> FractionRow:
    record = run.record
    memo = read_memorization(run.path)
    return FractionRow(
        fraction=run_fraction(run),
        run=run.path.name,
        status=run.status,
        train_tokens=record.get("train_tokens"),
        step=record.get("last_step"),
        best_val=record.get("best_val_loss"),
        best_step=record.get("best_step"),
        final_train=record.get("last_train_loss"),
        final_val=record.get("last_val_loss"),
        memorization={} if memo is None else memo["samplers"],
    )


def scarcity_table(rows: Sequence[FractionRow]) -> pd.DataFrame:
    """One row per fraction: data size, losses, gap, and per sampler the memorised share
    (percent of its 8-character or 4-word pieces found in its training text) and the
    longest verbatim span in tokens."""
    records = []
    for row in rows:
        record: dict[str, Any] = {
            "data": fraction_label(row.fraction),
            "train tokens": row.train_tokens,
            "steps": row.step,
            "best val": row.best_val,
            "at step": row.best_step,
            "final train": row.final_train,
            "final val": row.final_val,
            "gap (val − train)": row.gap,
        }
        for kind in SAMPLERS:
            memo = row.memorization.get(kind, {})
            rate = memo.get("rate")
            record[f"copied · {LABELS[kind]}"] = None if rate is None else 100 * rate
            record[f"span · {LABELS[kind]}"] = memo.get("longest_span")
        record["status"] = row.status
        record["folder"] = row.run
        records.append(record)
    return pd.DataFrame(records)


# --- memorisation of a run's samples -------------------------------------------------------


def training_tokens(run_dir: Path | str) -> list[str]:
    """The token strings the run trained on: its corpus's training split, cut to its
    train_fraction exactly as the Trainer cuts the ids."""
    run = RunFolder(run_dir)
    config = run.read_config()
    try:
        text = run.corpus_path.read_text(encoding="utf-8")
        tokenizer = build_tokenizer(config["level"], text)
        train = config["train"]
    except (OSError, UnicodeDecodeError, KeyError) as error:
        raise RunError(f"{run.path}: cannot read its training text ({error})") from error
    tokens = tokenizer.split(text)
    n_train, _ = split_sizes(len(tokens), float(train.get("val_fraction", 0.1)))
    n_keep = int(n_train * float(train.get("train_fraction", 1.0)))
    return tokens[:n_keep]


def read_memorization(run_dir: Path | str) -> dict[str, Any] | None:
    """memorization.json of a run, or None when there is none (or it is unreadable)."""
    path = Path(run_dir) / MEMO_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("samplers"), dict) else None


def sampler_memorization(run_dir: Path | str, checkpoint: str = "last") -> dict[str, Any]:
    """Sample with each of the five samplers (default knobs, seed 0) from the run's
    checkpoint, measure how much each sample copies its training text, and store it.

    The prompt is the first token of the training text, as in the evaluations' samples.
    Returns the stored dict; a stored result for the same checkpoint step is reused.

    Raises:
        RunError, CheckpointError: the run or its checkpoint cannot be loaded.
    """
    loaded = load_run(run_dir, checkpoint=checkpoint, device="cpu")
    stored = read_memorization(run_dir)
    if stored and stored.get("step") == loaded.step and stored.get("checkpoint") == checkpoint:
        return stored

    tokens = training_tokens(run_dir)
    index = training_index(tokens)
    level = loaded.tokenizer.level
    n = default_n(level)
    prompt = loaded.tokenizer.encode(tokens[0])[:1]
    samplers = {}
    for kind, settings in column_settings(Knobs()).items():
        generation = generate(
            loaded.model, prompt, MEMO_TOKENS.get(level, 100), settings, seed=MEMO_SEED
        )
        generated = loaded.tokenizer.token_strings(generation.new_ids)
        result = memorization_rate(generated, index, n, join=loaded.tokenizer.join)
        samplers[kind] = {
            **_result_dict(result),
            "text": loaded.tokenizer.decode(generation.ids),
            "new_ids": generation.new_ids,
        }
    data = {
        "checkpoint": checkpoint,
        "step": loaded.step,
        "seed": MEMO_SEED,
        "n": n,
        "prompt_ids": prompt,
        "samplers": samplers,
    }
    atomic_write_json(Path(run_dir) / MEMO_FILE, data)
    return data


def _result_dict(result: MemorizationResult) -> dict[str, Any]:
    return {
        "rate": result.rate,
        "n_grams": result.n_grams,
        "copied": result.copied,
        "n": result.n,
        "longest_span": result.longest_span,
        "longest_span_text": result.longest_span_text,
    }


def generation_memorization(
    run_dir: Path | str, new_ids: Sequence[int], tokenizer: Tokenizer
) -> MemorizationResult:
    """How much of a generation (its new tokens) copies the run's training text."""
    index = training_index(training_tokens(run_dir))
    generated = tokenizer.token_strings(new_ids)
    return memorization_rate(generated, index, default_n(tokenizer.level), join=tokenizer.join)


def describe_memorization(result: MemorizationResult) -> str:
    """'copied 42% of 8-grams · longest verbatim 23 tokens' for a caption."""
    if result.rate is None:
        share = f"too short for {result.n}-grams"
    else:
        share = f"copied {result.rate:.0%} of its {result.n}-grams"
    return f"{share} · longest verbatim run {result.longest_span} tokens"
