"""Many users: several people training at once in one server process.

Fast tests: torch has one global random generator per process, and the app runs every
training job (and every session's script) in a thread of the same process. Two jobs
starting at once, or one starting while another evaluates, must not draw each other's
random numbers: each run's initial weights must be exactly those of its own seed.

The soak (slow, bounded): the real server (`streamlit run explorer/app.py` on a free
port of 127.0.0.1, TINYTF_RUNS in tmp_path, TINYTF_MAX_JOBS=5), five headless Chromium
pages (real browser sessions over the app's websocket) each starting a run with its own
seed on the Train page, and a sixth page told that the server runs as many jobs as it
allows. Meanwhile an HTTP probe measures the server's /_stcore/health latency, and the
sixth page measures how long a page switch takes. Afterwards every run must have
finished, and each run's metrics.csv, run.json, config.json and checkpoints must be its
own: the losses equal, digit for digit, those of the same config trained alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from tests.e2e import appdriver
from tinytf import training
from tinytf.checkpoint import load_checkpoint
from tinytf.config import ModelConfig, TrainConfig
from tinytf.corpus import load_corpus
from tinytf.model import TinyGPT
from tinytf.runs import RunFolder, read_metrics
from tinytf.tokenizer import build_tokenizer

MODEL = {"block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16}


@pytest.fixture(scope="module")
def zen():
    text = load_corpus("zen").text
    tokenizer = build_tokenizer("char", text)
    return tokenizer.encode(text), tokenizer


def alone(zen, seed: int) -> dict[str, torch.Tensor]:
    """Initial weights of a trainer with this seed, built with nobody else around."""
    ids, tokenizer = zen
    config = TrainConfig(batch_size=4, max_steps=2, eval_interval=1, seed=seed, device="cpu")
    return training.Trainer(MODEL, config, ids, tokenizer).model.state_dict()


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_trainers_built_at_once_each_get_their_own_seed(zen, monkeypatch):
    """Trainer A is paused between seeding and building its model (up to 1 s) while
    trainer B is built in another thread: A's weights must still be those of seed 1."""
    ids, tokenizer = zen
    expected = {1: alone(zen, 1), 2: alone(zen, 2)}
    a_waiting, b_built = threading.Event(), threading.Event()

    def build(config):
        if threading.current_thread().name == "trainer-a":
            a_waiting.set()
            b_built.wait(timeout=1.0)  # without a lock B finishes meanwhile
        return TinyGPT(config)

    monkeypatch.setattr(training, "TinyGPT", build)
    built: dict[int, dict[str, torch.Tensor]] = {}

    def make(seed: int) -> None:
        config = TrainConfig(batch_size=4, max_steps=2, eval_interval=1, seed=seed, device="cpu")
        built[seed] = training.Trainer(MODEL, config, ids, tokenizer).model.state_dict()
        if seed == 2:
            b_built.set()

    a = threading.Thread(target=make, args=(1,), name="trainer-a")
    a.start()
    assert a_waiting.wait(10)
    b = threading.Thread(target=make, args=(2,), name="trainer-b")
    b.start()
    a.join(20), b.join(20)
    assert same_weights(built[1], expected[1]), "trainer A drew trainer B's random numbers"
    assert same_weights(built[2], expected[2])


def test_a_trainer_built_while_another_evaluates_gets_its_own_seed(zen, monkeypatch):
    """An evaluation saves torch's global RNG state and puts it back when done. Trainer B
    is seeded while A evaluates and built after A put the state back (each side waits up
    to 1 s for the other): B's weights must still be those of its seed."""
    ids, tokenizer = zen
    expected = alone(zen, 7)
    evaluating, seeded, restored = threading.Event(), threading.Event(), threading.Event()
    real_preserved_rng = training.preserved_rng

    @contextlib.contextmanager
    def slow_preserved_rng(device):
        with real_preserved_rng(device):
            evaluating.set()
            seeded.wait(timeout=1.0)
            yield
        restored.set()

    def build(config):
        if threading.current_thread().name == "trainer-b":
            seeded.set()
            restored.wait(timeout=1.0)
        return TinyGPT(config)

    evaluator = training.Trainer(
        MODEL, TrainConfig(batch_size=4, max_steps=1, eval_interval=1, device="cpu"), ids, tokenizer
    )
    monkeypatch.setattr(training, "preserved_rng", slow_preserved_rng)
    monkeypatch.setattr(training, "TinyGPT", build)
    result: dict[str, dict[str, torch.Tensor]] = {}

    def build_b() -> None:
        assert evaluating.wait(10)
        config = TrainConfig(batch_size=4, max_steps=2, eval_interval=1, seed=7, device="cpu")
        result["weights"] = training.Trainer(MODEL, config, ids, tokenizer).model.state_dict()

    builder = threading.Thread(target=build_b, name="trainer-b")
    builder.start()
    evaluator.estimate_loss()
    builder.join(20)
    assert same_weights(result["weights"], expected), "an evaluation rewound B's seeding"


# ---------------------------------------------------------------------------------------
# The soak: five browser sessions training at once, a sixth told about the cap

USERS = 5
STEPS = 100
SEEDS = [101 + i for i in range(USERS + 1)]  # the sixth person's too
FORM = {  # label on the Train page -> value typed (a small model, so the soak stays short)
    "Layers": 1,
    "Heads": 2,
    "Width (n_embd)": 32,
    "Context (block_size)": 16,
    "Batch size": 8,
    "Steps": STEPS,
    "Evaluate every": 50,
    "Eval batches": 4,
}
SOAK_TIMEOUT_S = 300  # the whole training phase; a hung job fails here, never hangs CI
ANSWER_TIMEOUT_S = 180  # the longest a click may wait for its answer
PROBE_TIMEOUT_S = 15  # a health probe slower than this counts as a failure


def fill_train_form(page, user: int) -> None:
    for label, value in {**FORM, "Seed": SEEDS[user]}.items():
        box = page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Tab")
    name = page.get_by_label("Run name", exact=True)
    name.fill(f"user{user}")
    name.press("Tab")


class HealthProbe(threading.Thread):
    """GET /_stcore/health four times a second until stopped; keeps each latency."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{base_url}/_stcore/health"
        self.latencies: list[float] = []
        self.failures = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=PROBE_TIMEOUT_S) as reply:
                    reply.read()
                self.latencies.append(time.monotonic() - started)
            except OSError:
                self.failures += 1
            self.halt.wait(0.25)


def re_run_alone(run: Path) -> tuple[list[tuple[str, str, str]], dict[str, torch.Tensor]]:
    """Train the run's config.json again here, alone: its metrics rows and final weights."""
    config = RunFolder(run).read_config()
    corpus = load_corpus(config["corpus"]["name"])
    tokenizer = build_tokenizer(config["level"], corpus.text)
    trainer = training.Trainer(
        ModelConfig(**config["model"]),
        TrainConfig(**config["train"]),
        tokenizer.encode(corpus.text),
        tokenizer,
    )
    rows: dict[int, tuple[str, str, str]] = {}

    def collect(event) -> None:
        if isinstance(event, training.StepMetrics):
            rows[event.step] = (str(event.step), f"{event.loss:.8g}", "")
        elif isinstance(event, training.EvalMetrics):
            rows[event.step] = (str(event.step), f"{event.train_loss:.8g}", f"{event.val_loss:.8g}")

    trainer.train(on_event=collect)
    return [rows[step] for step in sorted(rows)], trainer.model.state_dict()


@pytest.mark.slow
@pytest.mark.browser
def test_five_sessions_train_at_once_and_a_sixth_is_told_the_cap(tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    runs = tmp_path / "runs"
    runs.mkdir()
    # One intra-op thread per job: five jobs on two cores, and the same arithmetic as the
    # re-runs in this process (the thread count changes the last digits).
    monkeypatch.setenv("TINYTF_MAX_JOBS", str(USERS))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    port = appdriver.free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = tmp_path / "streamlit.log"
    server = appdriver.start_app(runs, port, log)
    figures: dict[str, object] = {}
    setup_began = time.monotonic()
    try:
        appdriver.wait_healthy(base_url, server, log)
        with sync_playwright() as playwright:
            browser = appdriver.launch_chromium(playwright)
            urls: list[str] = []
            pages = []
            # Six people open the app at once, go to the Train page and fill in the form.
            for _ in range(USERS + 1):
                context = browser.new_context(viewport={"width": 1200, "height": 900})
                context.set_default_timeout(appdriver.PAGE_TIMEOUT_MS)
                context.on("request", lambda request: urls.append(request.url))
                page = context.new_page()
                page.goto(base_url, wait_until="commit")
                pages.append(page)
            for page in pages:
                appdriver.wait_for_title(page, "Data")
            for page in pages:
                page.locator("[data-testid='stSidebarNav'] a", has_text="Train").first.click()
            for user, page in enumerate(pages):
                appdriver.wait_for_title(page, "Train")
                appdriver.settle(page)
                fill_train_form(page, user)
            figures["setup_s"] = round(time.monotonic() - setup_began, 1)

            # 1. Five Starts in quick succession, then the sixth.
            probe = HealthProbe(base_url)
            probe.start()
            started = time.monotonic()
            for page in pages[:USERS]:
                page.bring_to_front()  # a page in the background may have its timers throttled
                page.get_by_role("button", name="Start", exact=True).click()
            for user, page in enumerate(pages[:USERS]):
                page.get_by_text(re.compile(rf"Started \S+_user{user}\.")).first.wait_for()
            figures["five_started_s"] = round(time.monotonic() - started, 1)
            sixth = pages[USERS]
            sixth.bring_to_front()
            clicked = time.monotonic()
            sixth.get_by_role("button", name="Start", exact=True).click()
            answer = sixth.get_by_text(re.compile(r"Started|Not started")).first
            answer.wait_for(timeout=1000 * ANSWER_TIMEOUT_S)
            figures["sixth_answer_s"] = round(time.monotonic() - clicked, 1)
            told = sixth.locator("[data-testid=stMain]").inner_text()
            assert "Not started" in told and f"TINYTF_MAX_JOBS={USERS}" in told, told
            statuses = [RunFolder(p).read_record()["status"] for p in runs.iterdir()]
            assert statuses == ["running"] * USERS  # the cap was reached, not a run ended

            # 2. While they train, the sixth person walks between pages; each switch is timed.
            switches = []
            deadline = started + SOAK_TIMEOUT_S
            while any(RunFolder(p).read_record()["status"] == "running" for p in runs.iterdir()):
                assert time.monotonic() < deadline, "the runs did not finish in time"
                for title in ("Runs", "Train"):
                    began = time.monotonic()
                    appdriver.open_page(sixth, title)
                    switches.append(time.monotonic() - began)
            training_s = time.monotonic() - started

            # 3. Every page shows its own run finished, with no error or traceback.
            for user, page in enumerate(pages[:USERS]):
                page.locator("[data-testid=stProgress]", has_text="· finished").first.wait_for()
                assert f"user{user}" in page.locator("[data-testid=stProgress]").first.inner_text()
                assert appdriver.problems(page) == [], appdriver.problems(page)
            assert appdriver.problems(sixth) == []
            probe.halt.set()
            probe.join(15)
            browser.close()
        foreign = appdriver.foreign_urls(urls)
        assert foreign == [], foreign
    finally:
        print(f"soak figures so far: {figures}")
        appdriver.stop_app(server)

    # 4. On disk: five finished runs, each holding its own user's config, and losses and
    #    weights equal to the same config trained alone.
    folders = sorted(runs.iterdir())
    assert len(folders) == USERS
    by_user = {RunFolder(p).read_record()["name"]: p for p in folders}
    assert sorted(by_user) == [f"user{i}" for i in range(USERS)]
    for user in range(USERS):
        run = by_user[f"user{user}"]
        record = RunFolder(run).read_record()
        config = RunFolder(run).read_config()
        assert record["status"] == "finished" and record["last_step"] == STEPS
        assert record["seed"] == config["train"]["seed"] == SEEDS[user]
        assert config["model"]["n_embd"] == FORM["Width (n_embd)"]
        last = load_checkpoint(run / "last.pt")
        assert last.extra["train_config"]["seed"] == SEEDS[user] and last.step == STEPS
        rows, weights = re_run_alone(run)
        assert rows == [tuple(row["_raw"][:3]) for row in read_metrics(run)], f"user{user}"
        assert same_weights(weights, last.model_state), f"user{user}"

    latencies = sorted(probe.latencies)
    figures |= {
        "load_average_1min": round(os.getloadavg()[0], 1),
        "sessions": USERS + 1,
        "training_s": round(training_s, 1),
        "health_probes": len(latencies),
        "health_failures": probe.failures,
        "health_median_ms": round(1000 * statistics.median(latencies)),
        "health_max_ms": round(1000 * latencies[-1]),
        "page_switches": len(switches),
        "switch_median_s": round(statistics.median(switches), 2),
        "switch_max_s": round(max(switches), 2),
    }
    print(f"soak: {figures}")
    assert probe.failures == 0
    # Bounds that catch a hung server, not a slow machine: the figures are the record.
    assert figures["switch_max_s"] < 60
