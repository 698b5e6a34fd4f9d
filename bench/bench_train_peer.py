"""Training speed of tinytf's model against Hugging Face `transformers`' GPT-2 of the same size.

Both models are built at one size (4 layers, 4 heads, width 128, context 64, vocabulary
65, no dropout) and trained by the same loop on the same batches: forward, mean
cross-entropy over every position, backward, gradient clipping at 1.0, AdamW (lr 1e-3,
weight decay 0.1 on matrices only, the fused kernel where the device has one). Rounds
alternate the two models; each round times `--steps` steps of each.

    .venv/bin/python -m bench.bench_train_peer              # the table, into the doc
    .venv/bin/python -m bench.bench_train_peer --profile    # top operators of each model
    .venv/bin/python -m bench.bench_train_peer --device cuda --steps 200   # on a GPU

Needs `transformers` (bench/requirements.txt).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.common import (
    Summary,
    add_device_argument,
    bench_device,
    device_section,
    interleave,
    machine_lines,
    markdown_table,
    mfu,
    paired_ratios,
    report,
    timed,
    train_flops_per_token,
)
from tinytf.config import ModelConfig
from tinytf.device import autocast, fused_adamw_supported
from tinytf.model import TinyGPT

CONFIG = ModelConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
BATCH_SIZE = 12
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 0.1

Batch = tuple[Tensor, Tensor]
Logits = Callable[[Tensor], Tensor]  # (B, T) ids -> (B, T, V) logits


def build_ours(seed: int) -> tuple[nn.Module, Logits]:
    """TinyGPT at CONFIG, and how to get its logits."""
    torch.manual_seed(seed)
    model = TinyGPT(CONFIG)
    return model, lambda idx: model(idx).logits


def build_gpt2(seed: int) -> tuple[nn.Module, Logits]:
    """transformers' GPT2LMHeadModel at CONFIG (SDPA attention if it has it), and its logits."""
    from transformers import AutoModelForCausalLM, GPT2Config

    gpt2_config = GPT2Config(
        vocab_size=CONFIG.vocab_size,
        n_positions=CONFIG.block_size,
        n_embd=CONFIG.n_embd,
        n_layer=CONFIG.n_layer,
        n_head=CONFIG.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,  # GPT-2's defaults (50256) lie outside a 65-token vocabulary
        eos_token_id=None,
    )
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(gpt2_config, attn_implementation="sdpa")
    except (ValueError, ImportError):
        model = AutoModelForCausalLM.from_config(gpt2_config, attn_implementation="eager")
    return model, lambda idx: model(input_ids=idx).logits


def attention_kind(model: nn.Module) -> str:
    """ "sdpa" or "eager" for a transformers model; "fused SDPA" for ours."""
    return getattr(getattr(model, "config", None), "_attn_implementation", "fused SDPA")


def make_optimizer(model: nn.Module, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only, as tinytf's Trainer configures it."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = fused_adamw_supported(device)
    return torch.optim.AdamW(groups, lr=LEARNING_RATE, fused=fused or None)


def make_step(model: nn.Module, logits_of: Logits, device: torch.device) -> Callable[[Batch], None]:
    """One optimiser step on a batch: the same loop for both models (bf16 autocast on CUDA,
    as tinytf's Trainer runs it)."""
    optimizer = make_optimizer(model, device)
    model.train()

    def step(batch: Batch) -> None:
        x, y = batch
        with autocast(device):
            logits = logits_of(x)  # (B, T, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def random_batches(n: int, seed: int, device: torch.device) -> list[Batch]:
    """n batches of random ids: speed does not depend on which tokens they are."""
    generator = torch.Generator().manual_seed(seed)
    shape = (BATCH_SIZE, CONFIG.block_size)
    return [
        (
            torch.randint(CONFIG.vocab_size, shape, generator=generator).to(device),
            torch.randint(CONFIG.vocab_size, shape, generator=generator).to(device),
        )
        for _ in range(n)
    ]


def throughput(
    step: Callable[[Batch], None], batches: list[Batch], device: torch.device
) -> Callable[[], float]:
    """A case for `interleave`: run every batch once, return training tokens per second."""
    tokens = len(batches) * BATCH_SIZE * CONFIG.block_size

    def run() -> float:
        return tokens / timed(lambda: [step(batch) for batch in batches], device)

    return run


def profile_models(steps: dict[str, Callable[[Batch], None]], batches: list[Batch]) -> None:
    """Print each model's ten most expensive operators (self CPU time) over the batches."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for name, step in steps.items():
        step(batches[0])  # warm up outside the profile
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches:
                step(batch)
        print(f"\n### {name}: top operators by self CPU time over {len(batches)} steps\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11, help="alternating rounds (default 11)")
    parser.add_argument("--steps", type=int, default=30, help="training steps per round")
    parser.add_argument("--profile", action="store_true", help="print profiles, write nothing")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the doc")
    add_device_argument(parser)
    args = parser.parse_args(argv)

    device = bench_device(args.device)
    header = machine_lines(device)
    ours, ours_logits = build_ours(seed=0)
    gpt2, gpt2_logits = build_gpt2(seed=0)
    ours.to(device)
    gpt2.to(device)
    steps = {
        "tinytf TinyGPT": make_step(ours, ours_logits, device),
        "transformers GPT2LMHeadModel": make_step(gpt2, gpt2_logits, device),
    }
    batches = random_batches(args.steps, seed=0, device=device)
    if args.profile:
        profile_models(steps, batches)
        return

    cases = {name: throughput(step, batches, device) for name, step in steps.items()}
    results = interleave(cases, rounds=args.rounds, warmup=1)
    write_report(
        results,
        {"tinytf TinyGPT": ours, "transformers GPT2LMHeadModel": gpt2},
        header,
        args,
        device,
    )


def write_report(
    results: dict[str, list[float]],
    models: dict[str, nn.Module],
    header: list[str],
    args: argparse.Namespace,
    device: torch.device,
) -> None:
    """The table of tokens/s and MFU per model, then the per-round speed ratio."""
    flops = train_flops_per_token(CONFIG)
    rows = []
    for name, values in results.items():
        speed = Summary.of(values)
        use = mfu(speed.median, flops, device)
        n_params = sum(p.numel() for p in models[name].parameters())
        rows.append(
            [
                name,
                attention_kind(models[name]),
                f"{n_params:,}",
                speed.show(),
                "n/a" if use is None else f"{100 * use:.1f}%",
            ]
        )
    names = list(results)
    ratio = Summary.of(paired_ratios(results[names[0]], results[names[1]]))
    body = "\n".join(
        [
            *header,
            f"- {args.rounds} rounds alternating the two models (after one warm-up round), "
            f"each round {args.steps} steps of batch {BATCH_SIZE} x {CONFIG.block_size} "
            "tokens; random token ids; AdamW lr 1e-3, weight decay 0.1 on matrices, "
            "gradient clipping 1.0; " + ("bf16 autocast" if device.type == "cuda" else "fp32"),
            f"- size: {CONFIG.n_layer} layers, {CONFIG.n_head} heads, width {CONFIG.n_embd}, "
            f"context {CONFIG.block_size}, vocabulary {CONFIG.vocab_size}, no dropout; "
            f"model FLOPs per token {flops / 1e6:.2f} M (same figure for both)",
            "",
            markdown_table(
                ["model", "attention", "parameters", "train tokens/s: median (min-max)", "MFU"],
                rows,
            ),
            "",
            f"**Speed ratio {names[0]} / {names[1]}, per round: median {ratio.median:.2f}x "
            f"(min {ratio.low:.2f}x, max {ratio.high:.2f}x).** Target on the CPU: at least 1.1x.",
        ]
    )
    key, title = device_section(
        "train_peer", "1. Training speed against transformers' GPT-2", device
    )
    report(key, title, body, not args.no_write)


if __name__ == "__main__":
    main()
