"""Hostile files: doctored run folders and hostile corpora, through the core API, the
command line (real processes) and the app (AppTest).

A run folder is trained once, then each case copies it and breaks one file: a checkpoint
carrying a pickled object that would run code (it would create a marker file), a
truncated or empty checkpoint, a checkpoint of another vocabulary or shape, a checkpoint
whose recorded config lies about its tensors, a tokenizer file of another run (another
size, or the same size with other symbols), a binary tokenizer file, an empty config.
Every one is refused with a message naming the file and the problem, and the marker is
never created.

Hostile corpora: a real binary (a checkpoint) uploaded as text, bytes that are not UTF-8,
text with a NUL byte, one character repeated, and text mixing emoji (with joiners and
skin tones), combining marks, right-to-left scripts, direction marks, a BOM and CRLF.

Cases already proven elsewhere are not repeated: random bytes as best.pt (test_cli,
test_app), a file without the tinytf marker (test_checkpoint, test_app), empty and
whitespace-only uploads (test_corpus, test_app).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer.cached import job_manager
from tinytf import cli
from tinytf.checkpoint import CheckpointError
from tinytf.config import ConfigError, TrainConfig
from tinytf.corpus import CorpusError, corpus_from_bytes, load_corpus
from tinytf.runs import RunError, RunFolder, list_runs, load_run, start_run
from tinytf.sampling import SamplerSettings, generate
from tinytf.tokenizer import CharTokenizer, build_tokenizer
from tinytf.training import StepMetrics, Trainer

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = REPO_ROOT / "explorer" / "app.py"
ATTENTION = "../pages/3_attention.py"
TRAIN = "../pages/2_train.py"
TIMEOUT = 60  # seconds per AppTest script run (the first imports torch and plotly)

MODEL = {"block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16}
TRAIN_CONFIG = TrainConfig(batch_size=4, max_steps=4, eval_interval=2, eval_batches=1, device="cpu")

# Emoji with a zero-width joiner and a skin tone, decomposed accents (e + U+0301),
# Hebrew and Arabic with a right-to-left mark, a BOM in front and CRLF line endings.
UNICODE_MIX = (
    "\ufeffHello 👋🏽 world, the family 👨\u200d👩\u200d👧 waves.\r\n"
    "Cafe\u0301 and nai\u0308ve are spelt with combining marks.\r\n"
    "שלום עולם \u200fand مرحبا بالعالم sit beside Latin text.\r\n"
) * 12


class RunsCodeWhenUnpickled:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------------------------------
# Source runs and the doctoring of copies


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Three tiny finished runs on zen: char, word (another vocabulary), and char at
    width 32 (same vocabulary, another shape)."""
    root = tmp_path_factory.mktemp("sources")
    zen = load_corpus("zen")
    made = {}
    for key, level, model in [
        ("char", "char", MODEL),
        ("word", "word", MODEL),
        ("wide", "char", {**MODEL, "n_embd": 32}),
    ]:
        trainer = start_run(zen, level, model, TRAIN_CONFIG, name=key, root=root / key)
        trainer.train()
        made[key] = trainer.run.path
    return made


def _payload(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def plant_code(run: Path, sources: dict[str, Path], marker: Path) -> None:
    payload = _payload(run / "best.pt")
    payload["extra"]["note"] = RunsCodeWhenUnpickled(marker)
    torch.save(payload, run / "best.pt")


def truncate(run: Path, sources: dict[str, Path], marker: Path) -> None:
    data = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(data[: len(data) // 2])


def empty_checkpoint(run: Path, sources: dict[str, Path], marker: Path) -> None:
    (run / "best.pt").write_bytes(b"")


def other_vocabulary(run: Path, sources: dict[str, Path], marker: Path) -> None:
    shutil.copy(sources["word"] / "best.pt", run / "best.pt")


def other_shape(run: Path, sources: dict[str, Path], marker: Path) -> None:
    shutil.copy(sources["wide"] / "best.pt", run / "best.pt")


def config_lies(run: Path, sources: dict[str, Path], marker: Path) -> None:
    """The wide run's tensors under this run's recorded model config."""
    payload = _payload(sources["wide"] / "best.pt")
    payload["extra"]["model_config"] = _payload(run / "best.pt")["extra"]["model_config"]
    torch.save(payload, run / "best.pt")


def tokenizer_of_other_size(run: Path, sources: dict[str, Path], marker: Path) -> None:
    shutil.copy(sources["word"] / "tokenizer.json", run / "tokenizer.json")


def tokenizer_same_size_other_symbols(run: Path, sources: dict[str, Path], marker: Path) -> None:
    """As many symbols as the run's own tokenizer, but not the same ones."""
    own = RunFolder(run).read_json(run / "tokenizer.json")["vocab"]
    others = [chr(0x4E00 + i) for i in range(len(own) - 1)]  # CJK ideographs
    CharTokenizer(["<unk>", *others]).save(run / "tokenizer.json")


def binary_tokenizer(run: Path, sources: dict[str, Path], marker: Path) -> None:
    (run / "tokenizer.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(range(256)))


def empty_config(run: Path, sources: dict[str, Path], marker: Path) -> None:
    (run / "config.json").write_bytes(b"")


@dataclass(frozen=True)
class Case:
    name: str
    doctor: Callable[[Path, dict[str, Path], Path], None]
    error: type[Exception]  # what load_run raises
    message: str  # a regex the one-line message must match
    cli: bool = False  # also through `python -m tinytf sample`
    app: bool = False  # also through the Attention page


CASES = [
    Case("pickled-code", plant_code, CheckpointError,
         r"best\.pt: refused, it holds a pickled object \(\w+\.system\)", cli=True, app=True),
    Case("truncated", truncate, CheckpointError,
         r"best\.pt: not a readable checkpoint, truncated or damaged", cli=True, app=True),
    Case("empty-checkpoint", empty_checkpoint, CheckpointError,
         r"best\.pt: not a readable checkpoint"),
    Case("other-vocabulary", other_vocabulary, CheckpointError,
         r"best\.pt: saved for another model than config\.json \(vocab_size=", cli=True,
         app=True),
    Case("other-shape", other_shape, CheckpointError,
         r"best\.pt: saved for another model than config\.json \(n_embd=32 vs 16\)"),
    Case("config-lies-about-shape", config_lies, CheckpointError,
         r"best\.pt: \S+ has shape .* in the checkpoint but .* in the model", app=True),
    Case("tokenizer-other-size", tokenizer_of_other_size, RunError,
         r"tokenizer\.json: \d+ tokens, but config\.json says vocab_size=\d+"),
    Case("tokenizer-same-size-other-symbols", tokenizer_same_size_other_symbols, RunError,
         r"tokenizer\.json: does not match", cli=True, app=True),
    Case("binary-tokenizer", binary_tokenizer, RunError, r"tokenizer\.json: .*cannot be read"),
    Case("empty-config", empty_config, RunError, r"config\.json: unreadable"),
]  # fmt: skip
BY_NAME = {case.name: case for case in CASES}


@pytest.fixture(scope="module")
def doctored(sources, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Case name -> (its runs root holding one doctored copy of the char run, marker)."""
    made = {}
    for case in CASES:
        root = tmp_path_factory.mktemp(case.name)
        run = root / sources["char"].name
        shutil.copytree(sources["char"], run)
        marker = root.parent / f"{case.name}-MARKER"
        case.doctor(run, sources, marker)
        made[case.name] = (root, marker)
    return made


def the_run(root: Path) -> Path:
    [run] = [p for p in root.iterdir() if p.is_dir()]
    return run


def test_the_planted_payload_really_runs_code(sources, tmp_path):
    """Guards the marker tests below: an unsafe load of the planted file does run it."""
    run = tmp_path / "run"
    shutil.copytree(sources["char"], run)
    marker = tmp_path / "MARKER"
    plant_code(run, sources, marker)
    torch.load(run / "best.pt", weights_only=False)
    assert marker.exists()


# ---------------------------------------------------------------------------------------
# Core API


@pytest.mark.parametrize("name", list(BY_NAME))
def test_core_refuses_the_doctored_run(doctored, name):
    case = BY_NAME[name]
    root, marker = doctored[name]
    with pytest.raises(case.error, match=case.message):
        load_run(the_run(root), "best")
    assert not marker.exists()


def test_the_untouched_copy_loads(sources, tmp_path):
    """The doctoring, not the copying, is what the refusals above are about."""
    run = tmp_path / sources["char"].name
    shutil.copytree(sources["char"], run)
    assert load_run(run, "best").step == TRAIN_CONFIG.max_steps


# ---------------------------------------------------------------------------------------
# Command line: real processes, started together to share the start-up time


@pytest.fixture(scope="module")
def cli_results(doctored) -> dict[str, subprocess.CompletedProcess]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = {}
    for case in CASES:
        if not case.cli:
            continue
        run = the_run(doctored[case.name][0])
        command = [sys.executable, "-m", "tinytf", "sample", "--run", str(run)]
        command += ["--checkpoint", "best"]  # the doctored file; sample reads last.pt unasked
        command += ["--prompt", "Beautiful", "--tokens", "5", "--device", "cpu"]
        processes[case.name] = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
    results = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=180)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results


@pytest.mark.parametrize("name", [case.name for case in CASES if case.cli])
def test_cli_sample_refuses_with_one_error_line(doctored, cli_results, name):
    result = cli_results[name]
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""  # nothing was generated
    assert re.search(BY_NAME[name].message, lines[0]), lines[0]
    assert not doctored[name][1].exists()


# ---------------------------------------------------------------------------------------
# The app: the Attention page on the doctored run


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


@pytest.mark.parametrize("name", [case.name for case in CASES if case.app])
def test_attention_page_shows_the_refusal(doctored, monkeypatch, name):
    root, marker = doctored[name]
    monkeypatch.setenv("TINYTF_RUNS", str(root))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.sidebar.radio(key="app_checkpoint").set_value("best").run()  # the doctored file
    at.switch_page(ATTENTION).run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state.app_run == str(the_run(root))
    errors = texts(at.error)
    assert "cannot be loaded" in errors and re.search(BY_NAME[name].message, errors), errors
    assert not at.get("plotly_chart")  # nothing drawn from a refused model
    assert not marker.exists()


# ---------------------------------------------------------------------------------------
# Hostile corpora: core


def checkpoint_bytes(sources) -> bytes:
    return (sources["char"] / "best.pt").read_bytes()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (checkpoint_bytes, r"upload\.txt: looks binary \(NUL byte at offset \d+\), not text"),
        (lambda s: bytes(range(0x80, 0x100)) * 4,
         r"upload\.txt: not valid UTF-8 \(bad byte 0x80 at byte offset 0\)"),
        (lambda s: b"hello\x00world, nearly text", r"NUL byte at offset 5"),
    ],
    ids=["checkpoint-as-text", "not-utf8-without-nul", "nul-in-text"],
)  # fmt: skip
def test_binary_and_nul_text_refused_by_name(sources, make, message):
    with pytest.raises(CorpusError, match=message):
        corpus_from_bytes(make(sources), "upload.txt")


def short_training(corpus_text: str, level: str, steps: int = 3) -> tuple[Trainer, list]:
    tokenizer = build_tokenizer(level, corpus_text)
    config = TRAIN_CONFIG.replace(max_steps=steps, eval_interval=steps)
    trainer = Trainer(MODEL, config, tokenizer.encode(corpus_text), tokenizer)
    events: list = []
    trainer.train(on_event=events.append)
    return trainer, events


def test_one_repeated_character(tmp_path):
    corpus = corpus_from_bytes(b"a" * 3000, "aaaa.txt")

    # Characters: a vocabulary of <unk> and "a"; it trains and can only say "a".
    trainer, events = short_training(corpus.text, "char")
    assert trainer.tokenizer.vocab == ["<unk>", "a"]
    assert all(e.loss == e.loss for e in events if isinstance(e, StepMetrics))  # no NaN
    generation = generate(trainer.model, [1], 20, SamplerSettings(kind="temperature"), seed=0)
    assert set(trainer.tokenizer.decode(generation.new_ids).replace("<unk>", "")) <= {"a"}

    # Words: the whole text is one token, far too short for any context; said by name.
    tokenizer = build_tokenizer("word", corpus.text)
    with pytest.raises(ConfigError, match=r"^block_size: .* of the 1 tokens leaves 0"):
        Trainer(MODEL, TRAIN_CONFIG, tokenizer.encode(corpus.text), tokenizer)


def test_unicode_mix_normalised_round_trips_trains_and_samples(tmp_path, capsys):
    corpus = corpus_from_bytes(UNICODE_MIX.encode("utf-8"), "mix.txt")
    assert not corpus.text.startswith("\ufeff") and "\r" not in corpus.text
    assert corpus.text == UNICODE_MIX.removeprefix("\ufeff").replace("\r\n", "\n")

    for level in ("char", "word"):
        tokenizer = build_tokenizer(level, corpus.text)
        assert tokenizer.decode(tokenizer.encode(corpus.text)) == corpus.text
        trainer = start_run(corpus, level, MODEL, TRAIN_CONFIG, root=tmp_path / level)
        trainer.train()
        loaded = load_run(trainer.run.path, "best")
        assert loaded.tokenizer == tokenizer  # the vocabulary survives the JSON file

        # The command line samples from it with a right-to-left, emoji prompt.
        argv = ["sample", "--run", str(trainer.run.path), "--prompt", "שלום 👋🏽 Cafe\u0301"]
        assert cli.main([*argv, "--tokens", "8", "--device", "cpu"]) == 0
        out = capsys.readouterr().out
        # The word level does not know a final accent without its space: read as <unk>.
        assert out.startswith("שלום 👋🏽 Cafe\u0301" if level == "char" else "שלום 👋🏽 Cafe")


# ---------------------------------------------------------------------------------------
# Hostile corpora: the app's upload, then training on it and looking inside


@pytest.fixture
def empty_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTF_RUNS", str(tmp_path))
    yield tmp_path
    job_manager().stop_all()


def upload(data: bytes, name: str, level: str = "char") -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.radio(key="data_level").set_value(level).run()
    at.radio(key="data_source").set_value("upload").run()
    at.file_uploader[0].upload(name, data, "text/plain")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_upload_of_a_checkpoint_as_text_is_refused(empty_runs, sources):
    at = upload(checkpoint_bytes(sources), "weights.txt")
    assert "weights.txt: looks binary (NUL byte at offset" in texts(at.error)
    assert at.session_state.data_corpus is None or at.session_state.data_corpus.name == "zen"


def test_upload_of_one_repeated_character(empty_runs):
    at = upload(b"a" * 3000, "aaaa.txt")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Vocabulary"] == "2" and metrics["Tokens"] == "3,000"

    at.radio(key="data_level").set_value("word").run()
    assert not at.exception
    assert "too short for any context" in texts(at.warning)
    at.switch_page(TRAIN).run()
    [start] = [b for b in at.button if b.label == "Start"]
    start.click().run()
    assert not at.exception
    assert "Not started" in texts(at.error) or "too short" in texts(at.error)
    assert list_runs(empty_runs) == []


def test_upload_unicode_mix_train_and_look_inside(empty_runs):
    at = upload(UNICODE_MIX.encode("utf-8"), "mix.txt", level="word")
    text = UNICODE_MIX.removeprefix("\ufeff").replace("\r\n", "\n")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Characters"] == f"{len(text):,}"

    at.switch_page(TRAIN).run()
    at.number_input(key="train_f_max_steps").set_value(10)
    at.number_input(key="train_f_eval_interval").set_value(5)
    [start] = [b for b in at.button if b.label == "Start"]
    start.click().run()
    assert not at.exception, [e.message for e in at.exception]
    job = job_manager().get(at.session_state.train_watch)
    job.thread.join(60)
    assert job.view().status == "finished", job.view().error

    at.switch_page(ATTENTION).run()
    at.text_input(key="attn_prompt").input("שלום 👋🏽 Cafe\u0301 مرحبا").run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, texts(at.error)
    labels = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["xaxis"]["ticktext"]
    assert "שלום" in labels and "مرحبا" in labels, labels
