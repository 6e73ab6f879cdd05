"""Event streams: a list of events with the absolute time (int ms) of each, and the operations on them.

A stream comes out of :mod:`engine.events.hit_objects` / :mod:`engine.events.timing_streams` with TIME_SHIFT
values in absolute milliseconds. Prompt building later rewrites those values relative to a window; the
decoder produces streams without times, which :func:`update_event_times` fills in.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

from ..tokenizer import Event, EventType

T = EventType

# Events that start a group (what a group *is*); everything else in a group describes it.
TYPE_EVENTS = frozenset({
    T.CIRCLE, T.SPINNER, T.SPINNER_END, T.SLIDER_HEAD, T.BEZIER_ANCHOR, T.PERFECT_ANCHOR,
    T.CATMULL_ANCHOR, T.RED_ANCHOR, T.LAST_ANCHOR, T.SLIDER_END, T.BEAT, T.MEASURE, T.TIMING_POINT,
    T.KIAI, T.HOLD_NOTE, T.HOLD_NOTE_END, T.DRUMROLL, T.DRUMROLL_END, T.DENDEN, T.DENDEN_END,
    T.SCROLL_SPEED_CHANGE,
})
# Slider anchors have no TIME_SHIFT token; decoding spreads their times between the surrounding ones.
NON_TIMED_EVENTS = frozenset({T.BEZIER_ANCHOR, T.PERFECT_ANCHOR, T.CATMULL_ANCHOR, T.RED_ANCHOR})
TIMED_EVENTS = TYPE_EVENTS - NON_TIMED_EVENTS
# Sustain events (slider_sustain, ...) are in neither set, as in upstream: they never start a group.
BEAT_TYPES = frozenset({T.BEAT, T.MEASURE, T.TIMING_POINT})
HITSOUND_TYPES = frozenset({T.HITSOUND, T.VOLUME})


class EventStream(NamedTuple):
    """Events and their absolute times in ms (same length). Unpacks as ``events, times = stream``."""

    events: list[Event]
    times: list[int]

    @classmethod
    def empty(cls) -> "EventStream":
        return cls([], [])


def sort_by_time(events: list[Event], times: list[int]) -> EventStream:
    """Stable sort on time: events at the same time keep their order."""
    order = sorted(range(len(events)), key=times.__getitem__)
    return EventStream([events[i] for i in order], [times[i] for i in order])


def merge_events(first: EventStream, second: EventStream) -> EventStream:
    """Merge two time-sorted streams; at equal times the events of ``first`` come first."""
    (e1, t1), (e2, t2) = first, second
    events, times = [], []
    i = j = 0
    while i < len(e1) and j < len(e2):
        if t1[i] <= t2[j]:
            events.append(e1[i])
            times.append(t1[i])
            i += 1
        else:
            events.append(e2[j])
            times.append(t2[j])
            j += 1
    return EventStream(events + e1[i:] + e2[j:], times + t1[i:] + t2[j:])


def speed_events(stream: EventStream, speed: float) -> EventStream:
    """The stream played ``speed`` times faster (DT is 1.5): times and TIME_SHIFT values divided, truncated."""
    events = [Event(T.TIME_SHIFT, int(e.value / speed)) if e.type == T.TIME_SHIFT else e for e in stream.events]
    return EventStream(events, [int(t / speed) for t in stream.times])


def remove_events_of_type(stream: EventStream, types: Iterable[EventType]) -> EventStream:
    drop = frozenset(types)
    kept = [(e, t) for e, t in zip(*stream) if e.type not in drop]
    return EventStream([e for e, _ in kept], [t for _, t in kept])


def events_of_type(stream: EventStream, types: Iterable[EventType]) -> EventStream:
    keep = frozenset(types)
    kept = [(e, t) for e, t in zip(*stream) if e.type in keep]
    return EventStream([e for e, _ in kept], [t for _, t in kept])


def update_event_times(
    events: list[Event], times: list[int], end_time: float | None = None, types_first: bool = False
) -> None:
    """Extend ``times`` (in place) to cover every event of ``events``; times already there are kept.

    Each new event takes the value of the TIME_SHIFT of its group: the latest one before it, or with
    ``types_first`` the one right after a type event. TIME_SHIFT values must be absolute ms here.
    Slider anchors without their own time then get times spread evenly between the surrounding
    time shifts (``end_time``, in ms, stands in for a missing shift at the end). Upstream's inference
    relies on these exact integer truncations.
    """
    start = len(times)
    if start == len(events):
        return
    _assign_group_times(events, times, start, types_first)
    _interpolate_anchor_times(events, times, start, end_time, types_first)


def _assign_group_times(events: list[Event], times: list[int], start: int, types_first: bool) -> None:
    current = times[-1] if times else 0
    for i in range(start, len(events)):
        if types_first:
            if i + 1 < len(events) and events[i + 1].type == T.TIME_SHIFT:
                current = events[i + 1].value
        elif events[i].type == T.TIME_SHIFT:
            current = events[i].value
        times.append(current)


def _interpolate_anchor_times(
    events: list[Event], times: list[int], start: int, end_time: float | None, types_first: bool
) -> None:
    # Walk away from the group's time shift: forwards when the type comes first, else backwards from the end.
    step = 1 if types_first else -1
    fallback_end = end_time if end_time is not None else times[-1]
    order = range(start, len(events)) if types_first else range(len(events) - 1, start - 1, -1)
    current = times[start] if types_first else fallback_end
    in_anchors = False
    for i in order:
        kind = events[i].type
        if kind in TIMED_EVENTS:
            in_anchors = False
        elif kind in NON_TIMED_EVENTS:
            in_anchors = True
        if not in_anchors:
            current = times[i]
        elif kind not in NON_TIMED_EVENTS:
            times[i] = current  # a position/distance token of the anchor just visited
        else:
            other, count = _next_time_shift(events, times, i, step, fallback_end)
            current = int((current - other) / (count + 1) * count + other)
            times[i] = current


def _next_time_shift(
    events: list[Event], times: list[int], i: int, step: int, fallback_end: float
) -> tuple[float, int]:
    """Time of the nearest TIME_SHIFT from ``i`` in direction ``step``, and the anchors passed on the way."""
    count = 0
    j = i
    while 0 <= j < len(events):
        if events[j].type == T.TIME_SHIFT:
            return times[j], count
        if events[j].type in NON_TIMED_EVENTS:
            count += 1
        j += step
    return (0 if j < 0 else fallback_end), count
