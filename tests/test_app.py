"""The Streamlit app through AppTest: every page opens, training runs in the background,
and bad input gets a readable error instead of a traceback.

AppTest renders one page per run: each test opens the entry point, then switches to a
page with `switch_page` (paths relative to explorer/app.py). Runs live in a tmp folder
through TINYTF_RUNS; the job manager is process-wide, so every test stops its jobs.
"""

from __future__ import annotations

import base64
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer.cached import job_manager
from tinytf.config import TrainConfig
from tinytf.corpus import load_corpus
from tinytf.runs import list_runs, load_run, start_run
from tinytf.training import Trainer

APP = Path(__file__).resolve().parent.parent / "explorer" / "app.py"
PAGES = {
    "data": "../pages/1_data.py",
    "train": "../pages/2_train.py",
    "attention": "../pages/3_attention.py",
    "mask": "../pages/4_causal_mask.py",
    "block": "../pages/5_block_stepper.py",
    "samplers": "../pages/6_samplers.py",
    "runs": "../pages/7_runs.py",
}
TIMEOUT = 60  # seconds per script run: the first one imports torch and plotly


def open_page(name: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    return at.switch_page(PAGES[name]).run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def sent_matrix(z: object) -> np.ndarray:
    """A heatmap's z as the browser receives it: a base64 typed array (plotly 6 and later,
    for numpy input) or nested lists."""
    if isinstance(z, dict):
        flat = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"])
        return flat.reshape([int(n) for n in str(z["shape"]).split(",")])
    return np.array(z, dtype=float)


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """One finished char-level run on zen, trained for a few steps."""
    root = tmp_path_factory.mktemp("runs")
    trainer = start_run(
        load_corpus("zen"),
        "char",
        {"block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16},
        TrainConfig(batch_size=8, max_steps=30, eval_interval=10, eval_batches=2, device="cpu"),
        name="fixture",
        root=root,
    )
    trainer.train()
    return root


@pytest.fixture
def runs_dir(trained_runs, monkeypatch):
    monkeypatch.setenv("TINYTF_RUNS", str(trained_runs))
    return trained_runs


@pytest.fixture
def empty_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTF_RUNS", str(tmp_path))
    return tmp_path


@pytest.fixture(autouse=True)
def stop_jobs():
    yield
    job_manager().stop_all()


# --- every page opens --------------------------------------------------------------------


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_opens_without_runs(empty_runs, page):
    at = open_page(page)
    no_exception(at)
    assert at.title[0].value  # the page drew its title


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_opens_with_a_trained_run(runs_dir, page):
    at = open_page(page)
    no_exception(at)
    assert not at.error, texts(at.error)
    assert at.sidebar.selectbox(key="app_run").value is not None


def test_the_entry_point_routes_to_the_data_page_and_shares_the_sidebar(runs_dir):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    no_exception(at)
    assert at.title[0].value == "Data"
    sidebar = texts(at.sidebar.caption)
    assert "Device:" in sidebar and "Training jobs running" in sidebar


# --- Data page ---------------------------------------------------------------------------


def test_data_page_counts_and_escapes_the_preview(empty_runs):
    at = open_page("data")
    metrics = {m.label: m.value for m in at.metric}
    zen = load_corpus("zen").text
    assert metrics["Characters"] == f"{len(zen):,}"
    assert metrics["Tokens"] == f"{len(zen):,}"  # char level

    at.radio(key="data_level").set_value("word").run()
    words = {m.label: m.value for m in at.metric}
    assert int(words["Tokens"].replace(",", "")) < len(zen) // 3

    at.radio(key="data_source").set_value("upload").run()
    at.file_uploader[0].upload("evil.txt", b"<b>bold</b> <script>x</script> " * 20, "text/plain")
    at.run()
    no_exception(at)
    preview = next(m.value for m in at.markdown if "<span" in m.value)
    # Cut into tokens, every piece escaped: no tag of the corpus survives.
    assert "<script>" not in preview and "<b>" not in preview
    assert "&lt;" in preview and "&gt;" in preview


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty"), (b"\x00\x01binary\xff", "binary"), (b"\xff\xfe\xfa text", "UTF-8")],
)
def test_bad_uploads_get_an_error_not_a_traceback(empty_runs, content, reason):
    at = open_page("data")
    at.radio(key="data_source").set_value("upload").run()
    at.file_uploader[0].upload("bad.txt", content, "text/plain")
    at.run()
    no_exception(at)
    assert reason in texts(at.error)


def test_oversized_upload_is_refused(empty_runs, monkeypatch):
    monkeypatch.setattr("explorer.corpus_view.MAX_UPLOAD_BYTES", 100)
    at = open_page("data")
    at.radio(key="data_source").set_value("upload").run()
    at.file_uploader[0].upload("big.txt", b"word " * 100, "text/plain")
    at.run()
    no_exception(at)
    assert "upload limit" in texts(at.error)


def test_missing_server_path_is_an_error(empty_runs, tmp_path):
    at = open_page("data")
    at.radio(key="data_source").set_value("path").run()
    at.text_input(key="data_path").input(str(tmp_path / "nope.txt")).run()
    no_exception(at)
    assert "no such file" in texts(at.error)


# --- Train page --------------------------------------------------------------------------


def press_start(at: AppTest) -> AppTest:
    [start] = [b for b in at.button if b.label == "Start"]
    return start.click().run()


def test_train_start_metrics_stop_and_runs_page(empty_runs):
    at = open_page("train")
    at.number_input(key="train_f_max_steps").set_value(5000)
    at.number_input(key="train_f_eval_interval").set_value(10)
    at = press_start(at)
    no_exception(at)
    assert "Started" in texts(at.success)
    run_folder = at.session_state.train_watch
    assert at.query_params["run"] == Path(run_folder).name  # a reload finds the job

    job = job_manager().get(run_folder)
    assert job is not None and job.running
    deadline = time.monotonic() + 60
    while not any(m.value != "—" for m in at.metric if m.label == "tokens/s"):
        assert time.monotonic() < deadline, "no metrics arrived"
        time.sleep(0.3)
        at.run()  # what the fragment does once a second
    no_exception(at)
    assert any(c.value for c in at.code)  # the step-0 evaluation's sample
    # The CPU's peak is known, so the model FLOPs utilisation stands beside the speed.
    mfu = next(m.value for m in at.metric if m.label == "MFU")
    assert mfu.endswith("%") and 0 < float(mfu.rstrip("%")) < 100

    at.button(key="train_stop").click().run()
    job.thread.join(30)
    assert job.view().status == "stopped"
    at.run()
    assert "stopped" in at.get("progress")[0].proto.text

    runs = open_page("runs")
    no_exception(runs)
    table = runs.dataframe[0].value
    row = table[table["folder"] == Path(run_folder).name]
    assert list(row["status"]) == ["stopped"]

    # Resume continues the same folder for the steps asked, in a new job.
    stopped_at = job.payload.trainer.step
    at.number_input(key="train_resume_steps").set_value(5)
    at.button(key="train_resume").click().run()
    no_exception(at)
    assert "Resumed" in texts(at.success)
    resumed = job_manager().get(run_folder)
    assert resumed is not job
    resumed.thread.join(30)
    assert resumed.view().status == "finished"
    assert resumed.payload.trainer.step == stopped_at + 5


def test_live_model_of_a_finished_job_in_the_sidebar(empty_runs):
    at = open_page("train")
    at.number_input(key="train_f_max_steps").set_value(20)
    at.number_input(key="train_f_eval_interval").set_value(10)
    at = press_start(at)
    job_manager().get(at.session_state.train_watch).thread.join(60)
    at.run()
    assert "finished" in at.get("progress")[0].proto.text
    at.sidebar.radio(key="app_checkpoint").set_value("live").run()
    at.switch_page(PAGES["attention"]).run()
    no_exception(at)
    assert "live (step 20)" in texts(at.caption)


def test_earlier_runs_overlay_on_the_train_chart(runs_dir):
    at = open_page("train")
    [fixture] = list_runs(runs_dir)
    at.multiselect(key="train_overlay").set_value([str(fixture.path)]).run()
    no_exception(at)
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any(trace["name"].endswith("· val") for trace in figure["data"])


def test_a_reload_reattaches_to_the_running_job(empty_runs):
    at = open_page("train")
    at.number_input(key="train_f_max_steps").set_value(5000)
    at = press_start(at)
    run_name = at.query_params["run"]

    # A new session (a reload) with the same URL.
    reloaded = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    reloaded.query_params["run"] = run_name
    reloaded.run().switch_page(PAGES["train"]).run()
    no_exception(reloaded)
    assert Path(reloaded.session_state.train_watch).name == run_name
    assert not reloaded.button(key="train_stop").disabled  # adopted: it may stop it
    assert at.session_state.train_watch == reloaded.session_state.train_watch


def test_impossible_config_and_too_short_corpus_are_refused(empty_runs):
    at = open_page("train")
    at.number_input(key="train_f_n_head").set_value(3)  # 3 heads do not divide 64
    at = press_start(at)
    no_exception(at)
    assert "n_head" in texts(at.error)
    assert not list_runs()

    data = open_page("data")
    data.radio(key="data_source").set_value("upload").run()
    data.file_uploader[0].upload("short.txt", b"abcdefghij", "text/plain").run()
    data.switch_page(PAGES["train"]).run()
    data.number_input(key="train_f_block_size").set_value(32)
    data = press_start(data)
    no_exception(data)
    assert "block_size" in texts(data.error)


def test_failure_inside_the_job_shows_on_the_train_page(empty_runs, monkeypatch):
    original = Trainer._train_step

    def fail_at_three(self, forward):
        if self.step == 2:
            raise RuntimeError("simulated fault")
        return original(self, forward)

    monkeypatch.setattr(Trainer, "_train_step", fail_at_three)
    at = press_start(open_page("train"))
    job = job_manager().get(at.session_state.train_watch)
    job.thread.join(30)
    at.run()
    no_exception(at)
    assert "simulated fault" in texts(at.error) and "marked failed" in texts(at.error)
    assert load_run(job.key, "best").step == 0  # the step-0 checkpoint is intact


def test_concurrent_job_cap_is_told(empty_runs, monkeypatch):
    manager = job_manager()
    monkeypatch.setattr(manager, "max_jobs", 1)
    first = open_page("train")
    first.number_input(key="train_f_max_steps").set_value(5000)
    first = press_start(first)
    assert "Started" in texts(first.success)

    second = open_page("train")
    second = press_start(second)
    no_exception(second)
    assert "TINYTF_MAX_JOBS" in texts(second.error)


def test_runs_of_the_same_name_get_labels_of_their_own(empty_runs):
    """Regression: two runs trained with the same settings share a name; Streamlit tells a
    widget's options apart by label, so equal labels let only the oldest be picked."""
    from explorer.shell import run_choices

    model = {"block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16}
    train = TrainConfig(batch_size=4, max_steps=2, eval_interval=2, eval_batches=1, device="cpu")
    for _ in range(2):
        start_run(load_corpus("zen"), "char", model, train, name="same", root=empty_runs).train()
    assert len(run_choices()) == 2

    runs = open_page("runs")
    no_exception(runs)
    pickers = [runs.sidebar.selectbox(key="app_run"), runs.selectbox(key="runs_target")]
    for widget in [*pickers, runs.multiselect(key="runs_selected")]:
        labels = list(widget.options)  # AppTest lists the options as their labels
        assert len(set(labels)) == 2, labels


def test_uniform_guess_line_only_for_one_shared_vocabulary(empty_runs):
    """ln(V) belongs to one vocabulary: with a char run and a word run overlaid the line
    would be wrong for one of them, so it is left out."""
    model = {"block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16}
    train = TrainConfig(batch_size=4, max_steps=2, eval_interval=2, eval_batches=1, device="cpu")
    vocab = {}
    for level in ("char", "word"):
        trainer = start_run(load_corpus("zen"), level, model, train, root=empty_runs)
        trainer.train()
        vocab[str(trainer.run.path)] = trainer.model_config.vocab_size

    def uniform_lines(at: AppTest) -> list[str]:
        chart = next(
            json.loads(c.proto.spec)
            for c in at.get("plotly_chart")
            if "Validation and training loss" in c.proto.spec
        )
        notes = chart["layout"].get("annotations", [])
        return [n["text"] for n in notes if n["text"].startswith("uniform guess")]

    runs = open_page("runs")
    no_exception(runs)
    assert sorted(runs.multiselect(key="runs_selected").value) == sorted(vocab)
    assert uniform_lines(runs) == []

    char_run = next(path for path in vocab if path.endswith("char"))
    runs.multiselect(key="runs_selected").set_value([char_run]).run()
    no_exception(runs)
    assert uniform_lines(runs) == [
        f"uniform guess ln({vocab[char_run]}) = {math.log(vocab[char_run]):.2f}"
    ]


# --- analysis pages on a trained run ------------------------------------------------------


def test_attention_renders_for_a_trained_run(runs_dir):
    at = open_page("attention")
    at.text_input(key="attn_prompt").input("Beautiful").run()
    no_exception(at)
    charts = at.get("plotly_chart")
    assert len(charts) == 6  # the head, four step panels, the overview grid
    figure = json.loads(charts[0].proto.spec)
    assert figure["layout"]["xaxis"]["ticktext"] == list("Beautiful")
    pattern = sent_matrix(figure["data"][0]["z"])
    assert pattern.shape == (9, 9)
    assert pattern[0][1] == 0.0 and abs(sum(pattern[-1]) - 1) < 1e-5  # causal, rows sum to 1


def test_attention_marks_unknown_tokens(runs_dir):
    at = open_page("attention")
    at.text_input(key="attn_prompt").input("Zebra€").run()
    no_exception(at)
    assert "'€'" in texts(at.warning)
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "⟨€⟩?" in figure["layout"]["xaxis"]["ticktext"]


def test_empty_prompt_is_an_error(runs_dir):
    at = open_page("attention")
    at.text_input(key="attn_prompt").input("").run()
    no_exception(at)
    assert "empty" in texts(at.error)


def test_causal_mask_check_passes(runs_dir):
    at = open_page("mask")
    no_exception(at)
    assert "passed" in texts(at.success)
    assert "Largest change of any logit at positions 0" in texts(at.markdown)


def test_block_stepper_walks_to_the_end_and_agrees(runs_dir):
    at = open_page("block")
    for _ in range(12):
        at.button(key="block_next").click().run()
    no_exception(at)
    assert at.session_state.block_step == 12
    assert "agrees" in texts(at.success)
    at.button(key="block_back").click().run()
    assert at.session_state.block_step == 11

    at.radio(key="block_kind").set_value("trained").run()
    no_exception(at)


def test_sampler_knob_changes_its_column_only(runs_dir):
    from explorer.models import generate_cached

    generate_cached.clear()  # so that no earlier test's entry answers for the new knob
    at = open_page("samplers")
    no_exception(at)
    before = [c.value for c in at.code]
    assert len(before) == 5  # greedy, temperature, top-k, top-p, temperature-top-p
    assert texts(at.caption).count("model ran for all 80 steps") == 5

    at.slider(key="samp_temperature").set_value(2.0).run()
    no_exception(at)
    after = [c.value for c in at.code]
    assert after[0] == before[0]  # greedy stays
    assert after[1] != before[1]  # the temperature column re-sampled
    assert after[2:] == before[2:]
    assert "distinct-1" in texts(at.caption)
    # The turned column started from the logits it held (the first step's at least, whose
    # context is the prompt alone); the four others were not computed again.
    assert texts(at.caption).count("model ran for all 80 steps") == 4
    assert texts(at.caption).count("re-sampled the logits held from before") == 1


# --- damaged checkpoints --------------------------------------------------------------------


@pytest.fixture
def damaged_run(trained_runs, tmp_path, monkeypatch):
    """A copy of the trained run whose last.pt, the pages' default, the test replaces."""
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(trained_runs, root)
    monkeypatch.setenv("TINYTF_RUNS", str(root))
    [run] = list_runs(root)
    return run.path / "last.pt"


def test_corrupt_checkpoint_is_an_error(damaged_run):
    damaged_run.write_bytes(b"this is not a checkpoint at all")
    at = open_page("attention")
    no_exception(at)
    assert "cannot be loaded" in texts(at.error)


def test_foreign_checkpoint_is_an_error(damaged_run):
    torch.save({"state_dict": {"w": torch.zeros(2)}}, damaged_run)
    at = open_page("samplers")
    no_exception(at)
    assert "not a tinytf checkpoint" in texts(at.error)
