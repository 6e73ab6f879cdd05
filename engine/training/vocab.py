"""A new vocabulary for a model trained from scratch, laid out exactly as the version's published one.

The id layout follows from the data flags (which contexts exist, which conditioning tokens, position
precision, modes); the size of the mapper, style and descriptor ranges follows from tables built from
the dataset (:class:`VocabTables`). With the same flags and tables the result equals the tokenizer.json
upstream writes, so checkpoints trained here load in upstream's code and vice versa.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..presets import MS_PER_STEP, DataFlags, VersionPreset
from ..tokenizer import ContextType, EventRange, EventType, Tokenizer
from .recipes import Recipe

T = EventType

# Always in the output vocabulary, after the version-dependent ranges.
_COMMON_OUTPUT = (
    EventRange(T.NEW_COMBO, 0, 0),
    EventRange(T.HITSOUND, 0, 2 ** 3 * 3 * 3),
    EventRange(T.VOLUME, 0, 100),
    *(EventRange(t, 0, 0) for t in (
        T.CIRCLE, T.SPINNER, T.SPINNER_END, T.SLIDER_HEAD, T.BEZIER_ANCHOR, T.PERFECT_ANCHOR, T.CATMULL_ANCHOR,
        T.RED_ANCHOR, T.LAST_ANCHOR, T.SLIDER_END, T.BEAT, T.MEASURE,
    )),
)


@dataclass
class VocabTables:
    """Conditioning tables a vocabulary carries: beatmap styles, mappers and descriptors.

    ``mapper_idx`` maps osu! user ids to rows in first-seen order; ``beatmap_mapper`` says who mapped
    each beatmap id; ``descriptor_idx`` names descriptor classes; ``beatmap_descriptors`` lists each
    beatmap's descriptor classes.
    """

    beatmap_idx: dict[int, int] = field(default_factory=dict)
    beatmap_mapper: dict[int, int] = field(default_factory=dict)
    mapper_idx: dict[int, int] = field(default_factory=dict)
    beatmap_descriptors: dict[int, list[int]] = field(default_factory=dict)
    descriptor_idx: dict[str, int] = field(default_factory=dict)
    num_descriptor_classes: int | None = None  # None: len(descriptor_idx) (user-tag ids can have gaps)

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> "VocabTables":
        return cls(dict(tokenizer.beatmap_idx), dict(tokenizer.beatmap_mapper), dict(tokenizer.mapper_idx),
                   {k: list(v) for k, v in tokenizer.beatmap_descriptors.items()}, dict(tokenizer.descriptor_idx),
                   tokenizer.num_descriptor_classes)

    def add_mapper(self, beatmap_id: int | None, user_id: int | None) -> None:
        if user_id is None:
            return
        self.mapper_idx.setdefault(user_id, len(self.mapper_idx))
        if beatmap_id is not None:
            self.beatmap_mapper[beatmap_id] = user_id


def context_markers(preset: VersionPreset) -> list[ContextType]:
    """Context types that get SOS/EOS ids, in id order: each template's inputs, then its outputs."""
    flags = preset.data
    order: list[ContextType] = []
    for template in flags.context_templates:
        for ct in list(template.inputs) + (list(template.outputs) if flags.add_out_context_types else []):
            if ct not in order:
                order.append(ct)
    return order


def build_tokenizer(preset: VersionPreset, recipe: Recipe, tables: VocabTables | None = None,
                    *, num_classes: int = 0, style_embed: bool = False, mapper_embed: bool | None = None) -> Tokenizer:
    """The vocabulary a from-scratch model of ``preset`` gets, with the given conditioning tables."""
    flags: DataFlags = preset.data
    tables = tables or VocabTables()
    mapper_embed = recipe.do_mapper_embed if mapper_embed is None else mapper_embed

    offset = 3
    context_sos: dict[ContextType, int] = {}
    context_eos: dict[ContextType, int] = {}
    for ct in context_markers(preset):
        context_sos[ct], context_eos[ct] = offset, offset + 1
        offset += 2

    max_shift = int(preset.ms_per_window / MS_PER_STEP)
    min_shift = -max_shift if flags.add_pre_tokens else 0
    out = [EventRange(T.TIME_SHIFT, min_shift, max_shift), EventRange(T.SNAPPING, 0, 16)]
    inp: list[EventRange] = []
    modes = set(flags.gamemodes)

    num_styles = max(num_classes, len(tables.beatmap_idx)) if (style_embed or flags.add_style_token) else 0
    num_mappers = len(tables.mapper_idx) if (mapper_embed or flags.add_mapper_token) else 0
    num_descriptors = 0
    if flags.add_descriptors:
        num_descriptors = (tables.num_descriptor_classes if tables.num_descriptor_classes is not None
                           else len(tables.descriptor_idx))

    if flags.add_gamemode_token:
        inp.append(EventRange(T.GAMEMODE, 0, 3))
    if flags.add_style_token:
        inp.append(EventRange(T.STYLE, 0, num_styles))
    if flags.add_diff_token:
        inp.append(EventRange(T.DIFFICULTY, 0, recipe.num_diff_classes))
    if flags.add_mapper_token:
        inp.append(EventRange(T.MAPPER, 0, num_mappers))
    if flags.add_cs_token:
        inp.append(EventRange(T.CS, 0, recipe.num_cs_classes))
    if flags.add_year_token:
        inp.append(EventRange(T.YEAR, 2007, 2077))
    if flags.add_hitsounded_token:
        inp.append(EventRange(T.HITSOUNDED, 0, 1))
    if flags.add_song_length_token:
        inp.append(EventRange(T.SONG_LENGTH, 0, 60))  # 10 s steps
    if flags.add_song_position_token:
        inp.append(EventRange(T.SONG_POSITION, -1, 101))  # percent, with "before" and "after"
    if flags.add_descriptors:
        inp.append(EventRange(T.DESCRIPTOR, 0, num_descriptors))
    if flags.add_distances:
        out.append(EventRange(T.DISTANCE, 0, 640))
    if flags.add_positions:
        p = flags.position_precision
        x_min, x_max, y_min, y_max = (v // p for v in flags.position_range)
        if flags.position_split_axes:
            out += [EventRange(T.POS_X, x_min, x_max), EventRange(T.POS_Y, y_min, y_max)]
        else:
            out.append(EventRange(T.POS, 0, (x_max - x_min + 1) * (y_max - y_min + 1) - 1))
            if flags.position_refinement:
                steps = p // flags.position_refinement
                out.append(EventRange(T.POS_REFINE, 0, steps * steps - 1))
    if 3 in modes:
        if flags.add_keycount_token:
            inp.append(EventRange(T.MANIA_KEYCOUNT, 1, 18))
        if flags.add_hold_note_ratio_token:
            inp.append(EventRange(T.HOLD_NOTE_RATIO, -1, 12))
        out.append(EventRange(T.MANIA_COLUMN, 0, 17))
    if modes & {1, 3} or flags.add_sv:
        if flags.add_scroll_speed_ratio_token:
            inp.append(EventRange(T.SCROLL_SPEED_RATIO, -1, 12))
        out.append(EventRange(T.SCROLL_SPEED, 0, 1000))
    if flags.add_global_sv_token:
        inp.append(EventRange(T.GLOBAL_SV, 40, 360))

    out += _COMMON_OUTPUT
    # Placed last so that validation accuracy counts them as "other" tokens (as upstream does).
    if flags.add_timing_points:
        out.append(EventRange(T.TIMING_POINT, 0, 0))
    if flags.add_kiai_special_token or flags.add_kiai or any(ContextType.KIAI in t.outputs
                                                               for t in flags.context_templates):
        out.append(EventRange(T.KIAI, 0, 1))
    if flags.sustain_interval:
        out += [EventRange(t, 0, 0) for t in (T.SLIDER_SUSTAIN, T.SLIDER_REPEAT_SUSTAIN, T.SPINNER_SUSTAIN)]
    if 3 in modes:
        out += [EventRange(t, 0, 0) for t in (T.HOLD_NOTE, T.HOLD_NOTE_END, T.SCROLL_SPEED_CHANGE)]
        if flags.sustain_interval:
            out.append(EventRange(T.HOLD_NOTE_SUSTAIN, 0, 0))
    if 1 in modes:
        out += [EventRange(t, 0, 0) for t in (T.DRUMROLL, T.DRUMROLL_END, T.DENDEN, T.DENDEN_END)]
        if flags.sustain_interval:
            out += [EventRange(T.DRUMROLL_SUSTAIN, 0, 0), EventRange(T.DENDEN_SUSTAIN, 0, 0)]

    return Tokenizer(
        offset=offset,
        context_sos=context_sos,
        context_eos=context_eos,
        event_ranges=out,
        input_event_ranges=inp,
        num_classes=num_styles,
        num_diff_classes=recipe.num_diff_classes if flags.add_diff_token else 0,
        max_difficulty=recipe.max_difficulty_class if flags.add_diff_token else 0,
        num_cs_classes=recipe.num_cs_classes if flags.add_cs_token else 0,
        beatmap_idx=tables.beatmap_idx if num_styles else {},
        beatmap_mapper=tables.beatmap_mapper if num_mappers else {},
        mapper_idx=tables.mapper_idx if num_mappers else {},
        num_mapper_classes=num_mappers,
        beatmap_descriptors=tables.beatmap_descriptors if flags.add_descriptors else {},
        descriptor_idx=tables.descriptor_idx if flags.add_descriptors else {},
        num_descriptor_classes=num_descriptors,
    )
