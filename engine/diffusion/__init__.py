"""Diffusion-refined object positions (osu-diffusion-v2, used by V29 with ``generate_positions=true``).

The seam: :func:`refine_positions` (stream, conditioning, options, progress, cancel) -> stream.
Modules: ``safe_pickle`` (reading the published pickles without running code), ``checkpoint``
(conversion to safetensors + JSON in the cache, loading), ``classes`` (conditioning vector),
``dit`` (the model), ``precision`` (the DiT in bf16 or int8, and which precision a job runs it in),
``schedule`` (respaced sampler), ``sequence`` (events <-> object sequence), ``refine`` (the windowed
sampling loop).
"""
from .checkpoint import DEFAULT_REPO, DiffusionModel, load_diffusion_model
from .classes import ClassVocabulary
from .precision import DIFFUSION_PRECISIONS, diffusion_precision
from .refine import DiffusionConditioning, DiffusionOptions, cached_diffusion_model, refine_positions
from .sequence import build_sequence

__all__ = ["DEFAULT_REPO", "DIFFUSION_PRECISIONS", "ClassVocabulary", "DiffusionConditioning", "DiffusionModel",
           "DiffusionOptions", "build_sequence", "cached_diffusion_model", "diffusion_precision",
           "load_diffusion_model", "refine_positions"]
