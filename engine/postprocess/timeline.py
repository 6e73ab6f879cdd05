"""The timing-point list the post-processor edits while it places objects.

Upstream keeps timing points as ``slider`` objects with ``timedelta`` offsets, edits them with a
port of Mapping Tools' ``TimingPointsChange`` and writes offsets floored to whole milliseconds.
Its results depend on those details, so this list keeps the same model:

- times are whole microseconds, rounded from milliseconds the way ``timedelta`` rounds;
- a green (inherited) line keeps a reference to the red line it was made from (``parent``), which
  decides the beat length used for its slider velocity even if red lines change later;
- a change at time *t* applies to every line within 2 ms of *t*, adds a line only when none is
  there (or when it would have an effect), and may copy sample settings, volume and kiai to every
  later line;
- the list is kept sorted by time, red lines before green ones at the same time.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable, Sequence

from ..beatmap import TimingPoint
from ..events._upstream_parser import median_beat_length as _median_beat_length

SAMPLE_SET_SOFT = 2
DEFAULT_SAMPLE_INDEX = -1  # upstream writes -1 (no custom index) on every point it makes
CHANGE_FUZZ_MS = 2.0

BEAT_LENGTH, METER, SAMPLE_SET, SAMPLE_INDEX, VOLUME, KIAI = (
    "beat_length", "meter", "sample_set", "sample_index", "volume", "kiai")
_CARRIED_FORWARD = (SAMPLE_SET, SAMPLE_INDEX, VOLUME, KIAI)


def to_us(ms: float) -> int:
    """Milliseconds to whole microseconds, rounded exactly as ``timedelta(milliseconds=ms)`` does."""
    return timedelta(milliseconds=ms) // timedelta(microseconds=1)


def to_ms(us: int) -> float:
    """The float upstream computes as ``offset.total_seconds() * 1000``."""
    return us / 1_000_000 * 1000


@dataclass(eq=False)
class TimingLine:
    """One mutable timing point; ``parent`` is ``None`` for red (uninherited) lines."""

    time_us: int
    beat_length: float
    meter: int = 4
    sample_set: int = SAMPLE_SET_SOFT
    sample_index: int = DEFAULT_SAMPLE_INDEX
    volume: float = 100
    kiai: bool = False
    parent: "TimingLine | None" = None

    @property
    def uninherited(self) -> bool:
        return self.parent is None

    @property
    def red(self) -> "TimingLine":
        """The red line this line takes its beat length from (itself for red lines)."""
        return self if self.parent is None else self.parent

    @property
    def time_ms(self) -> float:
        return to_ms(self.time_us)

    @property
    def rounded_ms(self) -> int:
        return round(to_ms(self.time_us))

    @property
    def slider_velocity(self) -> float:
        return 1.0 if self.parent is None else -100 / self.beat_length

    def copy(self) -> "TimingLine":
        return dataclasses.replace(self)

    def same_effect(self, other: "TimingLine") -> bool:
        return (self.beat_length == other.beat_length and self.meter == other.meter
                and self.sample_set == other.sample_set and self.sample_index == other.sample_index
                and self.volume == other.volume and self.uninherited == other.uninherited
                and self.kiai == other.kiai)

    @classmethod
    def from_point(cls, point: TimingPoint, parent: "TimingLine | None" = None) -> "TimingLine":
        return cls(to_us(point.time), point.beat_length, point.meter, point.sample_set, point.sample_index,
                   point.volume, point.kiai, None if point.uninherited else parent)

    def to_point(self, time: float | None = None) -> TimingPoint:
        """As a beatmap timing point, at ``time`` or at this line's time floored to whole ms (as
        upstream writes offsets)."""
        return TimingPoint(
            time=float(self.time_us // 1000) if time is None else time,
            beat_length=float(self.beat_length),
            meter=int(self.meter),
            sample_set=int(self.sample_set),
            sample_index=int(self.sample_index),
            volume=int(self.volume),
            uninherited=self.uninherited,
            effects=1 if self.kiai else 0,
        )


def usable_timing(points: Iterable[TimingPoint]) -> list[TimingPoint]:
    """``points`` without red lines osu! would reject (a beat length that is not a positive number)."""
    return [p for p in points if not p.uninherited or (math.isfinite(p.beat_length) and p.beat_length > 0)]


def lines_from_points(points: Iterable[TimingPoint]) -> list[TimingLine]:
    """Timing lines in the given order; each green line's parent is the last red line before it in
    that order, as the ``slider`` library links them when it parses a file.

    A green line before every red one gets the first red line as parent (osu! times it by that
    line). Without any red line they are read as red lines, as the slider library reads them.
    """
    points = list(points)
    first_red = next((TimingLine.from_point(p) for p in points if p.uninherited), None)
    lines, parent = [], None
    for point in points:
        if point.uninherited:
            line = first_red if parent is None and first_red is not None else TimingLine.from_point(point)
            parent = line
        else:
            line = TimingLine.from_point(point, parent or first_red)
        lines.append(line)
    return lines


class Timeline:
    """A sorted list of :class:`TimingLine` with upstream's editing rules.

    ``lines`` is kept in the given order until the first change, then sorted (stably) by time with
    red lines first, as upstream sorts after every change.
    """

    def __init__(self, lines: Iterable[TimingLine] = (), *, sort: bool = True):
        self.lines: list[TimingLine] = list(lines)
        if sort:
            self.sort()

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self):
        return iter(self.lines)

    def sort(self) -> None:
        self.lines.sort(key=lambda line: (line.time_us, not line.uninherited))

    # -- lookups -----------------------------------------------------------------------------------
    def at(self, time_us: int) -> TimingLine | None:
        """The last line at or before ``time_us``; the first line for earlier times."""
        for line in reversed(self.lines):
            if line.time_us <= time_us:
                return line
        return self.lines[0] if self.lines else None

    def red_after(self, time_us: int) -> TimingLine | None:
        """The first red line strictly after ``time_us`` (in list order)."""
        return next((line for line in self.lines if line.uninherited and line.time_us > time_us), None)

    def first_red(self) -> TimingLine | None:
        return next((line for line in self.lines if line.uninherited), None)

    # -- the one editing primitive ---------------------------------------------------------------
    def change(self, template: TimingLine, fields: Sequence[str] = (), *, uninherited: bool = False,
               all_after: bool = False, fuzz_ms: float = CHANGE_FUZZ_MS) -> None:
        """Apply ``fields`` of ``template`` at its time.

        Lines within ``fuzz_ms`` of the time get the fields (a beat length only on lines of the
        same colour as the change, a meter only on red ones). With ``uninherited`` a red line is
        added when none is there; otherwise a green line is added when there is no line at all, or
        when the beat length changes and no green line is there. A new line copies the line before
        it and is kept only if it changes something. ``all_after`` also copies sample set, index,
        volume and kiai (not beat lengths) to every later line.
        """
        fields = frozenset(fields)
        time_us = template.time_us
        before: TimingLine | None = None
        here: list[TimingLine] = []
        for line in self.lines:
            if line.time_us < time_us and (before is None or line.time_us >= before.time_us):
                before = line
            if math.isclose(line.time_us / 1e6, time_us / 1e6, abs_tol=fuzz_ms / 1000):
                here.append(line)
        if here:
            before = here[-1]
        has_red = any(line.uninherited for line in here)
        has_green = any(not line.uninherited for line in here)

        added: TimingLine | None = None
        if uninherited and not has_red:
            added = (before or template).copy()
            added.time_us, added.parent = time_us, None
            here.append(added)
        if not uninherited and (not here or (BEAT_LENGTH in fields and not has_green)):
            if before is None:
                before = self._red_line_at_or_before(time_us)
            added = before.copy()
            added.time_us = time_us
            added.parent = before.red
            if before.uninherited:
                added.beat_length = -100.0
            here.append(added)

        for line in here:
            if BEAT_LENGTH in fields and uninherited == line.uninherited:
                line.beat_length = template.beat_length
            if METER in fields and uninherited and line.uninherited:
                line.meter = template.meter
            for name in _CARRIED_FORWARD:
                if name in fields:
                    setattr(line, name, getattr(template, name))

        if added is not None and (before is None or uninherited or not added.same_effect(before)):
            self.lines.append(added)
        if all_after:
            for line in self.lines:
                if line.time_us > time_us:
                    for name in _CARRIED_FORWARD:
                        if name in fields:
                            setattr(line, name, getattr(template, name))
        self.sort()

    def _red_line_at_or_before(self, time_us: int) -> TimingLine:
        """A green line needs a red parent before it: make one (1000 ms per beat) when there is
        none, or move the first red line back by whole measures."""
        reds = [line for line in self.lines if line.uninherited]
        if not reds:
            line = TimingLine(time_us, 1000.0)
            self.lines.append(line)
            return line
        first = min(reds, key=lambda line: line.time_us)
        if first.time_us > time_us:
            measure_ms = first.beat_length * first.meter
            measures = math.ceil(to_ms(first.time_us - time_us) / measure_ms)
            first.time_us -= to_us(measures * measure_ms)
        return first

    # -- the changes the post-processor makes ------------------------------------------------------
    def set_volume(self, time_ms: float, volume: float) -> None:
        """Hit-sound volume from ``time_ms`` on (also resets the custom sample index to -1)."""
        self.change(TimingLine(to_us(time_ms), -100.0, volume=volume), (VOLUME, SAMPLE_INDEX), all_after=True)

    def set_slider_velocity(self, time_ms: float, sv: float) -> None:
        """A green line with ``sv`` at ``time_ms`` (SV 0 is ignored). The 1e-10 keeps the written
        beat length just above -100/SV, as upstream writes it."""
        if sv == 0:
            return
        self.change(TimingLine(to_us(time_ms), -100 / sv + 1e-10), (BEAT_LENGTH,), all_after=True)

    def set_kiai(self, time_ms: float, kiai: bool) -> None:
        self.change(TimingLine(to_us(time_ms), -100.0, kiai=kiai), (KIAI,), all_after=True)

    def set_normalized_scroll_speed(self, time_ms: float, speed: float, median_beat_length: float) -> None:
        """A mania scroll speed given relative to the map's main BPM: the SV at ``time_ms`` and at
        every later red line becomes ``speed * beat_length / median_beat_length``."""
        time_us = to_us(time_ms)
        red = self.at(time_us).red
        self.set_slider_velocity(time_ms, speed * red.beat_length / median_beat_length)
        for line in [line for line in self.lines if line.uninherited and line.time_us > time_us]:
            self.set_slider_velocity(to_ms(line.time_us), speed * line.beat_length / median_beat_length)

    def drop_greens_before_first_red(self) -> None:
        first = self.first_red()
        if first is not None:
            self.lines = [line for line in self.lines if line.time_us >= first.time_us]

    def points(self) -> list[TimingPoint]:
        return [line.to_point() for line in self.lines]


def median_beat_length(lines: Sequence[TimingLine], last_time_ms: float) -> float:
    """The beat length that covers most of the map up to ``last_time_ms`` (osu!stable's rule, upstream's
    arithmetic: :func:`engine.events._upstream_parser.median_beat_length`)."""
    return _median_beat_length([(line.time_us, line.beat_length, line.uninherited) for line in lines], last_time_ms)
