"""Event streams as groups: one type event (circle, slider head, anchor, beat, ...) with the
events that describe it (time, position, distance, new combo, hitsounds, volume, scroll speed).

Without ``types_first`` a group is the events before its type event, and events after the last
type event are ignored; with it, a group is the type event followed by the events up to the next
one, and events before the first type event join the first group.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..events import TYPE_EVENTS
from ..tokenizer import Event, EventType

T = EventType

OVERLAP_TYPES = frozenset({T.CIRCLE, T.SLIDER_HEAD, T.RED_ANCHOR, T.LAST_ANCHOR, T.SLIDER_END})
OVERLAP_DISTANCE = 3.8  # px
OVERLAP_WINDOW_MS = 1000


@dataclass
class Group:
    """One object event and its attributes. Hitsounds are decoded to osu!'s bits and sample sets
    (1 normal, 2 soft, 3 drum); a slider anchor or end may carry several (one per node)."""

    type: EventType | None = None
    value: int | None = None
    time: int = 0
    distance: int | None = None
    x: float | None = None
    y: float | None = None
    new_combo: bool = False
    hitsounds: list[int] = field(default_factory=list)
    samplesets: list[int] = field(default_factory=list)
    additions: list[int] = field(default_factory=list)
    volumes: list[float] = field(default_factory=list)
    scroll_speed: float | None = None

    def sample(self) -> tuple[int, int, int]:
        """The first (hitsound, sample set, addition set), 0 where there is none."""
        first = lambda values: values[0] if values else 0  # noqa: E731
        return first(self.hitsounds), first(self.samplesets), first(self.additions)


def decode_hitsound(value: int) -> tuple[int, int, int]:
    """A HITSOUND token value as (hitsound bits, sample set, addition set)."""
    return (value % 8) * 2, (value // 8) % 3 + 1, (value // 24) % 3 + 1


def event_groups(events: Sequence[Event], types_first: bool = False) -> list[Group]:
    groups: list[Group] = []
    group = Group()
    for event in events:
        kind = event.type
        if kind == T.TIME_SHIFT:
            group.time = event.value
        elif kind == T.DISTANCE:
            group.distance = event.value
        elif kind == T.POS_X:
            group.x = event.value
        elif kind == T.POS_Y:
            group.y = event.value
        elif kind == T.NEW_COMBO:
            group.new_combo = True
        elif kind == T.HITSOUND:
            hitsound, sampleset, addition = decode_hitsound(event.value)
            group.hitsounds.append(hitsound)
            group.samplesets.append(sampleset)
            group.additions.append(addition)
        elif kind == T.VOLUME:
            group.volumes.append(event.value)
        elif kind == T.SCROLL_SPEED:
            group.scroll_speed = event.value / 100
        elif kind in TYPE_EVENTS:
            if types_first:
                if group.type is not None:
                    groups.append(group)
                    group = Group()
                group.type, group.value = kind, event.value
            else:
                group.type, group.value = kind, event.value
                groups.append(group)
                group = Group()
    if types_first and group.type is not None:
        groups.append(group)
    return groups


def snap_near_perfect_overlaps(groups: Sequence[Group]) -> None:
    """Give objects that almost overlap an earlier one (closer than 3.8 px, within 1 s) exactly its
    position, in place."""
    recent: list[Group] = []
    for group in groups:
        if group.type not in OVERLAP_TYPES or group.x is None or group.y is None:
            continue
        recent = [g for g in recent if abs(group.time - g.time) <= OVERLAP_WINDOW_MS]
        for other in recent:
            if np.linalg.norm(np.array([group.x, group.y]) - np.array([other.x, other.y])) < OVERLAP_DISTANCE:
                group.x, group.y = other.x, other.y
                break
        recent.append(group)
