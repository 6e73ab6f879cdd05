"""Running passes: the decoder calls of one or more generation passes, in batches across the passes.

A *pass* is one walk over a song's windows that writes some contexts (the timing pass, a map pass, one
shifted super-timing pass). It hands out the calls it can take answers for now (:meth:`WindowPass.ready`)
and takes each call's generated ids (:meth:`WindowPass.absorb`). A sequential pass (:class:`SequentialPass`)
has one call at a time, because each window's prompt holds what the windows before it generated; a pass
whose windows are prompted alone has all of them ready at once. :class:`PassRunner` decodes the ready calls
of several passes together, so independent passes (super timing's shifted passes, or the map passes of
several difficulties) share batches::

    context = PassContext(checkpoint, device, generator=torch.Generator().manual_seed(1))
    runner = PassRunner(context, DecodingOptions(do_sample=False), batch_size=8)
    for finished in runner.run([SequentialPass(run_easy, segments), SequentialPass(run_hard, segments)]):
        contexts = finished.run.results()

Calls only share a batch when they stop on the same ids with the same lookback (one ``decode`` call takes
one of each); rows are handed back to their passes in batch order, and finished passes are given back in
the order they were started.

A pass may carry its own random stream (``generator``, e.g. each difficulty of a mapset or each variant):
its rows then draw only from it, so a row of a shared batch samples what the same pass run alone would.
Passes without one share the context's stream (super timing's shifted passes, as upstream).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import torch

from . import decoding
from .decoding import DecodeStats, DecodingOptions
from .messages import Message
from .runtime import autocast

if TYPE_CHECKING:
    from .checkpoint import Checkpoint
    from .prompt import Call, GenerationRun
    from .windows import Segments

# (what is being decoded, in words; the fraction of this run's calls decoded before it)
PassProgress = Callable[[str, float], None]


@dataclass(frozen=True)
class PassContext:
    """What decoding needs besides the passes: the model, where and how it runs, and the job's shared state
    (one random stream, the cancel event, token counts). Frozen: derive variants with ``dataclasses.replace``."""

    checkpoint: "Checkpoint"
    device: torch.device
    precision: str = "fp32"
    generator: torch.Generator | None = None  # one random stream for the whole job, as upstream's global seed
    cancel: threading.Event | None = None  # set: decoding stops within one step (raises Cancelled)
    stats: DecodeStats | None = None
    progress: PassProgress | None = None


class WindowPass(Protocol):
    """One pass over a song's windows, as :class:`PassRunner` drives it."""

    def ready(self) -> list["Call"]:
        """The calls that can be decoded now and were not handed out before (none: wait for answers)."""

    def frames(self, call: "Call") -> np.ndarray:
        """The audio samples of the call's window."""

    def absorb(self, call: "Call", generated: Sequence[int]) -> None:
        """Take the ids generated after ``call.prompt``."""

    @property
    def finished(self) -> bool:
        """Every call was answered."""


class SequentialPass:
    """A :class:`~engine.prompt.GenerationRun` as a pass: its calls one after another, each window's prompt
    built after the window before it was absorbed."""

    def __init__(self, run: "GenerationRun", segments: "Segments", generator: torch.Generator | None = None):
        self.run = run
        self.segments = segments
        self.generator = generator  # this pass's own random stream (None: the context's)
        self.tokens = 0  # ids absorbed so far
        self._calls = run.calls()
        self._waiting: "Call | None" = None
        self._next = next(self._calls, None)

    def ready(self) -> list["Call"]:
        if self._next is None or self._waiting is not None:
            return []
        self._waiting, self._next = self._next, None
        return [self._waiting]

    def frames(self, call: "Call") -> np.ndarray:
        return self.segments.samples(call.window)

    def absorb(self, call: "Call", generated: Sequence[int]) -> None:
        self.run.absorb(call, generated)
        self.tokens += len(generated)
        self._waiting = None
        self._next = next(self._calls, None)

    @property
    def finished(self) -> bool:
        return self._next is None and self._waiting is None

    @property
    def windows(self) -> int:
        return len(self.segments)


class PassRunner:
    """Decodes the calls of passes in batches of up to ``batch_size`` rows."""

    def __init__(self, context: PassContext, decoding_options: DecodingOptions, batch_size: int = 1, *,
                 label: str = "", total_calls: int | None = None):
        self.context = context
        self.options = decoding_options
        self.batch_size = max(1, batch_size)
        self.label = label  # progress text: "<label>: ..."
        self.total_calls = total_calls  # for the progress fraction, when known
        self.decoded = 0

    def run(self, passes: Iterable[WindowPass]) -> Iterator[WindowPass]:
        """Decode every call of ``passes``; yields each pass once it is finished, in the order they came.

        Passes are taken from ``passes`` only when the batch needs more calls than the passes taken so far
        have ready, so a long iterable of independent passes keeps few of them in memory."""
        upcoming = iter(passes)
        live: list[WindowPass] = []
        queued: list[tuple[WindowPass, "Call"]] = []
        exhausted = False
        while True:
            for p in live:
                queued += [(p, call) for call in p.ready()]
            while len(queued) < self.batch_size and not exhausted:
                p = next(upcoming, None)
                if p is None:
                    exhausted = True
                    break
                live.append(p)
                queued += [(p, call) for call in p.ready()]
            while live and live[0].finished:
                yield live.pop(0)
            if not queued:
                if live:
                    raise RuntimeError("a pass is not finished but has no call ready")
                return
            batch, queued = self._take_batch(queued)
            self._decode(batch)
            while live and live[0].finished:
                yield live.pop(0)

    def _take_batch(self, queued):
        """The first ``batch_size`` queued calls that can share one decode call with the first one."""
        key = _batch_key(queued[0][1])
        batch, rest = [], []
        for item in queued:
            (batch if len(batch) < self.batch_size and _batch_key(item[1]) == key else rest).append(item)
        return batch, rest

    def _decode(self, batch: list[tuple[WindowPass, "Call"]]) -> None:
        ctx = self.context
        calls = [call for _, call in batch]
        if ctx.progress is not None:
            ctx.progress(self._describe(batch), self.decoded / self.total_calls if self.total_calls else 0.0)
        frames = torch.from_numpy(np.stack([p.frames(call) for p, call in batch]))
        cond = {k: torch.cat([call.model_kwargs[k] for call in calls]) for k in calls[0].model_kwargs}
        guided = self.options.cfg_scale > 1 and all(call.negative_prompt for call in calls)
        first = calls[0]
        generators = [getattr(p, "generator", None) or ctx.generator for p, _ in batch]
        generator = generators[0] if all(g is generators[0] for g in generators) else generators
        with autocast(ctx.device, ctx.precision):
            rows = decoding.decode(
                ctx.checkpoint.model, ctx.checkpoint.tokenizer, frames, [call.prompt for call in calls],
                self.options, first.stop_ids, negative_prompts=[c.negative_prompt for c in calls] if guided else None,
                cond=cond, lookback_ms=first.lookback_ms, generator=generator, cancel=ctx.cancel,
                stats=ctx.stats)
        for (p, call), row in zip(batch, rows):
            p.absorb(call, row)
        self.decoded += len(batch)

    def _describe(self, batch) -> str:
        if len(batch) == 1:
            p, call = batch[0]
            windows = getattr(p, "windows", None)
            if windows:
                return Message("stage.window_of", "{label}: {context}, window {window} of {windows}", label=self.label,
                               context=call.context_type.value, window=call.window + 1, windows=windows)
            return Message("stage.window", "{label}: {context}, window {window}", label=self.label,
                           context=call.context_type.value, window=call.window + 1)
        if self.total_calls:
            return Message("stage.windows_of", "{label}: windows {first}–{last} of {total}", label=self.label,
                           first=self.decoded + 1, last=self.decoded + len(batch), total=self.total_calls)
        return Message("stage.windows", "{label}: windows {first}–{last}", label=self.label,
                       first=self.decoded + 1, last=self.decoded + len(batch))


def _batch_key(call: "Call") -> tuple:
    return tuple(sorted(call.stop_ids)), call.lookback_ms, call.negative_prompt is not None
