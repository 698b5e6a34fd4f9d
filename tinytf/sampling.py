"""Text generation: one loop, five ways to pick the next token.

Each step turns the last position's logits into probabilities, cuts them down, and picks
a token with one uniform random number:

1. temperature: probs = softmax(logits / T); low T sharpens, high T flattens;
2. the cut (`filter_probs`): greedy keeps the single most likely token, top-k the k most
   likely, top-p the fewest most likely tokens whose probabilities add up to p; the kept
   probabilities are renormalised to sum to 1;
3. the draw: tokens are laid end to end on a bar [0, 1) from the most likely down, each as
   wide as its kept probability, and the token under a uniform number u is chosen (the
   inverse of the cumulative distribution).

Every sampler draws exactly one u per step from a generator seeded by `seed`, so two
samplers run with the same seed see the same random numbers: differences in their text
come from the cuts alone. Ties are broken by the lower token id, everywhere.

    settings = SamplerSettings(kind="top-p", top_p=0.9)
    gen = generate(model, tok.encode("Beautiful"), 50, settings, seed=0, record_steps=True)
    tok.decode(gen.ids)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from tinytf.model import KVCache, TinyGPT

SAMPLERS = ("greedy", "temperature", "top-k", "top-p", "temperature-top-p")
TOP_CANDIDATES = 10  # candidates kept in each step record

# Cumulative sums are rounded; a set of tokens whose probability falls short of p by less
# than this counts as reaching p, so [0.5, 0.3, 0.2] with p = 0.8 keeps two, not three.
_TOP_P_TOLERANCE = 1e-6


class SamplingError(ValueError):
    """A sampler setting or a generation request that cannot work; names the knob at fault."""


@dataclass(frozen=True)
class SamplerSettings:
    """Which sampler, and its knobs. Checked when created.

    Temperature 0 means greedy, for every kind. Kind "top-p" otherwise samples at
    temperature 1 (its `temperature` is ignored); "temperature-top-p" uses it.
    """

    kind: str = "temperature"  # one of SAMPLERS
    temperature: float = 1.0  # divides the logits before softmax; 0 means greedy
    top_k: int | None = None  # top-k: keep this many of the most likely tokens
    top_p: float | None = None  # top-p: keep the fewest tokens whose probabilities reach p

    def __post_init__(self) -> None:
        if self.kind not in SAMPLERS:
            raise SamplingError(f"kind: must be one of {SAMPLERS}, got {self.kind!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise SamplingError(f"temperature: must be a finite number, got {t!r}")
        if t < 0:
            raise SamplingError(f"temperature: must be 0 or more, got {t!r}")
        k = self.top_k
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise SamplingError(f"top_k: must be a whole number of at least 1, got {k!r}")
        p = self.top_p
        if p is not None and (
            isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1
        ):
            raise SamplingError(f"top_p: must be in (0, 1], got {p!r}")
        if self.kind == "top-k" and k is None:
            raise SamplingError("top_k: the top-k sampler needs a value for top_k")
        if self.kind in ("top-p", "temperature-top-p") and p is None:
            raise SamplingError(f"top_p: the {self.kind} sampler needs a value for top_p")

    @property
    def is_greedy(self) -> bool:
        return self.kind == "greedy" or self.temperature == 0

    @property
    def effective_temperature(self) -> float:
        """The temperature the logits are divided by (greedy: 1, its 'before' view)."""
        if self.is_greedy or self.kind == "top-p":
            return 1.0
        return float(self.temperature)


@dataclass
class FilterResult:
    """One step's distribution before and after the cut, all tensors (V,) on the CPU."""

    probs_before: Tensor  # softmax(logits / T): after temperature, before the cut
    probs_after: Tensor  # kept probabilities renormalised to sum to 1, others 0
    keep: Tensor  # bool, True for the kept tokens
    kept: int  # how many tokens were kept (at least 1)
    order: Tensor  # token ids from most to least likely, ties by lower id


def filter_probs(logits: Tensor, settings: SamplerSettings) -> FilterResult:
    """Apply temperature and the sampler's cut to one position's logits.

    Args:
        logits: (V,) next-token scores, any device and float type.
        settings: the sampler. Greedy (or temperature 0) shows softmax(logits) as
            `probs_before` and keeps the single most likely token.

    Returns:
        A `FilterResult`; `probs_after` is what the token is drawn from.
    """
    if logits.dim() != 1:
        raise SamplingError(
            f"logits: expected one position's (V,) scores, got {tuple(logits.shape)}"
        )
    scores = logits.detach().to("cpu", torch.float32)
    _check_scores(scores)
    # The best score is moved to 0 before dividing by the temperature: softmax is the
    # same, but no score can overflow to inf (1e9 / 1e-30 would) and make NaN of it.
    scaled = (scores - scores.max()) / settings.effective_temperature
    probs_before = torch.softmax(scaled, dim=-1)  # (V,)
    # Ranked on the scores themselves (division may round two of them to one value).
    # A stable sort keeps equal scores in id order, so ties always go to the lower id.
    order = torch.sort(scores, descending=True, stable=True).indices  # (V,)

    keep_sorted = torch.ones_like(order, dtype=torch.bool)  # (V,), in `order`
    if settings.is_greedy:
        keep_sorted[1:] = False
    else:
        if settings.kind == "top-k":
            keep_sorted[settings.top_k :] = False  # k beyond V keeps everything
        if settings.kind in ("top-p", "temperature-top-p"):
            keep_sorted &= _top_p_keep(probs_before[order], settings.top_p)

    keep = torch.zeros_like(keep_sorted)
    keep[order] = keep_sorted
    probs_after = torch.where(keep, probs_before, torch.zeros_like(probs_before))
    probs_after = probs_after / probs_after.sum()
    return FilterResult(probs_before, probs_after, keep, int(keep.sum()), order)


def _check_scores(scores: Tensor) -> None:
    """Refuse logits no distribution can come from: NaN, +inf, or nothing but -inf."""
    if scores.numel() == 0:
        raise SamplingError("logits: empty; there is no token to choose from")
    if torch.isnan(scores).any():
        raise SamplingError("logits: contain NaN; the model's output is broken")
    if torch.isposinf(scores).any():
        raise SamplingError("logits: contain +inf; the model's output overflowed")
    if torch.isneginf(scores).all():
        raise SamplingError("logits: every score is -inf; no token can be chosen")


def _top_p_keep(sorted_probs: Tensor, top_p: float) -> Tensor:
    """Keep a token while the tokens more likely than it add up to less than p.

    So the token whose probability carries the sum across p is kept, and the most
    likely token always is (nothing comes before it).
    """
    before = torch.cumsum(sorted_probs.double(), dim=0) - sorted_probs.double()  # (V,)
    keep = before < top_p - _TOP_P_TOLERANCE
    keep[0] = True
    return keep


def draw_token(result: FilterResult, u: float) -> int:
    """The token under `u` in [0, 1) on the bar of kept probabilities, most likely first."""
    widths = result.probs_after[result.order].double()  # (V,)
    cumulative = torch.cumsum(widths, dim=0)  # (V,)
    target = torch.tensor(u * float(cumulative[-1]), dtype=torch.float64)
    index = int(torch.searchsorted(cumulative, target, right=True))
    # Rounding may leave u past the last edge: fall back on the last token with any width.
    last = int(torch.nonzero(widths).max())
    return int(result.order[min(index, last)])


@dataclass(frozen=True)
class Candidate:
    """A likely next token and its probability before and after the cut."""

    token_id: int
    prob_before: float
    prob_after: float


@dataclass(frozen=True)
class StepRecord:
    """What happened at one generation step, for the explorer to draw."""

    position: int  # index of the new token in prompt + generated ids
    candidates: list[Candidate]  # the TOP_CANDIDATES most likely tokens, in order
    kept: int  # tokens left after the cut
    chosen_id: int  # the token picked
    chosen_prob: float  # its probability after the cut
    draw: float  # the uniform number u that picked it


@dataclass
class Generation:
    """The prompt as given, the tokens that followed it, and optionally each step."""

    prompt_ids: list[int]
    new_ids: list[int]
    steps: list[StepRecord] = field(default_factory=list)  # empty unless record_steps
    logits: Tensor | None = None  # (N, V) float32 CPU, row i picked new token i; keep_logits
    reused_steps: int = 0  # leading steps whose logits came from `reuse`, not the model

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.new_ids


def generate(
    model: TinyGPT,
    prompt_ids: list[int],
    max_new_tokens: int,
    settings: SamplerSettings,
    seed: int = 0,
    record_steps: bool = False,
    use_cache: bool = True,
    keep_logits: bool = False,
    reuse: Generation | None = None,
) -> Generation:
    """Continue `prompt_ids` by `max_new_tokens` tokens.

    Args:
        model: the model; run in eval mode without gradients, its mode restored after.
        prompt_ids: at least one token id; only the last block_size are looked at.
        max_new_tokens: how many tokens to add (0 or more).
        settings: the sampler.
        seed: seeds this call's own generator; the same seed gives the same text.
        record_steps: keep a `StepRecord` per new token.
        use_cache: reuse keys and values of earlier positions (same tokens, faster).
        keep_logits: keep every step's logits in `Generation.logits`.
        reuse: an earlier generation of the same model from the same prompt, made with
            keep_logits. A step's logits depend only on the text before it, so for as long
            as this text agrees with that one its logits are taken instead of running the
            model: turning a sampler knob re-samples from held logits up to the first
            token that comes out differently, and the model runs only from there.

    The random numbers are drawn on the CPU whatever the model's device, one per step,
    so a seed gives the same stream of draws on every machine.

    Raises:
        SamplingError: a bad prompt or length, or a `reuse` from another prompt or
            vocabulary, or one without logits.
    """
    prompt = _checked_prompt(prompt_ids, model.config.vocab_size)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise SamplingError(f"max_new_tokens: must be a whole number, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise SamplingError(f"max_new_tokens: must be 0 or more, got {max_new_tokens}")
    if reuse is not None:
        _check_reuse(reuse, prompt, model.config.vocab_size)

    generator = torch.Generator(device="cpu").manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        # inference_mode, not just no_grad: it also skips autograd's bookkeeping on every
        # tensor, which is a sizeable share of a one-token step on a small model.
        with torch.inference_mode():
            generation, step_logits = _generate(
                model,
                prompt,
                max_new_tokens,
                settings,
                generator,
                reuse,
                record_steps=record_steps,
                use_cache=use_cache,
                keep_logits=keep_logits,
            )
    finally:
        model.train(was_training)
    if keep_logits:
        # Stacked outside inference mode, so the result is an ordinary tensor.
        vocab = model.config.vocab_size
        generation.logits = torch.stack(step_logits) if step_logits else torch.empty(0, vocab)
    return generation


def _check_reuse(reuse: Generation, prompt: list[int], vocab_size: int) -> None:
    if reuse.logits is None:
        raise SamplingError("reuse: that generation kept no logits (make it with keep_logits)")
    if reuse.prompt_ids != prompt:
        raise SamplingError("reuse: that generation started from another prompt")
    if reuse.logits.shape != (len(reuse.new_ids), vocab_size):
        raise SamplingError(
            f"reuse: its logits are {tuple(reuse.logits.shape)}, expected "
            f"({len(reuse.new_ids)}, {vocab_size}) for its tokens and this model's vocabulary"
        )


def _checked_prompt(prompt_ids: list[int], vocab_size: int) -> list[int]:
    ids = [int(i) for i in prompt_ids]
    if not ids:
        raise SamplingError("prompt_ids: empty; give at least one token to start from")
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise SamplingError(
            f"prompt_ids: token id {bad[0]} is outside the vocabulary of {vocab_size}"
        )
    return ids


def _generate(
    model: TinyGPT,
    prompt: list[int],
    max_new_tokens: int,
    settings: SamplerSettings,
    generator: torch.Generator,
    reuse: Generation | None,
    *,
    record_steps: bool,
    use_cache: bool,
    keep_logits: bool,
) -> tuple[Generation, list[Tensor]]:
    ids = list(prompt)
    past: KVCache | None = None
    steps, step_logits = [], []
    # Held logits stay valid while the text so far is the text they were computed on.
    held = [] if reuse is None else reuse.new_ids
    agrees = reuse is not None
    reused = 0
    for i in range(max_new_tokens):
        if agrees and i < len(held):
            logits = reuse.logits[i]  # (V,)
            reused += 1
        else:
            # The first model call after held logits has no cache: it runs the whole window.
            logits, past = _next_logits(model, ids, past, use_cache)  # (V,)

        result = filter_probs(logits, settings)
        u = float(torch.rand((), generator=generator))
        chosen = draw_token(result, u)

        if record_steps:
            steps.append(_record(len(ids), result, chosen, u))
        if keep_logits:
            step_logits.append(logits.detach().to("cpu", torch.float32))
        agrees = agrees and i < len(held) and chosen == held[i]
        ids.append(chosen)
    generation = Generation(
        prompt_ids=prompt, new_ids=ids[len(prompt) :], steps=steps, reused_steps=reused
    )
    return generation, step_logits


def _next_logits(
    model: TinyGPT, ids: list[int], past: KVCache | None, use_cache: bool
) -> tuple[Tensor, KVCache | None]:
    """(V,) logits of the next token after `ids`, and the keys and values to reuse.

    `past` holds keys and values for all of `ids` but the last; None runs the whole window.
    """
    block_size = model.config.block_size
    device = next(model.parameters()).device

    # 1. Cached: the keys and values of earlier positions are reused, so only the newest
    #    token runs through the model.
    if past is not None and past.length < block_size:
        step = torch.tensor([ids[-1:]], device=device)  # (1, 1)
        out = model(step, past=past, use_cache=True)
        return out.logits[0, -1], out.past

    # 2. Whole window: the first step, or every step once the context is full. Positions
    #    are absolute (0 .. block_size - 1), so when the window slides by one token every
    #    kept token moves to a new position and its cached keys and values no longer
    #    hold; from then on the last block_size tokens are recomputed at each step.
    window = ids[-block_size:]
    keep_cache = use_cache and len(window) < block_size
    out = model(torch.tensor([window], device=device), use_cache=keep_cache)
    return out.logits[0, -1], out.past


def _record(position: int, result: FilterResult, chosen: int, u: float) -> StepRecord:
    top = result.order[:TOP_CANDIDATES].tolist()
    candidates = [
        Candidate(i, float(result.probs_before[i]), float(result.probs_after[i])) for i in top
    ]
    return StepRecord(
        position=position,
        candidates=candidates,
        kept=result.kept,
        chosen_id=chosen,
        chosen_prob=float(result.probs_after[chosen]),
        draw=u,
    )
