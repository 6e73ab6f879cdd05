"""The token vocabulary: events, context markers and conditioning values as integer ids.

A checkpoint's ``tokenizer.json`` fixes the vocabulary. Ids 0/1/2 are PAD/SOS/EOS, then one SOS/EOS pair
per context type, then the output event ranges (what the decoder predicts) and finally the input-only
conditioning ranges (what a prompt may contain but the model never predicts). Every range is contiguous.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .checked_json import DAMAGED, Fields, check_int, not_a_list, read_json
from .errors import ModelError
from .messages import Message

PAD_ID, SOS_ID, EOS_ID = 0, 1, 2
# The most ids a checkpoint's vocabulary may have. Published vocabularies have a few thousand event ids plus one id
# per known mapper (tens of thousands at most); a larger one is a damaged tokenizer.json, refused before the id
# tables are allocated.
VOCAB_LIMIT = 1 << 18


class EventType(str, Enum):
    """Kinds of events. The string values are the names used in checkpoints' tokenizer.json."""

    TIME_SHIFT = "t"
    SNAPPING = "snap"
    DISTANCE = "dist"
    NEW_COMBO = "new_combo"
    HITSOUND = "hitsound"
    VOLUME = "volume"
    CIRCLE = "circle"
    SPINNER = "spinner"
    SPINNER_END = "spinner_end"
    SLIDER_HEAD = "slider_head"
    BEZIER_ANCHOR = "bezier_anchor"
    PERFECT_ANCHOR = "perfect_anchor"
    CATMULL_ANCHOR = "catmull_anchor"
    RED_ANCHOR = "red_anchor"
    LAST_ANCHOR = "last_anchor"
    SLIDER_END = "slider_end"
    BEAT = "beat"
    MEASURE = "measure"
    TIMING_POINT = "timing_point"
    GAMEMODE = "gamemode"
    STYLE = "style"
    DIFFICULTY = "difficulty"
    MAPPER = "mapper"
    CS = "cs"
    YEAR = "year"
    HITSOUNDED = "hitsounded"
    SONG_LENGTH = "song_length"
    SONG_POSITION = "song_position"
    GLOBAL_SV = "global_sv"
    MANIA_KEYCOUNT = "keycount"
    HOLD_NOTE_RATIO = "hold_note_ratio"
    SCROLL_SPEED_RATIO = "scroll_speed_ratio"
    DESCRIPTOR = "descriptor"
    POS_X = "pos_x"
    POS_Y = "pos_y"
    POS = "pos"
    KIAI = "kiai"
    MANIA_COLUMN = "column"
    HOLD_NOTE = "hold_note"
    HOLD_NOTE_END = "hold_note_end"
    SCROLL_SPEED_CHANGE = "scroll_speed_change"
    SCROLL_SPEED = "scroll_speed"
    DRUMROLL = "drumroll"
    DRUMROLL_END = "drumroll_end"
    DENDEN = "denden"
    DENDEN_END = "denden_end"
    CONTROL = "control"
    SLIDER_SUSTAIN = "slider_sustain"
    SLIDER_REPEAT_SUSTAIN = "slider_repeat_sustain"
    SPINNER_SUSTAIN = "spinner_sustain"
    HOLD_NOTE_SUSTAIN = "hold_note_sustain"
    DRUMROLL_SUSTAIN = "drumroll_sustain"
    DENDEN_SUSTAIN = "denden_sustain"
    POS_REFINE = "pos_refine"


class ContextType(str, Enum):
    """Kinds of token sequences a prompt can carry (each wrapped in its own SOS/EOS pair)."""

    NONE = "none"
    TIMING = "timing"
    NO_HS = "no_hs"
    GD = "gd"
    MAP = "map"
    KIAI = "kiai"
    SV = "sv"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    value: int = 0

    def __str__(self) -> str:
        return f"{self.type.value}{self.value}"

    __repr__ = __str__


@dataclass(frozen=True, slots=True)
class EventRange:
    type: EventType
    min_value: int
    max_value: int

    @property
    def size(self) -> int:
        return self.max_value - self.min_value + 1


class Tokenizer:
    """Vocabulary of one checkpoint, loaded from its ``tokenizer.json``.

    Beside the id layout it carries the conditioning tables the checkpoint was trained with
    (mapper ids, descriptor names, difficulty/CS class counts).
    """

    pad_id = PAD_ID
    sos_id = SOS_ID
    eos_id = EOS_ID

    def __init__(
        self,
        *,
        offset: int,
        context_sos: Mapping[ContextType, int],
        context_eos: Mapping[ContextType, int],
        event_ranges: Iterable[EventRange],
        input_event_ranges: Iterable[EventRange],
        num_classes: int = 0,
        num_diff_classes: int = 0,
        max_difficulty: float = 0,
        num_cs_classes: int = 0,
        beatmap_idx: Mapping[int, int] | None = None,
        beatmap_mapper: Mapping[int, int] | None = None,
        mapper_idx: Mapping[int, int] | None = None,
        num_mapper_classes: int = 0,
        beatmap_descriptors: Mapping[int, list[int]] | None = None,
        descriptor_idx: Mapping[str, int] | None = None,
        num_descriptor_classes: int = 0,
    ):
        self.offset = offset
        self.context_sos = dict(context_sos)
        self.context_eos = dict(context_eos)
        self.event_ranges = list(event_ranges)
        self.input_event_ranges = list(input_event_ranges)
        self.num_classes = num_classes
        self.num_diff_classes = num_diff_classes
        self.max_difficulty = max_difficulty
        self.num_cs_classes = num_cs_classes
        self.beatmap_idx = dict(beatmap_idx or {})
        self.beatmap_mapper = dict(beatmap_mapper or {})
        self.mapper_idx = dict(mapper_idx or {})
        self.num_mapper_classes = num_mapper_classes
        self.beatmap_descriptors = {k: list(v) for k, v in (beatmap_descriptors or {}).items()}
        self.descriptor_idx = dict(descriptor_idx or {})
        self.num_descriptor_classes = num_descriptor_classes

        self.range: dict[EventType, EventRange] = {}
        self.start: dict[EventType, int] = {}
        self.end: dict[EventType, int] = {}  # exclusive
        next_id = offset
        for er in self.event_ranges + self.input_event_ranges:
            self.range[er.type] = er
            self.start[er.type] = next_id
            next_id += er.size
            self.end[er.type] = next_id
        self.vocab_size_out = offset + sum(er.size for er in self.event_ranges)
        self.vocab_size_in = next_id

        # id -> (range index, value) lookup tables make decoding a list index.
        ranges = self.event_ranges + self.input_event_ranges
        self._id_type = [None] * self.vocab_size_in
        self._id_value = np.zeros(self.vocab_size_in, dtype=np.int64)
        for er in ranges:
            s = self.start[er.type]
            self._id_type[s: s + er.size] = [er.type] * er.size
            self._id_value[s: s + er.size] = np.arange(er.min_value, er.max_value + 1)

    # --- loading and saving -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], where: str = "tokenizer.json") -> "Tokenizer":
        """A tokenizer from its saved state; every field is checked first (``where`` names the file in errors)."""
        return cls(**_checked_state(state, where))

    @classmethod
    def from_file(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        return cls.from_dict(read_json(path), str(path))

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint format (what upstream's Tokenizer.save_pretrained writes)."""

        def ranges(items):
            return [{"type": r.type.value, "min_value": r.min_value, "max_value": r.max_value} for r in items]

        all_ranges = self.event_ranges + self.input_event_ranges
        return {
            "offset": self.offset,
            "context_sos": {k.value: v for k, v in self.context_sos.items()},
            "context_eos": {k.value: v for k, v in self.context_eos.items()},
            "event_ranges": ranges(self.event_ranges),
            "input_event_ranges": ranges(self.input_event_ranges),
            "num_classes": self.num_classes,
            "num_diff_classes": self.num_diff_classes,
            "max_difficulty": self.max_difficulty,
            "event_range": {r.type.value: ranges([r])[0] for r in all_ranges},
            "event_start": {r.type.value: self.start[r.type] for r in all_ranges},
            "event_end": {r.type.value: self.end[r.type] for r in all_ranges},
            "vocab_size_out": self.vocab_size_out,
            "vocab_size_in": self.vocab_size_in,
            "beatmap_idx": {str(k): v for k, v in self.beatmap_idx.items()},
            "beatmap_mapper": {str(k): v for k, v in self.beatmap_mapper.items()},
            "mapper_idx": {str(k): v for k, v in self.mapper_idx.items()},
            "num_mapper_classes": self.num_mapper_classes,
            "beatmap_descriptors": {str(k): v for k, v in self.beatmap_descriptors.items()},
            "descriptor_idx": self.descriptor_idx,
            "num_descriptor_classes": self.num_descriptor_classes,
            "num_cs_classes": self.num_cs_classes,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    # --- ids <-> events -----------------------------------------------------------------------

    def has(self, event_type: EventType) -> bool:
        return event_type in self.range

    def encode(self, event: Event) -> int:
        er = self.range.get(event.type)
        if er is None:
            raise ValueError(Message("error.tokenizer.no_tokens", "this checkpoint has no {type} tokens",
                                     type=repr(event.type.value)))
        if not er.min_value <= event.value <= er.max_value:
            raise ValueError(Message("error.tokenizer.value_outside", "{type} value {value} outside [{low}, {high}]",
                                     type=event.type.value, value=event.value, low=er.min_value, high=er.max_value))
        return self.start[event.type] + event.value - er.min_value

    def encode_clipped(self, event_type: EventType, value: int) -> int:
        """Encode after clipping ``value`` into the type's range."""
        er = self.range[event_type]
        return self.start[event_type] + int(min(max(value, er.min_value), er.max_value)) - er.min_value

    def decode(self, token_id: int) -> Event:
        """The event of an id; raises ValueError for PAD/SOS/EOS/context markers and ids out of range."""
        if not 0 <= token_id < self.vocab_size_in or self._id_type[token_id] is None:
            raise ValueError(f"id {token_id} is not an event")
        return Event(self._id_type[token_id], int(self._id_value[token_id]))

    def is_event(self, token_id: int) -> bool:
        return 0 <= token_id < self.vocab_size_in and self._id_type[token_id] is not None

    def id_range(self, event_type: EventType) -> range:
        """Ids of one event type as a range (empty when the checkpoint lacks the type)."""
        if event_type not in self.range:
            return range(0)
        return range(self.start[event_type], self.end[event_type])

    def describe(self, token_id: int) -> str:
        """Human-readable name of any id, for logs and goldens."""
        if token_id == PAD_ID:
            return "PAD"
        if token_id == SOS_ID:
            return "SOS"
        if token_id == EOS_ID:
            return "EOS"
        for ct, i in self.context_sos.items():
            if i == token_id:
                return f"SOS_{ct.value}"
        for ct, i in self.context_eos.items():
            if i == token_id:
                return f"EOS_{ct.value}"
        return str(self.decode(token_id))

    # --- conditioning values (each range's last value means "unknown") -------------------------

    def unknown(self, event_type: EventType) -> int:
        """Id of the "unknown" value of a conditioning range (its last value)."""
        return self.start[event_type] + self.range[event_type].size - 1

    def difficulty_token(self, stars: float | None) -> int:
        if stars is None:
            return self.unknown(EventType.DIFFICULTY)
        value = int(stars * self.num_diff_classes / self.max_difficulty)
        return self.encode(Event(EventType.DIFFICULTY, int(np.clip(value, 0, self.num_diff_classes - 1))))

    def mapper_index(self, user_id: int | None) -> int:
        """Row of a mapper (osu! user id) in the checkpoint's mapper table; the last row when unknown."""
        return self.mapper_idx.get(user_id, self.num_mapper_classes) if user_id is not None else self.num_mapper_classes

    def mapper_token(self, user_id: int | None) -> int:
        return self.encode(Event(EventType.MAPPER, self.mapper_index(user_id)))

    def mapper_of_beatmap(self, beatmap_id: int | None) -> int | None:
        return self.beatmap_mapper.get(beatmap_id) if beatmap_id is not None else None

    def cs_token(self, circle_size: float | None) -> int:
        if circle_size is None:
            return self.unknown(EventType.CS)
        value = int(circle_size * (self.num_cs_classes - 1) / 10)
        return self.encode(Event(EventType.CS, int(np.clip(value, 0, self.num_cs_classes - 1))))

    def year_token(self, year: int | None) -> int:
        if year is None:
            return self.unknown(EventType.YEAR)
        return self.encode(Event(EventType.YEAR, int(year)))

    def descriptor_names(self) -> list[str]:
        """Descriptor names this checkpoint knows, in index order."""
        return [name for name, _ in sorted(self.descriptor_idx.items(), key=lambda kv: kv[1])]

    def descriptor_token(self, name: str) -> int | None:
        idx = self.descriptor_idx.get(name)
        return None if idx is None else self.encode(Event(EventType.DESCRIPTOR, idx))

    def descriptor_name(self, index: int) -> str | None:
        for name, i in self.descriptor_idx.items():
            if i == index:
                return name
        return None

    @staticmethod
    def ratio_value(ratio: float, resolution: int) -> int:
        """A ratio on ``resolution`` steps; exactly 0 (or less) is -1 and 1 (or more) is resolution + 1."""
        if ratio <= 0:
            return -1
        if ratio >= 1:
            return resolution + 1
        return int(np.clip(round(ratio * resolution), 0, resolution))

    def hold_note_ratio_token(self, ratio: float | None) -> int:
        if ratio is None:
            return self.unknown(EventType.HOLD_NOTE_RATIO)
        return self.encode(Event(EventType.HOLD_NOTE_RATIO, self.ratio_value(ratio, 10)))

    def scroll_speed_ratio_token(self, ratio: float | None) -> int:
        if ratio is None:
            return self.unknown(EventType.SCROLL_SPEED_RATIO)
        return self.encode(Event(EventType.SCROLL_SPEED_RATIO, self.ratio_value(ratio, 10)))

    def song_length_token(self, song_length_ms: float) -> int:
        return self.encode(Event(EventType.SONG_LENGTH, int(np.clip(song_length_ms // 10000, 0, 60))))

    def song_position_event(self, position_ms: float, song_length_ms: float) -> Event:
        return Event(EventType.SONG_POSITION, self.ratio_value(position_ms / song_length_ms, 100))

    def global_sv_token(self, slider_multiplier: float) -> int:
        return self.encode(Event(EventType.GLOBAL_SV, int(round(float(np.clip(slider_multiplier, 0.4, 3.6)) * 100))))


# --- checking a saved state ------------------------------------------------------------------------------------


def _checked_state(state: Any, where: str) -> dict[str, Any]:
    """Tokenizer arguments from a tokenizer.json object, each field's type, range and consistency checked before
    anything is sized by it."""
    if not isinstance(state, Mapping):
        raise ModelError(Message("error.tokenizer.no_object", "{where} holds no JSON object; it is damaged or not a "
                                 "Mapperatorinator tokenizer", where=where))
    f = Fields(state, where)
    offset = f.integer("offset", 3, 3 + 2 * len(ContextType), default=3)
    context_sos = _context_ids(f, "context_sos", offset)
    context_eos = _context_ids(f, "context_eos", offset)
    if set(context_sos) != set(context_eos):
        raise f.error("context_sos", Message("error.tokenizer.context_types", " and context_eos name different "
                                              "context types"))
    ids = list(context_sos.values()) + list(context_eos.values())
    if len(set(ids)) != len(ids):
        raise f.error("context_sos", Message("error.tokenizer.shared_marker", " and context_eos give one id to two "
                                              "markers"))
    event_ranges = _ranges(f, "event_ranges", f.items("event_ranges"))
    input_event_ranges = _ranges(f, "input_event_ranges", f.items("input_event_ranges", []))
    all_ranges = event_ranges + input_event_ranges
    repeated = [t.value for t, n in Counter(r.type for r in all_ranges).items() if n > 1]
    if repeated:
        raise f.error("event_ranges", Message("error.tokenizer.repeated_range", " list {name} more than once",
                                              name=repr(repeated[0])))
    vocab_size = offset + sum(r.size for r in all_ranges)
    if vocab_size > VOCAB_LIMIT:
        raise ModelError(Message("error.tokenizer.too_many_tokens", "{where}: the event ranges add up to {count} "
                                 "tokens, more than {limit}; {damaged}", where=where, count=vocab_size,
                                 limit=VOCAB_LIMIT,
                                 damaged=DAMAGED))
    args: dict[str, Any] = {
        "offset": offset, "context_sos": context_sos, "context_eos": context_eos, "event_ranges": event_ranges,
        "input_event_ranges": input_event_ranges,
        "max_difficulty": f.raw("max_difficulty", 0),  # kept as stored (an int in published files)
    }
    f.number("max_difficulty", 0, 1000, default=0)
    for key in ("num_classes", "num_diff_classes", "num_cs_classes", "num_mapper_classes", "num_descriptor_classes"):
        args[key] = f.integer(key, 0, VOCAB_LIMIT, default=0)
    osu_id = (-2**63, 2**63 - 1)
    args["beatmap_idx"] = _int_map(f, "beatmap_idx", osu_id, osu_id)
    args["beatmap_mapper"] = _int_map(f, "beatmap_mapper", osu_id, osu_id)
    args["mapper_idx"] = _int_map(f, "mapper_idx", osu_id, (0, args["num_mapper_classes"] - 1))
    descriptors = f.obj("descriptor_idx", {})
    _check_ints(descriptors, list(descriptors.data.items()), (0, args["num_descriptor_classes"] - 1))
    args["descriptor_idx"] = dict(descriptors.data)
    args["beatmap_descriptors"] = _int_list_map(f, "beatmap_descriptors", osu_id, (0, VOCAB_LIMIT))
    _check_conditioning_ranges(f, all_ranges, args)
    for key, expected in (("vocab_size_out", offset + sum(r.size for r in event_ranges)),
                          ("vocab_size_in", vocab_size)):
        if f.has(key) and f.integer(key, 0, VOCAB_LIMIT) != expected:
            raise f.error(key, Message("error.tokenizer.vocab_size", "={value} differs from the {expected} ids its "
                                       "event ranges give", value=state[key], expected=expected))
    return args


def _context_ids(f: Fields, key: str, offset: int) -> dict[ContextType, int]:
    table = f.obj(key, {})
    ids = {}
    for name, value in table.data.items():
        try:
            context = ContextType(name)
        except ValueError:
            raise table.error(name, Message("error.tokenizer.unknown_context", " is not a context type Mapperator "
                                                   "knows")) from None
        ids[context] = table.integer(name, 3, offset - 1)
    return ids


def _ranges(f: Fields, key: str, items: list) -> list[EventRange]:
    ranges = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise f.error(f"{key}[{i}]", Message("error.tokenizer.range_not_an_object", " is not a JSON object"))
        r = Fields(item, f.where, f"{key}[{i}].")
        try:
            event_type = EventType(r.text("type"))
        except ValueError:
            raise r.error("type", Message("error.tokenizer.unknown_event", "={value} is not an event type Mapperator "
                                          "knows", value=repr(item["type"]))) from None
        low = r.integer("min_value", -VOCAB_LIMIT, VOCAB_LIMIT)
        high = r.integer("max_value", low, low + VOCAB_LIMIT)
        ranges.append(EventRange(event_type, low, high))
    return ranges


def _check_ints(f: Fields, named_values: list[tuple[str, Any]], bounds: tuple[int, int]) -> None:
    """Every value a whole number in bounds; checked in bulk, since published id tables have 100,000s of entries."""
    values = [v for _, v in named_values]
    if all(type(v) is int for v in values) and (not values or bounds[0] <= min(values) and max(values) <= bounds[1]):
        return
    for name, value in named_values:
        check_int(value, *bounds, lambda p: f.error(name[:40], p))


def _int_keys(table: Fields, bounds: tuple[int, int]) -> list[int]:
    """The keys of a table keyed by osu! ids (JSON keys are strings)."""
    try:
        keys = [int(k) for k in table.data]
    except ValueError:  # find the culprit only on the slow path
        for k in table.data:
            try:
                int(k)
            except ValueError:
                not_whole = Message("error.tokenizer.key_not_whole", " is not a whole-number key")
                raise table.error(k[:40], not_whole) from None
        raise
    _check_ints(table, list(zip(table.data, keys)), bounds)
    return keys


def _int_map(f: Fields, key: str, key_bounds: tuple[int, int], value_bounds: tuple[int, int]) -> dict[int, int]:
    table = f.obj(key, {})
    keys = _int_keys(table, key_bounds)
    _check_ints(table, list(table.data.items()), value_bounds)
    return dict(zip(keys, table.data.values()))


def _int_list_map(f: Fields, key: str, key_bounds: tuple[int, int], value_bounds: tuple[int, int]
                  ) -> dict[int, list[int]]:
    table = f.obj(key, {})
    keys = _int_keys(table, key_bounds)
    for name, values in table.data.items():
        if not isinstance(values, list):
            raise table.error(name[:40], not_a_list(values))
    _check_ints(table, [(f"{name}[{i}]", v) for name, values in table.data.items() for i, v in enumerate(values)],
                value_bounds)
    return {k: list(values) for k, values in zip(keys, table.data.values())}


# Conditioning ranges hold the known values 0..n-1 plus "unknown" n, n the class count beside them.
_CLASS_COUNTS = {EventType.DIFFICULTY: "num_diff_classes", EventType.CS: "num_cs_classes",
                 EventType.MAPPER: "num_mapper_classes", EventType.DESCRIPTOR: "num_descriptor_classes",
                 EventType.STYLE: "num_classes"}


def _check_conditioning_ranges(f: Fields, ranges: list[EventRange], args: dict[str, Any]) -> None:
    for r in ranges:
        count_key = _CLASS_COUNTS.get(r.type)
        if count_key and (r.min_value, r.max_value) != (0, args[count_key]):
            raise f.error(count_key, Message("error.tokenizer.class_count", "={value} does not fit the {type} token "
                                               "range {low}..{high}", value=args[count_key], type=repr(r.type.value),
                                               low=r.min_value, high=r.max_value))
        if r.type == EventType.DIFFICULTY and not args["max_difficulty"] > 0:
            raise f.error("max_difficulty", Message("error.tokenizer.max_difficulty", "={value} must be positive with "
                                                   "difficulty tokens", value=args["max_difficulty"]))
