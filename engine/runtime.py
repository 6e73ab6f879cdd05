"""Where and how models run: device and precision choice, seeding, and a small cache of loaded models."""
from __future__ import annotations

import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from .errors import OptionError

PRECISIONS = ("fp32", "bf16", "amp")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes CUDA, then Apple's MPS, then the CPU; an unavailable explicit choice is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError(f"device={name!r} is not a device name (use auto, cpu, cuda, cuda:1 or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("device=cuda was asked for, but this PyTorch has no CUDA (install a CUDA build of torch, "
                          "or use device=cpu)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise OptionError("device=mps was asked for, but Apple's Metal backend is not available here")
    return device


def weight_dtype(precision: str) -> torch.dtype:
    """Weights stay fp32 for fp32 and amp (autocast computes in bf16); bf16 stores them in bf16."""
    if precision not in PRECISIONS:
        raise OptionError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast(device: torch.device, precision: str):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "amp")


def new_seed() -> int:
    return random.randint(0, 2 ** 16)


def seeded_generator(seed: int, device: torch.device) -> torch.Generator:
    """A generator for sampling; on the CPU it draws what ``torch.manual_seed(seed)`` would."""
    gen_device = device if device.type == "cuda" else torch.device("cpu")
    return torch.Generator(device=gen_device).manual_seed(seed)


@dataclass(frozen=True)
class ModelKey:
    folder: str  # the checkpoint's local folder (after locating/downloading it)
    revision: str | None
    device: str
    dtype: str
    lora: str | None


class ModelCache:
    """Keeps the last few loaded checkpoints so that repeated jobs (the app) skip reloading."""

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self._items: OrderedDict[ModelKey, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: ModelKey, load) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


MODELS = ModelCache()
