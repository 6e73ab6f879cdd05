"""Adding a generated part to an existing beatmap (upstream's ``add_to_beatmap``).

The result is a copy of the reference beatmap in which the hit objects and timing points between
``start_time`` and ``end_time`` (inclusive; open ends when ``None``) are replaced by the generated
ones. At ``start_time`` the generated map's SV, volume and kiai are restored, and when its beat grid
differs there (beat length, meter or phase) a red line continuing the generated grid is added.
The reference itself is never modified.
"""
from __future__ import annotations

import dataclasses
import math
from datetime import timedelta
from typing import Sequence

from ..beatmap import Beatmap, TimingPoint
from .timeline import BEAT_LENGTH, KIAI, METER, VOLUME, Timeline, TimingLine, lines_from_points, to_ms, to_us

PHASE_EPSILON = 1e-4
# upstream's stand-ins for an open start or end of the range
OPEN_START_MS = -timedelta(days=999) / timedelta(milliseconds=1)


def _point_at(lines: Sequence[TimingLine], time_us: int) -> TimingLine:
    """The slider library's lookup: the last line at or before the time in list order, else the
    first line."""
    for line in reversed(lines):
        if line.time_us <= time_us:
            return line
    return lines[0]


def _beat_phase(start_us: int, red: TimingLine) -> float:
    """How far into its measure ``start_us`` lies, in beats of ``red``."""
    return (to_ms(start_us - red.time_us) / red.beat_length + PHASE_EPSILON) % red.meter


def add_to_beatmap(generated: Beatmap, reference: Beatmap, start_time: float | None = None,
                   end_time: float | None = None) -> Beatmap:
    """A copy of ``reference`` with ``generated``'s objects and timing in [start_time, end_time]."""
    low = -math.inf if start_time is None else start_time
    high = math.inf if end_time is None else end_time
    inside = lambda t: low <= t <= high  # noqa: E731

    result = reference.copy()
    objects = [o for o in reference.hit_objects if not inside(o.time)]
    objects += [o for o in generated.hit_objects if inside(o.time)]
    objects.sort(key=lambda o: o.time)
    result.hit_objects = objects

    # Lines keep their parents from their own file, as upstream links them when parsing each.
    reference_lines = lines_from_points(reference.timing_points)
    generated_lines = lines_from_points(generated.timing_points)
    origin: dict[int, TimingPoint] = {}
    for line, point in zip(reference_lines + generated_lines, list(reference.timing_points) + list(generated.timing_points)):
        origin[id(line)] = point
    kept = [line for line in reference_lines if not inside(to_ms(line.time_us))]
    kept += [line for line in generated_lines if inside(to_ms(line.time_us))]
    kept.sort(key=lambda line: line.time_us)
    timeline = Timeline(kept, sort=False)

    if generated_lines and kept:
        start_us = to_us(low if start_time is not None else OPEN_START_MS)
        ours = _point_at(generated_lines, start_us)
        theirs = _point_at(kept, start_us)
        sv_beat_length = ours.beat_length if not ours.uninherited else -100.0
        timeline.change(TimingLine(ours.time_us, sv_beat_length, volume=ours.volume, kiai=ours.kiai),
                        (BEAT_LENGTH, VOLUME, KIAI))
        our_red, their_red = ours.red, theirs.red
        our_phase, their_phase = _beat_phase(start_us, our_red), _beat_phase(start_us, their_red)
        if (our_red.meter != their_red.meter or abs(our_phase - their_phase) > PHASE_EPSILON
                or abs(our_red.beat_length - their_red.beat_length) > PHASE_EPSILON):
            grid_start = start_us - to_us(our_phase * our_red.beat_length)
            timeline.change(TimingLine(grid_start, our_red.beat_length, our_red.meter), (BEAT_LENGTH, METER),
                            uninherited=True)

    result.timing_points = [_as_point(line, origin.get(id(line))) for line in timeline.lines]
    return result


def _as_point(line: TimingLine, source: TimingPoint | None) -> TimingPoint:
    """A line as a timing point; a line read from a file keeps its exact time (unless moved) and
    its effect bits other than kiai (omit-first-barline)."""
    if source is None:
        return line.to_point()
    new = line.to_point(source.time if to_us(source.time) == line.time_us else None)
    return dataclasses.replace(new, effects=(source.effects & ~1) | new.effects)
