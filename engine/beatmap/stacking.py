"""osu!standard stacking as osu!lazer's ``OsuBeatmapProcessor`` computes it, with its osu!stable compatibility.

Facts followed (osu!lazer, checked against its conversion test expectations):

- Objects are taken in time order (stably). Stack heights start at 0; maps of format v6 and later use the
  backward rule, older maps the forward one.
- Stack threshold: ``(int)preempt * StackLeniency`` as a 32-bit float, where the approach time ``preempt`` is
  1800 ms at AR0, 1200 at AR5 and 450 at AR10 (linear in between, on the 32-bit float AR) truncated to whole ms.
- Two objects stack when their positions are less than 3 px apart. Backward rule: from each object not yet
  stacked, walk back while the gap from the earlier object's end to this one's start is within the threshold
  (for a circle, both times truncated to whole ms as stable does). A circle under a slider's end pushes itself and
  the circles stacked on it down-right (negative heights); otherwise each earlier object lands one step above.
  A slider only stacks earlier objects whose end lies on its head, measured start to start. Spinners never stack.
- Forward rule (before v6): a run of objects on one spot raises the first object's stack; objects on a slider's
  path end move down-right, one step more each (times are start times, as stable's unprocessed objects had).
- One step shifts x and y by ``-6.4 * scale`` with osu!'s circle scale ``(1 - 0.7 * (CS - 5) / 5) / 2`` and
  its 1.00041 replay fudge (about a tenth of the circle radius).

Deviation: the search for one object's stack partners looks at most MAX_STACK_SEARCH objects back (ahead, before
v6). osu! has no limit, but then thousands of objects inside one approach time (all at one time, or a huge
StackLeniency) take time quadratic in their number; real maps have a few dozen objects inside one approach time.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .model import HitCircle, HitObject, Slider, Spinner
from .slider_timing import SliderInfo

if TYPE_CHECKING:  # pragma: no cover
    from .beatmap import Beatmap

STACK_DISTANCE = 3.0
FIRST_BACKWARD_VERSION = 6
MAX_STACK_SEARCH = 128  # objects looked at for one object's stack partners (see the module docstring)
GAMEFIELD_FUDGE = 1.00041


def _f32(value: float) -> float:
    return float(np.float32(value))


def preempt_ms(approach_rate: float) -> int:
    """osu!'s approach time in whole ms (``DifficultyRangeInt`` on the 32-bit float AR)."""
    ar = _f32(approach_rate)
    if ar > 5:
        return int(1200 + (450 - 1200) * (ar - 5) / 5)
    if ar < 5:
        return int(1200 + (1200 - 1800) * (ar - 5) / 5)
    return 1200


def stack_threshold(beatmap: Beatmap) -> float:
    """How far apart in time (ms) two objects may be and still stack."""
    return _f32(np.float32(preempt_ms(beatmap.difficulty.approach_rate)) * np.float32(beatmap.general.stack_leniency))


def stack_step(circle_size: float) -> float:
    """The x and y shift (osu! pixels, positive) of one stack level."""
    scale = _f32(np.float32(1.0 - 0.7 * (_f32(circle_size) - 5) / 5) / np.float32(2) * np.float32(GAMEFIELD_FUDGE))
    return _f32(np.float32(scale) * np.float32(6.4))


def stack_heights(beatmap: Beatmap, objects: Sequence[HitObject] | None = None,
                  slider_info: Callable[[Slider], SliderInfo] | None = None) -> list[int]:
    """Stack height of each of ``objects`` (default: the beatmap's hit objects in time order, stably sorted);
    all zero outside osu!standard. ``objects`` must be in time order. ``slider_info`` is the caller's (cached)
    slider geometry lookup, by default the beatmap's."""
    if objects is None:
        objects = sorted(beatmap.hit_objects, key=lambda o: o.time)
    if beatmap.mode != 0 or not objects:
        return [0] * len(objects)
    info = slider_info or beatmap.slider_info
    ends = [info(o).end_time if isinstance(o, Slider) else beatmap.end_time(o) for o in objects]
    end_positions = [_end_position(info, o) for o in objects]
    threshold = stack_threshold(beatmap)
    if beatmap.format_version >= FIRST_BACKWARD_VERSION:
        return _backward(objects, ends, end_positions, threshold)
    return _forward(info, objects, ends, threshold)


def stacked_offset(beatmap: Beatmap, height: int) -> float:
    """The x and y shift osu! draws an object of stack ``height`` with."""
    return -height * stack_step(beatmap.difficulty.circle_size)


def _end_position(slider_info: Callable[[Slider], SliderInfo], obj: HitObject) -> tuple[float, float]:
    """Where the object finishes: a slider's path end after an odd span count, its head after an even one."""
    if not isinstance(obj, Slider):
        return obj.position
    info = slider_info(obj)
    x, y = info.path.position_at(float(info.span_count % 2))
    return float(x), float(y)


def _near(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return math.dist(a, b) < STACK_DISTANCE


def _backward(objects: Sequence[HitObject], ends: list[float], end_positions: list[tuple[float, float]],
              threshold: float) -> list[int]:
    heights = [0] * len(objects)
    for i in range(len(objects) - 1, 0, -1):
        if heights[i] != 0 or isinstance(objects[i], Spinner):
            continue
        top = i  # the object the next match stacks onto
        lowest = max(i - MAX_STACK_SEARCH, 0)
        if isinstance(objects[i], HitCircle):
            for n in range(i - 1, lowest - 1, -1):
                if isinstance(objects[n], Spinner):
                    continue
                if int(objects[top].time) - int(ends[n]) > threshold:
                    break
                if isinstance(objects[n], Slider) and _near(end_positions[n], objects[top].position):
                    shift = heights[top] - heights[n] + 1
                    for j in range(n + 1, i + 1):
                        if _near(end_positions[n], objects[j].position):
                            heights[j] -= shift
                    break
                if _near(objects[n].position, objects[top].position):
                    heights[n] = heights[top] + 1
                    top = n
        elif isinstance(objects[i], Slider):
            for n in range(i - 1, lowest - 1, -1):
                if isinstance(objects[n], Spinner):
                    continue
                if objects[top].time - objects[n].time > threshold:
                    break
                if _near(end_positions[n], objects[top].position):
                    heights[n] = heights[top] + 1
                    top = n
    return heights


def _forward(slider_info: Callable[[Slider], SliderInfo], objects: Sequence[HitObject], ends: list[float], threshold: float) -> list[int]:
    heights = [0] * len(objects)
    for i, obj in enumerate(objects):
        if heights[i] != 0 and not isinstance(obj, Slider):
            continue
        path_end = obj.position
        if isinstance(obj, Slider):
            x, y = slider_info(obj).path.position_at(1.0)
            path_end = (float(x), float(y))
        last = ends[i]
        below = 0
        for j in range(i + 1, min(i + 1 + MAX_STACK_SEARCH, len(objects))):
            if objects[j].time - threshold > last:
                break
            if _near(objects[j].position, obj.position):
                heights[i] += 1
                last = objects[j].time
            elif _near(objects[j].position, path_end):
                below += 1
                heights[j] -= below
                last = objects[j].time
    return heights
