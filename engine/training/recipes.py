"""What each published version was trained with beyond its data flags (upstream's ``configs/train``).

:class:`~engine.presets.DataFlags` says how beatmaps become tokens. Training needs a few more facts:
how often each prompt template was drawn, the conditioning dropout rates, the loss settings, the
frame-offset augmentation rate, the backbone size used for a model trained from scratch and the LoRA
defaults. They are collected here per version.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..presets import PRESETS, VersionPreset


@dataclass(frozen=True)
class BackboneSize:
    """Whisper-style backbone dimensions (openai/whisper-small and -base, which upstream's configs start from)."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    attention_heads: int
    ffn_dim: int


WHISPER_SMALL = BackboneSize(768, 12, 12, 12, 3072)
WHISPER_BASE = BackboneSize(512, 6, 6, 8, 2048)


@dataclass(frozen=True)
class Recipe:
    """Training facts of one version that the data flags do not hold."""

    context_weights: tuple[float, ...]
    label_smoothing: float
    rhythm_weight: float = 1.0
    frame_offset_augment_prob: float = 1.0
    class_dropout_prob: float = 0.2
    diff_dropout_prob: float = 0.2
    mapper_dropout_prob: float = 0.2
    cs_dropout_prob: float = 0.2
    year_dropout_prob: float = 0.2
    hold_note_ratio_dropout_prob: float = 0.2
    scroll_speed_ratio_dropout_prob: float = 0.2
    descriptor_dropout_prob: float = 0.2
    min_difficulty: float | None = None
    max_difficulty: float | None = None
    ranked_statuses: tuple[int, ...] = (1, 2)
    descriptor_source: str = "none"  # omdb (names in OmdbTags) or user_tags (osu! tag ids) or none
    # conditioning value classes (upstream's data.num_diff_classes, max_diff, num_cs_classes)
    num_diff_classes: int = 24
    max_difficulty_class: float = 12.0
    num_cs_classes: int = 21
    # architecture of a model trained from scratch
    backbone: BackboneSize = WHISPER_SMALL
    n_mels: int = 80
    front_end: str = "torchaudio"  # or "nnAudio" (v29: power mels, f_min 0, constant padding, projected to d_model)
    do_difficulty_embed: bool = False
    do_mapper_embed: bool = False
    do_song_position_embed: bool = False
    cond_dim: int = 128
    # LoRA defaults (configs/train/lora*.yaml)
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")

    @property
    def cond_size(self) -> int:
        return self.cond_dim * (self.do_difficulty_embed + self.do_mapper_embed + self.do_song_position_embed)


_VARWHISPER_LORA = ("Wq", "Wkv", "Wqkv", "Wo")

RECIPES: dict[str, Recipe] = {
    "v29": Recipe(  # configs/train/v29.yaml over model/whisper_small.yaml and model/default.yaml
        context_weights=(4.0, 1.0, 1.0),
        label_smoothing=0.0,
        rhythm_weight=3.0,
        descriptor_source="omdb",
        n_mels=388,
        front_end="nnAudio",
    ),
    "v30": Recipe(
        context_weights=(1.0,),
        label_smoothing=0.1,
        frame_offset_augment_prob=0.5,
        mapper_dropout_prob=0.1,
        min_difficulty=1.0,
        max_difficulty=10.0,
        do_difficulty_embed=True,
        do_mapper_embed=True,
        do_song_position_embed=True,
    ),
    "v31": Recipe(
        context_weights=(4.0, 1.0, 1.0),
        label_smoothing=0.0,
        descriptor_source="omdb",
        do_difficulty_embed=True,
        do_mapper_embed=True,
        do_song_position_embed=True,
    ),
    "v32": Recipe(
        context_weights=(1.0,),
        label_smoothing=0.2,
        frame_offset_augment_prob=0.5,
        mapper_dropout_prob=0.1,
        descriptor_source="user_tags",
        n_mels=128,
        lora_target_modules=_VARWHISPER_LORA,
    ),
    "v32-mini": Recipe(
        context_weights=(1.0,),
        label_smoothing=0.2,
        frame_offset_augment_prob=0.5,
        mapper_dropout_prob=0.1,
        descriptor_source="user_tags",
        backbone=WHISPER_BASE,
        n_mels=128,
        lora_target_modules=_VARWHISPER_LORA,
    ),
}


def recipe_for(preset: VersionPreset) -> Recipe:
    return RECIPES[preset.name]


assert set(RECIPES) == set(PRESETS), "every preset needs a training recipe"
