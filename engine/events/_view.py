"""A beatmap as upstream's parser sees it: the flat, slider-compatible records tokenization reads.

:func:`view_of` builds one from our :class:`engine.beatmap.Beatmap`. Times are integer microseconds
(slider's ``timedelta`` resolution); slider's geometry (curve class, end position, duration) is
computed once here with :mod:`._upstream_parser`.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

from . import _upstream_parser as sc

if TYPE_CHECKING:  # pragma: no cover
    from ..beatmap import Beatmap
    from ..beatmap.model import TimingPoint as BeatmapTimingPoint

Kind = Literal["circle", "slider", "spinner", "hold"]


@dataclass(frozen=True, slots=True)
class Sample:
    """A hit sample's sets and volume; 0 means "not given here" (inherit from the timing point)."""

    normal_set: int = 0
    addition_set: int = 0
    volume: int = 0


@dataclass(frozen=True, slots=True)
class TimingRecord:
    """A timing point as upstream's parser reads it (tokenization's input; the file's is :class:`TimingPoint`)."""

    offset_us: int
    beat_length: float  # the raw column: ms per beat, or -100/SV for inherited points
    meter: int
    sample_set: int  # 0 = inherit from the beatmap default
    volume: int  # already clipped to [0, 100]
    kiai: bool
    parent: int | None  # index of the uninherited point this one inherits from; None when uninherited

    @property
    def bpm_valid(self) -> bool:
        """Whether slider gives this point a (truthy) BPM: upstream's test for "starts a beat grid"."""
        if not self.beat_length > 0:
            return False
        bpm = 60000 / self.beat_length
        return not math.isfinite(bpm) or round(bpm) != 0  # a subnormal beat length: an infinite (truthy) BPM


DEFAULT_TIMING_POINT = TimingRecord(0, 1000.0, 4, 0, 100, False, None)


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """A hit object as upstream's parser reads it, slider geometry computed (the file's is :class:`HitObject`)."""

    kind: Kind
    position: tuple[int, int]
    time_us: int
    end_time_us: int  # == time_us for circles
    new_combo: bool = False
    hitsound: int = 0
    sample: Sample = Sample()
    # sliders
    curve: str = "B"  # slider's class: L, C, P or B
    points: tuple[tuple[int, int], ...] = ()  # control points, head included
    repeats: int = 1
    end_position: tuple[float, float] = (0.0, 0.0)  # slider's curve(1)
    edge_sounds: tuple[int, ...] = ()
    edge_samples: tuple[Sample, ...] = ()


@dataclass(frozen=True)
class BeatmapView:
    mode: int
    circle_size: float
    timing_points: tuple[TimingRecord, ...]
    hit_objects: tuple[ObjectRecord, ...]  # file order, hold notes included

    def __post_init__(self):
        offsets = [tp.offset_us for tp in self.timing_points]
        object.__setattr__(self, "_offsets", offsets)
        object.__setattr__(self, "_sorted", all(a <= b for a, b in zip(offsets, offsets[1:])))

    def timing_point_at(self, time_us: int) -> TimingRecord:
        """The last point (in file order) at or before ``time_us``; the first point when none is.

        A map without timing points gets osu!'s default (60 BPM from 0 ms, volume 100).
        """
        if not self.timing_points:
            return DEFAULT_TIMING_POINT
        if self._sorted:
            i = bisect.bisect_right(self._offsets, time_us) - 1
            return self.timing_points[max(i, 0)]
        for tp in reversed(self.timing_points):
            if tp.offset_us <= time_us:
                return tp
        return self.timing_points[0]

    def uninherited_point_at(self, time_us: int) -> TimingRecord:
        tp = self.timing_point_at(time_us)
        return tp if tp.parent is None else self.timing_points[tp.parent]


# --- from our Beatmap -----------------------------------------------------------------------------

def view_of(beatmap: "Beatmap") -> BeatmapView:
    """Read ``beatmap`` the way slider does (see :mod:`._upstream_parser` for why it matters).

    Differences from osu!'s reading that are reproduced on purpose: times and coordinates truncated
    to ints, no +24 ms for format v3/v4 files, every non-zero effects value counts as kiai, and an
    inherited point before any uninherited one acts as uninherited. Where slider would refuse the
    file (hold notes, missing hit samples, lazer's multi-type sliders, zero slides) we read what
    osu! means instead.
    """
    shift = -24 if beatmap.format_version < 5 else 0  # undo the reader's osu!-style offset: slider has none
    timing = _timing_points(beatmap.timing_points, shift)
    lookups = BeatmapView(beatmap.mode, beatmap.difficulty.circle_size, timing, ())  # slider durations need timing
    objects = tuple(_hit_object(beatmap, lookups, obj, shift) for obj in beatmap.hit_objects)
    return BeatmapView(beatmap.mode, beatmap.difficulty.circle_size, timing, objects)


def timing_view(timing_points: "Sequence[BeatmapTimingPoint]") -> BeatmapView:
    """A view with timing points only (a timing given without a beatmap)."""
    return BeatmapView(0, 0.0, _timing_points(timing_points, 0), ())


def _timing_points(timing_points: "Sequence[BeatmapTimingPoint]", shift: float) -> tuple[TimingRecord, ...]:
    points, parent = [], None
    for i, tp in enumerate(timing_points):
        inherits = not tp.uninherited and parent is not None
        points.append(TimingRecord(
            offset_us=sc.us_from_ms(tp.time + shift),
            beat_length=tp.beat_length,
            meter=tp.meter,
            sample_set=tp.sample_set,
            volume=min(max(tp.volume, 0), 100),
            kiai=tp.effects != 0,
            parent=parent if inherits else None,
        ))
        if not inherits:
            parent = i
    return tuple(points)


def _hit_object(beatmap: "Beatmap", view: BeatmapView, obj, shift: float) -> ObjectRecord:
    from ..beatmap.model import HoldNote, Slider, Spinner

    time_us = sc.us_from_ms(int(obj.time + shift))
    common = dict(
        position=(int(obj.x), int(obj.y)),
        time_us=time_us,
        new_combo=obj.new_combo,
        hitsound=obj.hitsound,
        sample=_sample(obj.hit_sample),
    )
    if isinstance(obj, Slider):
        return _slider(beatmap, view, obj, common)
    if isinstance(obj, (Spinner, HoldNote)):
        kind = "spinner" if isinstance(obj, Spinner) else "hold"
        return ObjectRecord(kind, end_time_us=sc.us_from_ms(int(obj.end_time + shift)), **common)
    return ObjectRecord("circle", end_time_us=time_us, **common)


def _slider(beatmap: "Beatmap", view: BeatmapView, obj, common: dict) -> ObjectRecord:
    points = _control_points(obj)
    kind = "B" if any(p.type for p in obj.curve_points) else sc.curve_kind(obj.curve_type, points)
    length = obj.length if obj.length is not None else _path_length(beatmap, obj)
    repeats = max(obj.slides, 1)
    tp = view.timing_point_at(common["time_us"])
    if tp.parent is None:
        beat_length, sv_beat_length = tp.beat_length, None
    else:
        beat_length, sv_beat_length = view.timing_points[tp.parent].beat_length, tp.beat_length
    duration = sc.slider_duration_ms(length, repeats, beatmap.difficulty.slider_multiplier, beat_length, sv_beat_length)
    return ObjectRecord(
        "slider",
        end_time_us=common["time_us"] + duration * 1000,
        curve=kind,
        points=points,
        repeats=repeats,
        end_position=sc.end_position(kind, points, length),
        edge_sounds=tuple(obj.edge_sounds),
        edge_samples=tuple(Sample(e.normal_set, e.addition_set) for e in obj.edge_sets),
        **common,
    )


def _control_points(obj) -> tuple[tuple[int, int], ...]:
    """Head and control points as ints; a lazer segment-type letter becomes a red anchor (repeated point)."""
    points = [(int(obj.x), int(obj.y))]
    for p in obj.curve_points:
        if p.type is not None and len(points) > 1:
            points.append(points[-1])
        points.append((int(p.x), int(p.y)))
    return tuple(points)


def _sample(sample) -> Sample:
    if sample is None:
        return Sample()
    return Sample(sample.normal_set, sample.addition_set, sample.volume)


def _path_length(beatmap: "Beatmap", obj) -> float:
    """Pixel length of a slider written without one (slider cannot read those): osu!'s path length."""
    return float(beatmap.slider_info(obj).distance)
