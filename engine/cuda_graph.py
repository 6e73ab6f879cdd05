"""The decoder step of one row (or one guided pair) replayed as a captured CUDA graph.

On a GPU a decoder step is a few hundred small kernels; launched one by one from Python, the card waits on
the CPU most of the time (v32 on an H100 decoded ~130 tokens/s, about 1 % of what its memory bandwidth
allows). :class:`GraphedStep` captures :meth:`~engine.model.Mapperatorinator.decode_step_static` (fixed shapes,
position on the device, nothing read on the host) once per window and replays it for every token: one launch
a step. Where capture is not possible (no CUDA, or it fails) the same static step runs eagerly, so the tokens
are the same either way.

Capturing costs a few eager steps, about what a timing window decodes, so :func:`graphed_step` keeps a
window's graph for the next window of the same shape (rows, length limit): the next prompt's state is loaded
into the graph's buffers and the graph is replayed as captured. Kept graphs belong to the thread that captured
them (two jobs never replay one graph at once) and live on the model, so they go when it is unloaded.
"""
from __future__ import annotations

import logging
import threading

import torch

from .model import DecoderState, Mapperatorinator, StaticDecoderState

log = logging.getLogger(__name__)

WARMUP_STEPS = 2  # CUDA wants a few eager runs on a side stream before capture (allocator, cuBLAS workspaces)
# Static buffers kept per model for later windows (v32, one row in bf16: ~115 MB; 16 guided rows: ~3.6 GB,
# not kept); the oldest kept graph goes first.
KEPT_BYTES = 2**30


def graphed_step(model: Mapperatorinator, state: DecoderState, max_len: int, rows: int) -> "GraphedStep":
    """The graphed decoder step for a window whose prompt ``state`` holds: this thread's kept graph of the same
    shape with ``state`` loaded into it, or a new capture (kept while the kept ones fit in :data:`KEPT_BYTES`)."""
    kept: dict = model.__dict__.setdefault("_graphed_steps", {})
    key = (threading.get_ident(), rows, max_len, model.dtype, torch.is_autocast_enabled("cuda"))
    step = kept.pop(key, None)
    if step is not None and step.state.fits(state):
        step.state.load(state)
    else:
        step = GraphedStep(model, model.static_decoding(state, max_len), rows)
    kept[key] = step  # newest last
    while kept and sum(s.state.nbytes() for s in kept.values()) > KEPT_BYTES:
        del kept[next(iter(kept))]
    return step


class GraphedStep:
    """``step(tokens) -> logits`` (tokens [rows], logits [rows, vocab] float) for a static decoder state."""

    def __init__(self, model: Mapperatorinator, state: StaticDecoderState, rows: int):
        self.model, self.state = model, state
        self.ids = torch.zeros(rows, 1, dtype=torch.long, device=state.position.device)
        self.graph = self._capture() if self.ids.is_cuda else None

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.ids.copy_(tokens[:, None])
        if self.graph is None:
            return self.model.decode_step_static(self.ids, self.state).float()
        self.graph.replay()
        self.state.length += 1  # the graph advanced the device position; keep the host copy in step
        return self.logits

    def _capture(self) -> "torch.cuda.CUDAGraph | None":
        state = self.state
        start, length = state.position.clone(), state.length
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self.model.decode_step_static(self.ids, state)
            torch.cuda.current_stream().wait_stream(side)
            state.position.copy_(start)
            state.length = length
            graph = torch.cuda.CUDAGraph()
            # under autocast (precision=amp) the casts must be part of the graph: autocast's cache of cast
            # weights would be freed after capture while the graph still reads it
            casting = torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False,
                                     enabled=torch.is_autocast_enabled("cuda"))
            with casting, torch.cuda.graph(graph):
                self.logits = self.model.decode_step_static(self.ids, state).float()
        except Exception as e:  # noqa: BLE001 - any capture failure leaves the eager static step, same tokens
            log.warning("decoding without a CUDA graph: capture failed (%s)", e)
            graph = None
        # warm-up steps wrote keys at the next positions and advanced the position; capture ran nothing
        state.position.copy_(start)
        state.length = length
        return graph
