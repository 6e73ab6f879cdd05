"""``mapperator timing``: a song's timing points as a table, optionally written as a timing-only .osu."""
from __future__ import annotations

from typing import Sequence


def cmd_timing(words: Sequence[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    import engine

    from .cli import _Bar

    cmd = engine.parse_overrides(engine.TimingOptions, words)
    if not cmd.audio_path:
        raise engine.OptionError("audio_path is required, e.g. mapperator timing audio_path=song.mp3")
    bar = _Bar("timing")
    try:
        result = engine.timing(cmd, progress=bar)
    finally:
        bar.close()
    from pathlib import Path

    table = Table(title=f"Timing of {Path(cmd.audio_path).name} ({result.version})")
    for column in ("offset (ms)", "BPM", "meter"):
        table.add_column(column, justify="right")
    for tp in result.uninherited:
        table.add_row(f"{tp.time:g}", f"{tp.bpm:.3f}".rstrip("0").rstrip("."), f"{tp.meter}/4")
    console = Console()
    console.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if result.path:
        console.print(f"Wrote {result.path}")
    return 0
