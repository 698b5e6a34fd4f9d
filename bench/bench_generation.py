"""Generation speed: the key/value cache against recomputing, and against transformers' GPT-2.

Batch 1, greedy decoding (no random draw to differ), `--new-tokens` (500) new tokens after
a 12-token prompt, untrained weights (speed does not depend on what the weights say).

Positions are absolute, so once the context is full every kept token moves to a new
position and the cache no longer holds: the cache only helps inside the window. The main
comparison therefore uses a model with a context of 1024, which holds the prompt and all
500 new tokens, and is otherwise the size of bench_train_peer (4 layers, 4 heads, width
128, vocabulary 65). GPT-2 is built at the same size with n_positions 1024 and generates
with its own `generate` and its own cache. A second pair runs the context-64 model, where
the window is full after 52 new tokens and both paths recompute from then on.

    .venv/bin/python -m bench.bench_generation
    .venv/bin/python -m bench.bench_generation --device cuda   # on a GPU, a section of its own
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import nn

from bench.common import (
    Summary,
    add_device_argument,
    bench_device,
    device_section,
    interleave,
    machine_lines,
    markdown_table,
    paired_ratios,
    report,
    timed,
)
from tinytf.config import ModelConfig
from tinytf.model import TinyGPT
from tinytf.sampling import SamplerSettings, generate

SIZE = {"vocab_size": 65, "n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0}
PROMPT = [(7 * i + 3) % 65 for i in range(12)]
GREEDY = SamplerSettings(kind="greedy")


def ours(block_size: int) -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(ModelConfig(block_size=block_size, **SIZE)).eval()


def gpt2(n_positions: int) -> nn.Module:
    """transformers' GPT-2 at SIZE, SDPA attention where it has it, eval mode."""
    from transformers import AutoModelForCausalLM, GPT2Config

    config = GPT2Config(
        vocab_size=SIZE["vocab_size"],
        n_positions=n_positions,
        n_embd=SIZE["n_embd"],
        n_layer=SIZE["n_layer"],
        n_head=SIZE["n_head"],
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,  # no end-of-text token: every run makes all its new tokens
        eos_token_id=None,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    try:
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    except (ValueError, ImportError):
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    return model.eval()


def ours_case(
    model: TinyGPT, new_tokens: int, use_cache: bool, device: torch.device
) -> Callable[[], float]:
    """A case for `interleave`: one generation, returns new tokens per second."""

    def run() -> float:
        seconds = timed(
            lambda: generate(model, PROMPT, new_tokens, GREEDY, use_cache=use_cache), device
        )
        return new_tokens / seconds

    return run


def gpt2_case(model: nn.Module, new_tokens: int, device: torch.device) -> Callable[[], float]:
    """GPT-2's own greedy `generate`, with its cache, exactly `new_tokens` new tokens."""
    prompt = torch.tensor([PROMPT], device=device)

    def run() -> float:
        with torch.no_grad():
            seconds = timed(
                lambda: model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    do_sample=False,
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    use_cache=True,
                ),
                device,
            )
        return new_tokens / seconds

    return run


def check_same_tokens(model: TinyGPT, new_tokens: int) -> bool:
    """Cached and recomputed greedy generations agree token for token."""
    cached = generate(model, PROMPT, new_tokens, GREEDY, use_cache=True)
    full = generate(model, PROMPT, new_tokens, GREEDY, use_cache=False)
    return cached.new_ids == full.new_ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    parser.add_argument("--new-tokens", type=int, default=500, help="new tokens per run")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the doc")
    add_device_argument(parser)
    args = parser.parse_args(argv)

    device = bench_device(args.device)
    header = machine_lines(device)
    n = args.new_tokens
    long_context = len(PROMPT) + n
    long_model = ours(max(1024, long_context)).to(device)
    short_model = ours(64).to(device)
    cases = {
        "tinytf, context 1024, cached": ours_case(long_model, n, True, device),
        "tinytf, context 1024, recomputed": ours_case(long_model, n, False, device),
        "transformers GPT-2, n_positions 1024, generate()": gpt2_case(
            gpt2(max(1024, long_context)).to(device), n, device
        ),
        "tinytf, context 64, cached": ours_case(short_model, n, True, device),
        "tinytf, context 64, recomputed": ours_case(short_model, n, False, device),
    }
    same = check_same_tokens(long_model, n) and check_same_tokens(short_model, n)
    results = interleave(cases, rounds=args.rounds, warmup=1)
    write_report(results, header, args, same, device)


def write_report(
    results: dict[str, list[float]],
    header: list[str],
    args: argparse.Namespace,
    same: bool,
    device: torch.device,
) -> None:
    names = list(results)
    rows = [[name, Summary.of(values).show()] for name, values in results.items()]

    def ratio(top: str, bottom: str) -> str:
        r = Summary.of(paired_ratios(results[top], results[bottom]))
        return f"{r.median:.2f}x (min {r.low:.2f}x, max {r.high:.2f}x)"

    body = "\n".join(
        [
            *header,
            f"- batch 1, greedy, a {len(PROMPT)}-token prompt, {args.new_tokens} new tokens per "
            f"run; {args.rounds} rounds alternating all five cases (after one warm-up round); "
            "untrained weights; width 128, 4 layers, 4 heads, vocabulary 65",
            "- context 1024 holds the prompt and every new token, so the cache is used at "
            "every step; with context 64 the window is full after "
            f"{64 - len(PROMPT)} new tokens and, since positions are absolute, both paths "
            "recompute the last 64 tokens at every step from then on",
            f"- cached and recomputed generations gave the same tokens: {'yes' if same else 'NO'}",
            "",
            markdown_table(["case", "new tokens/s: median (min-max)"], rows),
            "",
            "Per-round ratios of tokens/s:",
            "",
            f"- **cached / recomputed, context 1024: {ratio(names[0], names[1])}** "
            "(target: at least 5x)",
            f"- **tinytf cached / GPT-2 generate(): {ratio(names[0], names[2])}**",
            f"- cached / recomputed, context 64: {ratio(names[3], names[4])}",
        ]
    )
    key, title = device_section("generation", "2. Generation speed: key/value cache", device)
    report(key, title, body, not args.no_write)


if __name__ == "__main__":
    main()
