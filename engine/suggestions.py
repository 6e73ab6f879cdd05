"""What MaiMod and the rule checks report: one suggestion type, so the app shows them in one table."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Iterable

from .messages import Message


class Severity(str, Enum):
    """How likely a suggestion points at a real issue (Mapset Verifier's levels)."""

    MINOR = "minor"  # subjective or cosmetic
    WARNING = "warning"  # worth a look
    PROBLEM = "problem"  # very likely wrong

    @property
    def rank(self) -> int:
        return {"minor": 0, "warning": 1, "problem": 2}[self.value]


class Source(str, Enum):
    AI = "ai"  # MaiMod: the model found the map surprising here
    RULE = "rule"  # a deterministic check


def editor_timestamp(time_ms: float | None, combo_numbers: Iterable[int] = ()) -> str:
    """osu!'s editor link text, e.g. ``00:13:400 (9,10) - ``; pasting it in osu!'s chat or editor jumps there."""
    if time_ms is None:
        return ""
    t = max(int(round(time_ms)), 0)
    text = f"{t // 60000:02}:{(t // 1000) % 60:02}:{t % 1000:03}"
    numbers = list(combo_numbers)
    if numbers:
        text += " (" + ",".join(str(n) for n in numbers) + ")"
    return text + " - "


@dataclass(frozen=True)
class Suggestion:
    source: Source
    category: str  # e.g. Timing, Rhythm, Compose, Hit Sounds, Sliders, New Combos, Files
    severity: Severity
    message: str  # one sentence a mapper understands
    time_ms: float | None = None  # where in the song (None: the whole map)
    timestamp: str = ""  # osu! editor link text for time_ms, with combo numbers
    expected: str | None = None  # what the model (or the rule) expected
    actual: str | None = None  # what the map has
    surprisal: float | None = None  # AI only: relative surprisal (surprisal / entropy), upstream's scale
    check: str | None = None  # rule id (rules) or the event type compared (AI)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready), with ``message_id`` and ``message_args`` beside the English message when
        it is an :class:`~engine.messages.Message` (the app's catalogues translate by them)."""
        d = asdict(self)
        d["source"] = self.source.value
        d["severity"] = self.severity.value
        d["message"] = str(self.message)
        d["message_id"] = getattr(self.message, "message_id", None)
        d["message_args"] = self.message.to_json()["args"] if isinstance(self.message, Message) else {}
        d["details"] = {k: str(v) if isinstance(v, Message) else v for k, v in d["details"].items()}
        return d


def sort_suggestions(items: Iterable[Suggestion]) -> list[Suggestion]:
    """Chronological; whole-map findings (no time) first; ties by severity, worst first."""
    return sorted(items, key=lambda s: (s.time_ms is not None, s.time_ms or 0.0, -s.severity.rank))
