"""Slider checks: a stored length that disagrees with the drawn path, straight Bezier sliders.

Neither is a Mapset Verifier check; the definitions are ours, built on osu!'s path rules (see
:mod:`engine.beatmap.slider_path`):

- ``slider-length``: osu! cuts the drawn path at the stored pixel length, or extends its last
  segment in a straight line when the length is longer. The editor snaps lengths down to the beat
  divisor, so every editor-made slider is cut by less than one beat of travel (real ranked maps:
  under 0.3 beat); a slider cut by a whole beat of travel or more (100 * SliderMultiplier * SV
  px) hides control points nobody sees, a warning. Extending more than 5 px beyond the drawn path
  (paths of stable and lazer differ by up to ~3 px) is a warning too.
- ``straight-bezier``: a Bezier slider whose every segment is straight (two points, or points
  within 0.5 px of the line from the segment's first to last point, in order along it) draws
  exactly the line a Linear slider would; minor.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from ..beatmap import PathControlPoint, Slider
from ..messages import Message
from ..suggestions import Severity, Suggestion
from .context import MapContext
from .registry import rule

SLIDERS = "Sliders"
EXTEND_TOLERANCE_PX = 5.0
CUT_TOLERANCE_BEATS = 1.0
STRAIGHT_TOLERANCE_PX = 0.5


@rule("slider-length", SLIDERS, "Slider length disagrees with its drawn path.")
def slider_length(ctx: MapContext) -> Iterator[Suggestion]:
    for obj in ctx.objects:
        if not isinstance(obj, Slider) or obj.length is None or obj.length <= 0 or not obj.curve_points:
            continue
        info = ctx.slider_info(obj)
        drawn = info.path.calculated_distance
        if drawn <= 0:
            continue
        stored = obj.length
        beat_px = info.velocity * info.beat_length
        if stored - drawn > EXTEND_TOLERANCE_PX:
            if info.distance < stored - EXTEND_TOLERANCE_PX:
                message = Message("rule.slider_length.repeated_point", "Slider length is {px:.0f} px longer than its "
                                  "drawn path; its path ends on a repeated point, so osu! cannot extend it and the "
                                  "slider is shorter.", px=stored - drawn)
            else:
                message = Message("rule.slider_length.extended", "Slider length is {px:.0f} px longer than its drawn "
                                  "path; osu! extends its last segment in a straight line past the last control "
                                  "point.", px=stored - drawn)
        elif drawn - stored >= CUT_TOLERANCE_BEATS * beat_px:
            message = Message("rule.slider_length.cut", "Slider length cuts {px:.0f} px ({beats:.1f} beats) off its "
                              "drawn path; the control points past its end are never shown.", px=drawn - stored,
                              beats=(drawn - stored) / beat_px)
        else:
            continue
        yield ctx.suggest("slider-length", SLIDERS, Severity.WARNING, message, obj.time, objects=(obj,),
                          expected=f"{drawn:.2f} px (drawn path)", actual=f"{stored:g} px (stored length)",
                          drawn_px=drawn, stored_px=stored)


def _segments(points: Sequence[PathControlPoint]) -> list[tuple[str, np.ndarray]]:
    """Control points split into (type, points) segments; a segment's last point starts the next."""
    out, start = [], 0
    for i in range(1, len(points) + 1):
        if i == len(points) or points[i].type is not None:
            chunk = points[start:i + 1] if i < len(points) else points[start:]
            out.append((points[start].type or "L", np.array([(p.x, p.y) for p in chunk], dtype=float)))
            start = i
    return out


def is_straight(points: np.ndarray, tolerance: float = STRAIGHT_TOLERANCE_PX) -> bool:
    """Whether a segment's points lie on the line from its first to its last point, in order."""
    first, last = points[0], points[-1]
    direction = last - first
    length = float(np.hypot(*direction))
    if length == 0:
        return bool(np.all(points == first))
    unit = direction / length
    rel = points - first
    across = np.abs(rel[:, 0] * unit[1] - rel[:, 1] * unit[0])
    along = rel @ unit
    return bool(np.all(across <= tolerance) and np.all(np.diff(along) >= -tolerance))


@rule("straight-bezier", SLIDERS, "Straight sliders stored as Bezier.")
def straight_bezier(ctx: MapContext) -> Iterator[Suggestion]:
    for obj in ctx.objects:
        if not isinstance(obj, Slider) or not obj.curve_type.startswith("B") or not obj.curve_points:
            continue
        info = ctx.slider_info(obj)
        if info.distance <= 0:
            continue
        segments = _segments(info.path.control_points)
        if not any(kind.startswith("B") for kind, _ in segments):
            continue
        if all(kind == "L" or (kind.startswith("B") and is_straight(pts)) for kind, pts in segments):
            yield ctx.suggest("straight-bezier", SLIDERS, Severity.MINOR,
                              Message("rule.straight_bezier", "Straight slider is stored as Bezier; a Linear slider "
                                      "draws the same line exactly."),
                              obj.time, objects=(obj,), expected="L (Linear)", actual=f"{obj.curve_type} (Bezier)")
