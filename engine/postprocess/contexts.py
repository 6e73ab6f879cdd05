"""From the finished context streams of a generation to a beatmap, in upstream's order:

1. timing: given red lines (a reference beatmap's), else rebuilt from the TIMING context, else
   (v30) from the beat events inside the map stream, else none (one red line from the settings);
2. the other contexts merged by time (KIAI, MAP, SV: at equal times in that order);
3. every snapped TIME_SHIFT moved onto that timing (``resnap_events``);
4. objects and green lines placed (:func:`.build_beatmap`).
"""
from __future__ import annotations

from functools import reduce
from typing import Callable, Mapping, Sequence

from ..beatmap import Beatmap, TimingPoint
from ..events import BEAT_TYPES, EventStream, events_of_type, merge_events
from ..tokenizer import ContextType, EventType
from .build import BeatmapSettings, PostprocessOptions, build_beatmap
from .red_lines import generate_timing, resnap_events

C = ContextType
MERGE_ORDER = (C.TIMING, C.KIAI, C.MAP, C.SV)  # the order of upstream's context templates
TIMING_TYPES = BEAT_TYPES | {EventType.TIME_SHIFT}

Contexts = Mapping[ContextType, EventStream]


def merge_contexts(contexts: Contexts) -> EventStream:
    """All streams merged by time; at equal times the earlier context type comes first."""
    ordered = sorted(contexts.items(), key=lambda kv: MERGE_ORDER.index(kv[0]) if kv[0] in MERGE_ORDER else 99)
    streams = [EventStream(list(events), list(times)) for _, (events, times) in ordered]
    return reduce(merge_events, streams, EventStream.empty())


def timing_from_contexts(contexts: Contexts, options: PostprocessOptions) -> list[TimingPoint] | None:
    """Red lines rebuilt from the TIMING context or, with ``options.beats_in_map``, from the
    beat events of the other contexts; ``None`` when neither applies."""
    if C.TIMING in contexts:
        events, times = contexts[C.TIMING]
        stream = events_of_type(EventStream(list(events), list(times)), TIMING_TYPES)
        return generate_timing(stream.events, types_first=options.types_first, leniency=options.timing_leniency)
    if options.beats_in_map:
        rest = {k: v for k, v in contexts.items() if k != C.TIMING}
        return generate_timing(merge_contexts(rest).events, types_first=options.types_first,
                               leniency=options.timing_leniency)
    return None


def postprocess(contexts: Contexts, settings: BeatmapSettings = BeatmapSettings(),
                options: PostprocessOptions = PostprocessOptions(), *,
                timing: Sequence[TimingPoint] | None = None,
                refine: Callable[[list, Sequence[TimingPoint] | None], list] | None = None) -> Beatmap:
    """The beatmap of a generation's finished context streams (an :class:`EventStream` per context,
    TIME_SHIFT values and times in absolute ms, positions in pixels).

    ``timing``: red lines to use instead of rebuilding them (a reference beatmap's uninherited
    points, or an earlier timing pass); the TIMING context is then ignored. ``refine(events, timing)``: runs on
    the resnapped events before the beatmap is built (upstream's diffusion step); returns the events to build.
    """
    if timing is None:
        timing = timing_from_contexts(contexts, options)
    events = merge_contexts({k: v for k, v in contexts.items() if k != C.TIMING}).events
    if options.resnap_events and timing is not None:
        events = resnap_events(events, timing)
    if refine is not None:
        events = refine(events, timing)
    return build_beatmap(events, settings, options, timing)
