"""Between event streams and decoder token ids: conditioning tokens, prompts, and decoding output.

- :mod:`.conditions`: :class:`Conditions` -> class tokens and embedder tensors
- :mod:`.streams`: :class:`ContextStream`, window encode/decode, absorbing generated ids, finishing
- :mod:`.builder`: template choice, special tokens, the per-window prompt, stop ids
- :mod:`.session`: :class:`GenerationRun`, the ordered calls of one generation pass

Token ids are plain Python ``list[int]``; only the embedder inputs are torch tensors.
"""
from .builder import ContextPlan, PromptBuilder, find_context, left_pad, plan_contexts, required_special_tokens, stop_ids
from .conditions import Conditions, Embeds, class_tokens, model_kwargs, song_position, unknown_descriptors
from .session import Call, GenerationRun, teacher_forced_prompts
from .streams import (
    Absorber,
    ContextStream,
    WindowCodec,
    columns_to_positions,
    drop_before,
    drop_trailing_after,
    finish_stream,
    rescale_positions,
    window_range,
)

__all__ = [
    "Absorber",
    "Call",
    "Conditions",
    "ContextPlan",
    "ContextStream",
    "Embeds",
    "GenerationRun",
    "PromptBuilder",
    "WindowCodec",
    "class_tokens",
    "columns_to_positions",
    "drop_before",
    "drop_trailing_after",
    "find_context",
    "finish_stream",
    "left_pad",
    "model_kwargs",
    "plan_contexts",
    "required_special_tokens",
    "rescale_positions",
    "song_position",
    "stop_ids",
    "teacher_forced_prompts",
    "unknown_descriptors",
    "window_range",
]
