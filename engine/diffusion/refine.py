"""Diffusion-refined positions: the seam the V29 generation calls when ``generate_positions=true``.

:func:`refine_positions` takes the decoded map events (grid positions), turns them into one
sequence of objects, and runs the respaced reverse process of osu-diffusion on it from the grid
positions (not from noise): 100 steps, each a batched forward pass over all objects of a window
(the conditional and unconditional class vectors side by side for classifier-free guidance), a
start prediction that keeps positions outside the generated time range and puts every slider end
back on its path at its required length, and a posterior step with the model's learned variance.
Windows of ``max_seq_len`` objects overlap by ``2 * overlap_buffer``; a window keeps the first
``overlap_buffer`` objects of the previous one and redoes the next ``overlap_buffer``.

Deliberate differences from the published pipeline (both what it means to do):
- a sequence of at most ``2 * overlap_buffer`` objects is refined as one window (upstream's window
  loop runs no window at all then, returning the grid positions unchanged);
- ``keep_in_playfield`` (default on) clamps the written positions into the 512x384 playfield;
- ``mapper_id`` conditions on that mapper (see :mod:`engine.diffusion.classes`).
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import Cancelled, OptionError
from ..events import EventStream
from ..messages import Message
from ..tokenizer import Event
from .curves import SamplerCurve
from .checkpoint import DEFAULT_REPO, DiffusionModel, load_diffusion_model
from .schedule import RespacedSchedule
from .sequence import PLAYFIELD, ObjectSequence, build_sequence, events_with_positions

Progress = Callable[[str, float], None]
StepHook = Callable[[int, int, torch.Tensor], None]  # (window, step index counting down, x in pixels (2, Lw))


@dataclass(frozen=True)
class DiffusionConditioning:
    """The map's metadata the model is conditioned on, and what slider lengths need."""

    difficulty: float | None = None  # star rating
    mapper_id: int | None = None
    descriptors: Sequence[str] = ()
    negative_descriptors: Sequence[str] = ()  # the guidance pushes away from these (with cfg_scale > 1)
    circle_size: float | None = None
    beatmap_id: int | None = None
    slider_multiplier: float = 1.4
    red_lines: Sequence[tuple[float, float]] | None = None  # (time ms, ms per beat), sorted; None: no slider-end correction


@dataclass(frozen=True)
class DiffusionOptions:
    checkpoint: str | Path = DEFAULT_REPO
    model: DiffusionModel | None = None  # an already loaded model (then ``checkpoint`` is not read)
    device: str | torch.device = "cpu"
    precision: str = "fp32"  # what a model loaded from ``checkpoint`` runs in (DIFFUSION_PRECISIONS; not a given model)
    cfg_scale: float = 1.0  # upstream's diff_cfg_scale
    seed: int | None = None
    generator: torch.Generator | None = None  # wins over ``seed``
    noise_schedule: str = "squaredcos_cap_v2"
    diffusion_steps: int = 1000
    timesteps: Sequence[int] = (100, 0, 0, 0, 0, 0, 0, 0, 0, 0)  # respacing sections
    attention_band: int = 128  # each object attends to objects fewer than this many entries away
    max_seq_len: int = 1024
    overlap_buffer: int = 128
    types_first: bool = True  # V29's group order
    start_time: float | None = None  # only objects in [start_time, end_time] move
    end_time: float | None = None
    keep_in_playfield: bool = True
    # At cfg_scale 1 (no guidance) the unconditional row cancels out: skipping it is about 2x faster, equal up to
    # float rounding. None: skipped where the DiT runs in bf16 or int8, whose own roundings are coarser; fp32
    # keeps it (upstream's numbers).
    skip_unconditional: bool | None = None
    step_hook: StepHook | None = field(default=None, compare=False)  # tests and tools: every step's positions


def _check(options: DiffusionOptions) -> None:
    if not np.isfinite(options.cfg_scale):
        raise OptionError(Message("error.diffusion.cfg_scale", "diff_cfg_scale must be a finite number, got {value}",
                                  value=options.cfg_scale))
    if options.overlap_buffer < 0 or options.max_seq_len <= 2 * options.overlap_buffer:
        raise OptionError(Message("error.diffusion.seq_len", "max_seq_len ({max_seq_len}) must be more than twice "
                                  "overlap_buffer ({overlap_buffer})", max_seq_len=options.max_seq_len,
                                  overlap_buffer=options.overlap_buffer))
    if options.attention_band < 1:
        raise OptionError(Message("error.diffusion.attention_band", "attention_band must be at least 1, got {value}",
                                  value=options.attention_band))


def _to_pixels(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2 * torch.tensor(PLAYFIELD, device=x.device).unsqueeze(1)


class _Window:
    """One window's sampling: the in-paint mask, the slider ends inside it, and the denoising loop."""

    def __init__(self, sampler: "_Sampler", start: int, end: int, keep: int):
        self.s, self.start, self.end = sampler, start, end
        seq = sampler.seq
        self.generate = torch.zeros(end - start, dtype=torch.bool)
        self.generate[keep:] = True
        times = seq.times[start:end].contiguous()
        opts = sampler.options
        if opts.start_time is not None:
            self.generate[:int(torch.searchsorted(times, torch.tensor(float(opts.start_time)), right=False))] = False
        if opts.end_time is not None:
            self.generate[int(torch.searchsorted(times, torch.tensor(float(opts.end_time)), right=True)):] = False
        self.generate = self.generate.to(sampler.device)
        self.sliders = [s for s in seq.sliders
                        if (s.entries >= start).all() and (s.entries < end).all() and start <= s.end < end]
        n = end - start
        band = opts.attention_band
        q = torch.arange(n).unsqueeze(1)
        k = torch.arange(n).unsqueeze(0)
        self.allowed = ((q - k >= -band) & (q - k < band)).to(sampler.device)
        self.context = seq.context[:, start:end].unsqueeze(0).to(sampler.device)
        self.given: torch.Tensor | None = None

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        """Keep the given positions, then put each slider end on its path at the required length."""
        x = torch.where(self.generate, x, self.given)
        if not self.s.seq.sliders:
            return x
        pixels = _to_pixels(x[0]).T.cpu().numpy()
        for slider in self.sliders:
            curve = SamplerCurve(slider.curve, pixels[slider.entries - self.start])
            if curve.length == 0:
                continue
            pixels[slider.end - self.start] = curve.end_position(slider.length)
        return (torch.from_numpy(pixels.T) / torch.tensor(PLAYFIELD).unsqueeze(1) * 2 - 1).unsqueeze(0).to(x.device)

    def run(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """x (1, 2, n) holding the given positions -> the refined ones."""
        if not bool(self.generate.any()):
            return x
        self.given = x
        x = self.given = self.denoise(x)
        s = self.s
        schedule = s.schedule
        for i in reversed(range(len(schedule))):
            if s.cancel is not None and s.cancel.is_set():
                raise Cancelled("position refinement cancelled")
            eps, variance = s.predict(x, schedule.model_steps[i], self.context, self.allowed)
            start = self.denoise(schedule.predict_start(i, x, eps)).clamp(-2, 2)
            noise = torch.randn((2, *x.shape[1:]), generator=s.generator, device=s.generator.device)[:1].to(x.device)
            x = schedule.step(i, x, start, variance, noise)
            s.done += 1
            if s.options.step_hook is not None:
                s.options.step_hook(index, i, _to_pixels(x[0]).cpu())
            if s.progress is not None:
                s.progress("refining positions", s.done / s.total)
        return x


class _Sampler:
    def __init__(self, model: DiffusionModel, seq: ObjectSequence, conditioning: DiffusionConditioning,
                 options: DiffusionOptions, progress: Progress | None, cancel: threading.Event | None):
        self.model, self.seq, self.options = model, seq, options
        self.progress, self.cancel = progress, cancel
        self.device = model.device
        try:
            self.schedule = RespacedSchedule(options.noise_schedule, options.diffusion_steps, options.timesteps)
        except (ValueError, ZeroDivisionError) as e:
            raise OptionError(Message("error.diffusion.schedule", "diffusion schedule: {reason}", reason=str(e))) from e
        classes = model.classes
        y = classes.vector(difficulty=conditioning.difficulty, mapper_id=conditioning.mapper_id,
                           descriptors=conditioning.descriptors, circle_size=conditioning.circle_size,
                           beatmap_id=conditioning.beatmap_id)
        y_null = classes.vector(difficulty=conditioning.difficulty, descriptors=conditioning.negative_descriptors,
                                circle_size=conditioning.circle_size)
        # At guidance scale 1 the unconditional pass cancels out; skipping it halves the work but changes
        # float rounding (a batch of one), which near-colinear arcs can amplify for a few steps.
        skip = model.precision != "fp32" if options.skip_unconditional is None else options.skip_unconditional
        self.guided = not (skip and options.cfg_scale == 1.0)
        self.classes = (torch.stack([y, y_null]) if self.guided else y.unsqueeze(0)).to(self.device)
        if options.generator is not None:
            self.generator = options.generator
        else:
            self.generator = torch.Generator()
            if options.seed is not None:
                self.generator.manual_seed(options.seed)
            else:
                self.generator.seed()
        self.done, self.total = 0, 0

    @torch.no_grad()
    def predict(self, x: torch.Tensor, model_step: int, context: torch.Tensor, allowed: torch.Tensor):
        batch = self.classes.shape[0]
        out = self.model.dit(x.expand(batch, -1, -1), torch.full((batch,), model_step, device=x.device),
                             context.expand(batch, -1, -1), self.classes, allowed)
        eps, variance = out[:, :2], out[:, 2:]
        if self.guided:
            cond, uncond = eps[:1], eps[1:]
            eps = uncond + self.options.cfg_scale * (cond - uncond)
        return eps[:1], variance[:1]

    def windows(self) -> list[tuple[int, int, int]]:
        """(start, end, kept) per window, as the published loop cuts them; a short sequence is one window."""
        n, size, buffer = len(self.seq), self.options.max_seq_len, self.options.overlap_buffer
        starts = list(range(0, n - 2 * buffer, size - 2 * buffer)) or [0]
        return [(i, min(i + size, n), buffer if i > 0 else 0) for i in starts]

    @torch.no_grad()
    def run(self) -> torch.Tensor:
        grid = self.seq.positions.unsqueeze(0).to(self.device)
        samples = grid.clone()
        windows = self.windows()
        self.total = len(windows) * len(self.schedule)
        for w, (start, end, keep) in enumerate(windows):
            if start > 0:  # the previous window's second buffer is generated again from the grid
                samples[:, :, start + keep:start + 2 * keep] = grid[:, :, start + keep:start + 2 * keep]
            samples[:, :, start:end] = _Window(self, start, end, keep).run(samples[:, :, start:end].clone(), w)
        return _to_pixels(samples[0]).cpu()


@functools.lru_cache(maxsize=1)
def cached_diffusion_model(checkpoint: str, device: str, precision: str) -> DiffusionModel:
    """:func:`load_diffusion_model`, kept for the next call (one model at a time): a generation job loads it
    before its passes (a bad ``diff_ckpt`` fails first) and refines with it, and later jobs reuse it."""
    return load_diffusion_model(checkpoint, device, precision=precision)


def refine_positions(
    stream: EventStream | Sequence[Event],
    conditioning: DiffusionConditioning,
    options: DiffusionOptions = DiffusionOptions(),
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> EventStream | list[Event]:
    """The decoded map events with diffusion-refined positions (osu! and catch maps).

    Upstream calls this for ``generate_positions=true`` when the mode is osu! or catch and MAP is generated,
    after the map pass (and event resnapping), before the post-processor builds the beatmap. Conditioning comes
    from the same metadata as generation (difficulty, mapper, descriptors, negative descriptors, circle size),
    slider lengths from the generated (or reference) red lines and the slider multiplier.

    ``stream``: the map pass's events after positions were rescaled to pixels (TIME_SHIFT absolute ms,
    POS_X/POS_Y pixels, DISTANCE tokens, SCROLL_SPEED on slider heads), as an :class:`EventStream` or a
    plain list. Returns the same kind: every DISTANCE becomes POS_X POS_Y and every POS_X/POS_Y holds
    the refined position, other events are untouched. ``progress(text, fraction)`` is called after each
    step; setting ``cancel`` stops between steps with :class:`Cancelled`. Raises ModelError for a
    checkpoint that cannot be loaded safely, OptionError for bad options.
    """
    _check(options)
    events = list(stream.events) if isinstance(stream, EventStream) else list(stream)
    times = list(stream.times) if isinstance(stream, EventStream) else None
    red_lines = sorted(conditioning.red_lines) if conditioning.red_lines else None
    seq = build_sequence(events, types_first=options.types_first, red_lines=red_lines,
                         slider_multiplier=conditioning.slider_multiplier)
    if len(seq) == 0:
        return EventStream(events, times) if times is not None else events
    model = options.model or cached_diffusion_model(str(options.checkpoint), str(options.device),
                                                    options.precision)
    pixels = _Sampler(model, seq, conditioning, options, progress, cancel).run().numpy()
    out, out_times = events_with_positions(events, times, pixels, seq.entry_of_event, options.keep_in_playfield)
    return EventStream(out, out_times) if out_times is not None else out
