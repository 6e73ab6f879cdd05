"""How surprised the model is by each event of a beatmap.

Every window's prompt carries the whole map (teacher forcing), so one forward pass gives, for every
event token, the model's next-token distribution just before it. From that distribution:

- surprisal ``-log2 p(actual)`` and entropy ``-sum p log2 p`` (bits),
- relative surprisal ``surprisal / entropy`` (0 where the entropy is 0): how unlikely the event is
  compared with how unsure the model is at that spot; this is what MaiMod ranks by,
- the expected event: the most likely token (control tokens such as EOS included).

Each event is scored by exactly one window: the part of it outside the lookback (every window but
the first) and before the lookahead (every window but the last), the same split generation uses.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import Cancelled
from ..messages import Message
from ..presets import DataFlags
from ..prompt import ContextStream, Embeds, WindowCodec, left_pad, teacher_forced_prompts, window_range
from ..prompt.conditions import Conditions
from ..tokenizer import ContextType, Event, Tokenizer
from ..windows import Segments, WindowLayout

# Upstream adds this inside the logs so that p = 0 stays finite.
_EPS = 1e-10


@dataclass
class ScoredContext:
    """One context of the map with a score for each of its events."""

    type: ContextType
    events: list[Event]
    times: list[int]
    surprisal: np.ndarray  # float32, relative surprisal per event; 0 where unscored
    expected: list[Event]  # the model's most likely event (the event itself where unscored)
    scored: np.ndarray  # bool: the event lay in some window's scoring region


@dataclass(frozen=True)
class _Span:
    """Where one context's events of one window sit in the prompt and which of them to score."""

    first_event: int  # index into the stream of the first event in the prompt
    first_token: int  # prompt position of that event's token
    score_from: int  # stream indices [score_from, score_to) are scored in this window
    score_to: int


def score_contexts(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    flags: DataFlags,
    segments: Segments,
    conditions: Conditions,
    streams: Mapping[ContextType, ContextStream],
    *,
    embeds: Embeds = Embeds(),
    batch_size: int = 4,
    autocast=None,
    cancel: threading.Event | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[ScoredContext]:
    """Score every out context of the template (in template order) with teacher-forced forward passes.

    ``streams`` holds every context the template needs (see :func:`~engine.prompt.teacher_forced_prompts`).
    Windows run in batches of ``batch_size``, all left-padded to the longest prompt of the song (as
    upstream stacks them, so the numbers do not depend on the batch size). ``autocast`` is a context
    manager factory for mixed precision. ``on_batch(done, total)`` reports windows scored so far.
    """
    plan, prompts, kwargs = teacher_forced_prompts(tokenizer, flags, segments, conditions, streams, embeds)
    codec = WindowCodec(tokenizer, flags.types_first)
    layout = segments.layout
    starts = list(segments.starts_ms)
    out = [
        ScoredContext(
            c,
            list(streams[c].stream.events),
            list(streams[c].stream.times),
            np.zeros(len(streams[c].stream.events), dtype=np.float32),
            list(streams[c].stream.events),
            np.zeros(len(streams[c].stream.events), dtype=bool),
        )
        for c in plan.out_contexts
    ]
    padded, width = left_pad(prompts, tokenizer.pad_id)
    device = model.device
    n = len(starts)
    for b in range(0, n, max(1, batch_size)):
        if cancel is not None and cancel.is_set():
            raise Cancelled(Message("error.maimod.cancelled", "MaiMod was cancelled"))
        rows = range(b, min(n, b + batch_size))
        ids = torch.tensor([padded[w] for w in rows], dtype=torch.long, device=device)
        frames = torch.from_numpy(np.stack([segments.samples(w) for w in rows])).to(device)
        # float conditions follow the weights' dtype (bf16 precision), as upstream casts them
        cond = {k: torch.cat([kwargs[w][k] for w in rows]).to(device) for k in kwargs[0]}
        cond = {k: v.to(model.dtype) if v.is_floating_point() else v for k, v in cond.items()}
        with torch.inference_mode(), (autocast() if autocast is not None else contextlib.nullcontext()):
            logits = model(frames=frames, decoder_input_ids=ids, decoder_attention_mask=ids.ne(tokenizer.pad_id),
                           **cond)
        logits = logits.float()
        for r, w in enumerate(rows):
            pad = width - len(prompts[w])
            for ctx in out:
                span = _span(prompts[w], tokenizer, flags, ctx, starts[w], layout, first=w == 0, last=w == n - 1)
                if span is None:
                    continue
                _score_span(ctx, span, logits[r], pad, codec, starts[w])
        if on_batch is not None:
            on_batch(rows.stop, n)
    return out


def _span(prompt: Sequence[int], tok: Tokenizer, flags: DataFlags, ctx: ScoredContext, window_start: int,
          layout: WindowLayout, *, first: bool, last: bool) -> _Span | None:
    """Where ``ctx`` sits in a window's prompt and what to score there (None: nothing).

    With context markers the span runs from ``SOS_x`` to ``EOS_x``; the last out context of a
    teacher-forced prompt has no EOS (the prompt ends there), so it runs to the end. (Upstream
    demanded the EOS and stopped with an assertion for v31/v32, whose last context is SV.)
    Without markers (v30) the single context runs from SOS to EOS or the end.
    """
    prompt = list(prompt)
    if flags.add_out_context_types:
        sos = tok.context_sos[ctx.type]
        if sos not in prompt:
            return None
        begin = prompt.index(sos) + 1
        eos = tok.context_eos[ctx.type]
        end = prompt.index(eos, begin) if eos in prompt[begin:] else len(prompt)
    else:
        begin = prompt.index(tok.sos_id) + 1 if tok.sos_id in prompt else 0
        end = prompt.index(tok.eos_id, begin) if tok.eos_id in prompt[begin:] else len(prompt)
    s, e = window_range(ctx.times, window_start, window_start + layout.window_ms)
    in_prompt = end - begin
    if in_prompt > e - s:
        raise RuntimeError(f"the {ctx.type.value} context at {window_start} ms has more tokens than events")
    # A prompt too long for the decoder keeps only each context's last events (prompt halving).
    first_in_prompt = e - in_prompt
    lo = window_start + (layout.lookback_ms if not first else 0.0)
    hi = window_start + (layout.lookahead_start_ms if not last else layout.window_ms)
    s2, e2 = window_range(ctx.times[s:e], lo, hi)
    score_from, score_to = max(s + s2, first_in_prompt), s + e2
    if score_to <= score_from:
        return None
    return _Span(first_in_prompt, begin, score_from, score_to)


def _score_span(ctx: ScoredContext, span: _Span, logits: torch.Tensor, pad: int, codec: WindowCodec,
                window_start: int) -> None:
    actual = codec.encode(ctx.events[span.score_from: span.score_to], window_start)
    # The logits at position i predict the token at i + 1.
    first_pos = pad + span.first_token + (span.score_from - span.first_event) - 1
    rows = logits[first_pos: first_pos + len(actual)]
    probs = rows.softmax(dim=-1)
    entropy = -(probs * torch.log2(probs + _EPS)).sum(dim=-1)
    target = torch.tensor(actual, dtype=torch.long, device=rows.device)
    surprisal = -torch.log2(probs.gather(1, target[:, None])[:, 0] + _EPS)
    relative = torch.where(entropy > 0, surprisal / entropy, torch.zeros_like(entropy))
    best = rows.argmax(dim=-1).tolist()
    ctx.surprisal[span.score_from: span.score_to] = relative.cpu().numpy()
    ctx.expected[span.score_from: span.score_to] = codec.decode(best, window_start, keep_control=True)
    ctx.scored[span.score_from: span.score_to] = True
