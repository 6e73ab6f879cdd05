"""Super timing: many timing passes over shifted windows whose beat votes are smoothed into one beat grid.

    events = super_timing_events(context, samples, conditions, seed=1, iterations=20, ...)

It follows upstream's ``SuperTimingGenerator``: each pass shifts the song by a random offset
(upstream's global NumPy stream, seeded), generates the TIMING context in non-overlapping windows, and adds
its beats, measures and timing points to millisecond histograms. The passes are independent, so their windows
are decoded in batches across passes (upstream runs the passes one after another). The histograms are
smoothed, peaks found, a tempo read around each peak, and beats are walked outwards from the strongest peaks;
finally measures are placed by the evidence of the measure votes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .events import BEAT_TYPES, EventStream
from .messages import Message
from .passes import PassContext, PassRunner
from .presets import MS_PER_STEP
from .tokenizer import ContextType, Event, EventType

if TYPE_CHECKING:
    from .prompt import Call, Conditions
    from .windows import Segments, WindowLayout

C = ContextType


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
    ``threshold`` of the votes, else the nearest measured neighbour's (the left one on a tie); folded into
    [median/1.5, median*1.5]. ``spacings`` are (start, beat length in 10 ms steps) sorted by start, with steps in
    21..99 as :meth:`BeatVotes.add_pass` keeps them."""
    starts = np.array([start for start, _ in spacings])
    # steps 21..99 in 79 one-step bins from 20, the last bin also taking 99 (numpy's histogram edges)
    bins = np.minimum(np.array([steps for _, steps in spacings]) - 20, 78)
    bpms = np.full(len(times), np.nan)
    for i, t in enumerate(times):
        window = bins[np.searchsorted(starts, t - window_ms, "right"):np.searchsorted(starts, t + window_ms, "left")]
        counts = np.bincount(window, minlength=79)
        if counts.max() > threshold * window.size:
            bpms[i] = 60_000 / ((20 + int(np.argmax(counts))) * MS_PER_STEP)
    measured = ~np.isnan(bpms)
    median = 60_000 / (np.median(np.array(spacings)[:, 1]) * MS_PER_STEP)
    bpms = bpms / np.ceil(bpms / (median * 1.5))
    bpms = bpms * np.ceil((median / 1.5) / bpms)
    known = np.flatnonzero(measured)
    unknown = np.flatnonzero(~measured)
    if known.size == 0:
        bpms[:] = median
    elif unknown.size:
        at = np.searchsorted(known, unknown)
        left, right = known[np.maximum(at - 1, 0)], known[np.minimum(at, known.size - 1)]
        take_left = (at > 0) & ((at == known.size) | (unknown - left <= right - unknown))
        bpms[unknown] = np.where(take_left, bpms[left], bpms[right])
    return [_Peak(int(t), float(p), float(b), bool(m)) for t, p, b, m in zip(times, prominences, bpms, measured)]


def _walk_beats(peaks: list[_Peak], length_ms: int, seam_ms: int = 200) -> list[int]:
    """Beats walked outwards (both ways) from each peak in order of prominence, at that peak's tempo.

    Each step predicts the next beat one period on and judges it against the peak that explains it best
    (distance divided by prominence, the first such peak on a tie): under 60 the beat moves onto that peak and
    the walk takes its tempo; under 300 with a measured tempo the walk ends one step short, as another tempo
    likely starts there; otherwise the predicted beat stands. A walk also ends past the song's ends, on ground
    claimed by an earlier walk, and where a snap does not move it forward. Each walk claims the span it covered
    plus ``seam_ms`` either side (so seams get no near-duplicate beats), and a peak inside a claimed span starts
    no walk of its own.
    """
    times = np.array([p.time for p in peaks], dtype=float)
    prominences = np.array([p.prominence for p in peaks], dtype=float)
    starts_no_walk = np.zeros(len(peaks), dtype=bool)
    spans: list[tuple[float, float]] = []  # as (from, to); a walk that ends behind its start claims no ground
    beats: list[int] = []

    def retire_peaks(a: float, b: float) -> None:
        starts_no_walk[(times >= min(a, b)) & (times <= max(a, b))] = True

    def claim(low: float, high: float) -> None:
        spans.append((low, high))
        retire_peaks(low, high)

    def walk(origin: _Peak, direction: int) -> None:
        time, period = origin.time, 60_000 / origin.bpm
        while True:
            previous, predicted = time, time + direction * period
            if not 0 <= predicted < length_ms:
                retire_peaks(time, predicted)
                time = predicted
                break
            misses = np.abs(times - predicted) / prominences
            best = int(np.argmin(misses))
            if misses[best] < 60:
                time, period = peaks[best].time, 60_000 / peaks[best].bpm
            elif misses[best] < 300 and peaks[best].measured:
                time = predicted - direction * period
                break
            else:
                time = predicted
            if (time - previous) * direction <= 0:
                break  # snapped onto or behind the last beat: walking on would cycle (upstream's walk never ends)
            if any(low <= time <= high for low, high in spans):
                break
            beats.append(int(time))
        if direction > 0:
            claim(origin.time - seam_ms, time + seam_ms)
        else:
            claim(time - seam_ms, origin.time + seam_ms)

    for i in sorted(range(len(peaks)), key=lambda i: peaks[i].prominence, reverse=True):
        if starts_no_walk[i]:
            continue
        beats.append(int(peaks[i].time))
        walk(peaks[i], 1)
        walk(peaks[i], -1)
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
    """Mark the downbeats (measure starts) of a beat grid whose beats are BEAT or TIMING_POINT.

    A walk over the beats: at a beat that is not a timing point it picks the phase (0..signature-1) whose
    beats, three measures either way, carry the most measure and timing-point votes on average; the
    downbeat is that many beats later (unless a timing point is there), and the walk resumes one measure
    after it. Which of the seven measure offsets count is fixed for the whole grid: offset ±j is left out
    when a timing point is among the first (+j) or last (-j) j - 1 beats of the grid — upstream's check,
    which looks at the ends of the list rather than around the current beat; kept so that the same votes
    give the same grid.
    """
    n = len(kinds)
    is_timing_point = [k == EventType.TIMING_POINT for k in kinds]
    evidence = [_votes_near(smooth["measures"], t) + _votes_near(smooth["timing_points"], t) for t in beat_times]
    offsets = [j * signature for j in range(-3, 4)
               if not any(is_timing_point[1:j] if j > 0 else is_timing_point[max(0, n + j + 1):])]

    def best_phase(i: int) -> int:
        scores = []
        for phase in range(signature):
            votes = [evidence[i + d + phase] for d in offsets if 0 <= i + d + phase < n]
            scores.append(sum(votes) / len(votes) if votes else 0)
        return int(np.argmax(scores))

    placed = list(kinds)
    i = 0
    while i < n:
        if is_timing_point[i]:
            i += 1
            continue
        downbeat = i + best_phase(i)
        if downbeat < n and not is_timing_point[downbeat]:
            placed[downbeat] = EventType.MEASURE
            i = downbeat + signature
        else:
            i = downbeat + 1
    return placed


def grid_events(grid: list[tuple[int, EventType]], types_first: bool) -> EventStream:
    events, times = [], []
    for t, kind in grid:
        pair = [Event(kind), Event(EventType.TIME_SHIFT, t)] if types_first else [Event(EventType.TIME_SHIFT, t), Event(kind)]
        events += pair
        times += [t, t]
    return EventStream(events, times)


# --- running the passes --------------------------------------------------------------------------------------


def super_timing_events(context: PassContext, samples: np.ndarray, conditions: "Conditions", *, seed: int,
                        iterations: int, bpm_threshold: float, cfg_scale: float, max_batch_size: int | None,
                        temperature: float, timing_temperature: float) -> EventStream:
    """Beat events of the song ``samples`` from ``iterations`` shifted timing passes of ``context.checkpoint``
    (the root checkpoint); empty when no steady beat is found.

    The passes are independent, so their windows are decoded together, ``max_batch_size`` rows at a time,
    instead of pass after pass; a pass is built when the batch needs its windows and counted (then dropped)
    as soon as all its windows are decoded, so memory stays at about two passes.
    """
    from .decoding import DecodingOptions
    from .postprocess import event_groups
    from .windows import WindowLayout

    ck = context.checkpoint
    data = ck.preset.data
    sample_rate = data.sample_rate
    length_ms = len(samples) * 1000 // sample_rate
    window_ms = (data.src_seq_len - 1) * data.hop_length * 1000 / sample_rate
    rng = np.random.RandomState(seed)  # upstream draws from NumPy's global stream seeded with the seed
    shifts = []
    for _ in range(iterations):
        offset = int(rng.randint(-(window_ms // 2), window_ms // 2))
        pad, cut = max(0, offset * sample_rate // 1000), max(0, -offset * sample_rate // 1000)
        if cut < len(samples):  # a song shorter than the shift has nothing left to hear (upstream crashes)
            shifts.append((offset, pad, cut))
    layout = WindowLayout.for_preset(ck.preset, parallel=True)
    total = sum(layout.num_windows(pad + len(samples) - cut) for _, pad, cut in shifts)
    decoding = DecodingOptions(do_sample=False, temperature=temperature, timing_temperature=timing_temperature,
                               cfg_scale=cfg_scale, max_length=data.tgt_seq_len, types_first=data.types_first)
    runner = PassRunner(dataclasses.replace(context, generator=None), decoding,
                        batch_size=(max_batch_size or 16) // (2 if cfg_scale > 1 else 1),
                        label=Message("stage.super_timing", "Super timing ({passes} passes)", passes=len(shifts)),
                        total_calls=total)
    passes = (ShiftedTimingPass(ck, layout, conditions, samples[cut:], pad, offset, cfg_scale)
              for offset, pad, cut in shifts)
    votes = BeatVotes(length_ms)
    for finished in runner.run(passes):
        votes.add_pass(event_groups(finished.events().events, data.types_first), finished.offset)
    return grid_events(beat_grid(votes, iterations, bpm_threshold), data.types_first)


class ShiftedTimingPass:
    """One shifted pass (a :class:`~engine.passes.WindowPass`): its windows side by side (no overlap), each
    prompted alone, so all of them are ready at once; their rows are absorbed in window order at the end."""

    def __init__(self, ck, layout: "WindowLayout", conditions: "Conditions", samples: np.ndarray, pad: int,
                 offset: int, cfg_scale: float):
        from .prompt import Embeds, GenerationRun

        self.offset = offset
        self.segments: Segments = layout.segment(samples, begin_pad=pad)
        self.context = C.MAP if ck.preset.data.add_timing else C.TIMING
        self.context_eos = ck.tokenizer.context_eos.get(self.context)
        self.run = GenerationRun(ck.tokenizer, ck.preset.data, self.segments, conditions, requested=(self.context,),
                                 given={}, embeds=Embeds.from_config(ck.config), cfg_scale=cfg_scale)
        self.calls = [self.run.make_call(0, w, alone=True) for w in range(len(self.segments))]
        self.rows: dict[int, Sequence[int]] = {}
        self._handed_out = False

    def ready(self) -> list["Call"]:
        if self._handed_out:
            return []
        self._handed_out = True
        return list(self.calls)

    def frames(self, call: "Call") -> np.ndarray:
        return self.segments.samples(call.window)

    def absorb(self, call: "Call", generated: Sequence[int]) -> None:
        self.rows[call.window] = generated

    @property
    def finished(self) -> bool:
        return len(self.rows) == len(self.calls)

    def events(self) -> EventStream:
        for call in self.calls:
            generated = list(self.rows[call.window])
            if self.context_eos is not None:
                # Upstream keeps a window's output only when its context was closed.
                if self.context_eos not in generated:
                    continue
                generated = generated[: generated.index(self.context_eos)]
            self.run.absorb(call, generated)
        stream, = self.run.results().values()
        return stream
