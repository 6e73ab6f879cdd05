"""Streams from the timing points: the beat grid (TIMING), kiai toggles (KIAI) and scroll speed (SV)."""
from __future__ import annotations

import math
from typing import Iterator

from ..errors import BeatmapError
from ..messages import Message
from ..presets import DataFlags
from ..tokenizer import Event, EventType
from . import _upstream_parser as sc
from ._view import BeatmapView, TimingRecord
from ._groups import LAST_EVENT_MS, Groups
from .stream import EventStream

T = EventType

MIN_BEAT_LENGTH = 1.0  # ms; shorter beats (no real map has them) would make a grid of millions of events
# The grid only covers times a song can have (songs are at most 2 hours): an object or line at
# 2147483647 ms (24 days) would otherwise ask for millions of beats.
GRID_START_MS, GRID_END_MS = -60 * 60 * 1000.0, float(LAST_EVENT_MS)
MAX_GRID_BEATS = 1_000_000  # a 2-hour song at 1000 BPM has 120,000


def grid_stream(
    view: BeatmapView, flags: DataFlags, song_length_ms: float | None = None, from_hit_objects: bool = True
) -> EventStream:
    """TIMING_POINT/MEASURE/BEAT groups on every beat of every BPM-setting timing point.

    Each uninherited point's grid runs until 10 ms before the next one; the last runs to the end of
    the map's last object (+0.999 ms), or, when ``from_hit_objects`` is false or the map has no
    objects, to ``song_length_ms``, or else 10 ms past the last timing point. TIMING_POINT replaces
    the first MEASURE of a point when ``add_timing_points``; beats carry no snapping token.
    """
    out = Groups(flags, view, (False, False))
    points = [tp for tp in view.timing_points if tp.bpm_valid and tp.beat_length >= MIN_BEAT_LENGTH]
    end_ms = min(_grid_end_ms(view, song_length_ms, from_hit_objects), GRID_END_MS)
    spans = []
    for i, tp in enumerate(points):
        next_ms = sc.ms_of(points[i + 1].offset_us) - 10 if i + 1 < len(points) else end_ms
        start_ms = sc.ms_of(tp.offset_us)
        first = 0 if start_ms >= GRID_START_MS else math.ceil((GRID_START_MS - start_ms) / tp.beat_length)
        spans.append((tp, start_ms, min(next_ms, GRID_END_MS), first))
    beats = sum(max(0.0, (stop - start) / tp.beat_length - first) for tp, start, stop, first in spans)
    if beats > MAX_GRID_BEATS:
        raise BeatmapError(Message("error.events.grid_too_large", "its timing makes a beat grid of {beats:.0f} "
                                   "beats, more than the {limit} a song can have; check the timing points' beat "
                                   "lengths", beats=beats, limit=MAX_GRID_BEATS))
    for tp, start_ms, next_ms, beat in spans:
        meter = tp.meter if tp.meter > 0 else 4
        time_ms = int(start_ms + beat * tp.beat_length) if beat else start_ms
        while time_ms <= next_ms:
            if flags.add_timing_points and beat == 0:
                kind = T.TIMING_POINT
            elif beat % meter == 0:
                kind = T.MEASURE
            else:
                kind = T.BEAT
            out.add(kind, sc.us_from_ms(time_ms), timed=True, snap=False)
            beat += 1
            time_ms = int(start_ms + beat * tp.beat_length)
    return EventStream(out.events, out.times)


def _grid_end_ms(view: BeatmapView, song_length_ms: float | None, from_hit_objects: bool) -> float:
    if from_hit_objects and view.hit_objects:
        return sc.ms_of(view.hit_objects[-1].end_time_us) + 0.999
    if song_length_ms is not None:
        return song_length_ms
    return sc.ms_of(view.timing_points[-1].offset_us) + 10


def kiai_stream(view: BeatmapView, flags: DataFlags) -> EventStream:
    """A KIAI group (value 1 on, 0 off) wherever kiai changes, in timing point order, with snapping."""
    out = Groups(flags, view, (False, False))
    kiai = False
    for tp in view.timing_points:
        if tp.kiai != kiai:
            out.add(Event(T.KIAI, int(tp.kiai)), tp.offset_us, timed=True)
            kiai = tp.kiai
    return EventStream(out.events, out.times)


def sv_stream(view: BeatmapView, flags: DataFlags) -> EventStream:
    """SCROLL_SPEED_CHANGE groups (with SCROLL_SPEED = speed x 100) wherever the scroll speed changes.

    Speeds are multiplied by median beat length / current beat length when
    ``mania_bpm_normalized_scroll_speed`` (the speed a mania player actually sees); the first point
    always gives a group. This is the SV context of every mode (upstream's ``parse_scroll_speeds``).
    """
    out = Groups(flags, view, (False, False))
    last = None
    for tp, speed in scroll_speed_changes(view, flags.mania_bpm_normalized_scroll_speed):
        if last is None or abs(speed - last) > 1e-3:
            out.add(T.SCROLL_SPEED_CHANGE, tp.offset_us, timed=True, scroll_speed=speed)
        last = speed
    return EventStream(out.events, out.times)


def scroll_speed_changes(view: BeatmapView, normalized: bool) -> Iterator[tuple[TimingRecord, float]]:
    """(point, scroll speed) for each timing point that is the last one at its offset.

    Uninherited points reset the speed to 1; inherited ones set -100 / beat length. With
    ``normalized`` the speed is scaled by median beat length / current beat length.
    """
    median = median_beat_length(view)
    beat_length = median
    points = view.timing_points
    for i, tp in enumerate(points):
        if tp.parent is None:
            beat_length = tp.beat_length
            speed = 1
        else:
            speed = -100 / tp.beat_length if tp.beat_length else 1
        if i == len(points) - 1 or points[i + 1].offset_us > tp.offset_us:
            if normalized and beat_length:
                speed = speed * median / beat_length
            yield tp, (speed if math.isfinite(speed) else 1)  # upstream crashes on NaN beat lengths


def median_beat_length(view: BeatmapView) -> float:
    """The beat length covering most of the map (:func:`._upstream_parser.median_beat_length`), up to the latest
    object start (hold notes: their end). A map without objects gets its first beat length."""
    if not view.hit_objects:
        return next((tp.beat_length for tp in view.timing_points if tp.parent is None), 0.0)
    last_us = max(o.end_time_us if o.kind == "hold" else o.time_us for o in view.hit_objects)
    points = [(tp.offset_us, tp.beat_length, tp.parent is None) for tp in view.timing_points]
    return sc.median_beat_length(points, sc.whole_seconds_ms(last_us))
