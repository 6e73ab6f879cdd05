"""Slider timing and nested events (head, ticks, repeats, legacy last tick, tail).

Facts from osu!lazer (``Slider.ApplyDefaults``, ``SliderEventGenerator``, the legacy decoder):

- velocity (px/ms) = 100 * SliderMultiplier / (beat length * f(SV)), where the beat length is the
  uninherited point's (6..60000 ms), SV the effective point's (0.1..10) and
  ``f(SV) = float32(100 / SV) / 100``, the precision loss stable has;
- spans = max(1, slides), but a path of (almost) zero length has one span;
- duration = spans * path distance / velocity; end time = start + duration (not rounded);
- tick spacing = velocity * beat length / SliderTickRate, times 1/SV for maps before v8;
  no ticks where a NaN SV disables them; no tick within 10 ms of travel of the span end;
- the legacy last tick sits at ``max(start + duration / 2, end - 36)``.

Where stable and lazer differ this module follows lazer: lazer keeps the end time as a double
(upstream's slider library truncates the duration to whole ms, so its ends are up to 1 ms
earlier); lazer gives zero-length sliders a single span (stable generated repeats it never
judged); the osu!standard path drops Catmull vertices closer than 6 px as stable does when
drawing (see :mod:`.slider_path`). Tick generation is linear in the number of ticks, so absurd
maps (9000 slides of a 100000 px slider) take long, as in osu!.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from .model import Slider
from .slider_path import SliderPath, slider_path
from .timing_lookup import ControlPoints, sv_beat_length_multiplier

if TYPE_CHECKING:  # pragma: no cover
    from .beatmap import Beatmap

BASE_SCORING_DISTANCE = 100.0
TAIL_LENIENCY = -36.0
MAX_TICK_PATH_LENGTH = 100_000.0


@dataclass(frozen=True)
class SliderEvent:
    """A nested slider object: ``kind`` is head, tick, repeat, legacy_last_tick or tail."""

    kind: str
    time: float
    span_index: int
    progress: float
    position: tuple[float, float]


@dataclass(frozen=True)
class SliderInfo:
    """Everything osu! derives for one slider. Times in ms, distances in osu! pixels."""

    slider: Slider
    path: SliderPath
    span_count: int
    velocity: float
    beat_length: float
    slider_velocity: float
    tick_distance: float
    start_time: float

    @property
    def distance(self) -> float:
        return self.path.distance

    @property
    def duration(self) -> float:
        return self.span_count * self.path.distance / self.velocity

    @property
    def span_duration(self) -> float:
        return self.duration / self.span_count

    @property
    def end_time(self) -> float:
        return self.start_time + self.duration

    @property
    def end_position(self) -> tuple[float, float]:
        """Where the slider ball finishes (the head again for an even span count)."""
        return tuple(self.path.position_at(self.span_count % 2))

    def position_at_time(self, time: float) -> tuple[float, float]:
        """Slider ball position at ``time`` (clamped to the slider's duration)."""
        if self.span_duration <= 0:
            return tuple(self.path.position_at(0.0))
        spans = min(max((time - self.start_time) / self.span_duration, 0.0), float(self.span_count))
        span = min(int(spans), self.span_count - 1)
        progress = spans - span
        return tuple(self.path.position_at(1 - progress if span % 2 else progress))

    @cached_property
    def events(self) -> list[SliderEvent]:
        """Head, ticks, repeats, legacy last tick and tail in time order."""
        return _generate_events(self)

    @property
    def ticks(self) -> list[SliderEvent]:
        return [e for e in self.events if e.kind == "tick"]

    @property
    def repeats(self) -> list[SliderEvent]:
        return [e for e in self.events if e.kind == "repeat"]


def slider_info(beatmap: Beatmap, slider: Slider, points: ControlPoints | None = None) -> SliderInfo:
    """Timing and geometry of ``slider`` within ``beatmap`` (see the module docstring). ``points``:
    the beatmap's :meth:`~Beatmap.control_points` when the caller holds them (checking that they are
    current costs time in proportion to the number of timing points, on every call)."""
    points = beatmap.control_points() if points is None else points
    beat_length = points.beat_length_at(slider.time)
    sv = points.slider_velocity_at(slider.time)
    path = slider_path(slider, beatmap.format_version, beatmap.mode == 0)
    velocity = BASE_SCORING_DISTANCE * beatmap.difficulty.slider_multiplier / (
        beat_length * sv_beat_length_multiplier(sv))
    tick_distance = math.inf
    if points.generates_ticks_at(slider.time):
        multiplier = 1.0 / sv if beatmap.format_version < 8 else 1.0
        tick_distance = velocity * beat_length / beatmap.difficulty.slider_tick_rate * multiplier
    spans = 1 if abs(path.distance) <= 1e-7 else max(slider.slides, 1)
    return SliderInfo(slider, path, spans, velocity, beat_length, sv, tick_distance, slider.time)


def _generate_events(info: SliderInfo) -> list[SliderEvent]:
    path, start, spans, span_duration = info.path, info.start_time, info.span_count, info.span_duration
    length = min(MAX_TICK_PATH_LENGTH, path.distance)
    tick_distance = min(max(info.tick_distance, 0.0), length)
    min_distance_from_end = info.velocity * 10
    raw: list[tuple[str, float, int, float]] = [("head", start, 0, 0.0)]
    for span in range(spans):
        span_start = start + span * span_duration
        reverse = span % 2 == 1
        if tick_distance != 0:
            ticks = []
            d = tick_distance
            while d <= length and d < length - min_distance_from_end:
                progress = d / length
                ticks.append(("tick", span_start + (1 - progress if reverse else progress) * span_duration,
                              span, progress))
                d += tick_distance
            raw += ticks[::-1] if reverse else ticks
        if span < spans - 1:
            raw.append(("repeat", span_start + span_duration, span, float((span + 1) % 2)))
    final_start = start + (spans - 1) * span_duration
    legacy_time = max(start + spans * span_duration / 2, final_start + span_duration + TAIL_LENIENCY)
    legacy_progress = (legacy_time - final_start) / span_duration if span_duration else 0.0
    if spans % 2 == 0:
        legacy_progress = 1 - legacy_progress
    raw.append(("legacy_last_tick", legacy_time, spans - 1, legacy_progress))
    raw.append(("tail", start + spans * span_duration, spans - 1, float(spans % 2)))
    positions = path.position_at(np.array([r[3] for r in raw]))
    return [SliderEvent(kind, time, span, progress, (float(x), float(y)))
            for (kind, time, span, progress), (x, y) in zip(raw, positions)]
