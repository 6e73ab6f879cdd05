"""Checking a generation's options the way ``generate`` does before any weights load, for forms and wizards."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .generation import Plan
    from .options import GenerateOptions


def check_generate_options(options: "GenerateOptions") -> "Plan":
    """Every check ``generate`` runs before loading the model's weights (files, ranges, the model's own
    vocabulary); raises a MapperatorError naming the problem. The plan returned carries the model's tokenizer
    and version preset."""
    from .generation import prepare

    return prepare(options)
