"""``engine.timing``: a song's timing points (offset, BPM, meter and changes) from a model's timing pass or
super timing, as a generation job whose only output is TIMING.

    result = timing("song.mp3", super_timing=True)     # -> TimingResult(timing_points, beatmap, path, ...)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import OptionError

if TYPE_CHECKING:
    from .beatmap import Beatmap, TimingPoint
    from .generation import ProgressCallback


@dataclass
class TimingResult:
    timing_points: list["TimingPoint"]
    beatmap: "Beatmap"  # the timing points in an otherwise empty beatmap
    path: Path | None  # the .osu written (None when no output_path was given)
    version: str
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def uninherited(self) -> list["TimingPoint"]:
        return [tp for tp in self.timing_points if tp.uninherited]


def timing(
    audio_path: str | Path,
    super_timing: bool = False,
    model: str = "v32",
    *,
    device: str = "auto",
    precision: str = "fp32",
    output_path: str | Path | None = None,
    progress: "ProgressCallback | None" = None,
    cancel=None,
    **options,
) -> TimingResult:
    """Find a song's timing points (offset, BPM, meter and changes) with a model's timing pass or super timing.

    ``options`` are GenerateOptions fields (seed, timer_iterations, timer_bpm_threshold, timer_cfg_scale, ...).
    With ``output_path`` a timing-only .osu is written: into that folder (named like a generated map, the song
    copied beside it), or, for a path ending in ``.osu``, as that file (a file it replaces is kept as ``.bak``).
    """
    import time as _time

    from .generation import write_outputs, run_job
    from .options import GenerateOptions, build_options

    started = _time.perf_counter()
    osu_file = Path(output_path).expanduser() if output_path and str(output_path).lower().endswith(".osu") else None
    # build_options: unknown names and bad values are OptionErrors, before anything loads or is written
    opts = build_options(GenerateOptions, {
        "audio_path": str(audio_path), "model_path": model, "super_timing": super_timing, "device": device,
        "precision": precision, "output_type": ("TIMING",),
        "output_path": str(osu_file.parent if osu_file else output_path) if output_path else None,
        **options})
    if model == "v30":
        raise OptionError("v30 has no timing context to generate timing with; use model v31, v32 or v32-mini")
    plan, job, beatmap = run_job(opts, progress, cancel)
    report = job.report
    beatmap.metadata = dataclasses.replace(beatmap.metadata, version="Timing")
    path = None
    if osu_file is not None:
        from .beatmap import write_beatmap

        report.stage("Writing the timing", 0.99)
        try:
            write_beatmap(beatmap, osu_file)
        except OSError as e:
            raise OptionError(f"could not write {osu_file}: {e.strerror or e}; nothing was written") from None
        path = osu_file
    elif output_path:
        report.stage("Writing the timing", 0.99)
        path, _ = write_outputs(job, beatmap, dataclasses.replace(job.opts, export_osz=False))
    report.stage("Done", 1.0)
    return TimingResult(list(beatmap.timing_points), beatmap, path, plan.preset.name,
                        _time.perf_counter() - started, job.warnings)
