"""Timing a song: the model's timing pass, and "super timing" — many passes over shifted windows whose
beat votes are smoothed into one beat grid.

    result = timing("song.mp3", super_timing=True)     # -> TimingResult(timing_points, beatmap, path, ...)

Super timing follows upstream's ``SuperTimingGenerator``: each pass shifts the song by a random offset
(upstream's global NumPy stream, seeded), generates the TIMING context in non-overlapping windows (all
windows of a pass in one batch), and adds its beats, measures and timing points to millisecond histograms.
The histograms are smoothed, peaks found, a tempo read around each peak, and beats are walked outwards
from the strongest peaks; finally measures are placed by the evidence of the measure votes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .events import BEAT_TYPES, EventStream
from .tokenizer import ContextType, Event, EventType

if TYPE_CHECKING:
    from .beatmap import Beatmap, TimingPoint
    from .generation import ProgressCallback

C = ContextType
MS_PER_STEP = 10


# --- beat votes ------------------------------------------------------------------------------------------


@dataclass
class BeatVotes:
    """Millisecond histograms of where passes put beats, plus the beat spacings and measure lengths seen."""

    length_ms: int
    beats: np.ndarray = None
    measures: np.ndarray = None
    timing_points: np.ndarray = None
    spacings: list[tuple[int, int]] = field(default_factory=list)  # (time, beat length in 10 ms steps)
    measure_lengths: list[tuple[int, int]] = field(default_factory=list)  # (measure start, beats in it)

    def __post_init__(self):
        for name in ("beats", "measures", "timing_points"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(self.length_ms, dtype=int))

    def add_pass(self, groups, offset_ms: int) -> None:
        """Count one pass's beat groups; ``offset_ms`` is how far that pass shifted the song."""
        last_beat = last_type = last_measure = None
        beats_in_measure = None
        for group in groups:
            time = group.time - offset_ms
            if not 0 <= time < self.length_ms or group.type not in BEAT_TYPES:
                continue
            if group.type == EventType.BEAT:
                self.beats[time] += 1
                if beats_in_measure is not None:
                    beats_in_measure += 1
            elif group.type == EventType.MEASURE:
                self.measures[time] += 1
                if beats_in_measure is not None:
                    self.measure_lengths.append((last_measure, beats_in_measure))
                last_measure, beats_in_measure = time, 1
            else:  # a timing point starts a measure too
                self.timing_points[time] += 1
                last_measure, beats_in_measure = time, 1
            # The gap into a new timing section says nothing about the tempo.
            new_section = group.type == EventType.TIMING_POINT and last_type != EventType.TIMING_POINT
            if last_beat is not None and last_beat != time and not new_section:
                steps = (time - last_beat) // MS_PER_STEP
                if 20 < steps < 100:
                    self.spacings.append((last_beat, steps))
            last_beat, last_type = time, group.type


# --- from votes to a beat grid ---------------------------------------------------------------------------


@dataclass
class _Peak:
    time: int
    prominence: float
    bpm: float
    measured: bool  # the tempo was read at this peak (not filled in from neighbours)


def beat_grid(votes: BeatVotes, passes: int, bpm_threshold: float) -> list[tuple[int, EventType]]:
    """(time, BEAT/MEASURE/TIMING_POINT) for every beat the votes support."""
    from scipy.ndimage import gaussian_filter1d
    from scipy.signal import find_peaks

    if not votes.spacings:
        return []
    smooth = {name: gaussian_filter1d(getattr(votes, name).astype(float), 10) / passes * 50
              for name in ("beats", "measures", "timing_points")}
    signal = smooth["beats"] + smooth["measures"] + smooth["timing_points"] * 2
    times, props = find_peaks(signal, distance=50, prominence=0.1, rel_height=1, width=2, wlen=50)
    if len(times) == 0:
        return []
    spacings = sorted(votes.spacings, key=lambda s: s[0])
    peaks = _peak_tempos(times, props["prominences"], spacings, bpm_threshold)
    beat_times = sorted(_walk_beats(peaks, votes.length_ms))
    kinds = _classify(beat_times, smooth)
    signature = int(np.median([n for _, n in votes.measure_lengths])) if votes.measure_lengths else 4
    kinds = _place_measures(beat_times, kinds, smooth, signature)
    return list(zip(beat_times, kinds))


def _peak_tempos(times, prominences, spacings, threshold: float, window_ms: int = 200) -> list[_Peak]:
    """The tempo around each peak: the dominant beat spacing within ``window_ms`` when it holds more than
    ``threshold`` of the votes, else the nearest measured neighbour's; folded into [median/1.5, median*1.5]."""
    bpms = []
    for t in times:
        nearby = [steps for start, steps in spacings if t - window_ms < start < t + window_ms]
        counts, edges = np.histogram(nearby, bins=range(20, 100))
        bpms.append(60_000 / (edges[np.argmax(counts)] * 10) if counts.max() > threshold * counts.sum() else np.nan)
    bpms = np.array(bpms)
    measured = ~np.isnan(bpms)
    median = 60_000 / (np.median(np.array(spacings)[:, 1]) * 10)
    bpms = bpms / np.ceil(bpms / (median * 1.5))
    bpms = bpms * np.ceil((median / 1.5) / bpms)
    for i in np.flatnonzero(~measured):
        left = next((j for j in range(i - 1, -1, -1) if measured[j]), None)
        right = next((j for j in range(i + 1, len(bpms)) if measured[j]), None)
        if left is not None and (right is None or i - left <= right - i):
            bpms[i] = bpms[left]
        elif right is not None:
            bpms[i] = bpms[right]
        else:
            bpms[i] = median
    return [_Peak(int(t), float(p), float(b), bool(m)) for t, p, b, m in zip(times, prominences, bpms, measured)]


def _walk_beats(peaks: list[_Peak], length_ms: int, seam_ms: int = 200) -> list[int]:
    """Beats walked outwards from the most prominent peaks at each peak's tempo.

    A step snaps to a peak near the predicted beat (distance / prominence < 60); with a clear peak
    somewhat further away (< 300) on a measured tempo the walk stops, as that part likely has another
    tempo; otherwise the beat is kept where predicted. Walks stop at ground another walk covered.
    """
    beats: list[int] = []
    pending = sorted(peaks, key=lambda p: p.prominence, reverse=True)
    covered: list[tuple[float, float]] = []

    def drop_pending(a, b):
        low, high = min(a, b), max(a, b)
        pending[:] = [p for p in pending if not low <= p.time <= high]

    def walk(start: float, period: float, direction: int) -> None:
        time = start
        while True:
            previous = time
            time += direction * period
            if not 0 <= time < length_ms:
                drop_pending(previous, time)
                break
            nearest = min(peaks, key=lambda p: abs(p.time - time) / p.prominence)
            miss = abs(nearest.time - time) / nearest.prominence
            if miss < 60:
                time, period = nearest.time, 60_000 / nearest.bpm
            elif miss < 300 and nearest.measured:
                time -= direction * period
                break
            if any(a <= time <= b for a, b in covered):
                break
            beats.append(int(time))
        region = (start - seam_ms, time + seam_ms) if direction > 0 else (time - seam_ms, start + seam_ms)
        covered.append(region)
        drop_pending(*region)

    while pending:
        peak = pending.pop(0)
        beats.append(int(peak.time))
        walk(peak.time, 60_000 / peak.bpm, 1)
        walk(peak.time, 60_000 / peak.bpm, -1)
    return beats


def _votes_near(hist: np.ndarray, time: int, w: int = 10) -> float:
    return float(hist[time - w: time + w].sum())


def _classify(beat_times: list[int], smooth: dict[str, np.ndarray]) -> list[EventType]:
    """A beat becomes a timing point when timing-point votes beat both other kinds (with enough votes)."""
    kinds = []
    for t in beat_times:
        beat, measure, tp = (_votes_near(smooth[k], t) for k in ("beats", "measures", "timing_points"))
        kinds.append(EventType.TIMING_POINT if tp > beat and tp > measure and beat + measure + tp > 1
                     else EventType.BEAT)
    return kinds


def _place_measures(beat_times, kinds, smooth, signature: int) -> list[EventType]:
    """Mark measure starts: at each beat, the phase (0..signature-1) whose beats gather the most measure
    and timing-point votes, looking three measures either way; then skip the rest of that measure."""
    original = list(kinds)
    kinds = list(kinds)
    cooldown = 0
    for i, kind in enumerate(original):
        if cooldown > 0:
            cooldown -= 1
            continue
        if cooldown < 0:
            cooldown += 1
            if cooldown == 0 and kind != EventType.TIMING_POINT:
                kinds[i] = EventType.MEASURE
                cooldown = signature - 1
            continue
        if kind == EventType.TIMING_POINT:
            continue
        scores = []
        for phase in range(signature):
            total, count = 0.0, 0
            for j in range(-3, 4):
                index = i + j * signature + phase
                if not 0 <= index < len(beat_times):
                    continue
                # Upstream checks these indices from the start of the list, not around beat i; kept so
                # that the same votes give the same grid.
                if any(kinds[k] == EventType.TIMING_POINT for k in np.arange(1, abs(j)) * np.sign(j)):
                    continue
                t = beat_times[index]
                total += _votes_near(smooth["measures"], t) + _votes_near(smooth["timing_points"], t)
                count += 1
            scores.append(0 if count == 0 else total / count)
        best = int(np.argmax(scores))
        if best == 0:
            kinds[i] = EventType.MEASURE
            cooldown = signature - 1
        else:
            kinds[i] = EventType.BEAT
            cooldown = -best
    return kinds


def grid_events(grid: list[tuple[int, EventType]], types_first: bool) -> EventStream:
    events, times = [], []
    for t, kind in grid:
        pair = [Event(kind), Event(EventType.TIME_SHIFT, t)] if types_first else [Event(EventType.TIME_SHIFT, t), Event(kind)]
        events += pair
        times += [t, t]
    return EventStream(events, times)


# --- running the passes --------------------------------------------------------------------------------------


def super_timing_events(job, conditions) -> EventStream:
    """Beat events for a generation job (``engine.generation._Job``), from ``timer_iterations`` shifted passes."""
    from .postprocess import event_groups

    o = job.opts
    ck = job.checkpoint(root=True)
    data = ck.preset.data
    sample_rate = data.sample_rate
    samples = job.samples
    length_ms = len(samples) * 1000 // sample_rate
    window_ms = (data.src_seq_len - 1) * data.hop_length * 1000 / sample_rate
    rng = np.random.RandomState(job.seed)  # upstream draws from NumPy's global stream seeded with the seed
    votes = BeatVotes(length_ms)
    job.report.begin_pass(o.timer_iterations)
    for i in range(o.timer_iterations):
        job.report.stage(f"Super timing: pass {i + 1} of {o.timer_iterations}")
        offset = int(rng.randint(-(window_ms // 2), window_ms // 2))
        pad = max(0, offset * sample_rate // 1000)
        cut = max(0, -offset * sample_rate // 1000)
        job.report.done += 1
        if cut >= len(samples):  # a song shorter than the shift has nothing left to hear (upstream crashes)
            continue
        stream = _parallel_timing_pass(job, ck, conditions, samples[cut:], pad)
        votes.add_pass(event_groups(stream.events, data.types_first), offset)
    job.report.end_pass()
    grid = beat_grid(votes, o.timer_iterations, o.timer_bpm_threshold)
    if not grid:
        job.warnings.append("super timing found no steady beat in this song")
    return grid_events(grid, data.types_first)


def _parallel_timing_pass(job, ck, conditions, samples: np.ndarray, pad: int) -> EventStream:
    """One pass: every window side by side (no overlap) in one batch, each window prompted alone."""
    import torch

    from .decoding import DecodingOptions, decode
    from .prompt import Embeds, GenerationRun, stop_ids
    from .runtime import autocast
    from .windows import WindowLayout

    o = job.opts
    data = ck.preset.data
    layout = WindowLayout.for_preset(ck.preset, parallel=True)
    segments = layout.segment(samples, begin_pad=pad)
    context = C.MAP if data.add_timing else C.TIMING
    run = GenerationRun(ck.tokenizer, data, segments, conditions, requested=(context,), given={},
                        embeds=Embeds.from_config(ck.config), cfg_scale=o.timer_cfg_scale)
    stream = run.stream(context)
    prompts, negatives, kwargs = [], [], []
    for start in segments.starts_ms:
        prompt, negative = run.builder.prompts(start, run.in_streams, run.out_streams, with_negative=o.timer_cfg_scale > 1)
        prompts.append(prompt)
        negatives.append(negative)
        kwargs.append(run.window_kwargs(start))
    cond = {k: torch.cat([kw[k] for kw in kwargs]) for k in kwargs[0]}
    opts = DecodingOptions(do_sample=False, temperature=o.temperature, timing_temperature=o.timing_temperature,
                           cfg_scale=o.timer_cfg_scale, max_length=data.tgt_seq_len, types_first=data.types_first)
    context_eos = ck.tokenizer.context_eos.get(context)
    frames = torch.from_numpy(segments.stacked())
    rows = []
    batch = max(1, (o.max_batch_size or 16) // (2 if o.timer_cfg_scale > 1 else 1))
    for b in range(0, len(prompts), batch):
        with autocast(job.device, o.precision):
            rows += decode(ck.model, ck.tokenizer, frames[b: b + batch], prompts[b: b + batch], opts,
                           stop_ids(ck.tokenizer, context), cond={k: v[b: b + batch] for k, v in cond.items()},
                           negative_prompts=negatives[b: b + batch] if o.timer_cfg_scale > 1 else None,
                           cancel=job.cancel, stats=job.stats)
    for start, generated in zip(segments.starts_ms, rows):
        if context_eos is not None:
            # Upstream keeps a window's output only when its context was closed.
            if context_eos not in generated:
                continue
            generated = generated[: generated.index(context_eos)]
        run.absorber(stream, generated, start, trim_lookback=False, trim_lookahead=False)
    (events, times), = run.results().values()
    return EventStream(list(events), list(times))


# --- the facade ------------------------------------------------------------------------------------------------


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
    With ``output_path`` (a folder or an .osu path) a timing-only .osu is written there.
    """
    import time as _time

    from .errors import OptionError
    from .generation import _write_outputs, run_job
    from .options import GenerateOptions

    started = _time.perf_counter()
    opts = GenerateOptions(audio_path=str(audio_path), model_path=model, super_timing=super_timing, device=device,
                           precision=precision, output_type=("TIMING",),
                           output_path=str(output_path) if output_path else None, **options)
    if model == "v30":
        raise OptionError("v30 has no timing context to generate timing with; use model v31, v32 or v32-mini")
    plan, job, beatmap = run_job(opts, progress, cancel)
    report = job.report
    beatmap.metadata = dataclasses.replace(beatmap.metadata, version="Timing")
    path = None
    if output_path:
        report.stage("Writing the timing", 0.99)
        path, _ = _write_outputs(plan, dataclasses.replace(job.opts, export_osz=False), beatmap)
    report.stage("Done", 1.0)
    return TimingResult(list(beatmap.timing_points), beatmap, path, plan.preset.name,
                        _time.perf_counter() - started, job.warnings)
