"""Generate a beatmap for a song: the one driver the CLI, the desktop app and the tests call.

    result = generate(GenerateOptions(audio_path="song.mp3", gamemode=0, difficulty=5), progress=print)

Pipeline (as upstream's ``inference.py``): check every input before heavy work -> load the song and cut
it into windows -> timing (from a reference map, a super-timing pass or the model's TIMING pass with the
root checkpoint) -> the map passes, window by window, with the ``gamemode=N`` checkpoint -> post-process
into a Beatmap -> write the .osu (and .osz), with the song and background beside it.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .beatmap.files import check_output_writable
from .errors import AudioError, Cancelled, ModelError, OptionError
from .messages import Message
from .options import GenerateOptions, suggest
from .presets import PRESETS, VersionPreset
from .tokenizer import ContextType, EventType, Tokenizer

log = logging.getLogger(__name__)
C = ContextType

AI_TAGS = "mapperator ai-generated"


@dataclass(frozen=True)
class Progress:
    fraction: float  # 0..1 of the whole job
    stage: str  # what is happening, in words
    tokens_per_second: float | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass
class GenerationResult:
    beatmap: "Beatmap"  # noqa: F821
    path: Path  # the file written: .osu, or .osz with export_osz
    osu_path: Path | None  # the .osu written beside the song (None when only an .osz was written)
    options: GenerateOptions  # with every default resolved (reproduces this run)
    version: str
    seed: int
    tokens: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


# --- checking the request ----------------------------------------------------------------------------------


@dataclass
class Plan:
    """A validated request: paths resolved, the reference beatmap read, the model located."""

    options: GenerateOptions
    audio_path: Path
    output_dir: Path
    reference: "Beatmap | None"  # noqa: F821
    preset: VersionPreset
    tokenizer: Tokenizer
    in_context: tuple[ContextType, ...]
    output_type: tuple[ContextType, ...]
    gamemode: int


def _context_types(names: Sequence[str], option: str) -> tuple[ContextType, ...]:
    out = []
    for name in names:
        try:
            out.append(ContextType(str(name).lower()))
        except ValueError:
            valid = ", ".join(c.name for c in ContextType)
            raise OptionError(Message("error.generation.unknown_context", "{option}: unknown context {name}; use some "
                                      "of {valid}", option=option, name=repr(name), valid=valid)) from None
    return tuple(c for c in out if c != C.NONE)


def _check_audio(path: Path) -> None:
    from .audio import audio_duration_ms

    if not path.is_file():
        raise AudioError(Message("error.audio.file_not_found", "audio file {path} not found", path=str(path)))
    audio_duration_ms(path)  # reads the header only; raises AudioError for unreadable files


def _version_of(source: str) -> str | None:
    return source if source in PRESETS else None


def _load_tokenizer(opts: GenerateOptions, gamemode: int) -> tuple[Tokenizer, VersionPreset]:
    """The map checkpoint's vocabulary (a small file) to validate options before loading weights."""
    from .checkpoint import locate, parse_config, read_json
    from .presets import detect_version

    subfolder_mode = gamemode if opts.auto_select_gamemode_model else None
    folder, _ = locate(opts.model_path, gamemode=subfolder_mode, revision=opts.revision)
    tokenizer = Tokenizer.from_file(folder / "tokenizer.json")
    config = parse_config(read_json(folder / "config.json"))
    name = _version_of(opts.model_path) or detect_version(config.backbone_name, set(tokenizer.context_sos))
    if name is None:
        raise ModelError(Message("error.generation.not_a_checkpoint", "{folder}: not a Mapperatorinator "
                                 "v29/v30/v31/v32/v32-mini checkpoint", folder=str(folder)))
    return tokenizer, PRESETS[name]


def _check_conditions(opts: GenerateOptions, preset: VersionPreset, tok: Tokenizer, gamemode: int) -> None:
    data = preset.data
    name = preset.name
    if gamemode not in data.gamemodes:
        modes = ", ".join(str(m) for m in data.gamemodes)
        raise OptionError(Message("condition.modes_only", "{model} maps game modes {modes} only; gamemode={gamemode} "
                                  "needs v31 or v32", model=name, modes=modes, gamemode=gamemode))
    if opts.difficulty is not None:
        top = float(tok.max_difficulty) if data.add_diff_token else 10.0
        if not (data.add_diff_token or _has_embed(preset, "difficulty")):
            raise OptionError(Message("condition.no_difficulty", "{model} does not take a difficulty", model=name))
        if not 0 <= opts.difficulty <= top:
            raise OptionError(Message("condition.difficulty_range", "difficulty={difficulty} is outside {model}'s range "
                                      "0–{top:g} stars", difficulty=opts.difficulty, model=name, top=top))
    if opts.year is not None:
        if not data.add_year_token:
            raise OptionError(Message("condition.no_year", "{model} does not take a year", model=name))
        low, high = data.min_year or tok.range[EventType.YEAR].min_value, data.max_year or 2024
        if not low <= opts.year <= high:
            raise OptionError(Message("condition.year_range", "year={year} is outside the years {model} was trained on "
                                      "({low}–{high})", year=opts.year, model=name, low=low, high=high))
    if opts.mapper_id is not None:
        if not (data.add_mapper_token or _has_embed(preset, "mapper")):
            raise OptionError(Message("condition.no_mapper", "{model} does not take a mapper_id", model=name))
        if opts.mapper_id not in tok.mapper_idx:
            known = [str(m) for m in tok.mapper_idx]
            raise OptionError(Message("condition.unknown_mapper", "mapper_id={mapper} is not a mapper {model} "
                                      "knows{suggestion}", mapper=opts.mapper_id, model=name,
                                      suggestion=suggest(str(opts.mapper_id), known)))
    for option in ("descriptors", "negative_descriptors"):
        names = getattr(opts, option) or ()
        if names and not data.add_descriptors:
            raise OptionError(Message("condition.no_descriptors", "{model} does not take {option}", model=name,
                                      option=option))
        for d in names:
            if d not in tok.descriptor_idx:
                raise OptionError(Message("condition.unknown_descriptor", "{option}: {descriptor} is not a descriptor "
                                          "{model} knows{suggestion}", option=option, descriptor=repr(d), model=name,
                                          suggestion=suggest(d, tok.descriptor_names())))


def _has_embed(preset: VersionPreset, which: str) -> bool:
    return preset.name in ("v30", "v31") and which in ("difficulty", "mapper")


def _check_sampling(opts: GenerateOptions) -> None:
    if opts.num_beams != 1:
        raise OptionError(Message("error.generation.no_beam_search", "num_beams > 1 (beam search) is not supported; "
                                  "use do_sample=false for greedy decoding"))


def _check_generate_positions(opts: GenerateOptions, preset: VersionPreset) -> None:
    if opts.generate_positions and not preset.inference.generate_positions:
        raise OptionError(Message("error.generation.positions_v29_only", "generate_positions=true (osu-diffusion "
                                  "refinement of v29's 32-px grid positions) is only for v29; {model} places objects "
                                  "precisely itself: leave generate_positions out or set it to false",
                                  model=preset.name))


def _check_ranges(opts: GenerateOptions) -> None:
    """Each number is already in its range (GenerateOptions' field rules); here: the ranges that depend on
    each other."""
    from .windows import WindowLayout

    WindowLayout(2, 1, 1, 0.5 if opts.lookback is None else opts.lookback,
                 0.4 if opts.lookahead is None else opts.lookahead)  # raises OptionError when they do not fit


def prepare(opts: GenerateOptions) -> Plan:
    """Check everything that can be checked cheaply; raises a MapperatorError naming the problem."""
    from .beatmap import read_reference_beatmap

    _check_sampling(opts)
    _check_ranges(opts)
    reference = read_reference_beatmap(opts.beatmap_path) if opts.beatmap_path else None
    audio = opts.audio_path
    if not audio and reference is not None and reference.general.audio_filename:
        audio = str(_reference_song(Path(opts.beatmap_path).expanduser(), reference.general.audio_filename))
    if not audio:
        raise OptionError(Message("error.generation.audio_required", "audio_path is required (or a beatmap_path whose "
                                  "folder holds its song)"))
    audio_path = Path(audio).expanduser()
    _check_audio(audio_path)
    if opts.output_path:
        output_dir = Path(opts.output_path).expanduser()
    elif reference is not None:
        output_dir = Path(opts.beatmap_path).expanduser().parent
    else:
        output_dir = audio_path.parent
    check_output_writable(output_dir)

    in_context = _context_types(opts.in_context, "in_context")
    if in_context and reference is None:
        raise OptionError(Message("error.generation.in_context_needs_reference", "in_context needs a reference "
                                  "beatmap: set beatmap_path"))
    if opts.add_to_beatmap and reference is None:
        raise OptionError(Message("error.generation.add_needs_reference", "add_to_beatmap needs a reference beatmap: "
                                  "set beatmap_path"))
    gamemode = opts.gamemode if opts.gamemode is not None else (reference.mode if reference is not None else 0)
    tokenizer, preset = _load_tokenizer(opts, gamemode)
    output_type = _context_types(opts.output_type, "output_type") if opts.output_type else \
        preset.inference.output_type
    known = {c for t in preset.data.context_templates for c in t.inputs + t.outputs}
    for c in in_context + output_type:
        if c not in known:
            raise OptionError(Message("error.generation.no_such_context", "{model} has no {context} context; it knows "
                                      "{known}", model=preset.name, context=c.name,
                                      known=", ".join(sorted(k.name for k in known if k != C.NONE))))
    _check_conditions(opts, preset, tokenizer, gamemode)
    _check_generate_positions(opts, preset)
    return Plan(opts, audio_path, output_dir, reference, preset, tokenizer, in_context, output_type, gamemode)


# --- the run --------------------------------------------------------------------------------------------------


class _Reporter:
    """Turns the progress of each pass into one rising fraction of the job (passes get equal shares)."""

    START, END = 0.03, 0.97

    def __init__(self, callback: ProgressCallback | None, stats: "DecodeStats | None" = None):  # noqa: F821
        self.callback = callback
        self.stats = stats
        self.passes = 1
        self.pass_index = 0
        self.pass_fraction = 0.0

    def pass_progress(self, text: str, fraction: float) -> None:
        """A :data:`engine.passes.PassProgress`: ``fraction`` of the current pass is done."""
        self.pass_fraction = fraction
        self.stage(text)

    def end_pass(self) -> None:
        self.pass_index += 1
        self.pass_fraction = 0.0

    def fraction(self) -> float:
        share = (self.END - self.START) / max(self.passes, 1)
        return min(self.START + share * (self.pass_index + self.pass_fraction), self.END)

    def stage(self, text: str, fraction: float | None = None) -> None:
        if self.callback is not None:
            tps = self.stats.tokens_per_second if self.stats is not None and self.stats.seconds else None
            self.callback(Progress(self.fraction() if fraction is None else fraction, text, tps))


def generate(
    options: GenerateOptions,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> GenerationResult:
    """Generate a beatmap as ``options`` ask; see :class:`GenerateOptions`. Nothing is written when the job
    fails or is cancelled (a set ``cancel`` event stops it within one decoding step)."""
    plan, job, beatmap = run_job(options, progress, cancel)
    report = job.report
    report.stage(Message("stage.writing_beatmap", "Writing the beatmap"), 0.99)
    written, osu_path = write_outputs(job, beatmap)
    report.stage(Message("stage.done", "Done"), 1.0)
    return GenerationResult(beatmap, written, osu_path, job.opts, plan.preset.name, job.seed,
                            job.stats.tokens, job.stats.seconds, job.warnings)


def run_job(options: GenerateOptions, progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None) -> tuple[Plan, "_Job", "Beatmap"]:  # noqa: F821
    """Check ``options``, run every pass and return the beatmap in memory (nothing written yet)."""
    from .decoding import DecodeStats

    plan = prepare(options)
    report = _Reporter(progress, DecodeStats())
    report.stage(Message("stage.loading_song", "Loading the song"), 0.0)
    job = _Job(plan, cancel, report)
    beatmap = job.run()
    _raise_if_cancelled(cancel)
    return plan, job, beatmap


def _raise_if_cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(Message("error.generation.cancelled", "generation cancelled; nothing was written"))


class _Job:
    """One generation: holds the loaded song, models and conditions while the passes run."""

    def __init__(self, plan: Plan, cancel: threading.Event | None, report: _Reporter):
        from .runtime import new_seed, pick_device, seeded_generator

        self.plan = plan
        self.cancel = cancel
        self.report = report
        self.warnings: list[str] = []
        self.device = pick_device(plan.options.device)
        if plan.options.compiled_step and self.device.type != "cuda":
            self.warnings.append(Message("warning.compiled_step_gpu_only", "compiled_step works on an NVIDIA GPU "
                                         "only; on {device} this run decodes as usual", device=str(self.device)))
        self.seed = plan.options.seed if plan.options.seed is not None else new_seed()
        self.opts = self._resolved_options()
        self.stats = report.stats
        # one random stream for the whole job, as upstream's global seed
        self.generator: torch.Generator = seeded_generator(self.seed, self.device)
        self.encoder_cache = None  # set by run() when a later pass reuses encoder outputs
        self._model_keys: dict = {}  # root flag -> runtime.ModelKey (see _model_key)

    # options and conditions

    def _resolved_options(self) -> GenerateOptions:
        from .runtime import resolve_precision

        o, inf = self.plan.options, self.plan.preset.inference
        defaults = {
            "temperature": inf.temperature, "top_p": inf.top_p, "top_k": inf.top_k,
            "timing_temperature": inf.timing_temperature, "mania_column_temperature": inf.mania_column_temperature,
            "taiko_hit_temperature": inf.taiko_hit_temperature, "lookback": inf.lookback,
            "lookahead": inf.lookahead, "max_batch_size": inf.max_batch_size,
            "snap_near_perfect_overlaps": inf.snap_near_perfect_overlaps,
            "super_timing": inf.super_timing, "timing_leniency": inf.timing_leniency,
            "generate_positions": inf.generate_positions,
        }
        filled = {k: v for k, v in defaults.items() if getattr(o, k) is None}
        return dataclasses.replace(
            o, seed=self.seed, gamemode=self.plan.gamemode, precision=resolve_precision(self.device, o.precision),
            output_type=tuple(c.name for c in self.plan.output_type),
            in_context=tuple(c.name for c in self.plan.in_context), **filled)

    @functools.cached_property
    def reference_folder(self) -> Path | None:
        return Path(self.plan.options.beatmap_path).expanduser().parent if self.plan.reference is not None else None

    @functools.cached_property
    def reference_background(self) -> Path | None:
        """The reference's background image, when it is a file inside the reference's folder."""
        name = self.plan.reference.background_file if self.plan.reference is not None else None
        path = _inside(self.reference_folder, name, self.warnings) if name else None
        return path if path is not None and path.is_file() else None

    @functools.cached_property
    def reference_conditions(self):
        """What the reference beatmap says about itself (star rating by rosu-pp, ratios, ...)."""
        from .beatmap_stats import conditions_from_beatmap

        return conditions_from_beatmap(self.plan.reference, self.plan.tokenizer)

    def conditions(self):
        from .prompt import Conditions

        o = self.opts
        if self.plan.reference is not None:
            base = self.reference_conditions
        else:  # upstream's defaults for a map made from scratch
            base = Conditions(gamemode=self.plan.gamemode, hitsounded=True, circle_size=4, slider_multiplier=1.4,
                              keycount=4, hp_drain_rate=5, overall_difficulty=8, approach_rate=9, slider_tick_rate=1)
        chosen = {
            "gamemode": self.plan.gamemode, "difficulty": o.difficulty, "mapper_id": o.mapper_id, "year": o.year,
            "hitsounded": o.hitsounded, "circle_size": o.circle_size, "slider_multiplier": o.slider_multiplier,
            "keycount": o.keycount, "hold_note_ratio": o.hold_note_ratio, "scroll_speed_ratio": o.scroll_speed_ratio,
            "descriptors": o.descriptors, "negative_descriptors": o.negative_descriptors, "beatmap_id": o.beatmap_id,
            "hp_drain_rate": o.hp_drain_rate, "overall_difficulty": o.overall_difficulty,
            "approach_rate": o.approach_rate, "slider_tick_rate": o.slider_tick_rate,
        }
        return dataclasses.replace(base, **{k: v for k, v in chosen.items() if v is not None})

    # models

    def checkpoint(self, root: bool = False):
        """The map checkpoint (``gamemode=N`` subfolder when there is one) or, with ``root``, the root one."""
        from .checkpoint import load_checkpoint
        from .runtime import MODELS, prepare_model, weight_dtype

        o = self.opts
        key = self._model_key(root)
        folder, dtype, lora = Path(key.folder), weight_dtype(o.precision), key.lora

        def load():
            ck = load_checkpoint(str(folder), device=self.device, dtype=dtype, version=self.plan.preset.name)
            if lora:
                from .lora import apply_lora

                apply_lora(ck, lora)
            prepare_model(ck.model, o.precision)  # after the LoRA merge: int8 quantizes the merged weights
            return ck

        return MODELS.get(key, load)

    def _model_key(self, root: bool = False):
        """Which loaded model the map (or, with ``root``, the root) checkpoint is; located once per job (for a hub
        model, locating asks the hub)."""
        from .checkpoint import locate
        from .runtime import ModelKey, quantization, weight_dtype

        if root not in self._model_keys:
            o = self.opts
            gamemode = None if root or not o.auto_select_gamemode_model else self.plan.gamemode
            folder, _ = locate(o.model_path, gamemode=gamemode, revision=o.revision)
            lora = None if root else o.lora_path
            self._model_keys[root] = ModelKey(str(folder), o.revision, str(self.device),
                                              str(weight_dtype(o.precision)), lora, quantization(o.precision))
        return self._model_keys[root]

    def shares_encoder(self) -> bool:
        """The timing pass and the map pass run the same model over the same windows, so the map pass can reuse
        the timing pass's encoder outputs (super timing's windows are shifted: nothing to share)."""
        plan = self.plan
        return (self.decodes_timing() and not self.opts.super_timing
                and any(c != C.TIMING for c in plan.output_type) and self._model_key(True) == self._model_key())

    # the passes

    def pass_context(self, ck) -> "PassContext":  # noqa: F821
        """What running a pass with checkpoint ``ck`` needs from this job."""
        from .passes import PassContext
        from .runtime import encoder_batch

        return PassContext(ck, self.device, self.opts.precision, self.generator, self.cancel, self.stats,
                           self.report.pass_progress, self.encoder_cache, encoder_batch(self.device))

    def run(self):
        from .audio import load_audio
        from .windows import WindowLayout

        self.report.stage(Message("stage.loading_song", "Loading the song"), 0.01)
        samples = load_audio(self.plan.audio_path, self.plan.preset.data.sample_rate, notes=self.warnings)
        _raise_if_cancelled(self.cancel)
        o = self.opts
        layout = WindowLayout.for_preset(self.plan.preset, o.lookback, o.lookahead)
        segments = layout.segment(samples, o.start_time, o.end_time)
        self.report.stage(Message("stage.loading_model", "Loading the model"), 0.02)
        conditions = self.conditions()
        if self.shares_encoder():
            from .passes import EncoderCache

            self.encoder_cache = EncoderCache()
        self.report.passes = 1 + (not self.plan.in_context and (self.opts.super_timing or self._has_timing_output()))
        if self.refines_positions():
            self.diffusion_model()  # a missing or damaged diff_ckpt fails before the passes
            self.report.passes += 1
        timing_points, given = self.timing(conditions, samples, segments)
        wanted = tuple(c for c in self.plan.output_type if c not in given)
        contexts = {}
        if any(c != C.TIMING for c in wanted):
            contexts = self.generate_pass(self.checkpoint(), conditions, segments, wanted, given,
                                            Message("stage.map", "Map"))
        return self.build(contexts, timing_points, given, segments.song_length_ms)

    def timing(self, conditions, samples, segments):
        """Timing points and the contexts given to the map pass (TIMING, and reference contexts)."""
        from .events import context_events
        from .prompt import ContextStream

        plan, o = self.plan, self.opts
        given: dict[ContextType, ContextStream] = {}
        song_ms = segments.song_length_ms
        for c in plan.in_context:
            stream = context_events(c, plan.reference, plan.preset.data, song_length_ms=song_ms)
            class_tokens = self._reference_class_tokens(c, song_ms)
            given[c] = ContextStream(c, stream, given=True, class_tokens=class_tokens)
        timing_points = None
        if C.TIMING in plan.in_context or (plan.preset.data.add_timing and
                                            any(c in plan.in_context for c in (C.GD, C.NO_HS))):
            timing_points = [tp for tp in plan.reference.timing_points if tp.uninherited]
        elif not plan.in_context and (o.super_timing or self._has_timing_output()):
            if o.super_timing:
                from .super_timing import super_timing_events

                events = super_timing_events(
                    self.pass_context(self.checkpoint(root=True)), samples, conditions, seed=self.seed,
                    iterations=o.timer_iterations, bpm_threshold=o.timer_bpm_threshold, cfg_scale=o.timer_cfg_scale,
                    max_batch_size=o.max_batch_size, temperature=o.temperature, timing_temperature=o.timing_temperature)
                self.report.end_pass()
                if not events.events:
                    self.warnings.append(Message("warning.super_timing_no_beat",
                                                 "super timing found no steady beat in this song"))
            else:
                events = self.generate_pass(self.checkpoint(root=True), conditions, segments, (C.TIMING,), {},
                                            Message("stage.timing", "Timing"))[C.TIMING]
            timing_points = self.timing_from_events(events, given, song_ms)
        return timing_points, given

    def decodes_timing(self) -> bool:
        """The timing comes from the model (a timing pass or super timing), not from the reference."""
        return not self.plan.in_context and (self.opts.super_timing or self._has_timing_output())

    def timing_from_events(self, events, given: dict, song_ms: float):
        """Red lines from a decoded timing stream; adds them to ``given`` as the map pass's TIMING context."""
        from .events import timing_events
        from .prompt import ContextStream

        timing_points = self._timing_points(events)
        if timing_points:
            given[C.TIMING] = ContextStream(
                C.TIMING, timing_events(timing_points, self.plan.preset.data, song_length_ms=song_ms), given=True)
        else:
            self.warnings.append(Message("warning.no_beats", "the timing pass found no beats; the map gets a default "
                                         "120 BPM red line"))
        return timing_points

    def _reference_class_tokens(self, c: ContextType, song_length_ms: float):
        if c not in (C.MAP, C.GD):
            return None
        from .prompt import class_tokens

        return class_tokens(self.plan.tokenizer, self.plan.preset.data, self.reference_conditions, song_length_ms)

    def _has_timing_output(self) -> bool:
        templates = self.plan.preset.data.context_templates
        wants = any(c in self.plan.output_type for c in (C.TIMING, C.MAP))
        return wants and any(C.TIMING in t.outputs for t in templates)

    def _timing_points(self, timing_stream):
        from .events import BEAT_TYPES, events_of_type
        from .postprocess import generate_timing

        kept = events_of_type(timing_stream, BEAT_TYPES | {EventType.TIME_SHIFT})
        return generate_timing(kept.events, types_first=self.plan.preset.data.types_first,
                               leniency=self.opts.timing_leniency)

    def generate_pass(self, ck, conditions, segments, wanted, given, label: str):
        """Run one sequential pass of checkpoint ``ck`` over ``segments``; returns the finished streams."""
        from .passes import PassRunner

        sequential, decoding, calls = self.make_pass(ck, conditions, segments, wanted, given)
        runner = PassRunner(self.pass_context(ck), decoding, label=label, total_calls=calls)
        for _ in runner.run([sequential]):
            pass
        self.report.end_pass()
        return sequential.run.results(start_time=self.opts.start_time, end_time=self.opts.end_time)

    def make_pass(self, ck, conditions, segments, wanted, given, generator: torch.Generator | None = None):
        """One sequential pass of checkpoint ``ck`` over ``segments`` writing ``wanted``, not run yet: the pass
        (drawing from ``generator`` when given, else from the job's stream), its decoding options and its
        number of calls."""
        from .decoding import DecodingOptions
        from .passes import SequentialPass
        from .prompt import Embeds, GenerationRun

        o = self.opts
        run = GenerationRun(ck.tokenizer, ck.preset.data, segments, conditions, requested=wanted, given=given,
                            embeds=Embeds.from_config(ck.config), cfg_scale=o.cfg_scale)
        decoding = DecodingOptions(
            do_sample=o.do_sample, temperature=o.temperature, timing_temperature=o.timing_temperature,
            mania_column_temperature=o.mania_column_temperature, taiko_hit_temperature=o.taiko_hit_temperature,
            top_p=o.top_p, top_k=o.top_k, timeshift_bias=o.timeshift_bias, cfg_scale=o.cfg_scale,
            max_length=ck.preset.data.tgt_seq_len, types_first=ck.preset.data.types_first,
            compiled_step=o.compiled_step)
        calls = len(segments) * sum(not s.given for s in run.out_streams)
        return SequentialPass(run, segments, generator), decoding, calls

    # diffusion-refined positions (v29's generate_positions)

    def refines_positions(self) -> bool:
        """As upstream: only osu! and catch maps whose MAP is generated."""
        return bool(self.opts.generate_positions) and self.plan.gamemode in (0, 2) and C.MAP in self.plan.output_type

    def diffusion_model(self):
        from .diffusion import cached_diffusion_model, diffusion_precision

        precision = diffusion_precision(self.device, self.opts.precision)
        return cached_diffusion_model(str(self.opts.diff_ckpt), str(self.device), precision)

    def refine_positions(self, events: list, timing) -> list:
        """The map events (pixels, resnapped) with osu-diffusion's positions; what the post-processor gets next."""
        from .diffusion import DiffusionConditioning, DiffusionOptions, refine_positions

        cond, o = self.conditions(), self.opts
        red_lines = [(tp.time, tp.beat_length) for tp in timing or () if tp.uninherited] or None
        conditioning = DiffusionConditioning(
            difficulty=cond.difficulty, mapper_id=cond.mapper_id, descriptors=tuple(cond.descriptors or ()),
            negative_descriptors=tuple(cond.negative_descriptors or ()), circle_size=cond.circle_size,
            beatmap_id=cond.beatmap_id, slider_multiplier=self.settings().slider_multiplier, red_lines=red_lines)
        options = DiffusionOptions(model=self.diffusion_model(), device=self.device, cfg_scale=o.diff_cfg_scale,
                                   seed=self.seed, start_time=o.start_time, end_time=o.end_time)
        label = Message("stage.refining_positions", "Refining positions")
        self.report.pass_progress(label, 0.0)
        refined = refine_positions(events, conditioning, options,
                                   progress=lambda _text, f: self.report.pass_progress(label, f), cancel=self.cancel)
        self.report.end_pass()
        return refined

    # building the beatmap

    def build(self, contexts, timing_points, given, song_length_ms: float):
        from .postprocess import PostprocessOptions, add_to_beatmap, postprocess

        settings = self.settings()
        popts = PostprocessOptions.for_preset(
            self.plan.preset, resnap_events=self.opts.resnap_events, timing_leniency=self.opts.timing_leniency,
            snap_near_perfect_overlaps=bool(self.opts.snap_near_perfect_overlaps), seed=self.seed)
        contexts = {c: s for c, s in contexts.items() if c != C.TIMING}
        if C.TIMING in self.plan.output_type and C.TIMING in given and timing_points is None:
            contexts[C.TIMING] = given[C.TIMING]
        beatmap = postprocess(contexts, settings, popts, timing=timing_points,
                              refine=self.refine_positions if self.refines_positions() else None)
        song_end = song_length_ms
        late = [o for o in beatmap.hit_objects if o.time > song_end]
        if late:  # the last window is zero-padded, and resnapping can push objects past the audio's end
            beatmap.hit_objects = [o for o in beatmap.hit_objects if o.time <= song_end]
            self.warnings.append(Message("warning.dropped_late", "dropped {count} object(s) that would start after "
                                         "the song ends", count=len(late)))
        if not any(tp.uninherited for tp in beatmap.timing_points):
            # osu! refuses to open a beatmap without a red line.
            from .beatmap import TimingPoint

            beat = 60000 / settings.bpm if settings.bpm else 500.0
            beatmap.timing_points.insert(0, TimingPoint(time=float(settings.offset), beat_length=beat, sample_set=2,
                                                        volume=60, uninherited=True))
            self.warnings.append(Message("warning.no_timing", "the model produced no timing; the beatmap has a "
                                         "{bpm:g} BPM red line at {offset} ms that you should correct in the editor",
                                         bpm=60000 / beat, offset=settings.offset))
        if self.opts.compiled_step:
            from .cuda_graph import compile_failure
            from .runtime import MODELS

            # asked of the job's models still loaded: one another job's models pushed out is not reloaded to ask
            loaded = [MODELS.peek(key) for key in self._model_keys.values()]
            reasons = {compile_failure(ck.model) for ck in loaded if ck is not None} - {None}
            for reason in sorted(reasons):
                self.warnings.append(Message("warning.compiled_step_failed", "compiled_step: compiling the decoder "
                                             "step failed ({reason}); this run decoded without it (the same map, "
                                             "at the usual speed)", reason=reason))
        if not beatmap.hit_objects and C.MAP in self.plan.output_type:
            self.warnings.append(Message("warning.no_objects", "the model produced no hit objects for this song; try "
                                         "another seed, a different difficulty or model"))
        if self.opts.add_to_beatmap:
            beatmap = add_to_beatmap(beatmap, self.plan.reference, start_time=self.opts.start_time,
                                     end_time=self.opts.end_time)
            beatmap.metadata = dataclasses.replace(beatmap.metadata, version=self._added_version())
        return beatmap

    def _added_version(self) -> str:
        ref = self.plan.reference.metadata.version or "Difficulty"
        return self.opts.version or f"{ref} + {self.plan.preset.beatmap_version}"

    def settings(self):
        from .audio import read_tags
        from .postprocess import BeatmapSettings, settings_from_beatmap

        o, plan = self.opts, self.plan
        if plan.reference is not None:
            base = settings_from_beatmap(plan.reference)
            if base.background and _inside(self.reference_folder, base.background, self.warnings) is None:
                base = dataclasses.replace(base, background=None)
        else:
            base = BeatmapSettings(mode=plan.gamemode)
            tags = read_tags(plan.audio_path)
            base = dataclasses.replace(
                base,
                title=tags.title or base.title, artist=tags.artist or base.artist,
                title_unicode=tags.title_unicode, artist_unicode=tags.artist_unicode,
                version=plan.preset.beatmap_version)
        values = {
            "audio_filename": plan.audio_path.name, "mode": plan.gamemode, "title": o.title, "artist": o.artist,
            "title_unicode": o.title_unicode, "artist_unicode": o.artist_unicode, "creator": o.creator,
            "version": o.version, "source": o.source, "hp_drain_rate": o.hp_drain_rate,
            "circle_size": (o.keycount if plan.gamemode == 3 else o.circle_size), "overall_difficulty":
            o.overall_difficulty, "approach_rate": o.approach_rate, "slider_multiplier": o.slider_multiplier,
            "slider_tick_rate": o.slider_tick_rate, "bpm": o.bpm, "offset": o.offset, "background": o.background,
            "preview_time": o.preview_time,
        }
        settings = dataclasses.replace(base, **{k: v for k, v in values.items() if v is not None})
        if plan.reference is None and o.creator is None:
            settings = dataclasses.replace(settings, creator="Mapperatorinator")
        if plan.reference is not None and o.version is None and not o.add_to_beatmap:
            settings = dataclasses.replace(settings, version=plan.preset.beatmap_version)
        if plan.reference is not None and o.creator is None:
            settings = dataclasses.replace(settings, creator="Mapperatorinator")
        if settings.mode == 3 and o.keycount is None and plan.reference is None:
            settings = dataclasses.replace(settings, circle_size=4)
        return dataclasses.replace(settings, tags=o.tags if o.tags is not None else self._tags())

    def _tags(self) -> str:
        from .options import options_to_words

        keep = {"difficulty", "mapper_id", "year", "descriptors", "negative_descriptors", "cfg_scale", "seed",
                "temperature", "start_time", "end_time", "super_timing"}
        words = [w for w in options_to_words(self.opts) if w.split("=", 1)[0] in keep]
        return " ".join([AI_TAGS, f"model={self.plan.preset.name}"] + words)


# --- writing ---------------------------------------------------------------------------------------------------


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name (2)``, ``name (3)`` ... when taken: outputs never replace a file."""
    path = folder / name
    stem, suffix = path.stem, path.suffix
    n = 2
    while path.exists():
        path = folder / f"{stem} ({n}){suffix}"
        n += 1
    return path


def _copy_beside(source: Path, folder: Path, out: "OutputTransaction") -> None:  # noqa: F821
    """Stage a copy of the song/background in the output folder unless it is there already."""
    target = folder / source.name
    if source.parent.resolve() == folder.resolve() or target.exists():
        return
    out.copy(source, target)


def write_outputs(job: _Job, beatmap, opts: GenerateOptions | None = None) -> tuple[Path, Path | None]:
    """Write the .osu (or .osz) and copy the song and background beside it; all or nothing, whatever stops it
    (an error, Ctrl-C): the output folder is only created here, and removed again with every file written.

    A reference beatmap is only replaced when ``add_to_beatmap`` and ``overwrite_reference_beatmap`` are both
    set, and then the old file is kept as ``.bak``; otherwise a new file is written next to nothing it replaces.
    """
    from .beatmap import beatmap_bytes
    from .beatmap.files import OutputTransaction, os_reason
    from .postprocess import export_osz, osu_filename

    plan, opts = job.plan, opts or job.opts
    folder = plan.output_dir
    background = Path(opts.background).expanduser() if opts.background else job.reference_background
    try:
        with OutputTransaction() as out:
            if opts.export_osz:
                out.make_folder(folder)
                written, osu = _free_name(folder, f"{Path(osu_filename(beatmap)).stem}.osz"), None
                export_osz(beatmap, written, plan.audio_path, background, transaction=out)
            elif opts.add_to_beatmap and opts.overwrite_reference_beatmap:
                written = osu = Path(opts.beatmap_path).expanduser()
                out.write(written, beatmap_bytes(beatmap), replace=True)
            else:
                out.make_folder(folder)
                for source in (plan.audio_path, background):
                    if source is not None and source.is_file():
                        _copy_beside(source, folder, out)
                written = osu = _free_name(folder, osu_filename(beatmap))
                out.write(osu, beatmap_bytes(beatmap))
    except OSError as e:
        raise OptionError(Message("error.generation.write_failed", "could not write to {folder}: {reason}; nothing "
                                  "was written", folder=str(folder), reason=os_reason(e))) from None
    if written in out.backups:
        log.info("replaced %s (the previous version is kept as %s)", written, out.backups[written])
    return written, osu


def _inside(folder: Path, name: str, warnings: list[str]) -> Path | None:
    """``folder/name`` for a file a reference beatmap names; None (and a warning) when it leads outside."""
    from .beatmap.files import UnsafeFileName, referenced_file

    try:
        return referenced_file(folder, name)
    except UnsafeFileName:
        warning = Message("reference.outside_folder", 'the reference names "{name}", which is outside its folder; '
                          "that file is not used", name=name)
        if warning not in warnings:
            warnings.append(warning)
        return None


def _reference_song(beatmap_path: Path, name: str) -> Path:
    from .beatmap.files import UnsafeFileName, referenced_file

    try:
        return referenced_file(beatmap_path.parent, name)
    except UnsafeFileName:
        raise OptionError(Message("reference.song_outside_folder", '{beatmap} names its song "{name}", which is '
                                  "outside the beatmap's folder; put the song beside the beatmap or pass audio_path",
                                  beatmap=beatmap_path.name, name=name)) from None
