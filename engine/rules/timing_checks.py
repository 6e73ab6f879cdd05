"""Timing checks: unsnapped objects, objects before the timing, and misused timing lines.

Definitions follow Mapset Verifier (MV) where it has the check:

- ``unsnapped`` (MV "Unsnapped hit objects"): every object edge (circle, slider head, each
  reverse, tail; spinner and hold note start and end) measured with :mod:`.snapping` against the
  map's own red line in effect; |unsnap| >= 2 ms is a problem, >= 1 ms minor. A slider tail up to
  2 ms before a following red line whose downbeats do not continue the current one's is exempt
  (its length is measured in the old BPM but the editor snapped it to the new grid).
- ``first-line`` (MV "First line toggles kiai or is inherited"): no timing at all, no red line, or
  the first line being inherited or kiai are problems.
- ``before-first-line``: objects starting 2 ms or more before the first red line are a problem
  (osu! times them by extending that line backwards, and the editor shows them as untimed);
  objects under 2 ms early are editor rounding, which ``unsnapped`` reports.
- ``concurrent-lines`` (MV "Concurrent or conflicting timing lines"): two red or two green lines
  at the same time are a problem; a red and a green line at the same time whose kiai, volume,
  sample set or custom index differ are minor.
- ``unused-lines`` (MV "Unused timing lines"): a red line on the previous red line's downbeat
  grid (same BPM and meter, within 1 ms of a whole bar) is a problem, or a warning when it only
  omits/corrects a bar line or resets nightcore cymbals (every 4 bars); a green line that
  changes nothing used (kiai; samples while an object is played; SV while a slider starts, or
  anywhere in taiko/mania) is minor.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

from ..beatmap import HoldNote, Slider, Spinner, TimingPoint
from ..beatmap.timing_lookup import (MAX_BEAT_LENGTH, MAX_SLIDER_VELOCITY, MIN_BEAT_LENGTH, MIN_SLIDER_VELOCITY,
                                      clamp, raw_speed_multiplier)
from ..messages import Message, joined
from ..suggestions import Severity, Suggestion, editor_timestamp
from .context import MapContext, object_name
from .registry import rule
from .snapping import nearest_snap, unsnap

TIMING = "Timing"
PROBLEM_UNSNAP_MS = 2.0
MINOR_UNSNAP_MS = 1.0
TAIL_REDLINE_LENIENCY_MS = 2.0
DOWNBEAT_LENIENCY_MS = 1.0


def _ms(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _same_time(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


def beat_length(line: TimingPoint) -> float:
    return clamp(line.beat_length, MIN_BEAT_LENGTH, MAX_BEAT_LENGTH)


def usable_lines(ctx: MapContext) -> list[TimingPoint]:
    """Timing lines sorted by time (stably); red lines with a NaN beat length are dropped as osu! does."""
    lines = [p for p in ctx.beatmap.timing_points if not (p.uninherited and math.isnan(p.beat_length))]
    return sorted(lines, key=lambda p: p.time)


# ----------------------------------------------------------------------------------- unsnaps
def _edges(ctx: MapContext, obj) -> Iterator[tuple[float, str]]:
    name = object_name(obj, ctx.mode)
    if isinstance(obj, Slider):
        info = ctx.slider_info(obj)
        yield obj.time, Message("object.slider_head", "Slider head")
        for span in range(1, info.span_count + 1):
            yield obj.time + span * info.span_duration, Message("object.slider_tail", "Slider tail") \
                if span == info.span_count else Message("object.slider_reverse", "Slider reverse")
    elif isinstance(obj, (Spinner, HoldNote)):
        yield obj.time, Message("object.head", "{name} head", name=name)
        yield obj.end_time, Message("object.tail", "{name} tail", name=name)
    else:
        yield obj.time, name


def downbeats_align(line: TimingPoint, earlier: TimingPoint, bars: int = 1) -> bool:
    """Same BPM and meter, and ``line`` within 1 ms of a multiple of ``bars`` bars of ``earlier``."""
    beat = beat_length(earlier)
    if not math.isclose(beat_length(line), beat, rel_tol=1e-12) or line.meter != earlier.meter:
        return False
    return _bar_offset(line, earlier, bars) <= DOWNBEAT_LENIENCY_MS


def _bar_offset(line: TimingPoint, earlier: TimingPoint, bars: int = 1) -> float:
    """Milliseconds from ``line`` to the nearest bar start (every ``bars`` bars) of ``earlier``."""
    beat = beat_length(earlier)
    period = max(earlier.meter, 1) * bars
    beats = math.fmod((line.time - earlier.time) / beat, period)
    return min(abs(beats), abs(beats - period), abs(beats + period)) * beat


def _tail_before_new_grid(points: list[TimingPoint], times: list[float], time: float) -> bool:
    i = bisect.bisect_right(times, time)
    if i == 0 or i >= len(points):
        return False
    current, following = points[i - 1], points[i]
    return following.time - time <= TAIL_REDLINE_LENIENCY_MS and not downbeats_align(following, current)


@rule("unsnapped", TIMING, "Unsnapped hit objects.")
def unsnapped(ctx: MapContext) -> Iterator[Suggestion]:
    reds = ctx.control_points.uninherited_points
    if not reds:
        return
    red_times = [p.time for p in reds]
    for obj in ctx.objects:
        for time, part in _edges(ctx, obj):
            if not math.isfinite(time):
                continue
            line = reds[max(bisect.bisect_right(red_times, time) - 1, 0)]
            size = abs(unsnap(time, line.time, beat_length(line)))
            if size < MINOR_UNSNAP_MS:
                continue
            if part == "Slider tail" and _tail_before_new_grid(reds, red_times, time):
                continue
            snap = nearest_snap(time, line.time, beat_length(line))
            severity = Severity.PROBLEM if size >= PROBLEM_UNSNAP_MS else Severity.MINOR
            yield ctx.suggest(
                "unsnapped", TIMING, severity,
                Message("rule.unsnapped", "{part} unsnapped by {ms} ms.", part=part, ms=_ms(snap.unsnap)), time,
                objects=(obj,) if time == obj.time else (),
                expected=f"{editor_timestamp(snap.tick).removesuffix(' - ')} (1/{snap.divisor})",
                actual=_ms(time), unsnap_ms=snap.unsnap, part=part)


# ------------------------------------------------------------------------- first line, before
@rule("first-line", TIMING, "First line toggles kiai or is inherited.")
def first_line(ctx: MapContext) -> Iterator[Suggestion]:
    lines = usable_lines(ctx)
    if not lines:
        yield ctx.suggest("first-line", TIMING, Severity.PROBLEM,
                          Message("rule.first_line.none", "There are no timing lines."))
        return
    if not any(p.uninherited for p in lines):
        yield ctx.suggest("first-line", TIMING, Severity.PROBLEM,
                          Message("rule.first_line.no_red",
                                  "There is no uninherited (red) line, so the map has no BPM or offset."))
        return
    first = lines[0]
    if not first.uninherited:
        yield ctx.suggest("first-line", TIMING, Severity.PROBLEM,
                          Message("rule.first_line.inherited", "First timing line is inherited."), first.time)
    elif first.kiai:
        yield ctx.suggest("first-line", TIMING, Severity.PROBLEM,
                          Message("rule.first_line.kiai", "First timing line toggles kiai."), first.time)


@rule("before-first-line", TIMING, "Hit objects before the first uninherited line.")
def before_first_line(ctx: MapContext) -> Iterator[Suggestion]:
    reds = ctx.control_points.uninherited_points
    if not reds:
        return
    start = reds[0].time
    early = [o for o in ctx.objects if start - o.time >= PROBLEM_UNSNAP_MS]
    if early:
        at = editor_timestamp(start).removesuffix(" - ")
        if len(early) > 1:
            message = Message("rule.before_first_line.many", "{count} objects start before the first uninherited "
                              "line at {time}; move the line back or the objects after it.", count=len(early), time=at)
        else:
            message = Message("rule.before_first_line.one", "{name} starts before the first uninherited line at "
                              "{time}; move the line back or the objects after it.",
                              name=object_name(early[0], ctx.mode), time=at)
        yield ctx.suggest(
            "before-first-line", TIMING, Severity.PROBLEM, message,
            early[0].time, objects=tuple(early[:1]), expected=f"at or after {_ms(start)} ms",
            actual=_ms(early[0].time), objects_before=len(early))


# -------------------------------------------------------------------------- concurrent lines
def _settings(line: TimingPoint) -> dict[str, str]:
    return {"kiai": Message("rule.setting.kiai", "kiai") if line.kiai else Message("rule.setting.no_kiai", "no kiai"),
            "volume": Message("rule.setting.volume", "{volume}% volume", volume=line.volume),
            "sample set": Message("rule.setting.sample_set", "sample set {set}", set=line.sample_set),
            "custom index": Message("rule.setting.custom", "custom {index}", index=line.sample_index)}


def _groups(lines: list[TimingPoint]) -> Iterator[list[TimingPoint]]:
    group: list[TimingPoint] = []
    for line in lines:
        if group and not _same_time(line.time, group[0].time):
            yield group
            group = []
        group.append(line)
    if group:
        yield group


@rule("concurrent-lines", TIMING, "Concurrent or conflicting timing lines.")
def concurrent_lines(ctx: MapContext) -> Iterator[Suggestion]:
    for group in _groups(usable_lines(ctx)):
        reds = [p for p in group if p.uninherited]
        greens = [p for p in group if not p.uninherited]
        time = group[0].time
        if len(reds) > 1:
            yield ctx.suggest("concurrent-lines", TIMING, Severity.PROBLEM,
                              Message("rule.concurrent.red", "{count} concurrent uninherited lines; keep one.",
                                      count=len(reds)), time, lines=len(reds))
        if len(greens) > 1:
            yield ctx.suggest("concurrent-lines", TIMING, Severity.PROBLEM,
                              Message("rule.concurrent.green", "{count} concurrent inherited lines; keep one.",
                                      count=len(greens)), time, lines=len(greens))
        if reds and greens:
            red, green = _settings(reds[0]), _settings(greens[-1])
            differ = [k for k in red if red[k] != green[k]]
            if differ:
                yield ctx.suggest(
                    "concurrent-lines", TIMING, Severity.MINOR,
                    Message("rule.concurrent.conflict", "Conflicting line settings. Green: {green}. Red: {red}. "
                            "osu!stable uses the line written later, osu!lazer the green one.",
                            green=joined([green[k] for k in differ]), red=joined([red[k] for k in differ])), time,
                    expected=", ".join(green[k] for k in differ), actual=", ".join(red[k] for k in differ))


# ------------------------------------------------------------------------------ unused lines
def slider_velocity(line: TimingPoint) -> float:
    if line.uninherited:
        return 1.0
    return clamp(raw_speed_multiplier(line.beat_length), MIN_SLIDER_VELOCITY, MAX_SLIDER_VELOCITY)


def _samples_differ(a: TimingPoint, b: TimingPoint) -> bool:
    return (a.sample_set, a.sample_index, a.volume) != (b.sample_set, b.sample_index, b.volume)


def _sv_differs(a: TimingPoint, b: TimingPoint) -> bool:
    return not math.isclose(slider_velocity(a), slider_velocity(b), rel_tol=1e-12)


@dataclass
class _Sections:
    """Which timing sections (from a line to the next line at a later time) hold which objects."""

    ctx: MapContext
    lines: list[TimingPoint]

    @cached_property
    def _line_times(self) -> list[float]:
        return [p.time for p in self.lines]

    @cached_property
    def _starts(self) -> list[float]:
        return [o.time for o in self.ctx.objects]

    @cached_property
    def _max_end(self) -> list[float]:
        running, out = -math.inf, []
        for o in self.ctx.objects:
            running = max(running, self.ctx.end_time(o))
            out.append(running)
        return out

    @cached_property
    def _slider_starts(self) -> list[float]:
        return [o.time for o in self.ctx.objects if isinstance(o, Slider)]

    @cached_property
    def _next_other_time(self) -> list[int]:
        """For each i: the first index at or after i whose time differs (``_same_time``) from line
        i - 1's, found in one pass (a loop per line is quadratic when many lines share a time)."""
        times, out, j = self._line_times, [0], 0
        for i in range(1, len(times) + 1):
            j = max(j, i)
            while j < len(times) and _same_time(times[j], times[i - 1]):
                j += 1
            out.append(j)
        return out

    def bounds(self, line: TimingPoint) -> tuple[float, float]:
        i = bisect.bisect_right(self._line_times, line.time)
        i = self._next_other_time[i] if i > 0 else i  # i > 0: line i - 1 has line's time
        return line.time, self.lines[i].time if i < len(self.lines) else math.inf

    def overlaps_object(self, line: TimingPoint) -> bool:
        start, end = self.bounds(line)
        i = bisect.bisect_left(self._starts, end) - 1  # last object starting before the end
        return i >= 0 and self._max_end[i] >= start

    def starts_slider(self, line: TimingPoint) -> bool:
        start, end = self.bounds(line)
        i = bisect.bisect_left(self._slider_starts, start)
        return i < len(self._slider_starts) and self._slider_starts[i] < end

    def used(self, line: TimingPoint, previous: TimingPoint) -> bool:
        """Mapset Verifier's "used": never says a used line is unused, may miss unused ones."""
        if line.kiai != previous.kiai:
            return True
        if _samples_differ(line, previous) and self.overlaps_object(line):
            return True
        sv_matters = self.ctx.mode in (1, 3) or self.starts_slider(line)
        return _sv_differs(line, previous) and sv_matters


def _red_line_issue(ctx: MapContext, sections: _Sections, line: TimingPoint) -> Suggestion | None:
    control = ctx.control_points
    previous_red = control.uninherited_point_at(line.time - 1)
    previous = control.effective_point_at(line.time - 1)
    if previous_red is None or previous is None or previous_red.time >= line.time:
        return None
    if not downbeats_align(line, previous_red):
        return None
    quirks = []
    if ctx.mode in (0, 1, 3):  # modes that draw bar lines (osu! only through converts)
        omits = line.omit_first_barline
        corrects = previous_red.omit_first_barline and _bar_offset(line, previous_red) != 0
        if (omits or corrects) and ctx.mode != 0:
            return None  # bar lines are visible in taiko and mania, so the line does something
        if omits:
            quirks.append(Message("rule.unused.omits_bar_line", "omits the first bar line"))
        if corrects:
            quirks.append(Message("rule.unused.corrects_bar_line", "corrects the omitted bar line at {time}",
                                  time=editor_timestamp(previous_red.time).removesuffix(" - ")))
    if not downbeats_align(line, previous_red, bars=4):
        quirks.append(Message("rule.unused.nightcore", "resets nightcore mod cymbals"))
    used = sections.used(line, previous)
    if quirks:
        what = quirks[0]
        for quirk in quirks[1:]:
            what = Message("rule.unused.and", "{first} and {second}", first=what, second=quirk)
        if used:
            message = Message("rule.unused.red_quirks_used", "Uninherited line only {what}; make sure this is "
                              "intended, otherwise replace it with an inherited line.", what=what)
        else:
            message = Message("rule.unused.red_quirks", "Uninherited line only {what}; make sure this is intended, "
                              "otherwise remove it.", what=what)
        return ctx.suggest("unused-lines", TIMING, Severity.WARNING, message, line.time)
    message = (Message("rule.unused.red_used", "Uninherited line changes nothing that an inherited line couldn't "
                       "change; use an inherited line.")
               if used else Message("rule.unused.red", "Uninherited line changes nothing; remove it."))
    return ctx.suggest("unused-lines", TIMING, Severity.PROBLEM, message, line.time)


@rule("unused-lines", TIMING, "Unused timing lines.")
def unused_lines(ctx: MapContext) -> Iterator[Suggestion]:
    lines = usable_lines(ctx)
    sections = _Sections(ctx, lines)
    first_red = next((p for p in lines if p.uninherited), None)
    for i, line in enumerate(lines):
        if i == 0:
            continue
        if line.uninherited:
            if line is not first_red:
                issue = _red_line_issue(ctx, sections, line)
                if issue is not None:
                    yield issue
            continue
        previous = lines[i - 1]
        if sections.used(line, previous):
            continue
        sv, samples = _sv_differs(line, previous), _samples_differ(line, previous)
        if sv and samples:
            message = Message("rule.unused.green_both", "Inherited line changes SV and sample settings, but affects "
                              "nothing.")
        elif sv:
            message = Message("rule.unused.green_sv", "Inherited line changes SV, but affects nothing.")
        elif samples:
            message = Message("rule.unused.green_samples", "Inherited line changes sample settings, but affects "
                              "nothing.")
        else:
            message = Message("rule.unused.green_same", "Inherited line uses the same values as the previous timing "
                              "line.")
        yield ctx.suggest("unused-lines", TIMING, Severity.MINOR, message, line.time)
