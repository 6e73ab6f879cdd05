"""Diffusion-refined object positions (osu-diffusion-v2, used by V29 with ``generate_positions=true``).

The seam: :func:`refine_positions` (stream, conditioning, options, progress, cancel) -> stream.
Modules: ``safe_pickle`` (reading the published pickles without running code), ``checkpoint``
(conversion to safetensors + JSON in the cache, loading), ``classes`` (conditioning vector),
``dit`` (the model), ``schedule`` (respaced sampler), ``sequence`` (events <-> object sequence),
``refine`` (the windowed sampling loop).
"""
from .checkpoint import DEFAULT_REPO, DiffusionModel, load_diffusion_model
from .classes import ClassVocabulary
from .refine import DiffusionConditioning, DiffusionOptions, refine_positions
from .sequence import build_sequence

__all__ = ["DEFAULT_REPO", "ClassVocabulary", "DiffusionConditioning", "DiffusionModel", "DiffusionOptions",
           "build_sequence", "load_diffusion_model", "refine_positions"]
