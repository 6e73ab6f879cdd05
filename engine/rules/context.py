"""What every rule sees: the beatmap plus lookups that several rules share, computed once."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..beatmap import Beatmap, ControlPoints, HitObject, Slider, SliderInfo, Spinner
from ..beatmap.slider_timing import slider_info
from ..messages import Message
from ..suggestions import Severity, Source, Suggestion, editor_timestamp


@dataclass
class MapContext:
    """One beatmap under check.

    ``folder`` is where its files (audio, background) are looked up, ``None`` when unknown;
    ``audio_duration_ms`` is the song's length when the caller knows it.
    """

    beatmap: Beatmap
    folder: Path | None = None
    audio_duration_ms: float | None = None
    _slider_infos: dict[int, SliderInfo] = field(default_factory=dict, init=False, repr=False)

    @property
    def mode(self) -> int:
        return self.beatmap.mode

    @cached_property
    def objects(self) -> list[HitObject]:
        """Hit objects sorted by time (stably, as osu! does)."""
        return sorted(self.beatmap.hit_objects, key=lambda o: o.time)

    @cached_property
    def combo_numbers(self) -> dict[int, int]:
        """The number shown on each object, keyed by ``id(object)`` (empty for mania)."""
        if self.mode == 3:
            return {}
        return {id(obj): info.number for obj, info in zip(self.beatmap.hit_objects, self.beatmap.combo_info())}

    @cached_property
    def control_points(self) -> ControlPoints:
        """The beatmap's timing lookups, fetched once (the beatmap checks they are current on every call)."""
        return self.beatmap.control_points()

    def slider_info(self, slider: Slider) -> SliderInfo:
        info = self._slider_infos.get(id(slider))
        if info is None:
            info = self._slider_infos[id(slider)] = slider_info(self.beatmap, slider, self.control_points)
        return info

    def end_position(self, obj: HitObject) -> tuple[float, float]:
        """Where the object finishes: a slider's tail (its head again after an even span count)."""
        if not isinstance(obj, Slider):
            return obj.position
        info = self.slider_info(obj)
        if info.span_count % 2 == 0 or len(info.path.vertices) == 0:
            return obj.position
        x, y = info.path.vertices[-1]
        return float(x), float(y)

    def end_time(self, obj: HitObject) -> float:
        return self.slider_info(obj).end_time if isinstance(obj, Slider) else self.beatmap.end_time(obj)

    def suggest(self, check: str, category: str, severity: Severity, message: str, time_ms: float | None = None,
                *, objects: tuple[HitObject, ...] = (), expected: str | None = None, actual: str | None = None,
                **details: Any) -> Suggestion:
        """A rule suggestion; ``objects`` put their combo numbers into the editor timestamp
        (spinners show no number, so they add none)."""
        numbers = [self.combo_numbers[id(o)] for o in objects
                   if id(o) in self.combo_numbers and not isinstance(o, Spinner)]
        return Suggestion(Source.RULE, category, severity, message, time_ms, editor_timestamp(time_ms, numbers),
                          expected=expected, actual=actual, check=check, details=details)


def object_name(obj: HitObject, mode: int) -> str:
    """What a mapper calls the object in this mode ("Circle", "Slider", "Hold note", ...)."""
    kind = type(obj).__name__
    if kind == "HitCircle":
        return Message("object.note", "Note") if mode == 3 else Message("object.circle", "Circle")
    names = {"Slider": Message("object.slider", "Slider"), "Spinner": Message("object.spinner", "Spinner"),
             "HoldNote": Message("object.hold_note", "Hold note")}
    return names.get(kind, kind)
