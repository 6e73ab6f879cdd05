"""osu! beatmaps: lossless ``.osu``/``.osz`` reading and writing, timing and slider geometry.

Modelled on osu!lazer's decoder/encoder split: :mod:`.model` holds one typed beatmap,
:mod:`.decoder` reads any .osu version as tolerantly as osu!, :mod:`.encoder` writes v14 the
way osu!stable does, :mod:`.timing`, :mod:`.slider_path`, :mod:`.sliders` and :mod:`.gameplay`
compute what osu! derives from it, and :mod:`.osz` handles beatmap archives.
"""
from .decoder import parse_beatmap, read_beatmap
from .encoder import beatmap_bytes, encode_beatmap
from .model import (Background, Beatmap, Break, Colour, Colours, CurvePoint, Difficulty, EdgeSet, Editor,
                    Events, General, HitCircle, HitObject, HitSample, HoldNote, Metadata, ParseWarning,
                    Slider, Spinner, TimingPoint, Video)
