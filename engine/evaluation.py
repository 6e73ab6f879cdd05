"""How close a generated beatmap is to a reference one: the measures of upstream's ``calc_fid.py``.

Definitions (upstream's where it has one; the offset error is ours, upstream has none):

- **Rhythm**: the distinct object times of a map in whole milliseconds (truncated). *Active* times are
  circles (notes, fruits, dons/kats), slider heads and hold-note heads; *passive* times add every
  slider span end (repeats and tail) and spinner ends (hold-note tails are not counted, as upstream).
  A reference time is found (true positive) when a generated time lies within 10 ms of it, otherwise
  missed (false negative); a generated time with no reference time within 10 ms is a false positive.
  The matching is not one-to-one. Precision, recall and F1 are 0 where undefined, except that two maps
  without any such times match perfectly (1.0).
- **BPM error**: the root mean square, over ``[0, L]``, of the difference between the two maps' BPM at
  each moment (the red line in effect; the first one before it; 0 BPM for a map without red lines).
  ``L`` is the later of the two maps' last object start times; with ``L = 0`` the BPMs at time 0 are
  compared. One red line off by 3 BPM for the whole song gives 3.
- **Offset error**: for each reference red line, the distance from its time to the nearest beat of the
  generated red line closest in time (its beat grid extended both ways), averaged over the reference's
  red lines. Shifting every red line by 7 ms gives 7; a generated map whose beats fall on the
  reference's gives 0 even with different red lines. ``None`` when either map has no red line.
- **Star rating**: rosu-pp 3.1.0 without mods (:func:`engine.beatmap_stats.star_rating`, 2 decimals).
  A path is rated from its file; a :class:`Beatmap` from its content in memory.
- **Drain time**: last minus first object start time, less every gap of more than 8 s between
  consecutive object starts (upstream's definition, not osu!'s break-based one).

Differences are ``generated - reference``. :func:`evaluate_all` evaluates several pairs (see
:func:`pair_paths` for how files are paired) and averages every measure over the pairs that have it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from .beatmap import Beatmap, HitCircle, HoldNote, Slider, Spinner, read_beatmap
from .errors import BeatmapError
from .messages import Message

RHYTHM_TOLERANCE_MS = 10
DRAIN_BREAK_MS = 8000

BeatmapLike = Union[Beatmap, str, Path]


@dataclass(frozen=True)
class RhythmScore:
    """Rhythm agreement of one pair for one kind of times (active or passive)."""

    precision: float  # share of generated times within 10 ms of a reference time
    recall: float  # share of reference times within 10 ms of a generated time
    f1: float  # harmonic mean of precision and recall
    true_positives: int  # reference times found in the generated map
    false_negatives: int  # reference times missing from the generated map
    false_positives: int  # generated times with no reference time near them


@dataclass(frozen=True)
class Evaluation:
    """The measures for one generated map against its reference."""

    generated: str  # the generated map's file name ("<beatmap>" for an in-memory map without a path)
    reference: str  # the reference map's file name
    active_rhythm: RhythmScore  # circles, slider heads, hold-note heads
    passive_rhythm: RhythmScore  # active times plus slider span ends and spinner ends
    bpm_error: float  # RMS BPM difference over the song (BPM)
    offset_error_ms: float | None  # mean distance of the reference's red lines from the generated beat grid
    generated_star_rating: float | None  # rosu-pp stars; None when rosu-pp cannot rate the map
    reference_star_rating: float | None
    star_rating_diff: float | None  # generated - reference stars
    generated_drain_time_s: float  # upstream's drain time (first to last object, long gaps left out)
    reference_drain_time_s: float
    drain_time_diff_s: float  # generated - reference drain time (s)

    def to_dict(self) -> dict:
        """Flat JSON-ready values: the headline measures first, then the details."""
        return {
            "generated": self.generated,
            "reference": self.reference,
            "active_rhythm_f1": self.active_rhythm.f1,
            "passive_rhythm_f1": self.passive_rhythm.f1,
            "bpm_error": self.bpm_error,
            "offset_error_ms": self.offset_error_ms,
            "star_rating_diff": self.star_rating_diff,
            "drain_time_diff_s": self.drain_time_diff_s,
            "active_rhythm_precision": self.active_rhythm.precision,
            "active_rhythm_recall": self.active_rhythm.recall,
            "passive_rhythm_precision": self.passive_rhythm.precision,
            "passive_rhythm_recall": self.passive_rhythm.recall,
            "generated_star_rating": self.generated_star_rating,
            "reference_star_rating": self.reference_star_rating,
            "generated_drain_time_s": self.generated_drain_time_s,
            "reference_drain_time_s": self.reference_drain_time_s,
        }


# The measures averaged over pairs, in table order.
MEASURES = ("active_rhythm_f1", "passive_rhythm_f1", "bpm_error", "offset_error_ms", "star_rating_diff",
            "drain_time_diff_s", "active_rhythm_precision", "active_rhythm_recall", "passive_rhythm_precision",
            "passive_rhythm_recall")


@dataclass(frozen=True)
class EvaluationReport:
    """Several pairs and the mean of each measure."""

    pairs: tuple[Evaluation, ...]  # one per generated map, in the order they were paired
    mean: dict[str, float | None]  # MEASURES -> mean over the pairs that have a value (None if none do)

    def to_dict(self) -> dict:
        """One JSON object: the means under the measures' names, the pairs under ``pairs``."""
        return {**self.mean, "count": len(self.pairs), "pairs": [p.to_dict() for p in self.pairs]}


def evaluate(generated: BeatmapLike, reference: BeatmapLike) -> Evaluation:
    """Compare a generated beatmap with a reference beatmap (objects or ``.osu`` paths)."""
    gen_map, ref_map = _load(generated), _load(reference)
    gen_stars, ref_stars = _stars(generated, gen_map), _stars(reference, ref_map)
    gen_drain, ref_drain = drain_time_s(gen_map), drain_time_s(ref_map)
    return Evaluation(
        generated=_name(generated, gen_map),
        reference=_name(reference, ref_map),
        active_rhythm=rhythm_score(rhythm_times(gen_map), rhythm_times(ref_map)),
        passive_rhythm=rhythm_score(rhythm_times(gen_map, passive=True), rhythm_times(ref_map, passive=True)),
        bpm_error=bpm_error(gen_map, ref_map),
        offset_error_ms=offset_error_ms(gen_map, ref_map),
        generated_star_rating=gen_stars,
        reference_star_rating=ref_stars,
        star_rating_diff=None if gen_stars is None or ref_stars is None else round(gen_stars - ref_stars, 2),
        generated_drain_time_s=gen_drain,
        reference_drain_time_s=ref_drain,
        drain_time_diff_s=round(gen_drain - ref_drain, 3),  # both are whole ms
    )


def evaluate_all(generated: str | Path, reference: str | Path) -> EvaluationReport:
    """Evaluate the pairs :func:`pair_paths` finds and average each measure over them."""
    pairs = tuple(evaluate(g, r) for g, r in pair_paths(generated, reference))
    return EvaluationReport(pairs, mean_of(pairs))


def pair_paths(generated: str | Path, reference: str | Path) -> list[tuple[Path, Path]]:
    """Which generated ``.osu`` goes with which reference.

    - file and file: that pair;
    - folder and file: every ``.osu`` in the folder against the one reference (several generations
      for one song);
    - folder and folder, or file and folder: each generated map with the reference of the same file
      name (a reference folder may hold more maps than are generated).

    Folders are not searched recursively; pairs come in file-name order.
    """
    gen, ref = Path(generated), Path(reference)
    for path in (gen, ref):
        if not path.exists():
            raise BeatmapError(Message("error.evaluation.not_found", "no such file or folder"), path)
    gen_files = _osu_files(gen) if gen.is_dir() else [gen]
    if not ref.is_dir():
        return [(g, ref) for g in gen_files]
    missing = [g.name for g in gen_files if not (ref / g.name).is_file()]
    if missing:
        shown = ", ".join(missing[:3])
        if len(missing) > 3:
            shown = Message("error.evaluation.and_more", "{names} and {count} more", names=shown,
                            count=len(missing) - 3)
        raise BeatmapError(Message("error.evaluation.no_reference_named", "no reference of the same file name for "
                                   "{names} (pairs are matched by file name; give one reference file to compare every "
                                   "map with it)", names=shown), ref)
    return [(g, ref / g.name) for g in gen_files]


def mean_of(pairs: Sequence[Evaluation]) -> dict[str, float | None]:
    """The mean of each of :data:`MEASURES` over the pairs where it is defined."""
    rows = [p.to_dict() for p in pairs]
    means: dict[str, float | None] = {}
    for key in MEASURES:
        values = [row[key] for row in rows if row[key] is not None]
        means[key] = float(np.mean(values)) if values else None
    return means


# ------------------------------------------------------------------------------------- rhythm
def rhythm_times(beatmap: Beatmap, *, passive: bool = False) -> np.ndarray:
    """The map's distinct active (or passive) rhythm times in whole ms, sorted (see the module docstring)."""
    times: list[float] = []
    for obj in beatmap.hit_objects:
        if isinstance(obj, (HitCircle, HoldNote)):
            times.append(obj.time)
        elif isinstance(obj, Slider):
            times.append(obj.time)
            if passive:
                info = beatmap.slider_info(obj)
                times.extend(obj.time + info.span_duration * np.arange(1, info.span_count + 1))
        elif isinstance(obj, Spinner) and passive:
            times.append(obj.end_time)
    # Upstream truncates to whole ms after adding 1e-5, so 99.99999 counts as 100.
    return np.unique(np.trunc(np.asarray(times, dtype=np.float64) + 1e-5).astype(np.int64))


def rhythm_score(generated: np.ndarray, reference: np.ndarray,
                 tolerance_ms: float = RHYTHM_TOLERANCE_MS) -> RhythmScore:
    """Precision/recall/F1 of generated times against reference times (sorted arrays)."""
    found = int(np.count_nonzero(_nearest_distance(reference, generated) <= tolerance_ms))
    false_positives = int(np.count_nonzero(_nearest_distance(generated, reference) > tolerance_ms))
    if len(generated) == 0 and len(reference) == 0:
        return RhythmScore(1.0, 1.0, 1.0, 0, 0, 0)
    precision = (len(generated) - false_positives) / len(generated) if len(generated) else 0.0
    recall = found / len(reference) if len(reference) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return RhythmScore(precision, recall, f1, found, len(reference) - found, false_positives)


def _nearest_distance(points: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """For each point, the distance to the nearest value of the sorted ``grid`` (inf if it is empty)."""
    if len(grid) == 0:
        return np.full(len(points), np.inf)
    right = np.clip(np.searchsorted(grid, points), 0, len(grid) - 1)
    left = np.clip(right - 1, 0, len(grid) - 1)
    return np.minimum(np.abs(points - grid[left]), np.abs(points - grid[right]))


# ------------------------------------------------------------------------------------- timing
def _red_lines(beatmap: Beatmap) -> tuple[np.ndarray, np.ndarray]:
    """Times and beat lengths (ms) of the red lines osu! uses, sorted by time."""
    points = [p for p in beatmap.control_points().uninherited_points if p.beat_length > 0]
    return (np.array([p.time for p in points], dtype=np.float64),
            np.array([p.beat_length for p in points], dtype=np.float64))


def _bpm_at(times: np.ndarray, beat_lengths: np.ndarray, at: np.ndarray) -> np.ndarray:
    if len(times) == 0:
        return np.zeros(len(at))
    index = np.clip(np.searchsorted(times, at, side="right") - 1, 0, None)
    return 60000.0 / beat_lengths[index]


def bpm_error(generated: Beatmap, reference: Beatmap) -> float:
    """RMS difference of the two maps' BPM over ``[0, L]`` (see the module docstring)."""
    gen_times, gen_beats = _red_lines(generated)
    ref_times, ref_beats = _red_lines(reference)
    length = max(_last_start(generated), _last_start(reference), 0.0)
    if length <= 0:
        at0 = np.zeros(1)
        return float(abs(_bpm_at(gen_times, gen_beats, at0) - _bpm_at(ref_times, ref_beats, at0))[0])
    inner = np.concatenate([gen_times, ref_times])
    edges = np.unique(np.concatenate([[0.0, length], inner[(inner > 0) & (inner < length)]]))
    widths = np.diff(edges)
    middles = edges[:-1] + widths / 2  # the BPM is constant between two edges
    diff = _bpm_at(gen_times, gen_beats, middles) - _bpm_at(ref_times, ref_beats, middles)
    return float(math.sqrt(np.sum(diff * diff * widths) / length))


def offset_error_ms(generated: Beatmap, reference: Beatmap) -> float | None:
    """Mean distance (ms) from each reference red line to the nearest beat of the closest generated red line."""
    gen_times, gen_beats = _red_lines(generated)
    ref_times, _ = _red_lines(reference)
    if len(gen_times) == 0 or len(ref_times) == 0:
        return None
    right = np.clip(np.searchsorted(gen_times, ref_times), 0, len(gen_times) - 1)
    left = np.clip(right - 1, 0, len(gen_times) - 1)
    closest = np.where(np.abs(ref_times - gen_times[left]) <= np.abs(ref_times - gen_times[right]), left, right)
    beat = gen_beats[closest]
    phase = np.mod(ref_times - gen_times[closest], beat)  # 0 <= phase < beat
    return float(np.mean(np.minimum(phase, beat - phase)))


# -------------------------------------------------------------------------------- map measures
def drain_time_s(beatmap: Beatmap) -> float:
    """Seconds from the first to the last object start, less gaps longer than 8 s (upstream's drain time)."""
    starts = np.sort(np.trunc(np.array([o.time for o in beatmap.hit_objects], dtype=np.float64) + 1e-5))
    if len(starts) < 2:
        return 0.0
    gaps = np.diff(starts)
    return float((starts[-1] - starts[0] - gaps[gaps > DRAIN_BREAK_MS].sum()) / 1000.0)


def _last_start(beatmap: Beatmap) -> float:
    return max((o.time for o in beatmap.hit_objects), default=0.0)


def _load(source: BeatmapLike) -> Beatmap:
    return source if isinstance(source, Beatmap) else read_beatmap(source)


def _stars(source: BeatmapLike, beatmap: Beatmap) -> float | None:
    from .beatmap_stats import star_rating

    if isinstance(source, Beatmap):  # rate what is in memory, even when the object was read from a file
        return star_rating(dataclasses.replace(beatmap, path=None))
    return star_rating(source)


def _name(source: BeatmapLike, beatmap: Beatmap) -> str:
    path = beatmap.path if isinstance(source, Beatmap) else Path(source)
    return path.name if path is not None else "<beatmap>"


def _osu_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".osu" and p.is_file())
    if not files:
        raise BeatmapError(Message("error.evaluation.no_osu_files", "the folder holds no .osu files"), folder)
    return files
