"""The whole token step captured as one graph (engine.token_graph): replayed, it gives decode()'s ordinary
tokens. Capture and replay run here in a CPU emulation of CUDA graph semantics (tests/graph_emulator.py: Python
runs once at capture, state a step rebinds instead of updating in place is lost, a host read fails the
capture); a real GPU run is bench/device_check.py's."""
from __future__ import annotations

import pytest
import torch

import engine.decoding
import engine.token_graph
from engine.cuda_graph import GraphedStep
from engine.decoding import DecodingOptions, decode
from engine.sampling import choose, draw_noise

from .graph_emulator import CaptureError, EmulatedGraph, emulate_cuda_graphs
from .test_static_decoding import _static_everywhere, failing_compile, frames_for, load


def test_the_emulator_loses_what_a_real_graph_loses():
    """The emulator itself: an in-place update replays, a rebinding does not, a host read fails the capture."""
    kept, rebound = torch.zeros(2), torch.zeros(2)
    holder = {"rebound": rebound}
    graph = EmulatedGraph()
    with graph.capturing():
        kept.add_(1)
        holder["rebound"] = holder["rebound"] + 1
        out = kept * 2
    assert kept.tolist() == [0, 0]  # a capture changes nothing
    graph.replay()
    graph.replay()
    assert kept.tolist() == [2, 2] and out.tolist() == [4, 4]
    assert rebound.tolist() == [0, 0] and holder["rebound"].tolist() == [1, 1]  # rebinding: frozen at capture's value
    with pytest.raises(CaptureError), EmulatedGraph().capturing():
        bool(kept.sum() > 0)


@pytest.mark.parametrize("host", [False, True], ids=["device checks", "host checks"])
def test_the_draw_is_torch_multinomials_draw(host):
    """choose() with draw_noise() picks what torch.multinomial picks from the same stream, one stream for a batch
    or one per row; a row of NaN scores is flagged, not drawn from silently; stopped rows get PAD. Both ways of
    checking: by operations (as on a GPU) and by reading the numbers (``host``, on a CPU)."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 900, generator=gen) * 4
    scores[1, 100:] = -torch.inf
    done = torch.zeros(3, dtype=torch.bool)
    invalid = torch.zeros((), dtype=torch.bool)
    for seed in range(20):
        one, ours = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        expected = torch.multinomial(scores.softmax(-1), 1, generator=one).squeeze(1)
        assert torch.equal(choose(scores, draw_noise(torch.empty(3, 900), ours), done, invalid, host), expected)
        rows = [torch.Generator().manual_seed(seed * 3 + r) for r in range(3)]
        ours_rows = [torch.Generator().manual_seed(seed * 3 + r) for r in range(3)]
        expected = torch.cat([torch.multinomial(scores[r: r + 1].softmax(-1), 1, generator=rows[r])[0]
                              for r in range(3)])
        assert torch.equal(choose(scores, draw_noise(torch.empty(3, 900), ours_rows), done, invalid, host),
                           expected)
    assert not invalid
    for bad in (torch.nan, torch.inf, -torch.inf):  # a NaN or inf among the scores, or no token allowed at all
        broken = scores.clone()
        broken[2, 5 if bad != -torch.inf else slice(None)] = bad
        for noise in (None, draw_noise(torch.empty(3, 900), gen)):  # greedy and sampled
            invalid = torch.zeros((), dtype=torch.bool)
            choose(broken, noise, done, invalid, host)
            assert invalid, (bad, noise is None)
            stopped = torch.tensor([False, False, True])  # a stopped row's scores do not count
            invalid = torch.zeros((), dtype=torch.bool)
            assert choose(broken, noise, stopped, invalid, host)[2] == 0 and not invalid


def _captured_everywhere(monkeypatch) -> list[EmulatedGraph]:
    """decode() on the graph path with the decoder step and the token step captured (emulated), the token step
    from a window's third step; the logit rules without their CPU shortcuts, as on a GPU."""
    graphs = emulate_cuda_graphs(monkeypatch)
    _static_everywhere(monkeypatch)
    real_init = GraphedStep.__init__

    def captured(self, *args):
        real_init(self, *args)
        self.graph = self._capture()

    monkeypatch.setattr(GraphedStep, "__init__", captured)
    monkeypatch.setattr(engine.token_graph, "CAPTURE_AFTER", 2)
    # no stand-in stream kept after the test
    monkeypatch.setattr(engine.token_graph, "_CAPTURE_STREAMS", __import__("threading").local())
    monkeypatch.setattr(engine.decoding, "cheap_host_reads", lambda t: False)
    return graphs


def _tensors_kept(objects) -> dict:
    return {(i, name): id(value) for i, o in enumerate(objects) for name, value in vars(o).items()
            if isinstance(value, torch.Tensor)}


def _check_state_kept_in_place(monkeypatch) -> list:
    """Every capture of the token step leaves the tensors the loop, the decoder state and the logit rules keep
    the same objects (a replay updates them in place: state rebound at capture would freeze there, whether or
    not a window's tokens happen to show it); returns the captures checked."""
    chains, checked = [], []
    real_rules, real_capture = engine.decoding.logit_rules, engine.token_graph.TokenGraph._capture
    monkeypatch.setattr(engine.decoding, "logit_rules", lambda *a, **k: chains.append(real_rules(*a, **k)) or chains[-1])

    def capture(self):
        kept = [self, self.step.state, *chains[-1]]
        before = _tensors_kept(kept)
        graph = real_capture(self)
        assert _tensors_kept(kept) == before
        checked.append(graph)
        return graph

    monkeypatch.setattr(engine.token_graph.TokenGraph, "_capture", capture)
    return checked


def _token_graphs(graphs: list[EmulatedGraph]) -> list[EmulatedGraph]:
    """The whole-step graphs among those made (their ops include the draw's argmax and the bookkeeping)."""
    return [g for g in graphs if any(op[0].overloadpacket.__name__ == "index_copy_" and op[1][1] == 1
                                     and op[1][0].dtype == torch.long for op in g.ops)]


@pytest.mark.parametrize("case", ["greedy", "sampled, guided, every rule", "a stream per row"])
def test_the_captured_token_step_gives_the_ordinary_tokens(monkeypatch, case):
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    gen = torch.Generator().manual_seed(21)
    prompts = [torch.randint(3, 600, (n,), generator=gen).tolist() for n in (40, 33, 27)]
    if case == "greedy":
        opts, guided, streams = DecodingOptions(do_sample=False, max_length=110), False, "one"
    elif case == "a stream per row":
        opts = DecodingOptions(do_sample=True, temperature=0.9, top_p=0.9, max_length=120)
        guided, streams = False, "rows"
    else:
        opts = DecodingOptions(do_sample=True, temperature=0.9, top_p=0.9, top_k=50, timeshift_bias=0.5,
                               max_length=110, types_first=True, cfg_scale=2.0)
        guided, streams = True, "one"

    def run(stop: list[int]) -> tuple[list[list[list[int]]], list[float]]:
        """The windows' tokens, and where each random stream stood after them (a row's own stream: after its
        window; a stopped row must not have drawn again)."""
        one, after = torch.Generator().manual_seed(4), []
        windows = []
        for window in range(2):  # two windows, other prompts and audio; the second draws where the first left off
            rows = [torch.Generator().manual_seed(window * 3 + r) for r in range(3)] if streams == "rows" else one
            shown = [p[window * 6:] for p in prompts]
            frames = frames_for(model, 3).roll(window * 5000, dims=1)
            windows.append(decode(model, tokenizer, frames, shown, opts, stop=stop, lookback_ms=2000.0,
                                  generator=rows, negative_prompts=[p[:-4] for p in shown] if guided else None))
            after += [torch.rand(1, generator=g).item() for g in rows] if streams == "rows" else []
        return windows, after + [torch.rand(1, generator=one).item()]

    # a stop id row 1 meets at least 10 tokens before row 0 does, so rows stop at different steps
    first = run([tokenizer.eos_id])[0][0]
    early = next(t for i, t in enumerate(first[1]) if first[1].index(t) == i and i >= 5
                 and t not in first[0][:i + 10])
    stop = [tokenizer.eos_id, early]
    ordinary = run(stop)
    lengths = [len(r) for w in ordinary[0] for r in w]
    assert len(set(lengths)) > 1 and max(lengths) > 10  # rows stop at different steps, after the capture
    graphs = _captured_everywhere(monkeypatch)
    checked = _check_state_kept_in_place(monkeypatch)
    assert run(stop) == ordinary
    # one capture in the first window, kept and replayed in the second too (more replays than the first alone had)
    token_graphs = _token_graphs(graphs)
    assert len(token_graphs) == 1 and len(checked) == 1
    assert token_graphs[0].replays > max(len(r) for r in ordinary[0][0]) - 2


def _decide_compiled(monkeypatch, compile=None) -> None:
    """Token graphs compile their choice and bookkeeping (TokenGraph._decide), as they do beside a compiled
    decoder step, while the decoder step here stays plain (compiling it is test_static_decoding's); ``compile``
    stands in for torch.compile."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    monkeypatch.setattr(engine.token_graph, "_compiled_decide", None)
    monkeypatch.setattr(engine.token_graph, "_decide_failure", None)
    if compile is not None:
        monkeypatch.setattr(torch, "compile", compile)
    real_init = engine.token_graph.TokenGraph.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.compiled = engine.token_graph.compiled_decide()
        self._capturable = True  # the decoder step is not captured here (its graph stands in below)

    monkeypatch.setattr(engine.token_graph.TokenGraph, "__init__", init)


def _stand_in_token_graphs(monkeypatch) -> list:
    """Captures of the token step stood in for: a capture runs the step but leaves the values it held (a real
    one runs nothing; keys written past the position are masked until overwritten) and a replay runs the step
    again as the capture ran it, under torch.compile's "fail_on_recompile" (compiled code, as a graph holds its
    kernels, cannot compile again); for compiled steps, whose kernels the emulator cannot see. Returns the
    graphs made."""
    import contextlib

    from .graph_emulator import stand_in_streams

    made = []

    class StandInGraph:
        def capture_begin(self):
            made.append(self)

        def capture_end(self):
            pass

        def replay(self):
            loop = self.loop
            loop._recording = True
            try:
                with torch.compiler.set_stance("fail_on_recompile"):
                    loop._step()
            finally:
                loop._recording = False
            loop.step.state.length -= 1  # the host's copy of the position: the loop adds the replay's step

    real_capture = engine.token_graph.TokenGraph._capture

    def capture(self):
        held = [self, self.choice, *self.choice.rules, self.step.state]
        before = [(t, t.clone()) for o in held for t in vars(o).values() if isinstance(t, torch.Tensor)]
        graph = real_capture(self)
        for tensor, value in before:
            tensor.copy_(value)
        if graph is not None:
            graph.loop = self
        return graph

    stand_in_streams(monkeypatch)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", StandInGraph)
    monkeypatch.setattr(engine.token_graph.TokenGraph, "_capture", capture)
    monkeypatch.setattr(engine.token_graph, "_CAPTURE_STREAMS", __import__("threading").local())
    monkeypatch.setattr(engine.token_graph, "CAPTURE_AFTER", 2)
    return made


def _every_rule_windows(model, tokenizer) -> list[list[list[int]]]:
    """Two sampled, guided windows (every logit rule, types first) of three rows, the second with other prompts
    and audio, drawing where the first left off."""
    gen = torch.Generator().manual_seed(21)
    prompts = [torch.randint(3, 600, (n,), generator=gen).tolist() for n in (40, 33, 27)]
    opts = DecodingOptions(do_sample=True, temperature=0.9, top_p=0.9, top_k=50, timeshift_bias=0.5,
                           max_length=100, types_first=True, cfg_scale=2.0)
    stream, windows = torch.Generator().manual_seed(4), []
    for window in range(2):
        shown = [p[window * 6:] for p in prompts]
        windows.append(decode(model, tokenizer, frames_for(model, 3).roll(window * 5000, dims=1), shown, opts,
                              stop=[tokenizer.eos_id], lookback_ms=2000.0, generator=stream,
                              negative_prompts=[p[:-4] for p in shown]))
    return windows


@pytest.mark.slow
def test_a_compiled_token_step_gives_the_ordinary_tokens_and_is_captured_as_compiled(monkeypatch):
    """Beside a compiled decoder step the token step's choice and bookkeeping are compiled too (Inductor's CPU
    code here, Triton's on a GPU): whole (no graph break: on a GPU each break leaves kernels outside the fused
    ones, and a host read between them), once for the process (a later token graph with the same rules reuses
    the code), before the capture, which then replays it without compiling again; the same tokens."""
    import torch._dynamo

    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    ordinary = _every_rule_windows(model, tokenizer)
    assert sum(len(r) for w in ordinary for r in w) > 100
    _static_everywhere(monkeypatch)
    monkeypatch.setattr(engine.decoding, "cheap_host_reads", lambda t: False)  # as the rules run on a GPU
    _decide_compiled(monkeypatch)
    graphs = _stand_in_token_graphs(monkeypatch)
    assert _every_rule_windows(model, tokenizer) == ordinary
    assert len(graphs) == 1 and all(step.__dict__.pop("_token_graphs") for step in model._graphed_steps.values())
    assert _every_rule_windows(model, tokenizer) == ordinary  # new token graphs: the compiled code reused
    assert len(graphs) == 2
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert not torch._dynamo.utils.counters["graph_break"]


def test_a_token_step_that_fails_to_compile_runs_eagerly(monkeypatch, caplog):
    """No C compiler, no Triton, an operation Inductor cannot take: one warning, then the eager token step for
    the process (compiling is not tried again), the same tokens."""
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    ordinary = _every_rule_windows(model, tokenizer)
    tried = []
    _static_everywhere(monkeypatch)
    _decide_compiled(monkeypatch, failing_compile(tried))
    _stand_in_token_graphs(monkeypatch)
    with caplog.at_level("WARNING", logger="engine.token_graph"):
        assert _every_rule_windows(model, tokenizer) == ordinary
    assert len(tried) == 1 and engine.token_graph.compiled_decide() is None
    assert caplog.text.count("compiling the token step failed (Compiler: cc is not found)") == 1


def test_a_pass_of_short_windows_is_captured_in_its_second_window(monkeypatch):
    """A token graph counts the eager steps of all its windows: a timing pass's windows (~12 tokens each) would
    never reach a capture one by one. Here windows of 6 tokens (5 steps after the first token) and a capture after
    8: the second window captures after 3 eager steps and replays its last 2; the third and fourth replay all 5."""
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    gen = torch.Generator().manual_seed(5)
    prompts = [torch.randint(3, 600, (30,), generator=gen).tolist() for _ in range(4)]
    opts = DecodingOptions(do_sample=True, temperature=0.9, top_p=0.9, max_length=36)

    def run() -> list[list[list[int]]]:
        stream = torch.Generator().manual_seed(6)
        return [decode(model, tokenizer, frames_for(model, 1).roll(i * 3000, dims=1), [p], opts, stop=(),
                       lookback_ms=2000.0, generator=stream) for i, p in enumerate(prompts)]

    ordinary = run()
    assert [len(w[0]) for w in ordinary] == [6] * 4
    graphs = _captured_everywhere(monkeypatch)
    monkeypatch.setattr(engine.token_graph, "CAPTURE_AFTER", 8)
    assert run() == ordinary
    token_graphs = _token_graphs(graphs)
    assert len(token_graphs) == 1 and token_graphs[0].replays == 2 + 5 + 5


def test_a_failed_capture_leaves_the_eager_token_step(monkeypatch):
    """A capture that fails (here: a host read inside the step, as the rules' CPU shortcuts would make) leaves
    the same step running eagerly, with the same tokens."""
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    prompt = torch.randint(3, 600, (30,), generator=torch.Generator().manual_seed(2)).tolist()
    opts = DecodingOptions(do_sample=True, temperature=0.9, top_p=0.9, max_length=90)

    def run() -> list[list[int]]:
        return decode(model, tokenizer, frames_for(model, 1), [prompt], opts, stop=[tokenizer.eos_id],
                      generator=torch.Generator().manual_seed(8))

    ordinary = run()
    graphs = _captured_everywhere(monkeypatch)
    monkeypatch.setattr(engine.decoding, "cheap_host_reads", lambda t: True)
    assert run() == ordinary
    assert not any(g.replays for g in _token_graphs(graphs))


def test_a_row_with_its_own_stream_that_stops_at_its_first_token_draws_nothing_more(monkeypatch):
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    gen = torch.Generator().manual_seed(30)
    prompts = [torch.randint(3, 600, (n,), generator=gen).tolist() for n in (36, 30)]
    opts = DecodingOptions(do_sample=True, temperature=0.9, top_p=0.9, max_length=90)

    def run(stop: list[int]) -> tuple[list[list[int]], list[float]]:
        streams = [torch.Generator().manual_seed(s) for s in (1, 2)]
        rows = decode(model, tokenizer, frames_for(model, 2), prompts, opts, stop=stop, generator=streams)
        return rows, [torch.rand(1, generator=g).item() for g in streams]  # where each stream stands after

    first = run([tokenizer.eos_id])[0]
    stop = [tokenizer.eos_id, first[1][0]]
    ordinary = run(stop)
    assert len(ordinary[0][1]) == 1 and len(ordinary[0][0]) > 1
    _captured_everywhere(monkeypatch)
    assert run(stop) == ordinary


def test_the_token_graphs_kept_with_a_step_are_the_last_few_used():
    from types import SimpleNamespace

    step, made = SimpleNamespace(), []

    def make():
        made.append(object())
        return made[-1]

    first = engine.token_graph.token_graph(step, "timing", make)
    for key in ("map", "a", "b"):
        engine.token_graph.token_graph(step, key, make)
    assert engine.token_graph.token_graph(step, "timing", make) is first  # kept, and now the newest
    engine.token_graph.token_graph(step, "c", make)  # pushes out the oldest: "map"
    assert list(step._token_graphs) == ["a", "b", "timing", "c"] and len(made) == 5


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "sampled"])
@pytest.mark.parametrize("path", ["ordinary", "captured"])
def test_scores_that_are_not_numbers_end_the_window_with_a_clear_error(monkeypatch, sampled, path):
    """A model whose logits overflow (NaN) must not quietly write a map of whatever argmax makes of NaN, nor (on
    a GPU) trip torch.multinomial's device-side assert, which ends the process's CUDA context."""
    from engine.errors import ModelError

    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    if path == "captured":
        _captured_everywhere(monkeypatch)
    real = type(model).decode_step_static

    def overflowing(self, ids, state, on_device=None):
        return real(self, ids, state, on_device) * torch.nan

    monkeypatch.setattr(type(model), "decode_step_static", overflowing)
    monkeypatch.setattr(type(model), "decode_step", lambda self, ids, state: torch.full(
        (len(ids), model.config.vocab_size_out), torch.nan))
    opts = DecodingOptions(do_sample=sampled, max_length=60)
    prompt = torch.randint(3, 600, (30,), generator=torch.Generator().manual_seed(2)).tolist()
    with pytest.raises(ModelError) as raised:
        decode(model, tokenizer, frames_for(model, 1), [prompt], opts, stop=[tokenizer.eos_id],
               generator=torch.Generator().manual_seed(1))
    assert raised.value.message_id == "error.decoding.invalid_scores" and "precision=fp32" in str(raised.value)
