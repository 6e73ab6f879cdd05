"""Slider paths as osu!lazer computes them (``SliderPath`` + osu-framework ``PathApproximator``).

Facts followed:

- Control points: the head is prepended as (0, 0) and a point equal to the one before it starts
  a new implicit segment of the same type (a red anchor), except at the end of a segment and,
  before v128, inside Catmull paths past their second point. A perfect curve (``P``) without
  exactly three points becomes Bezier (v128: only with more than three); before v128 three
  colinear points become Linear. Letters inside a path string start explicit segments (v128).
- Approximation: Bezier and B-spline by adaptive subdivision until flat within 0.25 px,
  Catmull with 50 pieces per knot, circular arcs with 0.1 px tolerance falling back to Bezier when
  the three points are (almost) colinear or the arc would need 1000+ vertices, Linear as given.
- Length: the path is cut at, or extended along its last segment to, the slider's pixel length;
  stable does not extend when the last two path vertices coincide. osu!standard sliders also drop
  Catmull vertices closer than 6 px (``optimise_catmull``), keeping the length they stood for.

Deviations: positions are float64 where osu! uses float32 (differences far below a pixel), and
extending along a zero-length last segment leaves the end in place where lazer produces NaN.
Stable draws the same shapes with its own tessellation; where lazer and stable differ, this
module follows lazer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from .model import Slider

BEZIER_TOLERANCE = 0.25
CATMULL_DETAIL = 50
CIRCULAR_ARC_TOLERANCE = float(np.float32(0.1))  # osu! uses the float 0.1f
FIRST_LAZER_VERSION = 128
FLOAT_EPSILON = 1e-3
DOUBLE_EPSILON = 1e-7


@dataclass(frozen=True)
class PathControlPoint:
    """A resolved control point; ``type`` starts a segment ("B", "B3", "L", "P" or "C")."""

    x: float
    y: float
    type: str | None = None


# ------------------------------------------------------------------------- control points
def path_type(token: str) -> str:
    """osu!'s reading of a curve type token: B, B<degree>, L, P, anything else Catmull."""
    letter = token[0]
    if letter == "B":
        digits = token[1:].strip()
        return f"B{int(digits)}" if digits.isdigit() and digits.isascii() and int(digits) > 0 else "B"
    return letter if letter in "LP" else "C"


def _is_linear(p0, p1, p2) -> bool:
    return abs((p1[1] - p0[1]) * (p2[0] - p0[0]) - (p1[0] - p0[0]) * (p2[1] - p0[1])) <= FLOAT_EPSILON


def _convert_points(kind: str, points: list, end_point, version: int) -> list[list[PathControlPoint]]:
    if kind == "P":
        n = len(points) + (end_point is not None)
        if version < FIRST_LAZER_VERSION:
            if n != 3:
                kind = "B"
            elif _is_linear(points[0], points[1], end_point if end_point is not None else points[2]):
                kind = "L"
        elif n > 3:
            kind = "B"
    types: list[str | None] = [None] * len(points)
    types[0] = kind
    pieces, start = [], 0
    for end in range(1, len(points)):
        if points[end] != points[end - 1]:
            continue
        if kind == "C" and end > 1 and version < FIRST_LAZER_VERSION:
            continue
        if end == len(points) - 1:
            continue
        types[end - 1] = kind
        pieces.append((start, end))
        start = end + 1
    if start < len(points):
        pieces.append((start, len(points)))
    return [[PathControlPoint(*points[i], types[i]) for i in range(a, b)] for a, b in pieces]


def control_points(slider: Slider, format_version: int = 14) -> list[PathControlPoint]:
    """The slider's control points the way osu! resolves them, relative to the slider head."""
    points = [(0.0, 0.0)] + [(p.x - slider.x, p.y - slider.y) for p in slider.curve_points]
    starts = [(path_type(slider.curve_type), 0)]
    starts += [(path_type(p.type), i) for i, p in enumerate(slider.curve_points, 1) if p.type]
    out: list[PathControlPoint] = []
    for n, (kind, start) in enumerate(starts):
        stop = starts[n + 1][1] if n + 1 < len(starts) else len(points)
        end_point = points[stop] if n + 1 < len(starts) else None
        for piece in _convert_points(kind, points[start:stop], end_point, format_version):
            out += piece
    return out


# -------------------------------------------------------------------------- approximation
Point = tuple[float, float]


def _bezier_flat(p: list[Point]) -> bool:
    limit = BEZIER_TOLERANCE * BEZIER_TOLERANCE * 4
    for (ax, ay), (bx, by), (cx, cy) in zip(p, p[1:], p[2:]):
        dx, dy = ax - 2 * bx + cx, ay - 2 * by + cy
        if dx * dx + dy * dy > limit:
            return False
    return True


def _bezier_split(p: list[Point]) -> tuple[list[Point], list[Point]]:
    """De Casteljau subdivision at t=0.5 into left and right control polygons."""
    n = len(p)
    mid, left, right = list(p), [p[0]] * n, [p[0]] * n
    for i in range(n):
        left[i], right[n - i - 1] = mid[0], mid[n - i - 1]
        for j in range(n - i - 1):
            (ax, ay), (bx, by) = mid[j], mid[j + 1]
            mid[j] = ((ax + bx) / 2, (ay + by) / 2)
    return left, right


def _bezier_vertices(p: list[Point], left: list[Point], right: list[Point]) -> list[Point]:
    """The vertices a flat piece contributes: its start, then smoothed midpoints of the halves."""
    joined = left + right[1:]
    out = [p[0]]
    for i in range(1, len(p) - 1):
        (ax, ay), (bx, by), (cx, cy) = joined[2 * i - 1], joined[2 * i], joined[2 * i + 1]
        out.append((0.25 * (ax + 2 * bx + cx), 0.25 * (ay + 2 * by + cy)))
    return out


# Long control polygons (hundreds of points in one segment) are subdivided with numpy: the same
# float64 operations in the same order, so the vertices are bit-identical, but O(n) array steps
# per split instead of O(n^2) Python steps.
ARRAY_SUBDIVISION_MIN_POINTS = 48


def _bezier_flat_array(p: np.ndarray) -> bool:
    d = p[:-2] - 2 * p[1:-1] + p[2:]
    return not np.any(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] > BEZIER_TOLERANCE * BEZIER_TOLERANCE * 4)


def _bezier_split_array(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(p)
    mid, left, right = p.copy(), np.empty_like(p), np.empty_like(p)
    for i in range(n):
        left[i], right[n - i - 1] = mid[0], mid[n - i - 1]
        k = n - i - 1
        mid[:k] = (mid[:k] + mid[1:k + 1]) / 2
    return left, right


def _bezier_vertices_array(p: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    joined = np.concatenate([left, right[1:]])
    a, b, c = joined[1:-2:2], joined[2:-1:2], joined[3::2]
    return np.concatenate([p[:1], 0.25 * (a + 2 * b + c)])


def _approximate_bezier(piece: list[Point], out: list[Point]) -> None:
    """Append the vertices of one Bezier piece (without its last point) to ``out``."""
    if len(piece) >= ARRAY_SUBDIVISION_MIN_POINTS:
        stack = [np.array(piece, dtype=float)]
        while stack:
            p = stack.pop()
            left, right = _bezier_split_array(p)
            if not _bezier_flat_array(p):
                stack += [right, left]
                continue
            out.extend(map(tuple, _bezier_vertices_array(p, left, right).tolist()))
        return
    stack = [piece]
    while stack:
        p = stack.pop()
        left, right = _bezier_split(p)
        if not _bezier_flat(p):
            stack += [right, left]
            continue
        out.extend(_bezier_vertices(p, left, right))


def _bspline_to_beziers(points: list[Point], degree: int) -> list[list[Point]]:
    """Boehm's knot insertion: a clamped uniform B-spline as a list of Bezier pieces."""
    count = len(points) - 1
    if degree == count:
        return [list(points)]
    pts = [np.array(p, dtype=float) for p in points]
    pieces = []
    for i in range(count - degree):
        piece = [pts[i]]
        for j in range(degree - 1):
            piece.append(pts[i + 1])
            for k in range(1, degree - j):
                lk = min(k, count - degree - i)
                pts[i + k] = (lk * pts[i + k] + pts[i + k + 1]) / (lk + 1)
        piece.append(pts[i + 1])
        pieces.append([tuple(map(float, q)) for q in piece])
    pieces.append([tuple(map(float, q)) for q in pts[count - degree:]])
    return pieces


def approximate_bspline(points: np.ndarray, degree: int | None = None) -> np.ndarray:
    """Piecewise-linear B-spline (a single Bezier when ``degree`` is None or too large)."""
    pts = [(float(x), float(y)) for x, y in np.asarray(points, dtype=float).reshape(-1, 2)]
    if len(pts) < 2:
        return np.array(pts, dtype=float).reshape(-1, 2)
    degree = len(pts) - 1 if degree is None else min(max(degree, 1), len(pts) - 1)
    out: list[Point] = []
    for piece in _bspline_to_beziers(pts, degree):
        _approximate_bezier(piece, out)
    out.append(pts[-1])
    return np.array(out, dtype=float)


def approximate_catmull(points: np.ndarray) -> np.ndarray:
    """Catmull-Rom spline, 50 pieces per knot, each piece as a start/end vertex pair."""
    p = np.asarray(points, dtype=float)
    t = np.arange(CATMULL_DETAIL + 1) / CATMULL_DETAIL
    t2, t3 = t * t, t * t * t
    rows = []
    for i in range(len(p) - 1):
        v1 = p[i - 1] if i > 0 else p[i]
        v2, v3 = p[i], p[i + 1]
        v4 = p[i + 2] if i < len(p) - 2 else v3 + v3 - v2
        curve = 0.5 * (2 * v2 + np.outer(t, v3 - v1) + np.outer(t2, 2 * v1 - 5 * v2 + 4 * v3 - v4)
                       + np.outer(t3, -v1 + 3 * v2 - 3 * v3 + v4))
        pairs = np.empty((2 * CATMULL_DETAIL, 2))
        pairs[0::2], pairs[1::2] = curve[:-1], curve[1:]
        rows.append(pairs)
    return np.concatenate(rows) if rows else np.empty((0, 2))


@dataclass(frozen=True)
class CircularArc:
    """Centre, radius and angles of the circle through three points."""

    centre: np.ndarray
    radius: float
    theta_start: float
    theta_range: float
    direction: float

    @classmethod
    def through(cls, points: np.ndarray) -> "CircularArc | None":
        a, b, c = np.asarray(points, dtype=float)
        if _is_linear(a, b, c):
            return None
        d = 2 * (a[0] * (b - c)[1] + b[0] * (c - a)[1] + c[0] * (a - b)[1])
        a2, b2, c2 = a @ a, b @ b, c @ c
        centre = np.array([a2 * (b - c)[1] + b2 * (c - a)[1] + c2 * (a - b)[1],
                           a2 * (c - b)[0] + b2 * (a - c)[0] + c2 * (b - a)[0]]) / d
        da, dc = a - centre, c - centre
        start, end = math.atan2(da[1], da[0]), math.atan2(dc[1], dc[0])
        while end < start:
            end += 2 * math.pi
        direction, theta_range = 1.0, end - start
        ortho = np.array([(c - a)[1], -(c - a)[0]])
        if ortho @ (b - a) < 0:
            direction, theta_range = -1.0, 2 * math.pi - theta_range
        return cls(centre, float(np.hypot(*da)), start, theta_range, direction)

    def vertex_count(self) -> int:
        if 2 * self.radius <= CIRCULAR_ARC_TOLERANCE:
            return 2
        return max(2, math.ceil(self.theta_range / (2 * math.acos(1 - CIRCULAR_ARC_TOLERANCE / self.radius))))

    def vertices(self) -> np.ndarray:
        n = self.vertex_count()
        theta = self.theta_start + self.direction * np.linspace(0.0, 1.0, n) * self.theta_range
        return self.centre + self.radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)


def approximate_segment(points: np.ndarray, kind: str) -> np.ndarray:
    """The vertices of one path segment of type ``kind``."""
    points = np.asarray(points, dtype=float)
    if kind == "L":
        return points.copy()
    if kind == "C":
        return approximate_catmull(points)
    if kind == "P" and len(points) == 3:
        arc = CircularArc.through(points)
        if arc is not None and arc.vertex_count() < 1000:
            return arc.vertices()
    degree = int(kind[1:]) if kind[:1] == "B" and kind[1:] else None
    return approximate_bspline(points, degree)


def _optimise_catmull(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """Keep vertices 6 px apart (plus knots and the end) as osu!standard does; returns the
    kept vertices and the length the dropped ones stood for beyond the straight shortcut."""
    kept: list[np.ndarray] = []
    removed_total, removed, last_start = 0.0, 0.0, None
    for i, v in enumerate(vertices):
        if last_start is None:
            kept.append(v)
            last_start = v
            continue
        dist = float(np.hypot(*(v - last_start)))
        removed += float(np.hypot(*(v - vertices[i - 1])))
        if dist > 6 or (i + 1) % (CATMULL_DETAIL * 2) == 0 or i == len(vertices) - 1:
            kept.append(v)
            removed_total += removed - dist
            last_start, removed = None, 0.0
    return np.array(kept).reshape(-1, 2), removed_total


# ------------------------------------------------------------------------------ the path
class SliderPath:
    """A slider's path as vertices with cumulative lengths; positions are absolute.

    ``control_points`` are relative to ``origin`` (the slider head), as from
    :func:`control_points`. ``expected_distance`` is the slider's pixel length (``None`` or 0
    means the full length of the control points).
    """

    def __init__(self, control_points: Sequence[PathControlPoint], expected_distance: float | None = None,
                 *, origin: tuple[float, float] = (0.0, 0.0), optimise_catmull: bool = True):
        self.origin = np.asarray(origin, dtype=float)
        self.control_points = list(control_points)
        self.expected_distance = expected_distance if expected_distance else None
        path, segment_ends, extra = self._calculate_path(optimise_catmull)
        self._calculate_length(path, segment_ends, extra)

    def _calculate_path(self, optimise_catmull: bool) -> tuple[list[np.ndarray], list[int], float]:
        cps = self.control_points
        path: list[np.ndarray] = []
        segment_ends: list[int] = []
        optimised_length, start = 0.0, 0
        for i, cp in enumerate(cps):
            if cp.type is None and i < len(cps) - 1:
                continue
            segment = np.array([(p.x, p.y) for p in cps[start:i + 1]], dtype=float)
            kind = cps[start].type or "L"
            if len(segment) == 1:
                path.append(segment[0])
            elif len(segment) > 1:
                sub = approximate_segment(segment, kind)
                if kind == "C" and optimise_catmull:
                    sub, removed = _optimise_catmull(sub)
                    optimised_length += removed
                skip = bool(path) and len(sub) > 0 and np.array_equal(path[-1], sub[0])
                path.extend(sub[1:] if skip else sub)
            if i > 0:
                segment_ends.append(len(path) - 1)
            start = i
        return path, segment_ends, optimised_length

    def _calculate_length(self, path: list[np.ndarray], segment_ends: list[int], optimised_length: float) -> None:
        vertices = np.array(path, dtype=float).reshape(-1, 2)
        steps = np.hypot(*np.diff(vertices, axis=0).T) if len(vertices) > 1 else np.empty(0)
        cumulative = list(np.concatenate([[0.0], optimised_length + np.cumsum(steps)]))
        if len(vertices) <= 1:
            cumulative = [0.0]
        calculated = cumulative[-1] if len(vertices) > 1 else optimised_length
        self.calculated_distance = float(calculated)
        self._segment_end_distances = [cumulative[i] for i in segment_ends if 0 <= i < len(cumulative)]
        expected = self.expected_distance
        if expected is not None and calculated != expected and not (
                len(vertices) >= 2 and np.array_equal(vertices[-1], vertices[-2]) and expected > calculated):
            cumulative.pop()
            end = len(vertices) - 1
            if calculated > expected:
                while cumulative and cumulative[-1] >= expected:
                    cumulative.pop()
                    end -= 1
                vertices = vertices[:end + 1]
            if end <= 0:
                vertices, cumulative = vertices[:max(end + 1, 1)], [0.0]
            else:
                direction = vertices[end] - vertices[end - 1]
                norm = float(np.hypot(*direction))
                direction = direction / norm if norm > 0 else direction * 0
                vertices[end] = vertices[end - 1] + direction * (expected - cumulative[-1])
                cumulative.append(expected)
        self._relative = vertices
        self.cumulative_length = np.asarray(cumulative, dtype=float)
        self.distance = float(self.cumulative_length[-1])

    @property
    def vertices(self) -> np.ndarray:
        """Path vertices in playfield coordinates (after cutting/extending to the length)."""
        return self._relative + self.origin

    @property
    def segment_ends(self) -> list[float]:
        """Progress (0..1, possibly beyond) at which each control-point segment ends."""
        return [d / self.distance if self.distance else 0.0 for d in self._segment_end_distances]

    def position_at(self, progress: float | np.ndarray) -> np.ndarray:
        """Playfield position at ``progress`` (0 = head, 1 = end of the path); arrays broadcast."""
        d = np.clip(np.asarray(progress, dtype=float), 0.0, 1.0) * self.distance
        verts, cum = self._relative, self.cumulative_length
        if len(verts) < 2:
            return np.broadcast_to(verts[0] + self.origin, d.shape + (2,)).copy()
        i = np.searchsorted(cum, d, side="left")
        j = np.clip(i, 1, len(verts) - 1)
        d0, span = cum[j - 1], cum[j] - cum[j - 1]
        w = np.divide(d - d0, span, out=np.zeros(np.shape(d)), where=np.abs(span) > DOUBLE_EPSILON)
        out = verts[j - 1] + (verts[j] - verts[j - 1]) * w[..., None]
        out = np.where((i <= 0)[..., None], verts[0], out)
        out = np.where((i >= len(verts))[..., None], verts[-1], out)
        return out + self.origin


@lru_cache(maxsize=4096)
def slider_path(slider: Slider, format_version: int = 14, optimise_catmull: bool = True) -> SliderPath:
    """The (cached) :class:`SliderPath` of ``slider``; see the module docstring for the rules."""
    length = slider.length if slider.length is not None and slider.length > 0 else None
    return SliderPath(control_points(slider, format_version), length, origin=(slider.x, slider.y),
                      optimise_catmull=optimise_catmull)
