"""Wall time to a validation loss of 2.0 and 1.8 on tiny Shakespeare, and training speed.

One run of tinytf's Trainer exactly as the `small` preset sets it up: character level, 4
layers, 4 heads, width 128, context 64, batch 12, AdamW at 2e-3 with warmup and cosine
decay over 3,000 steps. The validation loss is the Trainer's own estimate (16 batches of
fixed validation windows) every `--eval-interval` steps. The wall time to a target is the
run's elapsed time (evaluations included) at the first estimate at or below it; the run
stops once both targets are reached, at the end of the schedule, or after --max-minutes.

    .venv/bin/python -m bench.train_shakespeare                  # at most about 6 minutes
    .venv/bin/python -m bench.train_shakespeare --max-minutes 2 --no-write

Needs ../shared/data/tinyshakespeare.txt beside the checkout; says so and stops without it.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import machine_lines, markdown_table, report
from tinytf.corpus import load_corpus
from tinytf.presets import get_preset
from tinytf.tokenizer import build_tokenizer
from tinytf.training import EvalMetrics, StepMetrics, Trainer

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
TARGETS = (2.0, 1.8)


@dataclass
class Progress:
    """What the run reached, filled in by the event callback."""

    max_seconds: float
    reached: dict[float, tuple[int, float]] = field(default_factory=dict)  # step, seconds
    throughput: list[float] = field(default_factory=list)  # tok/s of each eval window
    mfu: list[float] = field(default_factory=list)
    last_step: StepMetrics | None = None
    last_eval: EvalMetrics | None = None

    def on_event(self, event: StepMetrics | EvalMetrics) -> None:
        if isinstance(event, StepMetrics):
            self.last_step = event
            return
        self.last_eval = event
        if self.last_step is not None and event.step > 0:
            self.throughput.append(self.last_step.tokens_per_s)
            if self.last_step.mfu is not None:
                self.mfu.append(self.last_step.mfu)
        elapsed = 0.0 if self.last_step is None else self.last_step.elapsed_s
        for target in TARGETS:
            if target not in self.reached and event.val_loss <= target:
                self.reached[target] = (event.step, elapsed)
        print(f"step {event.step:>5} | val {event.val_loss:.4f} | {elapsed:7.1f} s", flush=True)

    def should_stop(self) -> bool:
        done = len(self.reached) == len(TARGETS)
        late = self.last_step is not None and self.last_step.elapsed_s > self.max_seconds
        return done or late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-minutes", type=float, default=6.0)
    parser.add_argument("--eval-interval", type=int, default=100)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--no-write", action="store_true", help="print, do not update docs")
    args = parser.parse_args()
    if not SHAKESPEARE.exists():
        print(f"skipped: {SHAKESPEARE} is not there (it lives beside the checkout)")
        return

    corpus = load_corpus(str(SHAKESPEARE))
    tokenizer = build_tokenizer("char", corpus.text)
    preset = get_preset("small")
    train = preset.train.replace(eval_interval=args.eval_interval, device=args.device)
    trainer = Trainer(preset.model_kwargs(), train, tokenizer.encode(corpus.text), tokenizer)
    print(f"{trainer.device_description()}, {trainer.n_params:,} parameters")

    progress = Progress(max_seconds=args.max_minutes * 60)
    result = trainer.train(on_event=progress.on_event, should_stop=progress.should_stop)
    report(
        "train_shakespeare",
        "Time to a validation loss: tiny Shakespeare",
        _body(trainer, progress, result.step),
        write=not args.no_write,
    )


def _body(trainer: Trainer, progress: Progress, steps: int) -> str:
    rows = []
    for target in TARGETS:
        if target in progress.reached:
            step, seconds = progress.reached[target]
            rows.append([f"{target:.1f}", f"{step:,}", f"{seconds:,.1f}"])
        else:
            rows.append([f"{target:.1f}", "not reached", f"> {progress.max_seconds:,.0f}"])
    speed = statistics.median(progress.throughput) if progress.throughput else 0.0
    mfu = statistics.median(progress.mfu) if progress.mfu else None
    last = progress.last_eval
    config = trainer.model_config
    lines = [
        *machine_lines(),
        f"- device: {trainer.device_description()}; model: {config.n_layer} layers, "
        f"{config.n_head} heads, width {config.n_embd}, context {config.block_size}, "
        f"{trainer.n_params:,} parameters; batch {trainer.train_config.batch_size}, "
        f"lr {trainer.train_config.learning_rate:g}",
        f"- ran {steps:,} steps; last estimate: train {last.train_loss:.4f}, "
        f"val {last.val_loss:.4f}; best val {last.best_val_loss:.4f} at step {last.best_step:,}",
        f"- training throughput: {speed:,.0f} tokens/s (median over evaluation windows)"
        + ("" if mfu is None else f"; MFU about {mfu:.1%} (rough, see above)"),
        "",
        markdown_table(["val loss", "first reached at step", "wall time (s)"], rows),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
