"""``engine.timing``: a song's timing points (offset, BPM, meter and changes) from a model's timing pass or
super timing, as a generation job whose only output is TIMING.

    result = timing(TimingOptions(audio_path="song.mp3", super_timing=True))  # -> TimingResult(timing_points, ...)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import OptionError
from .messages import Message
from .presets import DEFAULT_VERSION

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


@dataclass(frozen=True)
class TimingOptions:
    """What :func:`timing` and ``mapperator timing`` accept (the GenerateOptions names for the same things)."""

    audio_path: str | None = None  # the song
    model_path: str = DEFAULT_VERSION  # v32, v32-mini, v31 (v30 has no timing context), a folder or a repo id
    super_timing: bool = False  # vote over many shifted timing passes: slower, finds tempo changes
    output_path: str | None = None  # a folder (map named as usual, song copied beside it) or an .osu path
    device: str = "auto"  # auto, cpu, cuda, mps
    precision: str = "auto"  # auto (int8 on a CPU, bf16 on a recent NVIDIA GPU, else fp32), fp32, bf16, amp, int8 (CPU only)
    seed: int | None = None  # sampling seed; unset: a random one
    timer_iterations: int = 20  # super timing: timing passes to vote over
    timer_bpm_threshold: float = 0.1  # super timing: share of the votes a tempo needs to count as measured
    timer_cfg_scale: float = 1.0  # super timing: guidance of its passes
    timing_leniency: int = 20  # ms a beat may be off its red line's grid before a new red line starts

    def __post_init__(self):  # the same checks as generation's, before anything loads or is written
        from .options import GenerateOptions, build_options

        build_options(GenerateOptions, dataclasses.asdict(self))


def timing(options: TimingOptions, progress: "ProgressCallback | None" = None, cancel=None) -> TimingResult:
    """Find a song's timing points (offset, BPM, meter and changes) with a model's timing pass or super timing.

    With ``output_path`` a timing-only .osu is written: into that folder (named like a generated map, the song
    copied beside it), or, for a path ending in ``.osu``, as that file (a file it replaces is kept as ``.bak``).
    """
    import time as _time

    from .generation import write_outputs, run_job
    from .options import GenerateOptions, build_options

    started = _time.perf_counter()
    if not options.audio_path:
        raise OptionError(Message("error.timing.audio_required", "audio_path is required, e.g. mapperator timing "
                                  "audio_path=song.mp3"))
    output_path = options.output_path
    osu_file = Path(output_path).expanduser() if output_path and str(output_path).lower().endswith(".osu") else None
    opts = build_options(GenerateOptions, {
        **dataclasses.asdict(options), "output_type": ("TIMING",),
        "output_path": str(osu_file.parent if osu_file else output_path) if output_path else None})
    if options.model_path == "v30":
        raise OptionError(Message("error.timing.v30_no_timing", "v30 has no timing context to generate timing with; "
                                  "use model v31, v32 or v32-mini"))
    plan, job, beatmap = run_job(opts, progress, cancel)
    report = job.report
    beatmap.metadata = dataclasses.replace(beatmap.metadata, version="Timing")
    path = None
    if osu_file is not None:
        from .beatmap import write_beatmap
        from .beatmap.files import os_reason

        report.stage(Message("stage.writing_timing", "Writing the timing"), 0.99)
        try:
            write_beatmap(beatmap, osu_file)
        except OSError as e:
            raise OptionError(Message("error.timing.write_failed", "could not write {path}: {reason}; nothing was "
                                      "written", path=str(osu_file), reason=os_reason(e))) from None
        path = osu_file
    elif output_path:
        report.stage(Message("stage.writing_timing", "Writing the timing"), 0.99)
        path, _ = write_outputs(job, beatmap, dataclasses.replace(job.opts, export_osz=False))
    report.stage(Message("stage.done", "Done"), 1.0)
    return TimingResult(list(beatmap.timing_points), beatmap, path, plan.preset.name,
                        _time.perf_counter() - started, job.warnings)
