"""From scored events to suggestions: which surprises to report and what to tell the mapper.

This is upstream MaiMod's report (``mai_mod.py``), step by step:

1. Every event sits in a group (one circle, anchor, beat, kiai toggle, ...). Groups give the
   suggestion its label ("Circle", "Bezier Anchor #3", "Slider Repeat #1") and its neighbours.
2. Events with a relative surprisal of at least 20 are candidates (upstream shows that number
   divided by 10, so 2 on its scale).
3. Known false alarms are dropped: positions of slider ends, time shifts within 10 ms of the
   expected one, and snapping/beat swaps where the next group is within 2 ms.
4. The (actual, expected) event types pick a category and a message; special cases come first.
5. Hit-object suggestions point at the object at (or just before) that time with its combo number,
   so that osu!'s editor selects it from the timestamp.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..beatmap import Beatmap
from ..events import BEAT_TYPES, TYPE_EVENTS
from ..messages import Message
from ..presets import DataFlags
from ..suggestions import Severity, Source, Suggestion, editor_timestamp
from ..tokenizer import ContextType, Event, EventType, Tokenizer
from .scoring import ScoredContext

T = EventType

MIN_SURPRISAL = 20.0  # relative surprisal; upstream's report shows it divided by 10
DISPLAY_SCALE = 10.0

POSITION_TYPES = frozenset({T.DISTANCE, T.POS_X, T.POS_Y, T.POS})
ANCHOR_TYPES = frozenset({T.RED_ANCHOR, T.BEZIER_ANCHOR, T.CATMULL_ANCHOR, T.PERFECT_ANCHOR})
SOUND_TYPES = frozenset({T.HITSOUND, T.VOLUME})
HIT_OBJECT_TYPES = frozenset({
    T.CIRCLE, T.SPINNER, T.SPINNER_END, T.SLIDER_HEAD, *ANCHOR_TYPES, T.LAST_ANCHOR, T.SLIDER_END,
    T.HOLD_NOTE, T.HOLD_NOTE_END, T.DRUMROLL, T.DRUMROLL_END, T.DENDEN, T.DENDEN_END,
})

_UNSNAPPED = ("Timing", Message("maimod.unsnapped", "Hit object likely not snapped to a beat."))
_NEW_POSITION = ("Compose", Message("maimod.position", "Expected position {expected_value} instead of "
                                                      "{real_value}."))
_NOT_A_SLIDER_END = ("Rhythm", Message("maimod.slider_repeats_end", "Expected end of slider repeats."))
_UNEXPECTED_MEASURE = ("Timing", Message("maimod.unexpected_measure", "Unexpected new measure."))
_UNEXPECTED_TIMING_POINT = ("Timing", Message("maimod.unexpected_timing_point", "Unexpected new timing point."))
_EXPECTED_TIMING_POINT = ("Timing", Message("maimod.expected_timing_point", "Expected new timing point."))

# (actual type, expected type) -> (category, message template), after the special cases below.
# Written for v30's vocabulary; pairs that never occur in other versions simply never match.
EXPLANATIONS: dict[tuple[EventType, EventType], tuple[str, Message]] = {
    (T.DISTANCE, T.DISTANCE): ("Compose", Message("maimod.distance", "Expected distance {expected_value} to the "
                                                  "previous {previous_group} instead of {real_value}.")),
    (T.POS_X, T.POS_X): _NEW_POSITION,
    (T.POS_Y, T.POS_Y): _NEW_POSITION,
    (T.POS, T.POS): _NEW_POSITION,
    (T.MANIA_COLUMN, T.MANIA_COLUMN): ("Compose", Message("maimod.column", "Expected column {expected_value} "
                                                          "instead of {real_value}.")),
    (T.HITSOUND, T.HITSOUND): ("Hit Sounds", Message("maimod.hitsound", "Expected hitsound {expected_value} "
                                                     "instead of {real_value}.")),
    (T.VOLUME, T.VOLUME): ("Hit Sounds", Message("maimod.volume", "Expected volume {expected_value} instead of "
                                                 "{real_value}.")),
    (T.HITSOUND, T.NEW_COMBO): ("New Combos", Message("maimod.expected_new_combo", "Expected new combo.")),
    (T.NEW_COMBO, T.HITSOUND): ("New Combos", Message("maimod.unexpected_new_combo", "Unexpected new combo.")),
    (T.HITSOUND, T.LAST_ANCHOR): _NOT_A_SLIDER_END,  # type tokens last
    (T.HITSOUND, T.SLIDER_END): _NOT_A_SLIDER_END,  # type tokens first
    (T.SNAPPING, T.BEAT): _UNSNAPPED,
    (T.SNAPPING, T.MEASURE): _UNSNAPPED,
    (T.SNAPPING, T.TIMING_POINT): _UNSNAPPED,
    (T.TIME_SHIFT, T.DISTANCE): ("Sliders", Message("maimod.additional_anchors", "Expected additional anchors.")),
    (T.DISTANCE, T.TIME_SHIFT): ("Sliders", Message("maimod.last_anchor", "Expected last anchor.")),
    (T.BEAT, T.SNAPPING): ("Timing", Message("maimod.unexpected_beat", "Unexpected beat.")),
    (T.BEAT, T.MEASURE): ("Timing", Message("maimod.expected_measure", "Expected new measure.")),
    (T.BEAT, T.TIMING_POINT): _EXPECTED_TIMING_POINT,
    (T.MEASURE, T.SNAPPING): _UNEXPECTED_MEASURE,
    (T.MEASURE, T.BEAT): _UNEXPECTED_MEASURE,
    (T.MEASURE, T.TIMING_POINT): _EXPECTED_TIMING_POINT,
    (T.TIMING_POINT, T.SNAPPING): _UNEXPECTED_TIMING_POINT,
    (T.TIMING_POINT, T.BEAT): _UNEXPECTED_TIMING_POINT,
    (T.TIMING_POINT, T.MEASURE): _UNEXPECTED_TIMING_POINT,
}
FALLBACK = ("Misc", Message("maimod.fallback", "Expected {expected_type} {expected_value} instead of {real_type} "
                                               "{real_value}."))
_TYPE = Message("maimod.type", "Expected a {expected_type} instead of a {real_type}.")
_TIME_SHIFT = Message("maimod.time_shift", "Expected object at {expected_value} instead of {real_value}.")
_SNAPPING = Message("maimod.snapping", "Expected snapping {expected_value} instead of {real_value}.")
_SLIDER_VELOCITY = Message("maimod.slider_velocity", "Expected slider velocity {expected_value} instead of "
                           "{real_value}.")
_SCROLL_SPEED = Message("maimod.scroll_speed", "Expected scroll speed {expected_value} instead of {real_value}.")
_KIAI_START = Message("maimod.kiai_start", "Unexpected kiai section start.")
_KIAI_END = Message("maimod.kiai_end", "Unexpected kiai section end.")


def severity_of(relative_surprisal: float) -> Severity:
    """Upstream's colour bands on its /10 scale: 100+ red (likely an issue), 10+ yellow, below that
    subjective."""
    shown = relative_surprisal / DISPLAY_SCALE
    if shown >= 100:
        return Severity.PROBLEM
    if shown >= 10:
        return Severity.WARNING
    return Severity.MINOR


#: Event type names as upstream's report writes them ("Slider Head"), as messages the app translates.
TYPE_NAMES: dict[EventType, Message] = {
    T.TIME_SHIFT: Message("maimod.event.t", "T"),
    T.SNAPPING: Message("maimod.event.snap", "Snap"),
    T.DISTANCE: Message("maimod.event.dist", "Dist"),
    T.NEW_COMBO: Message("maimod.event.new_combo", "New Combo"),
    T.HITSOUND: Message("maimod.event.hitsound", "Hitsound"),
    T.VOLUME: Message("maimod.event.volume", "Volume"),
    T.CIRCLE: Message("maimod.event.circle", "Circle"),
    T.SPINNER: Message("maimod.event.spinner", "Spinner"),
    T.SPINNER_END: Message("maimod.event.spinner_end", "Spinner End"),
    T.SLIDER_HEAD: Message("maimod.event.slider_head", "Slider Head"),
    T.BEZIER_ANCHOR: Message("maimod.event.bezier_anchor", "Bezier Anchor"),
    T.PERFECT_ANCHOR: Message("maimod.event.perfect_anchor", "Perfect Anchor"),
    T.CATMULL_ANCHOR: Message("maimod.event.catmull_anchor", "Catmull Anchor"),
    T.RED_ANCHOR: Message("maimod.event.red_anchor", "Red Anchor"),
    T.LAST_ANCHOR: Message("maimod.event.last_anchor", "Last Anchor"),
    T.SLIDER_END: Message("maimod.event.slider_end", "Slider End"),
    T.BEAT: Message("maimod.event.beat", "Beat"),
    T.MEASURE: Message("maimod.event.measure", "Measure"),
    T.TIMING_POINT: Message("maimod.event.timing_point", "Timing Point"),
    T.GAMEMODE: Message("maimod.event.gamemode", "Gamemode"),
    T.STYLE: Message("maimod.event.style", "Style"),
    T.DIFFICULTY: Message("maimod.event.difficulty", "Difficulty"),
    T.MAPPER: Message("maimod.event.mapper", "Mapper"),
    T.CS: Message("maimod.event.cs", "Cs"),
    T.YEAR: Message("maimod.event.year", "Year"),
    T.HITSOUNDED: Message("maimod.event.hitsounded", "Hitsounded"),
    T.SONG_LENGTH: Message("maimod.event.song_length", "Song Length"),
    T.SONG_POSITION: Message("maimod.event.song_position", "Song Position"),
    T.GLOBAL_SV: Message("maimod.event.global_sv", "Global Sv"),
    T.MANIA_KEYCOUNT: Message("maimod.event.keycount", "Keycount"),
    T.HOLD_NOTE_RATIO: Message("maimod.event.hold_note_ratio", "Hold Note Ratio"),
    T.SCROLL_SPEED_RATIO: Message("maimod.event.scroll_speed_ratio", "Scroll Speed Ratio"),
    T.DESCRIPTOR: Message("maimod.event.descriptor", "Descriptor"),
    T.POS_X: Message("maimod.event.pos_x", "Pos X"),
    T.POS_Y: Message("maimod.event.pos_y", "Pos Y"),
    T.POS: Message("maimod.event.pos", "Pos"),
    T.KIAI: Message("maimod.event.kiai", "Kiai"),
    T.MANIA_COLUMN: Message("maimod.event.column", "Column"),
    T.HOLD_NOTE: Message("maimod.event.hold_note", "Hold Note"),
    T.HOLD_NOTE_END: Message("maimod.event.hold_note_end", "Hold Note End"),
    T.SCROLL_SPEED_CHANGE: Message("maimod.event.scroll_speed_change", "Scroll Speed Change"),
    T.SCROLL_SPEED: Message("maimod.event.scroll_speed", "Scroll Speed"),
    T.DRUMROLL: Message("maimod.event.drumroll", "Drumroll"),
    T.DRUMROLL_END: Message("maimod.event.drumroll_end", "Drumroll End"),
    T.DENDEN: Message("maimod.event.denden", "Denden"),
    T.DENDEN_END: Message("maimod.event.denden_end", "Denden End"),
    T.CONTROL: Message("maimod.event.control", "Control"),
    T.SLIDER_SUSTAIN: Message("maimod.event.slider_sustain", "Slider Sustain"),
    T.SLIDER_REPEAT_SUSTAIN: Message("maimod.event.slider_repeat_sustain", "Slider Repeat Sustain"),
    T.SPINNER_SUSTAIN: Message("maimod.event.spinner_sustain", "Spinner Sustain"),
    T.HOLD_NOTE_SUSTAIN: Message("maimod.event.hold_note_sustain", "Hold Note Sustain"),
    T.DRUMROLL_SUSTAIN: Message("maimod.event.drumroll_sustain", "Drumroll Sustain"),
    T.DENDEN_SUSTAIN: Message("maimod.event.denden_sustain", "Denden Sustain"),
    T.POS_REFINE: Message("maimod.event.pos_refine", "Pos Refine"),
}


def type_name(event_type: EventType) -> str:
    return TYPE_NAMES.get(event_type) or event_type.value.replace("_", " ").title()


# --- groups -----------------------------------------------------------------------------------------------


@dataclass
class GroupSummary:
    """What MaiMod needs of a group: its type event, time and whether it carries a position."""

    type: EventType | None = None
    time: int = 0
    has_position: bool = False


def group_events(events: Sequence[Event], times: Sequence[int],
                 types_first: bool) -> tuple[list[GroupSummary], list[int]]:
    """The groups of a stream and the group index of every event (-1 for none).

    Like upstream's ``get_groups`` with event times: a group's time is its type event's time (with
    ``types_first``, a time shift after the type event overrides it); events after the last type
    event (types last) or before the first one (types first) join the nearest group.
    :func:`engine.postprocess.groups.event_groups` builds the post-processor's richer groups but
    neither keeps which event belongs to which group nor uses the stream's event times.
    """
    groups: list[GroupSummary] = []
    owner = [-1] * len(events)
    current = GroupSummary()
    members: list[int] = []

    def close() -> None:
        nonlocal current, members
        groups.append(current)
        for m in members:
            owner[m] = len(groups) - 1
        current, members = GroupSummary(), []

    for i, event in enumerate(events):
        kind = event.type
        if kind in TYPE_EVENTS and types_first and current.type is not None:
            close()
        members.append(i)
        if kind == T.TIME_SHIFT:
            current.time = event.value
        elif kind in (T.POS_X, T.POS):
            current.has_position = True
        elif kind in TYPE_EVENTS:
            current.type, current.time = kind, times[i]
            if not types_first:
                close()
    if current.type is not None:
        close()
    elif members and groups:
        for m in members:
            owner[m] = len(groups) - 1
    return groups, owner


# --- event text -------------------------------------------------------------------------------------------


def clock(ms: int | float) -> str:
    """``mm:ss:mmm`` as osu! writes editor times."""
    ms = int(ms)
    sign, ms = ("-", -ms) if ms < 0 else ("", ms)
    return f"{sign}{ms // 60000:02}:{(ms // 1000) % 60:02}:{ms % 1000:03}"


@dataclass(frozen=True)
class EventText:
    """How upstream's report writes an event's value (positions in pixels, hitsounds by name, ...)."""

    flags: DataFlags
    tokenizer: Tokenizer

    def __call__(self, event: Event) -> str:
        kind, v = event.type, event.value
        precision = self.flags.position_precision
        if kind in (T.POS_X, T.POS_Y):
            return f"{kind.value[4]}:{v * precision}"
        if kind == T.POS:
            x_min, x_max = self.flags.position_range[0] // precision, self.flags.position_range[1] // precision
            y_min = self.flags.position_range[2] // precision
            x_count = x_max - x_min + 1
            centre = precision // 2 if precision > 1 else 0
            return f"x:{(v % x_count + x_min) * precision + centre} y:{(v // x_count + y_min) * precision + centre}"
        if kind == T.DISTANCE:
            return str(v)
        if kind == T.MANIA_COLUMN:
            return str(v + 1)
        if kind == T.VOLUME:
            return f"{v}%"
        if kind == T.SNAPPING:
            return f"1/{v}" if v > 0 else "none"
        if kind == T.TIME_SHIFT:
            return clock(v)
        if kind == T.SCROLL_SPEED:
            return f"x{v / 100:.2f}"
        if kind == T.HITSOUND:
            sounds = [name for bit, name in enumerate(("whistle", "finish", "clap")) if v >> bit & 1]
            banks = ("normal", "soft", "drum")
            return f"{banks[v // 8 % 3]}:{banks[v // 24 % 3]}-{':'.join(sounds) or 'none'}"
        if kind == T.CONTROL and (v == self.tokenizer.eos_id or v in self.tokenizer.context_eos.values()):
            return Message("maimod.end_of_sequence", "End of sequence")
        return str(event)


# --- candidates -------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One surprising event with everything the report needs to explain it."""

    context: ContextType
    index: int  # in the context's stream
    time: int
    event: Event
    expected: Event
    surprisal: float
    group: GroupSummary | None
    group_label: str = "None"
    previous_group_label: str = "None"
    next_group: GroupSummary | None = None
    next_beat_group: GroupSummary | None = None
    combo_numbers: list = field(default_factory=list)  # of the object the timestamp selects
    timestamp_time: int | None = None  # that object's time; None: the event's own time


def candidates(scored: Sequence[ScoredContext], types_first: bool,
               min_surprisal: float = MIN_SURPRISAL) -> list[Candidate]:
    """Every event at or above ``min_surprisal``, in time order (stable over contexts and events)."""
    out: list[Candidate] = []
    for ctx in scored:
        hits = [i for i in range(len(ctx.events)) if ctx.surprisal[i] >= min_surprisal]
        if not hits:
            continue
        groups, owner = group_events(ctx.events, ctx.times, types_first)
        for i in hits:
            g = owner[i]
            c = Candidate(ctx.type, i, ctx.times[i], ctx.events[i], ctx.expected[i], float(ctx.surprisal[i]),
                          groups[g] if g >= 0 else None)
            if g >= 0:
                c.group_label = _label(groups, g, c, ctx.events, owner)
                for j in range(g - 1, -1, -1):
                    if groups[j].has_position:
                        c.previous_group_label = _label(groups, j, c, ctx.events, owner)
                        break
                c.next_group = groups[g + 1] if g + 1 < len(groups) else None
                c.next_beat_group = next((h for h in groups[g + 1:] if h.type in BEAT_TYPES), None)
            out.append(c)
    out.sort(key=lambda c: c.time)
    return out


def _label(groups: list[GroupSummary], g: int, c: Candidate, events: Sequence[Event], owner: list[int]) -> str:
    group = groups[g]
    if group.type == T.LAST_ANCHOR and g == owner[c.index] and c.event.type in SOUND_TYPES:
        # A slider end's group holds one hitsound per node; count back to its time shift for which one.
        repeat = 0
        for j in range(c.index - 1, -1, -1):
            if events[j].type == T.TIME_SHIFT:
                break
            repeat += events[j].type == c.event.type
        if repeat == 0:
            return Message("maimod.slider_body", "Slider Body")
        return Message("maimod.slider_repeat", "Slider Repeat #{number}", number=repeat)
    if group.type in ANCHOR_TYPES:
        number = 2  # the head is the slider's first anchor
        for j in range(g - 1, -1, -1):
            if groups[j].type == T.SLIDER_HEAD:
                break
            number += groups[j].type in ANCHOR_TYPES
        return Message("maimod.numbered", "{name} #{number}", name=type_name(group.type), number=number)
    return type_name(group.type) if group.type is not None else "None"


def is_false_alarm(c: Candidate) -> bool:
    """Upstream's filters for surprises that are not worth reporting."""
    a, e = c.event.type, c.expected.type
    near_next = c.next_group is not None and abs(c.time - c.next_group.time) < 2
    return bool(
        (c.group is not None and c.group.type == T.SLIDER_END and a in POSITION_TYPES)
        or (a == T.TIME_SHIFT and e == T.TIME_SHIFT and abs(c.expected.value - c.event.value) <= 10)
        or (a == T.SNAPPING and e in BEAT_TYPES and near_next)
        or (a in BEAT_TYPES and e == T.SNAPPING and near_next)
    )


def explanation(c: Candidate, *, add_timing: bool, gamemode: int) -> tuple[str, Message]:
    """(category, message template) for a candidate: the special cases, then :data:`EXPLANATIONS`."""
    a, e = c.event.type, c.expected.type
    group_type = c.group.type if c.group is not None else None
    if (add_timing and a == T.TIME_SHIFT and e == T.TIME_SHIFT and group_type not in BEAT_TYPES
            and c.next_beat_group is not None and abs(c.expected.value - c.next_beat_group.time) <= 10):
        # the model wanted to jump to the next beat: it expects no object here
        return "Rhythm", Message("maimod.unexpected_object", "Unexpected hit object.")
    if a == T.LAST_ANCHOR and e in ANCHOR_TYPES:
        return "Sliders", Message("maimod.additional_anchors", "Expected additional anchors.")
    if a in ANCHOR_TYPES and e == T.LAST_ANCHOR:
        return "Sliders", Message("maimod.last_anchor", "Expected last anchor.")
    if a in ANCHOR_TYPES and e in ANCHOR_TYPES:
        return "Sliders", _TYPE
    if a in HIT_OBJECT_TYPES and e in HIT_OBJECT_TYPES:
        return "Rhythm", _TYPE
    if a in (T.TIME_SHIFT, T.SNAPPING) and e == a:
        message = _TIME_SHIFT if a == T.TIME_SHIFT else _SNAPPING
        if group_type in HIT_OBJECT_TYPES:
            return "Rhythm", message
        if group_type == T.SCROLL_SPEED_CHANGE:
            return "Scroll Speeds", message
        if group_type == T.KIAI:
            return "Kiai", message
        return "Timing", message
    if a == T.SCROLL_SPEED and e == T.SCROLL_SPEED:
        if gamemode == 0:  # osu!standard calls scroll speed slider velocity
            return "Sliders", _SLIDER_VELOCITY
        return "Scroll Speeds", _SCROLL_SPEED
    if e == T.CONTROL:
        if a == T.KIAI:
            return "Kiai", _KIAI_START if c.event.value == 1 else _KIAI_END
        return "Timing", Message("maimod.end_of_beatmap", "Expected end of beatmap.")
    return EXPLANATIONS.get((a, e), FALLBACK)


# --- timestamps ---------------------------------------------------------------------------------------------


def attach_objects(cands: Sequence[Candidate], beatmap: Beatmap) -> None:
    """Point hit-object candidates at the last object starting no later than 1 ms after them (the
    first object when they come before it), with that object's combo numbers (``time|column`` in
    mania, as osu!mania's editor links write them). Other candidates keep their own time."""
    objects = beatmap.hit_objects
    if not objects:
        return
    starts = [int(o.time + 1e-5) for o in objects]
    combos = beatmap.combo_info()
    for c in cands:
        if c.group is None or c.group.type not in HIT_OBJECT_TYPES:
            continue
        j = next((i - 1 for i in range(1, len(objects)) if objects[i].time - 1 > c.time), len(objects) - 1)
        same = [k for k in range(len(objects)) if starts[k] == starts[j]]
        if beatmap.mode == 3:
            c.combo_numbers = [f"{starts[k]}|{beatmap.mania_column(objects[k])}" for k in same]
        else:
            c.combo_numbers = [combos[k].number for k in same]
        c.timestamp_time = starts[j]


# --- suggestions ---------------------------------------------------------------------------------------------


def suggestions(
    scored: Sequence[ScoredContext],
    beatmap: Beatmap,
    flags: DataFlags,
    tokenizer: Tokenizer,
    *,
    min_surprisal: float = MIN_SURPRISAL,
) -> list[Suggestion]:
    """MaiMod's suggestions for scored contexts, in time order."""
    kept = [c for c in candidates(scored, flags.types_first, min_surprisal) if not is_false_alarm(c)]
    attach_objects(kept, beatmap)
    text = EventText(flags, tokenizer)
    out = []
    for c in kept:
        category, template = explanation(c, add_timing=flags.add_timing, gamemode=beatmap.mode)
        actual, expected = text(c.event), text(c.expected)
        message = template.fill(expected_value=expected, real_value=actual, expected_type=type_name(c.expected.type),
                                real_type=type_name(c.event.type), group=c.group_label,
                                previous_group=c.previous_group_label)
        at = c.timestamp_time if c.timestamp_time is not None else c.time
        out.append(Suggestion(
            source=Source.AI,
            category=category,
            severity=severity_of(c.surprisal),
            message=message,
            time_ms=float(c.time),
            timestamp=editor_timestamp(at, c.combo_numbers),
            expected=expected,
            actual=actual,
            surprisal=c.surprisal,
            check=c.event.type.value,
            details={
                "group": c.group_label,
                "previous_group": c.previous_group_label,
                "context": c.context.value,
                "index": c.index,
                "event": str(c.event),
                "expected_event": str(c.expected),
                "importance": c.surprisal / DISPLAY_SCALE,
            },
        ))
    return out
