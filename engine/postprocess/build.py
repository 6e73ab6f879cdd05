"""Event groups to a beatmap: objects, hitsounds, and the green lines for volume, SV and kiai.

Objects are written in stream order, with upstream's choices:

- positions: a group without a position takes the previous object's (or, with only a distance,
  a random point that far from it); taiko objects sit at (256, 192), mania notes at y=192;
- circles, spinners (hitsounds from the spinner end), hold notes, dendens (as spinners) and
  drumrolls (as linear sliders whose length gives the duration at the current SV);
- sliders from head, anchors, last anchor (end of the first span) and end (after all spans), see
  :mod:`.slider_velocity`; the chosen SV becomes a green line at the head;
- a VOLUME event becomes a green line (mania keeps it on the note instead), a slider's per-node
  volumes a line at every node plus one 6 ms later restoring the body volume; KIAI and
  SCROLL_SPEED_CHANGE events become green lines (mania scroll speeds relative to the main BPM);
- green lines before the first red line are dropped at the end.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..beatmap import (Background, Beatmap, Colour, Colours, CurvePoint, Difficulty, EdgeSet, Editor,
                       Events, General, HitCircle, HitSample, HoldNote, Metadata, Slider, Spinner,
                       TimingPoint)
from ..presets import VersionPreset
from ..tokenizer import Event, EventType
from .groups import Group, event_groups, snap_near_perfect_overlaps
from .upstream_curves import SliderCurve
from .slider_velocity import capped_sv, drumroll_points, human_sv_and_length, length_for
from .timeline import Timeline, TimingLine, lines_from_points, median_beat_length, to_us, usable_timing
from .red_lines import DEFAULT_LENIENCY_MS

log = logging.getLogger(__name__)
T = EventType

PLAYFIELD = (512, 384)
CENTRE = (256, 192)
NO_CUSTOM_INDEX = -1
BODY_VOLUME_DELAY_MS = 6  # after a slider node sample, the body volume comes back this much later
MIN_REQUIRED_LENGTH = 1e-4

# Hitting these moves the "previous position" used by objects without one.
POSITIONED = frozenset({T.CIRCLE, T.SLIDER_HEAD, T.BEZIER_ANCHOR, T.PERFECT_ANCHOR, T.CATMULL_ANCHOR,
                        T.RED_ANCHOR, T.LAST_ANCHOR, T.SLIDER_END})
ANCHOR_KINDS = {T.BEZIER_ANCHOR: "B", T.PERFECT_ANCHOR: "P", T.CATMULL_ANCHOR: "C"}

# The combo colours of upstream's template as osu! reads them: its Combo0 and the Combo3 hidden
# behind an invisible U+034F are not combo colours to osu!stable.
TEMPLATE_COMBO_COLOURS = (Colour(255, 192, 0), Colour(0, 202, 0), Colour(18, 124, 255), Colour(242, 24, 57))


@dataclass(frozen=True)
class BeatmapSettings:
    """Metadata and difficulty of the written beatmap (upstream's ``BeatmapConfig``).

    ``bpm`` and ``offset`` only make the red line of a map that gets no timing at all.
    ``background`` is an image path or name; the file name goes into [Events].
    """

    audio_filename: str = ""
    preview_time: int = -1
    mode: int = 0
    title: str = "Unknown Title"
    title_unicode: str | None = None  # None: the title
    artist: str = "Unknown Artist"
    artist_unicode: str | None = None  # None: the artist
    creator: str = "Mapperatorinator"
    version: str = "Mapperatorinator"
    source: str = ""
    tags: str = ""
    hp_drain_rate: float = 5
    circle_size: float = 4
    overall_difficulty: float = 8
    approach_rate: float = 9
    slider_multiplier: float = 1.4
    slider_tick_rate: float = 1
    bpm: float = 120
    offset: float = 0
    background: str | None = None
    combo_colours: tuple[Colour, ...] = TEMPLATE_COMBO_COLOURS


@dataclass(frozen=True)
class PostprocessOptions:
    """How a model's event streams are read and cleaned up.

    The first four follow the model's data flags (:meth:`for_preset`): ``types_first`` (type event
    before its time shift), ``positions`` (the model writes positions, so a slider's length comes
    from where its end lies on the curve), ``slider_velocities`` (the model writes each slider's
    SV) and ``beats_in_map`` (v30: beat/measure events inside the map stream give the timing).
    """

    types_first: bool = False
    positions: bool = True
    slider_velocities: bool = False
    beats_in_map: bool = False
    mania_bpm_normalized_scroll_speed: bool = True
    timing_leniency: float = DEFAULT_LENIENCY_MS
    resnap_events: bool = True
    snap_near_perfect_overlaps: bool = False
    seed: int | None = None  # only for the rare object that has a distance but no position

    @classmethod
    def for_preset(cls, preset: VersionPreset, **overrides) -> "PostprocessOptions":
        data = preset.data
        values = dict(types_first=data.types_first, positions=data.add_positions, slider_velocities=data.add_sv,
                      beats_in_map=data.add_timing,
                      mania_bpm_normalized_scroll_speed=data.mania_bpm_normalized_scroll_speed,
                      snap_near_perfect_overlaps=preset.inference.snap_near_perfect_overlaps)
        values.update(overrides)
        return cls(**values)


def _point_at_distance(last: tuple[float, float], distance: float, rng: np.random.Generator) -> tuple[float, float]:
    """A random playfield point ``distance`` px from ``last`` (a corner when there is none)."""
    angles = np.linspace(0, 2 * np.pi, 500)
    xs, ys = last[0] + distance * np.cos(angles), last[1] + distance * np.sin(angles)
    inside = [(x, y) for x, y in zip(xs, ys) if 0 <= x <= PLAYFIELD[0] and 0 <= y <= PLAYFIELD[1]]
    if not inside:
        return PLAYFIELD if last[0] + last[1] > (PLAYFIELD[0] + PLAYFIELD[1]) / 2 else (0, 0)
    return inside[rng.integers(len(inside))]


def _rint(value: float) -> int:
    return int(round(value))


@dataclass
class _Pending:
    """Objects whose end event has not come yet."""

    spinner: Group | None = None
    hold_note: Group | None = None
    drumroll: Group | None = None
    denden: Group | None = None
    slider_head: Group | None = None
    last_anchor: Group | None = None
    anchors: list[tuple[str, float, float]] = field(default_factory=list)


class _MapBuilder:
    def __init__(self, settings: BeatmapSettings, options: PostprocessOptions, timeline: Timeline):
        self.settings = settings
        self.options = options
        self.mode = settings.mode
        self.timeline = timeline
        self.objects: list = []
        self.pending = _Pending()
        self.last = CENTRE
        self.median_beat_length = 0.0
        self.rng = np.random.default_rng(options.seed)

    # -- timing helpers ------------------------------------------------------------------------
    def line_at(self, time_ms: float) -> TimingLine:
        line = self.timeline.at(to_us(time_ms))
        if line is None:
            # upstream fails here (no timing at all); fall back to the settings' BPM and offset
            log.warning("no timing for the object at %d ms; using %s BPM from %s ms", time_ms,
                        self.settings.bpm, self.settings.offset)
            self.timeline.lines.append(_default_red(self.settings))
            line = self.timeline.at(to_us(time_ms))
        return line

    def set_volume(self, time_ms: int, volumes: list) -> None:
        if volumes:
            self.timeline.set_volume(time_ms, volumes[0])

    def set_taiko_sv(self, time_ms: int, group: Group) -> None:
        if self.mode == 1 and group.scroll_speed is not None:
            self.timeline.set_slider_velocity(time_ms, group.scroll_speed)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, groups: list[Group]) -> None:
        last_time = max(g.time for g in groups) if groups else 0
        self.median_beat_length = median_beat_length(self.timeline.lines, last_time)
        handlers = {
            T.CIRCLE: self.circle, T.HOLD_NOTE: self.start_hold_note, T.HOLD_NOTE_END: self.hold_note,
            T.DRUMROLL: self.start_drumroll, T.DRUMROLL_END: self.drumroll, T.DENDEN: self.start_denden,
            T.DENDEN_END: self.denden, T.SPINNER: self.start_spinner, T.SPINNER_END: self.spinner,
            T.SLIDER_HEAD: self.slider_head, T.BEZIER_ANCHOR: self.anchor, T.PERFECT_ANCHOR: self.anchor,
            T.CATMULL_ANCHOR: self.anchor, T.RED_ANCHOR: self.red_anchor, T.LAST_ANCHOR: self.last_anchor,
            T.SLIDER_END: self.slider_end, T.KIAI: self.kiai, T.SCROLL_SPEED_CHANGE: self.scroll_speed,
        }
        for group in groups:
            self.place(group)
            handler = handlers.get(group.type)
            if handler is not None:
                handler(group)
        self.timeline.drop_greens_before_first_red()

    def place(self, g: Group) -> None:
        if g.distance is not None and g.x is None and g.y is None:
            g.x, g.y = _point_at_distance(self.last, g.distance, self.rng)
        if g.x is None or g.y is None:
            g.x, g.y = self.last
        if g.type in POSITIONED:
            self.last = (g.x, g.y)
        if self.mode == 1:
            g.x, g.y = CENTRE
        if self.mode == 3:
            g.y = CENTRE[1]

    # -- objects -------------------------------------------------------------------------------
    def circle(self, g: Group) -> None:
        time = _rint(g.time)
        hitsound, sampleset, addition = g.sample()
        volume = g.volumes[0] if g.volumes and self.mode == 3 else 0
        self.objects.append(HitCircle(x=_rint(g.x), y=_rint(g.y), time=float(time), hitsound=hitsound,
                                      new_combo=g.new_combo,
                                      hit_sample=HitSample(sampleset, addition, NO_CUSTOM_INDEX, int(volume))))
        if self.mode != 3:
            self.set_volume(time, g.volumes)
        self.set_taiko_sv(time, g)

    def start_hold_note(self, g: Group) -> None:
        if self.pending.hold_note is not None:
            log.warning("incomplete hold note at %d ms", _rint(self.pending.hold_note.time))
        self.pending.hold_note = g

    def hold_note(self, g: Group) -> None:
        start = self.pending.hold_note
        if start is None:
            return
        time = _rint(start.time)
        hitsound, sampleset, addition = start.sample()
        volume = start.volumes[0] if start.volumes and self.mode == 3 else 0
        self.objects.append(HoldNote(x=_rint(start.x), y=CENTRE[1], time=float(time), hitsound=hitsound,
                                     end_time=float(_rint(g.time)),
                                     hit_sample=HitSample(sampleset, addition, NO_CUSTOM_INDEX, int(volume))))
        if self.mode != 3:
            self.set_volume(time, start.volumes)
        self.pending.hold_note = None

    def start_drumroll(self, g: Group) -> None:
        if self.pending.drumroll is not None:
            log.warning("incomplete drumroll at %d ms", _rint(self.pending.drumroll.time))
        self.pending.drumroll = g

    def drumroll(self, g: Group) -> None:
        start = self.pending.drumroll
        if start is None:
            return
        self.pending.drumroll = None
        time = _rint(start.time)
        duration = _rint(g.time) - time
        if duration < 1:
            return
        hitsound, sampleset, addition = start.sample()
        self.set_volume(time, start.volumes)
        self.set_taiko_sv(time, start)
        line = self.line_at(time)
        length = line.slider_velocity * duration * 100 / line.red.beat_length * self.settings.slider_multiplier
        head, *points = drumroll_points(length)
        self.objects.append(Slider(
            x=head[0], y=head[1], time=float(time), hitsound=hitsound, curve_type="L",
            curve_points=tuple(CurvePoint(x, y) for x, y in points), slides=1, length=float(length),
            edge_sounds=(0, 0), edge_sets=(EdgeSet(0, 0), EdgeSet(0, 0)),
            hit_sample=HitSample(sampleset, addition, NO_CUSTOM_INDEX, 0)))

    def start_denden(self, g: Group) -> None:
        if self.pending.denden is not None:
            log.warning("incomplete denden at %d ms", _rint(self.pending.denden.time))
        self.pending.denden = g

    def denden(self, g: Group) -> None:
        start = self.pending.denden
        if start is None:
            return
        time = _rint(start.time)
        hitsound, sampleset, addition = start.sample()
        self.objects.append(Spinner(x=CENTRE[0], y=CENTRE[1], time=float(time), hitsound=hitsound, new_combo=True,
                                    end_time=float(_rint(g.time)),
                                    hit_sample=HitSample(sampleset, addition, NO_CUSTOM_INDEX, 0)))
        self.set_volume(time, start.volumes)
        self.set_taiko_sv(time, start)
        self.pending.denden = None

    def start_spinner(self, g: Group) -> None:
        if self.pending.spinner is not None:
            log.warning("incomplete spinner at %d ms", _rint(self.pending.spinner.time))
        self.pending.spinner = g

    def spinner(self, g: Group) -> None:
        start = self.pending.spinner
        if start is None:
            return
        hitsound, sampleset, addition = g.sample()  # a spinner's sound plays at its end
        end = _rint(g.time)
        self.objects.append(Spinner(x=CENTRE[0], y=CENTRE[1], time=float(_rint(start.time)), hitsound=hitsound,
                                    new_combo=True, end_time=float(end),
                                    hit_sample=HitSample(sampleset, addition, NO_CUSTOM_INDEX, 0)))
        self.set_volume(end, g.volumes)
        self.pending.spinner = None
        self.last = CENTRE

    # -- sliders -------------------------------------------------------------------------------
    def slider_head(self, g: Group) -> None:
        if self.pending.slider_head is not None:
            log.warning("incomplete slider at %d ms", _rint(self.pending.slider_head.time))
        self.pending.slider_head, self.pending.last_anchor, self.pending.anchors = g, None, []

    def anchor(self, g: Group) -> None:
        self.pending.anchors.append((ANCHOR_KINDS[g.type], g.x, g.y))

    def red_anchor(self, g: Group) -> None:
        # a red anchor is a repeated point, which starts a new segment of the curve
        self.pending.anchors += [("B", g.x, g.y), ("B", g.x, g.y)]

    def last_anchor(self, g: Group) -> None:
        # slider_version 2 repeats the last anchor at the end of the first span: the first one
        # gives the position, the last one the time and the node hitsounds
        if self.pending.last_anchor is None:
            self.pending.anchors.append(("B", g.x, g.y))
        self.pending.last_anchor = g

    def _reset_slider(self) -> None:
        self.pending.slider_head, self.pending.last_anchor, self.pending.anchors = None, None, []

    def slider_end(self, g: Group) -> None:
        head, last, anchors = self.pending.slider_head, self.pending.last_anchor, self.pending.anchors
        if head is None or last is None:
            return
        time = _rint(head.time)
        kind = anchors[0][0]
        span = last.time - head.time
        total = g.time - head.time
        if total <= 0 or span <= 0:
            log.warning("invalid slider duration at %d ms", time)
            self._reset_slider()
            return
        slides = max(_rint(total / span), 1)
        span = total / slides
        curve = SliderCurve(kind, [(head.x, head.y)] + [(x, y) for _, x, y in anchors])
        curve_length = curve.length
        line = self.line_at(time)
        beat_length = line.red.beat_length
        current_sv = line.slider_velocity
        multiplier = self.settings.slider_multiplier

        if not self.options.slider_velocities or head.scroll_speed is None:
            if self.options.positions:
                required = curve_length * curve.progress_of((g.x, g.y))
            else:
                required = curve_length - float(np.linalg.norm(np.array((g.x, g.y)) - np.array((last.x, last.y))))
            if required < MIN_REQUIRED_LENGTH:
                return  # upstream skips this end but keeps the slider open for a later one
            sv, length = human_sv_and_length(required, span, current_sv, beat_length, head.new_combo, multiplier)
        else:
            sv = head.scroll_speed
            length = length_for(sv, span, beat_length, multiplier)

        if length > curve_length * 1.5:
            sv = capped_sv(curve_length, span, beat_length, multiplier)
            length = length_for(sv, span, beat_length, multiplier)
        if length > curve_length + 1e-4:
            # stretch the curve about the head so that it is long enough
            scale = length / curve_length
            anchors = [(k, (x - head.x) * scale + head.x, (y - head.y) * scale + head.y) for k, x, y in anchors]
        if sv != current_sv:
            self.timeline.set_slider_velocity(time, sv)

        node_hitsounds = head.hitsounds + last.hitsounds[1:] + g.hitsounds
        node_samplesets = head.samplesets + last.samplesets[1:] + g.samplesets
        node_additions = head.additions + last.additions[1:] + g.additions
        node_volumes = head.volumes + last.volumes[1:] + g.volumes
        body_hitsound, body_sampleset, body_addition = last.sample()
        self.objects.append(Slider(
            x=_rint(head.x), y=_rint(head.y), time=float(time), hitsound=body_hitsound, new_combo=head.new_combo,
            curve_type=kind, curve_points=tuple(CurvePoint(_rint(x), _rint(y)) for _, x, y in anchors),
            slides=slides, length=float(length), edge_sounds=tuple(node_hitsounds),
            edge_sets=tuple(EdgeSet(s, a) for s, a in zip(node_samplesets, node_additions)),
            hit_sample=HitSample(body_sampleset, body_addition, NO_CUSTOM_INDEX, 0)))

        for i in range(min(slides + 1, len(node_volumes))):
            node_time = _rint(head.time + span * i)
            self.timeline.set_volume(node_time, node_volumes[i])
            if last.volumes and last.volumes[0] != node_volumes[i] and i < slides and span > BODY_VOLUME_DELAY_MS:
                self.timeline.set_volume(node_time + BODY_VOLUME_DELAY_MS, last.volumes[0])
        self._reset_slider()

    # -- timing events -------------------------------------------------------------------------
    def kiai(self, g: Group) -> None:
        self.timeline.set_kiai(g.time, bool(g.value))

    def scroll_speed(self, g: Group) -> None:
        if g.scroll_speed is None:
            return
        if self.options.mania_bpm_normalized_scroll_speed:
            self.line_at(g.time)
            median = self.median_beat_length or self.timeline.at(to_us(g.time)).red.beat_length
            self.timeline.set_normalized_scroll_speed(g.time, g.scroll_speed, median)
        else:
            self.timeline.set_slider_velocity(g.time, g.scroll_speed)


def _default_red(settings: BeatmapSettings) -> TimingLine:
    beat_length = 60000 / settings.bpm if settings.bpm else 500.0
    return TimingLine(to_us(settings.offset), beat_length)


def new_beatmap(settings: BeatmapSettings) -> Beatmap:
    """An empty beatmap with ``settings`` and the header values upstream's template writes."""
    s = settings
    background = [Background(os.path.basename(s.background))] if s.background else []
    return Beatmap(
        general=General(audio_filename=s.audio_filename, audio_lead_in=0, preview_time=int(s.preview_time),
                        countdown=0, sample_set="Normal", stack_leniency=0.7, mode=s.mode,
                        letterbox_in_breaks=False, widescreen_storyboard=True, extra={"OverlayPosition": "Above"}),
        editor=Editor(distance_spacing=1.0, beat_divisor=4, grid_size=8, timeline_zoom=2.20004),
        metadata=Metadata(title=s.title, title_unicode=s.title if s.title_unicode is None else s.title_unicode,
                          artist=s.artist, artist_unicode=s.artist if s.artist_unicode is None else s.artist_unicode,
                          creator=s.creator, version=s.version, source=s.source, tags=s.tags),
        difficulty=Difficulty(hp_drain_rate=float(s.hp_drain_rate), circle_size=float(s.circle_size),
                              overall_difficulty=float(s.overall_difficulty), approach_rate=float(s.approach_rate),
                              slider_multiplier=float(s.slider_multiplier),
                              slider_tick_rate=float(s.slider_tick_rate)),
        events=Events(media=background),
        colours=Colours.from_combo(list(s.combo_colours)),
    )


def build_beatmap(events: Sequence[Event], settings: BeatmapSettings = BeatmapSettings(),
                  options: PostprocessOptions = PostprocessOptions(),
                  timing: Sequence[TimingPoint] | None = None) -> Beatmap:
    """The beatmap of one merged event stream (TIME_SHIFT values in absolute ms).

    ``timing``: the red lines to place objects on (from :func:`.generate_timing` or a reference
    beatmap); ``None`` means a single red line from ``settings.bpm`` and ``settings.offset``, an
    empty list no timing at all (objects that need a beat length then get that red line too).
    """
    if timing is None:
        timeline = Timeline([_default_red(settings)])
    else:
        timeline = Timeline(lines_from_points(usable_timing(timing)))
    groups = event_groups(events, options.types_first)
    if options.snap_near_perfect_overlaps:
        snap_near_perfect_overlaps(groups)
    builder = _MapBuilder(settings, options, timeline)
    builder.run(groups)
    beatmap = new_beatmap(settings)
    beatmap.timing_points = timeline.points()
    beatmap.hit_objects = builder.objects
    return beatmap


def settings_from_beatmap(beatmap: Beatmap, **overrides) -> BeatmapSettings:
    """Metadata, difficulty, BPM and offset of a reference beatmap (upstream's
    ``beatmap_config_from_beatmap``): BPM is the highest whole BPM of its red lines, offset its
    earliest timing point (rounded), tags re-joined with single spaces. As upstream reads it, a
    preview time of -1 (none) becomes 0: it adds 1e-5 and truncates towards zero."""
    m, d, g = beatmap.metadata, beatmap.difficulty, beatmap.general
    # osu! plays beat lengths under 6 ms as 6 ms (10000 BPM); 1e-320 would otherwise give an infinite BPM
    bpms = [round(60000 / max(p.beat_length, 6.0)) for p in beatmap.timing_points if p.beat_length > 0]
    values = dict(
        audio_filename=g.audio_filename, preview_time=int(g.preview_time + 1e-5), mode=g.mode,
        title=m.title, title_unicode=m.title_unicode, artist=m.artist, artist_unicode=m.artist_unicode,
        creator=m.creator, version=m.version, source=m.source, tags=" ".join(m.tags.split()),
        hp_drain_rate=d.hp_drain_rate, circle_size=d.circle_size, overall_difficulty=d.overall_difficulty,
        approach_rate=d.approach_rate, slider_multiplier=d.slider_multiplier, slider_tick_rate=d.slider_tick_rate,
        bpm=max((b for b in bpms if b), default=BeatmapSettings.bpm),
        offset=int(round(min((p.time for p in beatmap.timing_points), default=0))),
        background=beatmap.events.background.filename if beatmap.events.background else None,
    )
    values.update(overrides)
    return BeatmapSettings(**values)
