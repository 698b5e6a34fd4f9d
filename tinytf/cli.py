"""The command line: train, sample, resume, list runs, and a one-command demo.

    python -m tinytf train --corpus zen --level word        # the `tiny` preset, fitted
    python -m tinytf train --corpus shakespeare.txt --level char --preset small
    python -m tinytf sample --run runs/20250101-120000_zen-word --prompt "Beautiful"
    python -m tinytf resume --run 20250101-120000_zen-word --steps 200
    python -m tinytf runs
    python -m tinytf demo

Bad input ends with exit status 2 and one line `error: ...` on stderr, never a traceback,
and leaves no run folder behind. Ctrl-C stops training between steps, saves last.pt and
marks the run "stopped" (exit status 130); `resume` continues it. Only this module prints;
tinytf itself logs, and the warnings it logs are shown here as `warning: ...` lines.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from tinytf.checkpoint import CheckpointError
from tinytf.config import DEVICE_CHOICES, ConfigError
from tinytf.corpus import CorpusError, load_corpus
from tinytf.device import pick_device
from tinytf.distributed import DistContext, DistributedError, backend_for, setup, teardown
from tinytf.presets import PRESETS, Preset, default_preset_for, fit_to_corpus, get_preset
from tinytf.runs import (
    RunError,
    RunFolder,
    list_runs,
    load_run,
    resolve_run,
    resume_run,
    runs_root,
    start_run,
)
from tinytf.sampling import SAMPLERS, SamplerSettings, SamplingError, generate
from tinytf.tokenizer import LEVELS, TokenizerError, build_tokenizer
from tinytf.training import EvalMetrics, StepMetrics, Trainer, TrainingError

EXIT_ERROR = 2
EXIT_STOPPED = 130  # the shell's code for "ended by Ctrl-C"
USER_ERRORS = (
    ConfigError,
    CorpusError,
    TokenizerError,
    SamplingError,
    CheckpointError,
    RunError,
    TrainingError,
    OSError,
)

# Config fields as the command line spells them, for error messages.
FLAGS = {
    "block_size": "--block-size",
    "n_layer": "--layers",
    "n_head": "--heads",
    "n_embd": "--width",
    "dropout": "--dropout",
    "learning_rate": "--lr",
    "batch_size": "--batch-size",
    "eval_interval": "--eval-interval",
    "max_steps": "--steps",
    "steps": "--steps",
    "seed": "--seed",
    "device": "--device",
    "preset": "--preset",
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "max_new_tokens": "--tokens",
}

# Knob values a sampler gets when its flag is not given.
SAMPLER_DEFAULTS = {"temperature": 0.8, "top_k": 5, "top_p": 0.9}

log = logging.getLogger("tinytf")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in the same one-line form as other errors."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_ERROR)


class _LevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _one_line(error: BaseException) -> str:
    """The error's message on one line, with the command-line flag after a config field."""
    message = " ".join(str(error).split()) or type(error).__name__
    field, sep, rest = message.partition(":")
    if sep and field in FLAGS:
        message = f"{field} ({FLAGS[field]}):{rest}"
    return message


# ---------------------------------------------------------------------------------------
# Progress display


class ProgressBar:
    """A bar redrawn in place on a terminal's stderr; silent when stderr is not a terminal."""

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self._drawn_at = 0.0
        self._shown = False

    def update(self, metrics: StepMetrics) -> None:
        now = time.monotonic()
        last = metrics.step == metrics.max_steps
        if not self.enabled or (now - self._drawn_at < 0.1 and not last):
            return
        filled = self.WIDTH * metrics.step // metrics.max_steps
        bar = "#" * filled + "." * (self.WIDTH - filled)
        parts = [
            f"[{bar}] {metrics.step}/{metrics.max_steps}",
            f"loss {metrics.loss:.4f}",
            speed(metrics),
        ]
        self.stream.write("\r" + " | ".join(parts))
        self.stream.flush()
        self._drawn_at, self._shown = now, True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()
            self._shown = False


def speed(metrics: StepMetrics | None) -> str:
    """`5,210 tok/s (MFU 12.3%)`; the MFU part only where the device's peak is known."""
    if metrics is None:
        return "0 tok/s"
    text = f"{metrics.tokens_per_s:,.0f} tok/s"
    if metrics.mfu is not None:
        text += f" (MFU {100 * metrics.mfu:.1f}%)"
    return text


def eval_line(metrics: EvalMetrics, max_steps: int, last_step: StepMetrics | None) -> str:
    """`step 120/2000 | train 2.3456 | val 2.4567 | lr 3.0e-04 | 5,210 tok/s (MFU 3.1%) | 12.3 s`.

    (The MFU part only where the device's peak is known, see `speed`.)
    """
    lr = 0.0 if last_step is None else last_step.lr
    elapsed = 0.0 if last_step is None else last_step.elapsed_s
    parts = [
        f"step {metrics.step}/{max_steps}",
        f"train {metrics.train_loss:.4f}",
        f"val {metrics.val_loss:.4f}",
        f"lr {lr:.1e}",
        speed(last_step),
        f"{elapsed:.1f} s",
    ]
    return " | ".join(parts)


# ---------------------------------------------------------------------------------------
# Training, shared by train, resume and demo


def _describe_trainer(trainer: Trainer) -> None:
    config = trainer.model_config
    shape = (
        f"{config.n_layer} layers, {config.n_head} heads, width {config.n_embd}, "
        f"context {config.block_size}, vocabulary {config.vocab_size} ({trainer.tokenizer.level})"
    )
    print(f"device: {trainer.device_description()}")
    print(f"model: {trainer.n_params:,} parameters ({shape})")
    print(
        f"data: {trainer.train_ids.numel():,} training tokens, "
        f"{trainer.val_ids.numel():,} validation tokens"
    )
    if trainer.distributed.enabled:
        backend = backend_for(trainer.device)
        print(f"processes: {trainer.distributed.world_size} (DistributedDataParallel, {backend})")
    if trainer.run is not None:
        print(f"run: {trainer.run.path}")


def _train_and_report(trainer: Trainer) -> int:
    """Train with a progress bar and one line per evaluation; Ctrl-C stops cleanly."""
    _describe_trainer(trainer)
    stop = threading.Event()
    bar = ProgressBar(sys.stderr)
    last_step: list[StepMetrics | None] = [None]

    def on_event(event: StepMetrics | EvalMetrics) -> None:
        if isinstance(event, StepMetrics):
            last_step[0] = event
            bar.update(event)
            return
        bar.clear()
        print(eval_line(event, trainer.train_config.max_steps, last_step[0]), flush=True)

    def on_sigint(signum: int, frame: Any) -> None:
        # The first Ctrl-C asks the loop to stop after this step; a second one interrupts.
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = trainer.train(on_event=on_event, should_stop=stop)
    except KeyboardInterrupt:
        bar.clear()
        print(f"interrupted at step {trainer.step}; last.pt holds the latest saved step")
        return EXIT_STOPPED
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.clear()

    best = "n/a" if result.best_val_loss is None else f"{result.best_val_loss:.4f}"
    print(f"{result.status} at step {result.step} | best val {best} at step {result.best_step}")
    if trainer.last_eval is not None:
        print(f"sample at step {trainer.last_eval.step}: {trainer.last_eval.sample_text!r}")
    if result.status == "stopped":
        where = result.run_dir or "the run"
        print(f"stopped; continue with: python -m tinytf resume --run {where}")
        return EXIT_STOPPED
    return 0


def _train_quietly(trainer: Trainer) -> int:
    """Train without printing: the ranks other than 0 under torchrun."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    result = trainer.train(should_stop=stop)
    return EXIT_STOPPED if result.status == "stopped" else 0


def _preset_from_args(args: argparse.Namespace, n_tokens: int) -> Preset:
    """The named (or default) preset with the command line's overrides, fitted."""
    preset = get_preset(args.preset or default_preset_for(n_tokens))
    model = {
        "block_size": args.block_size,
        "n_layer": args.layers,
        "n_head": args.heads,
        "n_embd": args.width,
        "dropout": args.dropout,
    }
    train = {
        "max_steps": args.steps,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "eval_interval": args.eval_interval,
        "seed": args.seed,
        "device": args.device,
        "compile": True if args.compile else None,
        "snapshots": not args.no_snapshots,
    }
    preset = preset.with_model(**{k: v for k, v in model.items() if v is not None})
    preset = preset.with_train(**{k: v for k, v in train.items() if v is not None})
    if args.block_size is None:
        preset = fit_to_corpus(preset, n_tokens)
    return preset


def cmd_train(args: argparse.Namespace) -> int:
    # Under torchrun every process runs this; rank 0 alone prints and writes the run.
    distributed = DistContext.from_env()
    corpus = load_corpus(args.corpus)
    tokenizer = build_tokenizer(args.level, corpus.text)
    preset = _preset_from_args(args, len(tokenizer.encode(corpus.text)))
    if distributed.is_main:
        print(f"preset: {preset.name} | corpus: {corpus.name} ({len(corpus.text):,} characters)")
    if distributed.enabled:
        setup(distributed, pick_device(preset.train.device).device)
    try:
        trainer = start_run(
            corpus,
            args.level,
            preset.model_kwargs(),
            preset.train,
            name=args.name,
            root=args.runs_dir,
            tokenizer=tokenizer,
            distributed=distributed,
        )
        return _train_and_report(trainer) if distributed.is_main else _train_quietly(trainer)
    finally:
        teardown(distributed)


def cmd_resume(args: argparse.Namespace) -> int:
    if DistContext.from_env().enabled:
        raise DistributedError("WORLD_SIZE: resume runs in one process; start it without torchrun")
    path = resolve_run(args.run, args.runs_dir)
    trainer = resume_run(path, extra_steps=args.steps, device=args.device)
    print(f"resuming {path.name} at step {trainer.step}")
    return _train_and_report(trainer)


# ---------------------------------------------------------------------------------------
# Sampling


def sampler_settings(
    kind: str, temperature: float | None, top_k: int | None, top_p: float | None
) -> SamplerSettings:
    """SamplerSettings for `kind`, with SAMPLER_DEFAULTS for the knobs it uses and lacks."""
    if temperature is None:
        uses_temperature = kind in ("temperature", "top-k", "temperature-top-p")
        temperature = SAMPLER_DEFAULTS["temperature"] if uses_temperature else 1.0
    if top_k is None and kind == "top-k":
        top_k = SAMPLER_DEFAULTS["top_k"]
    if top_p is None and kind in ("top-p", "temperature-top-p"):
        top_p = SAMPLER_DEFAULTS["top_p"]
    return SamplerSettings(kind=kind, temperature=temperature, top_k=top_k, top_p=top_p)


def _default_prompt(path: Path) -> str:
    """The first token of the run's corpus, when no --prompt is given."""
    try:
        text = RunFolder(path).corpus_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RunError(
            f"prompt: none given and the run's corpus is unreadable ({error})"
        ) from error
    return text.split()[0] if text.split() else text[:1]


def cmd_sample(args: argparse.Namespace) -> int:
    if args.tokens < 0:
        raise SamplingError(f"max_new_tokens: must be 0 or more, got {args.tokens}")
    settings = sampler_settings(args.sampler, args.temperature, args.top_k, args.top_p)
    path = resolve_run(args.run, args.runs_dir)
    device = pick_device(args.device or "auto").device
    loaded = load_run(path, checkpoint=args.checkpoint, device=device)
    print(f"sampling from {path.name}/{args.checkpoint}.pt (step {loaded.step})", file=sys.stderr)

    prompt = args.prompt if args.prompt is not None else _default_prompt(path)
    encoding = loaded.tokenizer.encode_prompt(prompt)
    if not encoding.ids:
        raise SamplingError(f"prompt: {prompt!r} holds no {loaded.tokenizer.level} tokens")
    unknown = [t for t, flag in zip(encoding.tokens, encoding.unknown, strict=True) if flag]
    if unknown:
        shown = ", ".join(repr(t) for t in unknown[:10])
        print(
            f"warning: {len(unknown)} prompt token(s) not in the vocabulary, "
            f"read as <unk>: {shown}",
            file=sys.stderr,
        )
    generation = generate(loaded.model, encoding.ids, args.tokens, settings, seed=args.seed)
    print(loaded.tokenizer.decode(generation.ids))
    return 0


# ---------------------------------------------------------------------------------------
# Listing and the demo


def cmd_runs(args: argparse.Namespace) -> int:
    infos = list_runs(args.runs_dir)
    root = runs_root(args.runs_dir)
    if not infos:
        print(f"no runs in {root}")
        return 0
    header = f"{'run':<44} {'status':<11} {'step':>11} {'best val':>9} {'params':>9}  corpus"
    print(header)
    for info in infos:
        steps = "" if info.last_step is None else f"{info.last_step}/{info.max_steps or '?'}"
        best = "" if info.best_val_loss is None else f"{info.best_val_loss:.4f}"
        params = "" if info.n_params is None else f"{info.n_params:,}"
        corpus = "" if info.corpus is None else f"{info.corpus} ({info.level})"
        row = f"{info.path.name:<44} {info.status:<11} {steps:>11} {best:>9} {params:>9}  {corpus}"
        if info.status == "broken":
            row += f"  {info.problem}"
        print(row)
    print(f"({len(infos)} in {root})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    corpus = load_corpus("zen")
    tokenizer = build_tokenizer(args.level, corpus.text)
    preset = fit_to_corpus(get_preset("tiny"), len(tokenizer.encode(corpus.text)))
    preset = preset.with_train(
        max_steps=args.steps, seed=args.seed, device=args.device or "auto", snapshots=True
    )
    trainer = start_run(
        corpus,
        args.level,
        preset.model_kwargs(),
        preset.train,
        name="demo",
        root=args.runs_dir,
        tokenizer=tokenizer,
    )
    status = _train_and_report(trainer)
    if status != 0:
        return status

    prompt = tokenizer.encode(args.prompt) or trainer.train_ids[:1].tolist()
    print(f"\nsamples of {args.tokens} tokens after {args.prompt!r}, seed {args.seed}:")
    for kind in SAMPLERS:
        settings = sampler_settings(kind, None, None, None)
        generation = generate(trainer.model, prompt, args.tokens, settings, seed=args.seed)
        text = " ".join(tokenizer.decode(generation.ids).split())
        print(f"{kind:>17}: {text}")
    return 0


# ---------------------------------------------------------------------------------------
# Arguments


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs-dir", help="folder of run folders (default: $TINYTF_RUNS or ./runs)"
    )
    parser.add_argument("--device", choices=DEVICE_CHOICES, help="default: auto")


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, help="zen, pydoc, or a path to a text file")
    parser.add_argument("--level", choices=LEVELS, default="char", help="default: char")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: by corpus size")
    parser.add_argument("--name", help="run name (default: CORPUS-LEVEL)")
    parser.add_argument("--steps", type=int, help="optimiser steps")
    parser.add_argument("--block-size", type=int, help="context length (default: fitted)")
    parser.add_argument("--layers", type=int, help="transformer blocks")
    parser.add_argument("--heads", type=int, help="attention heads per block")
    parser.add_argument("--width", type=int, help="residual stream width n_embd")
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--eval-interval", type=int, help="steps between evaluations")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--compile", action="store_true", help="try torch.compile")
    parser.add_argument(
        "--no-snapshots",
        action="store_true",
        help="do not save a snapshot (attention, sample, passage losses) at each evaluation",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tinytf", description="Train and sample tiny transformers.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a new run")
    _add_train_options(train)
    _add_common(train)
    train.set_defaults(handler=cmd_train)

    sample = commands.add_parser("sample", help="generate text from a trained run")
    sample.add_argument("--run", required=True, help="run folder, or its name in the runs dir")
    sample.add_argument("--prompt", help="text to continue (default: the corpus's first word)")
    sample.add_argument("--sampler", choices=SAMPLERS, default="temperature")
    sample.add_argument("--temperature", type=float, help="default 0.8 (1 for top-p)")
    sample.add_argument("--top-k", type=int, help="default 5")
    sample.add_argument("--top-p", type=float, help="default 0.9")
    sample.add_argument("--tokens", type=int, default=100, help="new tokens (default 100)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="last",
        help="last (default): the latest weights, as the app shows them; best: those of "
        "the lowest validation loss, which on a tiny corpus can be the untrained step 0",
    )
    _add_common(sample)
    sample.set_defaults(handler=cmd_sample)

    resume = commands.add_parser("resume", help="continue a run from its last.pt")
    resume.add_argument("--run", required=True, help="run folder, or its name in the runs dir")
    resume.add_argument(
        "--steps", type=int, help="steps to add (default: finish the planned max_steps)"
    )
    _add_common(resume)
    resume.set_defaults(handler=cmd_resume)

    runs = commands.add_parser("runs", help="list the runs")
    runs.add_argument("--runs-dir", help="folder of run folders (default: $TINYTF_RUNS or ./runs)")
    runs.set_defaults(handler=cmd_runs)

    demo = commands.add_parser("demo", help="train briefly on zen, then try all five samplers")
    demo.add_argument("--level", choices=LEVELS, default="word", help="default: word")
    demo.add_argument("--steps", type=int, default=300)
    demo.add_argument("--prompt", default="Beautiful")
    demo.add_argument("--tokens", type=int, default=30)
    demo.add_argument("--seed", type=int, default=0)
    _add_common(demo)
    demo.set_defaults(handler=cmd_demo)
    return parser


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LevelFormatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0, 2 for bad input, 130 when stopped)."""
    args = build_parser().parse_args(argv)
    _setup_logging()
    try:
        return args.handler(args)
    except USER_ERRORS as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        # Outside training (loading, sampling) there is nothing to save.
        print("interrupted", file=sys.stderr)
        return EXIT_STOPPED
