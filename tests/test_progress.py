"""engine.progress: the remaining-time estimate the CLI bar and the app's job list show."""
from __future__ import annotations

import time

import pytest

from engine.progress import Eta, eta_text


def test_steady_progress_gives_the_time_left():
    eta = Eta(min_elapsed_s=5)
    assert eta.update(0.0, now=100.0) is None
    assert eta.update(0.01, now=101.0) is None  # too early to tell
    assert eta.update(0.1, now=110.0) == pytest.approx(90.0)  # 10 % in 10 s: 90 s for the other 90 %
    assert eta.update(0.5, now=150.0) == pytest.approx(50.0)
    assert eta.update(1.0, now=200.0) == 0.0


def test_follows_the_current_speed_not_the_whole_job_average():
    eta = Eta(window_s=60, min_elapsed_s=5)
    for second in range(0, 501, 10):  # a slow first pass: half the job in 500 s
        eta.update(0.001 * second, now=float(second))
    left = None
    for second in range(510, 601, 10):  # then four times faster
        left = eta.update(0.5 + 0.004 * (second - 500), now=float(second))
    # 0.9 done at 600 s, going 0.004 per s: 25 s left (the whole-job average would say 67 s)
    assert left == pytest.approx(25.0)


def test_a_fraction_that_goes_back_starts_over():
    eta = Eta(min_elapsed_s=5)
    eta.update(0.0, now=0.0)
    assert eta.update(0.5, now=10.0) == pytest.approx(10.0)
    assert eta.update(0.1, now=11.0) is None  # a new job on the same bar
    assert eta.update(0.2, now=21.0) == pytest.approx(80.0)


def test_stalled_progress_has_no_estimate():
    eta = Eta(min_elapsed_s=1)
    eta.update(0.3, now=0.0)
    assert eta.update(0.3, now=30.0) is None


@pytest.mark.parametrize("seconds,text", [(None, None), (float("inf"), None), (0.0, "less than a minute left"),
                                          (59.0, "less than a minute left"), (60.0, "about 1 min left"),
                                          (61.0, "about 2 min left"), (25 * 60 - 1, "about 25 min left")])
def test_eta_text(seconds, text):
    message = eta_text(seconds)
    assert message == text
    if text is not None:
        assert message.message_id in ("progress.eta_soon", "progress.eta_minutes")


def test_the_app_shows_the_eta_of_a_running_job_in_its_language():
    from engine import Progress
    from mapperator_app import forms
    from mapperator_app.worker import Job, JobState, _apply_progress

    job = Job(1, "generate", "Generate song.mp3", "", lambda p, c: None)
    job.state, job.started = JobState.RUNNING, 0.0
    _apply_progress(job, Progress(0.1, "Map: window 1 of 40"))
    assert job.eta == "" and "left" not in forms.progress_html(job)  # one update: no rate yet
    job.estimator = Eta()
    job.estimator.update(0.1, now=time.monotonic() - 599.9)  # as if the first update came ten minutes ago
    _apply_progress(job, Progress(0.2, "Map: window 5 of 40"))
    assert job.eta == "about 80 min left"  # 0.1 in 10 minutes, 0.8 to go
    assert "about 80 min left" in forms.progress_html(job)
    assert "environ 80 min restantes" in forms.progress_html(job, lang="fr")
    job.state = JobState.DONE
    assert "left" not in forms.progress_html(job)
