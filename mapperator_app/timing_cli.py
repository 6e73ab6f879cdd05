"""``mapperator timing``: a song's timing points as a table, optionally written as a timing-only .osu."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from engine import DEFAULT_VERSION


@dataclass(frozen=True)
class TimingCommand:
    audio_path: str | None = None
    model_path: str = DEFAULT_VERSION
    super_timing: bool = False
    output_path: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    seed: int | None = None
    timer_iterations: int = 20
    timer_bpm_threshold: float = 0.1
    timer_cfg_scale: float = 1.0
    timing_leniency: int = 20

    def __post_init__(self):  # the engine's checks of these options, before a progress bar shows
        import engine

        engine.build_options(engine.GenerateOptions, dataclasses.asdict(self))


def cmd_timing(words: Sequence[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    import engine

    from .cli import _Bar

    cmd = engine.parse_overrides(TimingCommand, words)
    if not cmd.audio_path:
        raise engine.OptionError("audio_path is required, e.g. mapperator timing audio_path=song.mp3")
    extra = {k: v for k, v in dataclasses.asdict(cmd).items()
             if k not in ("audio_path", "model_path", "super_timing", "output_path", "device", "precision")}
    bar = _Bar("timing")
    try:
        result = engine.timing(cmd.audio_path, cmd.super_timing, cmd.model_path, device=cmd.device,
                               precision=cmd.precision, output_path=cmd.output_path, progress=bar, **extra)
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
