"""precision=int8 (engine.quantize), precision=auto, and the CPU thread count (engine.runtime)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import engine
from bench.speed import GATE, GATE_RUNS, gate_run
from engine import quantize, runtime
from engine.audio import load_audio
from engine.checkpoint import load_checkpoint
from engine.errors import OptionError
from engine.options import GenerateOptions
from engine.model import FEW_ROWS, EuclideanRMSNorm, RMSNorm, erf_gelu
from engine.quantize import Int8Linear, int8_weights, is_int8, quantize_int8

from .conftest import UPSTREAM, need

TRAINED = UPSTREAM / "trained"
V32 = TRAINED / "v32" / "checkpoint"
V30 = TRAINED / "v30" / "checkpoint"
SONG = TRAINED / "audio" / "synth150.wav"
DAMAGED = TRAINED / "v30" / "maimod" / "std_damaged" / "synth150_std_damaged.osu"

# Two sockets, two cores each, two hyper-threads per core: 8 processors, 4 physical cores.
CPUINFO_HT = "\n\n".join(
    f"processor\t: {n}\nvendor_id\t: GenuineIntel\nphysical id\t: {n // 4}\nsiblings\t: 4\ncore id\t\t: {n % 2}\n"
    f"cpu cores\t: 2\nflags\t\t: fpu sse2 avx2"
    for n in range(8)
) + "\n"
CPUINFO_ARM = "processor\t: 0\nBogoMIPS\t: 48.00\n\nprocessor\t: 1\nBogoMIPS\t: 48.00\n\nHardware\t: BCM2835\n"


# --- CPU threads -------------------------------------------------------------------------------------------------


def test_physical_cores_counts_cores_not_hyperthreads():
    assert runtime.physical_cores(CPUINFO_HT) == 4
    assert runtime.physical_cores(CPUINFO_HT, allowed={0, 2}) == 1  # the two hyper-threads of socket 0, core 0
    assert runtime.physical_cores(CPUINFO_HT, allowed={0, 1, 4}) == 3
    assert runtime.physical_cores(CPUINFO_ARM) is None  # no core ids: the caller falls back to the CPU count


def test_cgroup_quota():
    assert runtime.cgroup_cpus("max 100000\n") is None
    assert runtime.cgroup_cpus("200000 100000\n") == 2
    assert runtime.cgroup_cpus("150000 100000") == 2
    assert runtime.cgroup_cpus("50000 100000") == 1
    assert runtime.cgroup_cpus("") is None and runtime.cgroup_cpus("garbage") is None


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cpu_threads_follow_the_machine_unless_the_user_chose(monkeypatch, restore_threads):
    wanted = runtime._TORCH_DEFAULT_THREADS + 1
    monkeypatch.setattr(runtime, "cpu_threads", lambda: wanted)
    torch.set_num_threads(runtime._TORCH_DEFAULT_THREADS)
    monkeypatch.setenv("OMP_NUM_THREADS", str(runtime._TORCH_DEFAULT_THREADS))
    assert runtime.use_cpu_threads() == runtime._TORCH_DEFAULT_THREADS
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert runtime.pick_device("cpu") == torch.device("cpu") and torch.get_num_threads() == wanted
    monkeypatch.setattr(runtime, "cpu_threads", lambda: wanted + 1)
    assert runtime.use_cpu_threads() == wanted  # set once; a count already changed is left alone


def test_cpu_threads_agree_with_torch_on_this_machine():
    """torch counts the physical cores of the CPUs it may use (cpuinfo); our /proc/cpuinfo reading must agree."""
    if runtime._read("/proc/cpuinfo") is None or os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        pytest.skip("needs Linux's /proc/cpuinfo and torch's own default thread count")
    if runtime.cgroup_cpus(runtime._read("/sys/fs/cgroup/cpu.max") or ""):
        pytest.skip("a cgroup CPU quota: torch does not read it, so the two may differ")
    assert runtime.cpu_threads() == runtime._TORCH_DEFAULT_THREADS


# --- precision choice ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("capability, expected", [((9, 0), "bf16"), ((8, 6), "bf16"), ((7, 5), "fp32")],
                         ids=["hopper", "ampere", "turing"])
def test_auto_precision_on_a_cuda_gpu_is_bf16_where_it_has_bf16_units(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert runtime.resolve_precision(torch.device("cuda"), "auto") == expected
    assert runtime.resolve_precision(torch.device("cuda"), "fp32") == "fp32"  # still there when asked for
    assert runtime.resolve_precision(torch.device("mps"), "auto") == "fp32"


def test_auto_precision_and_int8_on_a_gpu():
    assert runtime.resolve_precision(torch.device("cpu"), "auto") == "int8"
    assert runtime.resolve_precision(torch.device("cpu"), "FP32") == "fp32"
    with pytest.raises(OptionError, match="CPU only.*device=cpu"):
        runtime.resolve_precision(torch.device("cuda"), "int8")
    with pytest.raises(OptionError, match="precision='fp8' is not one of auto, fp32, bf16, amp, int8"):
        runtime.resolve_precision(torch.device("cpu"), "fp8")


# --- the quantized model ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bf16_encoder", [False, True], ids=["int8-encoder", "bf16-encoder"])
def test_int8_quantizes_every_backbone_linear_and_keeps_the_logits(bf16_encoder):
    reference = load_checkpoint(str(need(V32)))
    transformer = reference.model.transformer
    linears = sum(isinstance(m, torch.nn.Linear) for m in transformer.modules())
    encoder_linears = sum(isinstance(m, torch.nn.Linear) for m in transformer.model.encoder.modules())
    quantized = load_checkpoint(str(V32))
    assert quantize_int8(quantized.model, bf16_encoder=bf16_encoder) is quantized.model
    assert is_int8(quantized.model) and not is_int8(reference.model)
    encoder = quantized.model.transformer.model.encoder
    if bf16_encoder:  # the decoder and the output head in int8, the encoder's weights in bf16
        assert sum(isinstance(m, Int8Linear) for m in quantized.model.modules()) == linears - encoder_linears > 0
        assert {m.weight.dtype for m in encoder.modules() if type(m) is torch.nn.Linear} == {torch.bfloat16}
        assert sum(type(m) is torch.nn.Linear for m in encoder.modules()) == encoder_linears
    else:
        assert sum(isinstance(m, Int8Linear) for m in quantized.model.modules()) == linears > 0
        assert not any(type(m) is torch.nn.Linear for m in quantized.model.transformer.modules())
    assert quantized.model.encoder_bf16 is bf16_encoder
    assert quantized.model.decoder_embedder.weight.dtype == torch.float32

    # the training example the model learned (fixtures README 9.2), so that the logits mean something
    example = json.loads(need(TRAINED / "v32" / "train" / "train_example0.json").read_text())
    ids = torch.tensor([example["decoder_input_ids"]])
    frames = torch.from_numpy(load_audio(need(SONG), 16000)[: 2047 * 128]).float().unsqueeze(0)
    with torch.inference_mode():
        expected, got = reference.model(frames, ids), quantized.model(frames, ids)
    diff = (got - expected).abs()
    # measured: max 1.67, mean 0.10 (logit std 2.86); a wrong scale or layout would be off by whole logits
    assert 0 < diff.max() < 3 and diff.mean() < 0.25
    assert torch.equal(got.argmax(-1), expected.argmax(-1))

    # token by token, as generation runs: the cached keys/values are bf16, the next tokens the same
    steps = []
    for ck in (reference, quantized):
        with torch.inference_mode():
            state = ck.model.start_decoding(ck.model.encode(frames), torch.ones(1, 1, dtype=torch.bool), 200)
            steps.append(torch.stack([ck.model.decode_step(ids[:, i: i + 1], state) for i in range(150)], 1))
            assert state.cross_kv[0][0].dtype == state.caches[0].k.dtype == (
                torch.bfloat16 if ck is quantized else torch.float32)
    assert torch.equal(steps[0].argmax(-1), steps[1].argmax(-1))
    assert (steps[0] - steps[1]).abs().max() < 3


def torch_ao_dynamic_linear():
    """torch's own dynamically quantized linear, which quantize_int8 reproduces without its Python module."""
    try:
        from torch.ao.nn.quantized.dynamic import Linear
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError:
        pytest.skip("this torch has no torch.ao.quantization to compare with")
    return Linear, lambda module: quantize_dynamic(module, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                                   dtype=torch.qint8, inplace=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*quantiz.*deprecated:UserWarning")
def test_the_int8_model_is_torchs_dynamically_quantized_model():
    """Every int8 linear holds the integers and scales torch.ao.quantization.quantize_dynamic gives the trained
    v32's weights, and with 7-bit activations (torch's reduce_range) computes what torch's module computes,
    bit for bit; with 8-bit ones (where the kernel sums them exactly) it comes closer to the fp32 layer."""
    dynamic_linear, quantize_dynamic = torch_ao_dynamic_linear()
    float_model = load_checkpoint(str(need(V32))).model
    floats = [m for m in float_model.transformer.modules() if type(m) is torch.nn.Linear]
    theirs = [m for m in quantize_dynamic(load_checkpoint(str(V32)).model.transformer).modules()
              if isinstance(m, dynamic_linear)]
    model = quantize_int8(load_checkpoint(str(V32)).model, bf16_encoder=False)
    linears = [m for m in model.transformer.modules() if isinstance(m, Int8Linear)]
    assert len(linears) == len(floats) == len(theirs) > 0
    gen = torch.Generator().manual_seed(0)
    errors = {True: 0.0, False: 0.0}
    with torch.inference_mode():
        for layer, reference, torchs in zip(linears, floats, theirs):
            (ours, bias), (expected, expected_bias) = (layer.packed.unpack(),
                                                       torchs._packed_params._packed_params.unpack())
            assert torch.equal(ours.int_repr(), expected.int_repr())
            assert (bias is expected_bias is None) or torch.equal(bias, expected_bias)
            assert torch.equal(ours.q_per_channel_scales(), expected.q_per_channel_scales())
            x = torch.randn(3, 5, layer.in_features, generator=gen)
            for reduce_range in (False, True):
                layer.reduce_range = reduce_range
                errors[reduce_range] += (layer(x) - reference(x)).abs().mean().item()
            assert torch.equal(layer(x), torchs(x))
    if quantize.full_range_exact():
        assert errors[False] < 0.75 * errors[True]  # measured: about half


@pytest.mark.filterwarnings("ignore:.*quantiz.*deprecated:UserWarning")
def test_int8_weights_round_as_torchs_quantize_per_channel():
    """int8_weights computes torch.quantize_per_channel's integers with vectorised ops: the same at the
    edges (ties between two integers round to the even one, the row's extremes clamp to 127 / -128, a row of
    zeros takes fp32's epsilon as its scale) and on random rows of many magnitudes."""
    gen = torch.Generator().manual_seed(0)
    ties = torch.arange(-127.5, 128.0, 0.5)  # scale exactly 1: every other value a tie
    # rows: the ties, the same scaled (inexact products near ties), zeros, one value, a tiny one
    rows = [ties, ties * 3e-4, torch.zeros(511), torch.full((511,), -2.5), torch.full((511,), 1e-30)]
    weight = torch.cat([torch.stack(rows), torch.randn(59, 511, generator=gen) * torch.logspace(-6, 3, 59)[:, None]])
    got, scales = int8_weights(weight)
    expected = torch.quantize_per_channel(weight, scales.double(), torch.zeros(len(weight), dtype=torch.long), 0,
                                          torch.qint8)
    assert got.dtype == torch.int8 and torch.equal(got, expected.int_repr())
    assert scales[0] == 1.0 and got[0].tolist()[:4] == [-128, -127, -126, -126]  # -126.5 → -126
    assert scales[2] == torch.finfo(torch.float32).eps and not got[2].any()
    assert got[0, -1] == 127  # 127.5 rounds to 128, clamped


ACTIVATION_PROBE = """
import json, torch
from engine.quantize import WIDE_ROWS, quantize_int8

class Tiny(torch.nn.Module):  # quantize_int8 takes a model's .transformer
    def __init__(self):
        super().__init__()
        self.transformer = torch.nn.Sequential(torch.nn.Linear(64, 8, bias=False))

model = Tiny()
torch.nn.init.ones_(model.transformer[0].weight)
layer = quantize_int8(model, bf16_encoder=False).transformer[0]
x = torch.full((WIDE_ROWS, 64), 2.0)
x[:, 0] = 0.0  # every other activation quantizes to the top of its range, every weight to 127
errors = {}
for reduce_range in (layer.reduce_range, False):
    layer.reduce_range = reduce_range
    # one row (fbgemm) and WIDE_ROWS rows (oneDNN's product where the CPU has AMX)
    errors[reduce_range] = max(((layer(rows) - x[0].sum()).abs().max() / x[0].sum()).item() for rows in (x[:1], x))
print(json.dumps({"reduce_range": next(iter(errors)), "errors": list(errors.values())}))
"""


@pytest.mark.parametrize("isa", ["AVX2", None], ids=["fbgemm-avx2", "this-cpu"])
def test_activations_use_8_bits_only_where_the_kernel_sums_them_exactly(isa):
    """8-bit activations against 127-valued weights overflow kernels that add product pairs in 16 bits (fbgemm
    without VNNI): there quantize_int8 keeps torch's 7-bit activations; where the sums are exact it uses 8."""
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("fbgemm (x86) only: FBGEMM_ENABLE_INSTRUCTIONS narrows its code to AVX2")
    env = {k: v for k, v in os.environ.items() if k != "FBGEMM_ENABLE_INSTRUCTIONS"}
    if isa:
        env["FBGEMM_ENABLE_INSTRUCTIONS"] = isa
    done = subprocess.run([sys.executable, "-c", ACTIVATION_PROBE], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).parents[1], timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["errors"][0] < 0.01  # the range quantize_int8 chose never overflows
    if isa == "AVX2":
        assert found["reduce_range"] is True and found["errors"][1] > 0.2  # 8 bits would: measured 0.50
    elif torch.cpu._is_vnni_supported():
        assert found["reduce_range"] is False


AVX2_PROBE = """
import json, sys, tempfile
from pathlib import Path
import torch
from bench.speed import GATE_RUNS, gate_run
from engine import quantize
from engine.checkpoint import load_checkpoint
from engine.diffusion import diffusion_precision
model = quantize.quantize_int8(load_checkpoint(sys.argv[1]).model)
linears = [m for m in model.modules() if isinstance(m, quantize.Int8Linear)]
with tempfile.TemporaryDirectory() as out:
    row = gate_run(*GATE_RUNS[0], "cpu", "int8", Path(out))
print(json.dumps({"kernels": torch.backends.cpu.get_cpu_capability(), "kv": str(model.kv_dtype),
                  "encoder_bf16": model.encoder_bf16, "amx": any(m.wide is not None for m in linears),
                  "reduce_range": all(m.reduce_range for m in linears), "gate": row,
                  "diffusion": diffusion_precision(torch.device("cpu"), "int8")}))
"""


def test_an_avx2_cpu_decodes_with_fp32_keys_and_passes_the_quality_gate():
    """What most laptops run, through the kernel libraries' own caps (bench/speed.py --isa avx2): no bf16 encoder,
    no AMX kernel, 7-bit activations, and keys and values in fp32, since torch's bf16 attention there falls
    back to slow products; the int8 map of the gate's first run is still the fp32 map. V29's diffusion model
    runs in int8 there too (bf16 would be emulated: 5x slower than fp32)."""
    from bench.isa import ISA_CAPS

    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("x86 only: the caps narrow x86 kernels")
    done = subprocess.run([sys.executable, "-c", AVX2_PROBE, str(need(V32))], env={**os.environ, **ISA_CAPS["avx2"]},
                          capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["kernels"] == "AVX2"
    assert (found["kv"], found["encoder_bf16"], found["amx"], found["reduce_range"]) == ("None", False, False, True)
    assert found["gate"]["passed"] and found["gate"]["same_map"], found["gate"]
    assert found["diffusion"] == "int8"


def test_the_speed_benchmark_runs_with_avx2_kernels():
    """``bench/speed.py --isa avx2`` starts again with the caps set, its measuring process inherits them, and
    the table says which kernels and which choices ran; --json ends with the issue's keys."""
    from bench.isa import ISA_CAPS

    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("x86 only: the caps narrow x86 kernels")
    need(TRAINED)
    env = {k: v for k, v in os.environ.items() if k not in ISA_CAPS["avx2"]}  # set by the restart alone
    done = subprocess.run([sys.executable, "bench/speed.py", "--device", "cpu", "--quick", "--isa", "avx2", "--json"],
                          env=env, capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "kernels AVX2 (--isa)" in done.stdout and "encoder int8, keys and values fp32" in done.stdout
    figures = json.loads(done.stdout.splitlines()[-1])["v32-mini"]
    assert {"s_per_min_audio", "decoder_tok_s_bs1", "decoder_tok_s_bs2", "encoder_windows_s", "peak_mem_mb",
            "precision"} <= figures.keys() and figures["precision"] == "int8" and figures["gate_passed"]


def test_int8_keeps_bf16_keys_and_values_where_onednn_multiplies_bf16(monkeypatch):
    model = quantize_int8(load_checkpoint(str(need(V32))).model, bf16_encoder=False)
    assert model.kv_dtype == (torch.bfloat16 if quantize.bf16_attention() else None)
    monkeypatch.setattr(quantize, "bf16_attention", lambda: False)
    assert quantize_int8(load_checkpoint(str(V32)).model, bf16_encoder=False).kv_dtype is None
    assert quantize_int8(load_checkpoint(str(V32)).model, bf16_encoder=False, bf16_cache=True).kv_dtype \
        == torch.bfloat16


def test_int8_decoders_norms_and_gelus_are_the_usual_ones_but_for_roundings():
    """quantize_int8 gives the decoder (not the encoder) EuclideanRMSNorm and erf_gelu: for a step's few rows
    they compute RMSNorm's and F.gelu's values within roundings (zero rows and tiny ones included), for wider
    inputs (a prompt) and other dtypes exactly theirs."""
    model = quantize_int8(load_checkpoint(str(need(V32))).model, bf16_encoder=False)
    decoder, encoder = model.transformer.model.decoder, model.transformer.model.encoder
    norms = [m for m in decoder.modules() if isinstance(m, RMSNorm)]
    assert norms and all(type(m) is EuclideanRMSNorm for m in norms)
    assert all(layer.act is erf_gelu for layer in decoder.layers)
    assert not any(type(m) is EuclideanRMSNorm for m in encoder.modules())

    torch.manual_seed(0)
    norm = norms[0]
    plain = RMSNorm(norm.normalized_shape, norm.eps)
    with torch.no_grad():
        plain.weight.copy_(torch.randn_like(plain.weight))
    norm = EuclideanRMSNorm(plain)
    width = plain.normalized_shape[0]
    few = torch.randn(3, 1, width) * torch.tensor([1.0, 1e-3, 30.0])[:, None, None]
    few[1, 0, :] = 0.0
    few[2, 0, 1:] = 0.0  # one non-zero value
    with torch.inference_mode():
        torch.testing.assert_close(norm(few), plain(few), rtol=2e-6, atol=1e-6)
        assert torch.equal(norm(few[1]), torch.zeros_like(few[1]))
        wide = torch.randn(1, FEW_ROWS, width)
        assert torch.equal(norm(wide), plain(wide))
        assert torch.equal(norm(few.bfloat16()), plain(few.bfloat16()))
        x = torch.randn(2, 1, 4 * width) * 4
        torch.testing.assert_close(erf_gelu(x), F.gelu(x), rtol=1e-6, atol=1e-6)
        wide = torch.randn(1, FEW_ROWS, 64)
        assert torch.equal(erf_gelu(wide), F.gelu(wide))


def onednn_int8():
    if not hasattr(torch.ops.onednn, "qlinear_pointwise"):
        pytest.skip("this torch build has no oneDNN int8 ops (onednn::qlinear_pointwise)")


def test_wide_inputs_take_onednns_int8_product_with_fbgemms_integer_sums():
    """With the AMX kernel each int8 linear computes inputs of WIDE_ROWS rows or more through oneDNN and fewer
    through fbgemm. Both quantize the activations alike and sum the same integers: the numbers agree to an fp32
    rounding."""
    onednn_int8()
    model = quantize_int8(load_checkpoint(str(need(V32))).model, bf16_encoder=False, amx_kernel=True)
    linears = [m for m in model.modules() if isinstance(m, Int8Linear)]
    assert linears and all(m.wide is not None for m in linears)
    linear_dynamic = torch.ops.quantized.linear_dynamic
    gen = torch.Generator().manual_seed(0)
    differs = 0
    with torch.inference_mode():
        for layer in linears:
            wide = torch.randn(1, quantize.WIDE_ROWS, layer.in_features, generator=gen)
            narrow = wide[:, 1:]
            fbgemm = linear_dynamic(wide, layer.packed, layer.reduce_range)
            got = layer(wide)
            torch.testing.assert_close(got, fbgemm, rtol=1e-6, atol=2e-6)
            differs += not torch.equal(got, fbgemm)  # it did take the other kernel
            assert torch.equal(layer(narrow), linear_dynamic(narrow, layer.packed,
                                                             layer.reduce_range))
    assert differs > len(linears) // 2


def test_the_amx_kernel_is_kept_for_cpus_with_amx(monkeypatch):
    onednn_int8()
    for amx in (False, True):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        assert quantize.amx_int8() is amx
        model = quantize_int8(load_checkpoint(str(need(V32))).model, bf16_encoder=False)
        assert {m.wide is not None for m in model.modules() if isinstance(m, Int8Linear)} == {amx}


def test_int8_refuses_a_model_on_a_gpu_device():
    model = load_checkpoint(str(need(V32))).model.to("meta")
    with pytest.raises(OptionError, match="CPU only"):
        quantize_int8(model)


def test_the_model_cache_keeps_int8_and_fp32_apart(tmp_path):
    """int8 quantizes in place: a shared cache entry would turn a later fp32 job into an int8 one."""
    runtime.MODELS.clear()
    base = dict(audio_path=str(need(SONG)), model_path=str(need(V32)), gamemode=0, difficulty=3.2, mapper_id=2,
                year=2023, do_sample=False, seed=1, device="cpu", output_type=("TIMING",), end_time=2000)
    engine.generate(GenerateOptions(output_path=str(tmp_path / "a"), precision="fp32", **base))
    engine.generate(GenerateOptions(output_path=str(tmp_path / "b"), precision="int8", **base))
    models = {key.quantization: ck.model for key, ck in runtime.MODELS._items.items()}
    assert set(models) == {None, "int8"}
    assert is_int8(models["int8"]) and not is_int8(models[None])
    runtime.MODELS.clear()


def test_the_options_default_runs_int8_on_a_cpu(tmp_path):
    """precision=auto is the default of every facade's options; on the CPU it loads the int8 model."""
    assert GenerateOptions().precision == engine.ModOptions().precision == engine.TimingOptions().precision == "auto"
    runtime.MODELS.clear()
    engine.timing(engine.TimingOptions(audio_path=str(need(SONG)), model_path=str(need(V32)), device="cpu", seed=1))
    assert [key.quantization for key in runtime.MODELS._items] == ["int8"]
    runtime.MODELS.clear()


# --- the quality gate (bench/speed.py) ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("version, run, overrides", GATE_RUNS, ids=[f"{v}/{r}" for v, r, _ in GATE_RUNS])
def test_int8_generation_passes_the_quality_gate(version, run, overrides, tmp_path):
    need(TRAINED / version / run / "generated.osu")
    row = gate_run(version, run, overrides, "cpu", "int8", tmp_path)
    assert row["active_rhythm_f1"] >= GATE["active_rhythm_f1"]
    assert row["passive_rhythm_f1"] >= GATE["passive_rhythm_f1"]
    assert row["bpm_error"] <= GATE["bpm_error"]
    assert row["offset_error_ms"] <= GATE["offset_error_ms"]
    assert abs(row["star_rating_diff"]) <= GATE["star_rating_diff"]
    assert row["passed"]


def test_the_logit_gate_holds_int8_and_refuses_4_bit_weights(monkeypatch):
    """The trained fixtures' maps do not tell int8 from 4-bit weights (both gave the fp32 maps); the logit part
    of the gate does, on the real-size v32-mini: int8 within LOGIT_GATE of the logits' spread, weights rounded to
    16 levels per group of 32 (what 4-bit weights keep of them) outside it."""
    import torch.nn as nn

    import bench.speed as speed

    cpu = torch.device("cpu")
    assert speed.logits_passed(speed.logit_difference("v32-mini", cpu, "int8", 16, 4))
    random_model = speed.random_model

    def four_bit_weights(name, device, precision):
        model = random_model(name, device, "fp32")
        if precision != "fp32":
            with torch.no_grad():
                for layer in model.transformer.model.decoder.modules():
                    if type(layer) is nn.Linear:  # noqa: E721
                        groups = layer.weight.view(layer.out_features, -1, 32)
                        low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
                        step = (high - low) / 15
                        groups.copy_(((groups - low) / step).round() * step + low)
        return model

    monkeypatch.setattr(speed, "random_model", four_bit_weights)
    assert not speed.logits_passed(speed.logit_difference("v32-mini", cpu, "int8", 16, 4))


@pytest.mark.slow
def test_int8_maimod_finds_the_same_spots():
    found = engine.mod(engine.ModOptions(beatmap_path=str(need(DAMAGED)), audio_path=str(need(SONG)),
                                         model_path=str(need(V30)), rules=False, device="cpu", precision="int8"))
    assert [s.time_ms for s in found] == [3430, 6400, 9775, 9775, 12200, 13400, 13800, 14600, 15400, 19040]


def test_the_compile_benchmarks_opaque_int8_linears_compute_the_same_logits():
    """bench/forward.py --compile routes every int8 linear through one custom op (so torch.compile keeps one
    graph); run eagerly, that route must give the model's own logits."""
    from bench.forward import opaque_int8_linears

    reference = quantize_int8(load_checkpoint(str(need(V32))).model, bf16_encoder=False)
    wrapped = opaque_int8_linears(quantize_int8(load_checkpoint(str(V32)).model, bf16_encoder=False))
    ids = torch.randint(3, 100, (1, 12), generator=torch.Generator().manual_seed(0))
    frames = torch.randn(1, 2047 * 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(wrapped(frames, ids), reference(frames, ids))
