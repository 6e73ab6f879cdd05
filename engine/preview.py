"""A compact JSON description of a beatmap for the in-page preview player (``mapperator_app/static/player.js``).

The player draws; everything osu! derives (slider paths and end times, stacking, combos, mania columns, catch
droplets and bananas) is computed here with the engine's own geometry, so the preview shows what osu! shows.

Layout of :func:`preview_json`'s result (times in ms, rounded to whole ms; positions in osu! pixels, 0.1 px):

- ``format`` (1), ``mode`` (0 osu!, 1 taiko, 2 catch, 3 mania), ``meta`` (artist, title, version, creator),
  ``difficulty`` (cs, ar, od, hp, slider_multiplier, slider_tick_rate), ``preempt`` and ``fade_in`` (approach
  time in whole ms and fade-in, osu!lazer's formulas), ``radius`` (hit circle / fruit radius), ``colours``
  (combo colours as ``[r, g, b]``; osu!'s default skin colours when the map has none), ``end`` (when the last
  object ends).
- ``red_lines`` ``[[time, beat_length, meter], ...]``, ``kiai`` ``[[start, end], ...]``, ``breaks``.
- ``objects``: one array per field, one entry per hit object in time order (stable, as osu! sorts them):
  ``kind`` (0 circle, 1 slider, 2 spinner, 3 hold), ``time``, ``end``, ``x``, ``y`` (osu!: after stacking),
  ``combo`` (the number shown), ``combo_index`` (which combo, from 1), ``colour`` (index into ``colours``),
  ``new_combo`` (0/1), ``slides`` (span count, 0 for non-sliders); osu! adds ``path`` (per object ``null``
  or a flat ``[x0, y0, x1, y1, ...]`` polyline of the stacked slider path, within 0.25 px of osu!'s); taiko
  adds ``kat`` and ``big`` (0/1) and ``scroll`` (SV multiplier x 1000 / beat length at the object: its scroll
  rate, which the player scales by the map's main beat length as osu!taiko does); mania adds ``column`` and the top level ``keys``. ``index`` (the position in
  ``Beatmap.hit_objects``) is present only when time order differs from file order.
- catch: ``catch`` with ``time``, ``x``, ``kind`` (0 fruit, 1 droplet, 2 tiny droplet, 3 banana), ``colour``
  and ``hyper`` (0/1: a hyperdash starts at this fruit), in time order, generated as osu!lazer's JuiceStream and
  BananaShower do (x offsets from ``CatchBeatmapProcessor`` with its seeded legacy random), and
  ``catcher_width``.
- ``density``: ``{"bin": ms, "counts": [...]}``, how many objects start in each bin (for the timeline).

Taiko drumrolls and swells end where the engine's slider/spinner timing says (osu!taiko truncates drumroll
durations to whole ms, which the rounding to ms already matches within 1 ms).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from .beatmap import Beatmap, HitObject, HoldNote, Slider, Spinner
from .beatmap.model import HITSOUND_CLAP, HITSOUND_FINISH, HITSOUND_WHISTLE
from .beatmap.stacking import GAMEFIELD_FUDGE, preempt_ms, stack_heights, stacked_offset

FORMAT = 1
DEFAULT_COMBO_COLOURS = ((255, 192, 0), (0, 202, 0), (18, 124, 255), (242, 24, 57))  # osu!'s default skin
KIND_CIRCLE, KIND_SLIDER, KIND_SPINNER, KIND_HOLD = 0, 1, 2, 3
FRUIT, DROPLET, TINY_DROPLET, BANANA = 0, 1, 2, 3
PATH_TOLERANCE_PX = 0.25  # osu!'s own Bezier flatness tolerance
DENSITY_MAX_BINS = 600
DENSITY_MIN_BIN_MS = 100

# osu!catch constants (osu!lazer: CatchPlayfield, Catcher, CatchBeatmapProcessor).
CATCH_WIDTH = 512.0
CATCHER_BASE_SIZE = 106.75
ALLOWED_CATCH_RANGE = 0.8
BASE_DASH_SPEED = 1.0
CATCH_RNG_SEED = 1337
GRACE_MS = float(np.float32(1000.0 / 60.0 / 4))  # a quarter frame, in C# floats


def fade_in_ms(preempt: float) -> float:
    return 400.0 * min(1.0, preempt / 450.0)


def circle_radius(circle_size: float) -> float:
    """Hit circle (and catch fruit) radius in osu! pixels (osu!'s circle scale with its 1.00041 fudge)."""
    return 32.0 * (1.0 - 0.7 * (circle_size - 5) / 5) * GAMEFIELD_FUDGE


def preview_json(beatmap: Beatmap) -> dict[str, Any]:
    """The preview player's description of ``beatmap`` (see the module docstring); plain lists and numbers,
    ready for ``json.dumps(..., allow_nan=False)``."""
    d = beatmap.difficulty
    order = sorted((i for i, o in enumerate(beatmap.hit_objects) if math.isfinite(o.time)),
                   key=lambda i: beatmap.hit_objects[i].time)
    objects = [beatmap.hit_objects[i] for i in order]
    ends = [_finite(beatmap.end_time(o), o.time) for o in objects]
    colours = [[c.r, c.g, c.b] for c in beatmap.colours.combo] or [list(c) for c in DEFAULT_COMBO_COLOURS]
    combos = beatmap.combo_info()
    preempt = preempt_ms(d.approach_rate)
    result: dict[str, Any] = {
        "format": FORMAT,
        "mode": beatmap.mode,
        "meta": {"artist": beatmap.metadata.artist, "title": beatmap.metadata.title,
                 "version": beatmap.metadata.version, "creator": beatmap.metadata.creator},
        "difficulty": {"cs": d.circle_size, "ar": d.approach_rate, "od": d.overall_difficulty,
                       "hp": d.hp_drain_rate, "slider_multiplier": d.slider_multiplier,
                       "slider_tick_rate": d.slider_tick_rate},
        "preempt": _ms(preempt),
        "fade_in": _ms(fade_in_ms(preempt)),
        "radius": _px(circle_radius(d.circle_size)),
        "colours": colours,
        "end": _ms(max(ends, default=0.0)),
        **_timing(beatmap, max(ends, default=0.0)),
    }

    positions = [(o.x, o.y) for o in objects]
    offsets = [0.0] * len(objects)
    if beatmap.mode == 0:
        offsets = _stack_offsets(beatmap, objects)
        positions = [(x + s, y + s) for (x, y), s in zip(positions, offsets)]
    table: dict[str, list] = {
        "kind": [_kind(o) for o in objects],
        "time": [_ms(o.time) for o in objects],
        "end": [_ms(e) for e in ends],
        "x": [_px(x) for x, _ in positions],
        "y": [_px(y) for _, y in positions],
        "combo": [combos[i].number for i in order],
        "combo_index": [combos[i].combo_index for i in order],
        "colour": [combos[i].combo_index_with_offsets % len(colours) for i in order],
        "new_combo": [int(combos[i].new_combo) for i in order],
        "slides": [beatmap.slider_info(o).span_count if isinstance(o, Slider) else 0 for o in objects],
    }
    if order != list(range(len(beatmap.hit_objects))):
        table["index"] = order
    if beatmap.mode == 0:
        table["path"] = [_path(beatmap, o, s) if isinstance(o, Slider) else None for o, s in zip(objects, offsets)]
    elif beatmap.mode == 1:
        table["kat"] = [int(bool(o.hitsound & (HITSOUND_WHISTLE | HITSOUND_CLAP))) for o in objects]
        table["big"] = [int(bool(o.hitsound & HITSOUND_FINISH)) for o in objects]
        table["scroll"] = [round(beatmap.slider_velocity_at(o.time) * 1000.0 / beatmap.beat_length_at(o.time), 5)
                           for o in objects]
    elif beatmap.mode == 2:
        result["catch"] = _catch_objects(beatmap, objects, table["colour"])
        result["catcher_width"] = _px(CATCHER_BASE_SIZE * abs(_catch_scale(d.circle_size)) * ALLOWED_CATCH_RANGE)
    elif beatmap.mode == 3:
        result["keys"] = beatmap.mania_keys
        table["column"] = [beatmap.mania_column(o) for o in objects]
    result["objects"] = table
    result["density"] = _density([o.time for o in objects], max(ends, default=0.0))
    return result


# ------------------------------------------------------------------------------------ helpers
def _finite(value: float, fallback: float = 0.0) -> float:
    return value if math.isfinite(value) else fallback


def _ms(value: float) -> int:
    return int(math.floor(_finite(value) + 0.5))


def _px(value: float) -> float | int:
    r = round(float(_finite(value)), 1)
    return int(r) if r.is_integer() else r


def _kind(obj: HitObject) -> int:
    if isinstance(obj, Slider):
        return KIND_SLIDER
    if isinstance(obj, Spinner):
        return KIND_SPINNER
    if isinstance(obj, HoldNote):
        return KIND_HOLD
    return KIND_CIRCLE


def _stack_offsets(beatmap: Beatmap, objects: list[HitObject]) -> list[float]:
    """The x/y shift osu! draws each (time-ordered) object with."""
    return [stacked_offset(beatmap, h) for h in stack_heights(beatmap, objects)]


def _path(beatmap: Beatmap, slider: Slider, offset: float) -> list[float | int]:
    """The stacked slider path as a flat polyline within PATH_TOLERANCE_PX of osu!'s."""
    vertices = beatmap.slider_info(slider).path.vertices
    vertices = vertices[np.isfinite(vertices).all(axis=1)]
    if len(vertices) == 0:
        vertices = np.array([[slider.x, slider.y]], dtype=float)
    flat: list[float | int] = []
    for x, y in vertices[_simplify(vertices, PATH_TOLERANCE_PX)]:
        flat += [_px(x + offset), _px(y + offset)]
    return flat


def _simplify(points: np.ndarray, tolerance: float) -> list[int]:
    """Indices of the vertices Ramer-Douglas-Peucker keeps: every dropped vertex lies within ``tolerance`` of
    the kept polyline (first and last always kept). Plain floats: paths are short, numpy calls would dominate."""
    pts = points.tolist()
    n = len(pts)
    if n <= 2:
        return list(range(n))
    keep = [False] * n
    keep[0] = keep[-1] = True
    spans = [(0, n - 1)]
    while spans:
        a, b = spans.pop()
        if b - a < 2:
            continue
        ax, ay = pts[a]
        cx, cy = pts[b][0] - ax, pts[b][1] - ay
        chord = cx * cx + cy * cy
        worst, at = -1.0, a
        for k in range(a + 1, b):
            px, py = pts[k][0] - ax, pts[k][1] - ay
            t = min(max((px * cx + py * cy) / chord, 0.0), 1.0) if chord > 1e-12 else 0.0  # to the segment
            dx, dy = px - t * cx, py - t * cy
            if dx * dx + dy * dy > worst:
                worst, at = dx * dx + dy * dy, k
        if worst > tolerance * tolerance:
            keep[at] = True
            spans += [(a, at), (at, b)]
    return [i for i in range(n) if keep[i]]


def _timing(beatmap: Beatmap, end: float) -> dict[str, list]:
    points = beatmap.control_points()
    red = [[_ms(p.time), round(points.beat_length_at(p.time), 3), p.meter] for p in points.uninherited_points]
    kiai: list[list[int]] = []
    start = None
    for p in points.effective_points:
        if p.kiai and start is None:
            start = p.time
        elif not p.kiai and start is not None:
            kiai.append([_ms(start), _ms(p.time)])
            start = None
    if start is not None:
        kiai.append([_ms(start), _ms(max(end, start))])
    breaks = [[_ms(b.start_time), _ms(b.end_time)] for b in beatmap.events.breaks]
    return {"red_lines": red, "kiai": kiai, "breaks": breaks}


def _density(times: Iterable[float], end: float) -> dict[str, Any]:
    end = max(end, 1.0)
    bin_ms = max(DENSITY_MIN_BIN_MS, math.ceil(end / DENSITY_MAX_BINS))
    counts = [0] * (int(end // bin_ms) + 1)
    for t in times:
        counts[min(max(int(t // bin_ms), 0), len(counts) - 1)] += 1
    return {"bin": bin_ms, "counts": counts}


# ------------------------------------------------------------------------------------- catch
class LegacyRandom:
    """osu!stable's xorshift random generator (osu!lazer ``LegacyRandom``), for catch's position offsets."""

    def __init__(self, seed: int):
        self.x, self.y, self.z, self.w = seed & 0xFFFFFFFF, 842502087, 3579807591, 273326509

    def next_uint(self) -> int:
        t = (self.x ^ (self.x << 11)) & 0xFFFFFFFF
        self.x, self.y, self.z = self.y, self.z, self.w
        self.w = (self.w ^ (self.w >> 19) ^ t ^ (t >> 8)) & 0xFFFFFFFF
        return self.w

    def next(self) -> int:
        return self.next_uint() & 0x7FFFFFFF

    def next_double(self) -> float:
        return self.next() / 2147483648.0

    def next_between(self, low: int, high: int) -> int:
        return int(low + self.next_double() * (high - low))  # C#'s (int) cast truncates toward zero too


def _catch_scale(circle_size: float) -> float:
    return 1.0 - 0.7 * (circle_size - 5) / 5


def _clamp_x(x: float) -> float:
    return min(max(_finite(x), 0.0), CATCH_WIDTH)


def _catch_objects(beatmap: Beatmap, objects: list[HitObject], colours: list[int]) -> dict[str, list]:
    """Fruits, droplets, tiny droplets and bananas as osu!lazer generates and offsets them."""
    rng = LegacyRandom(CATCH_RNG_SEED)
    items: list[tuple[float, float, int, int]] = []  # time, x, kind, colour
    palpable: list[int] = []  # indices into items of fruits and droplets, in osu!'s hyperdash order
    for obj, colour in zip(objects, colours):
        if isinstance(obj, Spinner):
            for t in _banana_times(obj.time, beatmap.end_time(obj)):
                items.append((t, _clamp_x(rng.next_double() * CATCH_WIDTH), BANANA, colour))
                rng.next(), rng.next(), rng.next()  # stable drew a banana type, rotation and colour
        elif isinstance(obj, Slider):
            for t, x, kind in _juice_stream(beatmap, obj, rng):
                if kind != TINY_DROPLET:
                    palpable.append(len(items))
                items.append((t, x, kind, colour))
        else:
            palpable.append(len(items))
            items.append((obj.time, _clamp_x(obj.x), FRUIT, colour))
    hyper = [0] * len(items)
    for i in _hyperdash_starts(beatmap, [items[i][:2] for i in palpable]):
        hyper[palpable[i]] = 1
    by_time = sorted(range(len(items)), key=lambda i: items[i][0])
    return {"time": [_ms(items[i][0]) for i in by_time], "x": [_px(items[i][1]) for i in by_time],
            "kind": [items[i][2] for i in by_time], "colour": [items[i][3] for i in by_time],
            "hyper": [hyper[i] for i in by_time]}


def _banana_times(start: float, end: float) -> list[float]:
    spacing = end - start
    while spacing > 100:
        spacing /= 2
    if spacing <= 0:
        return []
    times, t = [], start
    while t <= end:
        times.append(t)
        t += spacing
    return times


def _juice_stream(beatmap: Beatmap, slider: Slider, rng: LegacyRandom) -> list[tuple[float, float, int]]:
    """A juice stream's nested objects (time, x, kind) in time order: fruits at the head, repeats and tail,
    droplets at the ticks, tiny droplets between events more than 80 ms apart (at most 100 ms apart), each
    tiny droplet jittered by up to 20 px."""
    info = beatmap.slider_info(slider)
    out: list[tuple[float, float, int]] = []
    last = None
    for event in info.events:
        if last is not None:
            since = int(event.time) - int(last.time)  # osu! truncates both times to whole ms here
            if since > 80:
                step = float(since)
                while step > 100:
                    step /= 2
                t = step
                while t < since:
                    progress = last.progress + t / since * (event.progress - last.progress)
                    out.append((t + last.time, float(info.path.position_at(progress)[0]), TINY_DROPLET))
                    t += step
        last = event
        if event.kind == "tick":
            out.append((event.time, event.position[0], DROPLET))
        elif event.kind in ("head", "repeat", "tail"):
            out.append((event.time, event.position[0], FRUIT))
    out.sort(key=lambda item: item[0])  # osu! sorts nested objects by time before offsetting them
    for n, (t, x, kind) in enumerate(out):
        if kind == TINY_DROPLET:
            x += min(max(rng.next_between(-20, 20), -x), CATCH_WIDTH - x)
        elif kind == DROPLET:
            rng.next()  # stable drew a droplet rotation
        out[n] = (t, _clamp_x(x), kind)
    return out


def _hyperdash_starts(beatmap: Beatmap, palpable: list[tuple[float, float]]) -> list[int]:
    """Indices of the palpable objects (time, x) from which the catcher must hyperdash to the next one."""
    half_width = CATCHER_BASE_SIZE * abs(_catch_scale(beatmap.difficulty.circle_size)) * ALLOWED_CATCH_RANGE / 2
    half_width /= ALLOWED_CATCH_RANGE  # osu! measures with the full catcher, as stable did
    starts, last_direction, last_excess = [], 0, half_width
    for i in range(len(palpable) - 1):
        (t0, x0), (t1, x1) = palpable[i], palpable[i + 1]
        direction = 1 if x1 > x0 else -1
        time_to_next = int(t1) - int(t0) - GRACE_MS  # whole ms, as osu!stable (lazer's pixel-jump test)
        distance = abs(x1 - x0) - (last_excess if last_direction == direction else half_width)
        to_hyper = float(np.float32(time_to_next * BASE_DASH_SPEED - distance))
        if to_hyper < 0:
            starts.append(i)
            last_excess = half_width
        else:
            last_excess = min(max(to_hyper, 0.0), half_width)
        last_direction = direction
    return starts
