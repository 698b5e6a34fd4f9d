"""Background jobs: the manager's bookkeeping on plain functions, then real training runs
started, stopped, resumed and failed through the explorer's adapter."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from explorer.jobs import (
    FAILED,
    FINISHED,
    STOPPED,
    JobError,
    JobLimitError,
    JobManager,
    max_jobs_from_env,
)
from explorer.train_jobs import (
    TrainingPayload,
    job_curve,
    job_progress,
    resume_training,
    rows_curve,
    start_training,
)
from tinytf.config import TrainConfig
from tinytf.corpus import load_corpus
from tinytf.runs import load_run, read_metrics
from tinytf.training import EvalMetrics, StepMetrics, Trainer

TINY_MODEL = {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}
TINY_TRAIN = TrainConfig(
    batch_size=4, max_steps=12, eval_interval=4, eval_batches=2, warmup_steps=2, device="cpu"
)


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the job")
        time.sleep(0.02)


def counter(job) -> None:
    """Posts 0, 1, 2, ... until asked to stop."""
    count = 0
    while not job.stop_requested:
        job.post(count)
        count += 1
        time.sleep(0.005)


@pytest.fixture
def manager():
    manager = JobManager(max_jobs=2)
    yield manager
    manager.stop_all()


# --- the manager on plain functions --------------------------------------------------------


def test_job_reports_events_and_stops_when_asked(manager):
    job = manager.start("runs/a", "alice", counter)
    wait_for(lambda: len(job.view().events) >= 3)
    assert job.view().events[:3] == [0, 1, 2]
    assert job.view(since=2).events[0] == 2

    assert manager.stop("runs/a", "bob") is False  # not bob's job
    assert job.running
    assert manager.stop("runs/a", "alice") is True
    job.thread.join(5)
    view = job.view()
    assert view.status == STOPPED and view.ended_at is not None
    assert view.first_event_at >= view.started_at


def test_finished_and_failed_jobs_record_their_outcome(manager):
    done = manager.start("runs/done", "alice", lambda job: job.post("only"))
    done.thread.join(5)
    assert done.view().status == FINISHED

    def broken(job):
        raise ZeroDivisionError("division by zero at step 3")

    failed = manager.start("runs/failed", "alice", broken)
    failed.thread.join(5)
    view = failed.view()
    assert view.status == FAILED
    assert view.error == "ZeroDivisionError: division by zero at step 3"


def test_cap_on_concurrent_jobs_and_one_job_per_key(manager):
    manager.start("runs/a", "alice", counter)
    with pytest.raises(JobError, match="already running"):
        manager.start("runs/a", "alice", counter)
    manager.start("runs/b", "bob", counter)
    assert not manager.has_room()
    with pytest.raises(JobLimitError, match="TINYTF_MAX_JOBS=2"):
        manager.start("runs/c", "carol", counter)

    manager.stop("runs/a", "alice")
    manager.get("runs/a").thread.join(5)
    assert manager.start("runs/c", "carol", counter).running


def test_sessions_see_only_their_jobs_and_a_reload_adopts(manager):
    manager.start("runs/a", "alice", counter)
    manager.start("runs/b", "bob", counter)
    assert [job.key for job in manager.jobs_of("alice")] == ["runs/a"]

    # Alice reloads the page: a new session id finds the job through the URL.
    manager.adopt("runs/a", "alice-after-reload")
    assert manager.stop("runs/a", "alice") is False
    assert manager.stop("runs/a", "alice-after-reload") is True


def test_forget_drops_only_ended_jobs(manager):
    job = manager.start("runs/a", "alice", counter)
    manager.forget("runs/a")
    assert manager.get("runs/a") is job
    job.stop()
    job.thread.join(5)
    manager.forget("runs/a")
    assert manager.get("runs/a") is None


def test_max_jobs_from_env(monkeypatch):
    monkeypatch.delenv("TINYTF_MAX_JOBS", raising=False)
    assert max_jobs_from_env(default=4) == 4
    monkeypatch.setenv("TINYTF_MAX_JOBS", "7")
    assert max_jobs_from_env() == 7
    monkeypatch.setenv("TINYTF_MAX_JOBS", "0")
    assert max_jobs_from_env() == 1
    monkeypatch.setenv("TINYTF_MAX_JOBS", "many")
    assert max_jobs_from_env(default=3) == 3


# --- real training through the adapter -----------------------------------------------------


@pytest.fixture
def zen():
    return load_corpus("zen")


def test_training_job_reports_stops_and_resumes(manager, zen, tmp_path):
    train = TINY_TRAIN.replace(max_steps=400)
    job = start_training(manager, "alice", zen, "char", TINY_MODEL, train, "t", tmp_path)
    wait_for(lambda: any(isinstance(e, StepMetrics) for e in job.view().events))
    first = job.view().events[0]
    assert isinstance(first, EvalMetrics) and first.step == 0  # the step-0 evaluation

    manager.stop(job.key, "alice")
    job.thread.join(30)
    view = job.view()
    assert view.status == STOPPED
    stopped_at = max(e.step for e in view.events if isinstance(e, StepMetrics))
    record = job.payload.trainer.run.read_record()
    assert record["status"] == "stopped" and record["last_step"] == stopped_at
    assert load_run(job.key, "last").step == stopped_at

    resumed = resume_training(manager, "alice", job.key, extra_steps=4)
    resumed.thread.join(30)
    assert resumed.view().status == FINISHED
    assert resumed.payload.start_step == stopped_at
    steps = [e.step for e in resumed.view().events if isinstance(e, StepMetrics)]
    assert steps == list(range(stopped_at + 1, stopped_at + 5))
    # The chart of the resumed job starts with the rows written before the resume.
    curve = job_curve(resumed.payload, resumed.view().events)
    assert curve.eval_steps[0] == 0 and curve.steps[-1] == stopped_at + 4


def test_live_model_is_the_latest_evaluation(manager, zen, tmp_path):
    job = start_training(manager, "alice", zen, "char", TINY_MODEL, TINY_TRAIN, "live", tmp_path)
    job.thread.join(60)
    assert job.view().status == FINISHED
    model, step = job.payload.live_model()
    assert step == TINY_TRAIN.max_steps  # the last step is always evaluated
    saved = load_run(job.key, "last").model.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_failure_inside_the_job_marks_the_run_and_keeps_its_checkpoint(
    manager, zen, tmp_path, monkeypatch
):
    original = Trainer._train_step

    def fail_at_six(self, forward):
        if self.step == 5:
            raise RuntimeError("simulated device fault")
        return original(self, forward)

    monkeypatch.setattr(Trainer, "_train_step", fail_at_six)
    job = start_training(manager, "alice", zen, "char", TINY_MODEL, TINY_TRAIN, "f", tmp_path)
    job.thread.join(60)
    view = job.view()
    assert view.status == FAILED
    assert view.error.startswith("TrainingError") and "simulated device fault" in view.error
    record = job.payload.trainer.run.read_record()
    assert record["status"] == "failed" and "simulated device fault" in record["error"]
    assert load_run(job.key, "best").step == 4  # the evaluation at step 4 was saved


def test_start_refused_beyond_the_cap_leaves_no_folder(zen, tmp_path):
    manager = JobManager(max_jobs=1)
    blocker = threading.Event()
    manager.start("other", "bob", lambda job: blocker.wait(10))
    try:
        with pytest.raises(JobLimitError):
            start_training(manager, "alice", zen, "char", TINY_MODEL, TINY_TRAIN, "x", tmp_path)
        assert not any(tmp_path.iterdir())
    finally:
        blocker.set()
        manager.stop_all()


# --- what the page draws, from events ------------------------------------------------------


def make_payload(tmp_path, start_step: int = 0, history=()) -> TrainingPayload:
    class FakeTrainer:
        train_config = TrainConfig(max_steps=100)

    return TrainingPayload(FakeTrainer(), tmp_path, "zen", "char", start_step, list(history))


def step(n: int, loss: float = 2.0) -> StepMetrics:
    return StepMetrics(n, 100, loss, 1e-3 * n, 500.0, 0.1 * n, None)


def test_progress_extrapolates_this_jobs_pace(tmp_path):
    payload = make_payload(tmp_path, start_step=40)
    events = [step(41), step(50, loss=1.5)]
    progress = job_progress(payload, events, started_at=100.0, now=110.0)
    # 10 steps in 10 s, 50 steps to go.
    assert progress.seconds_left == pytest.approx(50.0)
    assert (progress.step, progress.last_loss, progress.lr) == (50, 1.5, 0.05)
    assert progress.fraction == 0.5
    assert progress.sample is None


def test_curves_from_events_and_from_metrics_rows(tmp_path):
    history = [
        {"step": 0, "train_loss": 4.1, "val_loss": 4.2},
        {"step": 1, "train_loss": 3.9, "val_loss": None},
    ]
    evaluation = EvalMetrics(2, 3.0, 3.3, "text", 3.3, 2)
    curve = job_curve(make_payload(tmp_path, 1, history), [step(2, 3.5), evaluation], "r")
    assert (curve.steps, curve.train_loss) == ([1, 2], [3.9, 3.5])
    assert (curve.eval_steps, curve.val_loss, curve.eval_train_loss) == (
        [0, 2],
        [4.2, 3.3],
        [4.1, 3.0],
    )
    assert rows_curve("r", history).eval_steps == [0]


def test_metrics_written_by_a_job_match_its_events(manager, zen, tmp_path):
    job = start_training(manager, "alice", zen, "char", TINY_MODEL, TINY_TRAIN, "m", tmp_path)
    job.thread.join(60)
    from_disk = rows_curve("disk", read_metrics(job.key))
    from_events = job_curve(job.payload, job.view().events)
    # On disk an evaluated step's row holds the evaluation instead of the batch loss.
    evaluated = set(from_events.eval_steps)
    assert from_disk.steps == [s for s in from_events.steps if s not in evaluated]
    assert from_disk.eval_steps == from_events.eval_steps
    assert from_disk.val_loss == pytest.approx(from_events.val_loss, rel=1e-6)
