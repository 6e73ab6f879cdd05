"""osu! beatmaps: lossless ``.osu``/``.osz`` reading and writing, timing and slider geometry.

Modelled on osu!lazer's decoder/encoder split: :mod:`.model` holds one typed beatmap,
:mod:`.decoder` reads any .osu version as tolerantly as osu!, :mod:`.encoder` writes v14 the
way osu!stable does, :mod:`.timing_lookup`, :mod:`.slider_path`, :mod:`.slider_timing` and :mod:`.gameplay`
compute what osu! derives from it, and :mod:`.osz` handles archives and safe writes.
"""
from .decoder import parse_beatmap, read_beatmap, read_reference_beatmap
from .encoder import beatmap_bytes, encode_beatmap
from .gameplay import ComboInfo, HitSound, hit_sounds, mania_column, mania_key_count
from .beatmap import Beatmap
from .model import (Background, Break, Colour, Colours, CurvePoint, Difficulty, EdgeSet, Editor, Events, General,
                    HitCircle, HitObject, HitSample, HoldNote, Metadata, ParseWarning, Slider, Spinner, TimingPoint,
                    Video)
from .osz import OszArchive, OszEntry, read_osz, write_beatmap, write_osz
from .slider_path import PathControlPoint, SliderPath, control_points, slider_path
from .slider_timing import SliderEvent, SliderInfo, slider_info
from .timing_lookup import ControlPoints, SampleState

__all__ = [
    "Background", "Beatmap", "Break", "ComboInfo", "Colour", "Colours", "ControlPoints", "CurvePoint",
    "Difficulty", "EdgeSet", "Editor", "Events", "General", "HitCircle", "HitObject", "HitSample", "HitSound", "HoldNote",
    "Metadata", "OszArchive", "OszEntry", "ParseWarning", "PathControlPoint", "SampleState", "Slider",
    "SliderEvent", "SliderInfo", "SliderPath", "Spinner", "TimingPoint", "Video", "beatmap_bytes",
    "control_points", "encode_beatmap", "hit_sounds", "mania_column", "mania_key_count", "parse_beatmap", "read_beatmap",
    "read_osz", "read_reference_beatmap", "slider_info", "slider_path", "write_beatmap", "write_osz",
]
