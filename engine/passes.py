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

A pass that names its windows (:meth:`SequentialPass.window_key`) lets the runner encode each window once: rows
of one batch over the same window share one encoder row (a mapset's difficulties, variants), and with an
:class:`EncoderCache` in the context a later pass over the same windows (the map pass after the timing pass)
reuses the outputs instead of running the encoder again. A pass that also tells its next windows
(:meth:`SequentialPass.upcoming`) lets a context with ``encoder_batch`` > 1 encode them together with the window
missing now, in one encoder call (on a GPU, where one window's call leaves the card mostly idle).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Hashable, Iterable, Iterator, Protocol, Sequence

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

# Encoder outputs kept for a later pass: v32's is 3 MB a window (fp32), so this holds about 128 windows, the
# windows of a 3.5-minute song (v32-mini: 5 minutes); windows past it are encoded again.
ENCODER_CACHE_BYTES = 384 * 2**20
# Outputs encoded ahead of need and not asked for yet; more would mean a pass that never asks for them.
AHEAD_LIMIT = 64


class EncoderCache:
    """Encoder outputs of windows that another pass of the same job will need again.

    The timing pass and the map pass of a song run one model over the same windows, and the encoder is about a
    third of a window's time on a CPU. Outputs are stored as computed and handed back unchanged, so a reused
    output is exactly what encoding the window again would give. The first windows are kept, up to
    ``budget_bytes``; nothing is evicted (the passes walk the song in the same order, so evicting old windows
    for new ones would keep only windows the next pass reaches last), and memory stays bounded for any length.
    Beyond the budget the last ``keep_last`` outputs are kept too: a pass that writes several contexts (kiai,
    then map) asks for each window several times in a row.
    """

    def __init__(self, budget_bytes: int = ENCODER_CACHE_BYTES, keep_last: int = 2):
        self.budget_bytes = budget_bytes
        self.keep_last = keep_last
        self.used_bytes = 0
        self.hits = 0
        self._outputs: dict[Hashable, torch.Tensor] = {}
        self._recent: dict[Hashable, torch.Tensor] = {}  # insertion order: oldest first
        self._ahead: dict[Hashable, torch.Tensor] = {}  # encoded before a call asked (insertion order)

    def has(self, key: Hashable) -> bool:
        return key in self._outputs or key in self._recent or key in self._ahead

    def encode(self, model: torch.nn.Module, frames: torch.Tensor, cond: dict[str, torch.Tensor],
               keys: Sequence[Hashable | None], ahead: int = 0) -> torch.Tensor:
        """The encoder output of each row of ``frames`` (``cond``: the rows' conditioning). Rows with the same
        key are the same window under the same conditioning: encoded once; a row whose key is None is encoded.
        The last ``ahead`` rows are windows a later call will ask for: encoded in the same call as the others
        and kept until asked for, not returned."""
        asked = len(keys) - ahead
        found: dict[Hashable, torch.Tensor | None] = {}  # each key looked up once (a lookup may move it)
        for key in keys[:asked]:
            if key is not None and key not in found:
                found[key] = self._lookup(key)
        out: list[torch.Tensor | None] = [None if k is None else found[k] for k in keys[:asked]] + [None] * ahead
        self.hits += sum(o is not None for o in out)
        todo: list[int] = []  # rows to encode: the first row of each key not stored
        first_of: dict[Hashable, int] = {}
        for i, (key, o) in enumerate(zip(keys, out)):
            if o is None and (key is None or first_of.setdefault(key, i) == i):
                todo.append(i)
        if todo:
            rows = torch.tensor(todo)
            everything = len(todo) == len(keys)  # the batch as it came: encoded as one call, as without a cache
            encoded = model.encode(frames if everything else frames[rows],
                                   **{k: v if everything else v[rows.to(v.device)] for k, v in cond.items()})
            for j, i in enumerate(todo):
                out[i] = encoded[j: j + 1]
                if i < asked:
                    self._keep(keys[i], out[i])
                elif keys[i] is not None:
                    self._keep_ahead(keys[i], out[i])
        for i, key in enumerate(keys[:asked]):
            if out[i] is None:
                out[i] = out[first_of[key]]
        if all(o is out[0] for o in out[1:asked]):  # one window for every row: one tensor (model.one_window)
            return out[0].expand(asked, -1, -1)
        return torch.cat(out[:asked])

    def _lookup(self, key: Hashable | None) -> torch.Tensor | None:
        if key is None:
            return None
        if key in self._ahead:  # asked for now: kept from here on as if encoded now
            output = self._ahead.pop(key)
            self._keep(key, output)
            return output
        return self._outputs.get(key, self._recent.get(key))

    def _keep_ahead(self, key: Hashable, output: torch.Tensor) -> None:
        if self.has(key):
            return
        self._ahead[key] = output
        while len(self._ahead) > AHEAD_LIMIT:
            del self._ahead[next(iter(self._ahead))]

    def _keep(self, key: Hashable | None, output: torch.Tensor) -> None:
        if key is None or key in self._outputs:
            return
        size = output.numel() * output.element_size()
        if self.used_bytes + size <= self.budget_bytes:
            self._outputs[key] = output
            self.used_bytes += size
        elif self.keep_last:
            self._recent.pop(key, None)
            self._recent[key] = output
            while len(self._recent) > self.keep_last:
                del self._recent[next(iter(self._recent))]


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
    encoder_cache: EncoderCache | None = None  # outputs kept for a later pass over the same windows (None: not kept)
    encoder_batch: int = 1  # windows per encoder call: a missing window brings its pass's next ones (runtime.encoder_batch)


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

    def window_key(self, call: "Call") -> Hashable:
        """Names the call's audio window: passes over the same segments give the same key for the same window."""
        return id(self.segments), call.window

    def upcoming(self, call: "Call", count: int) -> list[tuple[Hashable, np.ndarray, dict[str, torch.Tensor]]]:
        """Up to ``count`` windows this pass asks for after ``call``'s, in order: (window key, samples, the model
        kwargs its call will carry). A context's windows come in order; the next context starts again at 0."""
        later = range(call.window + 1, min(call.window + 1 + count, len(self.segments)))
        return [((id(self.segments), w), self.segments.samples(w), self.run.window_kwargs(self.run.starts[w]))
                for w in later]

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
        # without a cache of the job's: one for this run's own repeats (rows and contexts of one window)
        self.encoder_cache = context.encoder_cache or EncoderCache(budget_bytes=0)

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
        model = ctx.checkpoint.model
        with torch.inference_mode(), autocast(ctx.device, ctx.precision):
            encoder_out = self._encode(model, batch, frames.to(ctx.device),
                                       {k: v.to(ctx.device) for k, v in cond.items()})
            rows = decoding.decode(
                model, ctx.checkpoint.tokenizer, None, [call.prompt for call in calls],
                self.options, first.stop_ids, negative_prompts=[c.negative_prompt for c in calls] if guided else None,
                cond=cond, lookback_ms=first.lookback_ms, generator=generator, cancel=ctx.cancel,
                stats=ctx.stats, encoder_out=encoder_out)
        for (p, call), row in zip(batch, rows):
            p.absorb(call, row)
        self.decoded += len(batch)

    def _encode(self, model, batch, frames: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's encoder rows, each window encoded once (and reused from the context's cache); with
        ``encoder_batch`` > 1 the passes' next windows are encoded in the same call."""
        keys = [_encoder_key(model, p.window_key(call), call.model_kwargs) if hasattr(p, "window_key") else None
                for p, call in batch]
        ahead = self._windows_ahead(model, batch, keys, set(cond))
        if ahead:
            device = frames.device
            frames = torch.cat([frames, torch.from_numpy(np.stack([s for _, s, _ in ahead])).to(device)])
            cond = {k: torch.cat([v, *(kw[k].to(device) for _, _, kw in ahead)]) for k, v in cond.items()}
            keys = keys + [key for key, _, _ in ahead]
        return self.encoder_cache.encode(model, frames, cond, keys, ahead=len(ahead))

    def _windows_ahead(self, model, batch, keys, cond_names: set[str]) -> list:
        """Windows the batch's passes will ask for next and nobody has encoded, to fill the encoder call up to
        ``encoder_batch`` rows; none when every row of the batch is stored already."""
        cache = self.encoder_cache
        missing = [(p, call) for (p, call), key in zip(batch, keys) if key is None or not cache.has(key)]
        room = self.context.encoder_batch - len(missing)
        chosen, seen = [], set(keys)
        for p, call in missing:
            upcoming = getattr(p, "upcoming", None)
            if room <= len(chosen) or upcoming is None:
                continue
            for window, samples, kwargs in upcoming(call, room - len(chosen)):
                key = _encoder_key(model, window, kwargs)
                if key not in seen and not cache.has(key) and set(kwargs) == cond_names:
                    seen.add(key)
                    chosen.append((key, samples, kwargs))
        return chosen

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


def _encoder_key(model, window: Hashable, model_kwargs: dict[str, torch.Tensor]) -> tuple:
    """Names one encoder output: the model, the window, and the conditioning the encoder sees."""
    return id(model), window, tuple((k, v.cpu().numpy().tobytes()) for k, v in sorted(model_kwargs.items()))


def _batch_key(call: "Call") -> tuple:
    return tuple(sorted(call.stop_ids)), call.lookback_ms, call.negative_prompt is not None
