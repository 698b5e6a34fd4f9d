"""The training loop: AdamW, warmup then cosine decay, periodic evaluation, checkpoints.

The loop knows nothing of any UI. It reports each step to a callback as a small record
(`StepMetrics`, and `EvalMetrics` at each evaluation); the CLI prints them, the app draws
them. It can be stopped between steps (`should_stop`), and everything random in it comes
from seeded streams that are saved in checkpoints, so a stopped-and-resumed run computes
exactly the losses of one that ran straight through (on the same device).

    trainer = Trainer({"n_layer": 2, "n_embd": 64}, TrainConfig(max_steps=200), ids, tokenizer)
    result = trainer.train(on_event=print, should_stop=stop_event)

With a run folder (see `tinytf.runs`) the trainer also writes metrics.csv, run.json and the
best.pt / last.pt checkpoints.

Choices worth knowing:
- Weight decay applies to the matrices of the linear layers (LM head included), not to
  biases, LayerNorm gains or the embedding tables: decaying an embedding pulls rare tokens'
  vectors to zero, and decaying a gain or bias only fights the normalisation.
- AdamW betas are (0.9, 0.99): with batches of a few hundred tokens the gradient is noisy,
  and a longer second-moment memory than GPT-2's 0.95 keeps the step sizes steady.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from tinytf.checkpoint import (
    Checkpoint,
    capture_rng,
    load_weights,
    restore_rng,
    save_checkpoint,
)
from tinytf.config import ConfigError, ModelConfig, TrainConfig
from tinytf.data import check_fits, get_batch, split_ids, take_fraction
from tinytf.device import (
    GLOBAL_RNG_LOCK,
    autocast,
    describe_device,
    fused_adamw_supported,
    peak_flops,
    pick_device,
    preserved_rng,
)
from tinytf.distributed import SINGLE_PROCESS, DistContext, any_rank, wrap
from tinytf.model import TinyGPT
from tinytf.sampling import SamplerSettings, generate
from tinytf.snapshots import SnapshotError, probe_and_passage, save_snapshot, take_snapshot
from tinytf.tokenizer import Tokenizer

if TYPE_CHECKING:
    from tinytf.runs import RunFolder

log = logging.getLogger(__name__)

BETAS = (0.9, 0.99)
EVAL_SEED_OFFSET = 1  # the eval windows' generator: seed + 1, the same windows every time
SAMPLE_SEED = 0  # the eval sample's seed, the same at every eval so samples compare
SAMPLE_TOKENS = {"char": 100, "word": 40}  # about 100 characters, or 40 words
SAMPLE_SETTINGS = SamplerSettings(kind="temperature", temperature=0.8)


class TrainingError(RuntimeError):
    """Training stopped by an error; the message says at which step and why."""


@dataclass(frozen=True)
class StepMetrics:
    """One optimiser step."""

    step: int  # steps done, 1..max_steps
    max_steps: int
    loss: float  # this step's batch loss
    lr: float  # learning rate used by this step
    tokens_per_s: float  # training throughput since the last evaluation
    elapsed_s: float  # wall time of the run so far (resumed runs continue the count)
    mfu: float | None  # rough model FLOPs utilisation in [0, 1]; None when the peak is unknown


@dataclass(frozen=True)
class EvalMetrics:
    """One evaluation: loss estimates on fixed windows of each split, and a sample."""

    step: int
    train_loss: float  # mean loss over eval_batches train batches, in eval mode
    val_loss: float  # the same on the validation split
    sample_text: str  # prompt + a short sample (temperature 0.8, fixed seed)
    best_val_loss: float  # lowest val_loss so far, this one included
    best_step: int  # the step that reached it


Event = StepMetrics | EvalMetrics


@dataclass(frozen=True)
class TrainResult:
    """How a call to `Trainer.train` ended."""

    status: str  # "finished" or "stopped"
    step: int
    best_val_loss: float | None
    best_step: int | None
    last_train_loss: float | None  # the latest evaluation's estimates
    last_val_loss: float | None
    run_dir: Path | None


def lr_at(update: int, config: TrainConfig) -> float:
    """Learning rate of optimiser update number `update` (0-based, so step = update + 1).

    Linear warmup: update u < warmup_steps gets peak * (u + 1) / warmup_steps, reaching the
    peak at u = warmup_steps - 1. Then a half cosine from the peak down to `final_lr`,
    which the last update (u = max_steps - 1) gets exactly.
    """
    peak, final = config.learning_rate, config.final_lr
    if update < config.warmup_steps:
        return peak * (update + 1) / config.warmup_steps
    decay_span = config.max_steps - 1 - config.warmup_steps
    if decay_span <= 0:
        return peak
    progress = min(1.0, (update - config.warmup_steps) / decay_span)
    return final + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - final)


def flops_per_token(config: ModelConfig, n_params: int) -> float:
    """Training FLOPs per token: 6 per parameter (forward 2, backward 4) plus attention.

    The attention scores and the weighted sum are matmuls without parameters: 2 of them,
    each 2 * T * C multiply-adds per token and layer forward, x3 for backward, giving
    12 * n_layer * C * T (Kaplan et al. 2020, table 1; the PaLM paper's appendix B).
    """
    return 6 * n_params + 12 * config.n_layer * config.n_embd * config.block_size


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: linear layers' weight matrices decayed, everything else not."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, nn.Linear) and name == "weight":
                decay.append(param)
            else:
                no_decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _as_stop_check(should_stop: Callable[[], bool] | threading.Event | None) -> Callable[[], bool]:
    if should_stop is None:
        return lambda: False
    if isinstance(should_stop, threading.Event):
        return should_stop.is_set
    return should_stop


def _config_dict(config: object) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _describe(error: BaseException) -> str:
    """ "KindOfError: first line of its message", for one-line reports."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


class Trainer:
    """Owns a model, its optimiser and data, and runs (or resumes) its training.

    Args:
        model: a full ModelConfig (its vocab_size must match the tokenizer), or a mapping
            of ModelConfig fields without vocab_size, which the tokenizer supplies.
        train: the TrainConfig.
        ids: the whole corpus as token ids (1-D); split here into train and val.
        tokenizer: the tokenizer that made `ids` (for the eval samples and the vocabulary).
        run: a run folder to write metrics, record and checkpoints to, or None.
        distributed: this process's place among DDP processes (`tinytf.distributed`);
            under torchrun only rank 0 should be given a run.

    Raises:
        ConfigError: a config that cannot work, or a corpus too short for the context and
            the split; the message names the field.
    """

    def __init__(
        self,
        model: ModelConfig | Mapping[str, Any],
        train: TrainConfig,
        ids: Tensor | Sequence[int],
        tokenizer: Tokenizer,
        run: RunFolder | None = None,
        distributed: DistContext = SINGLE_PROCESS,
    ) -> None:
        self.model_config = self._model_config(model, tokenizer)
        self.train_config = train
        self.tokenizer = tokenizer
        self.run = run

        # 1. Data: check the splits fit the context before anything is built.
        ids = torch.as_tensor(ids, dtype=torch.long).flatten()
        block = self.model_config.block_size
        check_fits(ids.numel(), block, train.val_fraction, train.train_fraction)
        train_ids, self.val_ids = split_ids(ids, train.val_fraction)
        self.train_ids = take_fraction(train_ids, train.train_fraction, block)

        # 2. Device, then every random stream from the seed.
        choice = pick_device(train.device)
        self.device, self.device_warning = choice.device, choice.warning
        # Under DDP the weights start equal on every rank but each draws its own batches.
        self.distributed = distributed
        self.generator = torch.Generator().manual_seed(distributed.batch_seed(train.seed))

        # 3. Model and optimiser. The weights come from torch's global generator, which
        #    other threads (the app's other jobs) also seed: the lock keeps it ours meanwhile.
        with GLOBAL_RNG_LOCK:
            torch.manual_seed(train.seed)
            self.model = TinyGPT(self.model_config).to(self.device).train()
        self.n_params = self.model.num_parameters()
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, train.weight_decay),
            lr=lr_at(0, train),
            betas=BETAS,
            fused=fused_adamw_supported(self.device) or None,
        )
        self.compile_warning: str | None = None
        # Under DDP the throughput counts every rank's tokens, so the peak is every rank's.
        peak = peak_flops(self.device)
        self._peak = None if peak is None else peak * distributed.world_size
        self._flops_per_token = flops_per_token(self.model_config, self.n_params)

        # 4. Progress, carried across a resume through the checkpoint.
        self.step = 0
        self.best_val_loss: float | None = None
        self.best_step: int | None = None
        self.last_eval: EvalMetrics | None = None
        self._elapsed_before = 0.0
        self._saved_step: int | None = None  # step of the latest last.pt from this trainer
        self._evaluated_step: int | None = None  # step of the latest evaluation

        # 5. Timing of the current call to train().
        self._clock = perf_counter()
        self._window_tokens, self._window_s = 0, 0.0  # training since the last eval
        self._tokens_per_s: float | None = None

    @staticmethod
    def _model_config(model: ModelConfig | Mapping[str, Any], tokenizer: Tokenizer) -> ModelConfig:
        if isinstance(model, ModelConfig):
            if model.vocab_size != tokenizer.vocab_size:
                raise ConfigError(
                    f"vocab_size: the model config says {model.vocab_size}, "
                    f"the tokenizer has {tokenizer.vocab_size}"
                )
            return model
        fields = dict(model)
        fields.pop("vocab_size", None)
        try:
            return ModelConfig(vocab_size=tokenizer.vocab_size, **fields)
        except TypeError as error:
            raise ConfigError(f"model: {error}") from error

    # -----------------------------------------------------------------------------------
    # Public pieces

    def device_description(self) -> str:
        return describe_device(self.device)

    def _batch(self, ids: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        config = self.train_config
        block = self.model_config.block_size
        return get_batch(ids, config.batch_size, block, generator, self.device)

    @torch.no_grad()
    def estimate_loss(self) -> dict[str, float]:
        """Mean loss over eval_batches fixed windows of each split, in eval mode.

        The windows come from a generator seeded afresh each time, so every evaluation
        of a run scores the same windows and the curves move only with the model.
        """
        n_batches = self.train_config.eval_batches
        generator = torch.Generator().manual_seed(self.train_config.seed + EVAL_SEED_OFFSET)
        losses = {}
        self.model.eval()
        try:
            with preserved_rng(self.device):
                for split, ids in (("train", self.train_ids), ("val", self.val_ids)):
                    total = 0.0
                    for _ in range(n_batches):
                        x, y = self._batch(ids, generator)
                        with autocast(self.device):
                            total += self.model(x, y).loss.item()
                    losses[split] = total / n_batches
        finally:
            self.model.train()
        return losses

    def sample_text(self) -> str:
        """The first training token, continued by a short sample with a fixed seed."""
        prompt = self.train_ids[:1].tolist()
        n_new = SAMPLE_TOKENS.get(self.tokenizer.level, 60)
        self.model.eval()
        try:
            with preserved_rng(self.device):
                generation = generate(self.model, prompt, n_new, SAMPLE_SETTINGS, seed=SAMPLE_SEED)
        finally:
            self.model.train()
        return self.tokenizer.decode(prompt + list(generation.new_ids))

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from a checkpoint: weights, optimiser, step, best so far, RNG streams."""
        load_weights(self.model, checkpoint)
        if checkpoint.optimizer_state is not None:
            self.optimizer.load_state_dict(checkpoint.optimizer_state)
        extra = checkpoint.extra
        self.step = checkpoint.step
        self.best_val_loss = extra.get("best_val_loss")
        self.best_step = extra.get("best_step")
        self._elapsed_before = float(extra.get("elapsed_s", 0.0))
        self._saved_step = self._evaluated_step = checkpoint.step
        # Last: building the model above drew from torch's RNG.
        with GLOBAL_RNG_LOCK:
            restore_rng(checkpoint.rng_state, self.generator, self.device)

    # -----------------------------------------------------------------------------------
    # The loop

    def train(
        self,
        on_event: Callable[[Event], None] | None = None,
        should_stop: Callable[[], bool] | threading.Event | None = None,
    ) -> TrainResult:
        """Train up to max_steps, reporting to `on_event`; stop early when asked.

        Returns how it ended ("finished" or "stopped"). A stop saves last.pt first.

        Raises:
            TrainingError: anything failing inside the loop. The run is marked "failed"
                with the reason, and its last good checkpoint is kept.
        """
        emit = on_event or (lambda event: None)
        stop_requested = _as_stop_check(should_stop)
        forward = self._compiled_or_eager()
        self._mark_running()
        self._clock = perf_counter()
        try:
            return self._loop(emit, stop_requested, forward)
        except KeyboardInterrupt:
            # A second Ctrl-C can land mid-step, so the half-done state is not saved.
            self._end_abruptly("stopped", "interrupted; resumes from the last checkpoint")
            raise
        except Exception as error:
            reason = str(error) if isinstance(error, TrainingError) else _describe(error)
            self._end_abruptly("failed", reason)
            raise TrainingError(f"training failed after step {self.step}: {reason}") from error
        finally:
            self._elapsed_before = self._elapsed()  # a later call continues the count
            self._clock = perf_counter()

    def _loop(
        self,
        emit: Callable[[Event], None],
        stop_requested: Callable[[], bool],
        forward: nn.Module,
    ) -> TrainResult:
        if self.step == 0 and self._evaluated_step != 0:
            self._evaluate(emit)  # the starting point of the curves, near ln(V)
        while self.step < self.train_config.max_steps:
            if any_rank(stop_requested(), self.distributed, self.device):
                return self._finish("stopped")
            metrics = self._train_step(forward)
            emit(metrics)
            if self._eval_due():
                self._evaluate(emit)
            else:
                self._log_row(metrics.loss, None, metrics.lr, metrics.tokens_per_s)
        return self._finish("finished")

    def _eval_due(self) -> bool:
        return (
            self.step % self.train_config.eval_interval == 0
            or self.step == self.train_config.max_steps
        )

    def _elapsed(self) -> float:
        return self._elapsed_before + perf_counter() - self._clock

    def _train_step(self, forward: nn.Module) -> StepMetrics:
        config = self.train_config
        lr = lr_at(self.step, config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        started = perf_counter()

        # 1. A batch, forward (bf16 autocast on CUDA) and backward.
        x, y = self._batch(self.train_ids, self.generator)
        with autocast(self.device):
            loss = forward(x, y).loss
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise TrainingError(
                f"the loss became {loss_value} (try a lower learning rate than "
                f"{config.learning_rate:g})"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()

        # 2. Clip the gradient's global norm, then update.
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.step += 1

        # 3. Throughput over the steps since the last evaluation.
        self._window_tokens += x.numel() * self.distributed.world_size
        self._window_s += perf_counter() - started
        tokens_per_s = self._window_tokens / max(self._window_s, 1e-9)
        self._tokens_per_s = tokens_per_s
        mfu = None if self._peak is None else self._flops_per_token * tokens_per_s / self._peak
        return StepMetrics(
            step=self.step,
            max_steps=config.max_steps,
            loss=loss_value,
            lr=lr,
            tokens_per_s=tokens_per_s,
            elapsed_s=self._elapsed(),
            mfu=mfu,
        )

    def _evaluate(self, emit: Callable[[Event], None]) -> EvalMetrics:
        losses = self.estimate_loss()
        improved = self.best_val_loss is None or losses["val"] < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_step = losses["val"], self.step
        metrics = EvalMetrics(
            step=self.step,
            train_loss=losses["train"],
            val_loss=losses["val"],
            sample_text=self.sample_text(),
            best_val_loss=self.best_val_loss,
            best_step=self.best_step,
        )
        self.last_eval = metrics
        self._evaluated_step = self.step
        self._window_tokens, self._window_s = 0, 0.0

        # Step 0 has had no update, so no learning rate and no throughput.
        lr = None if self.step == 0 else lr_at(self.step - 1, self.train_config)
        self._log_row(losses["train"], losses["val"], lr, self._tokens_per_s)
        if improved:
            self._save("best")
        self._save("last")
        self._snapshot()
        self._record(
            last_step=self.step,
            last_train_loss=losses["train"],
            last_val_loss=losses["val"],
            best_step=self.best_step,
            best_val_loss=self.best_val_loss,
        )
        emit(metrics)
        return metrics

    # -----------------------------------------------------------------------------------
    # Ending: finished, stopped, failed

    def _finish(self, status: str) -> TrainResult:
        if self._saved_step != self.step:
            self._save("last")
        self._record(status=status, error=None, last_step=self.step)
        log.info("training %s at step %d", status, self.step)
        last = self.last_eval
        return TrainResult(
            status=status,
            step=self.step,
            best_val_loss=self.best_val_loss,
            best_step=self.best_step,
            last_train_loss=None if last is None else last.train_loss,
            last_val_loss=None if last is None else last.val_loss,
            run_dir=None if self.run is None else self.run.path,
        )

    def _end_abruptly(self, status: str, reason: str) -> None:
        """Mark the run stopped or failed, keeping its last good checkpoint."""
        log.info("training %s after step %d: %s", status, self.step, reason)
        if self.run is None:
            return
        if self._saved_step is None:
            # Nothing was ever saved: a folder without a model is not worth keeping.
            self.run.discard()
            return
        try:
            self._record(status=status, error=reason)
        except OSError as error:
            # A full disk can refuse run.json too; the caller still hears the first reason,
            # and `list_runs` shows the run as interrupted once this process has ended.
            log.warning("run.json not marked %s: %s", status, _describe(error))

    # -----------------------------------------------------------------------------------
    # Run folder: record, metrics rows, checkpoints (all no-ops without a run)

    def _mark_running(self) -> None:
        self._record(
            status="running",
            error=None,
            device=self.device_description(),
            n_params=self.n_params,
            max_steps=self.train_config.max_steps,
            seed=self.train_config.seed,
            pid=os.getpid(),
            host=socket.gethostname(),
        )

    def _record(self, **fields: Any) -> None:
        if self.run is not None:
            self.run.update_record(**fields)

    def _log_row(
        self,
        train_loss: float,
        val_loss: float | None,
        lr: float | None,
        tokens_per_s: float | None,
    ) -> None:
        if self.run is not None:
            self.run.append_metrics(
                step=self.step,
                train_loss=train_loss,
                val_loss=val_loss,
                lr=lr,
                tokens_per_s=tokens_per_s,
                elapsed_s=self._elapsed(),
            )

    def _snapshot(self) -> None:
        """Save this evaluation's snapshot when train_config.snapshots asks for one.

        A snapshot that cannot be written is logged, never fatal: it is a view of the
        training, not part of it.
        """
        if self.run is None or not self.train_config.snapshots:
            return
        block = self.model_config.block_size
        try:
            probe, passage = probe_and_passage(self.train_ids, self.val_ids, block)
            with preserved_rng(self.device):
                snap = take_snapshot(
                    self.model, self.tokenizer, probe, passage, self.step, seed=SAMPLE_SEED
                )
            save_snapshot(self.run.path, snap)
        except (OSError, SnapshotError) as error:
            log.warning("no snapshot at step %d: %s", self.step, error)

    def _save(self, kind: str) -> None:
        if self.run is None:
            return
        extra = {
            "model_config": _config_dict(self.model_config),
            "train_config": _config_dict(self.train_config),
            "level": self.tokenizer.level,
            "best_val_loss": self.best_val_loss,
            "best_step": self.best_step,
            "elapsed_s": self._elapsed(),
        }
        rng = capture_rng(self.generator, self.device)
        save_checkpoint(
            self.run.checkpoint_path(kind), self.model, self.optimizer, self.step, rng, extra
        )
        if kind == "last":
            self._saved_step = self.step

    # -----------------------------------------------------------------------------------
    # torch.compile

    def _compiled_or_eager(self) -> nn.Module:
        """The model to take steps with: wrapped in DDP under torchrun, then compiled when
        asked for and it works on this machine. `self.model` stays the plain model, which
        evaluation, sampling and checkpoints use.

        Compiling happens at the first call, so one forward and backward on a dummy batch
        (with the RNG streams put back, and the gradients dropped) finds out here.
        """
        model = wrap(self.model, self.distributed)
        if not self.train_config.compile:
            return model
        try:
            compiled = torch.compile(model)
            shape = (self.train_config.batch_size, self.model_config.block_size)
            dummy = torch.zeros(shape, dtype=torch.long, device=self.device)
            with preserved_rng(self.device), autocast(self.device):
                compiled(dummy, dummy).loss.backward()
            return compiled
        except Exception as error:
            self.compile_warning = (
                f"torch.compile is not usable here ({_describe(error)}); training without it"
            )
            log.warning(self.compile_warning)
            return model
        finally:
            self.optimizer.zero_grad(set_to_none=True)
