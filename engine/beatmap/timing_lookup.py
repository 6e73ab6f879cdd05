"""Timing lookups with osu!'s rules for which timing point is in effect.

The rules follow osu!lazer's ``LegacyBeatmapDecoder`` and ``ControlPointInfo``:

- An uninherited line sets beat length, meter and omit-first-barline; every line (inherited or
  not) sets slider velocity, kiai, scroll speed and samples. An uninherited line's SV is 1.
- Consecutive lines with the same time form a group. Within a group an inherited line's
  SV/kiai/samples win over an uninherited line's, whatever their order; between several
  inherited lines the last wins; between several uninherited lines the first wins. A later group
  at a time that already has a point replaces it.
- Lookups take the last point at or before the time. Before the first point: the first
  uninherited point's timing and the first point's samples, but SV 1 and no kiai.
- Beat lengths are clamped to 6..60000 ms, SV to 0.1..10, mania/taiko scroll speed to 0.01..10.
  A NaN beat length disables the line if it is uninherited; on an inherited line it means SV 1
  with no slider ticks.

Timing points are kept in file order in the model; this module sorts them (stably) itself.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .model import MAX_BEAT_LENGTH, MIN_BEAT_LENGTH, TimingPoint, sample_set_number

MIN_SLIDER_VELOCITY, MAX_SLIDER_VELOCITY = 0.1, 10.0
MIN_SCROLL_SPEED, MAX_SCROLL_SPEED = 0.01, 10.0


def clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def raw_speed_multiplier(beat_length: float) -> float:
    """``100 / -beatLength`` for negative beat lengths, else 1 (NaN gives 1 too)."""
    return 100.0 / -beat_length if beat_length < 0 else 1.0


def sv_beat_length_multiplier(slider_velocity: float) -> float:
    """The factor osu! applies to the beat length for a given SV when timing sliders.

    osu!stable turns the SV back into a negative beat length and rounds it through a 32-bit
    float, so the factor is ``float32(100 / SV) / 100`` (not exactly ``1 / SV``).
    """
    as_beat_length = float(np.float32(100.0 / slider_velocity))
    return clamp(as_beat_length, 10, 1000) / 100.0


@dataclass(frozen=True)
class SampleState:
    """The sample settings in effect: bank number, custom index and volume (0..100)."""

    sample_set: int
    index: int
    volume: int


class ControlPoints:
    """Sorted, resolved timing of a beatmap; build it with :meth:`Beatmap.control_points`."""

    def __init__(self, timing_points: Sequence[TimingPoint], *, sample_set: str = "Normal",
                 sample_volume: int = 100, mode: int = 0):
        self.mode = mode
        self.default_sample = SampleState(sample_set_number(sample_set), 0, int(clamp(sample_volume, 0, 100)))
        timing: dict[float, TimingPoint] = {}
        effective: dict[float, TimingPoint] = {}
        group: list[TimingPoint] = []
        for point in timing_points:
            if point.uninherited and math.isnan(point.beat_length):
                continue  # osu! rejects the whole line
            if group and point.time != group[0].time:
                self._flush(group, timing, effective)
                group = []
            group.append(point)
        self._flush(group, timing, effective)

        self._timing_times = sorted(timing)
        self._timing = [timing[t] for t in self._timing_times]
        self._effective_times = sorted(effective)
        self._effective = [effective[t] for t in self._effective_times]

    @staticmethod
    def _flush(group: list[TimingPoint], timing: dict, effective: dict) -> None:
        if not group:
            return
        time = group[0].time
        red = [p for p in group if p.uninherited]
        green = [p for p in group if not p.uninherited]
        if red:
            timing[time] = red[0]
        effective[time] = green[-1] if green else red[0]

    # -- lookups ---------------------------------------------------------------------------
    @property
    def uninherited_points(self) -> list[TimingPoint]:
        """The uninherited points osu! uses, sorted by time (one per time)."""
        return list(self._timing)

    @property
    def effective_points(self) -> list[TimingPoint]:
        """The line that governs SV/kiai/samples at each control point time, sorted."""
        return list(self._effective)

    def uninherited_point_at(self, time: float) -> TimingPoint | None:
        """The uninherited point in effect (the first one for times before it), or ``None``."""
        if not self._timing:
            return None
        i = bisect.bisect_right(self._timing_times, time) - 1
        return self._timing[max(i, 0)]

    def effective_point_at(self, time: float) -> TimingPoint | None:
        """The line whose SV, kiai and samples apply at ``time`` (``None`` before the first)."""
        i = bisect.bisect_right(self._effective_times, time) - 1
        return self._effective[i] if i >= 0 else None

    def beat_length_at(self, time: float) -> float:
        """Milliseconds per beat at ``time``; 1000 (60 BPM) when the map has no timing."""
        point = self.uninherited_point_at(time)
        return clamp(point.beat_length, MIN_BEAT_LENGTH, MAX_BEAT_LENGTH) if point else 1000.0

    def meter_at(self, time: float) -> int:
        point = self.uninherited_point_at(time)
        return point.meter if point else 4

    def slider_velocity_at(self, time: float) -> float:
        """The SV multiplier at ``time``, clamped to 0.1..10 as osu! does."""
        point = self.effective_point_at(time)
        if point is None:
            return 1.0
        return clamp(raw_speed_multiplier(point.beat_length), MIN_SLIDER_VELOCITY, MAX_SLIDER_VELOCITY)

    def generates_ticks_at(self, time: float) -> bool:
        """False where a NaN slider velocity turns slider ticks off."""
        point = self.effective_point_at(time)
        return point is None or not math.isnan(point.beat_length)

    def scroll_speed_at(self, time: float) -> float:
        """Taiko/mania scroll speed multiplier at ``time`` (1 in the other modes)."""
        point = self.effective_point_at(time)
        if point is None or self.mode not in (1, 3):
            return 1.0
        return clamp(raw_speed_multiplier(point.beat_length), MIN_SCROLL_SPEED, MAX_SCROLL_SPEED)

    def kiai_at(self, time: float) -> bool:
        point = self.effective_point_at(time)
        return point.kiai if point else False

    def sample_at(self, time: float) -> SampleState:
        """Sample bank, index and volume at ``time``.

        osu! looks hit samples up slightly late (5 ms after a circle, spinner end or slider node),
        so callers add that leniency themselves.
        """
        point = self.effective_point_at(time)
        if point is None:
            if not self._effective:
                return self.default_sample
            point = self._effective[0]
        return SampleState(point.sample_set, point.sample_index, int(clamp(point.volume, 0, 100)))
