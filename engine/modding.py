"""Modding a beatmap: MaiMod's AI suggestions and the rule checks, merged into one list.

    found = mod(ModOptions(beatmap_path="map.osu"))            # the song is found from AudioFilename
    found = mod(ModOptions(beatmap_path="map.osu", ai=False))  # rule checks only (no model, no song needed)

(The module is not called ``mod``: ``engine.mod`` is this function, and a submodule of the same
name would replace it on the package once imported.)
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .errors import AudioError, BeatmapError, Cancelled, OptionError
from .generation import Progress, ProgressCallback
from .messages import Message
from .options import check_options, check_precision_name, ranged
from .suggestions import Severity, Source, Suggestion, sort_suggestions

DEFAULT_MODEL = "v30"


@dataclass(frozen=True)
class ModOptions:
    """What ``mapperator mod`` and :func:`mod` accept (upstream MaiMod's option names where it has them)."""

    beatmap_path: str | None = None
    audio_path: str | None = None  # default: the beatmap's AudioFilename beside it
    model_path: str = DEFAULT_MODEL  # a version (v30, v31, v32, v32-mini), a checkpoint folder or a repo id
    device: str = "auto"
    precision: str = "auto"  # auto (int8 on a CPU, bf16 on a recent NVIDIA GPU, else fp32), fp32, bf16, amp, int8 (CPU only)
    ai: bool = True  # MaiMod's suggestions
    rules: bool = True  # the rule checks
    revision: str | None = None
    auto_select_gamemode_model: bool = True
    lookback: float | None = ranged(None, 0, 1, high_open=True)  # window layout; default: the model version's
    lookahead: float | None = ranged(None, 0, 1, high_open=True)
    max_batch_size: int | None = ranged(None, 1, 1024)  # windows per forward pass (default 4; no effect on results)
    min_surprisal: float = ranged(20.0, 0, 1e6)  # relative surprisal a suggestion needs (upstream's 2 on its /10 scale)
    max_per_category: int = ranged(10, 0, 10 ** 6)  # printing only: suggestions shown per category (0: all)

    # Upstream's MaiMod config inherits `seed: null` from its inference config: kept loadable, any seed refused,
    # because scoring draws no random numbers (see engine.options.build_options).
    RETIRED: ClassVar[dict[str, tuple[Any, str]]] = {
        "seed": (None, Message("error.modding.retired_seed", "seed has no effect on MaiMod: it scores the map as it "
                               "is and draws no random numbers; leave seed out")),
    }

    def __post_init__(self):
        check_options(self)  # numbers in range and finite, paths usable: before anything is read or loaded
        check_precision_name(self.precision)


def mod(options: ModOptions, progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None) -> list[Suggestion]:
    """Suggestions for a beatmap, chronological (whole-map findings first). Raises MapperatorError subclasses
    for bad input, before any heavy work, and :class:`~engine.errors.Cancelled` when ``cancel`` is set."""
    from .beatmap import read_reference_beatmap

    _check(options)
    report = progress or (lambda p: None)
    report(Progress(0.0, Message("stage.reading_beatmap", "Reading the beatmap")))
    path = Path(options.beatmap_path).expanduser()
    beatmap = read_reference_beatmap(path)
    if options.ai and not beatmap.hit_objects:
        raise BeatmapError(Message("error.modding.no_hit_objects", "has no hit objects, so there is nothing for MaiMod "
                                   "to judge (rules=true ai=false still runs the rule checks)"), path)
    if options.ai and not any(tp.bpm is not None for tp in beatmap.timing_points):
        raise BeatmapError(Message("error.modding.no_timing", "has no usable uninherited timing point; MaiMod needs "
                                   "the map's timing"), path)
    audio_path, duration = _song(options, beatmap, path)
    _stop_if(cancel)

    found: list[Suggestion] = []
    song_notes: list = []
    ai_share = 0.9 if options.rules else 1.0
    if options.ai:
        from .maimod import ai_mod

        def stage(fraction: float, text: str) -> None:
            report(Progress(0.01 + fraction * (ai_share - 0.01),
                            Message("stage.maimod", "MaiMod: {stage}", stage=text)))

        found += ai_mod(
            beatmap, audio_path, options.model_path, device=options.device, precision=options.precision,
            revision=options.revision, auto_select_gamemode_model=options.auto_select_gamemode_model,
            lookback=options.lookback, lookahead=options.lookahead, batch_size=options.max_batch_size,
            min_surprisal=options.min_surprisal, cancel=cancel, on_stage=stage, notes=song_notes)
        _stop_if(cancel)
        # the song itself is suspect (silent, cut off): the AI's suggestions mean little, so say so in the table
        found += [Suggestion(Source.RULE, "Files", Severity.WARNING, note, check="song-audio") for note in song_notes]
    if options.rules:
        from .rules import check_beatmap

        report(Progress(ai_share if options.ai else 0.05, Message("stage.checking_rules", "Checking the rules")))
        found += check_beatmap(beatmap, beatmap_path=path, audio_duration_ms=duration)
        _stop_if(cancel)
    report(Progress(1.0, Message("stage.done", "Done")))
    return sort_suggestions(found)


def _check(o: ModOptions) -> None:
    if not o.beatmap_path:
        raise OptionError(Message("error.modding.beatmap_required", 'beatmap_path is required, e.g. '
                                  'beatmap_path="Artist - Title (Mapper) [Hard].osu"'))
    if not (o.ai or o.rules):
        raise OptionError(Message("error.modding.nothing_to_check", "ai=false and rules=false leave nothing to check; "
                                  "enable at least one"))


def _song(o: ModOptions, beatmap, path: Path) -> tuple[Path | None, float | None]:
    """The song and its length. MaiMod needs it; the rules only use it when there is one."""
    from .audio import audio_duration_ms

    if o.audio_path:
        audio = Path(o.audio_path).expanduser()
        if not audio.is_file():
            raise AudioError(Message("error.audio.file_not_found", "audio file {path} not found", path=str(audio)))
    else:
        from .beatmap.files import UnsafeFileName, referenced_file

        name = beatmap.general.audio_filename
        try:
            audio = referenced_file(path.parent, name) if name else None
        except UnsafeFileName:
            if not o.ai:
                return None, None  # the rule checks report the name
            raise AudioError(Message("error.modding.song_outside_folder", '{beatmap} names its song "{name}", which is '
                                     "outside the beatmap's folder; put the song beside the beatmap or pass "
                                     "audio_path=", beatmap=path.name, name=name)) from None
        if audio is None or not audio.is_file():
            if not o.ai:
                return None, None
            if audio is None:
                raise AudioError(Message("error.modding.no_song_named", "{beatmap} names no song (AudioFilename); pass "
                                         "audio_path=", beatmap=path.name))
            raise AudioError(Message("error.modding.song_missing", "the beatmap's song {name} is not in {folder}; "
                                     "put it there or pass audio_path=", name=repr(name), folder=str(path.parent)))
    try:
        return audio, audio_duration_ms(audio)
    except AudioError:
        if o.ai:
            raise
        return audio, None  # an unreadable song is the rule checks' business, not a reason to stop


def _stop_if(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(Message("error.modding.cancelled", "modding cancelled"))
