"""Slider paths with the arithmetic of the published diffusion sampler's slider-end correction.

The sampler measures each slider on float32 positions. Arcs and Catmull curves are then computed
in float32 throughout. Bezier curves mix precisions: subdivision happens in float64 scratch
buffers, but the left half of a split is written back into the array it came from (the float32
control points at the root), and a right half goes into a recycled array when one is free (the
last flattened one, possibly that float32 root) or a new float64 one. Path lengths accumulate in
the vertices' precision. Near-colinear three-point arcs are ill-conditioned (a float32 rounding
decides between a huge circle and a line), so matching these precisions is what keeps the refined
positions equal to the published ones step by step.
"""
from __future__ import annotations

import numpy as np

from ..postprocess.upstream_curves import BEZIER_TOLERANCE, CATMULL, PERFECT, SliderCurve, arc_vertices, catmull_vertices

FLAT_LIMIT = BEZIER_TOLERANCE * BEZIER_TOLERANCE * 4


def _is_flat(p: np.ndarray) -> bool:
    return all(float(np.inner(d, d)) <= FLAT_LIMIT for d in p[:-2] - 2 * p[1:-1] + p[2:])


def _halves(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """De Casteljau split at t = 1/2, computed in float64."""
    n = len(p)
    mid = p.astype(np.float64)
    left, right = np.empty((n, 2)), np.empty((n, 2))
    for i in range(n):
        left[i] = mid[0]
        right[n - 1 - i] = mid[n - 1 - i]
        mid[: n - 1 - i] = (mid[: n - 1 - i] + mid[1: n - i]) / 2
    return left, right


def mixed_precision_bezier(points: np.ndarray) -> list[np.ndarray]:
    root = np.array(points, dtype=np.float32)
    out: list[np.ndarray] = []
    pending, recycled = [root], []
    while pending:
        parent = pending.pop()
        if _is_flat(parent):
            left, right = _halves(parent)
            joined = np.concatenate([left, right[1:]])
            out.append(parent[0].copy())
            out += [0.25 * (joined[2 * i - 1] + 2 * joined[2 * i] + joined[2 * i + 1]) for i in range(1, len(parent) - 1)]
            recycled.append(parent)
            continue
        child = recycled.pop() if recycled else np.empty((len(parent), 2))
        left, right = _halves(parent)
        child[:] = right
        parent[:] = left
        pending += [child, parent]
    out.append(np.asarray(points, dtype=np.float32)[-1].copy())
    dtype = np.result_type(*out)  # one array of them all: float32 only when no vertex was computed in float64
    return [v.astype(dtype) for v in out]


class SamplerCurve(SliderCurve):
    """:class:`SliderCurve` over float32 control points, measured as the sampler measures it."""

    def __init__(self, kind: str, points: np.ndarray):
        super().__init__(kind, points, dtype=np.float32)

    def _measure(self, vertices: list[np.ndarray]) -> np.ndarray:
        """Lengths accumulated in the vertices' own precisions, as the sampler adds them."""
        length = 0
        cumulative = [length]
        for a, b in zip(vertices, vertices[1:]):
            length = length + np.linalg.norm(b - a)
            cumulative.append(length)
        return np.array(cumulative, dtype=np.result_type(*vertices) if vertices else np.float32)

    def _approximate(self, segment: np.ndarray) -> list[np.ndarray]:
        if self.kind == PERFECT and len(self.points) == 3 and len(segment) == 3:
            return arc_vertices(segment) or mixed_precision_bezier(segment)
        if self.kind == CATMULL:
            return catmull_vertices(segment)
        return mixed_precision_bezier(segment)

    def end_position(self, required_length: float) -> np.ndarray:
        """The point ``required_length`` along the path (the sampler's progress arithmetic)."""
        return self.position_at(required_length / self.cumulative[-1])
