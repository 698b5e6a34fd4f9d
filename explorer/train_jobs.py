"""Training as a background job: tinytf's Trainer inside a `jobs.Job`. No Streamlit here.

    job = start_training(manager, owner, corpus, "char", {"n_layer": 2}, TrainConfig(), "zen")
    view = job.view()                              # status and the events so far
    curve = job_curve(job.payload, view.events)    # for figures.loss_figure
    progress = job_progress(job.payload, view, time.monotonic())

The trainer reports each step to `Job.post` from its own thread. At each evaluation the
adapter also copies the weights to the CPU (between two steps, so never half-updated):
that copy is the "live model" the analysis pages can look inside while training runs.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from explorer.figures import LossCurve
from explorer.jobs import Job, JobLimitError, JobManager
from tinytf.corpus import Corpus
from tinytf.model import TinyGPT
from tinytf.runs import read_metrics, resume_run, start_run
from tinytf.tokenizer import Tokenizer
from tinytf.training import EvalMetrics, StepMetrics, Trainer


@dataclass
class TrainingPayload:
    """What the Train page needs besides the job's events."""

    trainer: Trainer
    run_path: Path
    corpus: str
    level: str
    start_step: int  # 0 for a new run, the checkpoint's step for a resume
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics rows before it
    _snapshot: tuple[int, dict[str, torch.Tensor]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def vocab_size(self) -> int:
        return self.trainer.model_config.vocab_size

    @property
    def max_steps(self) -> int:
        return self.trainer.train_config.max_steps

    @property
    def tokenizer(self) -> Tokenizer:
        return self.trainer.tokenizer

    def take_snapshot(self, step: int) -> None:
        """Copy the weights to the CPU; called from the training thread between steps."""
        state = {
            k: v.detach().to("cpu", copy=True) for k, v in self.trainer.model.state_dict().items()
        }
        with self._lock:
            self._snapshot = (step, state)

    def live_model(self) -> tuple[TinyGPT, int] | None:
        """A fresh CPU model with the latest snapshot's weights, and its step; None before
        the first evaluation."""
        with self._lock:
            snapshot = self._snapshot
        if snapshot is None:
            return None
        step, state = snapshot
        model = TinyGPT(self.trainer.model_config)
        model.load_state_dict(state)
        return model.eval(), step


def _run_trainer(job: Job) -> str:
    payload: TrainingPayload = job.payload

    def on_event(event: object) -> None:
        if isinstance(event, EvalMetrics):
            payload.take_snapshot(event.step)
        job.post(event)

    result = payload.trainer.train(on_event=on_event, should_stop=job.stop_event)
    return result.status


def _launch(manager: JobManager, owner: str, payload: TrainingPayload, label: str) -> Job:
    try:
        return manager.start(str(payload.run_path), owner, _run_trainer, label, payload)
    except JobLimitError:
        if payload.start_step == 0:
            payload.trainer.run.discard()  # a new folder with nothing in it yet
        raise


def start_training(
    manager: JobManager,
    owner: str,
    corpus: Corpus,
    level: str,
    model_fields: Mapping[str, Any],
    train_config: Any,
    name: str | None = None,
    root: Path | str | None = None,
) -> Job:
    """Check everything, make the run folder, and start training in the background.

    Raises:
        JobLimitError: the server runs as many jobs as it allows (checked first).
        ConfigError, TokenizerError, RunError: as `tinytf.runs.start_run`.
    """
    if not manager.has_room():
        raise JobLimitError(
            f"{manager.running_count()} training jobs are running, the most this server "
            f"allows (TINYTF_MAX_JOBS={manager.max_jobs}); wait for one to end"
        )
    trainer = start_run(corpus, level, model_fields, train_config, name=name, root=root)
    payload = TrainingPayload(
        trainer=trainer, run_path=trainer.run.path, corpus=corpus.name, level=level, start_step=0
    )
    return _launch(manager, owner, payload, trainer.run.path.name)


def resume_training(manager: JobManager, owner: str, run_path: Path | str, extra_steps: int) -> Job:
    """Continue a stopped or finished run from its last.pt by `extra_steps` more steps
    (or, for a run stopped early, up to its planned end when extra_steps is 0).

    Raises:
        JobLimitError, RunError, CheckpointError, ConfigError.
    """
    if not manager.has_room():
        raise JobLimitError(
            f"{manager.running_count()} training jobs are running, the most this server "
            f"allows (TINYTF_MAX_JOBS={manager.max_jobs}); wait for one to end"
        )
    trainer = resume_run(run_path, extra_steps=extra_steps or None)
    record = trainer.run.read_record()
    payload = TrainingPayload(
        trainer=trainer,
        run_path=trainer.run.path,
        corpus=str(record.get("corpus", "")),
        level=trainer.tokenizer.level,
        start_step=trainer.step,
        history=read_metrics(trainer.run.path),
    )
    return _launch(manager, owner, payload, trainer.run.path.name)


# --- what the page draws ---------------------------------------------------------------------


def rows_curve(label: str, rows: Sequence[Mapping[str, Any]]) -> LossCurve:
    """A LossCurve from metrics.csv rows: rows with a val_loss are evaluations."""
    curve = LossCurve(label, [], [], [], [], [])
    for row in rows:
        if row.get("val_loss") is None:
            curve.steps.append(row["step"])
            curve.train_loss.append(row["train_loss"])
        else:
            curve.eval_steps.append(row["step"])
            curve.eval_train_loss.append(row["train_loss"])
            curve.val_loss.append(row["val_loss"])
    return curve


def job_curve(payload: TrainingPayload, events: Sequence[object], label: str = "") -> LossCurve:
    """The run's curve: rows on disk before this job (a resume), then the job's events."""
    curve = rows_curve(label or payload.run_path.name, payload.history)
    for event in events:
        if isinstance(event, StepMetrics):
            curve.steps.append(event.step)
            curve.train_loss.append(event.loss)
        elif isinstance(event, EvalMetrics):
            curve.eval_steps.append(event.step)
            curve.eval_train_loss.append(event.train_loss)
            curve.val_loss.append(event.val_loss)
    return curve


@dataclass(frozen=True)
class Progress:
    """The numbers above the live chart."""

    step: int
    max_steps: int
    tokens_per_s: float | None
    mfu: float | None  # model FLOPs utilisation, where the device's peak is known
    lr: float | None
    seconds_left: float | None
    last_loss: float | None
    best_val_loss: float | None
    best_step: int | None
    sample: str | None  # the latest evaluation's sample
    sample_step: int | None

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.max_steps) if self.max_steps else 0.0


def job_progress(
    payload: TrainingPayload, events: Sequence[object], started_at: float, now: float
) -> Progress:
    """Step, speed, learning rate and time left from a job's events.

    Time left extrapolates this job's own pace (steps since it started over the seconds
    since it started), so a resumed run's earlier session does not skew it.
    """
    last_step = next((e for e in reversed(events) if isinstance(e, StepMetrics)), None)
    last_eval = next((e for e in reversed(events) if isinstance(e, EvalMetrics)), None)
    step = last_step.step if last_step else payload.start_step
    done = step - payload.start_step
    seconds_left = None
    if done > 0 and now > started_at:
        seconds_left = (payload.max_steps - step) * (now - started_at) / done
    return Progress(
        step=step,
        max_steps=payload.max_steps,
        tokens_per_s=last_step.tokens_per_s if last_step else None,
        mfu=last_step.mfu if last_step else None,
        lr=last_step.lr if last_step else None,
        seconds_left=seconds_left,
        last_loss=last_step.loss if last_step else None,
        best_val_loss=last_eval.best_val_loss if last_eval else None,
        best_step=last_eval.best_step if last_eval else None,
        sample=last_eval.sample_text if last_eval else None,
        sample_step=last_eval.step if last_eval else None,
    )
