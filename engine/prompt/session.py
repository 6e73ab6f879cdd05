"""One generation pass over a song: the model calls to make, in order, and what to do with the output.

Usage::

    run = GenerationRun(tokenizer, preset.data, segments, conditions, requested=[ContextType.MAP],
                        given={ContextType.TIMING: timing_stream}, embeds=Embeds.from_config(cfg))
    for call in run.calls():
        ids = model_generate(call)            # the ids produced after call.prompt
        run.absorb(call, ids)
    events, times = run.results()[ContextType.MAP]

Each out context that is not given is generated window by window, in template order, and every
window's prompt carries all earlier out contexts in full plus the lookback part of the current one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch

from ..events.stream import EventStream
from ..presets import DataFlags
from ..tokenizer import ContextType, Tokenizer
from ..windows import Segments, WindowLayout
from .builder import ContextPlan, PromptBuilder, plan_contexts, stop_ids
from .conditions import Conditions, Embeds, class_tokens, model_kwargs, song_position
from .streams import Absorber, ContextStream, UpdateTimes, WindowCodec, finish_stream

C = ContextType


@dataclass(frozen=True, eq=False)
class Call:
    """One ``generate`` call: a window and the context being written in it."""

    context_type: ContextType
    window: int  # index into the run's windows
    window_start_ms: int
    prompt: list[int]
    negative_prompt: list[int] | None  # only with classifier-free guidance
    stop_ids: list[int]
    lookback_ms: float  # 0 in the first window
    lookahead_ms: float  # 0 in the last window
    model_kwargs: dict[str, torch.Tensor]

    @property
    def trim_lookback(self) -> bool:
        return self.lookback_ms > 0

    @property
    def trim_lookahead(self) -> bool:
        return self.lookahead_ms > 0


class GenerationRun:
    """Prompts and bookkeeping of one sequential generation pass (upstream ``parallel=False``).

    ``given`` holds the contexts already known (from a reference beatmap or an earlier pass, e.g.
    the timing pass); their types decide the template together with ``requested``. A given MAP/GD
    reference placed as an in-context should carry its ``class_tokens``.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        flags: DataFlags,
        segments: Segments | tuple[WindowLayout, Sequence[int], float],
        conditions: Conditions,
        *,
        requested: Sequence[ContextType] = (),
        given: Mapping[ContextType, ContextStream] | None = None,
        embeds: Embeds = Embeds(),
        cfg_scale: float = 1.0,
        update_times: UpdateTimes | None = None,
    ):
        if isinstance(segments, Segments):
            self.layout, self.starts, self.song_length_ms = segments.layout, list(segments.starts_ms), segments.song_length_ms
        else:
            layout, starts, song_length = segments
            self.layout, self.starts, self.song_length_ms = layout, list(starts), float(song_length)
        self.tokenizer = tokenizer
        self.flags = flags
        self.conditions = conditions
        self.embeds = embeds
        self.cfg_scale = cfg_scale
        given = dict(given or {})
        given.pop(C.NONE, None)
        self.plan: ContextPlan = plan_contexts(
            flags, given=list(given), requested=requested, gamemode=conditions.gamemode
        )
        self.requested = tuple(requested)

        self.in_streams = []
        for t in self.plan.in_contexts:
            if t == C.NONE:
                self.in_streams.append(ContextStream(C.NONE, given=True))
            elif t in given:
                self.in_streams.append(given[t])
            else:
                raise ValueError(f"the {t.value} reference context is needed but was not given")
        self.out_streams = [given[t] if t in given else ContextStream(t) for t in self.plan.out_contexts]

        self.builder = PromptBuilder(
            tokenizer,
            flags,
            self.plan,
            window_ms=self.layout.window_ms,
            song_length_ms=self.song_length_ms,
            class_tokens=class_tokens(tokenizer, flags, conditions, self.song_length_ms),
            negative_class_tokens=class_tokens(tokenizer, flags, conditions.negative(), self.song_length_ms),
        )
        self.absorber = Absorber(
            WindowCodec(tokenizer, flags.types_first),
            lookback_ms=self.layout.lookback_ms,
            lookahead_start_ms=self.layout.lookahead_start_ms,
            end_ms=(1 - flags.lookahead) * self.layout.window_ms,
            update_times=update_times,
        )
        self._update_times = update_times
        self._base_kwargs = model_kwargs(tokenizer, embeds, conditions)
        self._pending: Call | None = None

    def stream(self, context_type: ContextType) -> ContextStream:
        for s in self.out_streams:
            if s.type == context_type:
                return s
        raise KeyError(context_type)

    def window_kwargs(self, window_start: int) -> dict[str, torch.Tensor]:
        kwargs = dict(self._base_kwargs)
        if self.embeds.song_position:
            kwargs["song_position"] = song_position(window_start, self.layout.window_ms, self.song_length_ms)
        return kwargs

    def make_call(self, out_index: int, window: int, *, alone: bool = False) -> Call:
        """The call that generates out context ``out_index`` in window ``window``. ``alone``: the window is
        generated on its own, as with windows side by side, so no lookback or lookahead region is trimmed
        or stops it."""
        start = self.starts[window]
        trim_lookback = not alone and window != 0 and self.layout.lookback_ms > 0
        trim_lookahead = not alone and window != len(self.starts) - 1
        stream = self.out_streams[out_index]
        prompt, negative = self.builder.prompts(
            start, self.in_streams, self.out_streams[: out_index + 1], with_negative=self.cfg_scale > 1
        )
        lookback = self.layout.lookback_ms if trim_lookback else 0.0
        lookahead = self.layout.lookahead_ms if trim_lookahead else 0.0
        return Call(
            context_type=stream.type,
            window=window,
            window_start_ms=start,
            prompt=prompt,
            negative_prompt=negative,
            stop_ids=stop_ids(self.tokenizer, stream.type, lookback, lookahead),
            lookback_ms=lookback,
            lookahead_ms=lookahead,
            model_kwargs=self.window_kwargs(start),
        )

    def calls(self) -> Iterator[Call]:
        """The calls in order. Each must be answered with :meth:`absorb` before the next is built."""
        for i, stream in enumerate(self.out_streams):
            if stream.given:
                continue
            for w in range(len(self.starts)):
                call = self.make_call(i, w)
                self._pending = call
                yield call
                if self._pending is not None:
                    raise RuntimeError("absorb() was not called for the previous call")

    def absorb(self, call: Call, generated: Sequence[int]) -> None:
        """Add the ids generated after ``call.prompt`` (EOS included or not) to its stream."""
        if self._pending is not None and call is not self._pending:
            raise RuntimeError("absorb() got a call other than the one last yielded")
        self._pending = None
        self.absorber(
            self.stream(call.context_type),
            generated,
            call.window_start_ms,
            trim_lookback=call.trim_lookback,
            trim_lookahead=call.trim_lookahead,
        )

    def results(
        self,
        *,
        start_time: float | None = None,
        end_time: float | None = None,
        references: Mapping[ContextType, EventStream] | None = None,
    ) -> dict[ContextType, EventStream]:
        """The requested out contexts (all of them when none was requested), finished for the
        post-processor. ``references``: pixel-unit reference streams for adding to a beatmap."""
        wanted = self.requested or self.plan.out_contexts
        out = {}
        for s in self.out_streams:
            if s.type in wanted:
                out[s.type] = finish_stream(
                    s,
                    flags=self.flags,
                    song_length_ms=self.song_length_ms,
                    gamemode=self.conditions.gamemode,
                    keycount=self.conditions.keycount,
                    start_time=start_time,
                    end_time=end_time,
                    reference=(references or {}).get(s.type),
                    update_times=self._update_times,
                )
        return out


def teacher_forced_prompts(
    tokenizer: Tokenizer,
    flags: DataFlags,
    segments: Segments | tuple[WindowLayout, Sequence[int], float],
    conditions: Conditions,
    streams: Mapping[ContextType, ContextStream],
    embeds: Embeds = Embeds(),
) -> tuple[ContextPlan, list[list[int]], list[dict[str, torch.Tensor]]]:
    """Prompts for scoring an existing map (MaiMod): every window with all out contexts filled in.

    ``streams`` must hold every context of the template (for the in contexts and all out contexts,
    including SV, as upstream's MaiMod builds them). Returns the plan, one prompt per window and
    the matching model kwargs.
    """
    run = GenerationRun(tokenizer, flags, segments, conditions, given=streams, embeds=embeds)
    missing = [s.type.value for s in run.out_streams if not s.given]
    if missing:
        raise ValueError(f"teacher forcing needs every out context; missing: {', '.join(missing)}")
    prompts = []
    kwargs = []
    for start in run.starts:
        ids, _ = run.builder.prompts(start, run.in_streams, run.out_streams)
        prompts.append(ids)
        kwargs.append(run.window_kwargs(start))
    return run.plan, prompts, kwargs
