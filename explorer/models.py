"""The model the analysis pages look at: a run's best.pt or last.pt, or the live model.

A checkpoint's model is loaded once per (run, checkpoint, file mtime) with
`st.cache_resource`: it is shared by every session, which is fine because nobody changes
it (generation and capture only read the weights). The live model is a CPU copy of a
training job's weights, taken by the job at its latest evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from explorer.cached import job_manager
from tinytf.checkpoint import CheckpointError
from tinytf.model import TinyGPT
from tinytf.runs import RunError, RunFolder, load_run
from tinytf.sampling import Generation, SamplerSettings, generate
from tinytf.tokenizer import Tokenizer

CHECKPOINTS = ("best", "last", "live")


@dataclass(frozen=True)
class ModelSource:
    """A model ready to look inside, with what the pages need to label and cache it."""

    model: TinyGPT
    tokenizer: Tokenizer
    label: str  # "20250101-120000_zen-char · best.pt (step 300)"
    key: str  # changes whenever the weights do: part of every derived cache key
    run_path: Path
    step: int


class ModelUnavailableError(RuntimeError):
    """No model can be shown; the message tells the user what to do."""


@st.cache_resource(max_entries=4, show_spinner="Loading the checkpoint…")
def _load(path: str, checkpoint: str, stamp: float):
    # `stamp` (the checkpoint file's mtime) is only part of the key: a new save reloads.
    return load_run(path, checkpoint=checkpoint, device="cpu")


def load_source(run_path: str | Path | None, checkpoint: str) -> ModelSource:
    """The model of `run_path` at `checkpoint` ("best", "last" or "live").

    Raises:
        ModelUnavailableError: no run picked, or no live model for it yet.
        RunError, CheckpointError: the run or its checkpoint cannot be loaded.
    """
    if not run_path:
        raise ModelUnavailableError(
            "Pick a run in the sidebar (train one on the Train page first)."
        )
    path = Path(run_path)
    if checkpoint == "live":
        return _live_source(path)
    file = RunFolder(path).checkpoint_path(checkpoint)
    try:
        stamp = file.stat().st_mtime
    except OSError as error:
        raise CheckpointError(f"{file}: no such checkpoint file") from error
    loaded = _load(str(path), checkpoint, stamp)
    return ModelSource(
        model=loaded.model,
        tokenizer=loaded.tokenizer,
        label=f"{path.name} · {checkpoint}.pt (step {loaded.step})",
        key=f"{path}|{checkpoint}|{stamp}",
        run_path=path,
        step=loaded.step,
    )


def _live_source(path: Path) -> ModelSource:
    job = job_manager().get(str(path))
    payload = None if job is None else job.payload
    live = None if payload is None else payload.live_model()
    if live is None:
        raise ModelUnavailableError(
            f"{path.name} has no live model in this server: it is not training here, or has "
            "not reached its first evaluation. Pick best or last instead."
        )
    model, step = live
    return ModelSource(
        model=model,
        tokenizer=payload.tokenizer,
        label=f"{path.name} · live (step {step})",
        key=f"{path}|live|{step}",
        run_path=path,
        step=step,
    )


def current_source() -> ModelSource | None:
    """The model picked in the sidebar, or None after an st.info / st.error saying why."""
    try:
        return load_source(st.session_state.app_run, st.session_state.app_checkpoint)
    except ModelUnavailableError as reason:
        st.info(str(reason))
    except (RunError, CheckpointError) as error:
        st.error(f"This run cannot be loaded: {error}")
    return None


# Each entry holds every step's logits: 300 steps of a 4,456-token vocabulary (the help
# topics at word level) are 5 MB, so the entries are capped lower than plain texts would be.
@st.cache_data(max_entries=32, show_spinner=False)
def generate_cached(
    _model: TinyGPT,
    model_key: str,
    prompt_ids: tuple[int, ...],
    max_new_tokens: int,
    settings: SamplerSettings,
    seed: int,
    _reuse: Generation | None = None,
) -> Generation:
    """`tinytf.sampling.generate` with its steps and logits, once per (weights, prompt,
    length, settings, seed).

    Arguments starting with "_" are left out of the cache key: `model_key` stands for the
    model and changes whenever the weights do, and `_reuse` (an earlier generation of the
    same model and prompt) only saves work: its logits serve the steps where the texts
    agree, which gives the same tokens as running the model.
    """
    return generate(
        _model,
        list(prompt_ids),
        max_new_tokens,
        settings,
        seed=seed,
        record_steps=True,
        keep_logits=True,
        reuse=_reuse,
    )
