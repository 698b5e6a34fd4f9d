"""Why this token: every number on the way from one position's logits to the token picked.

`explain_step` retraces one step of `tinytf.sampling.generate` with the same functions it
uses (`filter_probs` for temperature and the cut, `draw_token` for the draw), so for the
same logits, settings and uniform number u it picks the same token, and adds what the
step records leave out: the logits before and after the temperature, where the cut fell,
the cumulative bar the draw lands on, the probability mass the cut removed, and the
entropy before and after it.

    step = generation.steps[i]                 # generate(..., record_steps=True)
    choice = explain_step(logits, settings, step.draw)
    choice.chosen == step.chosen_id            # always
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tinytf.sampling import SamplerSettings, SamplingError, draw_token, filter_probs


@dataclass(frozen=True)
class TokenChoice:
    """One step, explained. Vectors are (V,) and indexed by token id unless stated."""

    logits: Tensor  # the model's raw scores
    scaled_logits: Tensor  # logits / temperature (greedy and top-p: temperature 1)
    temperature: float  # the temperature the logits were divided by
    probs_before: Tensor  # softmax(scaled_logits): before the cut
    probs_after: Tensor  # the kept probabilities renormalised to sum to 1
    keep_mask: Tensor  # bool, True for the kept tokens
    order: Tensor  # token ids from most to least likely (ties: lower id first)
    cut_kind: str  # "none", "greedy", "top-k" or "top-p"
    cut: float | None  # top-k/greedy: the last kept token's scaled logit; top-p: p
    cumulative: Tensor  # (V,) in `order`: running sum of probs_after, the draw's bar
    cumulative_before: Tensor  # (V,) in `order`: running sum of probs_before (top-p's line)
    draw: float  # the uniform number u in [0, 1)
    chosen: int  # the token id picked
    kept: int  # how many tokens survived the cut
    mass_removed: float  # probability (before the cut) of the tokens cut away
    entropy_before: float  # of probs_before, in nats
    entropy_after: float  # of probs_after, in nats

    @property
    def chosen_rank(self) -> int:
        """0 for the most likely token, 1 for the next, ..."""
        return int((self.order == self.chosen).nonzero()[0, 0])


def entropy(probs: Tensor) -> float:
    """-sum p ln p in nats, with 0 ln 0 taken as 0."""
    p = probs.double()
    terms = torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))
    return float(-terms.sum())


def _cut(settings: SamplerSettings, scaled_sorted: Tensor, kept: int) -> tuple[str, float | None]:
    if settings.is_greedy:
        return "greedy", float(scaled_sorted[0])
    if settings.kind == "top-k":
        return "top-k", float(scaled_sorted[kept - 1])
    if settings.kind in ("top-p", "temperature-top-p"):
        return "top-p", float(settings.top_p)
    return "none", None


def explain_step(logits: Tensor, settings: SamplerSettings, draw: float) -> TokenChoice:
    """Retrace one sampling step on `logits` (V,) with the uniform number `draw`.

    Raises:
        SamplingError: logits not (V,), or a draw outside [0, 1).
    """
    if not 0.0 <= draw < 1.0:
        raise SamplingError(f"draw: must be in [0, 1), got {draw!r}")

    # 1. Temperature and the cut, exactly as generate does them.
    result = filter_probs(logits, settings)
    raw = logits.detach().to("cpu", torch.float32)
    temperature = settings.effective_temperature
    scaled = raw / temperature  # (V,)

    # 2. The draw: the token under u on the bar of kept probabilities.
    chosen = draw_token(result, draw)
    cumulative = torch.cumsum(result.probs_after[result.order].double(), dim=0)  # (V,)
    cumulative_before = torch.cumsum(result.probs_before[result.order].double(), dim=0)

    # 3. What the cut did.
    cut_kind, cut = _cut(settings, scaled[result.order], result.kept)
    mass_removed = float(result.probs_before[~result.keep].double().sum())
    return TokenChoice(
        logits=raw,
        scaled_logits=scaled,
        temperature=temperature,
        probs_before=result.probs_before,
        probs_after=result.probs_after,
        keep_mask=result.keep,
        order=result.order,
        cut_kind=cut_kind,
        cut=cut,
        cumulative=cumulative,
        cumulative_before=cumulative_before,
        draw=float(draw),
        chosen=chosen,
        kept=result.kept,
        mass_removed=mass_removed,
        entropy_before=entropy(result.probs_before),
        entropy_after=entropy(result.probs_after),
    )


@torch.no_grad()
def step_logits(model: torch.nn.Module, ids: list[int]) -> Tensor:
    """(V,) next-token logits after `ids` (their last block_size), as generate sees them.

    Runs the whole window without a cache; the cached path of generate computes the same
    numbers up to float rounding.
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        window = ids[-model.config.block_size :]
        return model(torch.tensor([window], device=device)).logits[0, -1].float().cpu()
    finally:
        model.train(was_training)
