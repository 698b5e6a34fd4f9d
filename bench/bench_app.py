"""The explorer app while it trains: throughput against the bare Trainer, memory, latency.

1. Throughput. The same run is trained two ways, alternating A, B, A, B, each in a new
   process:
   A. as the Train page does it: the form's values become configs (snapshots on, as the
      app sets them), `explorer.train_jobs.start_training` is called from a short-lived
      thread (as a Streamlit script run is) and hands the Trainer to the job manager's
      background thread, while a polling thread does once a second
      what the page's fragment does (read the job's events, compute the progress and the
      loss curve, build the Plotly figure and serialise it to JSON);
   B. as the command line does it: `python -m tinytf train --preset small --steps N`
      (snapshots on by default there too).
   Both write a run folder with the same evaluations and checkpoints, and both are timed
   by the Trainer's own clock (elapsed_s of the last metrics row: the training loop from
   its start to the final evaluation; imports and setup are outside it).
   Target: A keeps at least 90% of B.
2. Memory and Start-to-first-point (a real server). `streamlit run explorer/app.py` is
   served on 127.0.0.1 and driven in headless Chromium (tests/e2e/appdriver.py): pick the
   corpus on the Data page, the `small` preset on the Train page, press Start, and time
   until the live loss chart shows its first point; then let it train while the server
   process's resident memory (RSS, with any children) is sampled every 0.25 s. Each
   round uses a new browser session and stops its run before the next. Skipped with a
   message when Chromium or Playwright is missing.

Corpus: tiny Shakespeare (character level) when it sits beside the checkout, else the
built-in pydoc topics.

    .venv/bin/python -m bench.bench_app                      # both parts
    .venv/bin/python -m bench.bench_app --no-browser         # throughput only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import (
    REPO_ROOT,
    SHAKESPEARE_PATH,
    Summary,
    machine_lines,
    markdown_table,
    paired_ratios,
    report,
)
from explorer.figures import loss_figure
from explorer.jobs import JobManager
from explorer.train_form import configs_from_values, field_values
from explorer.train_jobs import job_curve, job_progress, start_training
from tinytf.config import TrainConfig
from tinytf.corpus import Corpus, load_corpus
from tinytf.presets import Preset, fit_to_corpus, get_preset
from tinytf.runs import read_metrics
from tinytf.tokenizer import build_tokenizer

POLL_S = 1.0  # the Train page's fragment runs once a second while a job runs
RSS_EVERY_S = 0.25
MEMORY_LIMIT = 2**30  # 1 GiB


def bench_corpus() -> Corpus:
    return load_corpus(str(SHAKESPEARE_PATH) if SHAKESPEARE_PATH.exists() else "pydoc")


def small_preset(corpus: Corpus, steps: int) -> Preset:
    n_tokens = len(build_tokenizer("char", corpus.text).encode(corpus.text))
    preset = fit_to_corpus(get_preset("small"), n_tokens)
    return preset.with_train(max_steps=steps, device="cpu")


# ----------------------------------------------------------------------------- part 1


def poll_like_the_page(job, stop: threading.Event) -> int:
    """Once a second, the work of the Train page's fragment; returns the polls made."""
    polls = 0
    payload = job.payload
    while not stop.wait(POLL_S):
        view = job.view()
        job_progress(payload, view.events, view.started_at, time.monotonic())
        curve = job_curve(payload, view.events)
        figure = loss_figure(
            [curve], vocab_size=payload.vocab_size, max_steps=payload.max_steps, title="Loss"
        )
        figure.to_json()
        polls += 1
    return polls


def app_child(root: Path, steps: int) -> None:
    """Arm A, in its own process: the Train page's way, then one JSON line on stdout.

    As in the server, Start's work (the form's values to configs, `start_training`) runs
    in a short-lived thread, like Streamlit's script runs, and the job trains in its own.
    This matters on the CPU: each thread that runs torch keeps a pool of OpenMP workers
    while it lives, and with more workers than cores OpenMP waits for work by sleeping
    rather than spinning (slower to wake); a long-lived main thread doing Start's work
    would keep its pool beside the job's and slow the job down, which a server does not.
    """
    corpus = bench_corpus()
    preset = small_preset(corpus, steps)
    manager = JobManager(max_jobs=1)
    started: list = []

    def press_start() -> None:
        model, train = configs_from_values(field_values(preset.model, preset.train))
        started.append(start_training(manager, "bench", corpus, "char", model, train, root=root))

    pressed = time.monotonic()
    script_run = threading.Thread(target=press_start)
    script_run.start()
    script_run.join()
    [job] = started
    stop = threading.Event()
    poller = threading.Thread(target=poll_like_the_page, args=(job, stop), daemon=True)
    poller.start()
    job.thread.join()
    stop.set()
    poller.join()
    view = job.view()
    if view.status != "finished":
        raise SystemExit(f"the app's job ended {view.status}: {view.error}")
    print(json.dumps({"first_event_s": view.first_event_at - pressed}))


def run_arm(command: list[str], root: Path) -> tuple[float, str]:
    """Run one arm's process; return its training tokens/s (from its run folder) and stdout.

    Both arms are timed by the Trainer's own clock: the elapsed_s of the last row of
    metrics.csv, from the start of train() to the final evaluation.
    """
    before = set(root.iterdir()) if root.exists() else set()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{done.stderr[-2000:]}")
    [run_dir] = set(root.iterdir()) - before
    rows = read_metrics(run_dir / "metrics.csv")
    config = json.loads((run_dir / "config.json").read_text())
    tokens = rows[-1]["step"] * config["train"]["batch_size"] * config["model"]["block_size"]
    return tokens / rows[-1]["elapsed_s"], done.stdout


def throughput(corpus_source: str, steps: int, rounds: int, root: Path):
    """Alternate A and B `rounds` times (after one warm-up pair), each in a new process."""
    commands = {
        "app: job manager thread + 1 Hz polling": [
            *(sys.executable, "-m", "bench.bench_app", "--app-child", str(root), str(steps))
        ],
        "command line: python -m tinytf train": [
            *(sys.executable, "-m", "tinytf", "train", "--corpus", corpus_source),
            *("--level", "char", "--preset", "small", "--steps", str(steps)),
            *("--device", "cpu", "--runs-dir", str(root)),
        ],
    }
    results: dict[str, list[float]] = {name: [] for name in commands}
    latencies: list[float] = []
    for index in range(rounds + 1):
        for name, command in commands.items():
            value, stdout = run_arm(command, root)
            print(f"  round {index}: {name}: {value:,.0f} tok/s", flush=True)
            if index == 0:
                continue  # round 0 warms up (file caches, the first imports)
            results[name].append(value)
            if command[2] == "bench.bench_app":
                latencies.append(json.loads(stdout.splitlines()[-1])["first_event_s"])
    return results, latencies


# ----------------------------------------------------------------------------- part 2


class RssSampler(threading.Thread):
    """Samples a process's resident memory (children included) until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self.halt = threading.Event()

    def rss(self) -> int:
        processes = [self.process, *self.process.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes)

    def run(self) -> None:
        while not self.halt.wait(RSS_EVERY_S):
            self.samples.append((time.monotonic(), self.rss()))


def _browser_tools():
    """appdriver and Playwright, or a reason why the browser part cannot run."""
    sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))
    try:
        import appdriver
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        return None, f"browser part skipped: {error}"
    if not appdriver.CHROMIUM.exists():
        return None, f"browser part skipped: no Chromium at {appdriver.CHROMIUM}"
    return (appdriver, sync_playwright), None


def _prepare_session(appdriver, browser, base_url: str, corpus_path: str):
    """A new browser session on the Train page, with the corpus and `small` picked."""
    page = browser.new_page()
    page.goto(base_url)
    appdriver.wait_for_title(page, "Data")
    appdriver.settle(page)
    if corpus_path != "pydoc":
        page.get_by_text("A text file on the server").click()
        appdriver.settle(page)
        field = page.get_by_label("Path on the server")
        field.fill(corpus_path)
        field.press("Enter")
    else:
        page.get_by_text("Python help topics").click()
    appdriver.settle(page)
    appdriver.open_page(page, "Train")
    page.get_by_label("Preset", exact=False).first.click()
    page.get_by_role("option", name="small").first.click()
    appdriver.settle(page)
    _check_form(page)
    return page


# The `small` preset's model as the Train form shows it, and enough steps that no run can
# end inside a browser round (the preset's own 1,500 can, on a fast machine).
SMALL_FORM = {
    "Layers": "4",
    "Heads": "4",
    "Width (n_embd)": "128",
    "Context (block_size)": "64",
    "Batch size": "12",
    "Steps": "20000",
}


def _check_form(page) -> None:
    """Make the form hold SMALL_FORM, saying so where the preset had not filled it in."""
    for label, wanted in SMALL_FORM.items():
        field = page.get_by_label(label, exact=True)
        shown = field.input_value()
        if shown != wanted:
            if label != "Steps":
                print(f"  the form showed {label} = {shown}; setting {wanted}", flush=True)
            field.fill(wanted)


# True once the Plotly chart whose title holds `title` has at least one x value drawn.
FIRST_POINT_JS = """(title) =>
    [...document.querySelectorAll('[data-testid=stMain] .js-plotly-plot')].some(plot =>
        (plot.layout?.title?.text ?? '').includes(title)
        && (plot.data ?? []).some(trace => (trace.x ?? []).length > 0))"""


def wait_for_first_point(page, title: str, timeout_ms: int = 120_000) -> None:
    """Wait until the live chart titled `title` shows a point (checked every 50 ms)."""
    page.wait_for_function(FIRST_POINT_JS, arg=title, polling=50, timeout=timeout_ms)


def serve_and_measure(rounds: int, seconds_each: float) -> dict[str, object]:
    """Start-to-first-point latencies and the server's RSS over `rounds` browser runs."""
    tools, reason = _browser_tools()
    if tools is None:
        return {"skipped": reason}
    appdriver, sync_playwright = tools
    corpus_path = str(SHAKESPEARE_PATH) if SHAKESPEARE_PATH.exists() else "pydoc"
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"
        port = appdriver.free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = appdriver.start_app(Path(tmp) / "runs", port, log_path)
        try:
            appdriver.wait_healthy(base_url, server, log_path)
            sampler = RssSampler(server.pid)
            idle_rss = sampler.rss()
            sampler.start()
            with sync_playwright() as pw:
                browser = appdriver.launch_chromium(pw)
                for index in range(rounds):
                    page = _prepare_session(appdriver, browser, base_url, corpus_path)
                    loaded_rss = sampler.rss()
                    page.get_by_role("button", name="Start").click()
                    pressed = time.monotonic()
                    wait_for_first_point(page, "Loss")
                    latencies.append(time.monotonic() - pressed)
                    print(
                        f"  browser round {index + 1}: first point after {latencies[-1]:.2f} s",
                        flush=True,
                    )
                    time.sleep(seconds_each)
                    page.get_by_role("button", name="Stop").click()
                    appdriver.settle(page, timeout_ms=120_000)
                    page.close()
                browser.close()
            sampler.halt.set()
            sampler.join()
        finally:
            appdriver.stop_app(server)
    peak = max(rss for _, rss in sampler.samples)
    return {
        "latencies": latencies,
        "idle_rss": idle_rss,
        "loaded_rss": loaded_rss,
        "peak_rss": peak,
        "samples": len(sampler.samples),
    }


# ----------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--steps", type=int, default=200, help="steps per throughput run")
    parser.add_argument("--browser-rounds", type=int, default=2, help="Start presses")
    parser.add_argument("--train-seconds", type=float, default=30.0, help="per browser round")
    parser.add_argument("--no-browser", action="store_true", help="skip part 2")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the doc")
    parser.add_argument("--app-child", nargs=2, metavar=("ROOT", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.app_child:
        app_child(Path(args.app_child[0]), int(args.app_child[1]))
        return

    header = machine_lines()
    corpus = bench_corpus()
    preset = small_preset(corpus, args.steps)
    source = str(SHAKESPEARE_PATH) if SHAKESPEARE_PATH.exists() else "pydoc"
    print("part 1: throughput", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        results, job_latencies = throughput(source, args.steps, args.rounds, Path(tmp) / "runs")
    served: dict[str, object] = {"skipped": "browser part skipped (--no-browser)"}
    if not args.no_browser:
        print("part 2: a real server in headless Chromium", flush=True)
        served = serve_and_measure(args.browser_rounds, args.train_seconds)
    write_report(results, job_latencies, served, corpus, preset, header, args)


def _served_lines(served: dict[str, object], args: argparse.Namespace) -> list[str]:
    if "skipped" in served:
        return [f"- {served['skipped']}"]
    latency = Summary.of(served["latencies"])
    peak = served["peak_rss"]
    verdict = "under" if peak < MEMORY_LIMIT else "OVER"
    return [
        f"- **Start to first point in the browser: median {latency.median:.2f} s** (min "
        f"{latency.low:.2f} s, max {latency.high:.2f} s, {latency.n} presses of Start, each "
        "in a new session): from the click to the first point drawn on the live loss "
        "chart. It holds tokenising the corpus, building the run folder and the Trainer, "
        "the step-0 evaluation with its sample, and up to one 1-second poll of the page",
        f"- **server RSS peak: {peak / 2**20:,.0f} MiB, {verdict} the 1 GiB limit** "
        f"(sampled every {RSS_EVERY_S} s, {served['samples']} samples, children included); "
        f"{served['idle_rss'] / 2**20:,.0f} MiB when the server had just started, "
        f"{served['loaded_rss'] / 2**20:,.0f} MiB with the Train page open before the "
        f"last Start; {args.browser_rounds} runs of the `small` preset, about "
        f"{args.train_seconds:.0f} s of training each, Chromium on the same machine",
    ]


def write_report(
    results: dict[str, list[float]],
    job_latencies: list[float],
    served: dict[str, object],
    corpus: Corpus,
    preset: Preset,
    header: list[str],
    args: argparse.Namespace,
) -> None:
    names = list(results)
    rows = [[name, Summary.of(values).show()] for name, values in results.items()]
    ratio = Summary.of(paired_ratios(results[names[0]], results[names[1]]))
    train: TrainConfig = preset.train
    latency = Summary.of(job_latencies) if job_latencies else None
    body = "\n".join(
        [
            *header,
            f"- corpus {corpus.name} ({len(corpus.text):,} characters), character level; "
            f"the `small` preset's model, batch {train.batch_size}, {train.max_steps} steps, "
            f"evaluation every {train.eval_interval} steps ({train.eval_batches} batches "
            f"and a sample), checkpoints written; {args.rounds} rounds alternating A and B "
            "after a warm-up pair, each arm a new process, timed by the Trainer's own clock "
            "(metrics.csv elapsed_s)",
            "",
            markdown_table(["how", "train tokens/s: median (min-max)"], rows),
            "",
            f"- **app / command line, per round: {ratio.median:.1%} (min {ratio.low:.1%}, "
            f"max {ratio.high:.1%}).** Target: at least 90%. Each round's ratio: "
            + ", ".join(f"{r:.1%}" for r in paired_ratios(results[names[0]], results[names[1]])),
            ""
            if latency is None
            else f"- in-process, from calling `start_training` to the job's first event (the "
            f"step-0 evaluation): median {latency.median:.2f} s (min {latency.low:.2f} s, "
            f"max {latency.high:.2f} s)",
            *_served_lines(served, args),
        ]
    )
    report("app", "5. The app while it trains", body, not args.no_write)


if __name__ == "__main__":
    main()
