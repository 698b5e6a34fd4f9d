"""Lesson files: a view of the explorer saved as JSON, to reopen on another machine.

A lesson names a run folder, one of its checkpoints (and the step and a fingerprint of the
weights it held), a prompt, a sampler with its seed, how many tokens to generate, and the
page and view settings to open. Given the same run folder (copied, or the same training
repeated), `replay_lesson` gives back exactly the text the lesson was made from, because
the sampling draws its random numbers from the lesson's seed on the CPU.

    lesson = Lesson(run="20250101-120000_zen-char", checkpoint="best", step=300,
                    prompt="Beautiful is", sampler=SamplerSettings("top-p", top_p=0.9),
                    seed=0, max_new_tokens=80, page="samplers")
    save_lesson(path, lesson)
    text = replay_lesson(load_lesson(path), runs_root())

A file that is not a lesson, a newer version, a missing run, a checkpoint that moved on
since (another step, other weights): each raises `LessonError` with one line saying which.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tinytf.checkpoint import CheckpointError, atomic_write_text
from tinytf.runs import CHECKPOINT_KINDS, LoadedRun, RunError, load_run
from tinytf.sampling import Generation, SamplerSettings, SamplingError, generate

FORMAT = "tinytf-lesson"
VERSION = 1
MAX_NEW_TOKENS = 2000
MAX_PROMPT_CHARS = 10_000
MAX_FILE_BYTES = 1_000_000


class LessonError(ValueError):
    """A lesson file that cannot be read or replayed; the message says why."""


@dataclass(frozen=True)
class Lesson:
    """Everything needed to show one view again, token for token."""

    run: str  # the run folder's name, looked up inside the runs root
    checkpoint: str  # "best" or "last"
    step: int  # the checkpoint's step when the lesson was made
    prompt: str
    sampler: SamplerSettings
    seed: int
    max_new_tokens: int
    page: str = "samplers"  # the explorer page to open
    view: dict[str, Any] = field(default_factory=dict)  # that page's settings (JSON values)
    weights: str | None = None  # fingerprint of the checkpoint's weights (`fingerprint`)
    title: str = ""  # a line for people


def fingerprint(model: torch.nn.Module) -> str:
    """16 hex digits of SHA-256 over the model's parameters and buffers, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def lesson_to_json(lesson: Lesson) -> str:
    data = dataclasses.asdict(lesson)
    return json.dumps({"format": FORMAT, "version": VERSION, **data}, indent=1, ensure_ascii=False)


def save_lesson(path: Path | str, lesson: Lesson) -> Path:
    """Write the lesson as JSON, atomically."""
    path = Path(path)
    atomic_write_text(path, lesson_to_json(lesson))
    return path


def _require(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    # bool is a subclass of int in Python, but true is no step number.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise LessonError(f"{name}: missing or of the wrong type ({value!r})")
    return value


def _sampler(data: object) -> SamplerSettings:
    if not isinstance(data, dict):
        raise LessonError("sampler: must be an object with kind, temperature, top_k, top_p")
    unknown = set(data) - {f.name for f in dataclasses.fields(SamplerSettings)}
    if unknown:
        raise LessonError(f"sampler: unknown field {sorted(unknown)[0]!r}")
    try:
        return SamplerSettings(**data)
    except SamplingError as error:
        raise LessonError(f"sampler: {error}") from error


def lesson_from_json(text: str | bytes) -> Lesson:
    """Parse and check a lesson file's text.

    Raises:
        LessonError: not JSON, not a lesson, another version, or a bad field (named).
    """
    if len(text) > MAX_FILE_BYTES:
        raise LessonError(f"not a lesson file: {len(text):,} bytes is far too large")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LessonError(f"not a lesson file: not valid JSON ({error})") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LessonError("not a lesson file: its format is not tinytf-lesson")
    if data.get("version") != VERSION:
        raise LessonError(f"lesson version {data.get('version')!r} is not supported here")

    run = _require(data, "run", str)
    if not run or Path(run).name != run or run in (".", ".."):
        raise LessonError(f"run: must be a run folder's name, got {run!r}")
    checkpoint = _require(data, "checkpoint", str)
    if checkpoint not in CHECKPOINT_KINDS:
        raise LessonError(f"checkpoint: must be one of {CHECKPOINT_KINDS}, got {checkpoint!r}")
    step = _require(data, "step", int)
    seed = _require(data, "seed", int)
    max_new = _require(data, "max_new_tokens", int)
    if step < 0 or seed < 0 or not 0 <= max_new <= MAX_NEW_TOKENS:
        raise LessonError(
            f"step, seed and max_new_tokens must be 0 or more (max_new_tokens at most "
            f"{MAX_NEW_TOKENS}), got {step}, {seed}, {max_new}"
        )
    prompt = _require(data, "prompt", str)
    if not prompt or len(prompt) > MAX_PROMPT_CHARS:
        raise LessonError(f"prompt: must hold 1 to {MAX_PROMPT_CHARS:,} characters")
    view = data.get("view", {})
    if not isinstance(view, dict):
        raise LessonError("view: must be an object")
    weights = data.get("weights")
    if weights is not None and not isinstance(weights, str):
        raise LessonError("weights: must be a string or null")
    return Lesson(
        run=run,
        checkpoint=checkpoint,
        step=step,
        prompt=prompt,
        sampler=_sampler(data.get("sampler")),
        seed=seed,
        max_new_tokens=max_new,
        page=str(data.get("page", "samplers")),
        view=view,
        weights=weights,
        title=str(data.get("title", "")),
    )


def load_lesson(path: Path | str) -> Lesson:
    """Read and check a lesson file (see `lesson_from_json`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise LessonError(f"{path}: cannot be read ({error})") from error
    return lesson_from_json(data)


def open_lesson_run(lesson: Lesson, runs_root: Path | str) -> LoadedRun:
    """The lesson's run at its checkpoint, checked to hold the lesson's weights.

    Raises:
        LessonError: the run is missing or unreadable, or its checkpoint moved on.
    """
    folder = Path(runs_root) / lesson.run
    if not folder.is_dir():
        raise LessonError(f"run {lesson.run!r}: not found in {runs_root}")
    try:
        loaded = load_run(folder, checkpoint=lesson.checkpoint, device="cpu")
    except (RunError, CheckpointError) as error:
        raise LessonError(f"run {lesson.run!r}: cannot be loaded ({error})") from error
    if loaded.step != lesson.step:
        raise LessonError(
            f"run {lesson.run!r}: its {lesson.checkpoint}.pt is now at step {loaded.step}, "
            f"the lesson was made at step {lesson.step}"
        )
    if lesson.weights is not None and fingerprint(loaded.model) != lesson.weights:
        raise LessonError(
            f"run {lesson.run!r}: the weights in {lesson.checkpoint}.pt are not the ones the "
            "lesson was made with"
        )
    return loaded


def lesson_prompt_ids(loaded: LoadedRun, prompt: str) -> list[int]:
    """The prompt's ids, cut to the context's last block_size tokens (as the explorer does)."""
    ids = loaded.tokenizer.encode(prompt)
    if not ids:
        raise LessonError("prompt: holds no token")
    return ids[-loaded.model_config.block_size :]


def replay_generation(lesson: Lesson, runs_root: Path | str) -> tuple[LoadedRun, Generation]:
    """The loaded run and the lesson's generation (with its step records)."""
    loaded = open_lesson_run(lesson, runs_root)
    ids = lesson_prompt_ids(loaded, lesson.prompt)
    generation = generate(
        loaded.model,
        ids,
        lesson.max_new_tokens,
        lesson.sampler,
        seed=lesson.seed,
        record_steps=True,
    )
    return loaded, generation


def replay_lesson(lesson: Lesson, runs_root: Path | str) -> str:
    """The text the lesson shows: its (cropped) prompt and the tokens generated after it."""
    loaded, generation = replay_generation(lesson, runs_root)
    return loaded.tokenizer.decode(generation.ids)


def make_lesson(loaded: LoadedRun, **fields: Any) -> Lesson:
    """A lesson on `loaded` (its folder name, checkpoint, step and fingerprint filled in)."""
    lesson = Lesson(
        run=loaded.path.name,
        checkpoint=loaded.checkpoint,
        step=loaded.step,
        weights=fingerprint(loaded.model),
        **fields,
    )
    # The same checks a reader applies, so nothing is saved that cannot be opened again.
    return lesson_from_json(lesson_to_json(lesson))
