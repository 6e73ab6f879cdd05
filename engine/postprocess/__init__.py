"""Finished event streams to a playable beatmap, with the results of upstream's post-processor.

- :mod:`.contexts`: :func:`postprocess`, the whole step: timing, merge, resnap, build
- :mod:`.red_lines`: :func:`generate_timing` (red lines from beat events), :func:`resnap_events`
- :mod:`.groups`: events grouped per object, near-overlap snapping
- :mod:`.build`: :class:`BeatmapSettings`, :class:`PostprocessOptions`, :func:`build_beatmap`
- :mod:`.slider_velocity`, :mod:`.upstream_curves`: slider velocity and length, upstream's curve numbers
- :mod:`.timeline`: the timing-point list and its editing rules (volume, SV, kiai, scroll speed)
- :mod:`.merge`: :func:`add_to_beatmap`; :mod:`.output`: :func:`save_beatmap`, :func:`export_osz`

Usage::

    contexts = run.results()                      # {ContextType: (events, times)}
    options = PostprocessOptions.for_preset(preset)
    settings = BeatmapSettings(audio_filename="song.mp3", version=preset.beatmap_version, mode=0)
    beatmap = postprocess(contexts, settings, options)
    save_beatmap(beatmap, output_folder)
"""
from .build import (BeatmapSettings, PostprocessOptions, TEMPLATE_COMBO_COLOURS, build_beatmap, new_beatmap,
                    settings_from_beatmap)
from .contexts import merge_contexts, postprocess, timing_from_contexts
from .groups import Group, event_groups, snap_near_perfect_overlaps
from .merge import add_to_beatmap
from .output import export_osz, osu_filename, save_beatmap
from .slider_velocity import human_sv_and_length, length_for
from .red_lines import beat_length_for, generate_timing, resnap, resnap_events

__all__ = [
    "BeatmapSettings",
    "Group",
    "PostprocessOptions",
    "TEMPLATE_COMBO_COLOURS",
    "add_to_beatmap",
    "beat_length_for",
    "build_beatmap",
    "event_groups",
    "export_osz",
    "generate_timing",
    "human_sv_and_length",
    "length_for",
    "merge_contexts",
    "new_beatmap",
    "osu_filename",
    "postprocess",
    "resnap",
    "resnap_events",
    "save_beatmap",
    "settings_from_beatmap",
    "snap_near_perfect_overlaps",
    "timing_from_contexts",
]
