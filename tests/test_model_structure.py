"""Model behaviour the published checkpoints do not exercise: VarWhisper's local attention layers, and
classifier-free guidance in the decoding loop."""
from __future__ import annotations

import pytest
import torch

from engine.checkpoint import load_checkpoint, new_model
from engine.decoding import DecodingOptions, decode
from engine.model import ROPEWHISPER, VARWHISPER, WHISPER, BackboneConfig, ModelConfig, SpectrogramConfig

from .conftest import UPSTREAM, need


def varwhisper(every_n: int, window: int, local_theta: float = 10000.0) -> ModelConfig:
    backbone = BackboneConfig(VARWHISPER, d_model=32, encoder_layers=2, decoder_layers=2, encoder_heads=4,
                              decoder_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
                              max_source_positions=64, max_target_positions=64, vocab_size=50,
                              global_attn_every_n_layers=every_n, local_attention=window,
                              local_rope_theta=local_theta)
    return ModelConfig("OliBomby/varwhisper-test", backbone, SpectrogramConfig(n_mels=16, n_fft=64, hop_length=16),
                       vocab_size_in=60, vocab_size_out=50)


def backbone_config(flavour: str, max_target_positions: int = 64) -> ModelConfig:
    """A tiny v30/v31-like (ropewhisper: separate projections, dynamic rotary) or v29-like (whisper) model."""
    backbone = BackboneConfig(flavour, 32, 2, 2, 4, 4, 64, 64, 16, 64, max_target_positions, 50)
    return ModelConfig(f"test/{flavour}", backbone, SpectrogramConfig(n_mels=16, n_fft=64, hop_length=16),
                       vocab_size_in=60, vocab_size_out=50)


def same_weights(a, b):
    b.load_state_dict(a.state_dict())
    return b.eval()


@torch.inference_mode()
def test_a_local_window_wider_than_the_sequence_equals_global_attention():
    torch.manual_seed(0)
    local = new_model(varwhisper(every_n=2, window=1000), seed=0).eval()
    glob = same_weights(local, new_model(varwhisper(every_n=1, window=1000), seed=0))
    frames = torch.randn(1, 127 * 16)
    ids = torch.randint(3, 50, (1, 20))
    torch.testing.assert_close(local(frames, decoder_input_ids=ids), glob(frames, decoder_input_ids=ids))


@torch.inference_mode()
def test_local_layers_only_see_their_window():
    """Layer 1 of an every-2 model is local (half-window 4): with only that layer, an encoder position's output
    ignores positions more than 4 away, and the decoder stays causal."""
    model = new_model(varwhisper(every_n=2, window=8), seed=0).eval()
    encoder = model.transformer.model.encoder
    x = torch.randn(1, 40, 32)
    layer = encoder.layers[1]
    rope, window = encoder.positions.angles(torch.arange(40), x.dtype)[1], encoder.positions.windows[1]
    assert window == 4
    from engine.model import _window_mask

    mask = _window_mask(40, 40, window, causal=False, device=x.device, dtype=x.dtype)
    base = layer(x, rope, mask)
    far = x.clone()
    far[:, 30:] += 5.0  # more than 4 positions away from position 20
    near = x.clone()
    near[:, 23] += 5.0  # within the window of position 20
    assert torch.allclose(layer(far, rope, mask)[:, 20], base[:, 20])
    assert not torch.allclose(layer(near, rope, mask)[:, 20], base[:, 20])

    ids = torch.randint(3, 50, (1, 24))
    changed = ids.clone()
    changed[0, 15:] = 7
    frames = torch.randn(1, 127 * 16)
    a = model(frames, decoder_input_ids=ids)
    b = model(frames, decoder_input_ids=changed)
    assert torch.allclose(a[:, :15], b[:, :15])  # later tokens never change earlier logits
    assert not torch.allclose(a[:, 15:], b[:, 15:])


@torch.inference_mode()
def test_cached_decoding_with_local_layers_matches_the_full_pass():
    model = new_model(varwhisper(every_n=2, window=6, local_theta=500.0), seed=3).eval()
    frames = torch.randn(1, 127 * 16)
    ids = torch.randint(3, 50, (1, 30))
    encoder_out = model.encode(frames)
    full = model(decoder_input_ids=ids, encoder_out=encoder_out)[0]
    state = model.start_decoding(encoder_out, torch.ones(1, 10, dtype=torch.bool), 40)
    steps = [model.decode_step(ids[:, :10], state)] + [model.decode_step(ids[:, i:i + 1], state) for i in range(10, 29)]
    torch.testing.assert_close(torch.cat(steps), full[9:29], atol=1e-5, rtol=0)


@pytest.mark.parametrize("layout", ["v32 global", "v32 local", "v30", "v29"])
@torch.inference_mode()
def test_a_prompt_gives_its_last_positions_logits_and_caches_every_position(layout):
    """decode_step runs the decoder's last layer for a prompt's last position only: its logits are the full
    pass's last row, and the cache holds every position's keys and values, left-padded rows included."""
    config = {"v32 global": varwhisper(every_n=1, window=1000), "v32 local": varwhisper(every_n=2, window=6),
              "v30": backbone_config(ROPEWHISPER), "v29": backbone_config(WHISPER)}[layout]
    model = new_model(config, seed=4).eval()
    encoder_out = model.encode(torch.randn(2, 127 * 16, generator=torch.Generator().manual_seed(5)))
    ids = torch.randint(3, 50, (2, 24), generator=torch.Generator().manual_seed(6))
    padding = torch.ones(2, 24, dtype=torch.bool)
    padding[1, :7] = False
    ids[1, :7] = 0
    states = [model.start_decoding(encoder_out, padding, 40) for _ in range(2)]
    positions, masks = model.step_inputs(24, states[1])
    full = model._decode_layers(ids, positions, states[1].cross_kv, masks, states[1].caches, causal=True)
    torch.testing.assert_close(model.decode_step(ids, states[0]), full[:, -1], atol=1e-5, rtol=0)
    for last_only, every in zip(states[0].caches, states[1].caches):
        assert last_only.length == every.length == 24
        assert torch.equal(last_only.k[:, :, :24], every.k[:, :, :24])
        assert torch.equal(last_only.v[:, :, :24], every.v[:, :, :24])


@pytest.fixture(scope="module")
def trained_v32():
    return load_checkpoint(str(need(UPSTREAM / "trained" / "v32" / "checkpoint")))


@torch.inference_mode()
def test_guidance_moves_towards_the_positive_prompt(trained_v32, monkeypatch):
    """cfg_scale > 1 decodes prompt and negative prompt in one batch and steers by neg + s * (pos - neg):
    the first step's scores are exactly that combination (upstream's batch order inverts it)."""
    ck = trained_v32
    tok = ck.tokenizer
    prompt = [tok.sos_id, tok.context_sos[next(iter(tok.context_sos))]]
    negative = [tok.pad_id, tok.sos_id]
    frames = torch.zeros(1, 2047 * 128)
    seen = []
    import engine.decoding as decoding

    class Spy:
        def __call__(self, ids, scores):
            seen.append(scores.clone())
            return scores

    monkeypatch.setattr(decoding, "logit_rules", lambda *a, **k: [Spy()])
    opts = DecodingOptions(do_sample=False, cfg_scale=3.0, max_length=len(prompt) + 1)
    decode(ck.model, tok, frames, [prompt], opts, [tok.eos_id], negative_prompts=[negative])
    encoder_out = ck.model.encode(frames)
    pos = ck.model(decoder_input_ids=torch.tensor([prompt]), encoder_out=encoder_out)[0, -1]
    neg = ck.model(decoder_input_ids=torch.tensor([[tok.sos_id]]), encoder_out=encoder_out)[0, -1]
    torch.testing.assert_close(seen[0][0], neg + 3.0 * (pos - neg), atol=1e-4, rtol=0)


@torch.inference_mode()
@pytest.mark.parametrize("version, cfg_scale, lookback_ms", [("v32", 1.0, 0.0), ("v32", 2.0, 0.0), ("v31", 1.0, 3000.0)])
def test_finished_rows_leave_a_greedy_batch_without_changing_any_row(version, cfg_scale, lookback_ms):
    """Rows that stop early are dropped from the batch (cache, guidance half and v31's lookback rule follow);
    every row is still exactly what it is when decoded alone. The rows are upstream's first timing prompt over
    windows further and further into the song, so they hold fewer and fewer beats."""
    import ast
    import json

    import numpy as np

    from engine.audio import load_audio
    from engine.presets import PRESETS

    ck = load_checkpoint(str(need(UPSTREAM / "trained" / version / "checkpoint")))
    tok = ck.tokenizer
    call = json.loads(need(UPSTREAM / "trained" / version / "pipeline_greedy_std" / "generate_calls.json")
                      .read_text())[0]
    prompt = (ast.literal_eval(call["prompt"]) if isinstance(call["prompt"], str) else call["prompt"])[0]
    song = load_audio(need(UPSTREAM / "trained" / "audio" / "synth150.wav"), 16000)
    width = 2047 * 128
    starts = [0, 8, 16, 24]  # seconds; the song is 30 s long, the window about 20 s
    frames = torch.stack([torch.from_numpy(np.pad(song[s * 16000: s * 16000 + width],
                                                  (0, max(0, width - len(song[s * 16000:]))))) for s in starts])
    n = len(starts)
    dtypes = {"mapper_idx": torch.long}
    cond = {k: torch.tensor([v[0]] * n, dtype=dtypes.get(k, torch.float32)) for k, v in call["model_kwargs"].items()}
    if "song_position" in cond:  # v31: where each window lies in the 30 s song (row 0 keeps upstream's value)
        cond["song_position"][1:] = torch.tensor([[s / 30, (s + 20) / 30] for s in starts[1:]])
    negatives = [[tok.pad_id] * (len(prompt) - 1) + [tok.sos_id]] * n  # as long as the prompt: no padding
    opts = DecodingOptions(do_sample=False, cfg_scale=cfg_scale, max_length=len(prompt) + 250,
                           types_first=PRESETS[version].data.types_first)
    stop = [tok.eos_id, *tok.context_eos.values()]
    guided = cfg_scale > 1

    batch_rows = []
    real_step = ck.model.decode_step

    def counting_step(ids, state):
        batch_rows.append(ids.shape[0])
        return real_step(ids, state)

    ck.model.decode_step = counting_step
    together = decode(ck.model, tok, frames, [prompt] * n, opts, stop, lookback_ms=lookback_ms, cond=cond,
                      negative_prompts=negatives if guided else None)
    ck.model.decode_step = real_step
    alone = [decode(ck.model, tok, frames[i: i + 1], [prompt], opts, stop, lookback_ms=lookback_ms,
                    cond={k: v[i: i + 1] for k, v in cond.items()},
                    negative_prompts=negatives[i: i + 1] if guided else None)[0] for i in range(n)]
    assert together == alone
    assert len({len(row) for row in together}) > 1  # the rows do stop at different steps
    full = n * (2 if guided else 1)
    assert batch_rows[0] == full and min(batch_rows) < full  # ... and the batch shrank when they did


@torch.inference_mode()
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_every_encoder_layer_reads_a_contiguous_stream(bf16):
    """The convolutions leave frames as (batch, d, frames); a permuted view carried down the stack made every
    norm and residual add of a v32 window stride across memory (measured on 2 cores: the bf16 encoder's norms
    3 ms -> 0.6 ms each, a window 0.37 -> 0.30 s)."""
    model = new_model(varwhisper(every_n=1, window=128), seed=0).eval()
    seen = []
    for layer in [*model.transformer.model.encoder.layers, model.transformer.model.encoder.layer_norm]:
        layer.register_forward_pre_hook(lambda _module, args: seen.append(args[0].is_contiguous()))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model.encode(torch.randn(2, 127 * 16))
    assert seen == [True] * 3


@torch.inference_mode()
def test_the_cross_attention_keys_a_step_reads_are_contiguous():
    """Every decoder step reads every layer's cross-attention keys and values: they are stored contiguous,
    not as head views of one projection (measured on a CPU: one-query attention ~13 % faster)."""
    model = new_model(varwhisper(every_n=1, window=128), seed=0).eval()
    encoder_out = model.encode(torch.randn(1, 127 * 16))
    state = model.start_decoding(encoder_out, torch.ones(1, 3, dtype=torch.bool), 16)
    assert all(t.is_contiguous() for kv in state.cross_kv for t in kv)
    torch.testing.assert_close(state.cross_kv, model.cross_kv(encoder_out), rtol=0, atol=0)


@torch.inference_mode()
def test_rows_of_one_window_keep_one_copy_of_its_cross_attention_keys():
    """Guidance's pair and a mapset's difficulties at one window share its encoder output: on a CPU the decoder
    projects and keeps the cross-attention keys and values once instead of once a row, and every row's logits
    are what a copy a row gives, bit for bit, also after rows leave the batch."""
    model = new_model(varwhisper(every_n=1, window=128), seed=0).eval()
    encoder_out = model.encode(torch.randn(1, 127 * 16))
    ids = torch.randint(3, 50, (3, 5), generator=torch.Generator().manual_seed(0))
    padding = torch.ones(3, 5, dtype=torch.bool)
    shared = model.start_decoding(encoder_out.expand(3, -1, -1), padding, 16)
    apart = model.start_decoding(encoder_out.repeat(3, 1, 1), padding, 16)
    assert {k.shape[0] for kv in shared.cross_kv for k in kv} == {1}
    assert {k.shape[0] for kv in apart.cross_kv for k in kv} == {3}
    assert torch.equal(model.decode_step(ids, shared), model.decode_step(ids, apart))
    for state in (shared, apart):
        state.select(torch.tensor([0, 2]))
    step = ids[[0, 2], -1:]
    assert torch.equal(model.decode_step(step, shared), model.decode_step(step, apart))


def test_guidance_decodes_its_pair_over_one_copy_of_the_windows_keys(trained_v32, monkeypatch):
    """decode's negative rows see the positive rows' windows: for one window the pair stays one encoder row."""
    ck = trained_v32
    seen = []
    start = ck.model.start_decoding

    def recording(encoder_out, padding, max_len):
        state = start(encoder_out, padding, max_len)
        seen.append((encoder_out.shape[0], state.cross_kv[0][0].shape[0]))
        return state

    monkeypatch.setattr(ck.model, "start_decoding", recording)
    tok = ck.tokenizer
    opts = DecodingOptions(do_sample=False, cfg_scale=2.0, max_length=8)
    decode(ck.model, tok, torch.zeros(1, 2047 * 128), [[tok.sos_id]], opts, [tok.eos_id],
           negative_prompts=[[tok.pad_id]])
    assert seen == [(2, 1)]
