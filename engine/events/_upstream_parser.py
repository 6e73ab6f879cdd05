"""The numbers upstream's .osu parser (the ``slider`` library) produces, reproduced exactly.

The published checkpoints were trained on event streams built from ``slider`` objects, whose arithmetic
differs from osu!'s in small but visible ways:

- times are ``datetime.timedelta`` values: microsecond resolution, round-half-even when scaled or divided,
  and events are stamped with ``int(ms + 1e-5)``;
- a slider lasts ``int(beats * ms_per_beat)`` ms, with the slider velocity clipped to [0.1, 10];
- the curve type is re-decided from the points (a perfect circle with the wrong number of points or
  collinear points becomes a bezier);
- the end position of a curve comes from bezier lengths sampled at 50 points and from polynomial
  extrapolation when the requested pixel length is longer than the path, not from osu!'s path
  approximation.

Everything here exists so tokenization sees those numbers; osu!-correct geometry lives in
``engine.beatmap``. Nothing in this module is used to write beatmaps.
"""
from __future__ import annotations

import bisect
import math
from datetime import timedelta
from fractions import Fraction
from itertools import accumulate
from typing import Sequence

import numpy as np

Point = tuple[float, float]

_US = timedelta(microseconds=1)


# --- time -----------------------------------------------------------------------------------------

def us_from_ms(ms: float) -> int:
    """``timedelta(milliseconds=ms)`` in microseconds (CPython rounds the fraction half-to-even)."""
    if isinstance(ms, int):
        return ms * 1000
    return timedelta(milliseconds=ms) // _US


def ms_of(us: int) -> float:
    """``timedelta.total_seconds() * 1000``: the float milliseconds upstream reads from a time."""
    return us / 10**6 * 1000


def event_ms(us: int) -> int:
    """The integer millisecond an event at ``us`` is stamped with: ``int(ms + 1e-5)``, truncating toward zero."""
    return int(us / 10**6 * 1000 + 1e-5)


def scaled_us(us: int, factor: float) -> int:
    """``timedelta * float``: exact product rounded half-to-even to a microsecond."""
    return round(Fraction(us) * Fraction(factor))


def divided_us(us: int, divisor: int) -> int:
    """``timedelta / int``: rounded half-to-even to a microsecond."""
    return round(Fraction(us, divisor))


def whole_seconds_ms(us: int) -> int:
    """``int(timedelta.seconds * 1000)``: the seconds *component* (not the total) in ms.

    Upstream's median-BPM code reads ``.seconds``, which drops the sub-second part and wraps negative
    times into the last day (``-30 ms`` reads as 86399 s). Reproduced because the SV context depends on it.
    """
    return (us // 10**6) % 86400 * 1000


def median_beat_length(points: Sequence[tuple[int, float, bool]], end_ms: float) -> float:
    """The beat length covering most of the map up to ``end_ms`` (osu!stable's "median BPM" rule) with upstream's
    arithmetic: timing point offsets read in whole seconds (:func:`whole_seconds_ms`).

    ``points``: ``(offset_us, beat_length, uninherited)`` of every timing point in order. Walking back from the
    end, each red line's beat length is credited with the time until the next counted point; inherited points
    only count at index 0. 0 when nothing is credited.
    """
    durations: dict[float, int] = {}
    current = 0.0
    end = end_ms
    for i in range(len(points) - 1, -1, -1):
        offset_us, beat_length, uninherited = points[i]
        offset = whole_seconds_ms(offset_us)
        if uninherited:
            current = beat_length
        if current == 0 or offset > end or (not uninherited and i > 0):
            continue
        durations[current] = durations.get(current, 0) + int(end - (0 if i == 0 else offset))
        end = offset
    best, longest = 0.0, 0
    for length, duration in durations.items():
        if duration > longest:
            best, longest = length, duration
    return best


# --- curves ---------------------------------------------------------------------------------------

def curve_kind(letter: str, points: Sequence[tuple[int, int]]) -> str:
    """The curve class slider builds for a path letter: ``"L"``, ``"C"``, ``"P"`` or ``"B"``.

    A perfect circle needs exactly three points that are not collinear; otherwise slider falls back to
    a (multi-)bezier. Unknown letters are treated as bezier (slider refuses the whole file).
    """
    if letter == "L":
        return "L"
    if letter == "C":
        return "C"
    if letter == "P" and len(points) == 3 and _circle_center(points) is not None:
        return "P"
    return "B"


def end_position(kind: str, points: Sequence[tuple[int, int]], pixel_length: float) -> Point:
    """Where slider's ``curve(1)`` puts the end of a path of ``pixel_length`` pixels.

    ``kind`` is the result of :func:`curve_kind`; ``points`` include the head. The arithmetic follows
    slider step by step (numpy float64, same operation order) because positions are truncated to a
    grid afterwards and a last-bit difference can move a token.
    """
    last = float(points[-1][0]), float(points[-1][1])
    if kind == "P":
        kind = curve_kind("P", points)
    if len(points) == 1 or kind == "C":
        # Catmull: at t=1 the Hermite basis selects the last segment's end point; the length is ignored.
        return last
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == "P":
            end = _perfect_end(points, pixel_length)
        elif kind == "L":
            end = _segmented_end([list(pair) for pair in zip(points, points[1:])], pixel_length)
        else:
            end = _segmented_end(_split_at_duplicates(points), pixel_length)
    # A zero-length path stretched to a length gives NaN in slider (and upstream then crashes).
    return end if all(math.isfinite(v) for v in end) else last


def _circle_center(points: Sequence[tuple[int, int]]) -> np.ndarray | None:
    """Circumcentre of three points as osu!'s CircularArcApproximator computes it; None when degenerate."""
    a, b, c = np.array(points, dtype=np.float64)
    a_sq = np.sum(np.square(b - c))
    b_sq = np.sum(np.square(a - c))
    c_sq = np.sum(np.square(a - b))
    if np.isclose([a_sq, b_sq, c_sq], 0).any():
        return None
    s = a_sq * (b_sq + c_sq - a_sq)
    t = b_sq * (a_sq + c_sq - b_sq)
    u = c_sq * (a_sq + b_sq - c_sq)
    total = s + t + u
    if np.isclose(total, 0):
        return None
    return (s * a + t * b + u * c) / total


def _perfect_end(points: Sequence[tuple[int, int]], pixel_length: float) -> Point:
    center = _circle_center(points)
    offsets = np.array(points) - center
    start_angle, end_angle = np.arctan2(offsets[::2, 1], offsets[::2, 0])
    if end_angle < start_angle:
        end_angle += 2 * math.pi
    angle = end_angle - start_angle
    chord = offsets[2] - offsets[0]
    if np.dot(np.array((chord[1], -chord[0])), offsets[1] - offsets[0]) < 0:
        angle = -(2 * math.pi - angle)
    arc_length = abs(angle * math.sqrt(offsets[0][0] ** 2 + offsets[0][1] ** 2))
    if arc_length > pixel_length:  # slider only ever shortens an arc, never extends it
        angle *= pixel_length / arc_length
    dx, dy = points[0][0] - center[0], points[0][1] - center[1]
    return (
        float((dx * math.cos(angle) - dy * math.sin(angle)) + center[0]),
        float((dx * math.sin(angle) + dy * math.cos(angle)) + center[1]),
    )


def _split_at_duplicates(points: Sequence[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Bezier segments: a repeated point ends one segment and starts the next (osu!'s red anchor)."""
    segments, start = [], 0
    for i in range(1, len(points)):
        if points[i - 1] == points[i]:
            segments.append(list(points[start:i]))
            start = i
    segments.append(list(points[start:]))
    return segments


def _segmented_end(segments: list[list[tuple[int, int]]], pixel_length: float) -> Point:
    """``curve(1)`` of slider's stitched curves: only the last segment is stretched or cut to fit."""
    lengths = [_bezier_length(seg) for seg in segments]
    total = sum(lengths)
    wanted = lengths[:-1] + [max(0, lengths[-1] - (total - pixel_length))]
    if len(segments) == 1:
        index, local_t = 0, 1
    else:
        ts = [prefix / total for prefix in accumulate(lengths[:-1])] + [1]
        index = bisect.bisect_left(ts, 1)
        before = ts[index - 1] if index > 0 else 0
        local_t = (1 - before) / (ts[index] - before)
    x, y = _bezier_at(segments[index], np.asarray(local_t * (wanted[index] / lengths[index])))[0]
    return float(x), float(y)


def _bezier_length(points: Sequence[tuple[int, int]]) -> np.float64:
    """Length of a bezier as a 50-point polyline (slider's approximation)."""
    samples = _bezier_at(points, np.linspace(0, 1, 50))
    return np.sum(np.sqrt(np.sum(np.square(np.diff(samples, axis=0)), axis=1)))


def _bezier_at(points: Sequence[tuple[int, int]], t: np.ndarray) -> np.ndarray:
    """Bernstein-form bezier evaluated at each ``t`` (may lie outside [0, 1]); shape (len(t), 2)."""
    t = np.asarray(t).reshape(-1, 1)
    degree = len(points) - 1
    index = np.arange(degree + 1)
    binomials = _binomials(degree)
    if binomials is None:
        weights = _log_bernstein_weights(degree, t)
    else:
        weights = binomials * (1 - t) ** (degree - index) * t**index
    return np.sum(weights[:, np.newaxis] * np.array(points).T, axis=-1)


def _log_bernstein_weights(degree: int, t: np.ndarray) -> np.ndarray:
    """Bernstein weights computed through logarithms, for degrees whose binomials overflow a float.

    slider (scipy's ``comb``) gives infinite weights there and NaN positions; these are the true
    weights, to within rounding, in O(degree) per ``t``. Outside [0, 1] the signs are kept and
    magnitudes may overflow to infinity (the caller then falls back to the last point).
    """
    k = np.arange(degree + 1)
    log_comb = (math.lgamma(degree + 1) - np.array([math.lgamma(i + 1) for i in k])
                - np.array([math.lgamma(degree - i + 1) for i in k]))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_t, log_u = np.log(np.abs(t)), np.log(np.abs(1 - t))  # -inf at 0 and 1: exp gives the 0 weights
        magnitude = np.exp(log_comb + k * log_t + (degree - k) * log_u)
    magnitude = np.where((k == 0) & (t == 0) | (k == degree) & (t == 1), 1.0, magnitude)
    sign = np.where((t < 0) & (k % 2 == 1), -1.0, 1.0) * np.where((t > 1) & ((degree - k) % 2 == 1), -1.0, 1.0)
    return sign * magnitude


_BINOMIALS: dict[int, np.ndarray | None] = {}


def _binomials(n: int) -> np.ndarray | None:
    """Row ``n`` of Pascal's triangle as float64, rounded the way scipy.special.comb(n, k) rounds it.

    scipy multiplies out ``(n-k+1)...n / k!`` in doubles when the smaller of k and n-k is below 20,
    which is inexact from n of about 25 on; slider's beziers inherit those values. Beyond that scipy
    switches to a beta-function formula we do not reproduce; the exact value is used instead (it can
    differ in the last bit for bezier segments of more than 40 points). ``None`` when the row does not
    fit a float (n above about 1030).
    """
    if n not in _BINOMIALS:
        try:
            _BINOMIALS[n] = np.array([_binomial(n, k) for k in range(n + 1)], dtype=np.float64)
        except OverflowError:
            _BINOMIALS[n] = None
    return _BINOMIALS[n]


def _binomial(n: int, k: int) -> float:
    kx = n - k if k > n / 2 and n > 0 else k
    if kx >= 20:
        return float(math.comb(n, k))
    numerator, denominator = 1.0, 1.0
    for i in range(1, kx + 1):
        numerator *= i + float(n) - kx
        denominator *= i
        if abs(numerator) > 1e50:
            numerator /= denominator
            denominator = 1.0
    return numerator / denominator


# --- sliders --------------------------------------------------------------------------------------

def slider_duration_ms(
    pixel_length: float, repeats: int, slider_multiplier: float, beat_length: float, sv_beat_length: float | None
) -> int:
    """Total slider duration in whole ms as slider computes it (truncated, SV clipped to [0.1, 10]).

    ``beat_length`` is the ms per beat of the governing uninherited point; ``sv_beat_length`` the
    (negative) beat length of the inherited point in effect, or None when the point in effect is
    uninherited.
    """
    velocity = 1 if sv_beat_length is None else np.clip(-100 / sv_beat_length, 0.1, 10)
    pixels_per_beat = slider_multiplier * 100 * velocity
    beats = (pixel_length * repeats) / pixels_per_beat
    duration = beats * beat_length
    return int(duration) if math.isfinite(duration) else 0  # NaN beat lengths: slider would crash
