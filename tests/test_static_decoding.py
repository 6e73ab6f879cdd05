"""The static decoder step (fixed shapes, position on the device: what a CUDA graph replays) gives the logits of
the ordinary cached step, for every backbone (v29 Whisper, v30 RoPE-Whisper, v32 VarWhisper with local
attention) and for left-padded rows; and decode() run through it gives the same tokens.

The CUDA graph itself needs a GPU (bench/device_check.py); here the static step runs eagerly, as
:class:`engine.cuda_graph.GraphedStep` runs it wherever capture is not possible.
"""
from __future__ import annotations

import threading

import pytest
import torch

import engine.cuda_graph
import engine.decoding
import engine.token_graph
from engine.checkpoint import load_checkpoint
from engine.cuda_graph import GraphedStep
from engine.decoding import DecodingOptions, decode

from .conftest import UPSTREAM, need

TRAINED = UPSTREAM / "trained"
V29 = __import__("pathlib").Path(__file__).parent / "fixtures" / "upstream_v29"


def checkpoints():
    return {"v30": TRAINED / "v30" / "checkpoint", "v32": TRAINED / "v32" / "checkpoint"}


def load(version: str):
    return load_checkpoint(str(need(checkpoints()[version])), device="cpu")


def frames_for(model, rows: int) -> torch.Tensor:
    samples = (model.config.backbone.max_source_positions * 2 - 1) * model.config.spectrogram.hop_length
    return torch.randn(rows, samples, generator=torch.Generator().manual_seed(5))


def cached_and_static_logits(model, prompt: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of tokens ``prompt``..``length`` fed one at a time after a prompt, by the cached step and by
    the static step (one row of random ids)."""
    ids = torch.randint(3, model.config.vocab_size_out, (1, length), generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        encoder_out = model.encode(frames_for(model, 1))
        outs = []
        for static in (False, True):
            state = model.start_decoding(encoder_out, torch.ones(1, prompt, dtype=torch.bool), length)
            model.decode_step(ids[:, :prompt], state)
            if static:
                state = model.static_decoding(state, length)
            step = model.decode_step_static if static else model.decode_step
            outs.append(torch.stack([step(ids[:, i: i + 1], state) for i in range(prompt, length)], 1))
    return outs[0], outs[1]


@pytest.mark.parametrize("version", ["v30", "v32"])
def test_the_static_step_gives_the_cached_steps_logits(version):
    ck = load(version)
    model = ck.model
    gen = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size_out
    prompts = torch.randint(3, vocab, (2, 40), generator=gen)
    prompts[1, :7] = 0  # a left-padded row
    padding = prompts != 0
    cond = {k: v.expand(2, *v.shape[1:]) for k, v in _conditioning(model).items()}
    steps = torch.randint(3, vocab, (2, 60), generator=gen)
    with torch.inference_mode():
        encoder_out = model.encode(frames_for(model, 2), **cond)
        logits = []
        for static in (False, True):
            state = model.start_decoding(encoder_out, padding, 40 + 60)
            model.decode_step(prompts, state)
            if static:
                state = model.static_decoding(state, 40 + 60)
            rows = [model.decode_step_static(steps[:, i: i + 1], state) if static else
                    model.decode_step(steps[:, i: i + 1], state) for i in range(60)]
            logits.append(torch.stack(rows, 1))
    assert torch.allclose(logits[0], logits[1], atol=1e-4), float((logits[0] - logits[1]).abs().max())
    assert torch.equal(logits[0].argmax(-1), logits[1].argmax(-1))


def test_the_static_step_keeps_local_attention_windows():
    """VarWhisper layers that attend only to nearby positions (half window 8 here): the static step's masks
    must cut the same keys the cached step never looks at."""
    import dataclasses

    from bench.forward import real_size
    from engine.checkpoint import new_model

    config = real_size("v32-mini")
    backbone = dataclasses.replace(config.backbone, d_model=64, encoder_layers=1, decoder_layers=3, encoder_heads=4,
                                   decoder_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, global_attn_every_n_layers=2,
                                   local_attention=16)
    model = new_model(dataclasses.replace(config, backbone=backbone), seed=3).eval()
    assert model.transformer.model.decoder.positions.windows == [None, 8, None]
    cached, static = cached_and_static_logits(model, prompt=20, length=80, seed=4)
    assert torch.allclose(cached, static, atol=1e-4), float((cached - static).abs().max())


def test_the_static_step_covers_whispers_learned_positions():
    model = load_checkpoint(str(need(V29 / "checkpoint")), device="cpu").model
    cached, static = cached_and_static_logits(model, prompt=10, length=30, seed=2)
    assert torch.allclose(cached, static, atol=1e-4)


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_decoding_through_the_static_step_gives_the_same_tokens(monkeypatch, cfg_scale):
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    opts = DecodingOptions(do_sample=False, max_length=160, cfg_scale=cfg_scale)
    prompt = torch.randint(3, 600, (40,), generator=torch.Generator().manual_seed(3)).tolist()
    negative = prompt[:-5] if cfg_scale > 1 else None

    def run() -> list[list[int]]:
        return decode(model, tokenizer, frames_for(model, 1), [prompt], opts, stop=[tokenizer.eos_id],
                      negative_prompts=[negative] if negative else None)

    eager = run()
    made = _static_everywhere(monkeypatch)
    assert run() == eager and len(eager[0]) > 20
    assert len(made) == 1 and made[0].graph is None  # on a CPU the static step runs eagerly


def _cached_and_static_after_prompt(model, ids: torch.Tensor, length: int, prompt: int = 20):
    """The ordinary cached state and a static state (``length`` positions), each after the same ``prompt``
    tokens of ``ids`` over one window of noise."""
    encoder_out = model.encode(frames_for(model, 1))
    states = []
    for _ in range(2):
        states.append(model.start_decoding(encoder_out, torch.ones(1, prompt, dtype=torch.bool), length))
        model.decode_step(ids[:, :prompt], states[-1])
    return states[0], model.static_decoding(states[1], length)


def _stand_in_cuda(monkeypatch, replay) -> type:
    """CUDA's streams and graph capture stood in for on the CPU: a capture records nothing and the graph's
    replay calls ``replay()`` (for steps whose kernels the emulator in graph_emulator.py cannot see: a compiled
    step's). Returns the stand-in graph class."""
    import contextlib

    from .graph_emulator import stand_in_streams

    class StandInGraph:
        def replay(self):
            replay()

    stand_in_streams(monkeypatch)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", StandInGraph)
    monkeypatch.setattr(torch.cuda, "graph", lambda g: contextlib.nullcontext())
    return StandInGraph


@pytest.mark.slow
def test_a_compiled_step_gives_the_plain_steps_tokens(monkeypatch):
    """compiled_step: the static step compiled by torch.compile (Inductor's CPU code here, Triton's on a GPU)
    decodes the same greedy tokens, in one graph, compiled once for windows of one shape; so does the rest of
    the token step (engine.token_graph), the rules' CPU shortcuts (host reads) left out of its graph."""
    import torch._dynamo

    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    prompt = torch.randint(3, 600, (40,), generator=torch.Generator().manual_seed(3)).tolist()

    def run(compiled: bool) -> list[list[int]]:
        opts = DecodingOptions(do_sample=False, max_length=120, compiled_step=compiled)
        return decode(model, tokenizer, frames_for(model, 1), [prompt], opts, stop=[tokenizer.eos_id])

    plain = run(False)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    made = _static_everywhere(monkeypatch)
    assert run(True) == plain and len(plain[0]) > 20
    assert run(True) == plain  # the next window: the kept step, compiled already
    assert len(made) == 1 and made[0].on_device is not None
    # one graph for the decoder step and one for the rest of the token step: no breaks, no compiling again
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2
    assert not torch._dynamo.utils.counters["graph_break"]
    # room for every model and batch shape of a long session (torch's default keeps 8 for the whole process)
    assert torch._dynamo.config.recompile_limit >= 64
    assert run(False) == plain and len(made) == 2 and made[1].on_device is None


@pytest.mark.slow
def test_a_compiled_step_is_captured_as_compiled_without_compiling_again(monkeypatch):
    """torch.compile guards on the autocast state, and a capture runs under its own (autocast's weight cache
    off): the compiled step must see that state from its first call, or it compiles again inside the capture
    (on a GPU that broke the capture). Here the capture is a stand-in, on the CPU."""
    import torch._dynamo

    import engine.cuda_graph as cuda_graph

    ck = load("v32")
    model = ck.model
    ids = torch.randint(3, model.config.vocab_size_out, (1, 50), generator=torch.Generator().manual_seed(8))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with torch.inference_mode():
        cached, static = _cached_and_static_after_prompt(model, ids, 50)
        step = cuda_graph.GraphedStep(model, static, 1, compiled=True)  # on a CPU: no graph, compiled here

        def replay():  # the captured (compiled) step run again
            with step._casting():
                step.logits.copy_(step._step().float())
            static.length -= 1

        StandInGraph = _stand_in_cuda(monkeypatch, replay)
        assert torch.is_autocast_cache_enabled()  # the state outside: the cache on
        step.graph = step._capture()
        assert isinstance(step.graph, StandInGraph) and step.on_device is not None
        for i in range(20, 50):
            assert torch.allclose(step(ids[:, i]), model.decode_step(ids[:, i: i + 1], cached), atol=1e-4), i
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def failing_compile(tried: list):
    """A stand-in for torch.compile on a machine without a C compiler: what it compiles fails at its first call
    (as torch.compile's do), each call's compile options noted in ``tried``."""
    def compile(fn, **kwargs):
        def compiled(*args):
            tried.append(kwargs)
            raise RuntimeError("Compiler: cc is not found")
        return compiled

    return compile


def test_a_step_that_fails_to_compile_decodes_with_the_plain_step(monkeypatch, caplog):
    """No C compiler, no Triton (Windows), an op Inductor cannot take: one warning, then the plain step for
    this model (compiling is not tried again for the next batch shape), same tokens."""
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    gen = torch.Generator().manual_seed(4)
    prompts = [torch.randint(3, 600, (30,), generator=gen).tolist() for _ in range(2)]
    opts = DecodingOptions(do_sample=False, max_length=90, compiled_step=True)

    def run(rows: int) -> list[list[int]]:
        return decode(model, tokenizer, frames_for(model, rows), prompts[:rows], opts, stop=[tokenizer.eos_id])

    plain = [run(1), run(2)]  # on a CPU without the graph path: compiled_step has nothing to compile
    tried = []
    monkeypatch.setattr(torch, "compile", failing_compile(tried))
    made = _static_everywhere(monkeypatch)
    with caplog.at_level("WARNING", logger="engine.cuda_graph"):
        assert [run(1), run(2)] == plain
    assert len(tried) == 1 and [len(step.ids) for step in made] == [1, 2]
    assert [step.on_device for step in made] == [None, None]
    assert caplog.text.count("compiling the decoder step failed (Compiler: cc is not found)") == 1
    assert engine.cuda_graph.compile_failure(model) == "Compiler: cc is not found"


def test_which_batches_go_through_a_graph():
    rows = engine.decoding.GRAPH_ROWS
    assert engine.decoding.uses_cuda_graph(torch.device("cuda"), 1, DecodingOptions())
    assert engine.decoding.uses_cuda_graph(torch.device("cuda"), rows, DecodingOptions())
    assert not engine.decoding.uses_cuda_graph(torch.device("cuda"), rows + 1, DecodingOptions())
    assert not engine.decoding.uses_cuda_graph(torch.device("cpu"), 1, DecodingOptions())
    assert not engine.decoding.uses_cuda_graph(torch.device("cuda"), 1, DecodingOptions(cuda_graph=False))


def _static_everywhere(monkeypatch) -> list:
    """decode() takes the CUDA-graph path for any batch (on a CPU: the static step, eagerly); the steps made."""
    made = []
    real = GraphedStep.__init__

    def spy(self, *args):
        real(self, *args)
        made.append(self)

    monkeypatch.setattr(GraphedStep, "__init__", spy)
    monkeypatch.setattr(engine.decoding, "uses_cuda_graph", lambda device, batch, o: True)
    return made


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "sampled"])
def test_a_batch_whose_rows_stop_at_different_steps_gives_the_ordinary_tokens(monkeypatch, cfg_scale, sampled):
    """Through a graph stopped rows stay in the batch (the ordinary step drops greedy ones): the rows still
    left must decode as before, and the stopped ones end where they stopped. Sampled rows on one random stream
    draw as they do without the graph (the step the loop queues after the last row stopped draws nothing)."""
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    opts = DecodingOptions(do_sample=sampled, temperature=0.9, top_p=0.9, max_length=150, cfg_scale=cfg_scale)
    gen = torch.Generator().manual_seed(11)
    prompts = [torch.randint(3, 600, (n,), generator=gen).tolist() for n in (40, 33, 27)]
    negatives = [p[:-4] for p in prompts] if cfg_scale > 1 else None

    def run(stop) -> list[list[int]]:
        return decode(model, tokenizer, frames_for(model, 3), prompts, opts, stop=stop, negative_prompts=negatives,
                      generator=torch.Generator().manual_seed(5))

    # a stop id row 0 meets early: the rows then end at different steps
    stop = [tokenizer.eos_id, run([tokenizer.eos_id])[0][8]]
    ordinary = run(stop)
    assert len({len(r) for r in ordinary}) > 1, [len(r) for r in ordinary]
    made = _static_everywhere(monkeypatch)
    assert run(stop) == ordinary and len(made) == 1


def test_sampled_rows_with_their_own_streams_draw_as_alone_through_a_graph(monkeypatch):
    """Rows of independent jobs (mapset difficulties, variants) each sample from their own stream; a row that
    has stopped but stays in the graph's batch must not draw from it any more. Which rows are done is read a
    step late (after the next step is queued, so the GPU does not idle), and the draw a row made for the step
    queued after it stopped is taken back."""
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    opts = DecodingOptions(do_sample=True, temperature=0.9, top_p=0.9, top_k=50, timeshift_bias=0.5,
                           max_length=110, types_first=True)  # every logit rule, with its per-row state
    gen = torch.Generator().manual_seed(12)
    prompts = [torch.randint(3, 600, (n,), generator=gen).tolist() for n in (50, 35, 20)]  # budgets 60, 75, 90

    def run() -> tuple[list[list[int]], list[float]]:
        streams = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
        rows = decode(model, tokenizer, frames_for(model, 3), prompts, opts, stop=[tokenizer.eos_id],
                      generator=streams, lookback_ms=2000.0)
        return rows, [torch.rand(1, generator=g).item() for g in streams]  # where each stream stands after

    ordinary = run()
    assert len({len(r) for r in ordinary[0]}) > 1
    _static_everywhere(monkeypatch)
    monkeypatch.setattr(engine.decoding, "cheap_host_reads", lambda t: False)  # as the rules run on a GPU
    events = []
    real_call, real_read = GraphedStep.__call__, engine.token_graph.LaggedRead.read
    monkeypatch.setattr(GraphedStep, "__call__", lambda self, t: (events.append("step"), real_call(self, t))[1])
    monkeypatch.setattr(engine.token_graph.LaggedRead, "read", lambda self: (events.append("read"), real_read(self))[1])
    assert run() == ordinary
    # decode's first token and its step, the loop's first step, then each read after the next step is queued,
    # to the longest row's budget (90 tokens)
    assert [len(r) for r in ordinary[0]] == [60, 75, 90]
    assert events == ["step", "step"] + ["step", "read"] * 88


def _conditioning(model) -> dict[str, torch.Tensor]:
    from bench.forward import conditioning

    return conditioning(model.config, "cpu")


def test_the_logit_rules_without_their_host_read_shortcuts_give_the_same_tokens(monkeypatch):
    """On a GPU the rules compute for every row instead of first asking (a host read) whether any row needs
    it; forced here on the CPU, a sampled window must come out the same (types first, as v30/v31 decode, so the
    lookback rule renormalises after timed events)."""
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    opts = DecodingOptions(do_sample=True, temperature=0.9, top_p=0.9, max_length=200, types_first=True)
    prompt = torch.randint(3, 600, (40,), generator=torch.Generator().manual_seed(6)).tolist()

    def run() -> list[list[int]]:
        return decode(model, tokenizer, frames_for(model, 2), [prompt, prompt[5:]], opts, stop=[tokenizer.eos_id],
                      lookback_ms=2000.0, generator=torch.Generator().manual_seed(7))

    shortcut = run()
    monkeypatch.setattr(engine.decoding, "cheap_host_reads", lambda t: False)
    assert run() == shortcut and sum(map(len, shortcut)) > 40


def test_graph_capture_and_replay_bookkeeping_with_a_stand_in_for_cuda(monkeypatch):
    """GraphedStep's own logic (warm-up, capture, replay, the host copy of the position) run with a stand-in
    for CUDA's graph API whose replay runs the captured step: the logits of every replayed token equal the
    ordinary step's. A real CUDA run (bench/device_check.py) checks the graph itself."""
    import engine.cuda_graph as cuda_graph

    ck = load("v32")
    model = ck.model
    ids = torch.randint(3, model.config.vocab_size_out, (1, 60), generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        cached, static = _cached_and_static_after_prompt(model, ids, 60)
        step = cuda_graph.GraphedStep(model, static, 1)  # on a CPU: no graph

        def replay():  # the captured step run again, advancing only the device position
            step.logits.copy_(model.decode_step_static(step.ids, static).float())
            static.length -= 1

        StandInGraph = _stand_in_cuda(monkeypatch, replay)
        step.graph = step._capture()
        assert isinstance(step.graph, StandInGraph)
        assert static.length == 20 and int(static.position) == 20  # warm-up and capture left no trace
        for i in range(20, 60):
            expected = model.decode_step(ids[:, i: i + 1], cached)
            got = step(ids[:, i])
            assert torch.allclose(got, expected, atol=1e-4), i
            assert static.length == int(static.position) == i + 1
        # the next window of the same shape: its prompt loaded into the same buffers, the graph replayed as captured
        other = torch.randint(3, model.config.vocab_size_out, (1, 60), generator=torch.Generator().manual_seed(9))
        encoder_out = model.encode(torch.zeros(frames_for(model, 1).shape))  # silence after noise: other keys
        cached = model.start_decoding(encoder_out, torch.ones(1, 25, dtype=torch.bool), 60)
        model.decode_step(other[:, :25], cached)
        prompted = model.start_decoding(encoder_out, torch.ones(1, 25, dtype=torch.bool), 60)
        model.decode_step(other[:, :25], prompted)
        model._graphed_steps = {(threading.get_ident(), 1, 60, model.dtype, False, False): step}
        assert cuda_graph.graphed_step(model, prompted, 60, 1) is step and step.graph is not None
        assert static.length == int(static.position) == 25
        for i in range(25, 60):
            expected = model.decode_step(other[:, i: i + 1], cached)
            assert torch.allclose(step(other[:, i]), expected, atol=1e-4), i


def test_the_next_window_of_the_same_shape_replays_the_kept_graph(monkeypatch):
    """decode() keeps a window's graph for the next window of the same shape: one capture for a pass, and each
    window still gets the ordinary step's tokens (other prompt, other audio, a guided pair)."""
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    opts = DecodingOptions(do_sample=False, max_length=150, cfg_scale=2.0)
    gen = torch.Generator().manual_seed(13)
    samples = frames_for(model, 1).shape[1]
    audio = [torch.randn(1, samples, generator=gen), torch.zeros(1, samples),  # noise, silence, a tone
             0.5 * torch.sin(0.05 * torch.arange(samples, dtype=torch.float32))[None]]
    # the negative prompt shorter by another count each window: its left padding moves
    windows = [(torch.randint(3, 600, (n,), generator=gen).tolist(), frames, cut)
               for n, frames, cut in zip((40, 31, 45), audio, (3, 9, 1))]

    def run() -> list[list[list[int]]]:
        return [decode(model, tokenizer, frames, [prompt], opts, stop=[tokenizer.eos_id],
                       negative_prompts=[prompt[:-cut]]) for prompt, frames, cut in windows]

    ordinary = run()
    made = _static_everywhere(monkeypatch)
    assert run() == ordinary and len({len(w[0]) for w in ordinary}) > 1
    assert len(made) == 1 and len(model._graphed_steps) == 1


class _HostReads:
    """Counts, per kind, the operations that wait for a GPU or copy to it when run there: reading a value on the
    host (``item``, ``bool(t)``), picking rows or columns by a boolean mask or ``nonzero`` (the device must say
    how many), and making a tensor from host values (``torch.tensor(...)``: a host-to-device copy)."""

    KINDS = ("item", "is_nonzero", "nonzero", "mask index", "new host tensor")

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counts = dict.fromkeys(self.KINDS, 0)

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func.overloadpacket.__name__
                indices = [i for a in args if isinstance(a, (list, tuple)) for i in a]
                if name in ("_local_scalar_dense", "item"):
                    counts["item"] += 1
                elif name in ("is_nonzero", "nonzero"):
                    counts[name] += 1
                elif name.startswith("index") and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                                                      for i in indices):
                    counts["mask index"] += 1
                elif name == "lift_fresh":
                    counts["new host tensor"] += 1
                return func(*args, **(kwargs or {}))

        self.mode, self.counts = Mode(), counts


@pytest.mark.parametrize("streams", [False, True], ids=["one stream", "a stream per row"])
def test_the_gpu_token_loop_reads_the_host_once_a_step(monkeypatch, streams):
    """On the GPU path (graph step, rules without their host-read shortcuts) each step may wait for the device
    once (how many rows are done) and nothing else: no constant uploaded, no mask index. Counted here on the
    CPU as operations per step, the difference between a short and a longer window; every logit rule on."""
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    _static_everywhere(monkeypatch)
    monkeypatch.setattr(engine.decoding, "cheap_host_reads", lambda t: False)
    prompts = [torch.randint(3, 600, (40,), generator=torch.Generator().manual_seed(s)).tolist() for s in (6, 7)]

    def per_window(generate: int) -> dict[str, int]:
        opts = DecodingOptions(do_sample=True, temperature=0.9, top_p=0.9, top_k=50, timeshift_bias=0.5,
                               max_length=40 + generate, types_first=True, cfg_scale=2.0)
        generator = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)] if streams else \
            torch.Generator().manual_seed(1)
        reads = _HostReads()
        with reads.mode:
            rows = decode(model, tokenizer, frames_for(model, 2), prompts, opts, stop=[], lookback_ms=2000.0,
                          generator=generator, negative_prompts=[p[:-4] for p in prompts])
        assert [len(r) for r in rows] == [generate, generate]
        return reads.counts

    per_window(10)  # the graph captured and kept: both windows measured below replay it
    short, long = per_window(10), per_window(40)
    per_step = {k: (long[k] - short[k]) / 30 for k in _HostReads.KINDS}
    # the one read is of a host copy (engine.token_graph.LaggedRead): with a stream per row which rows are done
    # (.tolist(), which a CPU tensor answers without an operation), with one stream whether all are
    assert per_step == {**dict.fromkeys(_HostReads.KINDS, 0), "is_nonzero": 0 if streams else 1}, (short, long)


def test_the_gpu_token_loop_queues_the_next_step_before_it_waits(monkeypatch):
    """On one random stream, whether every row is done is read after the next step is queued (the GPU then
    never idles while the host prepares a step); when all are done that queued step is dropped, so the tokens
    are the ordinary step's, whether the rows stop early or at the budget."""
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    gen = torch.Generator().manual_seed(12)
    prompts = [torch.randint(3, 600, (n,), generator=gen).tolist() for n in (30, 26)]
    opts = DecodingOptions(do_sample=False, max_length=120)  # a budget of 90 tokens after the padded prompts

    def run(stop) -> list[list[int]]:
        return decode(model, tokenizer, frames_for(model, 2), prompts, opts, stop=stop)

    unstopped = run([tokenizer.eos_id])
    assert [len(r) for r in unstopped] == [90, 90]
    # a stop id row 1 meets at least 10 tokens before row 0 does: both stop early, at different steps
    early = next(t for i, t in enumerate(unstopped[1]) if unstopped[1].index(t) == i and i >= 5
                 and (t not in unstopped[0][:i + 10]))
    ordinary = {"budget": unstopped, "stop ids": run([tokenizer.eos_id, early])}
    assert 0 < len(ordinary["stop ids"][1]) + 10 <= len(ordinary["stop ids"][0]) < 90
    _static_everywhere(monkeypatch)
    events = []
    real_call, real_read = GraphedStep.__call__, engine.token_graph.LaggedRead.read
    monkeypatch.setattr(GraphedStep, "__call__", lambda self, t: (events.append("step"), real_call(self, t))[1])
    monkeypatch.setattr(engine.token_graph.LaggedRead, "read", lambda self: (events.append("read"), real_read(self))[1])
    # decode's first token and its step (read at once), the loop's first step (nothing to read yet), then a
    # step queued before each read of the step before it
    assert run([tokenizer.eos_id]) == ordinary["budget"]
    assert events == ["step", "step"] + ["step", "read"] * 88  # 90 tokens: no step queued after the budget's last
    events.clear()
    assert run([tokenizer.eos_id, early]) == ordinary["stop ids"]
    # the step queued after the last row stopped ran for nothing
    assert events == ["step", "step"] + ["step", "read"] * (len(ordinary["stop ids"][0]) - 1)


def test_windows_of_rows_with_their_own_budgets_share_one_kept_graph(monkeypatch):
    """A mapset's rows (own random streams) each count their own prompt, so every window has another length
    limit; rounded up, the windows still share one captured graph and give the ordinary tokens."""
    ck = load("v32")
    model, tokenizer = ck.model, ck.tokenizer
    opts = DecodingOptions(do_sample=True, temperature=0.9, top_p=0.9, max_length=120)
    gen = torch.Generator().manual_seed(14)
    windows = [[torch.randint(3, 600, (n,), generator=gen).tolist() for n in lengths]
               for lengths in ((40, 22), (35, 30), (48, 20))]

    def run():
        rows = []
        for prompts in windows:
            streams = [torch.Generator().manual_seed(s) for s in (1, 2)]
            rows.append(decode(model, tokenizer, frames_for(model, 2), prompts, opts, stop=[tokenizer.eos_id],
                               generator=streams))
        return rows

    ordinary = run()
    made = _static_everywhere(monkeypatch)
    assert run() == ordinary and len(made) == 1


def test_v30s_dynamic_rotary_step_reads_nothing_on_the_host_within_its_trained_length(monkeypatch):
    """v30/v31's dynamic rotary rescales only past the decoder's trained length, which it learns by reading the
    positions on the host: inside a CUDA graph's capture that read fails the capture (seen on an H200: every v30
    window then decoded eagerly). A static state within that length skips the read; past it decode() does not
    take the graph path at all, and the tokens are the ordinary ones either way."""
    ck = load("v30")
    model, tokenizer = ck.model, ck.tokenizer
    cond = _conditioning(model)
    trained = model.config.backbone.max_target_positions
    assert any(r.dynamic for r in model.transformer.model.decoder.positions.rotary.values())
    assert not model.static_step_reads_host(trained) and model.static_step_reads_host(trained + 1)

    prompt = torch.randint(3, 600, (1, 30), generator=torch.Generator().manual_seed(15))
    with torch.inference_mode():
        state = model.start_decoding(model.encode(frames_for(model, 1), **cond), torch.ones(1, 30, dtype=torch.bool), 60)
        model.decode_step(prompt, state)
        static = model.static_decoding(state, 60)
        reads = _HostReads()
        with reads.mode:
            for token in range(3, 13):
                model.decode_step_static(torch.tensor([[token]]), static)
    assert reads.counts["item"] == 0, reads.counts

    opts = DecodingOptions(do_sample=False, max_length=70)
    prompts = [prompt[0].tolist()]
    ordinary = decode(model, tokenizer, frames_for(model, 1), prompts, opts, stop=[tokenizer.eos_id], cond=cond)
    made = _static_everywhere(monkeypatch)
    assert decode(model, tokenizer, frames_for(model, 1), prompts, opts, stop=[tokenizer.eos_id], cond=cond) == ordinary
    assert len(made) == 1
    monkeypatch.setattr(model, "static_step_reads_host", lambda max_len: True)
    assert decode(model, tokenizer, frames_for(model, 1), prompts, opts, stop=[tokenizer.eos_id], cond=cond) == ordinary
    assert len(made) == 1, "a step that must read the host is not captured"


def test_only_the_static_step_asks_attention_for_keys_of_a_fixed_length(monkeypatch):
    """On a GPU, attention over keys of a fixed length (the static step's max_len positions) goes to cuDNN's
    kernel, whose plan is built once per length (8x faster than the memory-efficient kernel on an H200); the
    growing cache changes length every step, where a plan a call would cost milliseconds, so it must not."""
    import engine.model

    ck = load("v32")
    model = ck.model
    asked = []
    real = engine.model.attend

    def spy(*args, **kwargs):
        asked.append(kwargs.get("fixed_length", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.model, "attend", spy)
    cached, static = cached_and_static_logits(model, prompt=12, length=16, seed=16)
    torch.testing.assert_close(static, cached)
    layers = model.config.backbone.decoder_layers
    encoder = model.config.backbone.encoder_layers
    # the encoder once; the prompt and 4 cached steps; the prompt again and 4 static steps (2 attentions a layer)
    assert asked == [False] * (encoder + 2 * layers * (1 + 4 + 1)) + [True] * (2 * layers * 4), asked
