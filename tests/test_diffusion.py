"""Diffusion-refined positions (osu-diffusion-v2) against upstream's sampler, and safe loading of its pickles.

Fixtures: tests/fixtures/diffusion (README.md there says how upstream's code made them)."""
from __future__ import annotations

import io
import json
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.diffusion import (DiffusionConditioning, DiffusionOptions, build_sequence, load_diffusion_model,
                              refine_positions)
from engine.diffusion import checkpoint as checkpoint_module
from engine.errors import Cancelled, ModelError
from engine.events import EventStream
from engine.tokenizer import Event, EventType

FIXTURES = Path(__file__).parent / "fixtures" / "diffusion"
CASES = ["one_window", "windows_cfg"]
T = EventType


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    # One thread: the tiny model's ops are microseconds, and thread hand-offs on a busy machine cost milliseconds.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_diffusion_model(FIXTURES / "checkpoint", cache_dir=tmp_path_factory.mktemp("cache"), heads=2)
    torch.set_num_threads(threads)


def load_case(name: str):
    case = json.loads((FIXTURES / name / "case.json").read_text())
    events = [Event(EventType(t), v) for t, v in case["events"]]
    g = case["generation"]
    conditioning = DiffusionConditioning(
        difficulty=g["difficulty"], descriptors=g["descriptors"] or (), negative_descriptors=g["negative_descriptors"] or (),
        circle_size=g["circle_size"], slider_multiplier=g["slider_multiplier"],
        red_lines=[tuple(r) for r in case["red_lines"]])
    return case, events, conditioning


def case_options(case, model, **extra) -> DiffusionOptions:
    settings = dict(model=model, cfg_scale=case["diff_cfg_scale"], seed=case["seed"],
                    max_seq_len=case["max_seq_len"], overlap_buffer=case["overlap_buffer"])
    return DiffusionOptions(**{**settings, **extra})


# --------------------------------------------------------------------------------------- upstream goldens
@pytest.mark.parametrize("name", CASES)
def test_every_step_matches_upstream(model, name):
    case, events, conditioning = load_case(name)
    steps = np.load(FIXTURES / name / "steps.npz")
    recorded = {}
    options = case_options(case, model, keep_in_playfield=False,
                           step_hook=lambda window, i, pixels: recorded.__setitem__((window, i), pixels))
    out = refine_positions(events, conditioning, options)

    windows = sorted({k.split("_")[0] for k in steps.files if k.startswith("window")})
    assert len(recorded) == 100 * len(windows)
    for w, window in enumerate(windows):
        for golden, number in zip(steps[f"{window}_steps"], steps[f"{window}_step_numbers"]):
            ours = recorded[(w, 99 - int(number))]
            assert ours.shape == golden.shape
            assert (ours - torch.from_numpy(golden)).abs().max().item() <= 1e-4, (window, int(number))
    assert [(e.type.value, e.value) for e in out] == [tuple(e) for e in case["output_events"]]


@pytest.mark.parametrize("name", CASES)
def test_sequence_matches_upstream(name):
    case, events, conditioning = load_case(name)
    seq = build_sequence(events, red_lines=conditioning.red_lines, slider_multiplier=conditioning.slider_multiplier)
    golden = case["sequence"]
    assert len(seq) == golden["length"]
    assert seq.times.tolist() == golden["times"]
    assert seq.context[256:].argmax(0).tolist() == golden["features"]
    assert [seq.entry_of_event.get(i) for i in range(len(events))] == golden["event_to_entry"]
    assert [(s.entries.tolist(), s.end, s.length) for s in seq.sliders] == \
           [(s["entries"], s["end"], s["length"]) for s in golden["sliders"]]
    assert [s.curve for s in seq.sliders] == [{"Bezier": "B", "PerfectCurve": "P", "Catmull": "C"}[s["curve"]]
                                                for s in golden["sliders"]]
    steps = np.load(FIXTURES / name / "steps.npz")
    if "context" in steps.files:
        assert torch.equal(seq.context, torch.from_numpy(steps["context"]))


@pytest.mark.parametrize("name", CASES)
def test_class_vectors_match_upstream(model, name):
    case, _, c = load_case(name)
    y = model.classes.vector(difficulty=c.difficulty, descriptors=c.descriptors, circle_size=c.circle_size)
    y_null = model.classes.vector(difficulty=c.difficulty, descriptors=c.negative_descriptors, circle_size=c.circle_size)
    assert y.nonzero().flatten().tolist() == case["class_vector"]
    assert y_null.nonzero().flatten().tolist() == case["null_class_vector"]


def test_mapper_id_selects_its_class(model):
    # tokenizer stand-in: users 200, 100, 300 -> mapper classes 0, 1, 2; upstream's pipeline looked mapper ids up as beatmap ids
    base = model.classes.num_classes + model.classes.num_diff_classes
    assert model.classes.vector(mapper_id=100)[base + 1] == 1
    assert model.classes.vector(mapper_id=12345)[base + model.classes.num_mapper_classes - 1] == 1


# ----------------------------------------------------------------------------------- precisions
def written_positions(events) -> np.ndarray:
    """(2, N) the POS_X / POS_Y values of (type, value) pairs, in order."""
    pairs = list(events)
    return np.array([[v for t, v in pairs if t == T.POS_X.value], [v for t, v in pairs if t == T.POS_Y.value]], float)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("name", CASES)
def test_faster_precisions_write_upstreams_positions_within_a_pixel(converted, name, precision):
    """bf16 and int8 move the DiT's numbers by their roundings (and at guidance 1 skip the unconditional row):
    every written position stays within one pixel of upstream's fp32 run, most exactly on it."""
    from engine.quantize import int8_supported

    if precision == "int8" and not int8_supported():
        pytest.skip("this PyTorch build has no int8 kernels")
    fast = load_diffusion_model(FIXTURES / "checkpoint", precision=precision, cache_dir=converted, heads=2)
    assert fast.precision == precision
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in fast.dit.modules())
    case, events, conditioning = load_case(name)
    out = refine_positions(events, conditioning, case_options(case, fast, keep_in_playfield=False))
    ours = written_positions((e.type.value, e.value) for e in out)
    upstream = written_positions(case["output_events"])
    assert ours.shape == upstream.shape
    moved = np.hypot(*(ours - upstream))
    assert moved.max() <= 1.0 and (moved == 0).mean() > 0.9, (moved.max(), (moved == 0).mean())


def test_options_load_their_checkpoint_in_their_precision(model):
    """Without a loaded model, refine_positions loads ``checkpoint`` (here the converted folder) in ``precision``."""
    from engine.diffusion import refine as refine_module

    case, events, conditioning = load_case("one_window")
    refine_module.cached_diffusion_model.cache_clear()
    try:
        out = refine_positions(events, conditioning, case_options(case, None, checkpoint=model.folder, precision="bf16",
                                                                  keep_in_playfield=False))
        loaded = refine_module.cached_diffusion_model(str(model.folder), "cpu", "bf16")
        assert refine_module.cached_diffusion_model.cache_info().hits == 1 and loaded.precision == "bf16"
    finally:
        refine_module.cached_diffusion_model.cache_clear()
    ours = written_positions((e.type.value, e.value) for e in out)
    moved = np.hypot(*(ours - written_positions(case["output_events"])))
    assert moved.max() <= 1.0


def test_fp32_keeps_the_published_attention(model):
    assert model.precision == "fp32"
    assert all(isinstance(block.attn, torch.nn.MultiheadAttention) for block in model.dit.blocks)


@pytest.mark.parametrize("n", [5, 128, 300])
def test_fused_attention_is_multihead_attentions_within_roundings(n):
    """The chunked fused attention over a banded mask (and none) against the module it replaces, in fp32."""
    from engine.diffusion.precision import FusedAttention

    torch.manual_seed(n)
    mha = torch.nn.MultiheadAttention(64, 4, batch_first=True).eval()
    x = torch.randn(2, n, 64)
    i = torch.arange(n)
    band = ((i[:, None] - i[None] >= -32) & (i[:, None] - i[None] < 32))
    before = torch.get_rng_state()
    fused = FusedAttention(mha)
    assert torch.equal(torch.get_rng_state(), before)  # preparing a model draws nothing from the global stream
    with torch.no_grad():
        for allowed in (band, None):
            expected = mha(x, x, x, need_weights=False, attn_mask=None if allowed is None else ~allowed)[0]
            assert (fused(x, allowed) - expected).abs().max().item() < 1e-5
        assert len(fused.spans(band)) == -(-n // 128) and fused.spans(band) is fused.spans(band)  # once a mask


def test_skipping_the_unconditional_row_follows_the_precision(model, converted):
    """At guidance 1, bf16 runs one row a step (the unconditional row cancels out); fp32 runs both, as upstream
    does, unless asked; with guidance both always run."""
    fast = load_diffusion_model(FIXTURES / "checkpoint", precision="bf16", cache_dir=converted, heads=2)
    case, events, conditioning = load_case("one_window")
    assert case["diff_cfg_scale"] == 1.0
    runs = []
    for m, extra in ((model, {}), (fast, {}), (model, dict(skip_unconditional=True)), (fast, dict(cfg_scale=2.0))):
        rows: list[int] = []  # the batch of every forward pass
        hook = m.dit.register_forward_pre_hook(lambda _m, args: rows.append(args[0].shape[0]))
        try:
            refine_positions(events, conditioning, case_options(case, m, **extra))
        finally:
            hook.remove()
        runs.append(rows)
    assert [set(r) for r in runs] == [{2}, {1}, {1}, {2}] and all(len(r) == 100 for r in runs)


def test_a_job_runs_the_dit_in_its_precision(monkeypatch):
    from engine.diffusion import precision as P
    from engine.quantize import int8_supported

    cpu = torch.device("cpu")
    assert [P.diffusion_precision(cpu, p) for p in ("fp32", "bf16", "amp")] == ["fp32", "bf16", "bf16"]
    assert P.diffusion_precision(torch.device("cuda"), "bf16") == "bf16"
    assert P.diffusion_precision(torch.device("cuda"), "fp32") == "fp32"
    monkeypatch.setattr("engine.quantize.native_bf16", lambda: True)
    assert P.diffusion_precision(cpu, "int8") == "bf16"
    monkeypatch.setattr("engine.quantize.native_bf16", lambda: False)
    assert P.diffusion_precision(cpu, "int8") == ("int8" if int8_supported() else "fp32")


def test_unknown_precision_and_int8_off_the_cpu_are_refused(model):
    from engine.diffusion.dit import DiT
    from engine.diffusion.precision import prepare_dit
    from engine.errors import OptionError

    with pytest.raises(OptionError, match="is not one of fp32, bf16, int8"):
        prepare_dit(DiT(model.dit.shape), "fp16")
    if torch.backends.mps.is_available() or torch.cuda.is_available():
        with pytest.raises(OptionError, match="CPU only"):
            prepare_dit(DiT(model.dit.shape).to("cuda" if torch.cuda.is_available() else "mps"), "int8")


# ----------------------------------------------------------------------------------- the seam's behaviour
def test_positions_stay_in_playfield_and_structure_is_kept(model):
    case, events, conditioning = load_case("windows_cfg")
    stream = EventStream(events, list(range(len(events))))
    out = refine_positions(stream, conditioning, case_options(case, model, cfg_scale=6.0))
    assert isinstance(out, EventStream) and len(out.events) == len(out.times)
    xs = [e.value for e in out.events if e.type == T.POS_X]
    ys = [e.value for e in out.events if e.type == T.POS_Y]
    assert xs and all(0 <= x <= 512 for x in xs) and all(0 <= y <= 384 for y in ys)
    assert not any(e.type == T.DISTANCE for e in out.events)
    kept = [e for e in out.events if e.type not in (T.POS_X, T.POS_Y)]
    assert kept == [e for e in events if e.type not in (T.POS_X, T.POS_Y, T.DISTANCE)]
    # every event keeps its time; a DISTANCE's two position events take its time
    assert [t for e, t in zip(out.events, out.times) if e.type not in (T.POS_X, T.POS_Y)] == \
           [t for e, t in zip(events, stream.times) if e.type not in (T.POS_X, T.POS_Y, T.DISTANCE)]


def test_short_sequence_is_refined(model):
    """Upstream's window loop runs no window for <= 2 * overlap_buffer objects; we refine them as one."""
    case, events, conditioning = load_case("one_window")
    options = case_options(case, model, overlap_buffer=128, keep_in_playfield=False)
    out = refine_positions(events, conditioning, options)
    before = [e.value for e in events if e.type == T.POS_X]
    after = [e.value for e in out if e.type == T.POS_X][1::2]  # each group: POS_X from its DISTANCE, then its own
    assert len(before) == len(after) and sum(a != b for a, b in zip(before, after)) > len(before) // 2


def test_generation_window_keeps_other_objects(model):
    case, events, conditioning = load_case("one_window")
    seq = build_sequence(events, red_lines=conditioning.red_lines)
    start = float(seq.times[30])
    out = refine_positions(events, conditioning, case_options(case, model, start_time=start, keep_in_playfield=False))
    slider_ends = {s.end for s in seq.sliders}  # put back on their (unchanged) paths, as upstream does
    first = [i for i, e in enumerate(events)
             if e.type == T.POS_X and seq.entry_of_event[i] < 30 and seq.entry_of_event[i] not in slider_ends]
    assert len(first) > 15
    positions_before = {i: events[i].value for i in first}
    # out has one extra event per DISTANCE before each POS_X: map by counting POS_X events
    pos_x_out = [e.value for e in out if e.type == T.POS_X]
    pos_x_in = [(i, e.value) for i, e in enumerate(events) if e.type in (T.POS_X, T.DISTANCE)]
    for (i, value), new in zip(pos_x_in, pos_x_out):
        if i in positions_before:
            assert new == value


def test_progress_and_cancel(model):
    case, events, conditioning = load_case("one_window")
    fractions = []
    refine_positions(events, conditioning, case_options(case, model), progress=lambda text, f: fractions.append(f))
    assert len(fractions) == 100 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    cancel = threading.Event()

    def stop_after_three(text, f):
        if f >= 0.03:
            cancel.set()
    with pytest.raises(Cancelled):
        refine_positions(events, conditioning, case_options(case, model), progress=stop_after_three, cancel=cancel)


def test_skip_unconditional_is_close(model):
    case, events, conditioning = load_case("one_window")
    exact, fast = [], []
    refine_positions(events, conditioning, case_options(case, model, step_hook=lambda w, i, p: exact.append(p)))
    refine_positions(events, conditioning, case_options(case, model, skip_unconditional=True,
                                                         step_hook=lambda w, i, p: fast.append(p)))
    assert (exact[-1] - fast[-1]).abs().max().item() < 0.05


def test_no_objects_returns_events_unchanged(model):
    events = [Event(T.TIME_SHIFT, 100), Event(T.BEAT)]
    assert refine_positions(events, DiffusionConditioning(), DiffusionOptions(model=model)) == events


# ------------------------------------------------------------------------------------------ safe loading
def copy_checkpoint(tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for name in ("model_ema.pkl", "tokenizer.pkl"):
        (folder / name).write_bytes((FIXTURES / "checkpoint" / name).read_bytes())
    return folder


def test_converted_once_then_pickles_never_read(tmp_path, monkeypatch):
    folder, cache = copy_checkpoint(tmp_path), tmp_path / "cache"
    first = load_diffusion_model(folder, cache_dir=cache, heads=2)
    converted = first.folder
    assert sorted(p.name for p in converted.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]

    def refuse(path):
        raise AssertionError(f"pickle read again: {path}")
    monkeypatch.setattr(checkpoint_module, "load_plain_pickle", refuse)
    second = load_diffusion_model(folder, cache_dir=cache, heads=2)
    assert second.folder == converted
    for (k, a), (_, b) in zip(first.dit.state_dict().items(), second.dit.state_dict().items()):
        assert torch.equal(a, b), k
    assert second.classes == first.classes


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    folder, marker = copy_checkpoint(tmp_path), tmp_path / "pwned"
    torch.save({"num_classes": 0, "evil": _RunsCode(marker)}, folder / "tokenizer.pkl")
    with pytest.raises(ModelError, match="tokenizer.pkl: refused to load: it names 'posix.system'|tokenizer.pkl: refused to load: it names 'nt.system'"):
        load_diffusion_model(folder, cache_dir=tmp_path / "cache", heads=2)
    assert not marker.exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_only_the_needed_globals_are_allowed(tmp_path):
    """torch.Size is safe for torch's own weights-only unpickler, but no diffusion checkpoint holds one."""
    folder = copy_checkpoint(tmp_path)
    state = torch.load(folder / "model_ema.pkl", weights_only=True)
    state["extra"] = torch.Size([3])
    torch.save(state, folder / "model_ema.pkl")
    with pytest.raises(ModelError, match=r"model_ema.pkl: refused to load: it names 'torch.Size'"):
        load_diffusion_model(folder, cache_dir=tmp_path / "cache", heads=2)


def test_cut_off_pickle_gives_clear_error(tmp_path):
    folder = copy_checkpoint(tmp_path)
    data = (folder / "model_ema.pkl").read_bytes()
    (folder / "model_ema.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"model_ema.pkl: incomplete or not a PyTorch zip checkpoint.*download the file again"):
        load_diffusion_model(folder, cache_dir=tmp_path / "cache", heads=2)


def test_damaged_archive_member_is_refused(tmp_path):
    folder = copy_checkpoint(tmp_path)
    path = folder / "model_ema.pkl"
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data/0"))
    data[info.header_offset + 200] ^= 0xFF  # inside the first tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="model_ema.pkl: damaged"):
        load_diffusion_model(folder, cache_dir=tmp_path / "cache", heads=2)


def test_missing_files_and_wrong_contents(tmp_path):
    folder = copy_checkpoint(tmp_path)
    (folder / "tokenizer.pkl").unlink()
    with pytest.raises(ModelError, match="missing tokenizer.pkl"):
        load_diffusion_model(folder, cache_dir=tmp_path / "cache", heads=2)
    torch.save({"num_classes": "many", "num_diff_classes": 26, "max_difficulty": 12}, folder / "tokenizer.pkl")
    with pytest.raises(ModelError, match="tokenizer.pkl: num_classes must be a count"):
        load_diffusion_model(folder, cache_dir=tmp_path / "cache", heads=2)


def test_unpublished_width_needs_head_count(tmp_path):
    with pytest.raises(ModelError, match="not a published size"):
        load_diffusion_model(copy_checkpoint(tmp_path), cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("bad", [dict(cfg_scale=float("nan")), dict(max_seq_len=256, overlap_buffer=128),
                                 dict(noise_schedule="cubic"), dict(timesteps=(2000,))])
def test_bad_options_are_refused(model, bad):
    from engine.errors import OptionError
    _, events, conditioning = load_case("one_window")
    with pytest.raises(OptionError):
        refine_positions(events, conditioning, DiffusionOptions(model=model, **bad))


def test_protocol_4_archives_are_refused_before_unpickling(tmp_path):
    """torch.save's default protocol (2) names globals inline; a protocol 4 archive names them from the stack."""
    folder, marker = copy_checkpoint(tmp_path), tmp_path / "pwned"
    torch.save({"x": _RunsCode(marker)}, folder / "tokenizer.pkl", pickle_protocol=4)
    with pytest.raises(ModelError, match=r"tokenizer.pkl: refused to load: its pickle names a global through STACK_GLOBAL"):
        load_diffusion_model(folder, cache_dir=tmp_path / "cache", heads=2)
    assert not marker.exists()


@pytest.mark.slow
def test_the_refinement_benchmark_compares_its_precision_with_fp32():
    """``bench/diffusion.py --gate`` on a few seconds of the real map: the precision a job here would choose,
    its time, and how far its written positions are from fp32's."""
    import subprocess
    import sys

    from engine.diffusion import diffusion_precision
    from engine.runtime import resolve_precision
    from tests.conftest import BEATMAPS, need

    need(BEATMAPS)
    cpu = torch.device("cpu")
    expected = diffusion_precision(cpu, resolve_precision(cpu, "auto"))
    done = subprocess.run([sys.executable, "bench/diffusion.py", "--minutes", "0.05", "--gate"], capture_output=True,
                          text=True, cwd=Path(__file__).parents[1], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"precision {expected}" in done.stdout and "refinement:" in done.stdout
    if expected != "fp32":
        moved = next(line for line in done.stdout.splitlines() if line.startswith("positions against fp32's"))
        assert float(moved.split("largest difference ")[1].split(" px")[0]) <= 1.0, moved
