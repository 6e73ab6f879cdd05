"""osu!standard stacking: how far up-left (or down-right) osu! draws each object.

Facts (osu!'s beatmap processor, the same in stable and lazer):

- Objects whose heads lie within 3 px of each other and follow closely in time stack: each
  earlier object moves one step up-left of the later one. "Closely" is the approach time
  (preempt: 1800 ms at AR0, 1200 ms at AR5, 450 ms at AR10, linear in between) times the
  map's StackLeniency, measured from the earlier object's end to the later one's start.
- A circle under a slider's end (within 3 px of where the slider finishes) stacks the other way:
  it and the circles stacked on it move down-right.
- Maps before format v6 use the older rule: a run of objects on one spot raises the first object's
  stack, and objects on a slider's path end move down-right, one step more each.
- One step is a tenth of the circle radius, applied to x and y alike.

Spinners never stack and never interrupt a stack (the old rule included, a simplification).
A search for an object's stack partners looks at most 128 objects back (or ahead, before v6):
osu! has no such limit, but without one a map of thousands of objects inside one approach time
(all at the same time, or a StackLeniency of 10000) takes time quadratic in its length. Real maps
have at most a few dozen objects inside one approach time.
"""
from __future__ import annotations

import math
from typing import Sequence

from ..beatmap import HitCircle, HitObject, Slider, Spinner
from .context import MapContext

STACK_DISTANCE = 3.0
MAX_STACK_SEARCH = 128  # objects looked at for one object's stack (see the module docstring)


def preempt_ms(approach_rate: float) -> float:
    if approach_rate < 5:
        return 1200.0 + 600.0 * (5 - approach_rate) / 5
    return 1200.0 - 750.0 * (approach_rate - 5) / 5


def circle_radius(circle_size: float) -> float:
    """Hit circle radius in osu! pixels."""
    return 32.0 * (1.0 - 0.7 * (circle_size - 5) / 5)


def _near(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return math.dist(a, b) < STACK_DISTANCE


def stack_heights(ctx: MapContext) -> dict[int, int]:
    """Stack height of each object of ``ctx.objects`` (osu!standard), keyed by ``id(object)``."""
    objects = ctx.objects
    if ctx.mode != 0 or not objects:
        return {}
    threshold = preempt_ms(ctx.beatmap.difficulty.approach_rate) * ctx.beatmap.general.stack_leniency
    if ctx.beatmap.format_version >= 6:
        heights = _stack(ctx, objects, threshold)
    else:
        heights = _stack_before_v6(ctx, objects, threshold)
    return {id(o): h for o, h in zip(objects, heights)}


def _stack(ctx: MapContext, objects: Sequence[HitObject], threshold: float) -> list[int]:
    """The v6+ rule, walking backwards from each object not yet stacked."""
    heights = [0] * len(objects)
    ends = [ctx.end_time(o) for o in objects]
    end_positions = [ctx.end_position(o) for o in objects]
    for i in range(len(objects) - 1, 0, -1):
        base = objects[i]
        if heights[i] != 0 or isinstance(base, Spinner):
            continue
        top = i  # the object the next match stacks on
        lowest = max(i - MAX_STACK_SEARCH, 0)
        if isinstance(base, HitCircle):
            for n in range(i - 1, lowest - 1, -1):
                if isinstance(objects[n], Spinner):
                    continue
                if objects[top].time - ends[n] > threshold:
                    break
                if isinstance(objects[n], Slider) and _near(end_positions[n], objects[top].position):
                    # Circles under this slider's end shift down-right, below the slider.
                    shift = heights[top] - heights[n] + 1
                    for j in range(n + 1, i + 1):
                        if _near(end_positions[n], objects[j].position):
                            heights[j] -= shift
                    break
                if _near(objects[n].position, objects[top].position):
                    heights[n] = heights[top] + 1
                    top = n
        elif isinstance(base, Slider):
            for n in range(i - 1, lowest - 1, -1):
                if isinstance(objects[n], Spinner):
                    continue
                if objects[top].time - objects[n].time > threshold:
                    break
                if _near(end_positions[n], objects[top].position):
                    heights[n] = heights[top] + 1
                    top = n
    return heights


def _stack_before_v6(ctx: MapContext, objects: Sequence[HitObject], threshold: float) -> list[int]:
    heights = [0] * len(objects)
    for i, obj in enumerate(objects):
        if isinstance(obj, Spinner) or (heights[i] != 0 and not isinstance(obj, Slider)):
            continue
        path_end = tuple(ctx.slider_info(obj).path.position_at(1.0)) if isinstance(obj, Slider) else obj.position
        last_end = ctx.end_time(obj)
        below = 0
        for j in range(i + 1, min(i + 1 + MAX_STACK_SEARCH, len(objects))):
            other = objects[j]
            if other.time - threshold > last_end:
                break
            if isinstance(other, Spinner):
                continue
            if _near(other.position, obj.position):
                heights[i] += 1
                last_end = ctx.end_time(other)
            elif _near(other.position, path_end):
                below += 1
                heights[j] -= below
                last_end = ctx.end_time(other)
    return heights


def stacked_offset(ctx: MapContext, height: int) -> float:
    """The x and y shift osu! draws an object of stack ``height`` with."""
    return -height * circle_radius(ctx.beatmap.difficulty.circle_size) / 10
