"""The four game modes' names (the one table), and reading a mode from a number or a name."""
from __future__ import annotations

from typing import Any

from .errors import OptionError
from .messages import Message

GAMEMODE_NAMES = {0: "osu!", 1: "taiko", 2: "catch", 3: "mania"}
_ALIASES = {"osu": 0, "std": 0, "standard": 0, "osu!taiko": 1, "fruits": 2, "ctb": 2, "osu!catch": 2,
            "osu!mania": 3, **{name: mode for mode, name in GAMEMODE_NAMES.items()}}


def gamemode_index(value: Any) -> int | None:
    """0-3 from a number, a digit or a mode name (osu!/std, taiko, catch/fruits/ctb, mania); None when blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        pass
    elif isinstance(value, (int, float)) and value in GAMEMODE_NAMES:
        return int(value)
    else:
        text = str(value).strip().lower()
        if text.isdigit() and int(text) in GAMEMODE_NAMES:
            return int(text)
        if text in _ALIASES:
            return _ALIASES[text]
    raise OptionError(Message("error.gamemodes.unknown", "game mode {value} is not one of {names} (or 0-3)",
                              value=repr(value), names=", ".join(GAMEMODE_NAMES.values())))
