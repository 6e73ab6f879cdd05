"""Event groups: one moment of one object (a circle, an anchor, a beat, a kiai toggle, ...).

Every group's events come in this order, with the type event first instead of last when the
version has ``types_first``:

    TIME_SHIFT SNAPPING | DISTANCE | POS_X POS_Y or POS [POS_REFINE] or COLUMN | NEW_COMBO |
    SCROLL_SPEED | (HITSOUND VOLUME)* | type

All events of a group carry the group's time (int ms, truncated from the microsecond time).
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field

import numpy as np

from ..presets import DataFlags
from ..tokenizer import Event, EventType
from . import _upstream_parser as sc
from ._view import BeatmapView, Sample, TimingRecord

T = EventType
Pos = np.ndarray

DISTANCE_RANGE = (0, 640)  # fixed by upstream's tokenizer for every version with distance tokens
_MS = 1000  # microseconds per millisecond
# Songs are at most 2 hours long. Repeated events (sustains, the beat grid) stop at this time, so an
# object ending at 2147483647 ms (24 days) costs a few thousand events, not millions.
LAST_EVENT_MS = 3 * 60 * 60 * 1000


@dataclass
class Groups:
    """Appends groups to one event list, applying the version's flags."""

    flags: DataFlags
    view: BeatmapView
    flip: tuple[bool, bool]
    events: list[Event] = field(default_factory=list)
    times: list[int] = field(default_factory=list)

    def add(
        self,
        kind: EventType | Event,
        time_us: int,
        *,
        timed: bool = False,
        snap: bool = True,
        pos=None,
        last_pos: Pos | None = None,
        new_combo: bool = False,
        scroll_speed: float | None = None,
        hitsounds: tuple[tuple[int, int, Sample], ...] = (),
    ) -> Pos | None:
        """Append one group; returns the position later distances are measured from.

        ``hitsounds`` holds (reference time in us, hitsound bits, sample) per sound the group carries.
        """
        event = kind if isinstance(kind, Event) else Event(kind)
        ms = sc.event_ms(time_us)
        if self.flags.types_first:
            self._put(event, ms)
        if timed:
            self._put(Event(T.TIME_SHIFT, ms), ms)
            if snap and self.flags.add_snapping:
                self._put(Event(T.SNAPPING, snapping(self.view, time_us)), ms)
        if pos is not None:
            pos = flipped(np.array(pos), self.flip)
            if self.view.mode in (0, 2):
                last_pos = self._position(pos, last_pos, ms)
            elif self.view.mode == 3:
                self._put(Event(T.MANIA_COLUMN, mania_column(pos[0], int(self.view.circle_size))), ms)
        if new_combo and self.view.mode in (0, 2):
            self._put(Event(T.NEW_COMBO), ms)
        if scroll_speed is not None:
            self._put(Event(T.SCROLL_SPEED, int(round(clamp(scroll_speed, 0.01, 10) * 100))), ms)
        if self.flags.add_hitsounds:
            for ref_us, bits, sample in hitsounds:
                index, volume = hitsound_value(self.view.timing_point_at(ref_us + 5 * _MS), bits, sample)
                self._put(Event(T.HITSOUND, index), ms)
                self._put(Event(T.VOLUME, volume), ms)
        if not self.flags.types_first:
            self._put(event, ms)
        return last_pos

    def add_sustains(self, kind: EventType, start_us: int, end_us: int, **group) -> None:
        """Timed groups every ``sustain_interval`` ms strictly inside a long object (up to 10 ms before its end)."""
        interval = self.flags.sustain_interval
        if not interval:
            return
        time_us = start_us + interval * _MS
        end_us = min(end_us, LAST_EVENT_MS * _MS)
        while time_us < end_us - 10 * _MS:
            self.add(kind, time_us, timed=True, snap=False, **group)
            time_us += interval * _MS

    def _put(self, event: Event, ms: int) -> None:
        self.events.append(event)
        self.times.append(ms)

    def _position(self, pos: Pos, last_pos: Pos, ms: int) -> Pos:
        f = self.flags
        if f.add_distances:
            distance = clamp(np.linalg.norm(pos - last_pos), *DISTANCE_RANGE)
            self._put(Event(T.DISTANCE, int(distance)), ms)
        if f.add_positions:
            for event in position_events(pos, f):
                self._put(event, ms)
        return pos


def position_events(pos, flags: DataFlags) -> list[Event]:
    """POS_X/POS_Y, or POS with an optional POS_REFINE, for a playfield position in osu! pixels."""
    precision = flags.position_precision
    x_min, x_max, y_min, y_max = flags.position_range
    p = np.asarray(pos) / precision
    x = int(clamp(p[0], x_min / precision, x_max / precision))
    y = int(clamp(p[1], y_min / precision, y_max / precision))
    if flags.position_split_axes:
        return [Event(T.POS_X, x), Event(T.POS_Y, y)]
    width = (x_max - x_min) / precision + 1
    events = [Event(T.POS, int((x - x_min / precision) + (y - y_min / precision) * width))]
    if flags.position_refinement:
        steps = precision // flags.position_refinement
        fx, fy = (clamp(v, 0, steps - 1) for v in (np.asarray(pos) % precision) // flags.position_refinement)
        events.append(Event(T.POS_REFINE, int(fx + fy * steps)))
    return events


# --- values -------------------------------------------------------------------------------------

def snapping(view: BeatmapView, time_us: int) -> int:
    """The smallest beat divisor 1..16 that puts ``time`` within 2 ms of a tick; 0 when none does."""
    tp = view.uninherited_point_at(time_us)
    if tp.beat_length == 0 or tp.beat_length != tp.beat_length:  # upstream crashes on 0 and NaN
        return 0
    beats = sc.ms_of(time_us - tp.offset_us) / tp.beat_length
    if not math.isfinite(beats):  # a subnormal beat length: no grid to snap to (upstream crashes)
        return 0
    for divisor in range(1, 17):
        if abs(beats - round(beats * divisor) / divisor) * tp.beat_length < 2:
            return divisor
    return 0


def hitsound_value(tp: TimingRecord, bits: int, sample: Sample) -> tuple[int, int]:
    """HITSOUND index and VOLUME of one sound.

    index = (whistle/finish/clap bits) / 2 + 8 * (sample set - 1) + 24 * (addition set - 1), sets 1..3.
    The sample set falls back to the timing point's (soft when that is "auto"), the addition set to
    the sample set; out-of-range sets count as normal.
    """
    normal = sample.normal_set or (tp.sample_set or 2)
    addition = sample.addition_set or normal
    volume = sample.volume or tp.volume
    normal = normal if 0 < normal < 4 else 1
    addition = addition if 0 < addition < 4 else 1
    return (bits & 14) // 2 + 8 * (normal - 1) + 24 * (addition - 1), int(clamp(volume, 0, 100))


def scroll_speed_at(view: BeatmapView, time_us: int) -> float:
    """SV multiplier in effect at ``time`` (1 for uninherited points), clipped to [0.01, 10]."""
    tp = view.timing_point_at(time_us)
    if tp.parent is None or not tp.beat_length < 0:
        return 1
    return clamp(-100 / tp.beat_length, 0.01, 10)


def mania_column(x: float, keycount: int) -> int:
    return int(clamp(x / 512 * keycount, 0, keycount - 1))


def flipped(pos: Pos, flip: tuple[bool, bool]) -> Pos:
    horizontal, vertical = flip
    if horizontal or vertical:
        pos = pos.copy()
        if horizontal:
            pos[0] = 512 - pos[0]
        if vertical:
            pos[1] = 384 - pos[1]
    return pos


def clamp(x, low, high):
    """``np.clip`` for one number (``min(max(x, low), high)``, NaN passes through), without numpy's overhead."""
    x = low if x < low else x
    return high if x > high else x
