"""Reading the JSON files of checkpoints and adapters defensively.

:func:`read_json` refuses oversized, deeply nested and non-object files; :class:`Fields` reads one JSON object
field by field, checking each value's type (a bool is not a number) and range. Every failure is a
:class:`~engine.errors.ModelError` that names the file and the field, so a damaged or foreign file never gets as far
as allocating memory or raising an unexplained error.
"""
from __future__ import annotations

import json
import math
import stat
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ModelError
from .messages import Message

DAMAGED = Message("error.json.damaged_model", "the checkpoint is damaged or not a Mapperatorinator model")
# The largest published tokenizer.json is about 3 MB; configs are a few kB.
MAX_JSON_BYTES = 32 << 20
# Published files nest three levels deep (tokenizer.json: object > event_ranges list > range object).
MAX_JSON_DEPTH = 16
_MISSING: Any = object()


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def read_json(path: Path, folder_kind: str = "checkpoint", *, max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_JSON_DEPTH) -> dict:
    """The JSON object in ``path``, a file of a checkpoint (or other ``folder_kind``) folder.

    ModelError naming the file when it is missing, not a regular file, larger than ``max_bytes``, unreadable,
    nested deeper than ``max_depth`` or not a JSON object.
    """
    path = Path(path)
    kind = _kind(folder_kind)
    damaged = Message("json.damaged", "it is damaged or not a {kind} file", kind=kind)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ModelError(Message("json.missing", "{path} is missing: {folder} is not a complete {kind}", path=str(path),
                                 folder=str(path.parent), kind=kind)) from None
    except OSError as e:
        raise ModelError(Message("json.unreadable", "{path} cannot be read: {reason}", path=str(path),
                                 reason=str(e))) from None
    if not stat.S_ISREG(info.st_mode):
        raise ModelError(Message("json.not_a_file", "{path} is not a regular file; {damaged}", path=str(path),
                                 damaged=damaged))
    if info.st_size > max_bytes:
        raise ModelError(Message("json.too_large", "{path} is {size:.0f} MB, more than the {limit} MB a {kind} file "
                                 "can be; {damaged}", path=str(path), size=info.st_size / 2**20, limit=max_bytes >> 20,
                                 kind=kind, damaged=damaged))
    try:
        with path.open("rb") as f:
            text = f.read(max_bytes + 1).decode("utf-8")
        data = json.loads(text)
    except RecursionError:
        raise ModelError(_too_deep(path, max_depth, damaged)) from None
    except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: bad JSON, or an integer of 4300+ digits
        raise ModelError(Message("json.unreadable", "{path} cannot be read: {reason}", path=str(path),
                                 reason=str(e))) from None
    if not isinstance(data, dict):
        raise ModelError(Message("json.not_an_object", "{path} holds a JSON {type} where a JSON object is expected; "
                                 "{damaged}", path=str(path), type=_type_name(data), damaged=damaged))
    if _depth(data) > max_depth:
        raise ModelError(_too_deep(path, max_depth, damaged))
    return data


def _too_deep(path: Path, max_depth: int, damaged: Message) -> Message:
    return Message("json.too_deep", "{path} nests JSON more than {depth} levels deep; {damaged}", path=str(path),
                   depth=max_depth, damaged=damaged)


def _kind(folder_kind: str) -> str:
    """The kind of folder a JSON file belongs to, as a message where the app knows it."""
    kinds = {"checkpoint": Message("json.kind_checkpoint", "checkpoint"),
             "LoRA adapter": Message("json.kind_adapter", "LoRA adapter"),
             "training checkpoint": Message("json.kind_training", "training checkpoint")}
    return kinds.get(folder_kind, folder_kind)


def show(value: Any) -> str:
    """A short rendering of a JSON value for an error message."""
    if isinstance(value, (dict, list)):
        return f"a JSON {_type_name(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Fields:
    """Typed, bounded access to the fields of one JSON object; errors name ``where`` (the file) and the field."""

    def __init__(self, data: Mapping[str, Any], where: str, prefix: str = ""):
        self.data, self.where, self.prefix = data, where, prefix

    def error(self, key: str, problem: str) -> ModelError:
        """``where: field<problem>; DAMAGED``; ``problem`` (a message) follows the field's name (`` is missing``)."""
        return ModelError(Message("error.json.field", "{where}: {field}{problem}; {damaged}", where=self.where,
                                  field=f"{self.prefix}{key}", problem=problem, damaged=DAMAGED))

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        """The value as stored; ``default`` when it is absent or null (an error when there is no default)."""
        value = self.data.get(key)
        if value is None:
            if default is _MISSING:
                raise self.error(key, Message("error.json.field_missing", " is missing"))
            return default
        return value

    def integer(self, key: str, lo: int, hi: int, default: Any = _MISSING) -> int:
        return check_int(self.raw(key, default), lo, hi, lambda p: self.error(key, p))

    def number(self, key: str, lo: float, hi: float, default: Any = _MISSING) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, Message("error.json.not_a_number", "={value} is not a number", value=show(value)))
        if not math.isfinite(value):
            raise self.error(key, Message("error.json.not_finite", "={value} is not a finite number", value=value))
        if not lo <= value <= hi:
            raise self.error(key, _out_of_range(value, lo, hi))
        return float(value)

    def flag(self, key: str, default: Any = _MISSING) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, Message("error.json.not_a_flag", "={value} is not true or false", value=show(value)))
        return value

    def text(self, key: str, default: Any = _MISSING, choices: tuple[str, ...] | None = None) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or len(value) > 200:
            raise self.error(key, Message("error.json.not_a_name", "={value} is not a name", value=show(value)))
        if choices is not None and value not in choices:
            raise self.error(key, Message("error.json.not_a_choice", "={value} is not one of {choices}",
                                          value=repr(value), choices=", ".join(map(repr, choices))))
        return value

    def obj(self, key: str, default: Any = _MISSING) -> "Fields":
        value = self.raw(key, default)
        if not isinstance(value, dict):
            raise self.error(key, Message("error.json.field_not_an_object", "={value} is not a JSON object",
                                          value=show(value)))
        return Fields(value, self.where, f"{self.prefix}{key}.")

    def items(self, key: str, default: Any = _MISSING) -> list:
        value = self.raw(key, default)
        if not isinstance(value, list):
            raise self.error(key, not_a_list(value))
        return value


def check_int(value: Any, lo: int, hi: int, error: Callable[[str], ModelError]) -> int:
    """``value`` when it is a whole number (not a bool) in lo..hi, else ``error(problem)``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(Message("error.json.not_a_whole_number", "={value} is not a whole number", value=show(value)))
    if not lo <= value <= hi:
        raise error(_out_of_range(show(value), lo, hi))
    return value


def not_a_list(value: Any) -> Message:
    """The problem of a field that should hold a JSON list (for :meth:`Fields.error`)."""
    return Message("error.json.not_a_list", "={value} is not a JSON list", value=show(value))


def _out_of_range(value: Any, lo: float, hi: float) -> Message:
    return Message("error.json.out_of_range", "={value} is out of range ({lo}..{hi} expected)", value=value, lo=lo,
                   hi=hi)
