"""How far a time is from the beat snap grid, measured the way Mapset Verifier does.

Facts (Mapset Verifier's ``GetPracticalUnsnap``):

- The grid is the uninherited line in effect (the first one for times before it) and the divisors
  1/16, 1/12, 1/9, 1/7 and 1/5, whose ticks include those of 1/1, 1/2, 1/3, 1/4, 1/6 and 1/8.
- For each divisor the nearest tick is found within the beat (half-way ties round to even), and
  the unsnap is ``time - int(tick)``: the editor truncates snapped times to whole milliseconds,
  so an object at 100 ms is on a tick at 100.9 ms, while one at 101 ms is 1 ms off it.
- The reported unsnap is the one of smallest magnitude, keeping its sign (positive: late); the
  first divisor in the order above wins ties.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

SNAP_DIVISORS = (16, 12, 9, 7, 5)
COMMON_DIVISORS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16)


@dataclass(frozen=True)
class Snap:
    """``unsnap`` ms after the editor's tick at ``tick`` ms (whole ms); ``divisor`` is the
    lowest common divisor with a tick there."""

    unsnap: float
    tick: int
    divisor: int


def theoretical_unsnap(time: float, offset: float, beat_length: float, divisor: int) -> float:
    """Milliseconds from the nearest 1/``divisor`` tick to ``time``, without editor rounding."""
    # Mapset Verifier's order of operations, so that float noise lands on the same side.
    beats = (time - offset) / beat_length
    into_beat = (beats - math.floor(beats)) * beat_length
    fraction = into_beat / beat_length
    nearest = round(fraction * divisor) / divisor
    return (fraction - nearest) * beat_length


def unsnap(time: float, offset: float, beat_length: float, divisors: tuple[int, ...] = SNAP_DIVISORS) -> float:
    """Signed ms from the closest editor tick to ``time`` on the grid of a red line at ``offset``."""
    return nearest_snap(time, offset, beat_length, divisors, name_divisor=False).unsnap


def nearest_snap(time: float, offset: float, beat_length: float,
                 divisors: tuple[int, ...] = SNAP_DIVISORS, *, name_divisor: bool = True) -> Snap:
    """The editor tick closest to ``time`` on the grid of a red line at ``offset``."""
    best: Snap | None = None
    for divisor in divisors:
        tick = math.trunc(time - theoretical_unsnap(time, offset, beat_length, divisor))
        value = time - tick
        if best is None or abs(value) < abs(best.unsnap) - 1e-9:
            best = Snap(value, tick, divisor)
    assert best is not None
    if not name_divisor:
        return best
    for divisor in COMMON_DIVISORS:
        if math.trunc(time - theoretical_unsnap(time, offset, beat_length, divisor)) == best.tick:
            return Snap(best.unsnap, best.tick, divisor)
    return best
