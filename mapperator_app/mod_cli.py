"""``mapperator mod``: MaiMod and rule-check suggestions for a beatmap, grouped by category.

    mapperator mod beatmap_path="Artist - Title (Mapper) [Hard].osu"
    mapperator mod beatmap_path=map.osu model_path=v32 rules=false --json
"""
from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from rich.text import Text

SEVERITY_STYLE = {"problem": "bold red", "warning": "bold yellow", "minor": ""}


def cmd_mod(words: Sequence[str], as_json: bool = False) -> int:
    from rich.console import Console

    import engine

    from .cli import _Bar

    options = engine.parse_overrides(engine.ModOptions, words)
    bar = _Bar("mod")
    try:
        found = engine.mod(options, progress=bar)
    finally:
        bar.close()
    if as_json:
        print(json.dumps([s.to_dict() for s in found], indent=1, ensure_ascii=False))
        return 0
    render(found, Console(highlight=False, soft_wrap=True), options.max_per_category)
    return 0


def render(found: Iterable, console, max_per_category: int = 10) -> None:
    """Suggestions by category (alphabetical), each chronological, then a summary line."""
    from rich.text import Text

    found = list(found)
    by_category: dict[str, list] = defaultdict(list)
    for s in found:
        by_category[s.category].append(s)
    if any(s.surprisal is not None for s in found):
        console.print(Text("(n) is MaiMod's importance: above 100 likely an issue, below 10 likely subjective.",
                           style="dim"))
    for category in sorted(by_category):
        items = by_category[category]
        shown = items[:max_per_category] if max_per_category else items
        console.print(Text(f"\n{category}:", style="bold"))
        for s in shown:
            console.print(line(s))
        if len(shown) < len(items):
            console.print(Text(f"  ... {len(items) - len(shown)} more (max_per_category=0 shows all)", style="dim"))
    console.print(Text("\n" + summary(found)))


def line(s) -> "Text":
    """``(importance) mm:ss:mmm (combo) (group) - message``, the timestamp an osu:// editor link."""
    from rich.text import Text

    style = SEVERITY_STYLE.get(s.severity.value, "")
    text = Text(" ")
    if s.surprisal is not None:
        text.append(f"({s.surprisal / 10:.0f})".rjust(7), style=style)
        text.append(" ")
    stamp = s.timestamp.removesuffix(" - ")
    if stamp:
        url = "osu://edit/" + stamp.replace(" ", "%20")
        text.append(stamp, style=f"green link {url}")
        text.append(" ")
    group = s.details.get("group") if s.details else None
    if group:
        text.append(f"({group}) ")
    if stamp or group:
        text.append("- ")
    text.append(s.message, style=style)
    return text


def summary(found: list) -> str:
    if not found:
        return "Found no suggestions."
    plural = {"problem": "problems", "warning": "warnings", "minor": "minor"}
    severities = [(k, sum(s.severity.value == k for s in found)) for k in plural]
    parts = [f"{n} {k if n == 1 else plural[k]}" for k, n in severities if n]
    ai = sum(s.source.value == "ai" for s in found)
    rules = len(found) - ai
    sources = ([f"{ai} from MaiMod"] if ai else []) + ([f"{rules} from the rule checks"] if rules else [])
    return f"Found {len(found)} suggestion{'s' if len(found) != 1 else ''} ({', '.join(parts)}; {', '.join(sources)})."
