"""The Samplers page's logic: five samplers on one prompt and one seed. No Streamlit here.

settings = column_settings(Knobs(temperature=1.2, top_k=5, top_p=0.9))
gens = {kind: generate(model, ids, 80, s, keep_logits=True) for kind, s in settings.items()}
view = step_view(gens["greedy"].logits[12], settings)  # who keeps which token at step 12
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from explorer.text_stats import TextStats, text_stats
from tinytf.sampling import SAMPLERS, Generation, SamplerSettings, filter_probs

LABELS = {
    "greedy": "Greedy",
    "temperature": "Temperature",
    "top-k": "Top-k",
    "top-p": "Top-p (nucleus)",
    "temperature-top-p": "Temperature + top-p",
}


@dataclass(frozen=True)
class Knobs:
    """Every column's knob; each column reads only its own."""

    temperature: float = 1.0  # the temperature column
    top_k: int = 5  # the top-k column (temperature 1)
    top_p: float = 0.9  # the top-p column (temperature 1)
    ttp_temperature: float = 0.8  # the temperature + top-p column
    ttp_top_p: float = 0.9


def column_settings(knobs: Knobs) -> dict[str, SamplerSettings]:
    """One `SamplerSettings` per column, in SAMPLERS order.

    Raises:
        SamplingError: a knob out of range (the message names it).
    """
    settings = {
        "greedy": SamplerSettings(kind="greedy"),
        "temperature": SamplerSettings(kind="temperature", temperature=knobs.temperature),
        "top-k": SamplerSettings(kind="top-k", temperature=1.0, top_k=knobs.top_k),
        "top-p": SamplerSettings(kind="top-p", top_p=knobs.top_p),
        "temperature-top-p": SamplerSettings(
            kind="temperature-top-p", temperature=knobs.ttp_temperature, top_p=knobs.ttp_top_p
        ),
    }
    return {kind: settings[kind] for kind in SAMPLERS}


def describe(settings: SamplerSettings) -> str:
    """A short caption of one column's settings."""
    if settings.kind == "greedy":
        return "always the most likely token"
    parts = []
    if settings.kind in ("temperature", "temperature-top-p", "top-k"):
        parts.append(f"T={settings.temperature:g}")
    if settings.top_k is not None:
        parts.append(f"k={settings.top_k}")
    if settings.top_p is not None:
        parts.append(f"p={settings.top_p:g}")
    return ", ".join(parts)


@dataclass
class StepView:
    """One next-token distribution and what each sampler does with it."""

    base_probs: torch.Tensor  # (V,) softmax of the raw logits
    kept_probs: dict[str, torch.Tensor]  # sampler -> (V,) probabilities after its cut
    kept: dict[str, int]  # sampler -> tokens kept


def step_view(logits: torch.Tensor, settings: dict[str, SamplerSettings]) -> StepView:
    """Apply every column's cut to one step's (V,) next-token logits.

    The logits come from a generation that kept them, so moving the step slider or turning
    a knob re-filters numbers already held instead of running the model.
    """
    results = {kind: filter_probs(logits, s) for kind, s in settings.items()}
    return StepView(
        base_probs=torch.softmax(logits.float(), dim=-1),
        kept_probs={kind: r.probs_after for kind, r in results.items()},
        kept={kind: r.kept for kind, r in results.items()},
    )


def reuse_caption(generation: Generation) -> str:
    """How many of a column's steps the model ran, and how many re-used held logits."""
    total, reused = len(generation.new_ids), generation.reused_steps
    if not reused:
        return f"model ran for all {total} steps"
    return (
        f"model ran for {total - reused} of {total} steps; the first {reused} re-sampled "
        "the logits held from before the knob changed"
    )


def column_stats(new_ids: list[int]) -> TextStats:
    """distinct-1/2/3 and the longest repeat of a column's generated tokens."""
    return text_stats(new_ids, orders=(1, 2, 3))
