"""engine.lean_step: the CPU token step without module calls gives the module step's logits bit for bit, and
stands aside wherever it cannot."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import engine.decoding
from engine.checkpoint import load_checkpoint, new_model
from engine.decoding import DecodingOptions, decode
from engine.lean_step import LeanStep, lean_step
from engine.model import ROPEWHISPER, WHISPER
from engine.quantize import WIDE_ROWS, quantize_int8

from .conftest import UPSTREAM, need
from .test_model_structure import backbone_config, varwhisper


def model_in(precision: str, every_n: int = 2, window: int = 8, rope_positions: int | None = None,
             learned_positions: bool = False):
    """v32's layout (with local layers where ``every_n`` > 1), or with ``rope_positions`` v30/v31's, whose
    dynamic rotary scales its angles past that many positions, or v29's (learned positions, LayerNorms)."""
    if learned_positions:
        config = backbone_config(WHISPER)
    else:
        config = (varwhisper(every_n=every_n, window=window) if rope_positions is None
                  else backbone_config(ROPEWHISPER, rope_positions))
    model = new_model(config, seed=0).eval()
    if precision.startswith("int8"):  # keys and values in bf16, or in fp32 as on AVX2-only CPUs
        quantize_int8(model, bf16_encoder=False, amx_kernel=False, bf16_cache=precision == "int8")
    elif precision == "bf16":  # as the engine loads it: all but the spectrogram
        model.to(torch.bfloat16)
        model.spectrogram.float()
    return model


def prompted(model, prompts: torch.Tensor, padding: torch.Tensor, one_window: bool, max_len: int = 60):
    frames = torch.randn(1 if one_window else len(prompts), 127 * 16, generator=torch.Generator().manual_seed(1))
    encoder_out = model.encode(frames)
    if one_window:
        encoder_out = encoder_out.expand(len(prompts), -1, -1)
    state = model.start_decoding(encoder_out, padding, max_len)
    model.decode_step(prompts, state)
    return state


def steps_agree(model, prompts, padding, one_window: bool, steps: int, drop_row_at: int | None = None,
                max_len: int = 60) -> int:
    """Feeds the same tokens to the module step and to a LeanStep on copies of one state; returns how many
    steps were compared (every logit equal, bit for bit)."""
    state = prompted(model, prompts, padding, one_window, max_len)
    twin = copy.deepcopy(state)
    lean = lean_step(model, twin)
    assert lean is not None
    # without padding or local layers the steps skip the masks (none are needed); else they compute them
    unmasked = bool(padding.all()) and all(w is None for w in model.transformer.model.decoder.positions.windows)
    assert (lean.no_masks is not None) == unmasked
    tokens = torch.Generator().manual_seed(2)
    for step in range(steps):
        if step == drop_row_at:  # a finished row leaves the batch, as in decode
            keep = torch.tensor([0, 2])
            state.select(keep)
            twin.select(keep)
        ids = torch.randint(3, 50, (state.key_padding.shape[0], 1), generator=tokens)
        expected, got = model.decode_step(ids, state), lean(ids, twin)
        assert got.dtype == expected.dtype and torch.equal(got, expected), f"step {step}"
    return steps


LAYOUTS = {"v32-global": dict(every_n=1), "v32-local-and-global": dict(every_n=2),
           "v30": dict(rope_positions=64), "v30-past-trained-length": dict(rope_positions=24),
           "v29": dict(learned_positions=True)}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("precision", ["fp32", "int8", "int8-fp32-cache", "bf16"])
@torch.inference_mode()
def test_lean_steps_give_the_module_steps_logits(precision, layout):
    """v32's fused projections with global layers only or local ones too, v30/v31's separate ones (also where
    the window passes the dynamic rotary's trained length, whose angles each step's length decides), v29's
    learned positions and LayerNorms; left-padded rows (masks), rows of one window sharing their keys, a row
    leaving the batch."""
    model = model_in(precision, **LAYOUTS[layout])
    prompts = torch.randint(3, 50, (3, 12), generator=torch.Generator().manual_seed(0))
    state = prompted(model, prompts, torch.ones(3, 12, dtype=torch.bool), one_window=True)
    lean = lean_step(model, state)
    assert (lean.tables is None) == (layout in ("v30-past-trained-length", "v29"))  # angles per step, or none
    assert (lean.no_angles is not None) == (lean.learned is not None) == (layout == "v29")
    padding = torch.ones(3, 12, dtype=torch.bool)
    padding[1, :5] = False
    assert steps_agree(model, prompts, padding, one_window=False, steps=30, drop_row_at=10) == 30
    assert steps_agree(model, prompts, torch.ones(3, 12, dtype=torch.bool), one_window=True, steps=20,
                       drop_row_at=5) == 20


@torch.inference_mode()
def test_lean_steps_past_the_windows_length_compute_their_angles():
    """The angles are computed once for the positions up to the window's length; a step beyond it (the cache
    grows on) still gets the module step's logits."""
    model = model_in("fp32")
    prompts = torch.randint(3, 50, (1, 10), generator=torch.Generator().manual_seed(0))
    assert steps_agree(model, prompts, torch.ones(1, 10, dtype=torch.bool), one_window=False, steps=8,
                       max_len=14) == 8


@torch.inference_mode()
def test_lean_step_stands_aside(monkeypatch):
    model = model_in("int8")
    prompts = torch.randint(3, 50, (2, 6), generator=torch.Generator().manual_seed(0))
    state = prompted(model, prompts, torch.ones(2, 6, dtype=torch.bool), one_window=True)
    assert lean_step(model, state) is not None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lean_step(model, state) is None
    wide = prompted(model, torch.randint(3, 50, (WIDE_ROWS, 6)), torch.ones(WIDE_ROWS, 6, dtype=torch.bool), True)
    assert lean_step(model, wide) is None  # int8 layers take such batches through oneDNN's product

    class Adapted(nn.Linear):  # e.g. a LoRA layer left unmerged: its forward is more than the product
        pass

    fp32 = model_in("fp32")
    state = prompted(fp32, prompts, torch.ones(2, 6, dtype=torch.bool), one_window=True)
    fc1 = fp32.transformer.model.decoder.layers[1].fc1
    fp32.transformer.model.decoder.layers[1].fc1 = Adapted(fc1.in_features, fc1.out_features)
    assert lean_step(fp32, state) is None



@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_decoding_takes_the_lean_step_and_draws_the_same_tokens(monkeypatch, cfg_scale):
    """decode on the trained v32 fixture in int8, with and without it: the same sampled tokens (guidance's
    rows share one window's keys), and every step after the prompt went through it."""
    ck = load_checkpoint(str(need(UPSTREAM / "trained" / "v32" / "checkpoint")))
    quantize_int8(ck.model)
    tok = ck.tokenizer
    lean_calls = []
    real = LeanStep.__call__

    def counted(self, ids, state):
        lean_calls.append(ids.shape[0])
        return real(self, ids, state)

    def run() -> list[list[int]]:
        return decode(ck.model, tok, torch.randn(2, 2047 * 128, generator=torch.Generator().manual_seed(3)),
                      [[tok.sos_id, 40, 41], [tok.sos_id]], DecodingOptions(do_sample=True, max_length=40,
                                                                           cfg_scale=cfg_scale),
                      stop=(), negative_prompts=[[tok.sos_id]] * 2 if cfg_scale > 1 else None,
                      generator=torch.Generator().manual_seed(4))

    monkeypatch.setattr(LeanStep, "__call__", counted)
    lean = run()
    assert len(lean_calls) == max(len(row) for row in lean) - 1 and set(lean_calls) == {4 if cfg_scale > 1 else 2}
    monkeypatch.setattr(engine.decoding, "lean_step", lambda *args: None)
    assert run() == lean and len(lean_calls) == max(len(row) for row in lean) - 1


@torch.inference_mode()
def test_a_v29_lean_step_stops_where_its_position_table_ends():
    """v29's learned positions end (2,048 in the published model, 64 here): the lean step refuses the step past
    them as the module step does, rather than adding an empty row."""
    model = model_in("fp32", learned_positions=True)
    prompts = torch.randint(3, 50, (1, 60), generator=torch.Generator().manual_seed(0))
    state = prompted(model, prompts, torch.ones(1, 60, dtype=torch.bool), one_window=True, max_len=70)
    twin = copy.deepcopy(state)
    lean = lean_step(model, twin)
    ids = torch.tensor([[7]])
    for _ in range(4):  # positions 60-63
        assert torch.equal(lean(ids, twin), model.decode_step(ids, state))
    for step in (lambda: lean(ids, twin), lambda: model.decode_step(ids, state)):
        with pytest.raises(ValueError, match="holds 64 positions"):
            step()
