"""Autoregressive decoding with a KV cache: logit rules, classifier-free guidance and sampling.

One call decodes a batch of prompts against a batch of audio windows. Logit rules are small callables
``rule(ids, scores) -> scores`` applied in upstream's order:

    guidance -> monotonic time shifts -> time-shift bias -> temperature -> lookback bias -> top-k -> top-p

A chain's rules are called once a step, ``ids`` the history with the newest token last: the whole prompt at
the first call, later at least the last :data:`HISTORY_COLUMNS` columns (on a GPU the token graph,
:mod:`engine.token_graph`, passes only those). A rule that keeps state between steps updates it in place (a
captured graph replaying the rule updates the same tensors), follows rows leaving the batch with
``select(rows)``, and starts again at ``restart()`` (a new window: its next call gets the whole prompt).

The next token is the argmax (greedy) or the draw ``torch.multinomial`` makes from the softmax (sampling), as
Hugging Face's ``generate`` does, so seeded runs draw the same tokens as upstream (:func:`draw_noise`,
:func:`choose`).
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import Cancelled, ModelError
from .lean_step import lean_step
from .messages import Message
from .model import Mapperatorinator, one_window
from .presets import MS_PER_STEP
from .prompt import left_pad
from .sampling import choose, draw_noise
from .tokenizer import PAD_ID, EventType, Tokenizer

TIMED_EVENT_TYPES = (
    EventType.CIRCLE, EventType.SPINNER, EventType.SPINNER_END, EventType.SLIDER_HEAD, EventType.LAST_ANCHOR,
    EventType.SLIDER_END, EventType.BEAT, EventType.MEASURE, EventType.TIMING_POINT, EventType.KIAI,
    EventType.HOLD_NOTE, EventType.HOLD_NOTE_END, EventType.DRUMROLL, EventType.DRUMROLL_END, EventType.DENDEN,
    EventType.DENDEN_END, EventType.SCROLL_SPEED_CHANGE,
)


@dataclass(frozen=True)
class DecodingOptions:
    do_sample: bool = True
    temperature: float = 1.0
    timing_temperature: float = 0.1
    mania_column_temperature: float = 0.8
    taiko_hit_temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 0
    timeshift_bias: float = 0.0
    cfg_scale: float = 1.0
    max_length: int = 2048  # prompt + generated, as Hugging Face's max_length
    types_first: bool = False
    cuda_graph: bool = True  # on a GPU, replay the decoder steps of up to GRAPH_ROWS rows as a CUDA graph (same tokens)
    # with cuda_graph: compile the graphed step, and the rules and draw around it, with torch.compile first (fewer,
    # fused kernels a token; seconds of compiling per batch shape; logits within rounding of the plain step's);
    # engine.cuda_graph, engine.token_graph
    compiled_step: bool = False


Rule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# The most columns of history a rule reads after its first call (TypeTemperature looks three tokens back).
HISTORY_COLUMNS = 3


# --- logit rules ----------------------------------------------------------------------------------------------


# Rules make their constant tensors on the decoding device when they are made: made per step, each would be a
# host-to-device copy every step on a GPU, and one made at a rule's first use would change the rule under a
# compiled token step (engine.token_graph), which would then compile again.
Device = torch.device | str


class TokenSet:
    """Whether tokens belong to a fixed set of ids: a lookup in a table over the vocabulary, one gather on the
    device. torch.isin sorts once the set passes about a dozen ids, and on a GPU its sort asks the host for a
    size: a wait every step, and a CUDA graph capture fails on it."""

    def __init__(self, ids: Iterable[int], size: int, device: Device = "cpu"):
        ids = list(ids)
        table = torch.zeros(max([size, *(i + 1 for i in ids)]), dtype=torch.bool)
        table[ids] = True
        self.table = table.to(device)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens]


def _in_place(kept: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """``value`` written into ``kept`` where it has the same shape (a captured graph replaying a rule reads and
    updates ``kept``'s memory), else a copy of its own."""
    if kept is not None and kept.shape == value.shape:
        return kept.copy_(value)
    return value.clone()


def cheap_host_reads(t: torch.Tensor) -> bool:
    """Whether reading ``t``'s values on the host is free (CPU, run eagerly); on a GPU (CUDA, Apple's MPS) it
    waits for the device, and in a compiled token step (:mod:`engine.token_graph`) it would break the compiled
    graph, so rules skip their shortcuts there and compute for every row instead (same scores)."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


class MonotonicTime:
    """Forbid a time shift earlier than the last one since the last SOS (events never go back in time).

    Each row's floor (that last time shift's value, -1 where there is none since the last SOS) is found in the
    prompt once, then updated from each new token: a step costs a few operations on one column instead of a
    scan of the whole history (on a GPU each operation is a launch the host pays for, every token)."""

    KEEP = -2  # in ``effect``: the token leaves the floor as it is
    CLEAR = -1  # in ``effect``: the token (an SOS) sets the floor to -1, none

    def __init__(self, tokenizer: Tokenizer, device: Device = "cpu"):
        r = tokenizer.id_range(EventType.TIME_SHIFT)
        self.start, self.stop = r.start, r.stop
        # what each token does to a floor: a time shift sets it to its value, SOS clears it, the rest keep it;
        # so a new floor is the token's effect unless that is KEEP
        effect = torch.full((tokenizer.vocab_size_in,), self.KEEP, dtype=torch.long)
        effect[self.start: self.stop] = torch.arange(self.stop - self.start)
        effect[[tokenizer.sos_id, *tokenizer.context_sos.values()]] = self.CLEAR
        self.effect = effect.to(device)
        # each output token's shift value, or one past every floor for the rest: what "too early" compares
        shift = torch.full((tokenizer.vocab_size_out,), self.stop - self.start, dtype=torch.long)
        shift[self.start: self.stop] = torch.arange(self.stop - self.start)
        self.shift = shift.to(device)
        self.floor: torch.Tensor | None = None  # [rows] long
        self._prompt = True  # the next call gets a window's prompt

    def _scan(self, ids: torch.Tensor) -> torch.Tensor:
        batch, length = ids.shape
        positions = torch.arange(length, device=ids.device).expand(batch, -1)
        effect = self.effect[ids]
        last_time = torch.where(effect >= 0, positions, -1).max(dim=1).values
        last_sos = torch.where(effect == self.CLEAR, positions, -1).max(dim=1).values
        active = (last_time >= 0) & (last_time > last_sos)
        value = effect.gather(1, last_time.clamp(min=0)[:, None])[:, 0]
        return torch.where(active, value, -1)

    def restart(self) -> None:
        self._prompt = True

    def _fold(self, ids: torch.Tensor) -> torch.Tensor:
        if self._prompt:
            self.floor = _in_place(self.floor, self._scan(ids))
            self._prompt = False
        else:  # each later call: one new token, last (three operations on one column, each a launch on a GPU)
            effect = self.effect[ids[:, -1]]
            torch.where(effect == self.KEEP, self.floor, effect, out=self.floor)
        return self.floor

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        floor = self._fold(ids)
        # a shortcut where host reads cost nothing (a CPU tensor's tolist() runs no operation)
        if cheap_host_reads(ids) and max(floor.tolist(), default=-1) < 0:
            return scores
        too_early = self.shift[None, :] < floor[:, None]  # none where floor is -1
        return scores.masked_fill(too_early, -torch.inf)

    def select(self, rows: torch.Tensor) -> None:
        """Follow the batch when finished rows leave it."""
        if self.floor is not None:
            self.floor = self.floor[rows]


class TimeShiftBias:
    """Add a constant to every time-shift logit (users' ``timeshift_bias``: >0 denser, <0 sparser maps)."""

    def __init__(self, tokenizer: Tokenizer, bias: float):
        r = tokenizer.id_range(EventType.TIME_SHIFT)
        self.span, self.bias = slice(r.start, r.stop), bias

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        scores[:, self.span] += self.bias
        return scores


class Temperature:
    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


class TypeTemperature:
    """Per-event-type temperatures, for versions that emit an event's type before its time (v31).

    The token after a beat/measure/timing point (its time) uses ``timing_temperature``; after a mania
    note type, the column (two tokens on) uses ``mania_column_temperature``; after a scroll-speed change, the
    next token uses ``taiko_hit_temperature``. Decided per batch row.
    """

    def __init__(self, tokenizer: Tokenizer, opts: DecodingOptions, device: Device = "cpu"):
        def starts(*types):
            return [tokenizer.start[t] for t in types if tokenizer.has(t)]

        size = tokenizer.vocab_size_in
        conditions = []
        if opts.timing_temperature != opts.temperature:
            conditions.append((opts.timing_temperature, TokenSet(starts(EventType.BEAT, EventType.MEASURE,
                                                                         EventType.TIMING_POINT), size, device), 1))
        mania = starts(EventType.CIRCLE, EventType.HOLD_NOTE, EventType.HOLD_NOTE_END) \
            if tokenizer.has(EventType.HOLD_NOTE_END) else []
        if opts.mania_column_temperature != opts.temperature and mania:
            conditions.append((opts.mania_column_temperature, TokenSet(mania, size, device), 3))
        scroll = list(tokenizer.id_range(EventType.SCROLL_SPEED))
        if opts.taiko_hit_temperature != opts.temperature and scroll:
            conditions.append((opts.taiko_hit_temperature, TokenSet(scroll, size, device), 1))
        self.default = opts.temperature
        self.conditions = conditions

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        temps = torch.full((ids.shape[0], 1), self.default, dtype=scores.dtype, device=scores.device)
        chosen = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        for temperature, tokens, back in self.conditions:
            if ids.shape[1] < back:
                continue
            hit = tokens(ids[:, -back]) & ~chosen
            temps = torch.where(hit[:, None], temperature, temps)  # not temps[hit] =: a mask index syncs a GPU
            chosen |= hit
        return scores / temps


class LookbackBias:
    """Keep the model from re-emitting events inside the lookback part of a window.

    In the lookback region the prompt already holds the previous window's events, so a time shift there
    would duplicate them. With time after type (v30, v32) such time shifts are simply forbidden. With the
    type first (v31) the probability mass of forbidden time shifts is moved onto ending the window, at the
    step right after a timed event, correcting the bias upstream measured.
    """

    def __init__(self, tokenizer: Tokenizer, lookback_ms: float, types_first: bool, device: Device = "cpu"):
        r = tokenizer.id_range(EventType.TIME_SHIFT)
        self.start = r.start
        self.stop = tokenizer.start[EventType.TIME_SHIFT] + int(lookback_ms / MS_PER_STEP) - tokenizer.range[
            EventType.TIME_SHIFT].min_value
        self.types_first = types_first
        self.eos_ids = torch.tensor([tokenizer.eos_id, *tokenizer.context_eos.values()], device=device)
        self.timed = TokenSet([i for t in TIMED_EVENT_TYPES for i in tokenizer.id_range(t)], tokenizer.vocab_size_in,
                              device)
        # the vocabulary's columns inside and outside the lookback's time shifts, as index lists: a boolean
        # mask as an index asks the device how many columns it picks (a host read each step)
        vocab = torch.arange(tokenizer.vocab_size_out)
        inside = (vocab >= self.start) & (vocab < self.stop)
        self.inside, self.outside = vocab[inside].to(device), vocab[~inside].to(device)
        self.forbidden = inside.to(device)  # time after type: the lookback's time shifts, as a mask of the vocabulary
        self.last_scores: torch.Tensor | None = None
        self._prompt = True  # the next call gets a window's prompt (no scores before it)

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self.types_first:
            return scores.masked_fill(self.forbidden, -torch.inf)
        out = scores
        if ids.shape[1] and not self._prompt:
            # computed for every row and kept where the last id was a timed event; on a GPU without asking
            # first whether any row needs it (that question is a host read, which stalls the device each step)
            after_timed = self.timed(ids[:, -1])
            if cheap_host_reads(ids) and not bool(after_timed.any()):
                self._keep(scores)
                return out
            inside, outside = self.inside, self.outside
            prev = F.softmax(self.last_scores, dim=-1)
            probs = F.softmax(scores, dim=-1)
            p_end = prev.index_select(1, self.eos_ids).sum(dim=-1)
            p_event = 1 - p_end
            kept = probs.index_select(1, outside)
            s = 1 / (kept.sum(dim=-1) * p_event + p_end)
            probs.index_fill_(1, inside, 0)
            probs.index_copy_(1, outside, kept * s[:, None])
            probs[:, self.start] = torch.clip((s - 1) * p_end / p_event, 0, 1)
            out = torch.where(after_timed[:, None], torch.log(probs), scores)
        self._keep(scores)
        return out

    def _keep(self, scores: torch.Tensor) -> None:
        self.last_scores = _in_place(self.last_scores, scores)
        self._prompt = False

    def restart(self) -> None:
        self._prompt = True

    def select(self, rows: torch.Tensor) -> None:
        """Follow the batch when finished rows leave it."""
        if self.last_scores is not None:
            self.last_scores = self.last_scores[rows]


class TopK:
    def __init__(self, k: int):
        self.k = k

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.k, scores.shape[-1])
        threshold = torch.topk(scores, k)[0][..., -1, None]
        return scores.masked_fill(scores < threshold, -torch.inf)


class TopP:
    """Nucleus filtering with Hugging Face's exact tie and threshold behaviour."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if cheap_host_reads(scores) and scores.dtype in (torch.float32, torch.float64):  # numpy sorts these as torch
            kept = self._cut_below(scores)
            if kept is not None:
                return kept
        ascending, order = torch.sort(scores, descending=False)
        drop = ascending.softmax(dim=-1).cumsum(dim=-1) <= (1 - self.p)
        drop[..., -1:].fill_(False)  # not = False: that copies a new host tensor to the device
        return scores.masked_fill(drop.scatter(1, order, drop), -torch.inf)

    def _cut_below(self, scores: torch.Tensor) -> torch.Tensor | None:
        """The same scores out on a CPU without sorting indices (at this vocabulary torch's index sort takes
        over ten times as long as numpy's sort of the values), and with few array operations around torch's
        softmax and cumulative sum: between decoder steps, with cold caches, each costs ~10 us. The dropped
        scores are a prefix of the ascending ones (their cumulative probabilities never fall); unless a tie
        straddles its end, they are exactly the scores below the first kept one. Where a tie does, torch's
        order of the tied scores decides which stay: None, for the sorting path."""
        values = scores.numpy()
        ascending = np.sort(values, axis=-1)
        cumulative = torch.from_numpy(ascending).softmax(dim=-1).cumsum(dim=-1).numpy()
        bound = values.dtype.type(1 - self.p)  # as torch compares: the bound in the scores' type
        last = values.shape[-1] - 1  # the largest score always stays
        first_kept = np.empty((len(values), 1), values.dtype)
        for row, (sums, sorted_row) in enumerate(zip(cumulative, ascending)):
            dropped = min(int(np.searchsorted(sums, bound, side="right")), last)
            if dropped and sorted_row[dropped - 1] == sorted_row[dropped]:
                return None
            first_kept[row] = sorted_row[dropped]
        return torch.from_numpy(np.where(values < first_kept, values.dtype.type(-np.inf), values))


def logit_rules(tokenizer: Tokenizer, opts: DecodingOptions, lookback_ms: float = 0.0,
                device: Device = "cpu") -> list[Rule]:
    """The rule chain for one generate call, in upstream's order (guidance is applied before these), its
    constants on ``device``."""
    rules: list[Rule] = [MonotonicTime(tokenizer, device)]
    if opts.timeshift_bias:
        rules.append(TimeShiftBias(tokenizer, opts.timeshift_bias))
    rules.append(TypeTemperature(tokenizer, opts, device) if opts.types_first else Temperature(opts.temperature))
    if lookback_ms > 0:
        rules.append(LookbackBias(tokenizer, lookback_ms, opts.types_first, device))
    if opts.do_sample:
        if opts.top_k > 0:
            rules.append(TopK(opts.top_k))
        if opts.top_p < 1.0:
            rules.append(TopP(opts.top_p))
    return rules


class TokenChoice:
    """What each step decides from the decoder's logits: guidance, the logit rules in order, then the token
    (:func:`engine.sampling.choose`). A token graph that captured it keeps it, rules and state, for its next
    windows."""

    def __init__(self, tokenizer: Tokenizer, opts: DecodingOptions, lookback_ms: float, guided: bool,
                 device: torch.device):
        self.rules = logit_rules(tokenizer, opts, lookback_ms, device)
        self.cfg_scale = opts.cfg_scale if guided else None
        self.invalid = torch.zeros((), dtype=torch.bool, device=device)  # a row's probabilities were not numbers

    def __call__(self, logits: torch.Tensor, ids: torch.Tensor, done: torch.Tensor,
                 noise: torch.Tensor | None) -> torch.Tensor:
        n = len(ids)
        scores = logits if self.cfg_scale is None else logits[n:] + self.cfg_scale * (logits[:n] - logits[n:])
        for rule in self.rules:
            scores = rule(ids, scores)
        return choose(scores, noise, done, self.invalid, host=cheap_host_reads(scores))

    def restart(self) -> None:
        """A new window."""
        for rule in self.rules:
            if hasattr(rule, "restart"):
                rule.restart()
        self.invalid.zero_()

    def select(self, rows: torch.Tensor) -> None:
        """Follow the batch when finished rows leave it."""
        for rule in self.rules:
            if hasattr(rule, "select"):
                rule.select(rows)


# --- the loop ------------------------------------------------------------------------------------------------


def invalid_scores_error() -> ModelError:
    return ModelError(Message("error.decoding.invalid_scores",
                              "the model's scores for the next token were not numbers (NaN or infinite): the "
                              "checkpoint is damaged or the precision overflowed; try precision=fp32"))


@dataclass
class DecodeStats:
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


# Most rows (before guidance doubles them) whose steps decode() replays as a CUDA graph: a graph holds its rows
# to the end of the window, so finished rows keep computing; on a GPU that costs little next to launching every
# kernel of every step from Python, and the static keys and values of 16 v32 rows are ~1 GB in bf16.
GRAPH_ROWS = 16
# A graph's length limit is rounded up to this: rows with their own budgets (a mapset's, variants') give each
# window another limit, which would otherwise capture a new graph for each window.
GRAPH_LENGTH_STEP = 256


def uses_cuda_graph(device: torch.device, batch: int, opts: DecodingOptions) -> bool:
    """Whether :func:`decode` replays its steps as a CUDA graph (:mod:`engine.cuda_graph`): on a GPU, for up to
    :data:`GRAPH_ROWS` rows (each with its guidance row, if any), unless ``opts.cuda_graph`` is off."""
    return opts.cuda_graph and device.type == "cuda" and 1 <= batch <= GRAPH_ROWS


def _token_graph(graphed, tokenizer: Tokenizer, opts: DecodingOptions, lookback_ms: float, guided: bool,
                 row_streams: bool, stop: frozenset[int], vocab: int):
    """The token graph kept with ``graphed`` for windows decoded with these options (its rule chain and stop set
    made once, on the device already), or a new one."""
    from .token_graph import TokenGraph, token_graph

    key = (tokenizer, dataclasses.replace(opts, max_length=0), lookback_ms, guided, row_streams, stop)
    device = graphed.ids.device
    return token_graph(graphed, key, lambda: TokenGraph(
        graphed, TokenChoice(tokenizer, opts, lookback_ms, guided, device), vocab, HISTORY_COLUMNS,
        TokenSet(stop, tokenizer.vocab_size_in, device), guided=guided, sampling=opts.do_sample,
        row_streams=row_streams))


@torch.inference_mode()
def decode(
    model: Mapperatorinator,
    tokenizer: Tokenizer,
    frames: torch.Tensor | None,
    prompts: Sequence[Sequence[int]],
    opts: DecodingOptions,
    stop: Iterable[int],
    *,
    negative_prompts: Sequence[Sequence[int]] | None = None,
    cond: dict[str, torch.Tensor] | None = None,
    lookback_ms: float = 0.0,
    generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
    cancel: threading.Event | None = None,
    on_step: Callable[[int], None] | None = None,
    stats: DecodeStats | None = None,
    encoder_out: torch.Tensor | None = None,
) -> list[list[int]]:
    """Generate after each prompt until a stop id or ``opts.max_length``; returns the new ids per row.

    ``frames`` holds one audio window per prompt; ``encoder_out``, when given, is the encoder's output for
    them, already computed (``frames`` is then not used). With ``opts.cfg_scale > 1`` the negative prompts run in
    the same batch and the logits are guided: neg + scale * (pos - neg). A set ``cancel`` event raises
    :class:`Cancelled` between two steps. ``generator``: one random stream for the batch, or one per row
    (rows of independent jobs: each row then draws from its own stream only while it runs, as it would alone).
    """
    started = time.perf_counter()
    device = model.device
    batch = len(prompts)
    guided = opts.cfg_scale > 1 and negative_prompts is not None
    padded, width = left_pad(list(prompts) + (list(negative_prompts) if guided else []), PAD_ID)
    rows_in = torch.tensor(padded, dtype=torch.long, device=device)
    ids = rows_in[:batch]
    cond = {k: v.to(device) for k, v in (cond or {}).items()}

    row_generators = list(generator) if isinstance(generator, (list, tuple)) else None
    if row_generators is not None and len(row_generators) != batch:
        raise ValueError(f"{len(row_generators)} generators for {batch} rows")
    # New tokens each row may add: up to max_length in all (prompt + generated). Rows of one job share the
    # padded width, as Hugging Face's batches do; rows of independent jobs count their own prompt, as alone.
    if row_generators is None:
        budgets = [opts.max_length - width] * batch
    else:
        negatives = list(negative_prompts) if guided else [()] * batch
        budgets = [opts.max_length - max(len(p), len(q)) for p, q in zip(prompts, negatives)]
    budget = torch.tensor(budgets, device=device).clamp(min=0)  # per row in the batch as it is (rows leave with theirs)
    total = max([0, *budgets])  # from the host's list: on a GPU, budget.max() would wait for the device

    if encoder_out is None:
        encoder_out = model.encode(frames.to(device), **cond)
    if guided:  # the negative rows see the same windows; one window's rows stay one tensor (model.one_window)
        encoder_out = encoder_out.expand(2 * batch, -1, -1) if one_window(encoder_out) else encoder_out.repeat(2, 1, 1)
    max_len = max(width + total, width + 1)
    graph = uses_cuda_graph(device, batch, opts) and not model.static_step_reads_host(max_len)
    if graph:  # rounded up: a kept graph serves windows whose prompts differ a little (engine.cuda_graph)
        limit = model.config.backbone.max_target_positions
        max_len = max(max_len, min(-(-max_len // GRAPH_LENGTH_STEP) * GRAPH_LENGTH_STEP, limit))
    state = model.start_decoding(encoder_out, rows_in != PAD_ID, max_len)
    logits = model.decode_step(rows_in, state).float()
    graphed = None
    if graph:  # the graph's shapes are fixed: no row leaves the batch
        from .cuda_graph import graphed_step

        graphed = graphed_step(model, state, max_len, len(rows_in), opts.compiled_step)

    if graphed is None:  # on a CPU the steps call the decoder's kernels without its modules (same logits)
        state.lean = lean_step(model, state)
    stop = frozenset(stop)
    # Through a CUDA graph every row stays (its stopped rows compute on, their tokens are dropped): after the
    # first token the window goes on in a token graph (engine.token_graph), kept for the next windows alike.
    loop = None
    if graphed is not None:
        loop = _token_graph(graphed, tokenizer, opts, lookback_ms, guided, row_generators is not None, stop,
                            logits.shape[-1])
        choice, is_stop = loop.choice, loop.is_stop
        choice.restart()
        out, done = loop.start(total)
    else:
        choice = TokenChoice(tokenizer, opts, lookback_ms, guided, device)
        is_stop = TokenSet(stop, tokenizer.vocab_size_in, device)
        out = torch.full((batch, total), PAD_ID, dtype=torch.long, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)

    def before_step() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled(Message("error.decoding.cancelled", "generation cancelled"))

    # Greedy rows that have stopped leave the batch, so one long window does not keep the others computing.
    # Sampled rows sharing one random stream stay: a smaller batch would draw different numbers. Rows with
    # their own streams leave too, so a finished row draws nothing more.
    prune = (not opts.do_sample or row_generators is not None) and loop is None
    alive = torch.arange(batch, device=device)  # the input row of each row still in the batch
    alive_rows = list(range(batch))  # the same on the host (each row's own random stream)
    steps = 0
    while steps < total:
        before_step()
        noise = None
        if opts.do_sample:
            streams = [row_generators[r] for r in alive_rows] if row_generators is not None else generator
            noise = draw_noise(torch.empty(len(alive), logits.shape[-1], device=device), streams)
        token = choice(logits, ids, done, noise)
        if prune:  # rows may have left: each writes to its own output row
            out[alive, steps] = token
        else:  # every row stays: a plain column copy, less host work a step than an indexed write
            out[:, steps] = token
        steps += 1
        ids = torch.cat([ids, token[:, None]], dim=1)
        done |= is_stop(token)
        if row_generators is not None:  # rows of one stream share one budget: the loop ends at it anyway
            done |= budget <= steps
        if on_step is not None:
            on_step(steps)
        finished = int(done.sum())  # the loop's one host read a step
        if finished == len(done) or steps >= total:
            break
        if prune and finished:
            n, keep = len(alive), (~done).nonzero().squeeze(1)
            alive, ids, token, done, budget = alive[keep], ids[keep], token[keep], done[keep], budget[keep]
            alive_rows = [alive_rows[i] for i in keep.tolist()]
            state.select(torch.cat([keep, keep + n]) if guided else keep)
            choice.select(keep)
        step = torch.cat([token, token]) if guided else token
        if loop is None:
            logits = model.decode_step(step[:, None], state).float()
            continue
        steps = loop.run(graphed(step), ids, steps, total, row_generators if row_generators is not None else
                         generator, budget if row_generators is not None else None, before_step, on_step)
        break
    if bool(choice.invalid):
        raise invalid_scores_error()

    rows = []
    for row in out[:, :steps].cpu().tolist():
        # Finished rows were padded after their stop id, as in Hugging Face's output.
        while row and row[-1] == PAD_ID:
            row.pop()
        rows.append(row)
    if stats is not None:
        stats.tokens += sum(len(r) for r in rows)
        stats.seconds += time.perf_counter() - started
    return rows
