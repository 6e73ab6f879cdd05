"""Timing from beat events, and snapping event times to that timing.

:func:`generate_timing` turns TIMING_POINT / MEASURE / BEAT events (the TIMING context, or v30's
map stream) into red lines, the way upstream's post-processor does it:

1. a red line at every TIMING_POINT event (one at the first marker when there is none);
2. meters: a measure marker after *n* beats sets the meter of its red line to *n*, or starts a new
   red line at the previous measure when the red line's meter is already used;
3. beat lengths, marker by marker: the beat length that puts every marker since the red line
   within ``leniency`` ms of its beat, rounded to a whole, half, tenth, ... BPM when that still
   fits; when no beat length fits, the markers are split at the measure that fits best and a new
   red line starts there; a measure marker off the meter's grid starts a red line too.

:func:`resnap_events` moves every TIME_SHIFT followed by a SNAPPING token to the nearest tick of
that beat divisor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..beatmap import TimingPoint
from ..events import BEAT_TYPES
from ..tokenizer import Event, EventType
from .timeline import BEAT_LENGTH, METER, Timeline, TimingLine, lines_from_points, to_us, usable_timing

T = EventType

DEFAULT_LENIENCY_MS = 20
PLACEHOLDER_BEAT_LENGTH = 1000.0
BPM_PRECISIONS = (1, 2, 10, 100, 1000)  # whole BPM, halves, tenths, hundredths, thousandths
RATIO_CANDIDATES = (1, 1 / 2, 1 / 4, 1 / 8, 1 / 16)
EXACT = 0  # section beat lengths are rounded to a round BPM only where that is exact


@dataclass
class _Marker:
    time: int
    is_measure: bool
    is_redline: bool
    beats: float  # beats since the previous marker; 0 for a timing point until it is estimated


def _markers(events: Sequence[Event], types_first: bool) -> list[_Marker]:
    """Beat-type events with the time of their TIME_SHIFT (after the type when types come first,
    before it otherwise), sorted by time."""
    step = 1 if types_first else -1
    markers = []
    for i, event in enumerate(events):
        j = i + step
        # j may be -1 for the first event: upstream then looks at the last event (Python indexing)
        if event.type in BEAT_TYPES and j < len(events) and events[j].type == T.TIME_SHIFT:
            redline = event.type == T.TIMING_POINT
            markers.append(_Marker(int(events[j].value), event.type == T.MEASURE, redline, 0 if redline else 1))
    markers.sort(key=lambda m: m.time)
    return markers


def _snapped(time: float, target: float, leniency: float) -> bool:
    return abs(time - target) <= leniency


def _bpm_roundings(beat_length: float):
    bpm = 60000 / beat_length
    for precision in BPM_PRECISIONS:
        yield 60000 / (round(bpm * precision) / precision)


def beat_length_for(duration: float, beats: float, leniency: float) -> float:
    """The beat length that fits ``beats`` beats into ``duration`` ms, as a round BPM when the
    rounding keeps the last beat within ``leniency`` ms (1000 when it cannot be measured)."""
    if beats == 0 or duration == 0:
        return PLACEHOLDER_BEAT_LENGTH
    beat_length = duration / beats
    if 60000 / beat_length < 1:
        return PLACEHOLDER_BEAT_LENGTH
    for rounded in _bpm_roundings(beat_length):
        if _snapped(duration, rounded * beats, leniency):
            return rounded
    return beat_length


class _TimingBuilder:
    def __init__(self, markers: list[_Marker], leniency: float):
        self.markers = markers
        self.leniency = leniency
        self.timeline = Timeline()

    def red_at(self, time_ms: float) -> TimingLine:
        return self.timeline.at(to_us(time_ms)).red

    def add_red(self, time_ms: float, fields: Sequence[str] = (), beat_length: float = PLACEHOLDER_BEAT_LENGTH,
                meter: int = 4) -> None:
        self.timeline.change(TimingLine(to_us(time_ms), beat_length, meter), fields, uninherited=True)

    def fits(self, beat_length: float, markers: Sequence[_Marker], red: TimingLine) -> bool:
        origin = red.rounded_ms
        beats = 0
        for marker in markers:
            beats += marker.beats
            if not _snapped(marker.time, origin + beat_length * beats, self.leniency):
                return False
        return True

    def human_round(self, beat_length: float, markers: Sequence[_Marker], red: TimingLine) -> float:
        if beat_length == 0 or beat_length > 60000:
            return beat_length
        for rounded in _bpm_roundings(beat_length):
            if self.fits(rounded, markers, red):
                return rounded
        return beat_length

    # -- the three passes -------------------------------------------------------------------------
    def place_timing_points(self) -> None:
        for marker in self.markers:
            if marker.is_redline:
                self.add_red(marker.time)
        if not len(self.timeline):
            self.timeline.lines.append(TimingLine(to_us(self.markers[0].time), PLACEHOLDER_BEAT_LENGTH))

    def fit_meters(self) -> None:
        counter = 0
        last_measure = self.markers[0].time
        for marker in self.markers:
            if marker.is_redline:
                counter, last_measure = 0, marker.time
                continue
            red = self.red_at(marker.time - 1)
            red_ms = red.rounded_ms
            if red_ms == marker.time:
                continue
            counter += 1
            if not marker.is_measure:
                continue
            if red.meter != counter:
                if last_measure <= red_ms:
                    red.meter = counter
                else:
                    self.add_red(last_measure, (METER,), meter=counter)
            counter, last_measure = 0, marker.time

    @staticmethod
    def section_beat_length(markers: Sequence[_Marker], origin: float) -> float:
        return beat_length_for(markers[-1].time - origin, sum(m.beats for m in markers), EXACT)

    def split_loss(self, markers: Sequence[_Marker], origin: float) -> float:
        beat_length = self.section_beat_length(markers, origin)
        loss, beats = 0, 0
        for marker in markers:
            beats += marker.beats
            loss += (marker.time - (origin + beats * beat_length)) ** 2
        return loss / len(markers)

    def fit_beat_lengths(self) -> None:
        counter = 0
        last_beat_length = PLACEHOLDER_BEAT_LENGTH
        for marker in self.markers:
            red = self.red_at(marker.time - 1)
            red_ms = red.rounded_ms
            if red_ms == marker.time:
                counter = 0
                continue
            # markers since the red line; never the one on top of it
            section = [m for m in self.markers if red_ms + 1 <= m.time < marker.time] + [marker]
            if marker.beats == 0:
                # a timing point right after another: give the previous one a beat length by
                # guessing how many beats lie between them
                if len(section) != 1:
                    counter = 0
                    continue
                estimate = (marker.time - red_ms) / last_beat_length
                marker.beats = min((round(estimate),) + RATIO_CANDIDATES, key=lambda x: abs(x - estimate))

            beat_length = self.section_beat_length(section, red_ms)
            if self.fits(beat_length, section, red):
                beat_length = self.human_round(beat_length, section, red)
                red.beat_length = beat_length
            elif len(section) > 1:
                beat_length, counter = self.split(section, red, red_ms, marker)

            last_beat_length = beat_length
            counter += 1
            red = self.red_at(marker.time)
            if red.rounded_ms == marker.time:
                counter = 0
            if marker.is_measure:
                if counter % red.meter != 0:  # the measure is off the meter's grid
                    self.add_red(marker.time, (BEAT_LENGTH,), red.beat_length, red.meter)
                counter = 0

    def split(self, section: list[_Marker], red: TimingLine, red_ms: int, marker: _Marker) -> tuple[float, int]:
        """Start a red line at the marker (a measure, or the last one) that best splits
        ``section`` into two evenly timed parts. Returns the new beat length and beat counter."""
        best_loss, best = float("inf"), len(section) - 1
        for i in range(1, len(section)):
            split = section[i - 1]
            if not split.is_measure and i != len(section) - 1:
                continue
            loss = self.split_loss(section[:i], red_ms) + self.split_loss(section[i:], split.time)
            if loss < best_loss:
                best_loss, best = loss, i
        if best < len(section) - 1:  # the current red line gets shorter: refit it
            head = section[:best]
            red.beat_length = self.human_round(self.section_beat_length(head, red_ms), head, red)
        start = section[best - 1].time
        beat_length = beat_length_for(marker.time - start, sum(m.beats for m in section[best:]), self.leniency)
        self.add_red(start, (BEAT_LENGTH,), beat_length)
        # the beat counter as it was one beat before the marker, counted from the new red line
        counter = 0
        for i in range(len(section) - 2, best - 1, -1):
            if section[i].is_measure:
                break
            counter += 1
        return beat_length, counter


def generate_timing(events: Sequence[Event], *, types_first: bool = False,
                    leniency: float = DEFAULT_LENIENCY_MS) -> list[TimingPoint]:
    """Red timing points rebuilt from the beat-type events of ``events`` (TIME_SHIFT values in
    absolute ms). Empty when there is no beat event with a time."""
    return [line.to_point(line.time_us / 1000) for line in _generate_lines(events, types_first, leniency)]


def _generate_lines(events: Sequence[Event], types_first: bool, leniency: float) -> list[TimingLine]:
    markers = _markers(events, types_first)
    if not markers:
        return []
    builder = _TimingBuilder(markers, leniency)
    builder.place_timing_points()
    builder.fit_meters()
    builder.fit_beat_lengths()
    return builder.timeline.lines


# ------------------------------------------------------------------------------------------ resnap
# Ticks of other divisors that a divisor must not snap to: a 1/4 snap never lands on a 1/2 tick.
# Divisors not listed only exclude whole beats; 1/1 excludes nothing.
_EXCLUDED_DIVISORS = {1: (), 4: (2,), 6: (2, 3), 8: (4,), 9: (3,), 10: (2, 5), 12: (4, 6), 14: (2, 7),
                      15: (3, 5), 16: (8,)}
_TICK_MARGIN_MS = 20


def _ticks_around(time: int, line: TimingLine, divisor: int) -> set[int]:
    """The two ticks before and after ``time`` on ``line``'s grid of 1/``divisor`` beats."""
    step = line.beat_length / divisor
    base = time - (time - line.rounded_ms) % step
    return {int(base - step), int(base), int(base + step), int(base + 2 * step)}


def _divisor_ticks(time: int, line: TimingLine, divisor: int) -> set[int]:
    ticks = _ticks_around(time, line, divisor)
    for other in _EXCLUDED_DIVISORS.get(divisor, (1,)):
        ticks -= _ticks_around(time, line, other)
    return ticks


def resnap(time: int, timing: Sequence[TimingPoint], divisor: int) -> int:
    """``time`` (ms) moved to the nearest tick of 1/``divisor`` beats of ``timing``."""
    return _resnap(time, Timeline(lines_from_points(usable_timing(timing))), divisor)


def _resnap(time: int, timeline: Timeline, divisor: int) -> int:
    """``time`` moved to the nearest tick of 1/``divisor`` beats, looking at the red line in effect
    and the lines just before and after it (ticks up to 20 ms past a section's ends count)."""
    if not len(timeline):
        return time
    current = timeline.at(to_us(time)).red
    start = current.rounded_ms
    previous = timeline.at(to_us(start - 1))
    following = timeline.red_after(to_us(time))
    end = following.rounded_ms if following is not None else float("inf")

    ticks = {t for t in _divisor_ticks(time, current, divisor)
             if start - _TICK_MARGIN_MS <= t <= end + _TICK_MARGIN_MS}
    ticks.update({t for t in _divisor_ticks(time, previous, divisor) if t <= start + _TICK_MARGIN_MS})
    if following is not None:
        ticks.update({t for t in _divisor_ticks(time, following, divisor) if t >= end - _TICK_MARGIN_MS})
    if not ticks:
        return time
    # ties go to the first tick in set order, as upstream's min() over a set does
    return min(ticks, key=lambda t: abs(t - time))


def resnap_events(events: Sequence[Event], timing: Sequence[TimingPoint]) -> list[Event]:
    """``events`` with every TIME_SHIFT that is followed by a non-zero SNAPPING token snapped to
    that divisor of ``timing``'s beats (as int ms)."""
    timeline = Timeline(lines_from_points(usable_timing(timing)))
    out = []
    for i, event in enumerate(events):
        if event.type == T.TIME_SHIFT and i + 1 < len(events) and events[i + 1].type == T.SNAPPING \
                and events[i + 1].value > 0:
            event = Event(T.TIME_SHIFT, int(_resnap(event.value, timeline, events[i + 1].value)))
        out.append(event)
    return out
