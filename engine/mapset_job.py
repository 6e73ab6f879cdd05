"""Many maps of one song in one job: a whole mapset, or several tries (variants) of one difficulty.

    result = generate_mapset(MapsetOptions(audio_path="song.mp3", gamemode=0, difficulties=(2, 3.5, 5, 6.5)))
    result = generate_mapset(MapsetOptions(audio_path="song.mp3", difficulty=5, num_variants=4, seed=7))

Each map is a *row*: the single generation its options describe (:class:`engine.generation._Job`), with its
own seed and random stream. The song is loaded once. A **mapset** has one timing for all its rows (the
reference's, or decoded once as the first row's job decodes it: its conditions, its seed); then the map passes
of all rows run as the rows of one batch (:class:`engine.passes.PassRunner`, each pass with its own
generator), so N difficulties cost far less than N jobs. **Variants** are N complete jobs of one difficulty
with seeds ``seed, seed+1, ...`` (or ``seeds=[...]``): when the timing is decoded, their timing passes are
batched too, so each variant is exactly what ``generate`` gives with its seed.

Rows are independent: greedy rows give what the separate jobs give, and a sampled row draws only from its own
seed's stream (in a mapset, rows after the first start their stream at the map pass); tests/test_mapset.py shows
it token for token in fp32. ``precision=int8`` quantizes each layer's input with one scale for the whole batch,
so rows there can differ slightly from their separate jobs.

A mapset is written as one set (the .osu files beside the song, or one .osz); difficulty names follow the
star ratings as mappers name them (:func:`difficulty_name`) unless ``difficulty_names`` says otherwise.
Variants are written as separate files, named after their seeds; :func:`discard_variants` removes all but
the one to keep. Every map keeps the AI marks of single generation (creator, tags with its seed). All
outputs are written all or nothing.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .errors import OptionError
from .messages import Message
from .generation import (GenerationResult, ProgressCallback, _free_name, _Job, _raise_if_cancelled, _Reporter,
                         prepare)
from .options import SEED, GenerateOptions, ranged
from .tokenizer import ContextType

C = ContextType
MAX_ROWS = 64

# Upper star-rating bounds of each name (osu!'s wiki: Easy < 2, Normal < 2.7, Hard < 4, Insane < 5.3,
# Expert < 6.5, Expert+ above), and each mode's usual names for those ranges.
STAR_BOUNDS = (2.0, 2.7, 4.0, 5.3, 6.5)
DIFFICULTY_NAMES = {
    0: ("Easy", "Normal", "Hard", "Insane", "Expert", "Expert+"),
    1: ("Kantan", "Futsuu", "Muzukashii", "Oni", "Inner Oni", "Hell Oni"),
    2: ("Cup", "Salad", "Platter", "Rain", "Overdose", "Deluge"),
    3: ("Easy", "Normal", "Hard", "Insane", "Expert", "Expert+"),  # prefixed with the key count: "4K Hard"
}


@dataclass(frozen=True)
class MapsetOptions(GenerateOptions):
    """:class:`GenerateOptions` for every row, plus what makes the rows differ."""

    difficulties: tuple[float, ...] = ranged((), 0, 50)  # a mapset: one difficulty per star rating
    gamemodes: tuple[int, ...] = ranged((), 0, 3)  # several modes in one set (each with every difficulty)
    difficulty_names: tuple[str, ...] = ()  # overrides the names from the star ratings, one per row
    num_variants: int = ranged(1, 1, MAX_ROWS)  # tries of one difficulty, with seeds seed, seed+1, ...
    seeds: tuple[int, ...] = ranged((), SEED)  # each row's seed (instead of seed, seed+1, ...)

    @property
    def is_variants(self) -> bool:
        return self.num_variants > 1


@dataclass
class MapsetResult:
    kind: str  # "mapset" or "variants"
    path: Path  # the folder the maps are in, or the mapset's .osz
    maps: list[GenerationResult]  # one per row, in the order asked
    tokens: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # about the whole job (each map has its own too)


def difficulty_name(stars: float | None, mode: int, keycount: int | None = None) -> str:
    """What mappers call a difficulty of ``stars`` in ``mode`` (osu!'s names and star ranges)."""
    names = DIFFICULTY_NAMES.get(mode, DIFFICULTY_NAMES[0])
    index = len(STAR_BOUNDS) if stars is None else sum(stars >= bound for bound in STAR_BOUNDS)
    name = names[index] if stars is not None else "Difficulty"
    return f"{keycount}K {name}" if mode == 3 and keycount else name


# --- the rows ------------------------------------------------------------------------------------------------


def row_options(options: MapsetOptions) -> list[GenerateOptions]:
    """The single-generation options of each row; raises OptionError for a request that makes no set."""
    o = options
    if o.difficulties and o.difficulty is not None:
        raise OptionError(Message("mapset.difficulty_twice", "give either difficulty or difficulties, not both"))
    if o.gamemodes and o.gamemode is not None:
        raise OptionError(Message("mapset.gamemode_twice", "give either gamemode or gamemodes, not both"))
    if o.add_to_beatmap or o.overwrite_reference_beatmap:
        raise OptionError(Message("mapset.no_add_to_beatmap", "add_to_beatmap works on one map; a mapset or variants "
                                   "write new difficulties only"))
    if o.is_variants:
        if len(o.difficulties) > 1 or len(o.gamemodes) > 1:
            raise OptionError(Message("mapset.variants_one_difficulty", "num_variants tries one difficulty; use "
                                      "difficulties=[...] without num_variants for a mapset"))
        if not o.do_sample:
            raise OptionError(Message("mapset.variants_need_sampling", "variants differ only when sampling: set "
                                      "do_sample=true (or give one seed)"))
        rows = [((o.gamemodes or (o.gamemode,))[0], (o.difficulties or (o.difficulty,))[0])] * o.num_variants
    else:
        if o.version is not None:
            raise OptionError(Message("mapset.no_version", "a mapset names each difficulty: use difficulty_names=[...] "
                                      "instead of version"))
        rows = list(itertools.product(o.gamemodes or (o.gamemode,), o.difficulties or (o.difficulty,)))
    if len(rows) > MAX_ROWS:
        raise OptionError(Message("mapset.too_many_maps", "{count} maps in one job; at most {limit}", count=len(rows),
                                  limit=MAX_ROWS))
    if o.difficulty_names and len(o.difficulty_names) != len(rows):
        raise OptionError(Message("mapset.names_count", "difficulty_names has {names} names for {maps} maps",
                                  names=len(o.difficulty_names), maps=len(rows)))
    if o.seeds and len(o.seeds) != len(rows):
        raise OptionError(Message("mapset.seeds_count", "seeds has {seeds} seeds for {maps} maps", seeds=len(o.seeds),
                                  maps=len(rows)))
    seeds = o.seeds or _consecutive_seeds(o.seed, len(rows))
    names = {f.name for f in dataclasses.fields(GenerateOptions)}
    base = {name: getattr(o, name) for name in names}
    return [GenerateOptions(**{**base, "gamemode": mode, "difficulty": stars, "seed": seed})
            for (mode, stars), seed in zip(rows, seeds)]


def _consecutive_seeds(seed: int | None, count: int) -> list[int]:
    from .runtime import new_seed

    first = new_seed() if seed is None else seed
    return [(first + i) % (SEED.high + 1) for i in range(count)]


# --- the job -------------------------------------------------------------------------------------------------


def generate_mapset(options: MapsetOptions, progress: ProgressCallback | None = None,
                    cancel: threading.Event | None = None) -> MapsetResult:
    """Generate every row of ``options`` in shared batches and write them all (or nothing)."""
    from .decoding import DecodeStats

    rows = row_options(options)
    plans = [prepare(row) for row in rows]
    report = _Reporter(progress, DecodeStats())
    report.stage("Loading the song", 0.0)
    jobs = [_Job(plan, cancel, report) for plan in plans]
    beatmaps, tokens = _run(jobs, options.is_variants)
    _raise_if_cancelled(cancel)
    _name(jobs, beatmaps, options)
    report.stage("Writing the maps", 0.99)
    path, written = _write(jobs, beatmaps, options)
    report.stage("Done", 1.0)
    stats = report.stats
    maps = [GenerationResult(b, p, osu, job.opts, job.plan.preset.name, job.seed, n, stats.seconds, job.warnings)
            for job, b, (p, osu), n in zip(jobs, beatmaps, written, tokens)]
    return MapsetResult("variants" if options.is_variants else "mapset", path, maps, stats.tokens, stats.seconds)


def _run(jobs: list[_Job], variants: bool) -> tuple[list, list[int]]:
    """Every row's beatmap (in memory) and the tokens decoded for it."""
    from .audio import load_audio
    from .windows import WindowLayout

    lead = jobs[0]
    report = lead.report
    report.stage("Loading the song", 0.01)
    notes: list = []  # the song's warnings, shown with every map
    samples = load_audio(lead.plan.audio_path, lead.plan.preset.data.sample_rate, notes=notes)
    for job in jobs:
        job.warnings.extend(notes)
    _raise_if_cancelled(lead.cancel)
    o = lead.opts
    segments = WindowLayout.for_preset(lead.plan.preset, o.lookback, o.lookahead).segment(
        samples, o.start_time, o.end_time)
    report.stage("Loading the model", 0.02)
    conditions = [job.conditions() for job in jobs]
    if lead.shares_encoder():  # every row's passes walk the same windows: one cache for all of them
        from .passes import EncoderCache

        cache = EncoderCache()
        for job in jobs:
            job.encoder_cache = cache
    tokens = [0] * len(jobs)
    own_timing = variants and lead.decodes_timing()  # each variant decodes its own timing, as alone
    report.passes = 1 + lead.decodes_timing()
    if own_timing and not o.super_timing:
        timings = _batched_timing(jobs, conditions, segments, tokens)
    elif own_timing:  # super timing: one job after the other (its shifted passes are batched inside each)
        timings = [job.timing(cond, samples, segments) for job, cond in zip(jobs, conditions)]
        report.pass_index = 1
    else:
        shared = lead.timing(conditions[0], samples, segments)
        timings = [shared] + [copy.deepcopy(shared) for _ in jobs[1:]]
    _raise_if_cancelled(lead.cancel)
    contexts = _batched_map_passes(jobs, conditions, segments, timings, tokens)
    beatmaps = [job.build(ctx, timing_points, given, segments.song_length_ms)
                for job, ctx, (timing_points, given) in zip(jobs, contexts, timings)]
    return beatmaps, tokens


def _batched_timing(jobs, conditions, segments, tokens):
    """One timing pass per row, decoded as rows of shared batches, each from its own random stream."""
    root = jobs[0].checkpoint(root=True)
    made = [job.make_pass(root, cond, segments, (C.TIMING,), {}, job.generator) for job, cond in zip(jobs, conditions)]
    _run_passes(jobs[0], root, made, "Timing")
    jobs[0].report.end_pass()
    timings = []
    for i, (job, (sequential, _, _)) in enumerate(zip(jobs, made)):
        tokens[i] += sequential.tokens
        events = sequential.run.results(start_time=job.opts.start_time, end_time=job.opts.end_time)[C.TIMING]
        given: dict = {}
        timings.append((job.timing_from_events(events, given, segments.song_length_ms), given))
    return timings


def _batched_map_passes(jobs, conditions, segments, timings, tokens) -> list[dict]:
    """The map passes of every row; rows with the same map checkpoint and decoding options share batches."""
    from .checkpoint import locate

    contexts: list[dict] = [{} for _ in jobs]
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        given = timings[i][1]
        if any(c != C.TIMING for c in job.plan.output_type if c not in given):
            o = job.opts
            folder, _ = locate(o.model_path, gamemode=job.plan.gamemode if o.auto_select_gamemode_model else None,
                               revision=o.revision)
            groups.setdefault((str(folder), job.plan.gamemode), []).append(i)
    for members in groups.values():
        ck = jobs[members[0]].checkpoint()
        made = {}
        for i in members:
            job, given = jobs[i], timings[i][1]
            wanted = tuple(c for c in job.plan.output_type if c not in given)
            made[i] = job.make_pass(ck, conditions[i], segments, wanted, given, jobs[i].generator)
        by_decoding: dict = {}
        for i in members:
            by_decoding.setdefault(made[i][1], []).append(i)
        for same in by_decoding.values():
            _run_passes(jobs[same[0]], ck, [made[i] for i in same], "Map")
        for i in members:
            tokens[i] += made[i][0].tokens
            contexts[i] = made[i][0].run.results(start_time=jobs[i].opts.start_time, end_time=jobs[i].opts.end_time)
    jobs[0].report.end_pass()
    return contexts


def _run_passes(lead: _Job, ck, made, label: str) -> None:
    from .passes import PassRunner

    decoding = made[0][1]
    calls = sum(n for _, _, n in made)
    runner = PassRunner(lead.pass_context(ck), decoding, batch_size=lead.opts.max_batch_size or 1, label=label,
                        total_calls=calls)
    for _ in runner.run([sequential for sequential, _, _ in made]):
        pass


# --- names and files -----------------------------------------------------------------------------------------


def _name(jobs: Sequence[_Job], beatmaps: list, options: MapsetOptions) -> None:
    """Each map's difficulty name: given, from its stars (a mapset) or its seed (variants); never twice."""
    from .beatmap_stats import star_rating

    names = list(options.difficulty_names)
    if not names:
        for job, beatmap in zip(jobs, beatmaps):
            if options.is_variants:
                names.append(f"{beatmap.metadata.version} (seed {job.seed})")
                continue
            stars = star_rating(dataclasses.replace(beatmap, path=None)) if beatmap.hit_objects else job.opts.difficulty
            keys = int(beatmap.difficulty.circle_size) if beatmap.mode == 3 else None
            names.append(difficulty_name(stars, beatmap.mode, keys))
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        seen[name.lower()] = seen.get(name.lower(), 0) + 1
        if seen[name.lower()] > 1:
            names[i] = f"{name} {seen[name.lower()]}"
    for beatmap, name in zip(beatmaps, names):
        beatmap.metadata = dataclasses.replace(beatmap.metadata, version=name)


def _write(jobs: Sequence[_Job], beatmaps: list, options: MapsetOptions) -> tuple[Path, list[tuple[Path, Path | None]]]:
    """Write every map in one transaction: the set's folder (or .osz), or each variant's file."""
    from .beatmap import beatmap_bytes, write_osz
    from .beatmap.files import OutputTransaction, os_reason
    from .beatmap.osz import safe_filename
    from .generation import _copy_beside
    from .postprocess import osu_filename

    lead = jobs[0]
    folder = lead.plan.output_dir
    background = Path(lead.opts.background).expanduser() if lead.opts.background else lead.reference_background
    song = lead.plan.audio_path
    extra = [p for p in (song, background) if p is not None and p.is_file()]
    taken: set[Path] = set()

    def free(name: str) -> Path:  # a name neither on disk nor given to another map of this job
        path, n = _free_name(folder, name), 2
        while path in taken:
            path, n = _free_name(folder, f"{Path(name).stem} ({n}){Path(name).suffix}"), n + 1
        taken.add(path)
        return path

    written: list[tuple[Path, Path | None]] = []
    try:
        with OutputTransaction() as out:
            out.make_folder(folder)
            files = {p.name: p for p in extra}
            if options.export_osz and not options.is_variants:
                m = beatmaps[0].metadata
                path = free(safe_filename(f"{m.artist} - {m.title} ({m.creator}).osz"))
                write_osz(path, beatmaps=beatmaps, files=files, transaction=out)
                written = [(path, None)] * len(beatmaps)
            else:
                path = folder
                if not options.export_osz:
                    for source in extra:
                        _copy_beside(source, folder, out)
                for beatmap in beatmaps:
                    if options.export_osz:  # a variant: its own .osz
                        osz = free(f"{Path(osu_filename(beatmap)).stem}.osz")
                        write_osz(osz, beatmaps=[beatmap], files=files, transaction=out)
                        written.append((osz, None))
                    else:
                        osu = free(osu_filename(beatmap))
                        out.write(osu, beatmap_bytes(beatmap))
                        written.append((osu, osu))
    except OSError as e:
        raise OptionError(Message("error.generation.write_failed", "could not write to {folder}: {reason}; nothing "
                                  "was written", folder=str(folder), reason=os_reason(e))) from None
    return path, written


def discard_variants(result: MapsetResult, keep: int) -> list[Path]:
    """Remove the files of every variant but ``result.maps[keep]`` (the song copied beside them stays);
    returns the files removed. Only files this job wrote are touched, never a reference map."""
    if result.kind != "variants":
        raise OptionError(Message("mapset.discard_mapset", "only variants can be discarded; a mapset is one set"))
    if not 0 <= keep < len(result.maps):
        raise OptionError(Message("mapset.keep_range", "keep={keep}: there are {count} variants (0–{last})", keep=keep,
                                  count=len(result.maps), last=len(result.maps) - 1))
    kept = result.maps[keep].path.resolve()
    removed = []
    for i, row in enumerate(result.maps):
        path = row.path
        reference = row.options.beatmap_path
        if i == keep or path.resolve() == kept or not path.is_file():
            continue
        if reference and Path(reference).expanduser().resolve() == path.resolve():
            continue
        path.unlink()
        removed.append(path)
    return removed
