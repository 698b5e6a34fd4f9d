"""How fast the explorer's views compute on the CPU: attention capture and sampler knobs.

1. Attention view: `model(ids, capture=True)` on a 64-token prompt with the `small`
   preset's model (4 layers, 4 heads, width 128, context 64; vocabulary 65, as tiny
   Shakespeare at character level). The capture path computes attention by hand and keeps
   every intermediate; its peer is the same forward without capture (fused attention).
   A third case times what the Attention page computes for one rerun, Streamlit aside:
   `run_prompt` (tokenising, the captured forward, copying every intermediate) and the
   page's six Plotly figures (one head's weights, scores, mask, masked scores, softmax,
   and the grid of every head). Target: well under half a second.
2. Sampler knob: turning a sampler knob only changes how the next-token logits are cut,
   so the view can re-filter logits it already holds instead of running the model again.
   Peer: a forward pass on the prompt, then the same filtering.

Untrained weights (speed does not depend on them), eval mode, no gradients.

    .venv/bin/python -m bench.bench_views
"""

from __future__ import annotations

import argparse
import string
from collections.abc import Callable

import torch
from torch import Tensor

from bench.common import (
    Summary,
    interleave,
    machine_lines,
    markdown_table,
    paired_ratios,
    report,
    timed,
)
from explorer import figures
from explorer.attention_view import run_prompt
from tinytf.config import ModelConfig
from tinytf.model import TinyGPT
from tinytf.presets import get_preset
from tinytf.sampling import SamplerSettings, filter_probs
from tinytf.tokenizer import Tokenizer, build_tokenizer

VOCAB_SIZE = 65  # tiny Shakespeare's characters
# 64 distinct characters and <unk>: a character tokenizer of the model's vocabulary size.
VOCAB_TEXT = string.ascii_letters + string.digits + " ."
PROMPT_TOKENS = 64
KNOB_SETTINGS = [  # the explorer's sampler columns
    SamplerSettings(kind="greedy"),
    SamplerSettings(kind="temperature", temperature=0.8),
    SamplerSettings(kind="top-k", temperature=0.8, top_k=5),
    SamplerSettings(kind="top-p", top_p=0.9),
    SamplerSettings(kind="temperature-top-p", temperature=0.8, top_p=0.9),
]


def small_model() -> TinyGPT:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=VOCAB_SIZE, **get_preset("small").model_kwargs())
    return TinyGPT(config).eval()


def per_call(fn: Callable[[], object], repeats: int) -> Callable[[], float]:
    """A case for `interleave`: mean seconds per call over `repeats` calls."""

    def run() -> float:
        with torch.no_grad():
            return timed(lambda: [fn() for _ in range(repeats)]) / repeats

    return run


def attention_page(model: TinyGPT, tokenizer: Tokenizer, text: str) -> None:
    """What pages/3_attention.py computes for one rerun, without drawing it."""
    view = run_prompt(model, tokenizer, text)
    labels = view.labels
    figures.attention_heatmap(view.pattern(0, 0), labels)
    figures.attention_heatmap(view.scores(0, 0), labels, kind="scores")
    figures.mask_heatmap(len(labels), labels)
    figures.attention_heatmap(view.masked_scores(0, 0), labels, kind="scores")
    figures.attention_heatmap(view.pattern(0, 0), labels)
    figures.attention_grid(view.all_patterns(), labels)


def refilter(logits: Tensor) -> None:
    for settings in KNOB_SETTINGS:
        filter_probs(logits, settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds (default 15)")
    parser.add_argument("--repeats", type=int, default=10, help="calls per measurement")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the doc")
    args = parser.parse_args(argv)

    header = machine_lines()
    model = small_model()
    if model.config.block_size < PROMPT_TOKENS:
        raise SystemExit(f"the small preset's context is under {PROMPT_TOKENS} tokens")
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(VOCAB_SIZE, (1, PROMPT_TOKENS), generator=generator)  # (1, T)
    tokenizer = build_tokenizer("char", VOCAB_TEXT)
    if tokenizer.vocab_size != VOCAB_SIZE:
        raise SystemExit(
            f"the view's tokenizer has {tokenizer.vocab_size} tokens, not {VOCAB_SIZE}"
        )
    prompt = tokenizer.decode(ids[0].tolist())
    with torch.no_grad():
        held_logits = model(ids).logits[0, -1]  # (V,)

    attention = {
        "forward with capture=True (attention by hand, every intermediate kept)": per_call(
            lambda: model(ids, capture=True), args.repeats
        ),
        "forward without capture (fused attention)": per_call(lambda: model(ids), args.repeats),
        "Attention page: run_prompt and its 6 figures": per_call(
            lambda: attention_page(model, tokenizer, prompt), args.repeats
        ),
    }
    knob = {
        "knob change: re-filter held logits for 5 samplers": per_call(
            lambda: refilter(held_logits), args.repeats
        ),
        "knob change: forward, then filter for 5 samplers": per_call(
            lambda: refilter(model(ids).logits[0, -1]), args.repeats
        ),
    }
    results = interleave({**attention, **knob}, rounds=args.rounds, warmup=2)
    write_report(results, list(attention), list(knob), header, args)


def write_report(
    results: dict[str, list[float]],
    attention: list[str],
    knob: list[str],
    header: list[str],
    args: argparse.Namespace,
) -> None:
    rows = [
        [name, Summary.of([1e3 * v for v in values]).show("{:.2f}")]
        for name, values in results.items()
    ]
    capture_ratio = Summary.of(paired_ratios(results[attention[0]], results[attention[1]]))
    knob_ratio = Summary.of(paired_ratios(results[knob[1]], results[knob[0]]))
    capture_ms = Summary.of([1e3 * v for v in results[attention[0]]])
    page_ms = Summary.of([1e3 * v for v in results[attention[2]]])
    body = "\n".join(
        [
            *header,
            f"- the `small` preset's model with a vocabulary of {VOCAB_SIZE}, a "
            f"{PROMPT_TOKENS}-token prompt, batch 1, eval mode, no gradients; "
            f"{args.rounds} rounds alternating the five cases (after two warm-up rounds), "
            f"each figure the mean of {args.repeats} calls",
            "",
            markdown_table(["case", "ms per call: median (min-max)"], rows),
            "",
            f"- **attention view: {page_ms.median:.1f} ms for the page's whole computation "
            f"(max {page_ms.high:.1f} ms), of which the captured forward is "
            f"{capture_ms.median:.1f} ms; target: well under 500 ms.** Capture costs "
            f"{capture_ratio.median:.2f}x an uncaptured forward (per round, min "
            f"{capture_ratio.low:.2f}x, max {capture_ratio.high:.2f}x).",
            f"- sampler knob: re-filtering held logits is {knob_ratio.median:.1f}x faster than "
            f"running the model again (per round, min {knob_ratio.low:.1f}x, "
            f"max {knob_ratio.high:.1f}x).",
        ]
    )
    report("views", "4. Explorer views on the CPU", body, not args.no_write)


if __name__ == "__main__":
    main()
