"""Time to a validation loss on tiny Shakespeare: the `small` preset against a plain recipe.

Both arms train the `small` preset's model (4 layers, 4 heads, width 128, context 64) at
character level with tinytf's Trainer, on the same split of the same text; only the
training settings differ:
- preset: the `small` preset's TrainConfig as tinytf/presets.py defines it;
- recipe: batch 12, AdamW lr 1e-3 with 100 warmup steps and cosine decay to 1e-4 over
  2000 steps (weight decay 0.1, gradient clipping 1.0, as the Trainer does by default).

Every `--eval-every` steps the benchmark itself measures the validation loss on the same
fixed validation windows for both arms, with the clock paused; the time to a loss is the
training wall time (optimiser steps only, every evaluation left out) up to the first
measurement at or below it. Each arm stops when it has reached every target, at the end
of its schedule, or after `--max-seconds` of wall time. Arms alternate (preset, recipe,
preset, recipe, ...) when `--rounds` is above 1.

    .venv/bin/python -m bench.bench_time_to_loss                # one round, about 5 min
    .venv/bin/python -m bench.bench_time_to_loss --rounds 2 --max-seconds 300

Needs ../shared/data/tinyshakespeare.txt beside the checkout; says so and stops without it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from time import perf_counter

import torch
from torch import Tensor

from bench.common import (
    SHAKESPEARE_PATH,
    Summary,
    machine_lines,
    markdown_table,
    report,
)
from tinytf.config import TrainConfig
from tinytf.corpus import load_corpus
from tinytf.data import get_batch
from tinytf.model import TinyGPT
from tinytf.presets import get_preset
from tinytf.tokenizer import build_tokenizer
from tinytf.training import StepMetrics, Trainer

TARGETS = (2.0, 1.8)
RECIPE = TrainConfig(
    batch_size=12,
    max_steps=2000,
    learning_rate=1e-3,
    min_lr=1e-4,
    warmup_steps=100,
    weight_decay=0.1,
    grad_clip=1.0,
)
VAL_WINDOWS = 288  # fixed validation windows of 64 tokens: about 18,000 tokens
VAL_SEED = 2024


@dataclass
class ArmResult:
    """What one arm reached and when (training seconds, optimiser steps)."""

    name: str
    reached: dict[float, tuple[float, int]] = field(default_factory=dict)
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # step, s, val
    tokens_per_s: float = 0.0
    ended: str = ""


def val_windows(trainer: Trainer) -> list[tuple[Tensor, Tensor]]:
    """The same VAL_WINDOWS validation windows for every arm, in batches of 48."""
    generator = torch.Generator().manual_seed(VAL_SEED)
    block = trainer.model_config.block_size
    return [
        get_batch(trainer.val_ids, 48, block, generator, trainer.device)
        for _ in range(VAL_WINDOWS // 48)
    ]


@torch.no_grad()
def val_loss(model: TinyGPT, windows: list[tuple[Tensor, Tensor]]) -> float:
    model.eval()
    try:
        return sum(model(x, y).loss.item() for x, y in windows) / len(windows)
    finally:
        model.train()


def run_arm(name: str, trainer: Trainer, eval_every: int, max_seconds: float) -> ArmResult:
    """Train until every target is reached, the schedule ends, or max_seconds pass."""
    result = ArmResult(name)
    windows = val_windows(trainer)
    clock = {"train_s": 0.0, "last": perf_counter(), "start": perf_counter()}
    tokens_per_step = trainer.train_config.batch_size * trainer.model_config.block_size

    def on_event(event: object) -> None:
        now = perf_counter()
        if isinstance(event, StepMetrics):
            # From the previous event to this one: one optimiser step (the Trainer's own
            # evaluations end in an EvalMetrics event, so they fall outside).
            clock["train_s"] += now - clock["last"]
            if event.step % eval_every == 0:
                measure(event.step)
        clock["last"] = perf_counter()

    def measure(step: int) -> None:
        loss = val_loss(trainer.model, windows)
        result.curve.append((step, clock["train_s"], loss))
        for target in TARGETS:
            if target not in result.reached and loss <= target:
                result.reached[target] = (clock["train_s"], step)

    def should_stop() -> bool:
        return len(result.reached) == len(TARGETS) or (
            perf_counter() - clock["start"] > max_seconds
        )

    outcome = trainer.train(on_event=on_event, should_stop=should_stop)
    steps = trainer.step
    result.tokens_per_s = steps * tokens_per_step / max(clock["train_s"], 1e-9)
    if len(result.reached) == len(TARGETS):
        result.ended = f"every target reached (step {steps})"
    elif outcome.status == "finished":
        result.ended = f"schedule ended at step {steps}"
    else:
        result.ended = f"wall-time cap of {max_seconds:.0f} s at step {steps}"
    return result


def build_trainers(text: str) -> dict[str, Trainer]:
    """The two arms on the same ids; the Trainer's own evaluation only at the very end."""
    tokenizer = build_tokenizer("char", text)
    ids = tokenizer.encode(text)
    preset = get_preset("small")
    arms = {"preset `small`": preset.train, "plain recipe": RECIPE}
    return {
        name: Trainer(
            preset.model_kwargs(),
            train.replace(eval_interval=train.max_steps, device="cpu"),
            ids,
            tokenizer,
        )
        for name, train in arms.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (default 1)")
    parser.add_argument("--max-seconds", type=float, default=240.0, help="wall-time cap per arm")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between val losses")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the doc")
    args = parser.parse_args(argv)

    if not SHAKESPEARE_PATH.exists():
        print(f"skipped: {SHAKESPEARE_PATH} is not there (it sits beside the checkout)")
        return
    header = machine_lines()
    text = load_corpus(str(SHAKESPEARE_PATH)).text
    results: dict[str, list[ArmResult]] = {}
    for round_index in range(args.rounds):
        for name, trainer in build_trainers(text).items():
            print(f"round {round_index + 1}: {name} ...", flush=True)
            arm = run_arm(name, trainer, args.eval_every, args.max_seconds)
            print(f"  {arm.ended}; reached {arm.reached}", flush=True)
            results.setdefault(name, []).append(arm)
    write_report(results, header, args)


def _reached(arms: list[ArmResult], target: float) -> str:
    times = [arm.reached[target][0] for arm in arms if target in arm.reached]
    steps = [arm.reached[target][1] for arm in arms if target in arm.reached]
    if not times:
        return "not reached"
    where = f"{Summary.of(times).show('{:.0f}')} s, step {Summary.of(steps).show('{:,.0f}')}"
    missed = len(arms) - len(times)
    return where + (f" ({missed} of {len(arms)} runs did not reach it)" if missed else "")


def _ratio_line(results: dict[str, list[ArmResult]], target: float) -> str:
    preset, recipe = results.values()
    ratios = [
        p.reached[target][0] / r.reached[target][0]
        for p, r in zip(preset, recipe, strict=True)
        if target in p.reached and target in r.reached
    ]
    if not ratios:
        return f"- val loss {target}: no round where both arms reached it"
    ratio = Summary.of(ratios)
    return (
        f"- **val loss {target}: preset time / recipe time = {ratio.median:.2f}x** "
        f"(per round; min {ratio.low:.2f}x, max {ratio.high:.2f}x; {ratio.n} rounds)"
    )


def write_report(
    results: dict[str, list[ArmResult]], header: list[str], args: argparse.Namespace
) -> None:
    preset = get_preset("small").train
    rows = []
    for name, arms in results.items():
        speed = Summary.of([arm.tokens_per_s for arm in arms])
        rows.append([name, speed.show(), *(_reached(arms, t) for t in TARGETS), arms[-1].ended])
    curves = []
    for name, arms in results.items():
        points = ", ".join(f"{step}: {loss:.3f}" for step, _, loss in arms[-1].curve[::4])
        curves.append(
            f"- {name} (last round), step: val loss every {4 * args.eval_every}: {points}"
        )
    body = "\n".join(
        [
            *header,
            f"- corpus: {SHAKESPEARE_PATH.name}, character level, last 10% held out; "
            f"{args.rounds} round(s) alternating the arms; cap {args.max_seconds:.0f} s per arm",
            f"- preset `small` trains with batch {preset.batch_size}, lr {preset.learning_rate:g} "
            f"(warmup {preset.warmup_steps}, cosine to {preset.final_lr:g} over "
            f"{preset.max_steps} steps), weight decay {preset.weight_decay:g}",
            "- recipe: batch 12, lr 1e-3 (warmup 100, cosine to 1e-4 over 2000 steps), "
            "weight decay 0.1; same model, same Trainer",
            f"- val loss measured every {args.eval_every} steps on the same "
            f"{VAL_WINDOWS} fixed validation windows; times are training time, evaluations "
            "left out",
            "",
            markdown_table(
                ["arm", "train tokens/s", *(f"to val {t}: time, step" for t in TARGETS), "ended"],
                rows,
            ),
            "",
            *(_ratio_line(results, t) for t in TARGETS),
            "- target: the preset reaches 2.0 in at most 0.7x the recipe's time",
            "",
            *curves,
        ]
    )
    report(
        "time_to_loss", "3. Time to a validation loss on tiny Shakespeare", body, not args.no_write
    )


if __name__ == "__main__":
    main()
