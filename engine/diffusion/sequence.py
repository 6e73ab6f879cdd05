"""Decoded osu! events as the diffusion model's sequence, and refined positions back into events.

One sequence entry per object group that has a position: circle, spinner (start and end), slider
head, each anchor, slider end. Its features are the position (normalised to [-1, 1]), the time,
the distance token (or the distance to the previous entry), and a one-hot type with new combo and
slider repeat count folded in. Every event index maps to the entry it belongs to, so refined
positions can be written back. Sliders remember which entries form their path and how long they
must be (from the head's scroll speed, the red line and the slider multiplier), so the end can be
put back on the path after every step.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..events import TYPE_EVENTS, update_event_times
from ..postprocess.upstream_curves import BEZIER, CATMULL, PERFECT
from ..tokenizer import Event, EventType
from .dit import sinusoid

T = EventType
PLAYFIELD = (512, 384)
CENTRE = (256, 192)
FEATURES = 16  # type one-hot size
TYPE_INDEX = {
    T.CIRCLE: 0, T.SPINNER: 2, T.SPINNER_END: 3, T.SLIDER_HEAD: 4, T.BEZIER_ANCHOR: 6, T.PERFECT_ANCHOR: 7,
    T.CATMULL_ANCHOR: 8, T.RED_ANCHOR: 9, T.LAST_ANCHOR: 10, T.SLIDER_END: 11,
}
NEW_COMBO_TYPES = (T.CIRCLE, T.SLIDER_HEAD)
ANCHOR_CURVES = {T.BEZIER_ANCHOR: BEZIER, T.PERFECT_ANCHOR: PERFECT, T.CATMULL_ANCHOR: CATMULL,
                 T.RED_ANCHOR: BEZIER, T.LAST_ANCHOR: BEZIER}


def repeat_offset(repeats: int) -> int:
    """Slider end type offset: 1, 2, 3 spans, then even or odd counts above that."""
    if repeats < 4:
        return repeats - 1
    return 3 if repeats % 2 == 0 else 4


@dataclass
class _Group:
    type: EventType | None
    time: float
    indices: list[int]
    distance: int | None = None
    x: float | None = None
    y: float | None = None
    new_combo: bool = False
    scroll_speed: float | None = None


@dataclass(frozen=True)
class SliderPath:
    entries: np.ndarray  # sequence entries of the path's control points (a red anchor twice)
    end: int  # entry of the slider end
    curve: str  # B, P or C
    length: float  # osu! pixels the slider must be long


@dataclass
class ObjectSequence:
    positions: torch.Tensor  # (2, L) in [-1, 1]
    times: torch.Tensor  # (L,) ms
    context: torch.Tensor  # (272, L)
    entry_of_event: dict[int, int]
    sliders: list[SliderPath] = field(default_factory=list)

    def __len__(self) -> int:
        return self.positions.shape[1]


def _groups(events: Sequence[Event], times: Sequence[int], types_first: bool) -> list[_Group]:
    """Object groups with the event indices each covers. A group's time is its type event's time; with
    ``types_first`` a TIME_SHIFT after the type event sets it again (the same value for timed groups)."""
    groups: list[_Group] = []
    group = _Group(None, 0, [])  # type: ignore[arg-type]
    indices: list[int] = []
    for i, event in enumerate(events):
        indices.append(i)
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
        elif kind == T.SCROLL_SPEED:
            group.scroll_speed = event.value / 100
        elif kind in TYPE_EVENTS:
            if types_first:
                if group.type is not None:
                    group.indices = indices[:-1]
                    groups.append(group)
                    group, indices = _Group(None, 0, []), [i]  # type: ignore[arg-type]
                group.type, group.time = kind, times[i]
            else:
                group.type, group.time, group.indices = kind, times[i], indices
                groups.append(group)
                group, indices = _Group(None, 0, []), []  # type: ignore[arg-type]
    if group.type is not None:
        group.indices = indices
        groups.append(group)
    elif indices and groups:
        groups[-1].indices.extend(indices)
    return groups


def build_sequence(
    events: Sequence[Event],
    *,
    types_first: bool = True,
    red_lines: Sequence[tuple[float, float]] | None = None,
    slider_multiplier: float = 1.4,
) -> ObjectSequence:
    """The sequence of ``events`` (TIME_SHIFT in absolute ms, POS_X/POS_Y in osu! pixels).

    ``red_lines``: (time ms, ms per beat) of the uninherited timing points, sorted; without them slider
    ends are not corrected during sampling."""
    times: list[int] = []
    update_event_times(list(events), times, types_first=types_first)
    groups = _groups(events, times, types_first)

    entry_of_event: dict[int, int] = {}
    rows: list[list[float]] = []
    carried: list[int] = []
    head_time = last_anchor_time = 0.0
    last_pos = CENTRE
    for group in groups:
        carried.extend(group.indices)
        if group.type not in TYPE_INDEX:
            continue
        index = TYPE_INDEX[group.type]
        if group.type in NEW_COMBO_TYPES and group.new_combo:
            index += 1
        if group.type == T.SLIDER_END:
            span = last_anchor_time - head_time
            repeats = max(int(round((group.time - head_time) / span)), 1) if span > 0 else 1
            index += repeat_offset(repeats)
        elif group.type == T.SLIDER_HEAD:
            head_time = group.time
        elif group.type == T.LAST_ANCHOR:
            last_anchor_time = group.time
        if not group.x or not group.y:  # a zero coordinate counts as missing, as in the published pipeline
            group.x, group.y = CENTRE
        pos = (group.x, group.y)
        if not group.distance:
            group.distance = math.hypot(pos[0] - last_pos[0], pos[1] - last_pos[1])
        rows.append([pos[0], pos[1], group.time, group.distance, index])
        for j in carried:
            entry_of_event[j] = len(rows) - 1
        carried = []
        last_pos = pos
    for j in carried:
        if rows:
            entry_of_event[j] = len(rows) - 1
    if not rows:
        return ObjectSequence(torch.zeros(2, 0), torch.zeros(0), torch.zeros(272, 0), {}, [])

    data = torch.tensor([r[:4] for r in rows], dtype=torch.float32).T  # (4, L) float32 as the model was fed
    one_hot = torch.zeros(FEATURES, len(rows))
    one_hot[[r[4] for r in rows], range(len(rows))] = 1
    positions = data[:2] / torch.tensor(PLAYFIELD).unsqueeze(1) * 2 - 1
    context = torch.cat([sinusoid(data[2] * 0.1, 128).T, sinusoid(data[3], 128).T, one_hot], 0)
    sliders = _slider_paths(groups, entry_of_event, red_lines, slider_multiplier) if red_lines else []
    return ObjectSequence(positions, data[2], context, entry_of_event, sliders)


def _red_line_at(time_ms: float, red_lines: Sequence[tuple[float, float]]) -> tuple[float, float]:
    i = bisect_right([t for t, _ in red_lines], round(time_ms))
    return red_lines[i - 1] if i else red_lines[0]


def _slider_paths(groups, entry_of_event, red_lines, slider_multiplier) -> list[SliderPath]:
    sliders: list[SliderPath] = []
    head = last_anchor = None
    path: list[tuple[str, int]] = []
    for group in groups:
        entry = entry_of_event.get(group.indices[0])
        if group.type == T.SLIDER_HEAD:
            path, head, last_anchor = [(BEZIER, entry)], group, None
        elif group.type in ANCHOR_CURVES:
            path.append((ANCHOR_CURVES[group.type], entry))
            if group.type == T.RED_ANCHOR:
                path.append((BEZIER, entry))
            elif group.type == T.LAST_ANCHOR:
                last_anchor = group
        elif group.type == T.SLIDER_END and head is not None and last_anchor is not None:
            span = last_anchor.time - head.time
            _, beat_length = _red_line_at(head.time, red_lines)
            if head.scroll_speed is not None:
                length = head.scroll_speed * span * 100 / beat_length * slider_multiplier
                sliders.append(SliderPath(np.array([e for _, e in path]), entry, path[1][0], length))
            head = last_anchor = None
            path = []
    return sliders


def events_with_positions(events: Sequence[Event], times: Sequence[int] | None, pixels: np.ndarray,
                          entry_of_event: dict[int, int], keep_in_playfield: bool) -> tuple[list[Event], list[int] | None]:
    """``events`` with every DISTANCE replaced by POS_X POS_Y and every POS_X/POS_Y set to its entry's
    refined position (rounded to whole pixels); ``pixels`` is (2, L)."""
    def coordinate(axis: int, i: int) -> int:
        value = int(round(float(pixels[axis, entry_of_event[i]])))
        return min(max(value, 0), PLAYFIELD[axis]) if keep_in_playfield else value

    out: list[Event] = []
    out_times: list[int] | None = [] if times is not None else None
    for i, event in enumerate(events):
        if event.type == T.DISTANCE:
            new = [Event(T.POS_X, coordinate(0, i)), Event(T.POS_Y, coordinate(1, i))]
        elif event.type in (T.POS_X, T.POS_Y):
            new = [Event(event.type, coordinate(0 if event.type == T.POS_X else 1, i))]
        else:
            new = [event]
        out.extend(new)
        if out_times is not None:
            out_times.extend([times[i]] * len(new))
    return out, out_times
