"""Event streams of a beatmap for each context type, exactly as the checkpoints were trained on them.

Every function takes one of our :class:`~engine.beatmap.Beatmap` objects and the version's
:class:`~engine.presets.DataFlags` and returns an :class:`EventStream` with absolute times in int ms
(TIME_SHIFT values too). ``speed`` plays the map faster (1.5 = DT) by dividing every time.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..errors import BeatmapError
from ..messages import Message
from ..presets import DataFlags
from ..tokenizer import ContextType
from ._view import timing_view, view_of
from .hit_objects import objects_stream
from .stream import HITSOUND_TYPES, EventStream, merge_events, remove_events_of_type, speed_events
from .timing_streams import grid_stream, kiai_stream, sv_stream

if TYPE_CHECKING:  # pragma: no cover
    from ..beatmap import Beatmap
    from ..beatmap.model import TimingPoint

NO_FLIP = (False, False)


def map_events(
    beatmap: "Beatmap",
    flags: DataFlags,
    *,
    song_length_ms: float | None = None,
    speed: float = 1.0,
    flip: tuple[bool, bool] = NO_FLIP,
) -> EventStream:
    """The MAP (and GD) stream: hit objects, plus what the version mixes in.

    Mixed in when the flags say so: mania scroll speeds (``add_mania_sv``), kiai (``add_kiai``) and
    the beat grid (``add_timing``, v30; ``song_length_ms`` only matters for a map without objects).
    ``flip`` mirrors positions (horizontal, vertical) as the training augmentation did.
    """
    view = view_of(beatmap)
    stream = objects_stream(view, flags, flip)
    if flags.add_mania_sv and view.mode == 3:
        stream = merge_events(sv_stream(view, flags), stream)
    if flags.add_kiai:
        stream = merge_events(kiai_stream(view, flags), stream)
    if flags.add_timing:
        stream = merge_events(_grid(beatmap, view, flags, song_length_ms, True), stream)
    return _at_speed(stream, speed)


def no_hitsound_events(beatmap: "Beatmap", flags: DataFlags, *, song_length_ms: float | None = None) -> EventStream:
    """The NO_HS stream: the MAP stream without HITSOUND and VOLUME events."""
    return remove_events_of_type(map_events(beatmap, flags, song_length_ms=song_length_ms), HITSOUND_TYPES)


def timing_events(
    source: "Beatmap | Sequence[TimingPoint]",
    flags: DataFlags,
    *,
    song_length_ms: float | None = None,
    speed: float = 1.0,
) -> EventStream:
    """The TIMING stream: TIMING_POINT/MEASURE/BEAT on every beat (no snapping tokens).

    From a beatmap the grid ends at its last object's end; from bare timing points (a timing
    given without a map) or a map without objects it ends at ``song_length_ms`` (or 10 ms after the
    last timing point when that is not given either).
    """
    if isinstance(source, Sequence):
        view, from_objects = timing_view(source), False
    else:
        view, from_objects = view_of(source), True
    if not view.timing_points:
        raise BeatmapError(Message("error.events.no_timing", "no timing points were given, so there is no beat grid "
                                   "to tokenize"), getattr(source, "path", None))
    return _at_speed(_grid(source, view, flags, song_length_ms, from_objects), speed)


def _grid(source, view, flags: DataFlags, song_length_ms: float | None, from_objects: bool) -> EventStream:
    """:func:`grid_stream`, with the beatmap's file named when its timing is refused."""
    try:
        return grid_stream(view, flags, song_length_ms, from_hit_objects=from_objects)
    except BeatmapError as e:
        raise BeatmapError(e.reason, e.path or getattr(source, "path", None)) from None


def kiai_events(beatmap: "Beatmap", flags: DataFlags, *, speed: float = 1.0) -> EventStream:
    """The KIAI stream: KIAI 1/0 wherever kiai turns on/off (with snapping)."""
    return _at_speed(kiai_stream(view_of(beatmap), flags), speed)


def scroll_speed_events(beatmap: "Beatmap", flags: DataFlags, *, speed: float = 1.0) -> EventStream:
    """The SV stream: SCROLL_SPEED_CHANGE + SCROLL_SPEED (x100) wherever the scroll speed changes.

    Built the same way for every mode (upstream's ``parse_scroll_speeds``), BPM-normalised when
    ``mania_bpm_normalized_scroll_speed``.
    """
    return _at_speed(sv_stream(view_of(beatmap), flags), speed)


def context_events(
    context: ContextType, beatmap: "Beatmap | None", flags: DataFlags, *, song_length_ms: float | None = None
) -> EventStream:
    """The stream of one context type from a reference beatmap (empty for ``ContextType.NONE``)."""
    if context == ContextType.NONE:
        return EventStream.empty()
    if beatmap is None:
        raise ValueError(f"the {context.value} context needs a beatmap")
    if context in (ContextType.MAP, ContextType.GD):
        return map_events(beatmap, flags, song_length_ms=song_length_ms)
    if context == ContextType.NO_HS:
        return no_hitsound_events(beatmap, flags, song_length_ms=song_length_ms)
    if context == ContextType.TIMING:
        return timing_events(beatmap, flags, song_length_ms=song_length_ms)
    if context == ContextType.KIAI:
        return kiai_events(beatmap, flags)
    if context == ContextType.SV:
        return scroll_speed_events(beatmap, flags)
    raise ValueError(f"unknown context type {context!r}")


def _at_speed(stream: EventStream, speed: float) -> EventStream:
    return stream if speed == 1.0 else speed_events(stream, speed)
