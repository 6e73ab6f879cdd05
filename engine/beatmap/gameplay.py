"""What osu! derives per object beyond timing: combos, mania columns, the background.

Combo rules (osu!lazer's legacy decoder, ``OsuHitObject.UpdateComboInformation``):

- In file order, the first object and any object after a spinner start a new combo; combo skips
  count only on objects that have the new-combo bit themselves; spinners never carry one.
- Objects are then ordered by time (stably) and the first object after each break starts a new
  combo.
- In osu! and catch, spinners never start a combo (they join the running one). The combo index
  advances by 1 plus the skip; the combo colour is ``combo_colours[index_with_offsets % count]``
  (so a map's first combo uses its second colour, as in osu!).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .model import EdgeSet, HitObject, HitSample, Slider, Spinner

if TYPE_CHECKING:  # pragma: no cover
    from .beatmap import Beatmap

# osu! looks hit samples up this much after the sound's time (rounding leniency).
CONTROL_POINT_LENIENCY = 5.0


@dataclass(frozen=True)
class ComboInfo:
    """Combo facts of one hit object (1-based ``number`` as shown on the circle)."""

    new_combo: bool
    combo_index: int
    combo_index_with_offsets: int
    number: int
    colour_index: int | None


def combo_info(beatmap: Beatmap) -> list[ComboInfo]:
    """Combo information for each object of ``beatmap.hit_objects`` (same order)."""
    objects = beatmap.hit_objects
    new_combo, offsets = [], []
    previous = None
    for obj in objects:
        if isinstance(obj, Spinner):
            new_combo.append(obj.new_combo)
            offsets.append(0)
        else:
            new_combo.append(previous is None or isinstance(previous, Spinner) or obj.new_combo)
            offsets.append(obj.combo_skip if obj.new_combo else 0)
        previous = obj

    order = sorted(range(len(objects)), key=lambda i: objects[i].time)
    breaks, current = beatmap.events.breaks, 0
    for i in order:
        forced = False
        while current < len(breaks) and breaks[current].end_time < objects[i].time:
            forced, current = True, current + 1
        new_combo[i] = new_combo[i] or forced

    colours = len(beatmap.colours.combo)
    spinners_join = beatmap.mode in (0, 2)
    result: list[ComboInfo | None] = [None] * len(objects)
    index = with_offsets = in_combo = 0
    last = None
    for i in order:
        obj = objects[i]
        starts = last is None or new_combo[i]
        if spinners_join:
            starts = not isinstance(obj, Spinner) and (starts or isinstance(last, Spinner))
        if starts:
            index, with_offsets, in_combo = index + 1, with_offsets + offsets[i] + 1, 0
        elif last is not None:
            in_combo += 1
        result[i] = ComboInfo(starts, index, with_offsets, in_combo + 1,
                              with_offsets % colours if colours else None)
        last = obj
    return result  # type: ignore[return-value]


@dataclass(frozen=True)
class HitSound:
    """One sound osu! plays: when, which additions (hitsound bits), and the resolved banks
    (1 normal, 2 soft, 3 drum), custom index, volume (0..100) and custom file."""

    time: float
    hitsound: int
    normal_set: int
    addition_set: int
    index: int
    volume: int
    filename: str = ""


def hit_sounds(beatmap: Beatmap, obj: HitObject) -> list[HitSound]:
    """The sounds of ``obj`` with osu!'s fallbacks resolved: one per slider node (head,
    repeats, tail), else one at the object's end (a spinner sounds when it ends).

    Banks: the object's set if 1-3 (other numbers play Normal), else the timing point's; an
    addition set of 0 follows the normal bank. Index and volume: the object's if positive, else
    the timing point's, looked up 5 ms late. Slider nodes take ``edge_sounds``/``edge_sets``
    where given and the slider's own hitsound and banks otherwise; their index and volume always
    come from the timing point (osu! reads only the banks from a slider's hit sample).
    """
    if not isinstance(obj, Slider):
        end = beatmap.end_time(obj)
        return [_resolve(beatmap, end, obj.hitsound, obj.hit_sample)]
    info = beatmap.slider_info(obj)
    nodes = list(range(info.span_count + 1))
    if info.span_count == 1 and max(obj.slides, 1) > 1:
        nodes = [0, max(obj.slides, 1)]  # zero-length slider: osu! keeps the first and last node
    banks = obj.hit_sample or HitSample()
    sounds = []
    for n, node in enumerate(nodes):
        sound = obj.edge_sounds[node] if node < len(obj.edge_sounds) else obj.hitsound
        edge = obj.edge_sets[node] if node < len(obj.edge_sets) else EdgeSet(banks.normal_set, banks.addition_set)
        sample = HitSample(edge.normal_set, edge.addition_set)
        sounds.append(_resolve(beatmap, obj.time + n * info.span_duration, sound, sample))
    return sounds


def _resolve(beatmap: Beatmap, time: float, hitsound: int, sample: HitSample | None) -> HitSound:
    point = beatmap.control_points().sample_at(time + CONTROL_POINT_LENIENCY)
    sample = sample or HitSample()
    point_bank = point.sample_set if point.sample_set in (1, 2, 3) else 1
    normal = sample.normal_set if sample.normal_set in (0, 1, 2, 3) else 1
    normal = normal or point_bank
    addition = sample.addition_set if sample.addition_set in (0, 1, 2, 3) else 1
    return HitSound(time, hitsound, normal, addition or normal,
                    sample.index if sample.index > 0 else point.index,
                    sample.volume if sample.volume > 0 else point.volume, sample.filename)


def mania_key_count(circle_size: float) -> int:
    """osu!mania key count: CircleSize rounded half-to-even, at least 1."""
    return max(1, round(circle_size))


def mania_column(x: float, keys: int) -> int:
    """The column osu!mania puts an object at ``x`` in (32-bit float maths, as osu! does)."""
    divisor = np.float32(512) / np.float32(keys)
    return int(min(max(np.floor(np.float32(x) / divisor), 0), keys - 1))


def background_file(beatmap: Beatmap) -> str | None:
    """The background osu! shows: the last background event (or image given as a video),
    else the first storyboard sprite's image."""
    from .model import VIDEO_EXTENSIONS

    found = None
    for media in beatmap.events.media:
        name = media.filename
        if not hasattr(media, "start_time") or not name.lower().endswith(VIDEO_EXTENSIONS):
            found = name
    if found is not None:
        return found
    for line in beatmap.events.storyboard:
        fields = line.split(",")
        if fields[0] in ("Sprite", "4") and len(fields) > 3:
            return fields[3].strip().strip('"')
    return None
