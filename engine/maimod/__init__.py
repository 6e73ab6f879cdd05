"""MaiMod: AI modding. The model reads a finished beatmap with its song and points at the events it
finds most surprising, with what it expected instead.

    scored = score_beatmap(beatmap, audio_path, checkpoint)       # every event's relative surprisal
    found = ai_mod(beatmap, audio_path, model="v30")              # list[Suggestion]

- :mod:`.scoring`: teacher-forced forward passes over every window -> per-event surprisal
- :mod:`.explain`: groups, upstream's filters, categories and messages -> :class:`~engine.suggestions.Suggestion`

MaiMod was written for v30 (upstream's default). v31 and v32 work too: every context of their
template (timing, kiai, map, scroll speeds) is scored with the causal decoder.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

from ..errors import OptionError
from ..messages import Message
from ..presets import PRESETS
from ..tokenizer import ContextType
from ..suggestions import Suggestion
from .explain import MIN_SURPRISAL, Candidate, candidates, severity_of, suggestions
from .scoring import ScoredContext, score_contexts

log = logging.getLogger(__name__)

DEFAULT_MODEL = "v30"
# Windows per forward pass. Upstream stacks 16, but a batch's logits then take ~10 GiB with the real
# v30 (measured on a 5-minute song); 4 is as fast on an H100 and fits 3 GiB. Results do not depend on it.
DEFAULT_BATCH = 4
# Upstream's MaiMod switches to v31 for maps of a mode its default v30 cannot read.
FALLBACK_MODEL = "v31"

# (fraction of the MaiMod part, stage text)
StageCallback = Callable[[float, str], None]

__all__ = [
    "DEFAULT_MODEL", "MIN_SURPRISAL", "Candidate", "ScoredContext", "ai_mod", "candidates", "load_model",
    "score_beatmap", "score_contexts", "severity_of", "suggestions",
]


def load_model(model: str, gamemode: int, *, device: str = "auto", precision: str = "fp32",
               revision: str | None = None, auto_select_gamemode_model: bool = True):
    """The checkpoint MaiMod uses for a map of ``gamemode`` (cached between calls).

    A version whose models do not know the mode is an error, except the default ``v30``, which is
    replaced by v31 as upstream does.
    """
    from ..checkpoint import load_checkpoint, locate
    from ..runtime import MODELS, ModelKey, pick_device, prepare_model, quantization, resolve_precision, weight_dtype

    if model in PRESETS and gamemode not in PRESETS[model].data.gamemodes:
        if model != DEFAULT_MODEL:
            raise OptionError(Message("error.maimod.unknown_gamemode", "{model} does not know game mode "
                                      "{gamemode}; use v31 or v32 for this beatmap", model=model, gamemode=gamemode))
        log.info("%s maps osu!standard only; MaiMod uses %s for game mode %d", model, FALLBACK_MODEL, gamemode)
        model = FALLBACK_MODEL
    torch_device = pick_device(device)
    precision = resolve_precision(torch_device, precision)
    dtype = weight_dtype(precision)
    folder, _ = locate(model, gamemode=gamemode if auto_select_gamemode_model else None, revision=revision)
    key = ModelKey(str(folder), revision, str(torch_device), str(dtype), None, quantization(precision))
    version = model if model in PRESETS else None

    def load():
        loaded = load_checkpoint(str(folder), device=torch_device, dtype=dtype, version=version)
        prepare_model(loaded.model, precision)
        return loaded

    ck = MODELS.get(key, load)
    if gamemode not in ck.preset.data.gamemodes:
        modes = ", ".join(str(m) for m in ck.preset.data.gamemodes)
        raise OptionError(Message("error.maimod.model_gamemodes", "the {model} model at {folder} maps game modes "
                                  "{modes} only; this beatmap is game mode {gamemode}", model=ck.preset.name,
                                  folder=str(folder), modes=modes, gamemode=gamemode))
    return ck


def score_beatmap(
    beatmap,
    audio_path: str | Path,
    checkpoint,
    *,
    lookback: float | None = None,
    lookahead: float | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    cancel: threading.Event | None = None,
    on_stage: StageCallback | None = None,
    notes: list | None = None,
) -> list[ScoredContext]:
    """Relative surprisal of every event of every context of ``beatmap`` under ``checkpoint``.

    The conditions (star rating, mapper, CS, ...) are measured from the beatmap, as upstream does.
    Windows use the version's inference lookback/lookahead unless given.
    """
    from ..audio import load_audio
    from ..beatmap_stats import conditions_from_beatmap
    from ..events import context_events
    from ..prompt import ContextStream, Embeds, plan_contexts
    from ..runtime import autocast
    from ..windows import WindowLayout

    stage = on_stage or (lambda fraction, text: None)
    preset, tok = checkpoint.preset, checkpoint.tokenizer
    flags = preset.data
    stage(0.05, Message("stage.loading_song", "Loading the song"))
    samples = load_audio(Path(audio_path), flags.sample_rate, notes=notes)  # notes: the song's warnings
    segments = WindowLayout.for_preset(preset, lookback, lookahead).segment(samples)
    plan = plan_contexts(flags, gamemode=beatmap.mode)
    streams = {}
    for c in plan.in_contexts + plan.out_contexts:
        if c == ContextType.SV and beatmap.mode != 3:
            # Training left the SV context empty outside mania (the MAP context carries those SVs);
            # upstream's MaiMod filled it and then failed on it.
            streams[c] = ContextStream(c, given=True)
        else:
            streams[c] = ContextStream(c, context_events(c, beatmap, flags, song_length_ms=segments.song_length_ms),
                                       given=True)
    conditions = conditions_from_beatmap(beatmap, tok)
    model = checkpoint.model
    windows = len(segments.starts_ms)
    stage(0.1, Message("stage.scoring_first", "Scoring window 1 of {windows}", windows=windows))

    def on_batch(done: int, total: int) -> None:
        stage(0.1 + 0.85 * done / total,
              Message("stage.scored", "Scored window {done} of {total}", done=done, total=total))

    return score_contexts(
        model, tok, flags, segments, conditions, streams, embeds=Embeds.from_config(checkpoint.config),
        batch_size=batch_size or DEFAULT_BATCH, autocast=lambda: autocast(model.device, precision), cancel=cancel,
        on_batch=on_batch)


def ai_mod(
    beatmap,
    audio_path: str | Path,
    model: str = DEFAULT_MODEL,
    *,
    device: str = "auto",
    precision: str = "fp32",
    revision: str | None = None,
    auto_select_gamemode_model: bool = True,
    lookback: float | None = None,
    lookahead: float | None = None,
    batch_size: int | None = None,
    min_surprisal: float = MIN_SURPRISAL,
    cancel: threading.Event | None = None,
    on_stage: StageCallback | None = None,
    notes: list | None = None,
) -> list[Suggestion]:
    """MaiMod's suggestions for ``beatmap`` (a parsed :class:`~engine.beatmap.Beatmap`), in time order; the song's
    warnings (silent, truncated, ...) go to ``notes`` when given (else to Python's warnings)."""
    stage = on_stage or (lambda fraction, text: None)
    stage(0.0, Message("stage.loading_model", "Loading the model"))
    ck = load_model(model, beatmap.mode, device=device, precision=precision, revision=revision,
                    auto_select_gamemode_model=auto_select_gamemode_model)
    scored = score_beatmap(beatmap, audio_path, ck, lookback=lookback, lookahead=lookahead, batch_size=batch_size,
                           precision=precision, cancel=cancel, on_stage=stage, notes=notes)
    stage(0.97, Message("stage.explaining", "Explaining the surprises"))
    return suggestions(scored, beatmap, ck.preset.data, ck.tokenizer, min_surprisal=min_surprisal)
