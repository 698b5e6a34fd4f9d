"""Names and paths: nothing a user types or uploads can write outside the runs folder,
and deleting a run deletes that run and nothing else.

Already proven in test_runs: `sanitize_name` on `../`, slashes, control characters and
500 characters; hostile names passed to `start_run` stay inside the root; `delete_run`
refuses a folder outside the root, `../`, the root itself, a nested folder and a link.
Here the same promises are checked where people reach them: the command line's --name,
the app's upload file name and Run name field, the Train page's ?run= address, the Runs
page's Delete button, and a few more deletions (links inside a run, "" and ".").
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.cached import job_manager
from tinytf import cli
from tinytf.config import TrainConfig
from tinytf.corpus import load_corpus
from tinytf.runs import MAX_NAME, RunError, RunFolder, delete_run, list_runs, start_run

APP = Path(__file__).resolve().parent.parent / "explorer" / "app.py"
TRAIN = "../pages/2_train.py"
RUNS = "../pages/7_runs.py"
TIMEOUT = 60

SMALL = ["--steps", "1", "--eval-interval", "1", "--block-size", "8", "--layers", "1"]
SMALL += ["--width", "16", "--heads", "2", "--batch-size", "4", "--device", "cpu"]
SAFE_FOLDER = re.compile(rf"^\d{{8}}-\d{{6}}_[A-Za-z0-9._-]{{1,{MAX_NAME + 4}}}$")

HOSTILE_NAMES = [
    "../../escape",
    "/etc/cron.d/tinytf",
    "..\\..\\windows\\system32",
    "bell\x07esc\x1b[2Jnul\x00nl\ntab\t",
    "é" * 250 + "x" * 250,
    "..",
    ".hidden",
]


def everything_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def assert_only_inside(tmp_path: Path, root: Path, before: set[Path]) -> None:
    """Every path created under tmp_path since `before` is `root`, a folder above it, or
    lies inside it."""
    created = everything_under(tmp_path) - before
    outside = [p for p in created if not (p.is_relative_to(root) or root.is_relative_to(p))]
    assert outside == [], outside
    for run in root.iterdir():
        assert SAFE_FOLDER.match(run.name), run.name


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


# ---------------------------------------------------------------------------------------
# Writing: the command line, the upload's file name, the Run name field


def test_cli_names_cannot_leave_the_runs_folder(tmp_path: Path, capsys):
    root = tmp_path / "deep" / "runs"
    before = everything_under(tmp_path)
    for name in HOSTILE_NAMES:
        argv = ["train", "--corpus", "zen", *SMALL, "--name", name, "--runs-dir", str(root)]
        assert cli.main(argv) == 0, capsys.readouterr().err
    assert_only_inside(tmp_path, root, before)
    assert len(list_runs(root)) == len(HOSTILE_NAMES)  # none overwrote another


@pytest.fixture
def app_runs(tmp_path: Path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("TINYTF_RUNS", str(root))
    yield root
    job_manager().stop_all()


def train_from_app(at: AppTest, run_name: str = "") -> Path:
    """Start a 2-step run on the Train page and wait for it; returns its folder."""
    at.switch_page(TRAIN).run()
    at.number_input(key="train_f_max_steps").set_value(2)
    at.number_input(key="train_f_eval_interval").set_value(1)
    at.text_input(key="train_name").input(run_name)
    [start] = [b for b in at.button if b.label == "Start"]
    start.click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "Started" in texts(at.success), texts(at.error)
    job = job_manager().get(at.session_state.train_watch)
    job.thread.join(60)
    assert job.view().status == "finished", job.view().error
    return Path(job.key)


UPLOAD_NAMES = [
    "../../../../tmp/evil.txt",
    "..\\..\\evil.txt",
    "/etc/passwd.txt",
    "x" * 500 + ".txt",
    "bell\x07\x1b[2J\n.txt",
]


@pytest.mark.parametrize(
    "name", UPLOAD_NAMES, ids=["dotdot", "backslash", "absolute", "500", "ctrl"]
)
def test_uploaded_file_names_cannot_leave_the_runs_folder(app_runs: Path, tmp_path, name):
    before = everything_under(tmp_path)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.radio(key="data_source").set_value("upload").run()
    at.file_uploader[0].upload(name, load_corpus("zen").text.encode(), "text/plain")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state.data_corpus.name == name  # the label is kept, as data only

    folder = train_from_app(at)
    assert folder.parent == app_runs
    assert_only_inside(tmp_path, app_runs, before)


def test_run_name_field_cannot_leave_the_runs_folder(app_runs: Path, tmp_path):
    before = everything_under(tmp_path)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    folder = train_from_app(at, run_name="../../../etc/cron.d/" + "y" * 500)
    assert folder.parent == app_runs
    assert_only_inside(tmp_path, app_runs, before)


# ---------------------------------------------------------------------------------------
# Reading a run named in the address: ?run= must name a run inside the root


@pytest.mark.parametrize(
    "value", ["..", ".", "../..", "/etc", "../../tmp", ".hidden", "x/../.hidden"]
)
def test_run_in_the_address_cannot_point_outside_the_root(app_runs: Path, value):
    (app_runs / ".hidden").mkdir()
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["run"] = value
    at.run().switch_page(TRAIN).run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state.train_watch is None


# ---------------------------------------------------------------------------------------
# Deleting


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source")
    trainer = start_run(
        load_corpus("zen"),
        "char",
        {"block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16},
        TrainConfig(batch_size=4, max_steps=2, eval_interval=1, eval_batches=1, device="cpu"),
        name="source",
        root=root,
    )
    trainer.train()
    return trainer.run.path


def copy_run(source: Path, root: Path, name: str) -> Path:
    """A copy of `source` in `root/name`, its record renamed so pickers tell copies apart."""
    target = root / name
    shutil.copytree(source, target)
    RunFolder(target).update_record(name=name)
    return target


def test_deleting_a_run_with_a_link_inside_keeps_the_links_target(trained_run, tmp_path):
    root = tmp_path / "runs"
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep me")
    run = copy_run(trained_run, root, "20200101-000000_with-links")
    (run / "to-precious").symlink_to(precious, target_is_directory=True)
    (run / "to-file").symlink_to(precious / "keep.txt")

    delete_run(root, run.name)
    assert not run.exists()
    assert (precious / "keep.txt").read_text() == "keep me"


@pytest.mark.parametrize("target", ["", ".", "./", "..", "runs", "../runs"])
def test_deleting_the_root_by_any_spelling_is_refused(trained_run, tmp_path, target):
    root = tmp_path / "runs"
    run = copy_run(trained_run, root, "20200101-000000_kept")
    with pytest.raises(RunError, match=r"refusing|no such run folder"):
        delete_run(root, target)
    assert run.is_dir() and root.is_dir()


def test_a_link_to_a_real_run_outside_is_not_followed(trained_run, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    outside = copy_run(trained_run, tmp_path / "elsewhere", "20200101-000000_outside")
    link = root / "20200101-000001_link"
    link.symlink_to(outside, target_is_directory=True)
    assert any(info.path == link for info in list_runs(root))  # listed, as a folder

    for target in (link, link.name, outside):
        with pytest.raises(RunError, match=r"is a link|not a run folder directly inside"):
            delete_run(root, target)
    assert (outside / "run.json").is_file()


def test_root_reached_through_a_link_still_deletes_only_inside(trained_run, tmp_path):
    real_root = tmp_path / "real-runs"
    run = copy_run(trained_run, real_root, "20200101-000000_run")
    linked_root = tmp_path / "linked-runs"
    linked_root.symlink_to(real_root, target_is_directory=True)
    with pytest.raises(RunError):
        delete_run(linked_root, "..")
    delete_run(linked_root, run.name)
    assert not run.exists() and real_root.is_dir() and linked_root.is_symlink()


def test_runs_page_delete_refuses_a_link_and_deletes_a_real_run(trained_run, app_runs, tmp_path):
    outside = copy_run(trained_run, tmp_path / "elsewhere", "20200101-000000_outside")
    link = app_runs / "20200101-000001_link"
    link.symlink_to(outside, target_is_directory=True)
    real = copy_run(trained_run, app_runs, "20200101-000002_real")

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page(RUNS).run()
    # The newest first: the real run is the page's default target, then only the link is left.
    for target, expected in ((real, f"Deleted {real.name}"), (link, "Not deleted: ")):
        at.selectbox(key="runs_target").set_value(str(target)).run()
        at.button(key="runs_ask_delete").click().run()
        at.button(key="runs_confirm_delete").click().run()
        assert not at.exception, [e.message for e in at.exception]
        shown = texts(at.error) + texts(at.success)
        assert expected in shown, shown
        if target == link:
            assert "is a link" in shown

    assert (outside / "run.json").is_file() and link.is_symlink()
    assert not real.exists()
