"""Slider curves with the numbers upstream's post-processor gets from its own path code.

The post-processor measures generated sliders to choose their velocity and length. Upstream uses
a small port of osu!'s path approximation that differs from osu! (and from
:mod:`engine.beatmap.slider_path`) in ways that change those numbers:

- one curve type for the whole path, split into segments at repeated points (red anchors);
- a perfect circle only when the whole path has exactly three points, otherwise Bezier, and a
  circle through (almost) colinear points is still a circle unless it is exactly degenerate;
- no Catmull vertex thinning, float64 arc tolerance, consecutive duplicate vertices dropped;
- lookups treat segments shorter than ``numpy.isclose`` tolerates as points.

Matching those numbers keeps generated maps identical to upstream's, so this module reproduces
them; everything else in the engine uses :mod:`engine.beatmap.slider_path`.
"""
from __future__ import annotations

import numpy as np

BEZIER_TOLERANCE = 0.25
CATMULL_DETAIL = 50
ARC_TOLERANCE = 0.1

BEZIER, PERFECT, CATMULL = "B", "P", "C"


def _near(a, b) -> bool:
    """``numpy.isclose(a, b)`` of two scalars, in the arithmetic it uses (numpy's promotion: float32 inputs
    compare in float32), without its array machinery: ~25 us a call, and the diffusion sampler measures ~100
    sliders a step."""
    return bool(abs(a - b) <= 1e-8 + 1e-5 * abs(b)) and bool(np.isfinite(b)) or bool(a == b)


# ------------------------------------------------------------------------------ approximation
def _floats(points) -> np.ndarray:
    """float32 input stays float32 (the diffusion sampler's curves are computed in it); anything else is float64."""
    a = np.asarray(points)
    return a if a.dtype == np.float32 else a.astype(float)


def _bezier_flat(p: np.ndarray) -> bool:
    limit = BEZIER_TOLERANCE * BEZIER_TOLERANCE * 4
    return all(float(np.inner(d, d)) <= limit for d in p[:-2] - 2 * p[1:-1] + p[2:])


def _bezier_halves(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """De Casteljau subdivision at t = 1/2."""
    n = len(p)
    mid = p.copy()
    left, right = np.empty_like(p), np.empty_like(p)
    for i in range(n):
        left[i] = mid[0]
        right[n - 1 - i] = mid[n - 1 - i]
        mid[: n - 1 - i] = (mid[: n - 1 - i] + mid[1 : n - i]) / 2
    return left, right


def bezier_vertices(points: np.ndarray) -> list[np.ndarray]:
    """One Bezier curve of degree ``len(points) - 1``, flattened to within 0.25 px."""
    points = np.asarray(points, dtype=float)
    if len(points) == 0:
        return []
    out: list[np.ndarray] = []
    pending = [points.copy()]
    while pending:
        p = pending.pop()
        left, right = _bezier_halves(p)
        if not _bezier_flat(p):
            pending += [right, left]
            continue
        joined = np.concatenate([left, right[1:]])
        out.append(p[0].copy())
        for i in range(1, len(p) - 1):
            out.append(0.25 * (joined[2 * i - 1] + 2 * joined[2 * i] + joined[2 * i + 1]))
    out.append(points[-1].copy())
    return out


def catmull_vertices(points: np.ndarray) -> list[np.ndarray]:
    """Catmull-Rom through ``points``, 50 pieces per span, each piece as its two end vertices."""
    p = _floats(points)
    out: list[np.ndarray] = []
    for i in range(len(p) - 1):
        v1 = p[i - 1] if i > 0 else p[i]
        v2, v3 = p[i], p[i + 1]
        v4 = p[i + 2] if i < len(p) - 2 else v3 + v3 - v2

        def at(t: float) -> np.ndarray:
            t2 = t * t
            t3 = t * t2
            return 0.5 * (2 * v2 + (-v1 + v3) * t + (2 * v1 - 5 * v2 + 4 * v3 - v4) * t2
                          + (-v1 + 3 * v2 - 3 * v3 + v4) * t3)

        for c in range(CATMULL_DETAIL):
            out += [at(c / CATMULL_DETAIL), at((c + 1) / CATMULL_DETAIL)]
    return out


def arc_vertices(points: np.ndarray) -> list[np.ndarray]:
    """The circular arc through three points, or ``[]`` when they do not define one."""
    a, b, c = _floats(points)
    a_sq, b_sq, c_sq = np.inner(b - c, b - c), np.inner(a - c, a - c), np.inner(a - b, a - b)
    if _near(a_sq, 0) or _near(b_sq, 0) or _near(c_sq, 0):
        return []
    # barycentric weights of the circumcentre
    s = a_sq * (b_sq + c_sq - a_sq)
    t = b_sq * (a_sq + c_sq - b_sq)
    u = c_sq * (a_sq + b_sq - c_sq)
    total = s + t + u
    if _near(total, 0):
        return []
    centre = (s * a + t * b + u * c) / total
    to_a, to_c = a - centre, c - centre
    radius = np.linalg.norm(to_a)
    start = np.arctan2(to_a[1], to_a[0])
    end = np.arctan2(to_c[1], to_c[0])
    while end < start:
        end += 2 * np.pi
    direction, sweep = 1, end - start
    if np.dot(np.array([(c - a)[1], -(c - a)[0]]), b - a) < 0:  # b lies on the other side: go the long way
        direction, sweep = -1, 2 * np.pi - sweep
    if 2 * radius <= ARC_TOLERANCE:
        count = 2
    else:
        count = int(max(2, np.ceil(sweep / (2 * np.arccos(1 - ARC_TOLERANCE / radius)))))
    out = []
    for i in range(count):
        theta = start + direction * (i / (count - 1)) * sweep
        out.append(centre + np.array([np.cos(theta), np.sin(theta)]) * radius)
    return out


# ----------------------------------------------------------------------------------- the curve
class SliderCurve:
    """The path of a generated slider: ``kind`` B, P or C over ``points`` (head first)."""

    def __init__(self, kind: str, points, dtype=float):
        self.kind = kind
        self.points = np.asarray(points, dtype=dtype).reshape(-1, 2)
        vertices: list[np.ndarray] = []
        for segment in self._segments():
            for v in self._approximate(segment):
                if not vertices or (vertices[-1] != v).any():
                    vertices.append(v)
        self.vertices = vertices
        self.cumulative = self._measure(vertices)

    def _measure(self, vertices: list[np.ndarray]) -> np.ndarray:
        """The path's length up to each vertex."""
        cumulative = [0.0]
        for a, b in zip(vertices, vertices[1:]):
            cumulative.append(cumulative[-1] + np.linalg.norm(b - a))
        return np.array(cumulative)

    def _segments(self) -> list[np.ndarray]:
        """Split at every repeated point: ``a b b c`` is ``a b`` then ``b c``."""
        segments, start = [], 0
        for i in range(len(self.points)):
            if i == len(self.points) - 1 or (self.points[i] == self.points[i + 1]).all():
                segments.append(self.points[start:i + 1])
                start = i + 1
        return segments

    def _approximate(self, segment: np.ndarray) -> list[np.ndarray]:
        if self.kind == PERFECT and len(self.points) == 3 and len(segment) == 3:
            return arc_vertices(segment) or bezier_vertices(segment)
        if self.kind == CATMULL:
            return catmull_vertices(segment)
        return bezier_vertices(segment)

    @property
    def length(self) -> float:
        return float(self.cumulative[-1])

    def position_at(self, progress: float) -> np.ndarray:
        """The point at ``progress`` (0..1, clamped) of the curve's length."""
        if not self.vertices:
            return np.zeros(2)
        d = np.clip(progress, 0, 1) * self.cumulative[-1]
        i = int(np.searchsorted(self.cumulative, d, side="left"))
        if i <= 0:
            return self.vertices[0]
        if i >= len(self.vertices):
            return self.vertices[-1]
        d0, d1 = self.cumulative[i - 1], self.cumulative[i]
        if _near(d0, d1):
            return self.vertices[i - 1]
        w = (d - d0) / (d1 - d0)
        return self.vertices[i - 1] + (self.vertices[i] - self.vertices[i - 1]) * w

    def progress_of(self, position) -> float:
        """The progress nearest to ``position``, found as upstream finds it: descending the
        distance from the end of the curve in at most 100 unit steps (numerical gradient)."""
        target = np.asarray(position, dtype=float)
        eps = 1e-4
        t = 1
        for _ in range(100):
            grad = np.linalg.norm(self.position_at(t) - target) - np.linalg.norm(self.position_at(t - eps) - target)
            t -= grad
            if grad == 0 or t < 0 or t > 1:
                break
        return float(np.clip(t, 0, 1))
