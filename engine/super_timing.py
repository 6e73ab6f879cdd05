"""Timing a song: the model's timing pass, and "super timing" — many passes over shifted windows whose
beat votes are smoothed into one beat grid.

    result = timing("song.mp3", super_timing=True)     # -> TimingResult(timing_points, beatmap, path, ...)

Super timing follows upstream's ``SuperTimingGenerator``: each pass shifts the song by a random offset
(upstream's global NumPy stream, seeded), generates the TIMING context in non-overlapping windows, and adds
its beats, measures and timing points to millisecond histograms. The passes are independent, so their windows
are decoded in batches across passes (upstream runs the passes one after another). The histograms are
smoothed, peaks found, a tempo read around each peak, and beats are walked outwards from the strongest peaks;
finally measures are placed by the evidence of the measure votes.
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
    """Beat events for a generation job (``engine.generation._Job``), from ``timer_iterations`` shifted passes.

    The passes are independent, so their windows are decoded together, ``max_batch_size`` rows at a time,
    instead of pass after pass; a pass is built when the batch needs its windows and counted (then dropped)
    as soon as all its windows are decoded, so memory stays at about two passes.
    """
    import math

    from .decoding import DecodingOptions
    from .postprocess import event_groups
    from .windows import WindowLayout

    o = job.opts
    ck = job.checkpoint(root=True)
    data = ck.preset.data
    sample_rate = data.sample_rate
    samples = job.samples
    length_ms = len(samples) * 1000 // sample_rate
    window_ms = (data.src_seq_len - 1) * data.hop_length * 1000 / sample_rate
    rng = np.random.RandomState(job.seed)  # upstream draws from NumPy's global stream seeded with the seed
    shifts = []
    for _ in range(o.timer_iterations):
        offset = int(rng.randint(-(window_ms // 2), window_ms // 2))
        pad, cut = max(0, offset * sample_rate // 1000), max(0, -offset * sample_rate // 1000)
        if cut < len(samples):  # a song shorter than the shift has nothing left to hear (upstream crashes)
            shifts.append((offset, pad, cut))
    layout = WindowLayout.for_preset(ck.preset, parallel=True)
    total = sum(layout.num_windows(pad + len(samples) - cut) for _, pad, cut in shifts)
    batch = max(1, (o.max_batch_size or 16) // (2 if o.timer_cfg_scale > 1 else 1))
    opts = DecodingOptions(do_sample=False, temperature=o.temperature, timing_temperature=o.timing_temperature,
                           cfg_scale=o.timer_cfg_scale, max_length=data.tgt_seq_len, types_first=data.types_first)

    votes = BeatVotes(length_ms)
    upcoming = iter(shifts)
    queue: list[tuple[_TimingPass, int]] = []
    live: list[_TimingPass] = []
    job.report.begin_pass(math.ceil(total / batch))
    decoded = 0
    while True:
        while len(queue) < batch:
            shift = next(upcoming, None)
            if shift is None:
                break
            offset, pad, cut = shift
            timing_pass = _TimingPass(job, ck, layout, conditions, samples[cut:], pad, offset)
            live.append(timing_pass)
            queue += [(timing_pass, i) for i in range(len(timing_pass.rows))]
        if not queue:
            break
        chunk, queue = queue[:batch], queue[batch:]
        job.report.stage(f"Super timing: windows {decoded + 1}–{decoded + len(chunk)} of {total} "
                         f"({len(shifts)} passes)")
        _decode_windows(job, ck, chunk, opts)
        decoded += len(chunk)
        job.report.done += 1
        while live and live[0].complete:
            finished = live.pop(0)
            votes.add_pass(event_groups(finished.events().events, data.types_first), finished.offset)
    job.report.end_pass()
    grid = beat_grid(votes, o.timer_iterations, o.timer_bpm_threshold)
    if not grid:
        job.warnings.append("super timing found no steady beat in this song")
    return grid_events(grid, data.types_first)


class _TimingPass:
    """One shifted pass: its windows side by side (no overlap), each prompted alone, and their decoded rows."""

    def __init__(self, job, ck, layout, conditions, samples: np.ndarray, pad: int, offset: int):
        from .prompt import Embeds, GenerationRun

        self.offset = offset
        self.data = ck.preset.data
        self.segments = layout.segment(samples, begin_pad=pad)
        self.context = C.MAP if self.data.add_timing else C.TIMING
        self.context_eos = ck.tokenizer.context_eos.get(self.context)
        self.run = GenerationRun(ck.tokenizer, self.data, self.segments, conditions, requested=(self.context,),
                                 given={}, embeds=Embeds.from_config(ck.config), cfg_scale=job.opts.timer_cfg_scale)
        self.rows: list[list[int] | None] = [None] * len(self.segments)

    def window(self, i: int, with_negative: bool):
        """(samples, prompt, negative prompt, conditioning tensors) of window ``i``."""
        start = self.segments.starts_ms[i]
        prompt, negative = self.run.builder.prompts(start, self.run.in_streams, self.run.out_streams,
                                                    with_negative=with_negative)
        return self.segments.samples(i), prompt, negative, self.run.window_kwargs(start)

    @property
    def complete(self) -> bool:
        return all(row is not None for row in self.rows)

    def events(self) -> EventStream:
        stream = self.run.stream(self.context)
        for start, generated in zip(self.segments.starts_ms, self.rows):
            if self.context_eos is not None:
                # Upstream keeps a window's output only when its context was closed.
                if self.context_eos not in generated:
                    continue
                generated = generated[: generated.index(self.context_eos)]
            self.run.absorber(stream, generated, start, trim_lookback=False, trim_lookahead=False)
        (events, times), = self.run.results().values()
        return EventStream(list(events), list(times))


def _decode_windows(job, ck, chunk: list[tuple[_TimingPass, int]], opts) -> None:
    """Decode one batch of windows (from one or more passes) and hand each pass its rows."""
    import torch

    from .decoding import decode
    from .prompt import stop_ids
    from .runtime import autocast

    guided = opts.cfg_scale > 1
    windows = [timing_pass.window(i, guided) for timing_pass, i in chunk]
    frames = torch.from_numpy(np.stack([w[0] for w in windows]))
    cond = {k: torch.cat([w[3][k] for w in windows]) for k in windows[0][3]}
    with autocast(job.device, job.opts.precision):
        rows = decode(ck.model, ck.tokenizer, frames, [w[1] for w in windows], opts,
                      stop_ids(ck.tokenizer, chunk[0][0].context), cond=cond,
                      negative_prompts=[w[2] for w in windows] if guided else None,
                      cancel=job.cancel, stats=job.stats)
    for (timing_pass, i), row in zip(chunk, rows):
        timing_pass.rows[i] = row


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
    With ``output_path`` a timing-only .osu is written: into that folder (named like a generated map, the song
    copied beside it), or, for a path ending in ``.osu``, as that file (a file it replaces is kept as ``.bak``).
    """
    import time as _time

    from .errors import OptionError
    from .generation import _write_outputs, run_job
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
        path, _ = _write_outputs(job, beatmap, dataclasses.replace(job.opts, export_osz=False))
    report.stage("Done", 1.0)
    return TimingResult(list(beatmap.timing_points), beatmap, path, plan.preset.name,
                        _time.perf_counter() - started, job.warnings)
