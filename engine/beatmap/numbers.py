"""Numbers the way osu! reads and writes them.

Reading follows osu!lazer's ``Parsing`` helpers: invariant culture, ASCII digits only, surrounding
whitespace allowed, ``NaN`` only where a caller allows it, and every value limited to the int32
range (coordinates to +-131072). Python's own ``int``/``float`` are more permissive (``1_000``,
Unicode digits, ``inf``), so tokens are matched against a strict pattern first.

Writing follows osu!stable (.NET Framework): doubles print with 15 significant digits ("G15"),
which is what every stable-written map contains (``329.67032967033``, ``99.9999999999999``). A
value that 15 digits cannot reproduce exactly (a map written by Python or lazer) is printed with
the shortest repr that round-trips instead, so writing never changes a value.
"""
from __future__ import annotations

import math
import re

from ..messages import Message

MAX_PARSE_VALUE = 2_147_483_647
MAX_COORDINATE_VALUE = 131_072

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_int(text: str, limit: int = MAX_PARSE_VALUE) -> int:
    """An integer as .NET ``int.Parse`` accepts it, within +-``limit``."""
    token = text.strip()
    if not _INT.fullmatch(token):
        raise ValueError(Message("number.not_integer", "{text} is not an integer", text=repr(text.strip()[:40])))
    value = int(token)
    if abs(value) > limit:
        raise ValueError(Message("number.out_of_range", "{value} is out of range (limit {limit})", value=str(value),
                                 limit=str(limit)))
    return value


def parse_float(text: str, limit: float = MAX_PARSE_VALUE, allow_nan: bool = False) -> float:
    """A number as .NET ``double.Parse`` accepts it, within +-``limit``."""
    token = text.strip()
    if token.lower() == "nan":
        if not allow_nan:
            raise ValueError(Message("number.nan", "NaN is not allowed here"))
        return math.nan  # one shared object, so that equal beatmaps compare equal
    if not _FLOAT.fullmatch(token):
        raise ValueError(Message("number.not_a_number", "{text} is not a number", text=repr(text.strip()[:40])))
    value = float(token)
    if not abs(value) <= limit:
        raise ValueError(Message("number.out_of_range", "{value} is out of range (limit {limit})", value=token,
                                 limit=f"{limit:g}"))
    return value


def format_number(value: float | int | bool) -> str:
    """Format a value the way osu!stable writes it (see the module docstring)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "NaN"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.15g}"
    if float(text) != value:
        text = repr(value)
    return text.replace("e", "E")
