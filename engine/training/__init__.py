"""Training and LoRA fine-tuning of Mapperatorinator models.

- :mod:`.options`: :class:`TrainOptions` (``mapperator train key=value ...``, ``config=FILE.yaml``)
- :mod:`.dataset`: datasets on disk (Mapperator console app ``mmrs``, folders of ``.osz``, Songs folders)
- :mod:`.examples`: one audio window + decoder tokens and labels, exactly as upstream builds them
- :mod:`.augment`: the random choices behind an example (seeded, scripted or none)
- :mod:`.stream`: sets -> examples -> batches, skipping broken items with a reason
- :mod:`.vocab`: a new vocabulary laid out as the version's published one
- :mod:`.loss`: upstream's weighted, label-smoothed cross-entropy and token accuracy
- :mod:`.trainer`: the run (AdamW, warm-up/decay, clipping, mixed precision, accelerate, checkpoints, resume)
- :mod:`.export`: the published checkpoint format
"""
from __future__ import annotations

import logging
from typing import Sequence

from .options import TrainOptions, parse_train_words
from .trainer import TrainProgress, TrainResult, train

__all__ = ["TrainOptions", "TrainProgress", "TrainResult", "parse_train_words", "train", "train_from_words"]

log = logging.getLogger(__name__)


def train_from_words(words: Sequence[str]) -> int:
    """``mapperator train key=value ...``: train with a progress bar and print where the result is."""
    options = parse_train_words(words)
    result = train(options, show_progress=True)
    if result.checkpoint is not None:
        kind = "LoRA adapter" if options.enable_lora else "model"
        where = result.checkpoint / "lora" if options.enable_lora else result.checkpoint
        print(f"trained {result.steps} steps in {result.seconds:.0f} s; {kind} saved in {where}")
    if result.loss is not None:
        print(f"last training loss {result.loss:.4f}, token accuracy {result.accuracy:.3f}")
    if result.eval:
        print(f"evaluation loss {result.eval['test_loss']:.4f}, token accuracy {result.eval['test_accuracy']:.3f}")
    if result.skipped.total:
        print(result.skipped.summary())
    return 0
