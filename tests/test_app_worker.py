"""The app's job worker: one job at a time in order, visible queue, cancel, errors in plain words."""
from __future__ import annotations

import threading
import time

import pytest

import engine
from engine.errors import Cancelled, OptionError
from mapperator_app.worker import JobState, Worker
from tests.conftest import UPSTREAM, need

WAIT = 300  # generous upper bounds (waits end when their condition holds): the machine is shared


@pytest.fixture
def worker():
    w = Worker(log_file="/tmp/mapperator-test.log")
    yield w
    w.shutdown(timeout=WAIT)


def test_jobs_run_one_at_a_time_in_submission_order(worker):
    gate = threading.Event()
    started, running, overlap = [], [0], []
    lock = threading.Lock()

    def job(name, wait=None):
        def run(progress, cancel):
            with lock:
                running[0] += 1
                overlap.append(running[0])
                started.append(name)
            if wait is not None:
                assert wait.wait(WAIT)
            with lock:
                running[0] -= 1
            return name
        return run

    first = worker.submit("generate", "first", job("first", gate), owner="a")
    second = worker.submit("mod", "second", job("second"), owner="b")
    third = worker.submit("timing", "third", job("third"), owner="a")
    assert _until(lambda: first.state is JobState.RUNNING)
    active = worker.active()
    assert [j.label for j in active] == ["first", "second", "third"]
    assert [j.state for j in active] == [JobState.RUNNING, JobState.QUEUED, JobState.QUEUED]
    assert worker.position(first) == 0 and worker.position(second) == 1 and worker.position(third) == 2
    gate.set()
    for j in (first, second, third):
        assert worker.wait(j, WAIT)
        assert j.state is JobState.DONE and j.result == j.label and j.fraction == 1.0
    assert started == ["first", "second", "third"]
    assert max(overlap) == 1
    assert worker.active() == []
    assert worker.latest("a", "timing") is third


def test_cancel_queued_job_never_runs(worker):
    gate = threading.Event()
    ran = []
    blocker = worker.submit("generate", "blocker", lambda p, c: gate.wait(WAIT))
    queued = worker.submit("generate", "queued", lambda p, c: ran.append("queued"))
    assert worker.cancel(queued.id)
    assert queued.state is JobState.CANCELLED and queued.done.is_set()
    assert queued not in worker.active()
    gate.set()
    assert worker.wait(blocker, WAIT)
    assert ran == []
    assert not worker.cancel(queued.id)  # already finished


def test_cancel_where_picks_session_and_kind(worker):
    gate = threading.Event()
    a = worker.submit("generate", "a", lambda p, c: gate.wait(WAIT), owner="s1")
    b = worker.submit("generate", "b", lambda p, c: None, owner="s2")
    c = worker.submit("mod", "c", lambda p, c_: None, owner="s1")
    cancelled = worker.cancel_where(owner="s2", kind="generate")
    assert cancelled == [b]
    assert b.state is JobState.CANCELLED and c.state is JobState.QUEUED
    gate.set()
    assert worker.wait(c, WAIT) and c.state is JobState.DONE
    assert a.state is JobState.DONE  # another session's running job was left alone


def test_running_job_sees_cancel_and_ends_cancelled(worker):
    entered = threading.Event()

    def run(progress, cancel):
        entered.set()
        while not cancel.wait(0.01):
            progress((0.5, "working", None))
        raise Cancelled("stopped as asked")

    job = worker.submit("generate", "loop", run)
    assert entered.wait(WAIT)
    assert worker.cancel(job.id)
    assert worker.wait(job, WAIT)
    assert job.state is JobState.CANCELLED
    assert job.stage == "stopped as asked"


def test_errors_become_plain_messages_and_the_thread_survives(worker):
    def user_error(progress, cancel):
        raise OptionError("difficulty=99 is outside v32's range 0–12 stars")

    def bug(progress, cancel):
        raise KeyError("oops")

    a = worker.submit("generate", "bad input", user_error)
    b = worker.submit("generate", "bug", bug)
    c = worker.submit("generate", "fine", lambda p, c: 42)
    for j in (a, b, c):
        assert worker.wait(j, WAIT)
    assert a.state is JobState.FAILED and a.error == "difficulty=99 is outside v32's range 0–12 stars"
    assert b.state is JobState.FAILED
    assert b.error.startswith("Unexpected KeyError") and "/tmp/mapperator-test.log" in b.error
    assert c.state is JobState.DONE and c.result == 42
    assert worker.alive


def test_progress_accepts_engine_progress_and_tuples(worker):
    seen = []
    gate = threading.Event()

    def run(progress, cancel):
        progress(engine.Progress(0.25, "Map: window 1 of 4", 612.4))
        seen.append((job.fraction, job.stage, job.rate))
        progress((0.5, "Downloading v32: 1.0 MB of 2.0 MB", "3.1 MB/s"))
        seen.append((job.fraction, job.stage, job.rate))
        progress((None, "Still here", None))
        seen.append((job.fraction, job.stage, job.rate))
        gate.wait(WAIT)

    job = worker.submit("generate", "progress", run)
    assert _until(lambda: len(seen) == 3)
    assert seen == [(0.25, "Map: window 1 of 4", "612 tokens/s"),
                    (0.5, "Downloading v32: 1.0 MB of 2.0 MB", "3.1 MB/s"),
                    (0.5, "Still here", "3.1 MB/s")]
    gate.set()
    assert worker.wait(job, WAIT)


def test_shutdown_cancels_running_and_queued_jobs():
    w = Worker()
    entered = threading.Event()

    def run(progress, cancel):
        entered.set()
        cancel.wait(WAIT)
        raise Cancelled("closed")

    running = w.submit("generate", "running", run)
    queued = w.submit("timing", "queued", lambda p, c: 1)
    assert entered.wait(WAIT)
    assert w.shutdown(timeout=WAIT)
    assert not w.alive
    assert running.state is JobState.CANCELLED and queued.state is JobState.CANCELLED
    with pytest.raises(RuntimeError):
        w.submit("mod", "late", lambda p, c: 1)


@pytest.mark.slow
def test_cancelling_a_real_generation_stops_it_and_writes_nothing(worker, tmp_path, asc_songs):
    """A generation on a 3-minute song, cancelled once decoding has begun, ends Cancelled with no file."""
    from engine.options import GenerateOptions

    checkpoint = need(UPSTREAM / "trained" / "v32" / "checkpoint")
    options = GenerateOptions(audio_path=str(asc_songs[0]), model_path=str(checkpoint), gamemode=0,
                              difficulty=3.0, output_path=str(tmp_path), do_sample=False)
    decoding = threading.Event()

    def run(progress, cancel):
        def report(p):
            progress(p)
            if "window" in p.stage:
                decoding.set()
        return engine.generate(options, progress=report, cancel=cancel)

    job = worker.submit("generate", "long song", run)
    assert decoding.wait(WAIT * 2), job.error
    worker.cancel(job.id)
    assert worker.wait(job, WAIT)
    assert job.state is JobState.CANCELLED, job.error
    assert "cancel" in job.stage.lower()
    assert list(tmp_path.iterdir()) == []


def _until(condition, timeout: float = WAIT) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds have passed (by the clock, however busy)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        threading.Event().wait(0.01)
    return condition()
