"""Writing models in the published checkpoint format, so that both our loader and upstream's load them.

A checkpoint folder gets ``config.json`` (upstream's MapperatorinatorConfig layout: a nested
``backbone_config`` plus the top-level fields), ``generation_config.json``, ``tokenizer.json`` and
``model.safetensors`` (fp32, ``format: pt``). The state dict includes
``transformer.model.decoder.embed_tokens.weight``, which no code reads but upstream's strict
``from_pretrained`` expects.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..model import ROPEWHISPER, UNUSED_CHECKPOINT_KEYS, WHISPER, Mapperatorinator, ModelConfig
from ..tokenizer import Tokenizer

TRANSFORMERS_VERSION = "4.57.3"  # what the published-format fixtures carry; upstream does not read it
_UNUSED_EMBEDDING = UNUSED_CHECKPOINT_KEYS[0]


def config_json(config: ModelConfig, src_seq_len: int, tgt_seq_len: int, base: dict[str, Any] | None = None) -> dict:
    """config.json for ``config``; ``base`` (the config.json a fine-tuned model came from) is kept as it was,
    apart from the loss settings, which record the values this run trained with."""
    if base is not None:
        out = json.loads(json.dumps(base))
        out["label_smoothing"] = config.label_smoothing
        out["rhythm_weight"] = config.rhythm_weight
        return out
    b, s = config.backbone, config.spectrogram
    whisper = "openai/whisper-" + config.backbone_name.rsplit("-", 1)[-1]
    backbone = {
        "_name_or_path": whisper, "activation_dropout": 0.0, "activation_function": b.activation,
        "apply_spec_augment": False, "architectures": ["WhisperForConditionalGeneration"], "attention_dropout": 0.0,
        "begin_suppress_tokens": None, "bos_token_id": 1, "classifier_proj_size": 256, "d_model": b.d_model,
        "decoder_attention_heads": b.decoder_heads, "decoder_ffn_dim": b.decoder_ffn_dim, "decoder_layerdrop": 0.0,
        "decoder_layers": b.decoder_layers, "decoder_start_token_id": 1, "dropout": 0.0, "dtype": "float32",
        "encoder_attention_heads": b.encoder_heads, "encoder_ffn_dim": b.encoder_ffn_dim, "encoder_layerdrop": 0.0,
        "encoder_layers": b.encoder_layers, "eos_token_id": 2, "forced_decoder_ids": None, "init_std": config.init_std,
        "mask_feature_length": 10, "mask_feature_min_masks": 0, "mask_feature_prob": 0.0, "mask_time_length": 10,
        "mask_time_min_masks": 2, "mask_time_prob": 0.05, "max_length": 448,
        "max_source_positions": b.max_source_positions, "max_target_positions": b.max_target_positions,
        "median_filter_width": 7, "model_type": "whisper", "num_hidden_layers": b.encoder_layers,
        "num_mel_bins": b.num_mel_bins, "pad_token_id": 0, "scale_embedding": False, "tie_word_embeddings": False,
        "use_cache": False, "use_weighted_layer_sum": False, "vocab_size": b.vocab_size,
    }
    if b.flavour == WHISPER:
        pass  # transformers' own Whisper: learned positions, nothing more to record
    elif b.flavour == ROPEWHISPER:
        backbone.update(rope_type=b.rope_type, rope_encoder_scaling_factor=b.rope_encoder_scaling,
                        rope_decoder_scaling_factor=b.rope_decoder_scaling)
    else:
        backbone.update(attention_bias=b.attention_bias, deterministic_flash_attn=False,
                        global_attn_every_n_layers=b.global_attn_every_n_layers, global_rope_theta=_num(b.global_rope_theta),
                        local_attention=b.local_attention, local_rope_theta=_num(b.local_rope_theta),
                        rope_scaling={"factor": 1.0, "rope_type": "default"})
    return {
        "architectures": ["Mapperatorinator"], "backbone_config": dict(sorted(backbone.items())),
        "backbone_model_name": config.backbone_name, "bos_token_id": 1, "cond_dim": config.cond_dim,
        "cond_size": config.cond_size, "decoder_start_token_id": 1, "disable_compile": True,
        "do_difficulty_embed": config.do_difficulty_embed, "do_mapper_embed": config.do_mapper_embed,
        "do_sample": True, "do_song_position_embed": config.do_song_position_embed,
        "do_style_embed": config.do_style_embed, "dtype": "float32", "embed_decoder_input": True, "eos_token_id": 2,
        "f_max": _num(s.f_max), "f_min": _num(s.f_min), "hidden_size": b.d_model, "hop_length": s.hop_length,
        "init_std": config.init_std, "input_features": True, "input_raw_wave": False, "is_encoder_decoder": True,
        "label_smoothing": config.label_smoothing, "max_length": None, "max_source_positions": src_seq_len // 2,
        "max_target_positions": tgt_seq_len, "model_type": "mapperatorinator", "n_fft": s.n_fft, "n_mels": s.n_mels,
        "num_attention_heads": b.encoder_heads, "num_classes": config.num_classes,
        "num_hidden_layers": b.encoder_layers, "num_mappers": config.num_mappers, "pad_mode": s.pad_mode,
        "pad_token_id": 0, "project_encoder_input": config.project_encoder_input,
        "rhythm_token_end": config.rhythm_token_end, "rhythm_token_start": config.rhythm_token_start,
        "rhythm_weight": config.rhythm_weight, "sample_rate": s.sample_rate, "spectrogram_implementation": s.implementation,
        "spectrogram_log_scale": s.log_scale, "top_k": 0, "transformers_version": TRANSFORMERS_VERSION,
        "vocab_size": config.vocab_size_out, "vocab_size_in": config.vocab_size_in,
    }


def generation_config_json(tgt_seq_len: int) -> dict:
    return {"_from_model_config": True, "bos_token_id": 1, "decoder_start_token_id": 1, "disable_compile": True,
            "do_sample": True, "eos_token_id": 2, "max_length": tgt_seq_len, "pad_token_id": 0, "top_k": 0,
            "transformers_version": TRANSFORMERS_VERSION}


def unused_embedding(config: ModelConfig, source: Path | None = None, seed: int = 0) -> torch.Tensor:
    """The never-read backbone embedding: copied from the source checkpoint when it has one, else drawn."""
    if source is not None:
        from safetensors import safe_open

        for file in sorted(Path(source).glob("model*.safetensors")):
            with safe_open(str(file), framework="pt") as f:
                if _UNUSED_EMBEDDING in f.keys():
                    return f.get_tensor(_UNUSED_EMBEDDING).float()
    g = torch.Generator().manual_seed(seed)
    return torch.randn(config.vocab_size_out, config.backbone.d_model, generator=g) * config.init_std


def save_checkpoint(folder: str | Path, model: Mapperatorinator, tokenizer: Tokenizer, config_dict: dict,
                    tgt_seq_len: int, unused: torch.Tensor) -> Path:
    """Write the four published files into ``folder`` (created); returns it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    state[_UNUSED_EMBEDDING] = unused.detach().to("cpu", torch.float32).contiguous()
    save_file(dict(sorted(state.items())), str(folder / "model.safetensors"), metadata={"format": "pt"})
    _write_json(folder / "config.json", config_dict)
    _write_json(folder / "generation_config.json", generation_config_json(tgt_seq_len))
    tokenizer.save(folder / "tokenizer.json")
    return folder


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _num(value: float):
    """Whole numbers as ints, as upstream's configs write them (``f_min: 20``, ``rope_theta: 10000``)."""
    return int(value) if float(value).is_integer() else value
