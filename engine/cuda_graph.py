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

With ``DecodingOptions.compiled_step`` the captured step is first compiled by torch.compile (Inductor fuses the
small kernels a step is made of: each RMS norm with its residual addition, a layer's rotation with its casts;
on an H200 v32's step went from 321 kernels to 224, 990 to 1,401 steps/s). Compiling costs seconds per batch
shape (cached on disk for later runs) and needs Triton and a C compiler; where it fails, the plain step is
captured instead, with a warning.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import torch

from .model import DecoderState, Mapperatorinator, StaticDecoderState

log = logging.getLogger(__name__)

WARMUP_STEPS = 2  # CUDA wants a few eager runs on a side stream before capture (allocator, cuBLAS workspaces)
# Static buffers kept per model for later windows (v32, one row in bf16: ~115 MB; 16 guided rows: ~3.6 GB,
# not kept); the oldest kept graph goes first.
KEPT_BYTES = 2**30
COMPILE_MODE: str | None = None  # torch.compile's mode for compiled steps (None: its default)
# Compiled versions of the step torch keeps: its default, 8, counts every model and batch shape of a process
# together (an app session with a mapset's row counts and two models passes it), and past it the step runs
# uncompiled
RECOMPILE_LIMIT = 64


def graphed_step(model: Mapperatorinator, state: DecoderState, max_len: int, rows: int,
                 compiled: bool = False) -> "GraphedStep":
    """The graphed decoder step for a window whose prompt ``state`` holds: this thread's kept graph of the same
    shape with ``state`` loaded into it, or a new capture (kept while the kept ones fit in :data:`KEPT_BYTES`).
    ``compiled``: the step compiled by torch.compile first (see above)."""
    kept: dict = model.__dict__.setdefault("_graphed_steps", {})
    key = (threading.get_ident(), rows, max_len, model.dtype, torch.is_autocast_enabled("cuda"), compiled)
    step = kept.pop(key, None)
    if step is not None and step.state.fits(state):
        step.state.load(state)
    else:
        step = GraphedStep(model, model.static_decoding(state, max_len), rows, compiled)
    kept[key] = step  # newest last
    while kept and sum(s.state.nbytes() for s in kept.values()) > KEPT_BYTES:
        del kept[next(iter(kept))]
    return step


def compiled_step_on_device(model: Mapperatorinator) -> Callable | None:
    """``model.static_step_on_device`` compiled by torch.compile, made once per model (torch compiles it again
    for each new batch shape); None once compiling has failed for this model."""
    if compile_failure(model) is not None:
        return None
    compiled = model.__dict__.get("_compiled_step_on_device")
    if compiled is None:
        import torch._dynamo.config

        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        compiled = torch.compile(model.static_step_on_device, dynamic=False, mode=COMPILE_MODE)
        model.__dict__["_compiled_step_on_device"] = compiled
    return compiled


def run_as_compiled(compiled: bool) -> contextlib.AbstractContextManager:
    """For a capture of compiled code: compiling inside a capture would break it (and leave torch's CUDA random
    state unusable), so any reason to compile again there is an error before the capture's first kernel."""
    return torch.compiler.set_stance("fail_on_recompile") if compiled else contextlib.nullcontext()


def first_cause(error: BaseException) -> str:
    """The first line of the error torch.compile's own wrapping hides (its backend's failure)."""
    while (inner := getattr(error, "inner_exception", None) or error.__cause__) is not None:
        error = inner
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def compile_failure(model: Mapperatorinator) -> str | None:
    """Why compiling ``model``'s decoder step failed (its first line), or None where it did not fail."""
    return model.__dict__.get("_compile_failure")


class GraphedStep:
    """``step(tokens) -> logits`` (tokens [rows], logits [rows, vocab] float) for a static decoder state;
    ``compiled``: the step compiled by torch.compile (where that fails, the plain one)."""

    def __init__(self, model: Mapperatorinator, state: StaticDecoderState, rows: int, compiled: bool = False):
        self.model, self.state = model, state
        self.ids = torch.zeros(rows, 1, dtype=torch.long, device=state.position.device)
        kind = self.ids.device.type
        self._autocast = dict(device_type=kind, dtype=torch.get_autocast_dtype(kind),
                              enabled=torch.is_autocast_enabled(kind))
        self.on_device = self._compiled() if compiled else None
        self.graph = self._capture() if self.ids.is_cuda else None

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.ids.copy_(tokens[:, None])
        if self.graph is None:
            with self._casting():
                return self._step().float()
        self.graph.replay()
        self.state.length += 1  # the graph advanced the device position; keep the host copy in step
        return self.logits

    def in_capture(self, tokens: torch.Tensor) -> torch.Tensor:
        """The step's kernels for a larger capture (the whole token step: engine.token_graph), run as this step's
        own capture runs them: the same autocast state, a compiled step not compiled again."""
        self.ids.copy_(tokens[:, None])
        with self._casting(), run_as_compiled(self.on_device is not None):
            return self._step().float()

    def _step(self) -> torch.Tensor:
        return self.model.decode_step_static(self.ids, self.state, self.on_device)

    def _casting(self) -> torch.autocast:
        """The autocast state every run of this step gets, the same from the first to the capture: under
        autocast (precision=amp) the casts must be part of the graph (autocast's cache of cast weights would be
        freed after capture while the graph still reads it), and torch.compile guards on that state: a compiled
        step seeing another at capture would compile again inside the capture, which breaks it."""
        return torch.autocast(**self._autocast, cache_enabled=False)

    def _compiled(self) -> Callable | None:
        """The compiled device step, run once here (the compiling happens in that call), or None where it fails."""
        compiled = compiled_step_on_device(self.model)
        if compiled is None:
            return None
        start = self.state.position.clone()
        try:
            with self._casting():
                compiled(self.ids, self.state)
        except Exception as e:  # noqa: BLE001 - no compiler, no Triton, an unsupported op: the plain step, same tokens
            log.warning("decoding without torch.compile: compiling the decoder step failed (%s)", e)
            self.model.__dict__["_compile_failure"] = first_cause(e)
            compiled = None
        self.state.position.copy_(start)  # the trial wrote keys at the next position: masked until overwritten
        return compiled

    def _capture(self) -> "torch.cuda.CUDAGraph | None":
        state = self.state
        start, length = state.position.clone(), state.length
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with self._casting(), torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self._step()
            torch.cuda.current_stream().wait_stream(side)
            state.position.copy_(start)
            state.length = length
            graph = torch.cuda.CUDAGraph()
            with self._casting(), run_as_compiled(self.on_device is not None), torch.cuda.graph(graph):
                self.logits = self._step().float()
        except Exception as e:  # noqa: BLE001 - any capture failure leaves the eager static step, same tokens
            log.warning("decoding without a CUDA graph: capture failed (%s)", e)
            graph = None
        # warm-up steps wrote keys at the next positions and advanced the position; capture ran nothing
        state.position.copy_(start)
        state.length = length
        return graph
