"""Beatmaps as event streams, exactly as the published checkpoints were trained on them.

- :mod:`.contexts`: one function per context type (MAP, TIMING, KIAI, SV, NO_HS, GD) from a Beatmap
- :mod:`.stream`: :class:`EventStream` (events + absolute int-ms times) and the list operations
  inference needs (merge, speed, filter, :func:`update_event_times`)
- :mod:`.hit_objects`, :mod:`.timing_streams`, :mod:`._groups`: how objects and timing become groups of events
- :mod:`._upstream_parser`, :mod:`._view`: the numbers of upstream's .osu parser (``slider``), which the
  checkpoints learned and which differ slightly from osu!'s own geometry

Times in every stream are absolute integer milliseconds; TIME_SHIFT values are absolute too until
prompt building rewrites them relative to a window.
"""
from .contexts import (
    context_events,
    kiai_events,
    map_events,
    no_hitsound_events,
    scroll_speed_events,
    timing_events,
)
from .stream import (
    BEAT_TYPES,
    HITSOUND_TYPES,
    NON_TIMED_EVENTS,
    TIMED_EVENTS,
    TYPE_EVENTS,
    EventStream,
    events_of_type,
    merge_events,
    remove_events_of_type,
    sort_by_time,
    speed_events,
    update_event_times,
)

__all__ = [
    "BEAT_TYPES",
    "HITSOUND_TYPES",
    "NON_TIMED_EVENTS",
    "TIMED_EVENTS",
    "TYPE_EVENTS",
    "EventStream",
    "context_events",
    "events_of_type",
    "kiai_events",
    "map_events",
    "merge_events",
    "no_hitsound_events",
    "remove_events_of_type",
    "scroll_speed_events",
    "sort_by_time",
    "speed_events",
    "timing_events",
    "update_event_times",
]
