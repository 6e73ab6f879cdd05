"""Offline rule checks for beatmaps: deterministic, milliseconds per map, the checks Mapset
Verifier users know.

``check_beatmap(beatmap)`` runs every registered rule that applies to the map's mode and returns
:class:`~engine.suggestions.Suggestion` objects (source RULE, ``check`` = the rule id), sorted.

Rules by module (each module's docstring has the exact definitions and thresholds):

- :mod:`.timing_checks` — ``unsnapped``, ``first-line``, ``before-first-line``, ``concurrent-lines``,
  ``unused-lines``
- :mod:`.compose` — ``zero-length``, ``offscreen`` (osu!standard, with :mod:`.stacking`),
  ``after-audio`` (needs the audio duration)
- :mod:`.slider_checks` — ``slider-length``, ``straight-bezier``
- :mod:`.files` — ``missing-files`` (file existence needs the beatmap's folder or .osz)
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..beatmap import Beatmap
from ..errors import OptionError
from ..messages import Message
from ..suggestions import Suggestion, sort_suggestions
from . import compose, files, slider_checks, timing_checks  # noqa: F401  (registers the rules)
from .context import MapContext
from .registry import RULES, Rule

__all__ = ["RULES", "MapContext", "Rule", "check_beatmap"]


def check_beatmap(beatmap: Beatmap, *, beatmap_path: str | Path | None = None,
                  audio_duration_ms: float | None = None, checks: Iterable[str] | None = None) -> list[Suggestion]:
    """Run the rule checks on ``beatmap``.

    ``beatmap_path`` is the .osu file (or its folder, or the .osz it came from) whose folder holds
    the audio and background; it defaults to ``beatmap.path`` when that file exists. Without an
    existing folder (or .osz) file existence is not checked. ``audio_duration_ms`` enables the after-audio check. ``checks`` limits the run to
    those rule ids (all by default; see ``RULES``).
    """
    selected = list(RULES.values())
    if checks is not None:
        wanted = list(checks)
        unknown = [c for c in wanted if c not in RULES]
        if unknown:
            raise OptionError(Message("error.rules.unknown_checks", "unknown rule check(s) {checks}; known checks: "
                                      "{known}", checks=", ".join(map(repr, unknown)), known=", ".join(RULES)))
        selected = [RULES[c] for c in wanted]
    if beatmap_path is None and beatmap.path is not None and Path(beatmap.path).is_file():
        beatmap_path = beatmap.path
    ctx = MapContext(beatmap, _folder(beatmap_path), audio_duration_ms)
    found: list[Suggestion] = []
    for rule in selected:
        if rule.applies_to(beatmap.mode):
            found.extend(rule.run(ctx))
    return sort_suggestions(found)


def _folder(path: str | Path | None) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    folder = path if path.is_dir() or path.suffix.lower() == ".osz" else path.parent
    return folder if folder.exists() else None
