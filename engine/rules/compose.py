"""Compose checks: objects without length, objects off the screen, objects after the song.

- ``zero-length``: a slider with no curve points (only its head; Mapset Verifier's "Invisible
  slider"), a negative pixel length (MV), or a path of zero length (every point on the head), and
  spinners or hold notes that end at or before their start, are problems.
- ``offscreen`` (MV "Offscreen hit objects", osu!standard): MV's measured 4:3 screen edges in
  playfield pixels are x -67..579 and y -60..428, and an object's border (the circle radius,
  ``32 * (1 - 0.7 * (CS - 5) / 5)``) must stay inside them at its stacked position. A head past the
  bottom edge is a problem; past another edge the game pushes heads back on screen (a warning)
  unless stacking moved it out (up-left stacks past the top or left edge, down-right stacks past
  the right edge: a problem). A slider tail or any point of the body past an edge is a problem; a
  curved body within 1 px of an edge is a warning (MV's "possibly offscreen").
- ``after-audio``: objects that start or end after the audio ends are a problem (only when the
  caller passes the audio's duration).
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from ..beatmap import HitCircle, HoldNote, Slider, Spinner
from ..suggestions import Severity, Suggestion, editor_timestamp
from .context import MapContext, object_name
from ..messages import Message
from .registry import rule
from .stacking import circle_radius, stack_heights, stacked_offset

COMPOSE = "Compose"
LEFT, RIGHT, TOP, BOTTOM = -67.0, 579.0, -60.0, 428.0
BODY_MARGIN_PX = 1.0
ZERO_LENGTH_PX = 1e-7


# --------------------------------------------------------------------------------- zero length
@rule("zero-length", COMPOSE, "Sliders, spinners or hold notes without length.")
def zero_length(ctx: MapContext) -> Iterator[Suggestion]:
    for obj in ctx.objects:
        message = None
        if isinstance(obj, Slider):
            if not obj.curve_points:
                message = Message("rule.zero_length.no_points",
                                  "Slider has no curve points, only its head, so it has no visible path.")
            elif obj.length is not None and obj.length < 0:
                message = Message("rule.zero_length.negative", "Slider has a negative pixel length ({length:g}).",
                                  length=float(obj.length))
            elif ctx.slider_info(obj).distance <= ZERO_LENGTH_PX:
                message = Message("rule.zero_length.slider", "Slider has zero length: every curve point is on its head.")
        elif isinstance(obj, (Spinner, HoldNote)):
            name = object_name(obj, ctx.mode)
            if obj.end_time < obj.time:
                message = Message("rule.zero_length.ends_before", "{name} ends {ms:g} ms before it starts.", name=name,
                                  ms=float(obj.time - obj.end_time))
            elif obj.end_time == obj.time:
                message = Message("rule.zero_length.duration", "{name} has zero duration.", name=name)
        if message:
            yield ctx.suggest("zero-length", COMPOSE, Severity.PROBLEM, message, obj.time, objects=(obj,))


# ----------------------------------------------------------------------------------- offscreen
def offscreen_by(x: float, y: float, radius: float) -> float:
    """How many pixels a circle border at (x, y) reaches past the screen (<= 0: on screen)."""
    return max(x + radius - RIGHT, LEFT - (x - radius), y + radius - BOTTOM, TOP - (y - radius))


def _body_offscreen_by(vertices: np.ndarray, radius: float) -> float:
    """The largest :func:`offscreen_by` along a path (a polyline reaches furthest at a vertex)."""
    x, y = vertices[:, 0], vertices[:, 1]
    return float(max((x + radius - RIGHT).max(), (LEFT - (x - radius)).max(),
                     (y + radius - BOTTOM).max(), (TOP - (y - radius)).max()))


@rule("offscreen", COMPOSE, "Offscreen hit objects.", modes=(0,))
def offscreen(ctx: MapContext) -> Iterator[Suggestion]:
    radius = circle_radius(ctx.beatmap.difficulty.circle_size)
    heights = stack_heights(ctx)
    for obj in ctx.objects:
        if not isinstance(obj, (HitCircle, Slider)):
            continue
        height = heights.get(id(obj), 0)
        shift = stacked_offset(ctx, height)
        x, y = obj.x + shift, obj.y + shift
        part = Message("object.slider_head", "Slider head") if isinstance(obj, Slider) else \
            Message("object.circle", "Circle")
        if y + radius > BOTTOM:
            yield _offscreen(ctx, obj, Message("rule.offscreen.part", "{part} is offscreen.", part=part),
                             Severity.PROBLEM, obj.time)
        elif offscreen_by(x, y, radius) > 0:
            up_left_out = y - radius < TOP or x - radius < LEFT
            stacked_out = (up_left_out and height > 0) or (x + radius > RIGHT and height < 0)
            if stacked_out:
                yield _offscreen(ctx, obj, Message("rule.offscreen.stacked", "{part} is offscreen (stacking moves it "
                                                   "out).", part=part), Severity.PROBLEM, obj.time)
            else:
                yield _offscreen(ctx, obj, Message("rule.offscreen.prevented", "{part} would be offscreen, but the "
                                                   "game prevents it.", part=part), Severity.WARNING, obj.time)
        if not isinstance(obj, Slider):
            continue
        info = ctx.slider_info(obj)
        tail_x, tail_y = ctx.end_position(obj)
        if offscreen_by(tail_x + shift, tail_y + shift, radius) > 0:
            yield _offscreen(ctx, obj, Message("rule.offscreen.tail", "Slider tail is offscreen."), Severity.PROBLEM,
                             info.end_time)
            continue
        reach = _body_offscreen_by(info.path.vertices + shift, radius)
        if reach > 0:
            yield _offscreen(ctx, obj, Message("rule.offscreen.body", "Slider body is offscreen."), Severity.PROBLEM,
                             obj.time)
        elif obj.curve_type != "L" and reach + BODY_MARGIN_PX > 0:
            yield _offscreen(ctx, obj, Message("rule.offscreen.body_possibly", "Slider body is possibly offscreen; "
                                               "make sure its whole border is visible in 4:3."), Severity.WARNING,
                             obj.time)


def _offscreen(ctx: MapContext, obj, message: str, severity: Severity, time: float) -> Suggestion:
    return ctx.suggest("offscreen", COMPOSE, severity, message, time, objects=(obj,) if time == obj.time else ())


# --------------------------------------------------------------------------------- after audio
@rule("after-audio", COMPOSE, "Hit objects after the audio ends.")
def after_audio(ctx: MapContext) -> Iterator[Suggestion]:
    duration = ctx.audio_duration_ms
    if duration is None or not math.isfinite(duration):
        return
    late = [o for o in ctx.objects if ctx.end_time(o) > duration]
    if not late:
        return
    first = late[0]
    starts_late = sum(o.time > duration for o in late)
    end = editor_timestamp(duration).removesuffix(" - ")
    if len(late) == 1 and starts_late:
        message = Message("rule.after_audio.starts", "{name} starts after the audio ends at {end}.",
                          name=object_name(first, ctx.mode), end=end)
    elif len(late) == 1:
        message = Message("rule.after_audio.ends", "{name} ends after the audio ends at {end}.",
                          name=object_name(first, ctx.mode), end=end)
    else:
        message = Message("rule.after_audio.many", "{count} objects start or end after the audio ends at {end}.",
                          count=len(late), end=end)
    yield ctx.suggest("after-audio", COMPOSE, Severity.PROBLEM, message, first.time, objects=(first,),
                      expected=f"end by {duration:.0f} ms", actual=f"ends at {max(ctx.end_time(o) for o in late):.0f} ms",
                      objects_after=len(late), starting_after=starts_late)
