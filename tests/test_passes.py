"""PassRunner: calls of several passes share batches; rows go back to their passes; finished passes come back
in order; passes are taken only when the batch needs them."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

import engine.decoding
from engine.decoding import DecodingOptions
from engine.passes import PassContext, PassRunner
from engine.prompt import Call
from engine.tokenizer import ContextType


def call(window: int, prompt: list[int], stop=(1,), lookback=0.0) -> Call:
    return Call(ContextType.MAP, window, window * 1000, prompt, None, list(stop), lookback, 0.0,
                {"x": torch.zeros(1, 2)})


class Chain:
    """A sequential pass: window i+1's prompt holds window i's answer."""

    def __init__(self, name: int, windows: int, stop=(1,)):
        self.name, self.windows, self.stop = name, windows, stop
        self.answers: list[list[int]] = []
        self.waiting = False

    def ready(self):
        if self.waiting or self.finished:
            return []
        self.waiting = True
        last = self.answers[-1] if self.answers else []
        return [call(len(self.answers), [self.name, *last], self.stop)]

    def frames(self, c):
        return np.full(4, c.window, dtype=np.float32)

    def absorb(self, c, generated):
        self.answers.append(list(generated))
        self.waiting = False

    @property
    def finished(self):
        return len(self.answers) == self.windows


def runner(monkeypatch, batch_size: int, seen: list):
    def fake_decode(model, tokenizer, frames, prompts, opts, stop, **kw):
        seen.append((frames.shape[0], [list(p) for p in prompts], sorted(stop), kw["lookback_ms"]))
        return [[p[0] * 100 + len(p)] for p in prompts]  # an answer that names its row

    monkeypatch.setattr(engine.decoding, "decode", fake_decode)
    context = PassContext(SimpleNamespace(model=None, tokenizer=None), torch.device("cpu"))
    return PassRunner(context, DecodingOptions(do_sample=False), batch_size=batch_size)


def test_sequential_passes_share_each_step_and_get_their_own_rows(monkeypatch):
    seen = []
    passes = [Chain(1, 3), Chain(2, 3), Chain(3, 2)]
    finished = list(runner(monkeypatch, 8, seen).run(passes))
    assert [p.name for p in finished] == [1, 2, 3]
    assert [rows for rows, *_ in seen] == [3, 3, 2]  # one window of every unfinished pass per batch
    assert passes[0].answers == [[101], [102], [102]] and passes[2].answers == [[301], [302]]
    assert seen[1][1] == [[1, 101], [2, 201], [3, 301]]  # each prompt holds its own pass's previous answer


def test_calls_that_stop_differently_do_not_share_a_batch(monkeypatch):
    seen = []
    list(runner(monkeypatch, 8, seen).run([Chain(1, 1), Chain(2, 1, stop=(1, 7)), Chain(3, 1)]))
    assert [(rows, stop) for rows, _, stop, _ in seen] == [(2, [1]), (1, [1, 7])]


def test_passes_are_taken_only_when_the_batch_needs_them(monkeypatch):
    seen, taken = [], []

    def passes():
        for name in range(1, 6):
            taken.append(name)
            yield Chain(name, 2)

    run = runner(monkeypatch, 2, seen).run(passes())
    first = next(run)
    assert first.name == 1 and taken == [1, 2]  # two passes fill a batch of two
    assert [p.name for p in run] == [2, 3, 4, 5] and len(seen) == 6
