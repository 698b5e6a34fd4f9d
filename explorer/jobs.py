"""Background jobs that outlive a Streamlit script run. No Streamlit here.

Streamlit reruns a page's script on every click, and drops a session when the browser
disconnects; training cannot live inside either. A `JobManager` (one per process, held by
the app through `st.cache_resource`) owns one thread per job. A job is keyed by its run
folder and remembers the session that started it; the page only reads its thread-safe
event buffer, so a rerun, a page switch or a reload never stops or restarts training.

The work itself is any callable `target(job)`: it calls `job.post(event)` to report and
checks `job.stop_requested` to end early. The training adapter in `explorer/train_jobs.py`
wraps `tinytf.training.Trainer` this way; tests use plain functions.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

DEFAULT_MAX_JOBS = 4
RUNNING, FINISHED, STOPPED, FAILED = "running", "finished", "stopped", "failed"


class JobError(RuntimeError):
    """A job cannot be started or found; the message is meant for the user."""


class JobLimitError(JobError):
    """Starting one more job would pass the cap on concurrent jobs."""


def max_jobs_from_env(default: int = DEFAULT_MAX_JOBS) -> int:
    """The cap on concurrent training jobs: env TINYTF_MAX_JOBS, else `default`."""
    raw = os.environ.get("TINYTF_MAX_JOBS", "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        log.warning("TINYTF_MAX_JOBS=%r is not a whole number; using %d", raw, default)
        return default
    return max(1, value)


@dataclass
class JobView:
    """A consistent copy of a job's state, taken under its lock."""

    key: str
    owner: str
    status: str
    events: list[object]
    error: str | None
    started_at: float  # time.monotonic() at start
    first_event_at: float | None  # time.monotonic() of the first report
    ended_at: float | None

    @property
    def running(self) -> bool:
        return self.status == RUNNING


@dataclass
class Job:
    """One background job: its thread, its stop flag and what it has reported so far."""

    key: str  # the run folder, as a string
    owner: str  # session id of whoever started (or last reattached to) it
    target: Callable[[Job], str | None]
    label: str = ""
    payload: object = None  # what the adapter keeps beside the job (the trainer, ...)
    stop_event: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _events: list[object] = field(default_factory=list)
    _status: str = RUNNING
    _error: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    first_event_at: float | None = None
    ended_at: float | None = None
    thread: threading.Thread | None = None

    # -- called from the job's own thread -------------------------------------------------

    def post(self, event: object) -> None:
        """Record one report (a metrics record, a sample, ...); thread-safe."""
        with self._lock:
            if self.first_event_at is None:
                self.first_event_at = time.monotonic()
            self._events.append(event)

    @property
    def stop_requested(self) -> bool:
        return self.stop_event.is_set()

    def _run(self) -> None:
        try:
            outcome = self.target(self)
            status = outcome or (STOPPED if self.stop_requested else FINISHED)
            error = None
        except Exception as exc:  # the page shows it; the thread must not die silently
            log.exception("job %s failed", self.key)
            status, error = FAILED, f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._status, self._error = status, error
            self.ended_at = time.monotonic()

    # -- called from script runs ----------------------------------------------------------

    def stop(self) -> None:
        """Ask the job to stop at its next check; returns at once."""
        self.stop_event.set()

    def view(self, since: int = 0) -> JobView:
        """Status and the events from index `since` on."""
        with self._lock:
            return JobView(
                key=self.key,
                owner=self.owner,
                status=self._status,
                events=list(self._events[since:]),
                error=self._error,
                started_at=self.started_at,
                first_event_at=self.first_event_at,
                ended_at=self.ended_at,
            )

    @property
    def running(self) -> bool:
        with self._lock:
            return self._status == RUNNING


class JobManager:
    """The process-wide set of jobs, with a cap on how many run at once."""

    def __init__(self, max_jobs: int = DEFAULT_MAX_JOBS) -> None:
        self.max_jobs = max_jobs
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(
        self,
        key: str,
        owner: str,
        target: Callable[[Job], str | None],
        label: str = "",
        payload: object = None,
    ) -> Job:
        """Start `target` in a daemon thread under `key`.

        Raises:
            JobLimitError: `max_jobs` jobs are already running.
            JobError: a job with this key is still running.
        """
        with self._lock:
            running = [job for job in self._jobs.values() if job.running]
            if any(job.key == key for job in running):
                raise JobError(f"a job for {key} is already running")
            if len(running) >= self.max_jobs:
                raise JobLimitError(
                    f"{len(running)} training jobs are running, the most this server allows "
                    f"(TINYTF_MAX_JOBS={self.max_jobs}); wait for one to end or stop yours"
                )
            job = Job(key=key, owner=owner, target=target, label=label, payload=payload)
            job.thread = threading.Thread(target=job._run, name=f"job:{label or key}", daemon=True)
            self._jobs[key] = job
        job.thread.start()
        return job

    def get(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def jobs_of(self, owner: str) -> list[Job]:
        """This session's jobs, newest first."""
        with self._lock:
            mine = [job for job in self._jobs.values() if job.owner == owner]
        return sorted(mine, key=lambda job: job.started_at, reverse=True)

    def running_count(self) -> int:
        with self._lock:
            return sum(job.running for job in self._jobs.values())

    def has_room(self) -> bool:
        """Whether one more job may start now (checked again, atomically, by `start`)."""
        return self.running_count() < self.max_jobs

    def adopt(self, key: str, owner: str) -> Job | None:
        """Hand a job to a new session (a reload of the page that started it)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None:
                job.owner = owner
            return job

    def stop(self, key: str, owner: str) -> bool:
        """Stop the job under `key` if `owner` owns it; False when it does not."""
        job = self.get(key)
        if job is None or job.owner != owner:
            return False
        job.stop()
        return True

    def forget(self, key: str) -> None:
        """Drop a finished job from the table (its run folder stays on disk)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.running:
                del self._jobs[key]

    def stop_all(self, timeout: float = 10.0) -> None:
        """Ask every job to stop and wait for their threads (tests and shutdown)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop()
        for job in jobs:
            if job.thread is not None:
                job.thread.join(timeout)
