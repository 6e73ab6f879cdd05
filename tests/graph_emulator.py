"""CUDA graph semantics on the CPU, for testing code that captures graphs without a GPU.

A real capture runs the Python of a block once and records its kernels without running them; a replay runs the
kernels again on the same memory: Python values read at capture are baked in, a tensor the block rebinds
instead of updating in place keeps the value it had at capture, and reading a value on the host fails the
capture. :class:`EmulatedGraph` does the same with aten operations: at capture each operation runs on copies of
the tensors that existed before the block (nothing real changes) and is recorded; a replay runs the recorded
operations again on the real tensors and writes each result where the capture's result was (a graph's
static memory).
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

# what fails a real capture: the host reading a device value (or an operation whose output size depends on
# values: on a GPU it asks the host; torch.isin sorts with one once its set passes about a dozen ids, so it is
# refused whole, since the emulator sees an operation but not what it calls inside), a host tensor copied in,
# or a random draw from a generator not registered
HOST_READS = {"_local_scalar_dense", "item", "is_nonzero", "nonzero", "equal", "lift_fresh", "masked_select",
              "_unique", "_unique2", "unique_dim", "unique_consecutive", "isin"}
RANDOM = {"exponential_", "uniform_", "normal_", "bernoulli_", "multinomial", "random_", "rand", "randn"}


class CaptureError(RuntimeError):
    pass


class EmulatedGraph:
    def __init__(self):
        self.ops: list = []
        self.produced: dict[int, torch.Tensor] = {}  # made inside the capture (its static memory)
        self.real_of: dict[int, torch.Tensor] = {}  # id(copy) -> the tensor from before the capture it stands for
        self.copy_of: dict[int, torch.Tensor] = {}  # id(real) -> its copy
        self.replays = 0

    @contextlib.contextmanager
    def capturing(self):
        with _Recording(self):
            yield

    def capture_begin(self, *args, **kwargs) -> None:
        self._recording = _Recording(self)
        self._recording.__enter__()

    def capture_end(self) -> None:
        self._recording.__exit__(None, None, None)

    def replay(self) -> None:
        results: dict[int, torch.Tensor] = {}

        def resolve(x):
            if not isinstance(x, torch.Tensor):
                return x
            if id(x) in self.produced:
                return results[id(x)]
            return self.real_of.get(id(x), x)

        for func, args, kwargs, out in self.ops:
            result = func(*tree_map(resolve, args), **tree_map(resolve, kwargs))
            for was, now in zip(tree_flatten(out)[0], tree_flatten(result)[0]):
                if isinstance(was, torch.Tensor) and id(was) in self.produced:
                    results[id(was)] = now
        for key, tensor in self.produced.items():  # results land in the capture's memory (views follow their base)
            if not tensor._is_view():
                tensor.copy_(results[key])
        self.replays += 1


class _Recording(TorchDispatchMode):
    def __init__(self, graph: EmulatedGraph):
        super().__init__()
        self.graph = graph

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in HOST_READS:
            raise CaptureError(f"{name} during a capture (a host read or a host tensor)")
        if name in RANDOM:
            raise CaptureError(f"{name} during a capture (a random draw)")
        g = self.graph

        def stand_in(x):
            if not isinstance(x, torch.Tensor) or id(x) in g.produced or id(x) in g.real_of:
                return x
            copy = g.copy_of.get(id(x))
            if copy is None:
                copy = g.copy_of[id(x)] = x.clone()
                g.real_of[id(copy)] = x
            return copy

        args, kwargs = tree_map(stand_in, args), tree_map(stand_in, kwargs)
        out = func(*args, **kwargs)
        g.ops.append((func, args, kwargs, out))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and id(t) not in g.real_of:
                g.produced[id(t)] = t
        return out


def stand_in_streams(monkeypatch) -> None:
    """torch.cuda's streams stood in for on the CPU: one stream that waits for nothing, entered as a no-op."""
    import types

    stream = types.SimpleNamespace(wait_stream=lambda other: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda *args, **kwargs: stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())


def emulate_cuda_graphs(monkeypatch) -> list[EmulatedGraph]:
    """torch.cuda's graph capture and streams replaced by the emulator; returns the graphs made."""
    made: list[EmulatedGraph] = []

    def new_graph() -> EmulatedGraph:
        made.append(EmulatedGraph())
        return made[-1]

    stand_in_streams(monkeypatch)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", new_graph)
    monkeypatch.setattr(torch.cuda, "graph", lambda g: g.capturing())
    return made
