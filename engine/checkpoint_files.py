"""The one rule for whether a checkpoint folder is complete (loadable), partial (an interrupted download) or
missing; the loader, the downloader and the app's Models tab all ask it."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

REQUIRED_FILES = ("config.json", "tokenizer.json")


class CheckpointState(str, Enum):
    COMPLETE = "complete"  # loadable: config, tokenizer and every weights file
    PARTIAL = "partial"  # some of its files are here (an interrupted download): downloading again finishes it
    MISSING = "missing"


def checkpoint_state(folder: str | Path) -> CheckpointState:
    """Whether a checkpoint folder can be loaded, by the loader's own rule: ``config.json``, ``tokenizer.json``
    and weights: ``model.safetensors``, the shards a ``model.safetensors.index.json`` names (all of them), or
    ``model-*.safetensors`` shards without an index."""
    folder = Path(folder)
    if not folder.is_dir():
        return CheckpointState.MISSING
    names = {p.name for p in folder.iterdir()}
    has_any = any(n in names for n in REQUIRED_FILES) or any(n.startswith("model") and ".safetensors" in n
                                                              for n in names)
    if not has_any:
        return CheckpointState.MISSING
    if all(n in names for n in REQUIRED_FILES) and _weights_complete(folder, names):
        return CheckpointState.COMPLETE
    return CheckpointState.PARTIAL


def _weights_complete(folder: Path, names: set[str]) -> bool:
    if "model.safetensors.index.json" in names:
        try:
            shards = set(json.loads((folder / "model.safetensors.index.json").read_text("utf-8"))["weight_map"]
                         .values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False  # unreadable index: the loader refuses it too; a new download replaces it
        return bool(shards) and all(isinstance(s, str) and s in names for s in shards)
    return "model.safetensors" in names or any(n.startswith("model-") and n.endswith(".safetensors") for n in names)
