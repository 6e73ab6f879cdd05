"""Conditioning values measured from a beatmap, computed the way upstream computes them.

These fill a prompt's conditions from a reference map (upstream's ``generation_config_from_beatmap``):
star rating (rosu-pp), whether the map is hitsounded, the mania hold-note ratio, the taiko/mania
scroll-speed-change ratio, the median beat length and the key count. They read the beatmap through
the same slider-compatible view as the event streams (:mod:`engine.events`), so a value here always
agrees with the tokens built from the same map.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .events._view import BeatmapView, view_of
from .events.timing_streams import median_beat_length as _median_beat_length
from .events.timing_streams import scroll_speed_changes

if TYPE_CHECKING:  # pragma: no cover
    from .beatmap import Beatmap
    from .prompt.conditions import Conditions
    from .tokenizer import Tokenizer

log = logging.getLogger(__name__)


def star_rating(beatmap: "Beatmap | str | Path", *, speed: float = 1.0) -> float | None:
    """Star rating from rosu-pp, rounded to 2 decimals; ``None`` when rosu-pp cannot rate the map.

    A beatmap read from a file is rated from that file (as upstream does); an in-memory one from its
    encoded text. Upstream pins rosu-pp-py 3.1.0; later versions implement newer star rating
    algorithms and give different numbers (kimi_no_bouken: 6.97 with 3.1.0, 6.92 with 4.0.2).
    ``speed`` is the clock rate (1.5 for DT).
    """
    import rosu_pp_py as rosu

    try:
        if isinstance(beatmap, (str, Path)):
            rosu_map = rosu.Beatmap(path=str(beatmap))
        elif beatmap.path is not None and Path(beatmap.path).is_file():
            rosu_map = rosu.Beatmap(path=str(beatmap.path))
        else:
            rosu_map = rosu.Beatmap(content=beatmap.to_text())
        difficulty = rosu.Difficulty()
        if speed != 1.0:
            difficulty.set_clock_rate(clock_rate=float(speed))
        return round(difficulty.calculate(rosu_map).stars, 2)
    except Exception as e:  # rosu raises its own ParseError/ConvertError/ArgsError; any failure means "unknown"
        log.warning("could not compute the star rating of %s: %s", _name(beatmap), e)
        return None


def is_hitsounded(beatmap: "Beatmap") -> bool:
    """Whether any hit object has a whistle, finish or clap (any non-zero hitsound bits)."""
    return any(obj.hitsound != 0 for obj in beatmap.hit_objects)


def hold_note_ratio(beatmap: "Beatmap") -> float | None:
    """Share of hit objects that are mania hold notes; ``None`` for a map without objects.

    Upstream's parser (the slider library) drops hold notes, so upstream computes 0 for every mania
    map; this is the ratio its code intends. Pass 0.0 explicitly to reproduce upstream's prompts.
    """
    from .beatmap.model import HoldNote

    if not beatmap.hit_objects:
        return None
    return sum(isinstance(obj, HoldNote) for obj in beatmap.hit_objects) / len(beatmap.hit_objects)


def scroll_speed_ratio(beatmap: "Beatmap", *, mania_normalized: bool = True) -> float | None:
    """Scroll-speed changes per distinct object time; ``None`` for a map without objects.

    A change is a timing point whose scroll speed (BPM-normalised in mania when ``mania_normalized``)
    differs from the previous one by more than 0.001; the speed starts at 1. Object times are
    counted where they differ from the previous object's (file order).
    """
    view = view_of(beatmap)
    if not view.hit_objects:
        return None
    times = [obj.time_us for obj in view.hit_objects]
    distinct = sum(1 for i, t in enumerate(times) if i == 0 or t != times[i - 1])
    changes, last = 0, 1.0
    for _, speed in scroll_speed_changes(view, mania_normalized and view.mode == 3):
        if abs(speed - last) > 1e-3:
            changes += 1
        last = speed
    return changes / distinct


def median_beat_length(beatmap: "Beatmap | BeatmapView") -> float:
    """The ms per beat covering most of the map (osu!stable's "median BPM" rule, upstream's arithmetic)."""
    return _median_beat_length(beatmap if isinstance(beatmap, BeatmapView) else view_of(beatmap))


def key_count(beatmap: "Beatmap") -> int:
    """Mania key count (CircleSize truncated); 4 for the other modes, as upstream's prompt expects."""
    return int(beatmap.difficulty.circle_size) if beatmap.mode == 3 else 4


def conditions_from_beatmap(
    beatmap: "Beatmap", tokenizer: "Tokenizer | None" = None, *, star_rating_value: float | None = None
) -> "Conditions":
    """Generation conditions that describe a reference beatmap (upstream's ``generation_config_from_beatmap``).

    Mode, difficulty settings, star rating, hitsounding, key count, hold-note ratio (mania only) and
    scroll-speed ratio (taiko/mania only) come from the map. With a ``tokenizer`` the mapper is looked
    up from the map's BeatmapID in the checkpoint's beatmap->mapper table and the descriptors in its
    beatmap->descriptors table (both ``None`` when the map is not in them). The year is left unknown.
    ``star_rating_value`` skips the rosu-pp call when the caller already has it.
    """
    from .prompt.conditions import Conditions

    mode = beatmap.mode
    beatmap_id = beatmap.metadata.beatmap_id
    d = beatmap.difficulty
    stars = star_rating(beatmap) if star_rating_value is None else star_rating_value
    return Conditions(
        gamemode=mode,
        beatmap_id=beatmap_id,
        difficulty=stars,
        mapper_id=tokenizer.mapper_of_beatmap(beatmap_id) if tokenizer is not None else None,
        hitsounded=is_hitsounded(beatmap),
        circle_size=d.circle_size,
        slider_multiplier=d.slider_multiplier,
        keycount=key_count(beatmap),
        hold_note_ratio=hold_note_ratio(beatmap) if mode == 3 else None,
        scroll_speed_ratio=scroll_speed_ratio(beatmap) if mode in (1, 3) else None,
        descriptors=_descriptors(tokenizer, beatmap_id),
        hp_drain_rate=d.hp_drain_rate,
        overall_difficulty=d.overall_difficulty,
        approach_rate=d.approach_rate,
        slider_tick_rate=d.slider_tick_rate,
    )


def _descriptors(tokenizer: "Tokenizer | None", beatmap_id: int | None) -> tuple[str, ...] | None:
    if tokenizer is None or beatmap_id not in tokenizer.beatmap_descriptors:
        return None
    names = (tokenizer.descriptor_name(i) for i in tokenizer.beatmap_descriptors[beatmap_id])
    return tuple(name for name in names if name is not None)


def _name(beatmap) -> str:
    path = beatmap if isinstance(beatmap, (str, Path)) else getattr(beatmap, "path", None)
    return str(path) if path is not None else "<beatmap>"
