"""One background thread that runs the app's heavy jobs, one at a time, in submission order.

The UI submits a job (a function taking ``progress`` and ``cancel``) and polls its :class:`Job` for
progress; it never blocks on the work itself, so the window stays responsive. Cancelling sets the job's
``threading.Event``: the engine checks it between decoding steps, so a running job stops within a step,
and a queued job is dropped at once.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from engine import Eta, Message, eta_text

log = logging.getLogger(__name__)

JobFunction = Callable[[Callable[[Any], None], threading.Event], Any]


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass
class Job:
    id: int
    kind: str  # generate, mod, timing, download
    label: str  # what the user sees in the job list
    owner: str  # the browser session that submitted it (cancel buttons act on their own session's jobs)
    function: JobFunction = field(repr=False)
    state: JobState = JobState.QUEUED
    fraction: float = 0.0
    stage: str = Message("job.waiting", "Waiting")  # a Message when the engine or the app says it
    rate: str = ""  # e.g. "612 tokens/s" or "3.1 MB/s"
    eta: str = ""  # e.g. "about 12 min left" (a Message), empty while unknown
    result: Any = field(default=None, repr=False)
    error: str = ""  # plain words for the UI (a Message when it has an id)
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    done: threading.Event = field(default_factory=threading.Event, repr=False)
    estimator: Eta = field(default_factory=Eta, repr=False)

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished_at or time.monotonic()) - self.started


def describe_error(error: BaseException, log_file: str | None = None) -> str:
    """What to show for a failed job: the engine's own message for errors users cause, else a pointer to the log."""
    import engine

    if isinstance(error, engine.MapperatorError):
        first = error.args[0] if len(error.args) == 1 else None
        return first if isinstance(first, Message) else str(error)
    if log_file:
        return Message("job.unexpected_error_log", "Unexpected {kind}: {error} (details in {log_file})",
                       kind=type(error).__name__, error=str(error), log_file=log_file)
    return Message("job.unexpected_error", "Unexpected {kind}: {error} (details in the log file)",
                   kind=type(error).__name__, error=str(error))


class Worker:
    """The single job thread; safe to call from any thread."""

    def __init__(self, log_file: str | None = None, keep_finished: int = 20):
        self.log_file = log_file
        self._lock = threading.Condition()
        self._queue: deque[Job] = deque()
        self._jobs: dict[int, Job] = {}
        self._finished: deque[int] = deque()
        self._keep = keep_finished
        self._ids = itertools.count(1)
        self._current: Job | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="mapperator-worker", daemon=True)
        self._thread.start()

    # --- submitting and cancelling ------------------------------------------------------------------

    def submit(self, kind: str, label: str, function: JobFunction, owner: str = "") -> Job:
        with self._lock:
            if self._stopping:
                raise RuntimeError("the app is shutting down")
            job = Job(next(self._ids), kind, label, owner, function)
            self._jobs[job.id] = job
            self._queue.append(job)
            self._lock.notify_all()
        log.info("job %d queued: %s", job.id, label)
        return job

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued or running job; False when it had already finished (or never existed)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state.finished:
                return False
            job.cancel.set()
            if job.state is JobState.QUEUED:
                self._queue.remove(job)
                self._finish(job, JobState.CANCELLED,
                             stage=Message("job.cancelled_before_start", "Cancelled before it started"))
            return True

    def cancel_where(self, owner: str | None = None, kind: str | None = None) -> list[Job]:
        """Cancel every unfinished job of a session and/or kind; returns the jobs cancelled."""
        with self._lock:
            targets = [j for j in self._jobs.values() if not j.state.finished
                       and (owner is None or j.owner == owner) and (kind is None or j.kind == kind)]
        return [j for j in targets if self.cancel(j.id)]

    # --- looking -----------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def latest(self, owner: str, kind: str) -> Job | None:
        """The newest job of a session and kind (running, queued or finished)."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.owner == owner and j.kind == kind]
            return max(jobs, key=lambda j: j.id) if jobs else None

    def position(self, job: Job) -> int:
        """How many jobs run or wait before ``job`` (0 when it is running or finished)."""
        with self._lock:
            if job.state is not JobState.QUEUED:
                return 0
            ahead = list(self._queue).index(job) if job in self._queue else 0
            return ahead + (1 if self._current is not None else 0)

    def active(self) -> list[Job]:
        """The running job first, then the queue in order."""
        with self._lock:
            return ([self._current] if self._current is not None else []) + list(self._queue)

    def wait(self, job: Job, timeout: float | None = None) -> bool:
        return job.done.wait(timeout)

    # --- the thread --------------------------------------------------------------------------------

    def _finish(self, job: Job, state: JobState, stage: str | None = None) -> None:
        job.state = state
        job.finished_at = time.monotonic()
        if stage is not None:
            job.stage = stage
        job.done.set()
        self._finished.append(job.id)
        while len(self._finished) > self._keep:
            old = self._finished.popleft()
            if self._jobs.get(old) is not None and self._jobs[old].state.finished:
                del self._jobs[old]

    def _loop(self) -> None:
        import engine

        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                job.state, job.started = JobState.RUNNING, time.monotonic()
                job.stage = Message("job.starting", "Starting")
                self._current = job
            log.info("job %d started: %s", job.id, job.label)

            def progress(update: Any, job: Job = job) -> None:
                _apply_progress(job, update)

            try:
                result = job.function(progress, job.cancel)
            except engine.Cancelled as e:
                first = e.args[0] if len(e.args) == 1 else None
                text = first if isinstance(first, Message) else (str(e) or Message("job.cancelled", "Cancelled"))
                state, result = JobState.CANCELLED, None
            except BaseException as e:  # noqa: BLE001 - any failure must end the job, never the thread
                if job.cancel.is_set() and not isinstance(e, engine.MapperatorError):
                    state, text, result = JobState.CANCELLED, Message("job.cancelled", "Cancelled"), None
                else:
                    log.error("job %d failed: %s", job.id, job.label, exc_info=not isinstance(e, engine.MapperatorError))
                    job.error = describe_error(e, self.log_file)
                    state, text, result = JobState.FAILED, Message("job.failed", "Failed"), None
            else:  # a job that finished before it noticed a late cancel still counts: its output exists
                state, text = JobState.DONE, Message("job.done", "Done")
                job.fraction = 1.0
            with self._lock:
                job.result = result
                self._current = None
                self._finish(job, state, stage=text)
            log.info("job %d %s after %.1f s", job.id, state.value, job.elapsed)

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Drop queued jobs, cancel the running one and stop the thread; True when it stopped in time."""
        with self._lock:
            self._stopping = True
            queued, self._queue = list(self._queue), deque()
            for job in queued:
                job.cancel.set()
                self._finish(job, JobState.CANCELLED,
                             stage=Message("job.cancelled_app_closed", "Cancelled: the app closed"))
            if self._current is not None:
                self._current.cancel.set()
            self._lock.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def _apply_progress(job: Job, update: Any) -> None:
    """Accept the engine's Progress(fraction, stage, tokens_per_second) or a plain (fraction, stage, rate)."""
    if hasattr(update, "fraction"):
        job.fraction = max(0.0, min(float(update.fraction), 1.0))
        job.stage = update.stage if isinstance(update.stage, str) else str(update.stage)
        tps = getattr(update, "tokens_per_second", None)
        job.rate = Message("job.tokens_per_second", "{rate:.0f} tokens/s", rate=tps) if tps else job.rate
    else:
        fraction, stage, rate = (tuple(update) + (None, None))[:3]
        if fraction is not None:
            job.fraction = max(0.0, min(float(fraction), 1.0))
        if stage is not None:
            job.stage = stage if isinstance(stage, str) else str(stage)
        if rate is not None:
            job.rate = rate if isinstance(rate, str) else str(rate)
    job.eta = eta_text(job.estimator.update(job.fraction)) or ""
