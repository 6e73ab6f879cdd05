"""A quick check of a generated beatmap: is it usable, and is it what was asked for?

:func:`check_result` measures one map (any mode) offline, in well under a second:

- **Star rating** (rosu-pp, :func:`engine.beatmap_stats.star_rating`) of the map in memory, beside the
  difficulty that was asked for.
- **Red lines**: offset, BPM and meter of each uninherited timing point.
- **Offscreen** (osu!standard): objects the ``offscreen`` rule check reports as a problem (its warnings,
  heads the game pushes back on screen, are not counted).
- **Stacked on one spot** (osu!standard and catch; catch compares x only): a *pile* is a run of 3 or more
  consecutive objects within 3 px of the run's first object that lasts longer than 2 bars of the red
  line in effect at its start. Real maps stack streams and short patterns (the ranked maps in the test
  data have piles of up to 17 objects over 1 bar, and 4 objects over 7 beats), which osu! draws offset
  as stacks; a pile over several bars is a map collapsing onto one spot. Every object of a pile counts.
- **Doubled**: an object starting within 2 ms of the previous one (in mania, of the previous one in
  the same column; chords are normal there).
- **Unsnapped**: object edges (heads, repeats, tails, spinner and hold ends) the ``unsnapped`` rule
  check reports as a problem, i.e. 2 ms or more off the 1/16, 1/12, 1/9, 1/7 or 1/5 grid (1 ms is
  editor rounding and not counted).
- **Empty sections**: gaps between the end of one object and the start of the next of 4 bars or more
  (bars of the red line in effect where the gap starts). Before the first and after the last object
  are not counted: intros and outros are often unmapped on purpose, and the song's length is not
  known here. Real maps have some (breaks), so these are shown, not judged.
- With a ``reference`` map, :func:`engine.evaluation.evaluate` against it (rhythm F1, BPM/offset error,
  star-rating and drain-time difference).

All rule-check suggestions are kept in ``rule_suggestions`` for the JSON view.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from .beatmap import Beatmap, read_beatmap
from .errors import MapperatorError
from .suggestions import Severity, Suggestion

STACK_PX = 3.0
MIN_PILE_OBJECTS = 3
PILE_BARS = 2.0
DOUBLE_MS = 2.0
EMPTY_BARS = 4.0


@dataclass(frozen=True)
class RedLine:
    offset_ms: float  # the line's time
    bpm: float  # 60000 / beat length
    meter: int  # beats per bar

    def to_json(self) -> dict[str, Any]:
        return {"offset_ms": self.offset_ms, "bpm": round(self.bpm, 3), "meter": self.meter}


@dataclass(frozen=True)
class EmptySection:
    start_ms: float  # where the previous object ends
    end_ms: float  # where the next object starts
    bars: float  # its length in bars of the red line in effect at its start

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000.0

    def to_json(self) -> dict[str, Any]:
        return {"start_ms": self.start_ms, "end_ms": self.end_ms, "bars": round(self.bars, 2),
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class ResultCheck:
    """What :func:`check_result` found in one beatmap (see the module docstring for each definition)."""

    name: str  # the map's file name, or its difficulty name for a map not written yet
    mode: int  # 0 osu!, 1 taiko, 2 catch, 3 mania
    star_rating: float | None  # rosu-pp stars of the map as it is in memory; None when rosu-pp cannot rate it
    asked_difficulty: float | None  # the stars that were asked for (None: not given)
    red_lines: tuple[RedLine, ...]  # every uninherited timing point, by time
    object_count: int  # hit objects
    offscreen: int  # objects the offscreen rule reports as a problem (osu!standard only)
    stacked: int  # objects in piles on one spot lasting longer than 2 bars (osu!standard and catch)
    doubled: int  # objects starting within 2 ms of the previous one (mania: in the same column)
    unsnapped: int  # object edges 2 ms or more off the beat grid
    empty_sections: tuple[EmptySection, ...]  # gaps of 4 bars or more between objects
    rule_suggestions: tuple[Suggestion, ...]  # every rule-check finding, for the detailed view
    evaluation: Any = None  # engine.evaluation.Evaluation against the reference, when one was given

    @property
    def star_difference(self) -> float | None:
        """Actual minus asked stars (None when either is unknown)."""
        if self.star_rating is None or self.asked_difficulty is None:
            return None
        return round(self.star_rating - self.asked_difficulty, 2)

    @property
    def flags(self) -> list[str]:
        """Short names of what looks wrong (empty for a clean map); empty sections are not judged."""
        counts = {"offscreen": self.offscreen, "stacked": self.stacked, "doubled": self.doubled,
                  "unsnapped": self.unsnapped}
        found = [name for name, n in counts.items() if n]
        if not self.object_count:
            found.insert(0, "no objects")
        if not self.red_lines:
            found.insert(0, "no red line")
        return found

    def summary_line(self) -> str:
        """One line: stars vs asked, red lines, objects and the counts, e.g.
        ``4.81★ (asked 5.0) · 1 red line 180 BPM @ 1234 ms · 412 objects · 0 offscreen · ...``."""
        stars = "?★" if self.star_rating is None else f"{self.star_rating:.2f}★"
        if self.asked_difficulty is not None:
            stars += f" (asked {self.asked_difficulty:g})"
        parts = [stars, _red_line_text(self.red_lines), f"{self.object_count} objects"]
        if self.mode == 0:
            parts.append(f"{self.offscreen} offscreen")
        if self.mode in (0, 2):
            parts.append(f"{self.stacked} stacked")
        parts += [f"{self.doubled} doubled", f"{self.unsnapped} unsnapped", _empty_text(self.empty_sections)]
        if self.evaluation is not None:
            parts.append(f"rhythm F1 {self.evaluation.active_rhythm.f1:.2f} vs reference")
        return " · ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """Everything, JSON-ready."""
        return {
            "name": self.name,
            "mode": self.mode,
            "summary": self.summary_line(),
            "flags": self.flags,
            "star_rating": self.star_rating,
            "asked_difficulty": self.asked_difficulty,
            "star_difference": self.star_difference,
            "red_lines": [line.to_json() for line in self.red_lines],
            "object_count": self.object_count,
            "offscreen": self.offscreen,
            "stacked": self.stacked,
            "doubled": self.doubled,
            "unsnapped": self.unsnapped,
            "empty_sections": [s.to_json() for s in self.empty_sections],
            "rule_suggestions": [s.to_dict() for s in self.rule_suggestions],
            "evaluation": self.evaluation.to_dict() if self.evaluation is not None else None,
        }


def check_result(beatmap: Beatmap, asked_difficulty: float | None = None,
                 reference: Union[Beatmap, str, Path, None] = None) -> ResultCheck:
    """Check a (generated) beatmap; ``asked_difficulty`` is the requested star rating and ``reference``
    a map (or .osu path) of the same song to evaluate it against. A reference that cannot be read is
    skipped (the check is about the result, not the reference)."""
    from .beatmap_stats import star_rating
    from .rules import check_beatmap

    suggestions = tuple(check_beatmap(beatmap))
    objects = sorted(beatmap.hit_objects, key=lambda o: o.time)
    in_memory = dataclasses.replace(beatmap, path=None)  # star_rating rates a map's file when it has one
    return ResultCheck(
        name=Path(beatmap.path).name if beatmap.path is not None else beatmap.metadata.version or "<beatmap>",
        mode=beatmap.mode,
        star_rating=star_rating(in_memory) if objects else None,
        asked_difficulty=asked_difficulty,
        red_lines=red_lines(beatmap),
        object_count=len(objects),
        offscreen=_problems(suggestions, "offscreen"),
        stacked=stacked_objects(beatmap, objects),
        doubled=doubled_objects(beatmap, objects),
        unsnapped=_problems(suggestions, "unsnapped"),
        empty_sections=empty_sections(beatmap, objects),
        rule_suggestions=suggestions,
        evaluation=_evaluate(beatmap, reference),
    )


def red_lines(beatmap: Beatmap) -> tuple[RedLine, ...]:
    """The map's red lines in the order osu! applies them."""
    points = beatmap.control_points().uninherited_points
    return tuple(RedLine(p.time, 60000.0 / p.beat_length, p.meter) for p in points if p.beat_length > 0)


def stacked_objects(beatmap: Beatmap, objects: list | None = None) -> int:
    """Objects in piles on one spot that last longer than 2 bars (osu!standard and catch; 0 otherwise)."""
    if beatmap.mode not in (0, 2):
        return 0
    objects = sorted(beatmap.hit_objects, key=lambda o: o.time) if objects is None else objects
    catch = beatmap.mode == 2
    count, start = 0, 0
    for i in range(1, len(objects) + 1):
        first = objects[start]
        if i < len(objects) and abs(objects[i].x - first.x) <= STACK_PX and (
                catch or abs(objects[i].y - first.y) <= STACK_PX):
            continue
        size = i - start
        if size >= MIN_PILE_OBJECTS and objects[i - 1].time - first.time > PILE_BARS * _bar_ms(beatmap, first.time):
            count += size
        start = i
    return count


def doubled_objects(beatmap: Beatmap, objects: list | None = None) -> int:
    """Objects that start within 2 ms of the previous one (in mania: of the previous one in their column)."""
    objects = sorted(beatmap.hit_objects, key=lambda o: o.time) if objects is None else objects
    last: dict[int, float] = {}
    count = 0
    for obj in objects:
        lane = beatmap.mania_column(obj) if beatmap.mode == 3 else 0
        if lane in last and obj.time - last[lane] <= DOUBLE_MS:
            count += 1
        last[lane] = obj.time
    return count


def empty_sections(beatmap: Beatmap, objects: list | None = None) -> tuple[EmptySection, ...]:
    """Gaps of 4 bars or more between one object's end and the next object's start."""
    objects = sorted(beatmap.hit_objects, key=lambda o: o.time) if objects is None else objects
    found = []
    end = None
    for obj in objects:
        if end is not None:
            bars = (obj.time - end) / _bar_ms(beatmap, end)
            if bars >= EMPTY_BARS:
                found.append(EmptySection(end, obj.time, bars))
        end = beatmap.end_time(obj) if end is None else max(end, beatmap.end_time(obj))
    return tuple(found)


def _bar_ms(beatmap: Beatmap, time: float) -> float:
    line = beatmap.uninherited_point_at(time)
    if line is None or not line.beat_length > 0:
        return 2000.0  # no usable red line: 120 BPM 4/4, osu!'s default
    return line.beat_length * max(line.meter, 1)


def _problems(suggestions: tuple[Suggestion, ...], check: str) -> int:
    return sum(s.check == check and s.severity is Severity.PROBLEM for s in suggestions)


def _evaluate(beatmap: Beatmap, reference: Union[Beatmap, str, Path, None]):
    if reference is None:
        return None
    from .evaluation import evaluate

    try:
        ref = reference if isinstance(reference, Beatmap) else read_beatmap(reference)
    except MapperatorError:
        return None
    return evaluate(beatmap, ref)


def _red_line_text(lines: tuple[RedLine, ...]) -> str:
    if not lines:
        return "no red line"
    first = lines[0]
    if len(lines) == 1:
        return f"1 red line {first.bpm:.4g} BPM @ {first.offset_ms:.0f} ms"
    low, high = min(line.bpm for line in lines), max(line.bpm for line in lines)
    bpm = f"{low:.4g} BPM" if round(low, 2) == round(high, 2) else f"{low:.4g}-{high:.4g} BPM"
    return f"{len(lines)} red lines {bpm}, first @ {first.offset_ms:.0f} ms"


def _empty_text(sections: tuple[EmptySection, ...]) -> str:
    if not sections:
        return "no long breaks"
    longest = max(sections, key=lambda s: s.seconds)
    n = len(sections)
    return f"{n} empty section{'s' if n != 1 else ''} of {EMPTY_BARS:g}+ bars (longest {longest.seconds:.1f} s)"
