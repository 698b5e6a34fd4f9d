"""Lesson files: the same run, opened afresh, gives back the same text token for token."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tinytf.config import TrainConfig
from tinytf.corpus import load_corpus
from tinytf.lesson import (
    LessonError,
    fingerprint,
    lesson_from_json,
    lesson_to_json,
    load_lesson,
    make_lesson,
    replay_generation,
    replay_lesson,
    save_lesson,
)
from tinytf.runs import load_run, start_run
from tinytf.sampling import SamplerSettings, generate

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}
TRAIN = TrainConfig(
    batch_size=4, max_steps=6, eval_interval=3, eval_batches=1, warmup_steps=1, device="cpu"
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    trainer = start_run(load_corpus("zen"), "char", MODEL, TRAIN, name="lesson", root=root)
    trainer.train()
    return trainer.run.path


@pytest.fixture
def lesson(run_dir):
    loaded = load_run(run_dir, checkpoint="last")
    return make_lesson(
        loaded,
        prompt="Beautiful is",
        sampler=SamplerSettings(kind="top-p", top_p=0.9),
        seed=11,
        max_new_tokens=40,
        page="samplers",
        view={"column": "top-p", "position": 5},
        title="nucleus at 0.9",
    )


def test_lesson_reproduces_the_sampled_text(run_dir, lesson, tmp_path):
    loaded = load_run(run_dir, checkpoint="last")
    ids = loaded.tokenizer.encode("Beautiful is")
    expected = loaded.tokenizer.decode(
        generate(loaded.model, ids, 40, SamplerSettings(kind="top-p", top_p=0.9), seed=11).ids
    )
    path = save_lesson(tmp_path / "nucleus.lesson.json", lesson)

    reopened = load_lesson(path)
    assert reopened == lesson
    assert reopened.view == {"column": "top-p", "position": 5}
    assert replay_lesson(reopened, run_dir.parent) == expected
    _, generation = replay_generation(reopened, run_dir.parent)
    assert len(generation.steps) == 40


def test_lesson_replays_the_same_in_a_fresh_process(run_dir, lesson, tmp_path):
    path = save_lesson(tmp_path / "fresh.json", lesson)
    code = (
        "import sys; from tinytf.lesson import load_lesson, replay_lesson; "
        "sys.stdout.write(replay_lesson(load_lesson(sys.argv[1]), sys.argv[2]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(run_dir.parent)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout == replay_lesson(lesson, run_dir.parent)


def test_lesson_notices_a_checkpoint_that_moved_on(run_dir, lesson):
    moved = lesson_from_json(lesson_to_json(lesson).replace(f'"step": {lesson.step}', '"step": 1'))
    with pytest.raises(LessonError, match="now at step"):
        replay_lesson(moved, run_dir.parent)
    other = json.loads(lesson_to_json(lesson))
    other["weights"] = "0" * 16
    with pytest.raises(LessonError, match="not the ones"):
        replay_lesson(lesson_from_json(json.dumps(other)), run_dir.parent)


def test_lesson_of_a_missing_run(lesson, tmp_path):
    with pytest.raises(LessonError, match="not found"):
        replay_lesson(lesson, tmp_path)


def test_fingerprint_follows_the_weights(run_dir):
    a = load_run(run_dir, checkpoint="last").model
    b = load_run(run_dir, checkpoint="last").model
    assert fingerprint(a) == fingerprint(b)
    first = next(iter(b.parameters()))
    first.data[0] += 1e-3
    assert fingerprint(a) != fingerprint(b)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something-else"}, "not a lesson file"),
        ({"version": 99}, "version 99"),
        ({"run": "../../etc"}, "run:"),
        ({"run": 5}, "run:"),
        ({"checkpoint": "middle"}, "checkpoint:"),
        ({"step": True}, "step:"),
        ({"seed": -1}, "must be 0 or more"),
        ({"max_new_tokens": 10**6}, "max_new_tokens"),
        ({"prompt": ""}, "prompt:"),
        ({"sampler": {"kind": "top-k"}}, "sampler: top_k"),
        ({"sampler": {"kind": "greedy", "beam": 3}}, "unknown field 'beam'"),
        ({"view": [1, 2]}, "view:"),
    ],
)
def test_bad_lesson_fields_are_named(lesson, change, message):
    data = json.loads(lesson_to_json(lesson))
    data.update(change)
    with pytest.raises(LessonError, match=message):
        lesson_from_json(json.dumps(data))


def test_foreign_files_are_refused(tmp_path):
    with pytest.raises(LessonError, match="not valid JSON"):
        lesson_from_json("{nope")
    with pytest.raises(LessonError, match="not a lesson file"):
        lesson_from_json("[1, 2, 3]")
    with pytest.raises(LessonError, match="not valid JSON"):
        lesson_from_json(b"\xff\xfe\x00binary")
    with pytest.raises(LessonError, match="cannot be read"):
        load_lesson(tmp_path / "missing.json")
