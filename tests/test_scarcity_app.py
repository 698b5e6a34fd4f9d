"""The scarcity lab, the snapshot scrubber, "why this token", memorisation, attention badges
and lesson files: the lab's logic against the Trainer, then each view through AppTest.

Runs are tiny (a 6,000-character slice of pydoc, a few steps) and live in tmp folders
through TINYTF_RUNS; the job manager is process-wide, so every test stops its jobs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import scarcity
from explorer.cached import job_manager
from explorer.jobs import JobManager
from tinytf.config import ConfigError, TrainConfig
from tinytf.corpus import corpus_from_bytes, load_corpus
from tinytf.explain import explain_step, step_logits
from tinytf.lesson import lesson_to_json, make_lesson
from tinytf.memorization import memorization_rate
from tinytf.runs import load_run, start_run
from tinytf.sampling import SAMPLERS, SamplerSettings, generate
from tinytf.snapshots import list_snapshots, load_snapshot

APP = Path(__file__).resolve().parent.parent / "explorer" / "app.py"
PAGES = {
    "attention": "../pages/3_attention.py",
    "mask": "../pages/4_causal_mask.py",
    "samplers": "../pages/6_samplers.py",
    "runs": "../pages/7_runs.py",
    "scarcity": "../pages/8_scarcity_lab.py",
}
TIMEOUT = 90
MODEL = {"block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16}
TRAIN = TrainConfig(
    batch_size=4, max_steps=6, eval_interval=3, eval_batches=1, warmup_steps=1, device="cpu"
)
N_CHARS = 6000  # 5,400 training characters, 600 validation ones


def small_corpus():
    return corpus_from_bytes(load_corpus("pydoc").text[:N_CHARS].encode(), "pydoc-6k")


def open_page(name: str, **state) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    for key, value in state.items():
        at.session_state[key] = value
    return at.switch_page(PAGES[name]).run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


@pytest.fixture(autouse=True)
def short_samples(monkeypatch):
    """Memorisation samples of 40 characters keep the lab's runs quick."""
    monkeypatch.setattr(scarcity, "MEMO_TOKENS", {"char": 40, "word": 15})
    yield
    job_manager().stop_all()


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory) -> Path:
    """A finished char-level run on zen, trained with snapshots on."""
    root = tmp_path_factory.mktemp("runs")
    model = {"block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16}
    train = TrainConfig(
        batch_size=8, max_steps=20, eval_interval=10, eval_batches=2, device="cpu", snapshots=True
    )
    trainer = start_run(load_corpus("zen"), "char", model, train, name="snap", root=root)
    trainer.train()
    return trainer.run.path


@pytest.fixture
def runs_env(snapshot_run, monkeypatch) -> Path:
    monkeypatch.setenv("TINYTF_RUNS", str(snapshot_run.parent))
    return snapshot_run


# --- the lab's logic -----------------------------------------------------------------------


def test_training_tokens_are_what_the_trainer_trained_on(tmp_path):
    trainer = start_run(
        small_corpus(), "word", MODEL, TRAIN.replace(train_fraction=0.5), root=tmp_path
    )
    expected = trainer.tokenizer.token_strings(trainer.train_ids.tolist())
    assert scarcity.training_tokens(trainer.run.path) == expected


def test_lab_trains_every_fraction_in_one_job(tmp_path):
    manager = JobManager(max_jobs=1)
    job = scarcity.start_scarcity(
        manager,
        "me",
        small_corpus(),
        "char",
        MODEL,
        TRAIN,
        fractions=(1.0, 0.25),
        name="lab",
        root=tmp_path,
    )
    assert not manager.has_room()  # the whole lab holds one job slot
    job.thread.join(120)
    assert job.view().status == "finished", job.view().error

    [(group, runs)] = scarcity.list_groups(tmp_path).items()
    assert group == job.payload.group
    assert [scarcity.run_fraction(run) for run in runs] == [0.25, 1.0]
    rows = [scarcity.fraction_row(run) for run in runs]
    assert [row.train_tokens for row in rows] == [1350, 5400]  # 25% and all of 5,400
    for row in rows:
        assert row.step == TRAIN.max_steps
        assert row.gap == pytest.approx(row.final_val - row.final_train)
        assert set(row.memorization) == set(SAMPLERS)

    # The stored rate is the rate of the stored sample against the run's training text.
    memo = scarcity.read_memorization(runs[0].path)
    training = scarcity.training_tokens(runs[0].path)
    tokenizer = load_run(runs[0].path, checkpoint="last").tokenizer
    for kind, stored in memo["samplers"].items():
        assert len(stored["new_ids"]) == scarcity.MEMO_TOKENS["char"], kind
        generated = tokenizer.token_strings(stored["new_ids"])
        result = memorization_rate(generated, training, 8)
        assert (stored["rate"], stored["longest_span"]) == (result.rate, result.longest_span)
        assert stored["text"] == tokenizer.decode(memo["prompt_ids"] + stored["new_ids"])

    table = scarcity.scarcity_table(rows)
    assert list(table["data"]) == ["25%", "100%"]
    greedy = rows[0].memorization["greedy"]["rate"]
    assert table["copied · Greedy"][0] == pytest.approx(100 * greedy)
    assert list(table["gap (val − train)"]) == pytest.approx([row.gap for row in rows])


def test_a_fraction_too_small_for_the_context_is_named(tmp_path):
    model = {**MODEL, "block_size": 64}  # 1% of 5,400 is 54 tokens: no window of 65
    with pytest.raises(ConfigError, match="1% of the data"):
        scarcity.start_scarcity(
            JobManager(1),
            "me",
            small_corpus(),
            "char",
            model,
            TRAIN,
            fractions=(0.01, 1.0),
            root=tmp_path,
        )
    assert list(tmp_path.iterdir()) == []


def test_trainer_saves_a_snapshot_at_each_evaluation(snapshot_run):
    assert list_snapshots(snapshot_run) == [0, 10, 20]
    last = load_snapshot(snapshot_run, 20)
    model = load_run(snapshot_run, checkpoint="last").model
    expected = generate(
        model,
        last.sample_ids[:1].tolist(),
        len(last.sample_ids) - 1,
        SamplerSettings(kind="temperature", temperature=0.8),
        seed=0,
    )
    assert last.sample_ids.tolist() == expected.ids  # taken from the step-20 weights


# --- the lab page -------------------------------------------------------------------------


def test_lab_page_without_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTF_RUNS", str(tmp_path))
    at = open_page("scarcity")
    no_exception(at)
    assert "No lab yet" in texts(at.info)


def test_lab_page_starts_a_lab_and_shows_its_table(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTF_RUNS", str(tmp_path))
    at = open_page("scarcity", data_corpus=small_corpus())
    at.number_input(key="scar_steps").set_value(10)
    at.number_input(key="scar_eval_interval").set_value(5)
    at.multiselect(key="scar_fractions").set_value([0.25, 1.0])
    [start] = [b for b in at.button if b.label == "Train on every fraction"]
    at = start.click().run()
    no_exception(at)
    assert "Started" in texts(at.success)

    job = job_manager().get(f"scarcity:{at.session_state.scar_group}")
    job.thread.join(180)
    assert job.view().status == "finished", job.view().error
    at.run()
    no_exception(at)
    table = at.dataframe[0].value
    assert list(table["data"]) == ["25%", "100%"]
    assert list(table["steps"]) == [10, 10]
    assert table["copied · Greedy"].notna().all()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [trace["name"] for trace in spec["data"]] == [
        "25% · train",
        "25% · val",
        "100% · train",
        "100% · val",
    ]
    assert {b.label for b in at.download_button} >= {"PNG", "SVG", "Table (.csv)"}


def test_lab_page_refuses_a_corpus_too_small(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTF_RUNS", str(tmp_path))
    at = open_page("scarcity", data_source="zen")  # ~820 characters: 1% holds 7
    [start] = [b for b in at.button if b.label == "Train on every fraction"]
    at = start.click().run()
    no_exception(at)
    assert "Not started" in texts(at.error) and "1% of the data" in texts(at.error)


# --- scrubbing, badges, samplers ----------------------------------------------------------


def test_runs_page_scrubs_through_snapshots(runs_env):
    at = open_page("runs")
    no_exception(at)
    slider = at.select_slider(key="runs_scrub_step")
    assert list(slider.options) == ["0", "10", "20"]
    at = slider.set_value(10).run()
    no_exception(at)
    snap = load_snapshot(runs_env, 10)
    assert snap.sample_text.strip() in texts(at.code)
    passages = [h.value for h in at.get("html")]
    assert len(passages) == 2  # the losses at step 10, and their change since step 0
    assert "Change since step 0" in texts(at.caption)
    badges = texts(at.markdown)
    assert "green-badge[:material/check: rows sum to 1]" in badges


@pytest.mark.parametrize("page", ["attention", "mask"])
def test_attention_views_show_the_invariant_badges(runs_env, page):
    at = open_page(page)
    no_exception(at)
    badges = [m.value for m in at.markdown if "badge[" in m.value]
    assert len(badges) == 4 and all(b.startswith(":green-badge") for b in badges), badges
    labels = [b.label for b in at.download_button]
    assert labels.count("PNG") >= 3 and labels.count("SVG") >= 3
    if page == "attention":
        assert "Attention tensors (.npz)" in labels


def test_samplers_page_memorisation_and_why_this_token(runs_env):
    at = open_page("samplers", app_checkpoint="last", samp_why_column="top-k", samp_why_position=3)
    no_exception(at)
    captions = [c.value for c in at.caption if c.value.startswith("memorisation:")]
    assert len(captions) == len(SAMPLERS)

    # The metrics are the explained step of the same generation.
    loaded = load_run(runs_env, checkpoint="last")
    ids = loaded.tokenizer.encode("Beautiful is")[-16:]
    settings = SamplerSettings(kind="top-k", temperature=1.0, top_k=5)
    generation = generate(loaded.model, ids, 80, settings, seed=0, record_steps=True)
    step = generation.steps[3]
    choice = explain_step(
        step_logits(loaded.model, generation.ids[: step.position]), settings, step.draw
    )
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["tokens kept"] == f"5 of {loaded.tokenizer.vocab_size}"
    assert metrics["probability removed"] == f"{choice.mass_removed:.1%}"
    assert metrics["random draw u"] == f"{step.draw:.4f}"


def test_a_lesson_file_opens_the_same_view_and_text(runs_env):
    loaded = load_run(runs_env, checkpoint="last")
    lesson = make_lesson(
        loaded,
        prompt="Errors should",
        sampler=SamplerSettings(kind="top-p", top_p=0.7),
        seed=5,
        max_new_tokens=40,
        view={"column": "top-p", "position": 2},
        title="nucleus",
    )
    at = open_page("samplers")
    at.file_uploader(key="samp_lesson_upload").upload(
        "nucleus.lesson.json", lesson_to_json(lesson).encode(), "application/json"
    )
    at.run()
    no_exception(at)
    assert "Opened the lesson 'nucleus'" in texts(at.success)
    assert "shows exactly the lesson's text" in texts(at.success)
    assert at.session_state.samp_top_p == 0.7
    assert at.session_state.samp_prompt == "Errors should"
    assert at.session_state.app_run == str(runs_env)
    expected = loaded.tokenizer.decode(
        generate(
            loaded.model,
            loaded.tokenizer.encode("Errors should"),
            40,
            SamplerSettings(kind="top-p", top_p=0.7),
            seed=5,
        ).ids
    )
    assert expected in texts(at.code)


def test_a_foreign_lesson_file_gets_a_one_line_error(runs_env):
    at = open_page("samplers")
    at.file_uploader(key="samp_lesson_upload").upload(
        "x.json", b'{"format": "x"}', "application/json"
    )
    at.run()
    no_exception(at)
    assert "Lesson not opened: not a lesson file" in texts(at.error)
