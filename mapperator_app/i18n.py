"""The app in its users' languages: one flat JSON catalogue per language, and picking the language.

Catalogues live in ``mapperator_app/locales/<lang>.json``: ``{"key": "text with {placeholders}"}``, keys
dotted by area (``generate.audio``, ``progress.queued``, ``rule.unsnapped``). ``en.json`` is the reference:
every key the code uses is there, and every other catalogue has exactly its keys and placeholders
(``tests/test_i18n.py``). A missing or empty text falls back to English, a missing key to the key itself.

Code marks catalogue keys so the tests can find them: ``t(KEY, lang, **args)`` renders a text on the
server; ``ui.L(KEY)`` is a label Gradio translates in the page; ``K(KEY)`` only marks a key that is
chosen at run time (e.g. a category's key); the engine's :class:`engine.messages.Message` ids are keys too.

Nothing here imports Gradio, so the wizard and the CLI use it as well.
"""
from __future__ import annotations

import json
import locale
import logging
import os
import string
import sys
from functools import lru_cache
from importlib.resources import files
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)

DEFAULT = "en"
#: Every language the app ships; each needs ``locales/<lang>.json`` with all of en.json's keys.
LANGUAGES = ("en", "fr", "tr", "pt-BR", "nl", "th", "es", "de", "ru", "pl", "zh-CN", "ja", "ko")
#: Each language in its own words, for the picker (never translated).
LANGUAGE_NAMES = {
    "en": "English", "fr": "Français", "tr": "Türkçe", "pt-BR": "Português (Brasil)", "nl": "Nederlands",
    "th": "ไทย", "es": "Español", "de": "Deutsch", "ru": "Русский", "pl": "Polski", "zh-CN": "简体中文",
    "ja": "日本語", "ko": "한국어",
}
AUTO = "auto"  # the setting that follows the system's (or browser's) language
#: Languages writing decimals with a comma, as osu! shows star ratings and times in them.
DECIMAL_COMMA = frozenset({"fr", "tr", "pt-BR", "nl", "es", "de", "ru", "pl"})

_LOCALES = files("mapperator_app") / "locales"


def K(key: str) -> str:
    """Mark ``key`` as a catalogue key chosen at run time (the key itself is returned)."""
    return key


@lru_cache(maxsize=None)
def catalogue(lang: str) -> Mapping[str, str]:
    """The texts of ``lang`` (empty when it has no catalogue; a damaged file is logged, never raised)."""
    path = _LOCALES / f"{lang}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("ignoring the unreadable catalogue %s: %s", path, e)
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


class _Formatter(string.Formatter):
    """``str.format`` whose numbers use the language's decimal mark (``4,81★`` in French)."""

    def __init__(self, lang: str):
        self.comma = lang in DECIMAL_COMMA

    def format_field(self, value: Any, format_spec: str) -> str:
        text = super().format_field(value, format_spec)
        if self.comma and isinstance(value, float) and not isinstance(value, bool):
            text = text.replace(",", "\u202f").replace(".", ",")
        return text


def text(key: str, lang: str = DEFAULT) -> str:
    """The raw text of ``key`` in ``lang`` (English, then the key itself, when missing)."""
    return catalogue(lang).get(key) or catalogue(DEFAULT).get(key) or key


def t(key: str, lang: str = DEFAULT, /, **args: Any) -> str:
    """``key``'s text in ``lang`` with ``args`` filled in; falls back to English when the translation is
    missing or does not fit the arguments (a translator's slip never breaks a page)."""
    for candidate in (catalogue(lang).get(key), catalogue(DEFAULT).get(key)):
        if not candidate:
            continue
        try:
            return _Formatter(lang).format(candidate, **args)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            log.warning("catalogue text %s/%s does not fit %s: %s", lang, key, sorted(args), e)
            lang = DEFAULT
    return key


def number(value: float, lang: str = DEFAULT, spec: str = ".2f") -> str:
    """A number as ``lang`` writes it (decimal mark only; osu! groups no digits)."""
    return _Formatter(lang).format_field(float(value), spec)


def render(message: Any, lang: str = DEFAULT) -> str:
    """An engine message (:class:`engine.messages.Message`: id and arguments) in ``lang``; any other
    text as it is. Arguments that are messages themselves are rendered too."""
    message_id = getattr(message, "message_id", None)
    if message_id == "_list" and lang != DEFAULT:  # engine.messages.joined
        args = message.message_args
        return str(args.get("separator", ", ")).join(render(item, lang) for item in args.get("items", ()))
    if not message_id or lang == DEFAULT or not catalogue(DEFAULT).get(message_id):
        return str(message)
    args = {k: render(v, lang) if getattr(v, "message_id", None) else v
            for k, v in (getattr(message, "message_args", None) or {}).items()}
    return t(message_id, lang, **args)


def error_text(error: BaseException, lang: str = DEFAULT) -> str:
    """A MapperatorError's message in ``lang`` (its English text when it carries no message id)."""
    first = error.args[0] if error.args else None
    if getattr(first, "message_id", None):
        return render(first, lang)
    return str(error)


# --- which language --------------------------------------------------------------------------------------


def match(tag: str | None) -> str | None:
    """Our language for a BCP 47 / POSIX tag (``fr-CA``, ``pt_PT.UTF-8``, ``zh-Hant``), or None."""
    if not tag:
        return None
    tag = tag.split(".")[0].split("@")[0].replace("_", "-").strip()
    if not tag or tag in ("C", "POSIX", "*"):
        return None
    lower = tag.lower()
    for lang in LANGUAGES:
        if lower == lang.lower():
            return lang
    primary = lower.split("-")[0]
    for lang in LANGUAGES:
        if lang.lower().split("-")[0] == primary:
            return lang
    return None


def accept_language(header: str | None) -> list[str]:
    """The tags of an ``Accept-Language`` header, most wanted first."""
    tags: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        if tag and weight > 0:
            tags.append((-weight, i, tag))
    return [tag for _, _, tag in sorted(tags)]


def first_match(tags: Iterable[str]) -> str | None:
    for tag in tags:
        found = match(tag)
        if found is not None:
            return found
    return None


def system_language() -> str:
    """The operating system's language: ``LANGUAGE``/``LC_ALL``/``LC_MESSAGES``/``LANG``, Windows' user
    locale, or the C library's; English when none is ours."""
    env = [os.environ.get(name, "") for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")]
    tags = [tag for value in env if value for tag in value.split(":")]
    if sys.platform == "win32":
        try:
            import ctypes

            buffer = ctypes.create_unicode_buffer(85)
            if ctypes.windll.kernel32.GetUserDefaultLocaleName(buffer, len(buffer)):
                tags.append(buffer.value)
        except (AttributeError, OSError):
            pass
    try:
        tags.append(locale.getlocale()[0] or "")
    except ValueError:
        pass
    return first_match(tags) or DEFAULT


def resolve(setting: str | None, accept: str | None = None) -> str:
    """The language to show: the setting when it names one of ours, else the browser's ``Accept-Language``,
    else the system's."""
    chosen = match(setting) if setting and setting != AUTO else None
    if chosen is not None:
        return chosen
    return first_match(accept_language(accept)) or system_language()
