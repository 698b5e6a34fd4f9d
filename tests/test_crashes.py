"""Crashes: SIGKILL at random moments, and disk writes that fail.

The kill loop (marked slow, still in the README's test command): two runs of
`python -m tinytf train` are each killed with SIGKILL, resumed with
`python -m tinytf resume`, killed again, and so on, KILLS times in all; each kill lands
at a seeded random delay of 0.5-4 s after the process announced its run (so during
training, not during Python's start-up). After every kill the folder must load: listed
by `list_runs` as "interrupted", run.json parses, last.pt and best.pt load, the newest
snapshot loads, metrics.csv reads. Resuming continues from last.pt's step, and the rows
it recomputes equal, digit for digit, the rows the killed process had written for the
same steps: nothing trained before the checkpoint is lost or changed.

Disk faults (fast): a write that fails with ENOSPC (disk full) or EROFS (read-only) while
saving a checkpoint, appending a metrics row or updating run.json ends the run as failed
with the reason, keeps the previous checkpoint, leaves no temporary file, and the run
resumes from that checkpoint to the same losses as a run that never failed. chmod is not
used: the tests run as root in CI, and root ignores file permissions.

Already proven elsewhere: a crash halfway through writing a checkpoint keeps the old file
(test_checkpoint); a failure before the first checkpoint removes the fresh folder, and
Ctrl-C stops cleanly (test_runs, test_cli); a running record whose process is gone lists
as "interrupted" (test_runs).
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tinytf import checkpoint, cli, training
from tinytf.config import TrainConfig
from tinytf.corpus import load_corpus
from tinytf.runs import RunFolder, list_runs, load_run, read_metrics, resume_run, start_run
from tinytf.snapshots import list_snapshots, load_snapshot
from tinytf.training import StepMetrics, TrainingError

REPO_ROOT = Path(__file__).resolve().parent.parent
KILLS = 10  # in all, over the two runs
SEED = 20241203  # of the kill delays
EVAL_INTERVAL = 5
TRAIN_ARGS = ["--corpus", "zen", "--level", "char", "--steps", "100000"]
TRAIN_ARGS += ["--eval-interval", str(EVAL_INTERVAL), "--block-size", "8", "--layers", "1"]
TRAIN_ARGS += ["--width", "16", "--heads", "2", "--batch-size", "4", "--device", "cpu"]
# One intra-op thread in every process: the same arithmetic in the killed and the resumed
# process (the thread count changes the last digits), and no spinning on two cores.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# ---------------------------------------------------------------------------------------
# The kill loop


@dataclass
class Victim:
    """One run folder and what happened to it."""

    name: str
    path: Path | None = None
    kills: int = 0
    resumes: int = 0
    compared_rows: int = 0  # recomputed rows checked against the killed process's rows
    temp_files: int = 0  # hidden .tmp files left by kills mid-write
    delays: list[float] = field(default_factory=list)
    resumed_at: list[int] = field(default_factory=list)


def _launch(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tinytf", *args],
        cwd=REPO_ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for_line(process: subprocess.Popen, prefix: str, timeout: float = 120) -> str:
    """The first stdout line starting with `prefix` (the process is killed on a timeout)."""
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            if line.startswith(prefix):
                return line.strip()
    finally:
        timer.cancel()
    raise AssertionError(f"no {prefix!r} line; exit {process.wait()}")


def _kill_after(process: subprocess.Popen, delay: float) -> None:
    # Drain stdout meanwhile, so a full pipe never blocks the training loop.
    drain = threading.Thread(target=process.stdout.read, daemon=True)
    drain.start()
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    drain.join(5)
    assert process.returncode == -signal.SIGKILL, process.returncode


def check_left_behind(path: Path) -> int:
    """Everything a killed run leaves must load; returns last.pt's step."""
    [info] = [i for i in list_runs(path.parent) if i.path == path]
    assert info.status == "interrupted", (info.status, info.problem)
    record = RunFolder(path).read_record()
    last = load_run(path, "last")
    best = load_run(path, "best")
    # best.pt is saved before last.pt: a kill between the two leaves best one evaluation
    # ahead, and the resume recomputes that evaluation (and best.pt) from last.pt.
    assert best.step <= last.step + EVAL_INTERVAL
    # The record is written after the checkpoints of an evaluation: at most one behind.
    assert last.step - EVAL_INTERVAL <= record["last_step"] <= last.step
    rows = read_metrics(path)
    steps = [row["step"] for row in rows]
    assert steps == list(range(len(steps))) and steps[-1] >= last.step
    snapshots = list_snapshots(path)
    assert snapshots and load_snapshot(path, snapshots[-1]).step == snapshots[-1]
    return last.step


def losses_by_step(path: Path) -> dict[int, tuple[str, str]]:
    """step -> (train_loss, val_loss) exactly as metrics.csv spells them."""
    return {row["step"]: (row["_raw"][1], row["_raw"][2]) for row in read_metrics(path)}


def torture(victim: Victim, root: Path, kills: int, rng: random.Random) -> None:
    """Train, then kill and resume `kills` times; every folder is checked after a kill."""
    before: dict[int, tuple[str, str]] = {}
    previous_checkpoint = None
    for _ in range(kills):
        if victim.path is None:
            args = ["train", *TRAIN_ARGS, "--name", victim.name, "--runs-dir", str(root)]
            process = _launch(args)
            victim.path = Path(_wait_for_line(process, "run: ").removeprefix("run: "))
        else:
            process = _launch(["resume", "--run", str(victim.path), "--device", "cpu"])
            line = _wait_for_line(process, "resuming ")
            victim.resumes += 1
            victim.resumed_at.append(int(line.rsplit(" ", 1)[1]))
        delay = rng.uniform(0.5, 4.0)
        victim.delays.append(delay)
        _kill_after(process, delay)
        victim.kills += 1

        checkpoint_step = check_left_behind(victim.path)
        if previous_checkpoint is not None:
            assert victim.resumed_at[-1] == previous_checkpoint  # continued from last.pt
        after = losses_by_step(victim.path)
        # Rows up to the checkpoint the resume started from are untouched; rows it
        # recomputed match what the killed process had written for the same steps.
        shared = sorted(set(before) & set(after))
        assert all(before[s] == after[s] for s in shared), [
            (s, before[s], after[s]) for s in shared if before[s] != after[s]
        ]
        if previous_checkpoint is not None:
            victim.compared_rows += sum(1 for s in shared if s > victim.resumed_at[-1])
        before, previous_checkpoint = after, checkpoint_step


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, capsys):
    root = tmp_path / "runs"
    rng = random.Random(SEED)
    victims = [Victim("kill-a"), Victim("kill-b")]
    shares = [KILLS - KILLS // 2, KILLS // 2]
    errors: list[BaseException] = []

    def work(victim: Victim, kills: int, seed: int) -> None:
        try:
            torture(victim, root, kills, random.Random(seed))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    started = time.monotonic()
    threads = [
        threading.Thread(target=work, args=(v, n, rng.randrange(2**32)))
        for v, n in zip(victims, shares, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]

    # Every folder left behind: loads, resumes from its last.pt and finishes.
    for victim in victims:
        victim.temp_files = len(list(victim.path.rglob(".*.tmp")))
        last = load_run(victim.path, "last").step
        assert (
            cli.main(["resume", "--run", str(victim.path), "--steps", "5", "--device", "cpu"]) == 0
        )
        assert f"resuming {victim.path.name} at step {last}" in capsys.readouterr().out
        record = RunFolder(victim.path).read_record()
        assert record["status"] == "finished" and record["last_step"] == last + 5
        assert [row["step"] for row in read_metrics(victim.path)] == list(range(last + 6))
    assert sum(v.kills for v in victims) == KILLS
    assert sum(v.compared_rows for v in victims) > 0  # the equality check had rows to check
    assert len(list_runs(root)) == 2

    summary = [
        f"{v.name}: {v.kills} kills, {v.resumes} resumes from steps {v.resumed_at}, "
        f"{v.compared_rows} recomputed rows equal, {v.temp_files} .tmp left, delays "
        + ", ".join(f"{d:.2f}" for d in v.delays)
        for v in victims
    ]
    print(f"kill loop ({time.monotonic() - started:.0f} s):\n" + "\n".join(summary))


# ---------------------------------------------------------------------------------------
# Disk faults

MODEL = {"block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16}
CONFIG = TrainConfig(batch_size=4, max_steps=12, eval_interval=4, eval_batches=2, device="cpu")
FAIL_FROM_STEP = 8  # the faults start at the evaluation of step 8; step 4's files are good


def fault(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def step_losses(trainer, **kwargs) -> list[float]:
    events: list = []
    trainer.train(on_event=events.append, **kwargs)
    return [e.loss for e in events if isinstance(e, StepMetrics)]


@pytest.fixture(scope="module")
def straight_losses() -> list[float]:
    """The step losses of the same run with no fault, for the resumed runs to match."""
    from tinytf.tokenizer import build_tokenizer

    text = load_corpus("zen").text
    tokenizer = build_tokenizer("char", text)
    trainer = training.Trainer(MODEL, CONFIG, tokenizer.encode(text), tokenizer)
    return step_losses(trainer)


def _failing_torch_save(code: int, trainer_step):
    original = checkpoint.torch.save

    def save(obj, file, *args, **kwargs):
        if trainer_step() >= FAIL_FROM_STEP:
            file.write(b"partial bytes before the disk filled up")
            raise fault(code)
        return original(obj, file, *args, **kwargs)

    return save


def _failing_append(code: int, trainer_step):
    original = RunFolder.append_metrics

    def append(self, **row):
        if trainer_step() >= FAIL_FROM_STEP:
            raise fault(code)
        return original(self, **row)

    return append


WRITES = {
    "checkpoint": lambda mp, code, step: mp.setattr(
        checkpoint.torch, "save", _failing_torch_save(code, step)
    ),
    "metrics-row": lambda mp, code, step: mp.setattr(
        RunFolder, "append_metrics", _failing_append(code, step)
    ),
}


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["ENOSPC", "EROFS"])
@pytest.mark.parametrize("write", list(WRITES))
def test_failed_write_marks_the_run_failed_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch, straight_losses, write: str, code: int
):
    trainer = start_run(load_corpus("zen"), "char", MODEL, CONFIG, root=tmp_path)
    with monkeypatch.context() as patch:
        WRITES[write](patch, code, lambda: trainer.step)
        with pytest.raises(TrainingError, match=os.strerror(code)):
            trainer.train()

    # 1. The record says failed, and why; the folder lists as failed.
    record = RunFolder(trainer.run.path).read_record()
    assert record["status"] == "failed" and os.strerror(code) in record["error"]
    assert list_runs(tmp_path)[0].status == "failed"

    # 2. The previous checkpoint is intact, and no temporary file is left.
    assert load_run(trainer.run.path, "last").step == FAIL_FROM_STEP - CONFIG.eval_interval
    assert load_run(trainer.run.path, "best").step <= FAIL_FROM_STEP - CONFIG.eval_interval
    assert list(trainer.run.path.glob(".*.tmp")) == []

    # 3. With the disk back, it resumes from there to the losses of a run that never failed.
    resumed = resume_run(trainer.run.path)
    start = resumed.step
    assert start == FAIL_FROM_STEP - CONFIG.eval_interval
    assert step_losses(resumed) == straight_losses[start:]
    assert RunFolder(trainer.run.path).read_record()["status"] == "finished"


def test_disk_full_for_every_write_still_reports_the_reason(tmp_path: Path, monkeypatch):
    """When even run.json cannot be written, the failure is still a TrainingError that
    names the reason, and the previous checkpoint is kept."""
    trainer = start_run(load_corpus("zen"), "char", MODEL, CONFIG, root=tmp_path)
    real_atomic_write = checkpoint.atomic_write

    def full_disk(path, write):
        if trainer.step >= FAIL_FROM_STEP:
            raise fault(errno.ENOSPC)
        return real_atomic_write(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", full_disk)
    monkeypatch.setattr(
        RunFolder, "append_metrics", _failing_append(errno.ENOSPC, lambda: trainer.step)
    )
    with pytest.raises(TrainingError, match=r"No space left on device"):
        trainer.train()
    monkeypatch.undo()
    assert load_run(trainer.run.path, "last").step == FAIL_FROM_STEP - CONFIG.eval_interval
