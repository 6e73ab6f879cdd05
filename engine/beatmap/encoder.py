"""Writing a :class:`Beatmap` as ``osu file format v14``, the way osu!stable writes it.

Layout, spacing and numbers follow stable's own files: sections in the order General, Editor,
Metadata, Difficulty, Events, TimingPoints, Colours (only when there are colours), HitObjects;
``Key: value`` in [General]/[Editor] and ``Key:value`` in [Metadata]/[Difficulty];
``Combo1 : r,g,b``; one blank line between sections and two after [TimingPoints]; every line
ended with the source file's newline (CRLF for new beatmaps); doubles with 15 significant
digits. A map written by stable (for example ``Soleily - Renatus (Gamu) [Normal].osu``)
therefore re-writes byte for byte.

What is normalised when the source is not such a file: older versions are written as v14 (times
already carry the v3/v4 +24 ms, see :mod:`.decoder`); keys stable always writes are added with
their defaults and optional ones are written only when they differ from the default; unknown keys
follow the known ones; comments outside [Events] are dropped; background/video/break lines are
written in stable's form under stable's two comment lines (``1,...`` video lines become
``Video,...``); type bits are rebuilt from the object kind, new combo and combo skip. Values are
never changed: a number 15 digits cannot reproduce is written with more. Fractional positions
of lazer (v128) files are written as they are; osu! truncates them when it reads a v14 file.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .model import Background, HitObject, HoldNote, Slider, Spinner, TimingPoint
from .numbers import format_number as num

if TYPE_CHECKING:  # pragma: no cover
    from .beatmap import Beatmap

FORMAT_VERSION = 14

_GENERAL_ORDER = ("AudioFilename", "AudioLeadIn", "AudioHash", "PreviewTime", "Countdown", "SampleSet",
                  "SampleVolume", "StackLeniency", "Mode", "LetterboxInBreaks", "StoryFireInFront",
                  "UseSkinSprites", "AlwaysShowPlayfield", "OverlayPosition", "SkinPreference",
                  "EpilepsyWarning", "CountdownOffset", "SpecialStyle", "WidescreenStoryboard",
                  "SamplesMatchPlaybackRate")


def encode_beatmap(beatmap: Beatmap, newline: str | None = None) -> str:
    """The ``.osu`` text of ``beatmap`` (without BOM); ``newline`` defaults to the source's."""
    sections = [
        ("General", _general(beatmap)),
        ("Editor", _editor(beatmap)),
        ("Metadata", _metadata(beatmap)),
        ("Difficulty", _difficulty(beatmap)),
        ("Events", _events(beatmap)),
        ("TimingPoints", [timing_point_line(p) for p in beatmap.timing_points] + [""]),
    ]
    if beatmap.colours.entries:
        sections.append(("Colours", [f"{key} : {colour}" for key, colour in beatmap.colours.entries]))
    sections.append(("HitObjects", [hit_object_line(o) for o in beatmap.hit_objects]))
    sections += [(name, list(lines)) for name, lines in beatmap.extra_sections.items()]

    out = [f"osu file format v{FORMAT_VERSION}"]
    for name, lines in sections:
        out += ["", f"[{name}]", *lines]
    nl = newline or beatmap.newline
    return nl.join(out) + nl


def beatmap_bytes(beatmap: Beatmap) -> bytes:
    """The file content: UTF-8, with a BOM when the source had one."""
    return ("\ufeff" if beatmap.bom else "").encode() + encode_beatmap(beatmap).encode("utf-8")


def _general(beatmap: Beatmap) -> list[str]:
    g = beatmap.general
    values = {"AudioFilename": g.audio_filename, "AudioLeadIn": num(g.audio_lead_in),
              "PreviewTime": num(g.preview_time), "Countdown": num(g.countdown), "SampleSet": g.sample_set,
              "StackLeniency": num(g.stack_leniency), "Mode": num(g.mode),
              "LetterboxInBreaks": num(g.letterbox_in_breaks), "WidescreenStoryboard": num(g.widescreen_storyboard)}
    optional = {"SampleVolume": (g.sample_volume, 100), "EpilepsyWarning": (g.epilepsy_warning, False),
                "CountdownOffset": (g.countdown_offset, 0),
                "SamplesMatchPlaybackRate": (g.samples_match_playback_rate, False)}
    values.update({key: num(value) for key, (value, default) in optional.items() if value != default})
    if g.special_style or g.mode == 3:
        values["SpecialStyle"] = num(g.special_style)
    values.update({k: v for k, v in g.extra.items() if k not in values})
    keys = [k for k in _GENERAL_ORDER if k in values] + [k for k in values if k not in _GENERAL_ORDER]
    return [f"{k}: {values[k]}" for k in keys]


def _editor(beatmap: Beatmap) -> list[str]:
    e = beatmap.editor
    lines = [f"Bookmarks: {','.join(map(str, e.bookmarks))}"] if e.bookmarks else []
    lines += [f"DistanceSpacing: {num(e.distance_spacing)}", f"BeatDivisor: {num(e.beat_divisor)}",
              f"GridSize: {num(e.grid_size)}", f"TimelineZoom: {num(e.timeline_zoom)}"]
    return lines + [f"{k}: {v}" for k, v in e.extra.items()]


def _metadata(beatmap: Beatmap) -> list[str]:
    m = beatmap.metadata
    lines = [f"Title:{m.title}", f"TitleUnicode:{m.title_unicode}", f"Artist:{m.artist}",
             f"ArtistUnicode:{m.artist_unicode}", f"Creator:{m.creator}", f"Version:{m.version}",
             f"Source:{m.source}", f"Tags:{m.tags}"]
    if m.beatmap_id is not None:
        lines.append(f"BeatmapID:{m.beatmap_id}")
    if m.beatmap_set_id is not None:
        lines.append(f"BeatmapSetID:{m.beatmap_set_id}")
    return lines + [f"{k}:{v}" for k, v in m.extra.items()]


def _difficulty(beatmap: Beatmap) -> list[str]:
    d = beatmap.difficulty
    lines = [f"HPDrainRate:{num(d.hp_drain_rate)}", f"CircleSize:{num(d.circle_size)}",
             f"OverallDifficulty:{num(d.overall_difficulty)}", f"ApproachRate:{num(d.approach_rate)}",
             f"SliderMultiplier:{num(d.slider_multiplier)}", f"SliderTickRate:{num(d.slider_tick_rate)}"]
    return lines + [f"{k}:{v}" for k, v in d.extra.items()]


def _events(beatmap: Beatmap) -> list[str]:
    ev = beatmap.events
    lines = ["//Background and Video events"]
    for media in ev.media:
        if isinstance(media, Background):
            lines.append(f'0,0,"{media.filename}",{media.x},{media.y}')
        else:
            offsets = f",{media.x},{media.y}" if (media.x, media.y) != (0, 0) else ""
            lines.append(f'Video,{num(media.start_time)},"{media.filename}"{offsets}')
    lines.append("//Break Periods")
    lines += [f"2,{num(b.start_time)},{num(b.end_time)}" for b in ev.breaks]
    return lines + list(ev.storyboard)


def timing_point_line(p: TimingPoint) -> str:
    """``time,beatLength,meter,sampleSet,sampleIndex,volume,uninherited,effects``."""
    return ",".join([num(p.time), num(p.beat_length), num(p.meter), num(p.sample_set), num(p.sample_index),
                     num(p.volume), num(p.uninherited), num(p.effects)])


def hit_object_line(o: HitObject) -> str:
    """One [HitObjects] line; optional trailing fields the object does not have are left out."""
    head = [num(o.x), num(o.y), num(o.time), num(o.type_bits), num(o.hitsound)]
    sample = str(o.hit_sample) if o.hit_sample is not None else None
    if isinstance(o, Slider):
        path = "|".join([o.curve_type] + [f"{p.type}|{num(p.x)}:{num(p.y)}" if p.type else f"{num(p.x)}:{num(p.y)}"
                                          for p in o.curve_points])
        tail = [path, num(o.slides), num(o.length) if o.length is not None else "0",
                "|".join(map(str, o.edge_sounds)), "|".join(map(str, o.edge_sets)), sample]
        if o.length is None and not (o.edge_sounds or o.edge_sets or sample is not None):
            tail = tail[:2]
    elif isinstance(o, Spinner):
        tail = [num(o.end_time), sample]
    elif isinstance(o, HoldNote):
        tail = [num(o.end_time) + (f":{sample}" if sample is not None else "")]
    else:
        tail = [sample]
    while tail and not tail[-1]:
        tail.pop()
    return ",".join(head + tail)
