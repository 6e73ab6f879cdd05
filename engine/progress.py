"""How long a job has left, estimated from how fast its progress fraction has been rising.

The CLI's bar and the app's job list feed every progress update to one :class:`Eta` and show
:func:`eta_text` of what it returns ("about 12 min left")::

    eta = Eta()
    seconds_left = eta.update(progress.fraction)  # None until there is enough to go on
"""
from __future__ import annotations

import math
import time
from collections import deque

from .messages import Message

__all__ = ["Eta", "eta_text"]


class Eta:
    """Remaining seconds from ``(fraction, time)`` samples of one job.

    The rate is measured over the last ``window_s`` seconds, so a job whose passes run at different speeds
    (a timing pass, then a map pass) gets an estimate that follows the current pass. No estimate is given
    before ``min_elapsed_s`` seconds of rising progress; a fraction that goes down starts over.
    """

    def __init__(self, window_s: float = 120.0, min_elapsed_s: float = 5.0):
        self.window_s = window_s
        self.min_elapsed_s = min_elapsed_s
        self._samples: deque[tuple[float, float]] = deque()

    def update(self, fraction: float, now: float | None = None) -> float | None:
        """Record that ``fraction`` (0..1) of the job is done at ``now`` (monotonic seconds); the seconds left,
        or None when they cannot be told yet."""
        now = time.monotonic() if now is None else now
        fraction = min(max(float(fraction), 0.0), 1.0)
        if self._samples and fraction < self._samples[-1][1]:
            self._samples.clear()
        self._samples.append((now, fraction))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()  # keep one sample at least window_s old as the baseline
        return self.remaining()

    def remaining(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, f0), (t1, f1) = self._samples[0], self._samples[-1]
        if f1 >= 1.0:
            return 0.0
        if t1 - t0 < self.min_elapsed_s or f1 <= f0:
            return None
        return (1.0 - f1) * (t1 - t0) / (f1 - f0)


def eta_text(seconds: float | None) -> Message | None:
    """"about N min left" (whole minutes, rounded up), "less than a minute left", or None when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return None
    if seconds < 60:
        return Message("progress.eta_soon", "less than a minute left")
    return Message("progress.eta_minutes", "about {minutes} min left", minutes=math.ceil(seconds / 60))
