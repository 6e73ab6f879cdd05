"""The hit objects of the MAP stream, as groups of events (see :mod:`._groups` for a group's layout).

Per object: circle -> CIRCLE; slider -> SLIDER_HEAD, anchors, LAST_ANCHOR (end of the first pass),
SLIDER_END; spinner -> SPINNER, SPINNER_END; mania hold note -> HOLD_NOTE, HOLD_NOTE_END; in taiko
sliders and spinners become drumrolls and dendens. Long objects get sustain groups every
``sustain_interval`` ms. Times are absolute int ms; the stream is stably sorted by time at the end,
so anchors and sustain groups interleave with the objects that overlap them.
"""
from __future__ import annotations

import numpy as np

from ..presets import DataFlags
from ..tokenizer import EventType
from . import _upstream_parser as sc
from ._groups import Groups, Pos, scroll_speed_at
from ._view import BeatmapView, ObjectRecord, Sample
from .stream import EventStream, sort_by_time

T = EventType

PLAYFIELD_CENTER = (256, 192)
MAX_SLIDER_POINTS = 100  # sliders with this many control points or more are left out entirely
_ANCHOR_TYPES = {"L": T.RED_ANCHOR, "C": T.CATMULL_ANCHOR, "P": T.PERFECT_ANCHOR}
_MS = 1000  # microseconds per millisecond


def objects_stream(view: BeatmapView, flags: DataFlags, flip: tuple[bool, bool] = (False, False)) -> EventStream:
    """The hit objects of a beatmap as a time-sorted stream (no timing, kiai or SV events mixed in)."""
    out = Groups(flags, view, flip)
    last_pos = np.array(PLAYFIELD_CENTER)
    taiko = view.mode == 1
    for obj in view.hit_objects:
        if obj.kind == "circle":
            last_pos = _circle(out, obj, last_pos)
        elif obj.kind == "slider":
            if taiko:
                _long_note(out, obj, T.DRUMROLL, T.DRUMROLL_SUSTAIN, T.DRUMROLL_END)
            else:
                last_pos = _slider(out, obj, last_pos)
        elif obj.kind == "spinner":
            if taiko:
                _long_note(out, obj, T.DENDEN, T.DENDEN_SUSTAIN, T.DENDEN_END)
            else:
                last_pos = _spinner(out, obj)
        elif obj.kind == "hold":
            last_pos = _hold_note(out, obj, last_pos)
    return sort_by_time(out.events, out.times)


# --- one function per object kind ---------------------------------------------------------------

def _circle(out: Groups, obj: ObjectRecord, last_pos: Pos) -> Pos:
    return out.add(
        T.CIRCLE,
        obj.time_us,
        timed=True,
        pos=obj.position,
        last_pos=last_pos,
        new_combo=obj.new_combo,
        hitsounds=((obj.time_us, obj.hitsound, obj.sample),),
        scroll_speed=scroll_speed_at(out.view, obj.time_us) if out.view.mode == 1 else None,
    )


def _slider(out: Groups, obj: ObjectRecord, last_pos: Pos) -> Pos:
    if len(obj.points) >= MAX_SLIDER_POINTS:
        return last_pos
    v2 = out.flags.slider_version == 2
    start = obj.time_us
    span = sc.divided_us(obj.end_time_us - start, obj.repeats)  # one pass over the path
    last_pos = out.add(
        T.SLIDER_HEAD,
        start,
        timed=True,
        pos=obj.position,
        last_pos=last_pos,
        new_combo=obj.new_combo,
        hitsounds=((start, _edge_sound(obj, 0), _edge_sample(obj, 0)),),
        scroll_speed=scroll_speed_at(out.view, start) if out.flags.add_sv else None,
    )
    count = len(obj.points)
    for i, anchor in _anchors(obj):
        time_us = start if v2 else start + sc.scaled_us(span, i / (count - 1))
        last_pos = out.add(anchor, time_us, pos=obj.points[i], last_pos=last_pos)
    if v2:
        last_pos = out.add(T.LAST_ANCHOR, start, pos=obj.points[-1], last_pos=last_pos)
        out.add_sustains(T.SLIDER_SUSTAIN, start, start + span)
    # The first pass ends here; it carries the body sound and the sounds of the repeat edges.
    body = ((start + _MS, obj.hitsound, obj.sample),)
    repeats = tuple((start + i * span, _edge_sound(obj, i), _edge_sample(obj, i)) for i in range(1, obj.repeats))
    last_pos = out.add(
        T.LAST_ANCHOR,
        start + span,
        timed=True,
        pos=None if v2 else obj.points[-1],
        last_pos=last_pos,
        hitsounds=body + repeats,
    )
    out.add_sustains(T.SLIDER_REPEAT_SUSTAIN, start + span, obj.end_time_us)
    return out.add(
        T.SLIDER_END,
        obj.end_time_us,
        timed=True,
        pos=obj.end_position,
        last_pos=last_pos,
        hitsounds=((obj.end_time_us, _edge_sound(obj, -1), _edge_sample(obj, -1)),),
    )


def _anchors(obj: ObjectRecord):
    """(index, anchor type) of the control points between head and last point that become anchors.

    In a bezier a repeated point is one red anchor (written at its first occurrence); the second copy
    is skipped.
    """
    pts = obj.points
    for i in range(1, len(pts) - 1):
        if obj.curve != "B":
            yield i, _ANCHOR_TYPES[obj.curve]
        elif pts[i] == pts[i + 1]:
            yield i, T.RED_ANCHOR
        elif pts[i] != pts[i - 1]:
            yield i, T.BEZIER_ANCHOR


def _spinner(out: Groups, obj: ObjectRecord) -> Pos:
    out.add(T.SPINNER, obj.time_us, timed=True)
    out.add_sustains(T.SPINNER_SUSTAIN, obj.time_us, obj.end_time_us)
    out.add(
        T.SPINNER_END,
        obj.end_time_us,
        timed=True,
        hitsounds=((obj.end_time_us, obj.hitsound, obj.sample),),
    )
    return np.array(PLAYFIELD_CENTER)


def _hold_note(out: Groups, obj: ObjectRecord, last_pos: Pos) -> Pos:
    pos = obj.position
    sound = ((obj.time_us, obj.hitsound, obj.sample),)
    out.add(T.HOLD_NOTE, obj.time_us, timed=True, pos=pos, last_pos=last_pos, hitsounds=sound)
    out.add_sustains(T.HOLD_NOTE_SUSTAIN, obj.time_us, obj.end_time_us, pos=pos, last_pos=last_pos)
    out.add(T.HOLD_NOTE_END, obj.end_time_us, timed=True, pos=pos, last_pos=last_pos)
    return np.array(pos)


def _long_note(out: Groups, obj: ObjectRecord, head: EventType, sustain: EventType, end: EventType) -> None:
    """A taiko drumroll (from a slider) or denden (from a spinner); edge sounds do not apply."""
    out.add(
        head,
        obj.time_us,
        timed=True,
        hitsounds=((obj.time_us, obj.hitsound, obj.sample),),
        scroll_speed=scroll_speed_at(out.view, obj.time_us),
    )
    out.add_sustains(sustain, obj.time_us, obj.end_time_us)
    out.add(end, obj.end_time_us, timed=True)


def _edge_sound(obj: ObjectRecord, i: int) -> int:
    if not obj.edge_sounds:
        return 0
    return obj.edge_sounds[i] if i < 0 or i < len(obj.edge_sounds) else 0


def _edge_sample(obj: ObjectRecord, i: int) -> Sample:
    if not obj.edge_samples:
        return Sample()
    return obj.edge_samples[i] if i < 0 or i < len(obj.edge_samples) else Sample()
