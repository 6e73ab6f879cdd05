"""Stacking for the rule checks: :mod:`engine.beatmap.stacking` (osu!lazer's processor) keyed for a MapContext.

The rules ask "where does osu! draw this object?"; the answer is the one the preview player draws, so both read
the same stack heights.
"""
from __future__ import annotations

from ..beatmap import stacking
from ..beatmap.stacking import MAX_STACK_SEARCH, preempt_ms  # noqa: F401  (the rules' vocabulary)
from .context import MapContext


def circle_radius(circle_size: float) -> float:
    """Hit circle radius in osu! pixels."""
    return 32.0 * (1.0 - 0.7 * (circle_size - 5) / 5)


def stack_heights(ctx: MapContext) -> dict[int, int]:
    """Stack height of each object of ``ctx.objects`` (osu!standard), keyed by ``id(object)``."""
    if ctx.mode != 0 or not ctx.objects:
        return {}
    objects = ctx.objects
    return {id(o): h for o, h in zip(objects, stacking.stack_heights(ctx.beatmap, objects, ctx.slider_info))}


def stacked_offset(ctx: MapContext, height: int) -> float:
    """The x and y shift osu! draws an object of stack ``height`` with."""
    return stacking.stacked_offset(ctx.beatmap, height)
