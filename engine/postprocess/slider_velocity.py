"""Slider velocity and pixel length of generated sliders and drumrolls.

A generated slider has a head, anchors, a last anchor (the end of its first span) and an end
(after all spans). Its span duration comes from those times; its length from where the end lies
on the curve. The velocity that produces that length is replaced by the current one when it is
close (5 % on new combos, 15 % otherwise) and otherwise rounded to 1/20 (1/100 below 0.1), as a
mapper would choose it; the length is then recomputed from the chosen velocity.
"""
from __future__ import annotations

import math

NEW_COMBO_SV_LENIENCY = 0.05
SV_LENIENCY = 0.15
PLAYFIELD_WIDTH = 512
DRUMROLL_Y = 192


def length_for(sv: float, span_duration: float, beat_length: float, slider_multiplier: float) -> float:
    """Pixel length of one span lasting ``span_duration`` ms at ``sv``."""
    return sv * span_duration * 100 / beat_length * slider_multiplier


def sv_for(length: float, span_duration: float, beat_length: float, slider_multiplier: float) -> float:
    """The SV at which one span of ``length`` px lasts ``span_duration`` ms."""
    return length / 100 / span_duration * beat_length / slider_multiplier


def human_sv_and_length(required_length: float, span_duration: float, current_sv: float, beat_length: float,
                        new_combo: bool, slider_multiplier: float) -> tuple[float, float]:
    """The SV a mapper would pick for a span of ``required_length`` px, and the length it gives."""
    sv = sv_for(required_length, span_duration, beat_length, slider_multiplier)
    leniency = NEW_COMBO_SV_LENIENCY if new_combo else SV_LENIENCY
    if abs(sv - current_sv) / current_sv <= leniency:
        sv = current_sv
    else:
        rounded = round(sv * 20) / 20
        if rounded < 0.1:
            rounded = round(sv * 100) / 100
        sv = rounded if rounded > 1e-5 else sv
    return sv, length_for(sv, span_duration, beat_length, slider_multiplier)


def capped_sv(curve_length: float, span_duration: float, beat_length: float, slider_multiplier: float) -> float:
    """The SV (in steps of 1/20) at which a span covers the whole curve: used when the chosen
    length would exceed the curve by more than half."""
    return round(sv_for(curve_length, span_duration, beat_length, slider_multiplier) * 20) / 20


def drumroll_points(length: float) -> list[tuple[int, int]]:
    """A linear path of at least ``length`` px that zigzags across the playfield at y=192: the
    head at x=0, then alternately x=512 and x=0 (taiko ignores positions)."""
    points = [(0, DRUMROLL_Y)]
    for i in range(int(math.ceil(length / PLAYFIELD_WIDTH))):
        points.append((PLAYFIELD_WIDTH if i % 2 == 0 else 0, DRUMROLL_Y))
    return points
