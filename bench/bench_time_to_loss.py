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
of its schedule, or after `--max-seconds` of its own wall time. The two arms take turns
every `--eval-every` steps (preset 50 steps, recipe 50 steps, preset ...), so a change in
the machine's load during the run falls on both; `--rounds` repeats the whole comparison
with another seed (1337, 1338, ...: other initial weights and batches, the same for both
arms), so the spread shows how much the steps to a loss depend on the draw.

    .venv/bin/python -m bench.bench_time_to_loss                # three rounds, about 15 min
    .venv/bin/python -m bench.bench_time_to_loss --rounds 1 --max-seconds 120

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
FIRST_SEED = 1337  # round i trains both arms with seed FIRST_SEED + i


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


class Arm:
    """One arm's Trainer, trained a chunk at a time so that two arms can take turns.

    `Trainer.train` stops when `should_stop` says so and continues from the same step
    when called again, so the arms alternate every `eval_every` steps (a few seconds):
    a machine that slows down for a minute slows both alike.
    """

    def __init__(self, name: str, trainer: Trainer, eval_every: int, max_seconds: float):
        self.result = ArmResult(name)
        self.trainer = trainer
        self.eval_every = eval_every
        self.max_seconds = max_seconds
        self.windows = val_windows(trainer)
        self.train_s = 0.0  # optimiser steps only
        self.wall_s = 0.0  # everything this arm did, evaluations included
        self.done = False
        self._last = 0.0
        self._chunk_end = 0

    def _on_event(self, event: object) -> None:
        now = perf_counter()
        if isinstance(event, StepMetrics):
            # From the previous event to this one: one optimiser step (the Trainer's own
            # evaluations end in an EvalMetrics event, so they fall outside).
            self.train_s += now - self._last
            if event.step % self.eval_every == 0:
                self._measure(event.step)
        self._last = perf_counter()

    def _measure(self, step: int) -> None:
        loss = val_loss(self.trainer.model, self.windows)
        self.result.curve.append((step, self.train_s, loss))
        for target in TARGETS:
            if target not in self.result.reached and loss <= target:
                self.result.reached[target] = (self.train_s, step)

    def _all_reached(self) -> bool:
        return len(self.result.reached) == len(TARGETS)

    def advance(self) -> None:
        """Train the next `eval_every` steps (or until every target is reached)."""
        self._chunk_end = self.trainer.step + self.eval_every
        started = self._last = perf_counter()

        def should_stop() -> bool:
            return self._all_reached() or self.trainer.step >= self._chunk_end

        outcome = self.trainer.train(on_event=self._on_event, should_stop=should_stop)
        self.wall_s += perf_counter() - started
        steps = self.trainer.step
        if self._all_reached():
            self.result.ended = f"every target reached (step {steps})"
        elif outcome.status == "finished":
            self.result.ended = f"schedule ended at step {steps}"
        elif self.wall_s > self.max_seconds:
            self.result.ended = f"wall-time cap of {self.max_seconds:.0f} s at step {steps}"
        else:
            return
        self.done = True
        tokens = steps * self.trainer.train_config.batch_size * self.trainer.model_config.block_size
        self.result.tokens_per_s = tokens / max(self.train_s, 1e-9)


def run_round(trainers: dict[str, Trainer], eval_every: int, max_seconds: float) -> list[Arm]:
    """Let the arms take turns, `eval_every` steps each, until every arm is done."""
    arms = [Arm(name, trainer, eval_every, max_seconds) for name, trainer in trainers.items()]
    while not all(arm.done for arm in arms):
        for arm in arms:
            if not arm.done:
                arm.advance()
    return arms


def build_trainers(text: str, seed: int) -> dict[str, Trainer]:
    """The two arms on the same ids and seed; the Trainer's own evaluation only at the end."""
    tokenizer = build_tokenizer("char", text)
    ids = tokenizer.encode(text)
    preset = get_preset("small")
    arms = {"preset `small`": preset.train, "plain recipe": RECIPE}
    return {
        name: Trainer(
            preset.model_kwargs(),
            train.replace(eval_interval=train.max_steps, device="cpu", seed=seed),
            ids,
            tokenizer,
        )
        for name, train in arms.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="whole comparisons (default 3)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=400.0,
        help="wall-time cap per arm, evaluations included (default 400: room for the "
        "recipe's whole 2,000 steps on two CPU cores)",
    )
    parser.add_argument("--eval-every", type=int, default=25, help="steps between val losses")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the doc")
    args = parser.parse_args(argv)

    if not SHAKESPEARE_PATH.exists():
        print(f"skipped: {SHAKESPEARE_PATH} is not there (it sits beside the checkout)")
        return
    header = machine_lines()
    text = load_corpus(str(SHAKESPEARE_PATH)).text
    results: dict[str, list[ArmResult]] = {}
    for round_index in range(args.rounds):
        seed = FIRST_SEED + round_index
        print(
            f"round {round_index + 1} (seed {seed}): "
            f"the arms take turns, {args.eval_every} steps each"
        )
        for arm in run_round(build_trainers(text, seed), args.eval_every, args.max_seconds):
            print(f"  {arm.result.name}: {arm.result.ended}; reached {arm.result.reached}")
            results.setdefault(arm.result.name, []).append(arm.result)
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
        reached = [name for name, arms in results.items() if any(target in a.reached for a in arms)]
        who = " and ".join(reached) if reached else "neither arm"
        return f"- val loss {target}: no round where both arms reached it (reached by: {who})"
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
        last_val = Summary.of([arm.curve[-1][2] for arm in arms if arm.curve])
        rows.append(
            [
                name,
                speed.show(),
                *(_reached(arms, t) for t in TARGETS),
                last_val.show("{:.3f}"),
                arms[-1].ended,
            ]
        )
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
            f"{args.rounds} round(s), seeds {FIRST_SEED}-{FIRST_SEED + args.rounds - 1} (the same "
            "for both arms in a round); within a round the arms take turns every "
            f"{args.eval_every} steps; cap {args.max_seconds:.0f} s of wall time per arm",
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
                [
                    "arm",
                    "train tokens/s",
                    *(f"to val {t}: time, step" for t in TARGETS),
                    "last val loss",
                    "ended",
                ],
                rows,
            ),
            "",
            *(_ratio_line(results, t) for t in TARGETS),
            "- target: the preset reaches 2.0 in at most 0.7x the recipe's time",
            "- for orientation (a figure given with the task, not measured here): a "
            "well-known reference implementation of the recipe is said to train at about "
            "12,000 tokens/s on these two cores and to reach 2.0 after about 75 s",
            "",
            *curves,
        ]
    )
    report(
        "time_to_loss", "3. Time to a validation loss on tiny Shakespeare", body, not args.no_write
    )


if __name__ == "__main__":
    main()
