"""A window's token loop on the GPU: each step (guidance, logit rules, the choice of the token, its bookkeeping
and the decoder step) captured as one CUDA graph, replayed once a token.

With only the decoder step captured (:mod:`engine.cuda_graph`) the host still launched everything around it,
~70 kernels a token: on an H200 a v32 token took 1.90 ms through the loop against 0.96 ms for the graphed step
alone, and v32-mini 1.21 against 0.45. Here the host keeps what only it can do: the random draw (a random
stream lives on the host: one launch, :func:`engine.sampling.draw_noise`), the replay, and reading whether every
row is done, a step late (:class:`LaggedRead`), so the GPU does not wait on the host between steps. Rows with
their own random streams (a mapset's difficulties) read which rows are done, a step late too: a row that
stopped must not draw from its stream again, so the draw it made for the step queued before that was known is
taken back (its stream put back as it was; the row's token there is PAD anyway).

The graph is kept with the decoder step's (:mod:`engine.cuda_graph` keeps that per thread and shape) for the
next windows decoded with the same options, in buffers of its own that each window loads: one capture a pass.
It is captured once its windows have taken :data:`CAPTURE_AFTER` steps eagerly between them: a lone short
window never pays for a capture, while a pass of short windows (a timing pass's are ~12 tokens) replays from its
second or third window on. Where capture fails, or on a CPU, the step keeps running eagerly: the same tokens either way.

Where the decoder step is compiled (``DecodingOptions.compiled_step``) the rest of the token step is compiled too,
by one torch.compile of :meth:`TokenGraph._decide` for the process (token graphs with the same rules share its
code): Inductor fuses the ~35 small kernels of guidance, the rules and the draw into a few. Where compiling it
fails, it runs eagerly, with a warning.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Sequence

import torch
import torch.nn.functional as F

from . import cuda_graph
from .cuda_graph import GraphedStep
from .sampling import Streams, default_stream, draw_noise
from .tokenizer import PAD_ID

log = logging.getLogger(__name__)

CAPTURE_AFTER = 16  # eager steps a token graph's windows take, all together, before its step is captured
KEPT_PER_STEP = 4  # token graphs kept with one decoder step's graph (a pass's options each: timing, map, ...)

# (logits [rows (x2 guided), vocab], the last tokens [rows, history], done [rows], noise [rows, vocab] or None)
# -> the next token of each row (PAD where done): engine.decoding.TokenChoice
Choice = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


class LaggedRead:
    """A step's value of the device tensor ``source`` (whether rows are done), read on the host without draining
    the GPU's queue: it is copied out (to pinned memory, behind an event) before the next step is queued, and
    reading it waits for that step only."""

    def __init__(self, source: torch.Tensor):
        self.source = source
        self.host = torch.zeros(source.shape, dtype=source.dtype, pin_memory=source.is_cuda)
        self.event = torch.cuda.Event() if source.is_cuda else None

    def record(self) -> None:
        self.host.copy_(self.source, non_blocking=True)
        if self.event is not None:
            self.event.record()

    def read(self) -> torch.Tensor:
        if self.event is not None:
            self.event.synchronize()
        return self.host


class TokenGraph:
    """The steps of a window after its first token, every row kept to the end (stopped rows compute on, their
    tokens PAD), in buffers of its own: a graph captured for one window replays for the next windows of the same
    shape and options (:func:`token_graph` keeps it with the decoder step's graph). ``choice`` decides each step's
    tokens (keeping its state in place); ``is_stop`` says which tokens end a row; ``row_streams``: each row draws
    from its own random stream (and then has its own token budget)."""

    def __init__(self, step: GraphedStep, choice: Choice, vocab: int, history: int,
                 is_stop: Callable[[torch.Tensor], torch.Tensor], *, guided: bool, sampling: bool, row_streams: bool):
        rows = len(step.ids) // 2 if guided else len(step.ids)
        device = step.ids.device
        self.step, self.choice, self.is_stop, self.guided, self.row_streams = step, choice, is_stop, guided, row_streams
        self.logits = torch.zeros(len(step.ids), vocab, device=device)
        self.recent = torch.full((rows, history), PAD_ID, dtype=torch.long, device=device)
        self.out = torch.full((rows, step.state.max_len), PAD_ID, dtype=torch.long, device=device)
        self.done = torch.zeros(rows, dtype=torch.bool, device=device)
        self.budget = torch.zeros(rows, dtype=torch.long, device=device) if row_streams else None
        self.column = torch.zeros(1, dtype=torch.long, device=device)
        self.all_done = torch.zeros((), dtype=torch.bool, device=device)
        self.noise = torch.ones(rows, vocab, device=device) if sampling else None
        self.lagged = LaggedRead(self.done if row_streams else self.all_done)  # what run() reads a step late
        self.graph: torch.cuda.CUDAGraph | None = None
        self.compiled = compiled_decide() if step.on_device is not None else None  # _decide, compiled
        self._capturable = step.graph is not None  # the decoder step alone captured: try the whole step
        self._eager_steps = 0  # taken by this graph's windows before the capture
        self._recording = False

    def start(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A new window of ``width`` tokens at most: its output [rows, width] and done [rows], cleared, for the
        window's first token (decided outside, with the whole prompt) to go in."""
        self.out[:, :width].fill_(PAD_ID)
        self.done.zero_()
        return self.out[:, :width], self.done

    def run(self, logits: torch.Tensor, ids: torch.Tensor, steps: int, total: int, streams: Streams,
            budget: torch.Tensor | None, before_step: Callable[[], None],
            on_step: Callable[[int], None] | None = None) -> int:
        """Decode on from ``steps`` tokens already taken (``logits``: the decoder's for the next one; ``ids``:
        the history, newest last) until ``total`` steps or every row is done; returns the steps taken in all.
        ``before_step`` runs first each step (it raises to cancel)."""
        self.logits.copy_(logits)
        history = self.recent.shape[1]
        self.recent.copy_(F.pad(ids[:, -history:], (max(history - ids.shape[1], 0), 0), value=PAD_ID))
        self.column.fill_(steps)
        if self.budget is not None:
            self.budget.copy_(budget)
        rows = self.row_streams
        stopped = self.done.tolist() if rows else []  # rows known to be done (one may stop at its first token)
        recorded = False  # whether self.lagged holds the step before's answer, not read yet
        while steps < total:
            before_step()
            if self._capturable and self.graph is None and self._eager_steps >= CAPTURE_AFTER:
                self.graph = self._capture()
            rewind = self._draw(streams, stopped)
            self._advance()
            if recorded:  # the step before the one just queued: which rows it left done
                if rows:
                    now = self.lagged.read().tolist()
                    rewind([r for r, (was, done) in enumerate(zip(stopped, now)) if done and not was])
                    stopped, finished = now, all(now)
                else:
                    finished = bool(self.lagged.read())
                    if finished:
                        rewind([0])
                if finished:  # the step just queued followed the last: it is dropped
                    break
            steps += 1
            if on_step is not None:
                on_step(steps)
            self.lagged.record()
            recorded = True
        return steps

    def _draw(self, streams: Streams, stopped: Sequence[bool]) -> Callable[[Sequence[int]], None]:
        """This step's noise, drawn from one stream or from each row's own (not for rows ``stopped``); returns
        how to take back the draws of some rows (``[0]`` for one stream): their streams put back as they were."""
        if self.noise is None:
            return lambda rows: None
        device = self.noise.device
        if isinstance(streams, (list, tuple)):
            own = [s if s is not None else default_stream(device) for s in streams]
            before = {r: s.get_state() for r, s in enumerate(own) if not stopped[r]}
            draw_noise(self.noise, own, stopped)

            def rewind(rows: Sequence[int]) -> None:
                for r in rows:
                    own[r].set_state(before[r])
            return rewind
        stream = streams if streams is not None else default_stream(device)
        state = stream.get_state()
        draw_noise(self.noise, stream)
        return lambda rows: stream.set_state(state)

    def _advance(self) -> None:
        if self.graph is None:
            self._step()
            self._eager_steps += 1
            return
        self.graph.replay()
        self.step.state.length += 1  # the host's copy of the position the graph advanced on the device

    def _step(self) -> None:
        fed = self._decided()
        self.logits.copy_(self.step.in_capture(fed) if self._recording else self.step(fed))

    def _decide(self) -> torch.Tensor:
        """This step's tokens, chosen from ``self.logits`` and written into the window's books; returns what the
        decoder step is fed next (each token twice when guided)."""
        token = self.choice(self.logits, self.recent, self.done, self.noise)
        self.out.index_copy_(1, self.column, token[:, None])
        self.recent.copy_(torch.cat([self.recent[:, 1:], token[:, None]], dim=1))
        self.column.add_(1)
        self.done.logical_or_(self.is_stop(token))
        if self.budget is not None:
            self.done.logical_or_(self.budget <= self.column)
        self.all_done.copy_(self.done.all())
        return torch.cat([token, token]) if self.guided else token

    def _decided(self) -> torch.Tensor:
        """:meth:`_decide`, through its compiled code where there is any (compiled at a window's first eager step,
        never inside a capture)."""
        global _decide_failure
        if self.compiled is None or _decide_failure is not None:
            return self._decide()
        if self._recording:
            return self.compiled(self)
        try:
            return self.compiled(self)
        except Exception as e:  # noqa: BLE001 - no compiler, an op Inductor cannot take: eager, same tokens
            _decide_failure = cuda_graph.first_cause(e)
            log.warning("choosing tokens without torch.compile: compiling the token step failed (%s)", _decide_failure)
            self.compiled = None
            return self._decide()

    def _capture(self) -> torch.cuda.CUDAGraph | None:
        """The whole step captured (a capture runs no kernel: nothing on the device changes), or None where
        capture fails, after which the step runs eagerly. Captured on a side stream with CUDA's capture calls
        themselves: ``torch.cuda.graph`` also collects Python's garbage and empties torch's cache each time, tens
        of milliseconds in a large process."""
        self._capturable = False
        length = self.step.state.length
        graph = torch.cuda.CUDAGraph()
        side = _capture_stream(self.logits.device)
        side.wait_stream(torch.cuda.current_stream())
        try:
            self._recording = True
            with torch.cuda.stream(side), cuda_graph.run_as_compiled(self.compiled is not None):
                graph.capture_begin()
                try:
                    self._step()
                finally:
                    graph.capture_end()
        except Exception as e:  # noqa: BLE001 - the eager step goes on, same tokens
            log.warning("decoding without a graph of the whole token step: capture failed (%s)", e)
            graph = None
        finally:
            self._recording = False
            self.step.state.length = length
        torch.cuda.current_stream().wait_stream(side)
        return graph


_compiled_decide = None  # TokenGraph._decide compiled, one for the process
_decide_failure: str | None = None  # why compiling it failed (the first line), after which it is not tried again


def compiled_decide() -> Callable[[TokenGraph], torch.Tensor] | None:
    """:meth:`TokenGraph._decide` compiled by torch.compile (whole: a graph break would leave kernels between
    the pieces, and a host read among them), one compiled function for every token graph of the process (a
    compiled function per graph would compile again for each), or None once compiling it has failed."""
    global _compiled_decide
    if _decide_failure is not None:
        return None
    if _compiled_decide is None:
        _compiled_decide = torch.compile(TokenGraph._decide, dynamic=False, fullgraph=True,
                                         mode=cuda_graph.COMPILE_MODE)
    return _compiled_decide


def token_graph(step: GraphedStep, key: Hashable, make: Callable[[], TokenGraph]) -> TokenGraph:
    """The token graph kept with ``step`` (the decoder step's kept graph, so the same thread and shape) for
    windows decoded alike (``key``: their options), or a new one from ``make``; the :data:`KEPT_PER_STEP` used
    last are kept (a session of jobs with other options each would otherwise keep one more)."""
    kept: dict = step.__dict__.setdefault("_token_graphs", {})
    graph = kept.pop(key, None)
    if graph is None:
        graph = make()
    kept[key] = graph  # newest last
    while len(kept) > KEPT_PER_STEP:
        del kept[next(iter(kept))]
    return graph


_CAPTURE_STREAMS = threading.local()


def _capture_stream(device: torch.device) -> "torch.cuda.Stream":
    """One side stream per thread and device for these captures: each stream a capture runs cuBLAS on gets a
    workspace of its own, and two jobs capturing at once must not capture into one stream."""
    streams = _CAPTURE_STREAMS.__dict__.setdefault("by_device", {})
    stream = streams.get(device)
    if stream is None:
        stream = streams[device] = torch.cuda.Stream(device)
    return stream
