"""The :class:`Beatmap`: a whole ``.osu`` file in memory (its sections are in :mod:`.model`), with osu!'s rules
for timing, sliders, combos and sounds as methods that call the helper modules (:mod:`.timing_lookup`,
:mod:`.slider_timing`, :mod:`.gameplay`, :mod:`.encoder`).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .model import (AnyHitObject, Colours, Difficulty, Editor, Events, General, HitObject, HoldNote, Metadata,
                    ParseWarning, Slider, Spinner, TimingPoint)

if TYPE_CHECKING:  # pragma: no cover
    from .gameplay import ComboInfo, HitSound
    from .slider_timing import SliderInfo
    from .timing_lookup import ControlPoints


@dataclass(kw_only=True)
class Beatmap:
    """A whole ``.osu`` file.

    ``format_version`` is the version of the source file (the writer always emits v14);
    ``warnings`` lists what the reader tolerated; ``path``, ``newline`` and ``bom`` describe the
    source file. None of those take part in equality, so ``read -> write -> read`` compares equal.
    """

    general: General = field(default_factory=General)
    editor: Editor = field(default_factory=Editor)
    metadata: Metadata = field(default_factory=Metadata)
    difficulty: Difficulty = field(default_factory=Difficulty)
    events: Events = field(default_factory=Events)
    timing_points: list[TimingPoint] = field(default_factory=list)
    colours: Colours = field(default_factory=Colours)
    hit_objects: list[AnyHitObject] = field(default_factory=list)
    extra_sections: dict[str, list[str]] = field(default_factory=dict)
    format_version: int = field(default=14, compare=False)
    warnings: list[ParseWarning] = field(default_factory=list, compare=False, repr=False)
    path: Path | None = field(default=None, compare=False, repr=False)
    newline: str = field(default="\r\n", compare=False, repr=False)
    bom: bool = field(default=False, compare=False, repr=False)
    _cache: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def mode(self) -> int:
        """0 osu!, 1 taiko, 2 catch, 3 mania."""
        return self.general.mode

    def copy(self) -> "Beatmap":
        """An independent copy (hit objects and timing points are immutable and shared)."""
        return dataclasses.replace(
            self,
            general=copy.deepcopy(self.general),
            editor=copy.deepcopy(self.editor),
            metadata=copy.deepcopy(self.metadata),
            difficulty=copy.deepcopy(self.difficulty),
            events=copy.deepcopy(self.events),
            timing_points=list(self.timing_points),
            colours=copy.deepcopy(self.colours),
            hit_objects=list(self.hit_objects),
            extra_sections=copy.deepcopy(self.extra_sections),
            warnings=list(self.warnings),
        )

    def to_text(self) -> str:
        """The beatmap as v14 ``.osu`` text (see :mod:`.encoder`)."""
        from .encoder import encode_beatmap

        return encode_beatmap(self)

    # -- timing ----------------------------------------------------------------------------
    def control_points(self) -> "ControlPoints":
        """Timing lookups with osu!'s rules, rebuilt whenever ``timing_points`` changes."""
        from .timing_lookup import ControlPoints

        key = (tuple(self.timing_points), self.general.sample_set, self.general.sample_volume, self.mode)
        cached = self._cache.get("control_points")
        if cached is None or cached[0] != key:
            cached = (key, ControlPoints(self.timing_points, sample_set=self.general.sample_set,
                                         sample_volume=self.general.sample_volume, mode=self.mode))
            self._cache["control_points"] = cached
        return cached[1]

    def uninherited_point_at(self, time: float) -> TimingPoint | None:
        """The uninherited (red) timing point in effect at ``time`` (the first one before it)."""
        return self.control_points().uninherited_point_at(time)

    def effective_point_at(self, time: float) -> TimingPoint | None:
        """The timing point line whose SV, kiai and samples apply at ``time``, or ``None``."""
        return self.control_points().effective_point_at(time)

    def beat_length_at(self, time: float) -> float:
        """Milliseconds per beat at ``time`` (clamped to osu!'s 6..60000)."""
        return self.control_points().beat_length_at(time)

    def slider_velocity_at(self, time: float) -> float:
        """The SV multiplier at ``time`` (clamped to osu!'s 0.1..10)."""
        return self.control_points().slider_velocity_at(time)

    # -- hit objects -----------------------------------------------------------------------
    def slider_info(self, slider: Slider) -> "SliderInfo":
        """Path, velocity, spans, duration and end time of ``slider`` (see :mod:`.slider_timing`)."""
        from .slider_timing import slider_info

        return slider_info(self, slider)

    def end_time(self, hit_object: HitObject) -> float:
        """When ``hit_object`` ends, in ms (its start for circles)."""
        if isinstance(hit_object, Slider):
            return self.slider_info(hit_object).end_time
        if isinstance(hit_object, (Spinner, HoldNote)):
            return max(hit_object.time, hit_object.end_time)
        return hit_object.time

    def combo_info(self) -> "list[ComboInfo]":
        """Combo index, number and colour index of each hit object (see :mod:`.gameplay`)."""
        from .gameplay import combo_info

        return combo_info(self)

    def hit_sounds(self, hit_object: HitObject) -> "list[HitSound]":
        """The sounds ``hit_object`` plays, banks and volumes resolved (see :mod:`.gameplay`)."""
        from .gameplay import hit_sounds

        return hit_sounds(self, hit_object)

    @property
    def mania_keys(self) -> int:
        """The mania key count osu! derives from CircleSize."""
        from .gameplay import mania_key_count

        return mania_key_count(self.difficulty.circle_size)

    def mania_column(self, hit_object: HitObject) -> int:
        """The mania column of ``hit_object`` for this beatmap's key count."""
        from .gameplay import mania_column

        return mania_column(hit_object.x, self.mania_keys)

    @property
    def background_file(self) -> str | None:
        """The background image osu! shows (falls back to the first storyboard sprite)."""
        from .gameplay import background_file

        return background_file(self)
