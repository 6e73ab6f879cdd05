"""Reading osu-diffusion's ``model_ema.pkl`` and ``tokenizer.pkl`` without running pickled code.

Both files are ``torch.save`` archives of plain state dicts (written by accelerate's
``save_custom_state``): the model's is an ``OrderedDict`` of float tensors, the tokenizer's a dict of
ints, strings, lists and dicts. No class of osu-diffusion itself is pickled, so nothing has to be
imported or impersonated. Two gates keep anything else out:

1. Before unpickling, every global the archive's pickle names is checked against
   :data:`ALLOWED_GLOBALS` (the three the model file needs; the tokenizer file needs none). Any other
   name, even one torch itself would accept, is refused with a :class:`ModelError` naming it and the file.
2. The archive is then read with ``torch.load(weights_only=True)`` inside an empty
   ``torch.serialization.safe_globals`` scope, torch's restricted unpickler, as a second line.

A file that is not a complete torch zip archive (cut off by a broken download, or a legacy format)
is refused before anything is unpickled.
"""
from __future__ import annotations

import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from ..messages import Message

# "module name" as the GLOBAL opcode spells it. Storage classes are the tensor dtypes an EMA may be saved in.
ALLOWED_GLOBALS = frozenset({
    "collections OrderedDict",
    "torch._utils _rebuild_tensor_v2",
    "torch FloatStorage",
    "torch HalfStorage",
    "torch BFloat16Storage",
})
# Opcodes that name a global in some other way than GLOBAL (protocol 4+ or protocol 0/1 forms).
NAMING_OPCODES = frozenset({"STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"})


def _pickle_bytes(path: Path) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                raise ModelError(Message("error.diffusion.no_data_pkl", "{path}: not a PyTorch checkpoint archive (no "
                                         "data.pkl inside)", path=str(path)))
            bad = archive.testzip()
            if bad is not None:
                raise ModelError(Message("error.diffusion.bad_checksum", "{path}: damaged ({member} fails its "
                                         "checksum); download the file again", path=str(path), member=bad))
            return archive.read(names[0])
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        if isinstance(e, OSError) and not path.exists():
            raise ModelError(Message("error.diffusion.file_not_found", "{path}: file not found", path=str(path))) from e
        raise ModelError(Message("error.diffusion.not_zip", "{path}: incomplete or not a PyTorch zip checkpoint "
                                 "({reason}); download the file again", path=str(path), reason=str(e))) from e


def check_globals(path: Path, data: bytes) -> None:
    """Refuse a pickle naming anything outside :data:`ALLOWED_GLOBALS` (raises ModelError)."""
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL" and arg not in ALLOWED_GLOBALS:
                raise ModelError(Message("error.diffusion.refused_global", "{path}: refused to load: it names {name}, "
                                         "which a diffusion checkpoint never contains (only tensors and plain values "
                                         "are allowed)", path=str(path), name=repr(arg.replace(" ", "."))))
            if op.name in NAMING_OPCODES:  # e.g. protocol 4's STACK_GLOBAL, which torch.save never writes by default
                raise ModelError(Message("error.diffusion.refused_opcode", "{path}: refused to load: its pickle names "
                                         "a global through {opcode}, which torch.save's archives of plain state dicts "
                                         "never do", path=str(path), opcode=op.name))
    except ValueError as e:  # pickletools on a truncated or garbled stream
        raise ModelError(Message("error.diffusion.damaged_pickle", "{path}: the pickle inside is damaged ({reason}); "
                                 "download the file again", path=str(path), reason=str(e))) from e


def load_plain_pickle(path: str | Path) -> Any:
    """The object in a ``torch.save`` archive of plain values and tensors, read on the CPU."""
    path = Path(path)
    check_globals(path, _pickle_bytes(path))
    try:
        with torch.serialization.safe_globals([]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelError(Message("error.diffusion.refused", "{path}: refused to load: {reason}", path=str(path),
                                 reason=str(e))) from e
    except (RuntimeError, EOFError, ValueError) as e:
        raise ModelError(Message("error.diffusion.unreadable", "{path}: could not be read ({reason}); download the "
                                 "file again", path=str(path), reason=str(e))) from e
