"""PassRunner: calls of several passes share batches; rows go back to their passes; finished passes come back
in order; passes are taken only when the batch needs them."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import torch

import engine.decoding
from engine.decoding import DecodingOptions
from engine.passes import EncoderCache, PassContext, PassRunner
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


class CountingEncoder:
    """Stands for a model: its encoder output is its input frames; each row it encodes is counted."""

    def __init__(self):
        self.rows: list[float] = []  # the window (first sample) of each encoded row, in order

    def encode(self, frames, **cond):
        self.rows += frames[:, 0].tolist()
        return frames[:, None, :] * 1.0


def runner(monkeypatch, batch_size: int, seen: list, model=None, cache=None):
    def fake_decode(model, tokenizer, frames, prompts, opts, stop, **kw):
        seen.append((kw["encoder_out"].shape[0], [list(p) for p in prompts], sorted(stop), kw["lookback_ms"]))
        return [[p[0] * 100 + len(p)] for p in prompts]  # an answer that names its row

    monkeypatch.setattr(engine.decoding, "decode", fake_decode)
    context = PassContext(SimpleNamespace(model=model or CountingEncoder(), tokenizer=None), torch.device("cpu"),
                          encoder_cache=cache)
    return PassRunner(context, DecodingOptions(do_sample=False), batch_size=batch_size)


class NamedChain(Chain):
    """A chain whose windows are named, as SequentialPass names the windows of its segments."""

    def window_key(self, c):
        return "song", c.window


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


def test_rows_of_one_window_share_one_encoder_row(monkeypatch):
    model, seen = CountingEncoder(), []
    list(runner(monkeypatch, 8, seen, model).run([NamedChain(1, 2), NamedChain(2, 2), Chain(3, 2)]))
    # the two named chains walk the same windows: one row each; the unnamed chain's rows are its own
    assert model.rows == [0.0, 0.0, 1.0, 1.0]
    assert [rows for rows, *_ in seen] == [3, 3]  # every prompt still gets its encoder row


def test_a_later_pass_over_the_same_windows_reuses_the_encoder_outputs(monkeypatch):
    model, cache = CountingEncoder(), EncoderCache()
    list(runner(monkeypatch, 1, [], model, cache).run([NamedChain(1, 3)]))
    list(runner(monkeypatch, 1, [], model, cache).run([NamedChain(2, 3)]))
    assert model.rows == [0.0, 1.0, 2.0] and cache.hits == 3


def test_the_cache_keeps_the_first_windows_up_to_its_budget(monkeypatch):
    model = CountingEncoder()
    cache = EncoderCache(budget_bytes=2 * 4 * 4, keep_last=0)  # two windows of four float32 samples
    list(runner(monkeypatch, 1, [], model, cache).run([NamedChain(1, 4)]))
    list(runner(monkeypatch, 1, [], model, cache).run([NamedChain(2, 4)]))
    assert model.rows == [0.0, 1.0, 2.0, 3.0, 2.0, 3.0] and cache.used_bytes == 32


def test_past_the_budget_the_last_windows_are_kept_for_the_next_context(monkeypatch):
    class TwoContexts(NamedChain):  # each window asked for twice in a row, as kiai then map
        def ready(self):
            calls = super().ready()
            return calls and [dataclasses.replace(calls[0], window=len(self.answers) // 2)]

    model = CountingEncoder()
    list(runner(monkeypatch, 1, [], model).run([TwoContexts(1, 6)]))  # the runner's own cache: no budget
    assert model.rows == [0.0, 1.0, 2.0]


def test_a_reused_output_is_the_one_the_encoder_gave():
    model = CountingEncoder()
    cache = EncoderCache()
    frames = torch.arange(8.0).reshape(2, 4)
    first = cache.encode(model, frames, {}, [("a", 0), ("a", 1)])
    again = cache.encode(model, frames.flip(0), {}, [("a", 1), ("a", 0)])
    assert torch.equal(again, first.flip(0)) and model.rows == [0.0, 4.0]


def test_rows_of_one_window_come_back_as_one_tensor():
    """Rows asking for the same window get its output as one tensor expanded to the batch (the decoder then
    keeps one copy of its cross-attention keys: engine.model.one_window); other batches are laid out."""
    from engine.model import one_window

    model, cache = CountingEncoder(), EncoderCache()
    frames = torch.arange(12.0).reshape(3, 4)
    same = cache.encode(model, frames, {}, [("a", 0)] * 3)
    assert same.shape[0] == 3 and one_window(same) and model.rows == [0.0]
    mixed = cache.encode(model, frames, {}, [("a", 0), ("a", 1), ("a", 0)])
    assert not one_window(mixed) and torch.equal(mixed[0], mixed[2]) and torch.equal(mixed[0], same[1])


class LookingAhead(NamedChain):
    """A named chain that tells its next windows, as SequentialPass does."""

    def upcoming(self, c, count):
        later = range(c.window + 1, min(c.window + 1 + count, self.windows))
        return [(("song", w), np.full(4, w, dtype=np.float32), {"x": torch.zeros(1, 2)}) for w in later]


class CallCounting(CountingEncoder):
    def __init__(self):
        super().__init__()
        self.calls: list[int] = []  # rows of each encoder call

    def encode(self, frames, **cond):
        self.calls.append(frames.shape[0])
        return super().encode(frames, **cond)


def test_windows_a_pass_needs_next_are_encoded_with_the_missing_one(monkeypatch):
    model, seen, given = CallCounting(), [], []
    run = runner(monkeypatch, 1, seen, model, EncoderCache(budget_bytes=0, keep_last=0))
    run.context = dataclasses.replace(run.context, encoder_batch=3)
    real_decode = engine.decoding.decode

    def keep_encoder_rows(*args, **kw):
        given.append(kw["encoder_out"][:, 0, 0].tolist())
        return real_decode(*args, **kw)

    monkeypatch.setattr(engine.decoding, "decode", keep_encoder_rows)
    list(run.run([LookingAhead(1, 5)]))
    assert model.calls == [3, 2] and model.rows == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert given == [[0.0], [1.0], [2.0], [3.0], [4.0]]  # each call gets its own window's output
    assert run.encoder_cache.hits == 3 and not run.encoder_cache._ahead  # handed out, nothing left over


def test_outputs_encoded_ahead_and_never_asked_for_are_bounded():
    from engine.passes import AHEAD_LIMIT

    model, cache = CountingEncoder(), EncoderCache(budget_bytes=0, keep_last=0)
    n = AHEAD_LIMIT + 10
    frames = torch.arange(float(n + 1))[:, None].expand(n + 1, 4).contiguous()
    cache.encode(model, frames, {}, [("a", i) for i in range(n + 1)], ahead=n)
    assert len(cache._ahead) == AHEAD_LIMIT and cache.has(("a", n)) and not cache.has(("a", 1))
