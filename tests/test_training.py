"""The training loop, its schedule and data: tiny seeded configs on the Zen of Python."""

from __future__ import annotations

import itertools
import math
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from tinytf.config import ConfigError, ModelConfig, TrainConfig
from tinytf.corpus import load_corpus
from tinytf.data import check_fits, get_batch, split_ids, split_sizes, take_fraction
from tinytf.device import cpu_clock_hz, describe_device, pick_device
from tinytf.tokenizer import build_tokenizer
from tinytf.training import (
    EvalMetrics,
    StepMetrics,
    Trainer,
    TrainingError,
    flops_per_token,
    lr_at,
    param_groups,
)

MODEL = {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 32}


@pytest.fixture(scope="module")
def zen_char():
    tokenizer = build_tokenizer("char", load_corpus("zen").text)
    return tokenizer, tokenizer.encode(load_corpus("zen").text)


def make_trainer(zen, model=None, **train) -> Trainer:
    tokenizer, ids = zen
    settings = {"batch_size": 8, "max_steps": 10, "eval_interval": 5, "eval_batches": 2}
    return Trainer(model or MODEL, TrainConfig(**{**settings, **train}), ids, tokenizer)


def collect(trainer: Trainer, **kwargs) -> tuple[list[StepMetrics], list[EvalMetrics]]:
    events: list = []
    trainer.train(on_event=events.append, **kwargs)
    steps = [e for e in events if isinstance(e, StepMetrics)]
    evals = [e for e in events if isinstance(e, EvalMetrics)]
    return steps, evals


# ---------------------------------------------------------------------------------------
# Learning-rate schedule


def test_lr_schedule_warmup_peak_and_cosine_end():
    config = TrainConfig(learning_rate=1e-2, min_lr=1e-3, warmup_steps=10, max_steps=111)
    assert lr_at(0, config) == pytest.approx(1e-3)  # 1/10 of the way up
    assert lr_at(4, config) == pytest.approx(5e-3)
    assert lr_at(9, config) == pytest.approx(1e-2)  # the peak, end of warmup
    assert lr_at(10, config) == pytest.approx(1e-2)  # cosine starts at the peak
    assert lr_at(60, config) == pytest.approx(5.5e-3)  # half way: mean of peak and floor
    assert lr_at(110, config) == pytest.approx(1e-3)  # the last update gets the floor
    decay = [lr_at(u, config) for u in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(decay))


def test_lr_schedule_without_warmup_and_default_floor():
    config = TrainConfig(learning_rate=3e-3, warmup_steps=0, max_steps=50)
    assert lr_at(0, config) == pytest.approx(3e-3)
    assert lr_at(49, config) == pytest.approx(3e-4)  # min_lr None: a tenth of the peak


def test_each_step_uses_the_scheduled_lr(zen_char):
    trainer = make_trainer(zen_char, max_steps=8, warmup_steps=3)
    steps, _ = collect(trainer)
    assert [m.lr for m in steps] == [lr_at(u, trainer.train_config) for u in range(8)]
    assert trainer.optimizer.param_groups[0]["lr"] == steps[-1].lr


# ---------------------------------------------------------------------------------------
# Losses


def test_initial_loss_is_near_ln_vocab(zen_char):
    for level in ("char", "word"):
        tokenizer = build_tokenizer(level, load_corpus("zen").text)
        ids = tokenizer.encode(load_corpus("zen").text)
        trainer = make_trainer((tokenizer, ids), model={**MODEL, "block_size": 8})
        losses = trainer.estimate_loss()
        assert abs(losses["train"] - math.log(tokenizer.vocab_size)) < 0.2
        assert abs(losses["val"] - math.log(tokenizer.vocab_size)) < 0.2


def test_losses_decrease_on_zen(zen_char):
    trainer = make_trainer(zen_char, max_steps=80, eval_interval=40, learning_rate=3e-3)
    steps, evals = collect(trainer)
    first, last = steps[:10], steps[-10:]
    assert sum(m.loss for m in last) / 10 < sum(m.loss for m in first) / 10 - 0.5
    assert evals[-1].train_loss < evals[0].train_loss - 0.5


def test_evaluations_at_zero_every_interval_and_the_last_step(zen_char):
    trainer = make_trainer(zen_char, max_steps=11, eval_interval=5)
    _, evals = collect(trainer)
    assert [e.step for e in evals] == [0, 5, 10, 11]
    assert trainer.model.training  # back in train mode after each evaluation
    for i, e in enumerate(evals):
        best = min(evals[: i + 1], key=lambda m: m.val_loss)
        assert (e.best_val_loss, e.best_step) == (best.val_loss, best.step)
        assert e.sample_text.startswith(trainer.tokenizer.decode(trainer.train_ids[:1].tolist()))
        assert len(e.sample_text) >= 101  # the prompt character and 100 new ones


def test_evaluations_do_not_change_the_training_stream(zen_char):
    """Regression: evaluating (eval batches, the sample) must not move the RNG that
    draws batches and dropout, or a resumed run would diverge from a straight one."""
    model = {**MODEL, "dropout": 0.2}
    often, _ = collect(make_trainer(zen_char, model=model, max_steps=12, eval_interval=2))
    rarely, _ = collect(make_trainer(zen_char, model=model, max_steps=12, eval_interval=12))
    assert [m.loss for m in often] == [m.loss for m in rarely]


def test_same_seed_same_losses_other_seed_other_losses(zen_char):
    a, _ = collect(make_trainer(zen_char, max_steps=5, seed=1))
    b, _ = collect(make_trainer(zen_char, max_steps=5, seed=1))
    c, _ = collect(make_trainer(zen_char, max_steps=5, seed=2))
    assert [m.loss for m in a] == [m.loss for m in b]
    assert [m.loss for m in a] != [m.loss for m in c]


# ---------------------------------------------------------------------------------------
# Stopping and failing


def test_should_stop_event_stops_between_steps(zen_char):
    trainer = make_trainer(zen_char, max_steps=50)
    stop = threading.Event()

    def on_event(event):
        if isinstance(event, StepMetrics) and event.step == 7:
            stop.set()

    result = trainer.train(on_event=on_event, should_stop=stop)
    assert (result.status, result.step, trainer.step) == ("stopped", 7, 7)


def test_should_stop_callable(zen_char):
    trainer = make_trainer(zen_char, max_steps=50)
    result = trainer.train(should_stop=lambda: trainer.step >= 3)
    assert (result.status, result.step) == ("stopped", 3)


def test_train_again_after_a_stop_continues_where_it_was(zen_char):
    """Regression: a second train() call re-ran the step-0 evaluation and restarted the
    elapsed-time count."""
    straight, _ = collect(make_trainer(zen_char, max_steps=10))
    trainer = make_trainer(zen_char, max_steps=10)
    first, _ = collect(trainer, should_stop=lambda: trainer.step >= 3)
    second, evals = collect(trainer)
    assert [m.step for m in second] == list(range(4, 11))
    assert [e.step for e in evals] == [5, 10]
    assert [m.loss for m in first + second] == [m.loss for m in straight]
    assert second[0].elapsed_s > first[-1].elapsed_s


def test_exception_in_the_loop_becomes_training_error(zen_char):
    trainer = make_trainer(zen_char, max_steps=20)

    def on_event(event):
        if isinstance(event, StepMetrics) and event.step == 4:
            raise ValueError("boom")

    with pytest.raises(TrainingError, match=r"after step 4: ValueError: boom"):
        trainer.train(on_event=on_event)


def test_non_finite_loss_is_reported(zen_char):
    trainer = make_trainer(zen_char, max_steps=5)

    def poison(event):
        if isinstance(event, StepMetrics) and event.step == 2:
            with torch.no_grad():
                trainer.model.lm_head.weight.fill_(float("nan"))

    with pytest.raises(TrainingError, match=r"after step 2: the loss became nan"):
        trainer.train(on_event=poison)


def test_compile_failure_falls_back_to_eager(zen_char, monkeypatch, caplog):
    def broken_compile(model, *args, **kwargs):
        def call(*a, **k):
            raise RuntimeError("no compiler here")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    trainer = make_trainer(zen_char, max_steps=3, compile=True)
    with caplog.at_level("WARNING", logger="tinytf.training"):
        result = trainer.train()
    assert result.status == "finished"
    assert "no compiler here" in trainer.compile_warning
    assert "training without it" in caplog.text


# ---------------------------------------------------------------------------------------
# Optimiser, throughput, configuration


def test_weight_decay_only_on_linear_matrices(zen_char):
    trainer = make_trainer(zen_char)
    decay, no_decay = param_groups(trainer.model, 0.1)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    modules = trainer.model.named_modules()
    assert decayed == {f"{n}.weight" for n, m in modules if isinstance(m, nn.Linear)}
    assert "tok_embed.weight" not in decayed and "blocks.0.ln1.weight" not in decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)


def test_throughput_and_mfu_are_reported(zen_char):
    trainer = make_trainer(zen_char, max_steps=3)
    steps, _ = collect(trainer)
    assert all(m.tokens_per_s > 0 and 0 < m.mfu < 1 for m in steps)
    config = trainer.model_config
    expected = 6 * trainer.n_params + 12 * config.n_layer * config.n_embd * config.block_size
    assert flops_per_token(config, trainer.n_params) == expected


def test_fused_adamw_on_the_cpu_where_torch_has_it(zen_char, monkeypatch):
    """The Trainer takes the fused AdamW where torch has one for the device, and it trains
    the same losses as the per-tensor AdamW to within float rounding."""
    from tinytf import training

    fused = make_trainer(zen_char, max_steps=6, device="cpu")
    has_fused = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)
    assert fused.optimizer.defaults["fused"] is (True if has_fused else None)

    monkeypatch.setattr(training, "fused_adamw_supported", lambda device: False)
    plain = make_trainer(zen_char, max_steps=6, device="cpu")
    assert plain.optimizer.defaults["fused"] is None
    fused_losses = [m.loss for m in collect(fused)[0]]
    plain_losses = [m.loss for m in collect(plain)[0]]
    assert fused_losses == pytest.approx(plain_losses, rel=1e-4)
    for a, b in zip(fused.model.parameters(), plain.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_model_config_vocab_must_match_tokenizer(zen_char):
    tokenizer, ids = zen_char
    config = ModelConfig(vocab_size=tokenizer.vocab_size + 1, block_size=8)
    with pytest.raises(ConfigError, match=r"^vocab_size:"):
        Trainer(config, TrainConfig(), ids, tokenizer)


def test_unknown_model_field_is_a_config_error(zen_char):
    with pytest.raises(ConfigError, match=r"^model:"):
        make_trainer(zen_char, model={**MODEL, "layers": 3})


def test_train_fraction_takes_a_prefix_and_keeps_val(zen_char):
    full = make_trainer(zen_char)
    quarter = make_trainer(zen_char, train_fraction=0.25)
    assert quarter.train_ids.numel() == int(full.train_ids.numel() * 0.25)
    assert torch.equal(quarter.train_ids, full.train_ids[: quarter.train_ids.numel()])
    assert torch.equal(quarter.val_ids, full.val_ids)
    with pytest.raises(ConfigError, match=r"^train_fraction:"):
        TrainConfig(train_fraction=0.0)


# ---------------------------------------------------------------------------------------
# Data


def test_split_is_the_last_fraction():
    ids = torch.arange(100)
    train, val = split_ids(ids, 0.1)
    assert torch.equal(train, torch.arange(90)) and torch.equal(val, torch.arange(90, 100))
    assert split_sizes(181, 0.1) == (163, 18)


def test_check_fits_names_the_field():
    check_fits(181, 17, 0.1)  # 18 val tokens hold one window of 18
    with pytest.raises(ConfigError, match=r"^block_size: .*19 validation tokens.* leaves 18"):
        check_fits(181, 18, 0.1)
    with pytest.raises(ConfigError, match=r"^block_size: .*training tokens"):
        check_fits(40, 8, 0.8)  # 32 val tokens, 8 train tokens
    with pytest.raises(ConfigError, match=r"^train_fraction:"):
        check_fits(1000, 16, 0.1, train_fraction=0.01)


def test_get_batch_is_deterministic_and_shifted():
    ids = torch.arange(50) * 3
    a = get_batch(ids, 4, 6, torch.Generator().manual_seed(5))
    b = get_batch(ids, 4, 6, torch.Generator().manual_seed(5))
    x, y = a
    assert x.shape == y.shape == (4, 6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y[:, -1], x[:, -1] + 3)  # the next token of each window


def test_get_batch_reaches_the_last_token():
    ids = torch.arange(10)
    gen = torch.Generator().manual_seed(0)
    seen = torch.cat([get_batch(ids, 8, 4, gen)[1].flatten() for _ in range(20)])
    assert int(seen.max()) == 9 and int(get_batch(ids, 64, 4, gen)[0].min()) == 0


def test_take_fraction_refuses_too_little():
    assert take_fraction(torch.arange(100), 0.5, 10).numel() == 50
    with pytest.raises(ConfigError, match=r"^train_fraction:"):
        take_fraction(torch.arange(100), 0.05, 10)


# ---------------------------------------------------------------------------------------
# Device


def test_pick_device_falls_back_to_cpu_with_a_warning():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the fallback cannot be seen")
    choice = pick_device("cuda")
    assert choice.device.type == "cpu"
    assert "not available" in choice.warning
    assert pick_device("cpu").warning is None
    assert pick_device("auto").device.type in ("cpu", "mps")
    with pytest.raises(ConfigError, match=r"^device:"):
        pick_device("tpu")


def test_describe_cpu_and_read_the_clock(tmp_path: Path):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert describe_device(torch.device("cpu")) == "CPU: 2 threads"
        torch.set_num_threads(1)
        assert describe_device(torch.device("cpu")) == "CPU: 1 thread"
    finally:
        torch.set_num_threads(threads)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu MHz\t\t: 2000.5\nprocessor\t: 1\ncpu MHz\t: 3100\n")
    assert cpu_clock_hz(cpuinfo) == pytest.approx(3.1e9)
    assert cpu_clock_hz(tmp_path / "missing") == 2.5e9
