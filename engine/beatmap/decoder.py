"""Reading ``.osu`` text into a :class:`Beatmap`, as tolerantly as osu! itself.

Facts follow osu!lazer's ``LegacyBeatmapDecoder``/``ConvertHitObjectParser``:

- The first non-blank line should be ``osu file format vN``; without it the file is read as v14
  (corrupted or missing headers are common). A BOM, CRLF/LF/CR line ends, blank lines, leading
  ``//`` comments and trailing ``// ...`` comments (outside [Metadata]) are accepted.
- A line osu! cannot use is dropped and reported as a :class:`ParseWarning` with its line number;
  the rest of the file still loads. Only input that is not a beatmap at all (empty, binary junk
  without any section, an unreadable version header) raises :class:`BeatmapError`.
- v3/v4 files get +24 ms on every time (timing points, hit objects, breaks, preview, videos) as
  osu! applies; storyboard lines are kept verbatim and unshifted. Positions are truncated to
  integers below v128 (lazer's own format keeps fractions). [Difficulty] is clamped to osu!'s
  ranges (CS 1..18 for mania) and ApproachRate defaults to OverallDifficulty.
- Unlike osu!, hit objects and timing points stay in file order (osu! sorts them stably by time;
  the helpers do that when they need to), and values osu! would fill in (missing edge sounds,
  NaN slider velocities) stay as written. ``strict=True`` turns every warning into an error.
"""
from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import BeatmapError, OptionError
from ..messages import Message
from .beatmap import Beatmap
from .model import (CIRCLE, COMBO_SKIP_MASK, COMBO_SKIP_SHIFT, HOLD, NEW_COMBO, SLIDER, SPINNER, VIDEO_EXTENSIONS,
                    Background, Break, Colour, Colours, CurvePoint, Difficulty, EdgeSet, Editor, Events, General,
                    HitCircle, HitSample, HoldNote, Metadata, ParseWarning, Slider, Spinner, TimingPoint, Video,
                    sample_set_number)
from .numbers import MAX_COORDINATE_VALUE, parse_float, parse_int

FIRST_LAZER_VERSION = 128
LATEST_STABLE_VERSION = 14
EARLY_VERSION_TIMING_OFFSET = 24
MAX_MANIA_KEY_COUNT = 18
MAX_FILE_SIZE = 64 * 1024 * 1024
# Far above any real map (the longest ranked maps have under 20,000 objects, a few thousand timing
# lines and sliders of at most a few hundred points), low enough that absurd files fail in seconds
# instead of taking minutes and gigabytes (a 50 MB .osu holds about two million objects).
MAX_HIT_OBJECTS = 200_000
MAX_TIMING_POINTS = 200_000
MAX_SLIDER_POINTS = 10_000

_HEADER = "osu file format v"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SECTIONS = ("General", "Editor", "Metadata", "Difficulty", "Events", "TimingPoints", "Colours", "HitObjects")
_SKELETON_COMMENTS = {"//Background and Video events", "//Break Periods", "// Break Periods"}
_EVENT_TYPES = {"0": "background", "Background": "background", "1": "video", "Video": "video",
                "2": "break", "Break": "break"}
_COUNTDOWNS = {"None": 0, "Normal": 1, "HalfSpeed": 2, "DoubleSpeed": 3}


def read_beatmap(path: str | Path, *, strict: bool = False) -> Beatmap:
    """Read a ``.osu`` file. Raises :class:`BeatmapError` if it cannot be used."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_SIZE:
            raise BeatmapError(Message("beatmap.too_large", "the file is larger than {mib} MiB; not a beatmap",
                                       mib=MAX_FILE_SIZE >> 20), path)
        data = path.read_bytes()
    except OSError as e:
        raise BeatmapError(Message("beatmap.cannot_read", "cannot read the file: {reason}", reason=e.strerror or str(e)),
                           path) from e
    return parse_beatmap(data, path, strict=strict)


def read_reference_beatmap(path: str | Path, option: str = "beatmap_path") -> Beatmap:
    """The beatmap a job's ``option`` names: an OptionError unless it is an ``.osu`` path, a BeatmapError when it
    is missing or unusable."""
    path = Path(path).expanduser()
    if path.suffix.lower() != ".osu":
        raise OptionError(Message("beatmap.not_osu_option", "{option} must be an .osu file, not {name}", option=option,
                                   name=path.name))
    if not path.is_file():
        raise BeatmapError(Message("beatmap.not_found", "file not found"), path)
    return read_beatmap(path)


def parse_beatmap(text: str | bytes, path: str | Path | None = None, *, strict: bool = False) -> Beatmap:
    """Parse ``.osu`` content (text, or bytes in UTF-8/UTF-16 with or without BOM).

    ``path`` only names the source in warnings and errors. What was tolerated is listed in
    ``beatmap.warnings``; with ``strict=True`` the first such problem raises instead.
    """
    try:
        return _Decoder(path, strict).decode(text)
    except BeatmapError:
        raise
    except Exception as e:  # a bug must still not surface as a bare traceback
        raise BeatmapError(Message("beatmap.internal", "internal error while reading: {kind}: {detail}",
                                   kind=type(e).__name__, detail=str(e)), path) from e


class _Decoder:
    def __init__(self, path: str | Path | None, strict: bool):
        self.path = Path(path) if path is not None else None
        self.strict = strict
        self.warnings: list[ParseWarning] = []
        self.lineno: int | None = None
        self.general, self.editor, self.metadata = General(), Editor(), Metadata()
        self.difficulty = Difficulty()
        self.events = Events(storyboard=[])
        self.colours = Colours()
        self.timing_points: list[TimingPoint] = []
        self.hit_objects: list = []
        self.extra_sections: dict[str, list[str]] = {}
        self.has_approach_rate = False
        self.version = LATEST_STABLE_VERSION
        self.offset = 0
        self.unsorted = False
        self.key_lines: dict[str, int] = {}

    def warn(self, reason: str, line: int | None = None) -> None:
        line = self.lineno if line is None else line
        if self.strict:
            raise BeatmapError(reason, self.path, line)
        self.warnings.append(ParseWarning(line, reason))

    # -- text and header -------------------------------------------------------------------
    def _text(self, data: str | bytes) -> tuple[str, bool]:
        if isinstance(data, str):
            return (data[1:], True) if data.startswith("\ufeff") else (data, False)
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16", errors="replace").lstrip("\ufeff"), True
        bom = data.startswith(codecs.BOM_UTF8)
        data = data[3:] if bom else data
        try:
            return data.decode("utf-8"), bom
        except UnicodeDecodeError as e:
            self.warn(Message("beatmap.not_utf8", "the file is not valid UTF-8; undecodable bytes were replaced"),
                      data[:e.start].count(b"\n") + 1)
            return data.decode("utf-8", errors="replace"), bom

    def _header(self, lines: Iterable[str]) -> int | None:
        for i, line in enumerate(lines):
            text = line.strip()
            if not text:
                continue
            if not text.startswith(_HEADER):
                break
            try:
                self.version = parse_int(text.split("v")[-1])
            except ValueError:
                raise BeatmapError(Message("beatmap.bad_version", "unreadable format version in header {header}",
                                           header=repr(text[:60])), self.path, i + 1) from None
            if not (3 <= self.version <= LATEST_STABLE_VERSION or self.version >= FIRST_LAZER_VERSION):
                self.warn(Message("beatmap.unknown_version", "unknown format version {version}; read like the nearest "
                                   "known one", version=self.version), i + 1)
            self.offset = EARLY_VERSION_TIMING_OFFSET if self.version < 5 else 0
            return i
        self.warn(Message("beatmap.no_header", "no 'osu file format vN' header; read as v14"), 1)
        return None

    def decode(self, data: str | bytes) -> Beatmap:
        text, bom = self._text(data)
        if not text.strip():
            raise BeatmapError(Message("beatmap.empty", "the file is empty"), self.path)
        newline = m.group() if (m := _LINE_BREAK.search(text)) else "\r\n"
        self._check_section_sizes(text)
        header = self._header(_lines(text))
        seen_section = self._read_lines(_lines(text), header)
        if header is None and not seen_section:
            raise BeatmapError(Message("beatmap.not_a_beatmap", "not an osu! beatmap: no 'osu file format' header "
                                       "and no [Section] in it"), self.path)
        self.lineno = None
        self._finish()
        return Beatmap(general=self.general, editor=self.editor, metadata=self.metadata,
                       difficulty=self.difficulty, events=self.events, timing_points=self.timing_points,
                       colours=self.colours, hit_objects=self.hit_objects, extra_sections=self.extra_sections,
                       format_version=self.version, warnings=self.warnings, path=self.path,
                       newline=newline, bom=bom)

    def _read_lines(self, lines: Iterable[str], header: int | None) -> bool:
        handlers: dict[str, Callable[[str, str], None]] = {
            "General": self._general, "Editor": self._editor, "Metadata": self._metadata,
            "Difficulty": self._difficulty, "Events": self._event, "TimingPoints": self._timing_point,
            "Colours": self._colour, "HitObjects": self._hit_object}
        section, seen = "General", False
        for i, raw in enumerate(lines):
            self.lineno = i + 1
            if i == header or not raw.strip():
                continue
            if raw.lstrip().startswith("//"):
                if section == "Events" and raw.strip() not in _SKELETON_COMMENTS:
                    self.events.storyboard.append(raw.rstrip())
                elif section in self.extra_sections:
                    self.extra_sections[section].append(raw.rstrip())
                continue
            text = (raw if section == "Metadata" else _strip_comment(raw)).rstrip()
            if text.startswith("[") and text.endswith("]"):
                section, seen = text[1:-1], True
                if section not in handlers:
                    self.extra_sections.setdefault(section, [])
                    self.warn(Message("beatmap.unknown_section", "unknown section [{section}] kept verbatim", section=section))
                continue
            if section not in handlers:
                self.extra_sections[section].append(raw.rstrip())
                continue
            try:
                handlers[section](text, raw)
            except (ValueError, IndexError, OverflowError) as e:
                self.warn(Message("beatmap.line_ignored", "[{section}] line ignored: {reason}", section=section,
                                  reason=_reason(e)))
        return seen

    # -- key: value sections ---------------------------------------------------------------
    def _general(self, text: str, raw: str) -> None:
        key, value = _key_value(text)
        g = self.general
        if key == "AudioFilename":
            g.audio_filename = value
        elif key == "AudioLeadIn":
            g.audio_lead_in = parse_int(value)
        elif key == "PreviewTime":
            time = parse_int(value)
            g.preview_time = time if time == -1 else time + self.offset
        elif key == "Countdown":
            g.countdown = _COUNTDOWNS[value] if value in _COUNTDOWNS else parse_int(value)
        elif key == "SampleSet":
            g.sample_set = value
            if value not in ("None", "Normal", "Soft", "Drum") and not (value.isdigit() and value.isascii()):
                self.warn(f"unknown SampleSet {value!r} kept; osu! plays Normal")
        elif key == "SampleVolume":
            g.sample_volume = parse_int(value)
        elif key == "StackLeniency":
            g.stack_leniency = parse_float(value)
        elif key == "Mode":
            mode = parse_int(value)
            if not 0 <= mode <= 3:
                raise ValueError(Message("beatmap.bad_mode", "Mode {mode} is not 0-3; osu! mode is used", mode=mode))
            g.mode = mode
        elif key == "CountdownOffset":
            g.countdown_offset = parse_int(value)
        elif key in _GENERAL_FLAGS:
            setattr(g, _GENERAL_FLAGS[key], parse_int(value) == 1)
        else:
            g.extra[key] = value

    def _editor(self, text: str, raw: str) -> None:
        key, value = _key_value(text)
        e = self.editor
        if key == "Bookmarks":
            marks, bad = [], []
            for token in value.split(","):
                try:
                    marks.append(parse_int(token))
                except ValueError:
                    if token.strip():
                        bad.append(token.strip())
            e.bookmarks = marks
            if bad:
                self.warn(f"bookmarks {bad[:3]} are not integers; dropped")
        elif key == "DistanceSpacing":
            e.distance_spacing = self._clamped("DistanceSpacing", parse_float(value), 0, float("inf"))
        elif key == "BeatDivisor":
            e.beat_divisor = int(self._clamped("BeatDivisor", parse_int(value), 1, 64))
        elif key == "GridSize":
            e.grid_size = parse_int(value)
        elif key == "TimelineZoom":
            e.timeline_zoom = self._clamped("TimelineZoom", parse_float(value), 0, float("inf"))
        else:
            e.extra[key] = value

    def _metadata(self, text: str, raw: str) -> None:
        key, value = _key_value(text)
        if key in _METADATA_TEXT:
            setattr(self.metadata, _METADATA_TEXT[key], value)
        elif key == "BeatmapID":
            self.metadata.beatmap_id = parse_int(value)
        elif key == "BeatmapSetID":
            self.metadata.beatmap_set_id = parse_int(value)
        else:
            self.metadata.extra[key] = value

    def _difficulty(self, text: str, raw: str) -> None:
        key, value = _key_value(text)
        d = self.difficulty
        if key not in _DIFFICULTY:
            d.extra[key] = value
            return
        setattr(d, _DIFFICULTY[key], parse_float(value))
        self.key_lines[key] = self.lineno
        if key == "ApproachRate":
            self.has_approach_rate = True
        elif key == "OverallDifficulty" and not self.has_approach_rate:
            d.approach_rate = d.overall_difficulty

    def _colour(self, text: str, raw: str) -> None:
        key, value = _key_value(text)
        parts = value.split(",")
        if len(parts) not in (3, 4):
            raise ValueError(Message("beatmap.colour_format", "colour {key} must be R,G,B or R,G,B,A, got {value}", key=key,
                                     value=repr(value)))
        rgba = [parse_int(p, 255) for p in parts]
        if min(rgba) < 0:
            raise ValueError(Message("beatmap.colour_negative", "colour {key} has a negative component", key=key))
        self.colours.entries.append((key, Colour(*rgba)))

    # -- events and timing -----------------------------------------------------------------
    def _event(self, text: str, raw: str) -> None:
        fields = text.split(",")
        kind = None if raw[:1] in (" ", "_") else _EVENT_TYPES.get(fields[0].strip())
        if kind is None:
            self.events.storyboard.append(raw.rstrip())
        elif kind == "break":
            start = parse_float(fields[1]) + self.offset
            end = parse_float(fields[2]) + self.offset
            if end < start:
                self.warn("break ends before it starts; osu! treats it as empty")
            self.events.breaks.append(Break(start, end))
        else:
            filename = fields[2].replace("\\\\", "\\").strip().strip('"')
            x, y = (self._event_offset(fields, i) for i in (3, 4))
            if kind == "background":
                self.events.media.append(Background(filename, x, y))
            else:
                self.events.media.append(Video(filename, parse_float(fields[1]) + self.offset, x, y))

    def _event_offset(self, fields: list[str], i: int) -> int:
        if len(fields) <= i or not fields[i].strip():
            return 0
        try:
            return parse_int(fields[i])
        except ValueError:
            self.warn(f"event offset {fields[i].strip()[:20]!r} is not an integer; 0 used")
            return 0

    def _timing_point(self, text: str, raw: str) -> None:
        if len(self.timing_points) >= MAX_TIMING_POINTS:
            self._too_many(f"more than the {MAX_TIMING_POINTS} timing points allowed")
        f = text.split(",")
        time = parse_float(f[0]) + self.offset
        beat_length = parse_float(f[1], allow_nan=True)
        meter = 4
        if len(f) >= 3 and f[2][:1] != "0":
            meter = parse_int(f[2])
            if meter < 1:
                raise ValueError(Message("beatmap.meter", "meter {meter} must be positive", meter=meter))
        sample_set = parse_int(f[3]) if len(f) >= 4 else sample_set_number(self.general.sample_set)
        sample_index = parse_int(f[4]) if len(f) >= 5 else 0
        volume = parse_int(f[5]) if len(f) >= 6 else self.general.sample_volume
        if len(f) >= 7 and f[6][:1] not in ("0", "1"):
            self.warn(f"uninherited flag {f[6].strip()[:10]!r} read as 0, as osu! does")
        uninherited = f[6][0] == "1" if len(f) >= 7 else True
        effects = parse_int(f[7]) if len(f) >= 8 else 0
        if len(f) > 8:
            self.warn("timing point has more than 8 fields; the extra ones are dropped")
        if not 0 <= volume <= 100:
            self.warn(f"timing point volume {volume} clamped to 0-100")
            volume = min(max(volume, 0), 100)
        if uninherited and beat_length != beat_length:
            self.warn("uninherited timing point with NaN beat length; osu! ignores it")
        self.timing_points.append(TimingPoint(
            time=time, beat_length=beat_length, meter=meter, sample_set=sample_set, sample_index=sample_index,
            volume=volume, uninherited=uninherited, effects=effects, fields=min(len(f), 8)))

    def _check_section_sizes(self, text: str) -> None:
        """Refuse a file whose [HitObjects] or [TimingPoints] has more lines than the caps allow
        before parsing any of it (counting is fast; parsing 200,000 objects takes seconds)."""
        for name, limit, what in (("HitObjects", MAX_HIT_OBJECTS, Message("beatmap.lines_of_hit_objects",
                                                                          "{count} lines of hit objects, more than "
                                                                          "the {limit} allowed")),
                                  ("TimingPoints", MAX_TIMING_POINTS, Message("beatmap.lines_of_timing_points",
                                                                              "{count} lines of timing points, more "
                                                                              "than the {limit} allowed"))):
            count, first_line = 0, None
            for start in _section_starts(text, f"[{name}]"):
                end = text.find("\n[", start)
                count += max(text.count("\n", start, len(text) if end < 0 else end) - 1, 0)  # after the header
                first_line = first_line or text.count("\n", 0, start) + 1
            if count > limit:
                self.lineno = first_line
                self._too_many(what.fill(count=count, limit=limit))

    def _too_many(self, what: str) -> None:
        raise BeatmapError(Message("beatmap.too_many", "has {what} (real maps have under a tenth of that); not a "
                                   "usable beatmap, so reading stopped here", what=what), self.path, self.lineno)

    # -- hit objects -----------------------------------------------------------------------
    def _coordinate(self, text: str) -> float:
        value = parse_float(text, MAX_COORDINATE_VALUE)
        if self.version >= FIRST_LAZER_VERSION:
            return value
        if not value.is_integer():
            self.warn(f"coordinate {text.strip()} truncated to an integer, as osu! does")
        return int(value)

    def _hit_object(self, text: str, raw: str) -> None:
        if len(self.hit_objects) >= MAX_HIT_OBJECTS:
            self._too_many(f"more than the {MAX_HIT_OBJECTS} hit objects allowed")
        f = text.split(",")
        if len(f) < 5:
            raise ValueError(Message("beatmap.object_fields", "a hit object needs at least x,y,time,type,hitSound"))
        type_bits = parse_int(f[3])
        common = dict(x=self._coordinate(f[0]), y=self._coordinate(f[1]), time=parse_float(f[2]) + self.offset,
                      hitsound=parse_int(f[4]), new_combo=bool(type_bits & NEW_COMBO),
                      combo_skip=(type_bits & COMBO_SKIP_MASK) >> COMBO_SKIP_SHIFT)
        if type_bits & CIRCLE:
            obj, used = HitCircle(**common, hit_sample=self._sample(f, 5)), 6
        elif type_bits & SLIDER:
            obj, used = self._slider(f, common), 11
        elif type_bits & SPINNER:
            end = parse_float(f[5]) + self.offset
            obj, used = Spinner(**common, end_time=end, hit_sample=self._sample(f, 6)), 7
        elif type_bits & HOLD:
            obj, used = self._hold(f, common), 6
        else:
            raise ValueError(Message("beatmap.object_type", "unknown hit object type {type_bits}", type_bits=type_bits))
        if len(f) > used:
            self.warn(f"hit object has {len(f)} fields; the ones after field {used} are dropped")
        if self.hit_objects and obj.time < self.hit_objects[-1].time and not self.unsorted:
            self.unsorted = True
            self.warn("hit objects are not in time order; kept in file order (osu! sorts them by time)")
        self.hit_objects.append(obj)

    def _sample(self, f: list[str], i: int) -> HitSample | None:
        if len(f) <= i or not f[i]:
            return None
        parts = f[i].split(":")
        if len(parts) < 2:
            raise ValueError(Message("beatmap.hit_sample", "hit sample {sample} needs at least normalSet:additionSet",
                                     sample=repr(f[i][:30])))
        numbers = [parse_int(p) for p in parts[:4]] + [0] * (4 - min(len(parts), 4))
        return HitSample(*numbers, filename=":".join(parts[4:]))

    def _slider(self, f: list[str], common: dict) -> Slider:
        curve_type, points = self._path(f[5])
        slides = parse_int(f[6])
        if slides > 9000:
            raise ValueError(Message("beatmap.slider_repeats", "slider repeat count {slides} is way too high",
                                     slides=slides))
        if slides < 1:
            self.warn(f"slider with {slides} slides is played with 1, as osu! does")
        length = parse_float(f[7], MAX_COORDINATE_VALUE) if len(f) > 7 else None
        nodes = max(slides, 1) + 1
        edge_sounds: list[int] = []
        if len(f) > 8 and f[8]:
            for token in f[8].split("|"):
                try:
                    edge_sounds.append(parse_int(token))
                except ValueError:
                    self.warn(f"slider edge sound {token[:20]!r} read as 0, as osu! does")
                    edge_sounds.append(0)
        edge_sets: list[EdgeSet] = []
        if len(f) > 9 and f[9]:
            for n, token in enumerate(f[9].split("|")):
                try:
                    edge_sets.append(_edge_set(token))
                except (ValueError, IndexError):
                    if n < nodes:
                        raise
                    self.warn(f"unused slider edge set {token[:20]!r} dropped")
        return Slider(**common, curve_type=curve_type, curve_points=points, slides=slides, length=length,
                      edge_sounds=tuple(edge_sounds), edge_sets=tuple(edge_sets), hit_sample=self._sample(f, 10))

    def _path(self, text: str) -> tuple[str, tuple[CurvePoint, ...]]:
        tokens = text.split("|")
        if len(tokens) > MAX_SLIDER_POINTS + 1:
            raise ValueError(Message("beatmap.slider_points", "slider has {count} control points, more than the "
                                     "{limit} a slider can have here (its path would take minutes to compute)",
                                     count=len(tokens) - 1, limit=MAX_SLIDER_POINTS))
        if not tokens[0] or not tokens[0][0].isalpha():
            raise ValueError(Message("beatmap.slider_path_start", "slider path must start with a curve type letter"))
        if tokens[0][0] not in "BCLP":
            self.warn(f"unknown curve type {tokens[0][:8]!r}; osu! draws it as Catmull")
        points: list[CurvePoint] = []
        pending: str | None = None
        for token in tokens[1:]:
            if not token:
                raise ValueError(Message("beatmap.empty_control_point", "empty slider control point"))
            if token[0].isalpha():
                if pending is not None:
                    raise ValueError(Message("beatmap.two_curve_types", "two curve types in a row in slider path"))
                pending = token
                continue
            xy = token.split(":")
            points.append(CurvePoint(self._coordinate(xy[0]), self._coordinate(xy[1]), pending))
            pending = None
        if pending is not None:
            raise ValueError(Message("beatmap.path_ends_with_type", "slider path ends with a curve type"))
        return tokens[0], tuple(points)

    def _hold(self, f: list[str], common: dict) -> HoldNote:
        end, sample = common["time"], None
        if len(f) > 5 and f[5]:
            parts = f[5].split(":")
            end = parse_float(parts[0]) + self.offset
            if len(parts) > 1:
                sample = self._sample([":".join(parts[1:])], 0)
        return HoldNote(**common, end_time=end, hit_sample=sample)

    # -- end of file -----------------------------------------------------------------------
    def _clamped(self, name: str, value: float, low: float, high: float) -> float:
        clamped = min(max(value, low), high)
        if clamped != value:
            self.warn(f"{name} {value:g} is out of range; clamped to {clamped:g} as osu! does",
                      self.key_lines.get(name, self.lineno))
        return clamped

    def _finish(self) -> None:
        d = self.difficulty
        d.hp_drain_rate = self._clamped("HPDrainRate", d.hp_drain_rate, 0, 10)
        cs_low, cs_high = (1, MAX_MANIA_KEY_COUNT) if self.general.mode == 3 else (0, 10)
        d.circle_size = self._clamped("CircleSize", d.circle_size, cs_low, cs_high)
        d.overall_difficulty = self._clamped("OverallDifficulty", d.overall_difficulty, 0, 10)
        d.approach_rate = self._clamped("ApproachRate", d.approach_rate, 0, 10)
        d.slider_multiplier = self._clamped("SliderMultiplier", d.slider_multiplier, 0.4, 3.6)
        d.slider_tick_rate = self._clamped("SliderTickRate", d.slider_tick_rate, 0.5, 8)


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` (as ``_LINE_BREAK.split``), one at a time: a file that turns out too
    big is refused before all of it is split."""
    start = 0
    for m in _LINE_BREAK.finditer(text):
        yield text[start:m.start()]
        start = m.end()
    yield text[start:]


def _section_starts(text: str, header: str) -> Iterator[int]:
    """Where each line consisting of ``header`` (after indentation) starts in ``text``."""
    at = text.find(header)
    while at >= 0:
        before = text[max(at - 64, 0):at]
        line_start = max(before.rfind("\n"), before.rfind("\r"))
        if not before[line_start + 1:].strip(" \t") and (line_start >= 0 or at <= 64):
            yield at
        at = text.find(header, at + len(header))


def _strip_comment(line: str) -> str:
    index = line.find("//")
    return line[:index] if index > 0 else line


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":")
    if not sep:
        raise ValueError(Message("beatmap.key_value", "expected 'Key: value', got {text}", text=repr(text.strip()[:40])))
    return key.strip(), value.strip()


def _edge_set(token: str) -> EdgeSet:
    if not token:
        return EdgeSet()
    parts = token.split(":")
    return EdgeSet(parse_int(parts[0]), parse_int(parts[1]))


_GENERAL_FLAGS = {"LetterboxInBreaks": "letterbox_in_breaks", "SpecialStyle": "special_style",
                  "WidescreenStoryboard": "widescreen_storyboard", "EpilepsyWarning": "epilepsy_warning",
                  "SamplesMatchPlaybackRate": "samples_match_playback_rate"}
_METADATA_TEXT = {"Title": "title", "TitleUnicode": "title_unicode", "Artist": "artist",
                  "ArtistUnicode": "artist_unicode", "Creator": "creator", "Version": "version",
                  "Source": "source", "Tags": "tags"}
_DIFFICULTY = {"HPDrainRate": "hp_drain_rate", "CircleSize": "circle_size",
               "OverallDifficulty": "overall_difficulty", "ApproachRate": "approach_rate",
               "SliderMultiplier": "slider_multiplier", "SliderTickRate": "slider_tick_rate"}


def _reason(error: BaseException) -> str:
    """An exception's text, keeping its :class:`Message` (id and arguments) when it was raised with one."""
    first = error.args[0] if len(error.args) == 1 else None
    return first if isinstance(first, Message) else str(error)
