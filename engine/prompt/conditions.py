"""What the user asks for (difficulty, mapper, year, ...) as prompt tokens and model inputs.

Conditioning reaches the model two ways, depending on the version: as class tokens at the start of
the decoder prompt (v31, v32) and as tensors fed to the encoder embedders (v30, v31: difficulty,
mapper index and the window's position in the song).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch

from ..errors import OptionError
from ..messages import Message
from ..presets import DataFlags
from ..tokenizer import Event, EventType, Tokenizer

DEFAULT_DIFFICULTY = 5.0  # what the difficulty embedder gets when no difficulty is given


@dataclass(frozen=True)
class Conditions:
    """Generation conditions. ``None`` means unknown: the model picks freely.

    ``descriptors`` are names from the checkpoint's descriptor table (or raw descriptor indices);
    unknown names are skipped. ``negative_descriptors`` steer away under classifier-free guidance.
    """

    gamemode: int = 0
    difficulty: float | None = None  # star rating
    mapper_id: int | None = None  # osu! user id
    year: int | None = None
    hitsounded: bool = True
    circle_size: float | None = None
    slider_multiplier: float = 1.4
    keycount: int = 4
    hold_note_ratio: float | None = None  # mania; 0.0 is "none", which differs from unknown
    scroll_speed_ratio: float | None = None  # taiko/mania; 0.0 is "none", which differs from unknown
    descriptors: tuple[str | int, ...] | None = None
    negative_descriptors: tuple[str | int, ...] | None = None
    beatmap_id: int | None = None
    hp_drain_rate: float | None = None
    overall_difficulty: float | None = None
    approach_rate: float | None = None
    slider_tick_rate: float | None = None

    def __post_init__(self):
        if self.gamemode not in (0, 1, 2, 3):
            raise OptionError(Message("error.prompt.gamemode", "gamemode must be 0 (osu!), 1 (taiko), 2 (catch) or 3 "
                                      "(mania), not {gamemode}", gamemode=self.gamemode))
        for name in ("descriptors", "negative_descriptors"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    def negative(self) -> "Conditions":
        """The conditions of the negative (unconditional) prompt for classifier-free guidance.

        Same settings, with the negative descriptors as descriptors, no beatmap id, and the mapper
        kept only when descriptors of either kind are given (so that guidance then contrasts the
        descriptors rather than the mapper).
        """
        keep_mapper = bool(self.descriptors) or bool(self.negative_descriptors)
        return replace(
            self,
            mapper_id=self.mapper_id if keep_mapper else None,
            descriptors=self.negative_descriptors,
            negative_descriptors=None,
            beatmap_id=None,
        )


def _encode(tokenizer: Tokenizer, what: str, fn, *args) -> int:
    try:
        return fn(*args)
    except ValueError as e:
        raise OptionError(Message("error.prompt.cannot_take", "this model cannot take {what} {value}: {reason}",
                                  what=what, value=repr(args[0]), reason=_reason(e))) from None


def _reason(error: Exception) -> str:
    """The error's message (kept as a :class:`Message` when it is one, so the app can translate it)."""
    return error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) else str(error)


def class_tokens(
    tokenizer: Tokenizer,
    flags: DataFlags,
    conditions: Conditions,
    song_length_ms: float,
) -> list[int]:
    """The conditioning tokens that start a prompt, in the order the version was trained with.

    Which tokens appear depends on the version's flags and on the game mode: global SV and CS only
    for osu!/catch, key count and hold-note ratio only for mania, scroll-speed ratio only for
    taiko/mania. With descriptors enabled at least one descriptor token is always present (the
    "unknown" one when none of the given descriptors is known).
    """
    c = conditions
    tok = tokenizer
    ids: list[int] = []
    if flags.add_gamemode_token:
        ids.append(tok.encode(Event(EventType.GAMEMODE, c.gamemode)))
    if flags.add_style_token:
        ids.append(tok.encode(Event(EventType.STYLE, tok.beatmap_idx.get(c.beatmap_id, tok.num_classes))))
    if flags.add_diff_token:
        ids.append(tok.difficulty_token(c.difficulty))
    if flags.add_mapper_token:
        ids.append(tok.mapper_token(c.mapper_id))
    if flags.add_year_token:
        ids.append(_encode(tok, Message("error.prompt.year", "year"), tok.year_token, c.year))
    if flags.add_hitsounded_token:
        ids.append(tok.encode(Event(EventType.HITSOUNDED, int(c.hitsounded))))
    if flags.add_song_length_token:
        ids.append(tok.song_length_token(song_length_ms))
    if flags.add_global_sv_token and flags.add_sv and c.gamemode in (0, 2):
        ids.append(tok.global_sv_token(c.slider_multiplier))
    if flags.add_cs_token and c.gamemode in (0, 2):
        ids.append(tok.cs_token(c.circle_size))
    if c.gamemode == 3:
        if flags.add_keycount_token:
            key_count = Message("error.prompt.key_count", "key count")
            ids.append(_encode(tok, key_count, tok.encode, Event(EventType.MANIA_KEYCOUNT, int(c.keycount))))
        if flags.add_hold_note_ratio_token:
            ids.append(tok.hold_note_ratio_token(c.hold_note_ratio))
    if flags.add_scroll_speed_ratio_token and c.gamemode in (1, 3):
        ids.append(tok.scroll_speed_ratio_token(c.scroll_speed_ratio))
    if flags.add_descriptors:
        known = descriptor_tokens(tok, c.descriptors or ())
        ids.extend(known if known else [tok.unknown(EventType.DESCRIPTOR)])
    return ids


def descriptor_tokens(tokenizer: Tokenizer, descriptors: Sequence[str | int]) -> list[int]:
    """Tokens of the descriptors the checkpoint knows, in the given order; unknown ones are skipped."""
    ids = []
    er = tokenizer.range.get(EventType.DESCRIPTOR)
    for d in descriptors:
        if isinstance(d, str):
            token = tokenizer.descriptor_token(d)
            if token is not None:
                ids.append(token)
        elif isinstance(d, int) and er is not None and er.min_value <= d <= er.max_value:
            ids.append(tokenizer.encode(Event(EventType.DESCRIPTOR, d)))
    return ids


def unknown_descriptors(tokenizer: Tokenizer, descriptors: Sequence[str | int] | None) -> list[str | int]:
    """The given descriptors that :func:`class_tokens` will skip (for warning the user)."""
    return [d for d in descriptors or () if not descriptor_tokens(tokenizer, [d])]


@dataclass(frozen=True)
class Embeds:
    """Which conditioning embedders a checkpoint has (its config.json ``do_*_embed`` flags)."""

    style: bool = False
    difficulty: bool = False
    mapper: bool = False
    song_position: bool = False

    @classmethod
    def from_config(cls, config: Any) -> "Embeds":
        """From a parsed model config or a config.json dict (missing flags are False)."""
        get = config.get if isinstance(config, dict) else lambda k, d=False: getattr(config, k, d)
        return cls(
            style=bool(get("do_style_embed", False)),
            difficulty=bool(get("do_difficulty_embed", False)),
            mapper=bool(get("do_mapper_embed", False)),
            song_position=bool(get("do_song_position_embed", False)),
        )


def model_kwargs(tokenizer: Tokenizer, embeds: Embeds, conditions: Conditions) -> dict[str, torch.Tensor]:
    """Conditioning tensors for the model's embedders, batch of one.

    ``difficulty`` float32 [1] (5.0 when unknown), ``mapper_idx`` long [1] (the mapper's row, or
    -1 when no mapper is given; a mapper the checkpoint does not know gets the table's last row),
    ``beatmap_idx`` long [1]. The per-window ``song_position`` comes from :func:`song_position`.
    """
    kwargs: dict[str, torch.Tensor] = {}
    if embeds.style:
        idx = tokenizer.beatmap_idx.get(conditions.beatmap_id, tokenizer.num_classes)
        kwargs["beatmap_idx"] = torch.tensor([idx], dtype=torch.long)
    if embeds.difficulty:
        diff = DEFAULT_DIFFICULTY if conditions.difficulty is None else conditions.difficulty
        kwargs["difficulty"] = torch.tensor([diff], dtype=torch.float32)
    if embeds.mapper:
        idx = -1 if conditions.mapper_id is None else tokenizer.mapper_index(conditions.mapper_id)
        kwargs["mapper_idx"] = torch.tensor([idx], dtype=torch.long)
    return kwargs


def song_position(window_start_ms: float, window_ms: float, song_length_ms: float) -> torch.Tensor:
    """float32 [1, 2]: where the window starts and ends as fractions of the song (the end may pass 1)."""
    return torch.tensor(
        [[window_start_ms / song_length_ms, (window_start_ms + window_ms) / song_length_ms]], dtype=torch.float32
    )
