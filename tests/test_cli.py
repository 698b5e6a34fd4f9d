"""The command line: one-line errors for bad input (run as real subprocesses), and the
happy paths of train, runs, sample, resume and demo (in-process, for speed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tinytf import cli
from tinytf.runs import list_runs, load_run, read_metrics

REPO_ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--steps", "6", "--eval-interval", "3", "--block-size", "8", "--layers", "1"]
SMALL += ["--width", "16", "--heads", "2", "--batch-size", "4"]


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TINYTF_RUNS": str(tmp_path / "env-runs")}
    return subprocess.run(
        [sys.executable, "-m", "tinytf", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def no_runs(tmp_path: Path) -> bool:
    folders = [tmp_path / "runs", tmp_path / "env-runs"]
    return all(not f.exists() or not any(f.iterdir()) for f in folders)


# ---------------------------------------------------------------------------------------
# Bad input, through a real process


@pytest.mark.parametrize(
    ("make_corpus", "extra", "fragments"),
    [
        (None, [], ("/nonexistent", "no such file")),
        ("", [], ("is empty",)),
        ("tiny text here", ["--block-size", "32"], ("block_size (--block-size)", "context")),
        ("Beautiful is better than ugly. " * 20, ["--heads", "3", "--width", "64"],
         ("n_head (--heads)", "do not divide")),
    ],
    ids=["missing-file", "empty-file", "too-short-for-context", "heads-do-not-divide"],
)  # fmt: skip
def test_train_bad_input(tmp_path: Path, make_corpus, extra, fragments):
    corpus = "/nonexistent"
    if make_corpus is not None:
        corpus = str(tmp_path / "corpus.txt")
        Path(corpus).write_text(make_corpus)
    runs = str(tmp_path / "runs")
    result = run_cli("train", "--corpus", corpus, *extra, "--runs-dir", runs, tmp_path=tmp_path)
    assert_one_line_error(result, *fragments)
    assert no_runs(tmp_path)


def test_sample_unknown_run(tmp_path: Path):
    result = run_cli("sample", "--run", "no-such-run", "--prompt", "a", tmp_path=tmp_path)
    assert_one_line_error(result, "no-such-run", "no such run folder")


def test_bad_command_line_is_one_line_too(tmp_path: Path):
    result = run_cli("train", "--corpus", "zen", "--level", "bytes", tmp_path=tmp_path)
    assert_one_line_error(result, "--level")
    assert no_runs(tmp_path)


def test_corrupt_checkpoint_is_one_line(tmp_path: Path):
    runs = tmp_path / "runs"
    assert cli.main(["train", "--corpus", "zen", *SMALL, "--runs-dir", str(runs)]) == 0
    (run,) = list_runs(runs)
    (run.path / "last.pt").write_bytes(b"\x00garbage")  # the checkpoint sample loads
    result = run_cli("sample", "--run", str(run.path), "--prompt", "B", tmp_path=tmp_path)
    assert_one_line_error(result, "last.pt", "not a readable checkpoint")
    (run.path / "best.pt").write_bytes(b"")
    best = ("--checkpoint", "best")
    result = run_cli("sample", "--run", str(run.path), "--prompt", "B", *best, tmp_path=tmp_path)
    assert_one_line_error(result, "best.pt", "not a readable checkpoint")


def test_ctrl_c_stops_cleanly_and_marks_the_run_stopped(tmp_path: Path):
    runs = tmp_path / "runs"
    args = [sys.executable, "-m", "tinytf", "train", "--corpus", "zen", *SMALL[2:]]
    args += ["--steps", "100000", "--runs-dir", str(runs)]  # far more than it will run
    process = subprocess.Popen(
        args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in process.stdout:
        if line.startswith("step 3/"):  # training is under way
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "stopped; continue with: python -m tinytf resume --run" in out
    (run,) = list_runs(runs)
    assert run.status == "stopped" and run.last_step >= 3
    assert load_run(run.path, "last").step == run.last_step


# ---------------------------------------------------------------------------------------
# Happy paths, in-process


def test_train_runs_sample_resume(tmp_path: Path, capsys):
    runs = str(tmp_path / "runs")
    args = ["train", "--corpus", "zen", "--level", "word", *SMALL, "--name", "t1"]
    assert cli.main([*args, "--runs-dir", runs]) == 0
    out = capsys.readouterr().out
    assert "device: CPU" in out and "parameters" in out and f"run: {runs}" in out
    assert "step 3/6 | train " in out and " tok/s | " in out
    (run,) = list_runs(runs)
    assert run.status == "finished" and run.path.name.endswith("_t1")

    assert cli.main(["runs", "--runs-dir", runs]) == 0
    assert run.path.name in capsys.readouterr().out

    prompt = ["--prompt", "Beautiful is zorblax", "--tokens", "5", "--sampler", "greedy"]
    assert cli.main(["sample", "--run", run.path.name, *prompt, "--runs-dir", runs]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Beautiful is <unk>")
    # Which weights spoke: the latest, as in the app, unless --checkpoint best is given.
    loaded_line, warning = captured.err.splitlines()[:2]
    assert loaded_line == f"sampling from {run.path.name}/last.pt (step 6)"
    assert warning.startswith("warning: 1 prompt token(s) not in the vocabulary")
    assert "'zorblax'" in captured.err

    assert cli.main(["resume", "--run", str(run.path), "--steps", "3"]) == 0
    assert "step 9/9 | train" in capsys.readouterr().out
    assert read_metrics(run.path)[-1]["step"] == 9


def test_sampler_flags_are_checked(tmp_path: Path, capsys):
    runs = str(tmp_path / "runs")
    assert cli.main(["train", "--corpus", "zen", *SMALL, "--runs-dir", runs]) == 0
    (run,) = list_runs(runs)
    status = cli.main(["sample", "--run", str(run.path), "--sampler", "top-p", "--top-p", "1.5"])
    assert status == 2
    assert capsys.readouterr().err.strip() == "error: top_p (--top-p): must be in (0, 1], got 1.5"


def test_demo_shows_all_five_samplers(tmp_path: Path, capsys):
    assert cli.main(["demo", "--steps", "10", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for kind in ("greedy", "temperature", "top-k", "top-p", "temperature-top-p"):
        assert f"{kind:>17}: Beautiful" in out


def test_eval_line_format():
    from tinytf.training import EvalMetrics, StepMetrics

    step = StepMetrics(120, 2000, 2.5, 3e-4, 5210.4, 12.34, None)
    metrics = EvalMetrics(120, 2.34561, 2.45671, "", 2.4, 100)
    assert cli.eval_line(metrics, 2000, step) == (
        "step 120/2000 | train 2.3456 | val 2.4567 | lr 3.0e-04 | 5,210 tok/s | 12.3 s"
    )
    # With the device's peak known, the model FLOPs utilisation stands beside the speed.
    step = StepMetrics(120, 2000, 2.5, 3e-4, 5210.4, 12.34, 0.1234)
    assert " | 5,210 tok/s (MFU 12.3%) | 12.3 s" in cli.eval_line(metrics, 2000, step)
