"""Pictures of a beatmap for the result panel, drawn with PIL: a timeline strip and a playfield thumbnail.

The timeline shows how many objects fall in each slice of the song (circles, sliders and long objects
stacked in their own colours), kiai time as a shaded band and red lines as ticks. The thumbnail shows
where the objects are: the osu! playfield with every circle and slider body, or, for taiko, catch and
mania, a chart of position (lane/column/x) against time.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

if TYPE_CHECKING:  # pragma: no cover
    from engine import Beatmap

log = logging.getLogger(__name__)

BACKGROUND = (24, 24, 32)
GRID = (52, 52, 66)
CIRCLE = (102, 170, 255)
SLIDER = (255, 153, 204)
LONG = (255, 204, 102)  # spinners and hold notes
RED_LINE = (235, 64, 52)
KIAI = (255, 190, 60, 48)
DON = (235, 69, 44)
KAT = (68, 141, 171)
PLAYFIELD = (512, 384)


def _kind(obj) -> str:
    from engine import HoldNote, Slider, Spinner

    if isinstance(obj, Slider):
        return "slider"
    if isinstance(obj, (Spinner, HoldNote)):
        return "long"
    return "circle"


def _end_time(beatmap: "Beatmap", obj) -> float:
    try:
        return float(beatmap.end_time(obj))
    except Exception:  # a degenerate slider must not cost the user their picture
        return float(obj.time)


def _song_span(beatmap: "Beatmap", length_ms: float | None) -> tuple[float, float]:
    times = [o.time for o in beatmap.hit_objects] + [p.time for p in beatmap.timing_points]
    start = min([0.0] + times)
    end = max([length_ms or 0.0] + [_end_time(beatmap, o) for o in beatmap.hit_objects] + times + [start + 1000])
    return start, end


def timeline_strip(beatmap: "Beatmap", length_ms: float | None = None, size: tuple[int, int] = (960, 96)) -> Image.Image:
    """Object density over the song: one stacked bar per few pixels, kiai bands, red-line ticks."""
    width, height = size
    image = Image.new("RGBA", size, BACKGROUND + (255,))
    overlay = Image.new("RGBA", size, (0, 0, 0, 0))
    draw, shade = ImageDraw.Draw(image), ImageDraw.Draw(overlay)
    start, end = _song_span(beatmap, length_ms)
    span = max(end - start, 1.0)

    def x_of(t: float) -> float:
        return (t - start) / span * (width - 1)

    # kiai bands from the effective timing lines
    kiai_from = None
    for point in sorted(beatmap.timing_points, key=lambda p: p.time):
        if point.kiai and kiai_from is None:
            kiai_from = point.time
        elif not point.kiai and kiai_from is not None and not point.uninherited:
            shade.rectangle([x_of(kiai_from), 0, x_of(point.time), height], fill=KIAI)
            kiai_from = None
    if kiai_from is not None:
        shade.rectangle([x_of(kiai_from), 0, width, height], fill=KIAI)
    image.alpha_composite(overlay)

    bin_px = 4
    bins = max(width // bin_px, 1)
    counts = {k: [0] * bins for k in ("circle", "slider", "long")}
    for obj in beatmap.hit_objects:
        i = min(int((obj.time - start) / span * bins), bins - 1)
        counts[_kind(obj)][max(i, 0)] += 1
    peak = max((sum(counts[k][i] for k in counts) for i in range(bins)), default=0) or 1
    bar_area = height - 14
    for i in range(bins):
        y = height - 10
        for kind, colour in (("circle", CIRCLE), ("slider", SLIDER), ("long", LONG)):
            n = counts[kind][i]
            if n:
                h = n / peak * bar_area
                draw.rectangle([i * bin_px, y - h, i * bin_px + bin_px - 2, y], fill=colour)
                y -= h
    for point in beatmap.timing_points:
        if point.uninherited:
            x = x_of(point.time)
            draw.line([x, height - 8, x, height], fill=RED_LINE, width=2)
    return image.convert("RGB")


def playfield_thumbnail(beatmap: "Beatmap", size: tuple[int, int] = (384, 288)) -> Image.Image:
    """Where the objects are: the playfield (osu!) or a position/time chart (taiko, catch, mania)."""
    if beatmap.mode == 0:
        return _playfield(beatmap, size)
    return _chart(beatmap, size)


def _playfield(beatmap: "Beatmap", size: tuple[int, int]) -> Image.Image:
    width, height = size
    margin = 16
    scale = min((width - 2 * margin) / PLAYFIELD[0], (height - 2 * margin) / PLAYFIELD[1])
    ox = (width - PLAYFIELD[0] * scale) / 2
    oy = (height - PLAYFIELD[1] * scale) / 2
    image = Image.new("RGBA", size, BACKGROUND + (255,))
    ImageDraw.Draw(image).rectangle([ox, oy, ox + PLAYFIELD[0] * scale, oy + PLAYFIELD[1] * scale], outline=GRID)
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    radius = max((54.4 - 4.48 * beatmap.difficulty.circle_size) * scale * 0.5, 2.0)
    alpha = max(40, min(160, int(6000 / max(len(beatmap.hit_objects), 1))))

    def at(x: float, y: float) -> tuple[float, float]:
        return ox + x * scale, oy + y * scale

    for obj in beatmap.hit_objects:
        kind = _kind(obj)
        if kind == "long":
            cx, cy = at(256, 192)
            draw.ellipse([cx - 40 * scale, cy - 40 * scale, cx + 40 * scale, cy + 40 * scale], outline=LONG + (alpha,))
            continue
        if kind == "slider":
            try:
                vertices = beatmap.slider_info(obj).path.vertices
                points = [at(float(x), float(y)) for x, y in vertices[:: max(len(vertices) // 64, 1)]]
                if len(points) > 1:
                    draw.line(points, fill=SLIDER + (max(alpha // 2, 8),), width=max(int(radius * 1.2), 2), joint="curve")
            except Exception as e:  # degenerate curves are drawn as their head only
                log.debug("slider at %s not drawn: %s", obj.time, e)
        cx, cy = at(obj.x, obj.y)
        colour = SLIDER if kind == "slider" else CIRCLE
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=colour + (min(alpha * 2, 255),),
                     width=2)
    image.alpha_composite(layer)
    return image.convert("RGB")


def _chart(beatmap: "Beatmap", size: tuple[int, int]) -> Image.Image:
    """The song cut into side-by-side columns, time running upwards in each; inside a column x is the lane
    (taiko: don/kat), the key (mania) or the x position (catch)."""
    import math

    from engine import mania_column

    width, height = size
    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    start, end = _song_span(beatmap, None)
    if beatmap.hit_objects:
        start = min(o.time for o in beatmap.hit_objects)
        end = max(_end_time(beatmap, o) for o in beatmap.hit_objects) + 1
    columns = min(max(math.ceil((end - start) / 15000), 1), 8)
    per_column = max((end - start) / columns, 1.0)
    pad, gap = 6, 6
    col_w = (width - 2 * pad - gap * (columns - 1)) / columns
    keys = max(int(round(beatmap.difficulty.circle_size)), 1)
    for c in range(columns):
        x0 = pad + c * (col_w + gap)
        draw.rectangle([x0, pad, x0 + col_w, height - pad], outline=GRID)

    def place(t: float) -> tuple[float, float]:
        c = min(int((t - start) // per_column), columns - 1)
        local = (t - start - c * per_column) / per_column
        return pad + c * (col_w + gap), height - pad - local * (height - 2 * pad)

    for obj in beatmap.hit_objects:
        x0, y = place(obj.time)
        kind = _kind(obj)
        if beatmap.mode == 3:
            lane = col_w / keys
            col = min(mania_column(obj.x, keys), keys - 1)
            y_end = place(_end_time(beatmap, obj))[1] if kind == "long" else y - 1
            if kind == "long" and place(_end_time(beatmap, obj))[0] != x0:
                y_end = pad  # a hold note running into the next column is cut at the top
            draw.rectangle([x0 + col * lane + 1, min(y, y_end) - 1, x0 + (col + 1) * lane - 1, max(y, y_end)],
                           fill=LONG if kind == "long" else CIRCLE)
        elif beatmap.mode == 1:
            kat = bool(obj.hitsound & (2 | 8))  # whistle or clap makes a kat
            big = bool(obj.hitsound & 4)
            cx = x0 + col_w * (0.7 if kat else 0.3)
            colour = LONG if kind != "circle" else (KAT if kat else DON)
            r = col_w * (0.22 if big else 0.14)
            draw.rectangle([cx - r, y - 1, cx + r, y], fill=colour)
        else:
            cx = x0 + obj.x / PLAYFIELD[0] * col_w
            colour = {"circle": CIRCLE, "slider": SLIDER, "long": LONG}[kind]
            draw.ellipse([cx - 2, y - 2, cx + 2, y + 2], fill=colour)
    return image
