"""Where and how models run: device, precision and CPU threads, seeding, and a small cache of loaded models."""
from __future__ import annotations

import functools
import math
import os
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from .errors import OptionError
from .messages import Message
from .options import PRECISION_CHOICES, PRECISIONS  # noqa: F401  (bench/ imports them from here)


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def auto_device_type() -> str:
    """What ``device=auto`` runs on here: "cuda", then Apple's "mps", then "cpu"."""
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if _mps_available() else "cpu"


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes CUDA, then Apple's MPS, then the CPU; an unavailable explicit choice is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        name = auto_device_type()
        if name != "cpu":
            return torch.device(name)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError(Message("error.runtime.bad_device", "device={name} is not a device name (use auto, cpu, "
                                  "cuda, cuda:1 or mps)", name=repr(name))) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(Message("error.runtime.no_cuda", "device=cuda was asked for, but this PyTorch has no CUDA "
                                  "(install a CUDA build of torch, or use device=cpu)"))
    if device.type == "mps" and not _mps_available():
        raise OptionError(Message("error.runtime.no_mps", "device=mps was asked for, but Apple's Metal backend is not "
                                  "available here"))
    if device.type == "cpu":
        use_cpu_threads()
    return device


def weight_dtype(precision: str) -> torch.dtype:
    """Weights stay fp32 for fp32 and amp (autocast computes in bf16); bf16 stores them in bf16; int8 loads
    fp32 weights that :func:`prepare_model` then quantizes."""
    if precision not in PRECISIONS:
        raise OptionError(Message("error.runtime.bad_precision", "precision={precision} is not one of {choices}",
                                  precision=repr(precision), choices=", ".join(PRECISION_CHOICES)))
    return torch.bfloat16 if precision == "bf16" else torch.float32


def default_precision(device: torch.device) -> str:
    """What ``precision=auto`` means on ``device``: int8 on the CPU (it passed the quality gate of
    bench/speed.py on the trained fixtures: the same maps as fp32); bf16 on a CUDA GPU with bf16 units
    (Ampere and later: bench/device_check.py replays the greedy goldens token for token in bf16, and half the
    bytes a step reads); fp32 elsewhere (older NVIDIA cards, which only emulate bf16, and Apple's MPS)."""
    if device.type == "cpu":
        from .quantize import int8_supported

        return "int8" if int8_supported() else "fp32"
    if device.type == "cuda" and cuda_bf16(device):
        return "bf16"
    return "fp32"


def cuda_bf16(device: torch.device) -> bool:
    """Whether the CUDA ``device`` computes in bf16 natively (compute capability 8.0 or later)."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8


def resolve_precision(device: torch.device, precision: str) -> str:
    """``auto`` replaced by :func:`default_precision`; any other value checked against ``device``."""
    precision = (precision or "auto").lower()
    if precision == "auto":
        precision = default_precision(device)
    check_precision(device, precision)
    return precision


def check_precision(device: torch.device, precision: str) -> None:
    """int8 has CPU kernels only: on a GPU it is refused rather than silently run in another precision."""
    weight_dtype(precision)
    if precision == "int8" and device.type != "cpu":
        raise OptionError(Message("error.runtime.int8_on_gpu", "precision=int8 runs on the CPU only, and "
                                  "device={device} was chosen: use device=cpu with int8, or precision=bf16 (or fp32) "
                                  "on {device}", device=device.type))


def quantization(precision: str) -> str | None:
    """What :func:`prepare_model` does to the weights after loading (part of the model cache key)."""
    return "int8" if precision == "int8" else None


def prepare_model(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The loaded (and LoRA-merged) fp32 model made ready for ``precision``: int8 quantizes its linear layers."""
    if precision == "int8":
        from .quantize import quantize_int8

        return quantize_int8(model)
    return model


def encoder_batch(device: torch.device) -> int:
    """How many windows one encoder call takes (engine.passes). On a GPU one window's encoder call is a few
    hundred small kernels that leave the card mostly idle, so the next windows of a pass are encoded with it
    (bench/device_check.py times both). On a CPU the encoder is compute-bound: eight v32-mini windows in one
    call were slower than one by one (2.1 s against 1.6 s fp32, 0.76 s against 0.69 s int8), so one."""
    return 8 if device.type == "cuda" else 1


def autocast(device: torch.device, precision: str):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "amp")


# --- CPU threads -------------------------------------------------------------------------------------------


def physical_cores(cpuinfo: str, allowed: set[int] | None = None) -> int | None:
    """Distinct (physical id, core id) pairs among the processors of a Linux ``/proc/cpuinfo`` text
    (only those in ``allowed``, when given); None when the text does not say (e.g. ARM kernels)."""
    cores: set[tuple[str, str]] = set()
    for block in cpuinfo.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" not in fields or "core id" not in fields:
            continue
        if allowed is not None and fields["processor"].isdigit() and int(fields["processor"]) not in allowed:
            continue
        cores.add((fields.get("physical id", "0"), fields["core id"]))
    return len(cores) or None


def cgroup_cpus(cpu_max: str) -> int | None:
    """CPUs a cgroup v2 ``cpu.max`` text (``"quota period"`` or ``"max period"``) allows, rounded up."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


@functools.cache
def cpu_threads() -> int | None:
    """Threads for CPU inference on Linux: the physical cores this process may run on, no more than its
    cgroup's CPU quota; None elsewhere (torch's own default then stands).

    torch already starts one thread per physical core of the CPUs it may use (its affinity), but does not
    read a container's CPU quota (``docker run --cpus=2`` on a 16-core host), where more threads than
    the quota only queue behind each other.
    """
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None
    text = _read("/proc/cpuinfo")
    cores = (physical_cores(text, allowed) if text else None) or len(allowed)
    quota = cgroup_cpus(_read("/sys/fs/cgroup/cpu.max") or "")
    return min(cores, quota) if quota else cores


_TORCH_DEFAULT_THREADS = torch.get_num_threads()


def use_cpu_threads() -> int:
    """Set torch's CPU threads to :func:`cpu_threads`, unless the user chose a count (OMP_NUM_THREADS,
    MKL_NUM_THREADS, or ``torch.set_num_threads`` before this); returns the thread count in effect."""
    chosen = os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS")
    if not chosen and torch.get_num_threads() == _TORCH_DEFAULT_THREADS:
        wanted = cpu_threads()
        if wanted and wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)
    return torch.get_num_threads()


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
    quantization: str | None = None  # runtime.quantization(precision): int8 models are cached apart


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

    def peek(self, key: ModelKey) -> Any | None:
        """What :meth:`get` would return without loading it: None where it is not loaded (or was dropped)."""
        with self._lock:
            return self._items.get(key)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


MODELS = ModelCache()
