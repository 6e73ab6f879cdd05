"""Texts the engine shows people (progress stages, rule and MaiMod messages, errors) with a stable id.

A :class:`Message` *is* its English text (a ``str``), so logs, the CLI and ``str(error)`` read as
before; it also carries ``message_id`` and ``message_args``, so the app can show it in the user's
language from its catalogue (``mapperator_app/locales``, where ``message_id`` is the key and the English
template is the same text) and ``--json`` can print the id beside the text.
"""
from __future__ import annotations

import string
from typing import Any


class Message(str):
    """``Message("stage.loading_song", "Loading the song")``; ``Message("rule.x", "{n} objects", n=3)``.

    ``template`` uses ``str.format`` fields named after ``args``; arguments may be numbers, texts or
    other messages (rendered in the same language by the app).
    """

    message_id: str
    message_args: dict[str, Any]
    template: str

    def __new__(cls, message_id: str, template: str, /, **args: Any) -> "Message":
        self = super().__new__(cls, template.format(**args) if args else template)
        self.message_id, self.message_args, self.template = message_id, args, template
        return self

    def fill(self, **args: Any) -> "Message":
        """This message's template with ``args`` (those it names; others are left out)."""
        names = {name for _, name, _, _ in string.Formatter().parse(self.template) if name}
        return Message(self.message_id, self.template, **{k: v for k, v in args.items() if k in names})

    def __reduce__(self):  # pickles (worker results, multiprocessing) keep the id
        return (_rebuild, (self.message_id, str(self), self.message_args, self.template))

    def to_json(self) -> dict[str, Any]:
        """``{"id": ..., "args": {...}}`` with nested messages as their English text."""
        return {"id": self.message_id, "args": {k: str(v) if isinstance(v, Message) else v
                                                for k, v in self.message_args.items()}}


def _rebuild(message_id: str, text: str, args: dict[str, Any], template: str = "") -> Message:
    message = str.__new__(Message, text)
    message.message_id, message.message_args, message.template = message_id, args, template or text
    return message


LIST_ID = "_list"  # not a catalogue key: the app renders each item and joins them


def joined(items: list[Any], separator: str = ", ") -> Message:
    """Several texts shown as one, ``separator`` between them (each rendered in the app's language)."""
    message = str.__new__(Message, separator.join(str(item) for item in items))
    message.message_id, message.message_args = LIST_ID, {"items": list(items), "separator": separator}
    message.template = str(message)
    return message


def message_id(text: Any) -> str | None:
    """The id of a :class:`Message` (None for plain text)."""
    return getattr(text, "message_id", None)
