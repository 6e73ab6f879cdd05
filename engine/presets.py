"""What each published model version was trained with, in one place.

Checkpoints carry their architecture (config.json) and vocabulary (tokenizer.json) but not the data
flags that decide how beatmaps become tokens and how prompts are laid out. Those facts come from
upstream's ``configs/train/vXX.yaml`` and ``configs/inference/vXX.yaml`` and are recorded here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .tokenizer import ContextType

C = ContextType

MS_PER_STEP = 10  # one time-shift token, in every version: window times are counted in 10 ms steps


@dataclass(frozen=True)
class ContextTemplate:
    """One prompt layout a version was trained on: given contexts in, generated contexts out."""

    inputs: tuple[ContextType, ...]
    outputs: tuple[ContextType, ...]


@dataclass(frozen=True)
class DataFlags:
    """How beatmaps were tokenized and prompts built for one version (upstream's ``train.data``)."""

    src_seq_len: int
    tgt_seq_len: int
    context_templates: tuple[ContextTemplate, ...]
    add_out_context_types: bool
    types_first: bool
    # conditioning tokens at the start of a prompt
    add_gamemode_token: bool = False
    add_style_token: bool = False
    add_diff_token: bool = False
    add_mapper_token: bool = False
    add_year_token: bool = False
    add_hitsounded_token: bool = False
    add_song_length_token: bool = False
    add_global_sv_token: bool = False
    add_cs_token: bool = False
    add_keycount_token: bool = False
    add_hold_note_ratio_token: bool = False
    add_scroll_speed_ratio_token: bool = False
    add_descriptors: bool = False
    add_sv_special_token: bool = False
    add_kiai_special_token: bool = False
    add_song_position_token: bool = False
    # event streams
    add_timing: bool = False  # beat/measure events interleaved into the map stream (v30)
    add_snapping: bool = True
    add_timing_points: bool = False
    add_hitsounds: bool = True
    add_distances: bool = True
    add_positions: bool = True
    position_precision: int = 1
    position_split_axes: bool = True
    position_range: tuple[int, int, int, int] = (-256, 768, -256, 640)
    position_refinement: int | None = None
    add_kiai: bool = False
    add_sv: bool = False
    add_mania_sv: bool = False
    mania_bpm_normalized_scroll_speed: bool = True
    slider_version: int = 1
    sustain_interval: int | None = None
    gamemodes: tuple[int, ...] = (0,)
    # prompt layout
    add_pre_tokens: bool = False
    max_pre_token_len: int = -1
    add_gd_context: bool = False
    center_pad_decoder: bool = False
    lookahead: float = 0.0  # training lookahead; sets where a window's generation is considered finished
    # audio
    sample_rate: int = 16000
    hop_length: int = 128
    normalize_audio: bool = True
    # training augmentations (used by engine.training)
    timing_random_offset: int = 0
    dt_augment_prob: float = 0.0
    dt_augment_range: tuple[float, float] = (1.0, 1.0)
    dt_augment_sqrt: bool = False
    flip_horizontal_prob: float = 0.0
    flip_vertical_prob: float = 0.0
    snapping_random_prob: float = 0.0
    lookback_prob: float = 0.0
    train_lookback: float = 0.0
    min_year: int | None = None
    max_year: int | None = None


@dataclass(frozen=True)
class InferenceDefaults:
    """Upstream's ``configs/inference/vXX.yaml`` values that differ per version."""

    output_type: tuple[ContextType, ...]
    in_context: tuple[ContextType, ...] = ()
    temperature: float = 0.9
    top_p: float = 0.9
    top_k: int = 0
    timing_temperature: float = 0.1
    mania_column_temperature: float = 0.8
    taiko_hit_temperature: float = 0.8
    lookback: float = 0.5
    lookahead: float = 0.4
    max_batch_size: int = 16
    snap_near_perfect_overlaps: bool = False
    super_timing: bool = False
    timing_leniency: int = 20
    generate_positions: bool = False  # osu-diffusion refinement of the map's positions (engine.diffusion)


@dataclass(frozen=True)
class VersionPreset:
    name: str
    repo_id: str
    backbone: str  # backbone_model_name in config.json
    beatmap_version: str  # default difficulty name upstream writes
    data: DataFlags
    inference: InferenceDefaults
    supports_maimod: bool = True  # engine.maimod scores every published version (upstream: v30 only)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ms_per_window(self) -> float:
        return (self.data.src_seq_len - 1) * self.data.hop_length * 1000 / self.data.sample_rate


_V32_DATA = DataFlags(
    src_seq_len=2048,
    tgt_seq_len=2560,
    context_templates=(ContextTemplate((), (C.TIMING, C.MAP, C.SV)),),
    add_out_context_types=True,
    types_first=False,
    add_gamemode_token=True,
    add_diff_token=True,
    add_mapper_token=True,
    add_year_token=True,
    add_hitsounded_token=True,
    add_song_length_token=True,
    add_global_sv_token=True,
    add_cs_token=True,
    add_keycount_token=True,
    add_hold_note_ratio_token=True,
    add_scroll_speed_ratio_token=True,
    add_descriptors=True,
    add_sv_special_token=True,
    add_song_position_token=True,
    add_timing=False,
    add_timing_points=True,
    add_distances=False,
    position_precision=32,
    position_split_axes=False,
    position_refinement=2,
    add_sv=True,
    slider_version=2,
    sustain_interval=8000,
    gamemodes=(0, 1, 2, 3),
    timing_random_offset=2,
    dt_augment_prob=0.3,
    dt_augment_range=(1.0, 1.2),
    dt_augment_sqrt=True,
    flip_horizontal_prob=0.5,
    flip_vertical_prob=0.5,
    snapping_random_prob=0.25,
    lookback_prob=0.5,
    train_lookback=0.2,
    min_year=2007,
    max_year=2024,
)

_V31_TEMPLATES = (
    ContextTemplate((C.NONE,), (C.TIMING, C.KIAI, C.MAP, C.SV)),
    ContextTemplate((C.NO_HS,), (C.TIMING, C.KIAI, C.MAP, C.SV)),
    ContextTemplate((C.GD,), (C.TIMING, C.KIAI, C.MAP, C.SV)),
)

PRESETS: dict[str, VersionPreset] = {
    "v29": VersionPreset(
        name="v29",
        repo_id="OliBomby/Mapperatorinator-v29.1",
        backbone="openai/whisper-small",
        beatmap_version="Mapperatorinator V29.1",
        data=DataFlags(
            src_seq_len=1024,
            tgt_seq_len=2048,
            context_templates=_V31_TEMPLATES,
            add_out_context_types=True,
            types_first=True,
            add_gamemode_token=True,
            add_diff_token=True,
            add_mapper_token=True,
            add_year_token=True,
            add_hitsounded_token=True,
            add_song_length_token=True,
            add_global_sv_token=True,
            add_cs_token=True,
            add_keycount_token=True,
            add_hold_note_ratio_token=True,
            add_scroll_speed_ratio_token=True,
            add_descriptors=True,
            add_sv_special_token=True,
            add_song_position_token=True,
            add_timing_points=True,
            position_precision=32,
            position_split_axes=False,
            add_sv=True,
            gamemodes=(0, 1, 2, 3),
            timing_random_offset=2,
            dt_augment_prob=0.5,
            dt_augment_range=(1.25, 1.5),
        ),
        # upstream's v29.yaml leaves snap_near_perfect_overlaps and generate_positions at default.yaml's true
        inference=InferenceDefaults(output_type=(C.TIMING, C.KIAI, C.MAP, C.SV), max_batch_size=8,
                                    super_timing=True, timing_leniency=3, snap_near_perfect_overlaps=True,
                                    generate_positions=True),
    ),
    "v30": VersionPreset(
        name="v30",
        repo_id="OliBomby/Mapperatorinator-v30",
        backbone="Tiger14n/ropewhisper-small",
        beatmap_version="Mapperatorinator V30",
        data=DataFlags(
            src_seq_len=4096,
            tgt_seq_len=5120,
            context_templates=(ContextTemplate((), (C.MAP,)),),
            add_out_context_types=False,
            types_first=False,
            add_keycount_token=True,
            add_hold_note_ratio_token=True,
            add_scroll_speed_ratio_token=True,
            add_sv_special_token=True,
            add_timing=True,
            add_timing_points=False,
            position_precision=4,
            gamemodes=(0,),
            timing_random_offset=2,
            dt_augment_prob=0.3,
            dt_augment_range=(1.0, 1.2),
            lookback_prob=0.5,
            train_lookback=0.2,
        ),
        inference=InferenceDefaults(output_type=(C.MAP,)),
    ),
    "v31": VersionPreset(
        name="v31",
        repo_id="OliBomby/Mapperatorinator-v31",
        backbone="Tiger14n/ropewhisper-small",
        beatmap_version="Mapperatorinator V31",
        data=DataFlags(
            src_seq_len=4096,
            tgt_seq_len=8192,
            context_templates=_V31_TEMPLATES,
            add_out_context_types=True,
            types_first=True,
            add_gamemode_token=True,
            add_year_token=True,
            add_hitsounded_token=True,
            add_global_sv_token=True,
            add_cs_token=True,
            add_keycount_token=True,
            add_hold_note_ratio_token=True,
            add_scroll_speed_ratio_token=True,
            add_descriptors=True,
            add_sv_special_token=True,
            add_kiai_special_token=True,
            add_timing_points=True,
            position_precision=4,
            add_sv=True,
            gamemodes=(0, 1, 2, 3),
            timing_random_offset=2,
            dt_augment_prob=0.5,
            dt_augment_range=(1.25, 1.5),
        ),
        inference=InferenceDefaults(output_type=(C.TIMING, C.KIAI, C.MAP, C.SV), max_batch_size=8),
    ),
    "v32": VersionPreset(
        name="v32",
        repo_id="OliBomby/Mapperatorinator-v32",
        backbone="OliBomby/varwhisper-small",
        beatmap_version="Mapperatorinator V32",
        data=_V32_DATA,
        inference=InferenceDefaults(output_type=(C.TIMING, C.MAP, C.SV), max_batch_size=32),
    ),
    "v32-mini": VersionPreset(
        name="v32-mini",
        repo_id="OliBomby/Mapperatorinator-v32-mini",
        backbone="OliBomby/varwhisper-base",
        beatmap_version="Mapperatorinator V32-mini",
        data=_V32_DATA,
        inference=InferenceDefaults(output_type=(C.TIMING, C.MAP, C.SV), max_batch_size=32),
    ),
}

DEFAULT_VERSION = "v32"


def detect_version(backbone_model_name: str, context_types: set[ContextType]) -> str | None:
    """Which preset a checkpoint belongs to, from its config.json backbone and its tokenizer's contexts."""
    if backbone_model_name.startswith("openai/whisper"):
        return "v29"
    if backbone_model_name.startswith("Tiger14n/ropewhisper"):
        return "v31" if C.KIAI in context_types else "v30" if not context_types else None
    if backbone_model_name.startswith("OliBomby/varwhisper-small"):
        return "v32"
    if backbone_model_name.startswith("OliBomby/varwhisper-base"):
        return "v32-mini"
    return None
