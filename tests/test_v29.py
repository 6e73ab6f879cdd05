"""V29 (Mapperatorinator-v29.1): the plain Whisper backbone with nnAudio mels, its token layout and its preset,
checked against goldens upstream's own code made from a tiny random-weight V29 (tests/fixtures/upstream_v29)."""
from __future__ import annotations

import json
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.checkpoint import load_checkpoint, parse_config
from engine.model import NNAUDIO, WHISPER, Mapperatorinator, fourier_kernels, parameter_count, slaney_mel_basis
from engine.presets import PRESETS, detect_version
from engine.prompt import ContextStream, PromptBuilder, plan_contexts
from engine.tokenizer import ContextType, Event, EventType, Tokenizer
from engine.windows import WindowLayout
from tests.conftest import UPSTREAM, need

FIXTURE = Path(__file__).parent / "fixtures" / "upstream_v29"
CHECKPOINT = FIXTURE / "checkpoint"
RUN = FIXTURE / "pipeline_greedy_timingctx"
C = ContextType


@lru_cache(maxsize=None)
def checkpoint():
    return load_checkpoint(str(CHECKPOINT))


def window0() -> torch.Tensor:
    """Window 0 exactly as upstream fed it (README: the shared waveform's first 130944 samples)."""
    samples = np.load(need(UPSTREAM / "audio" / "waveform_16k_mono.npy"))[:130944]
    return torch.from_numpy(samples.copy())[None]


# --- loading --------------------------------------------------------------------------------------------------------


def test_published_format_loads_as_v29():
    ck = checkpoint()
    assert ck.version == "v29" and ck.preset.repo_id == "OliBomby/Mapperatorinator-v29.1"
    assert ck.config.backbone.flavour == WHISPER and ck.config.spectrogram.implementation == NNAUDIO
    assert ck.config.project_encoder_input and ck.config.backbone.max_target_positions == 2048
    decoder = ck.model.transformer.model.decoder
    assert decoder.embed_positions.weight.shape == (2048, 8)
    assert isinstance(decoder.layers[0].encoder_attn_layer_norm, torch.nn.LayerNorm)


def test_real_size_config_parses_and_is_whisper_small():
    """The published V29.1 is whisper-small with 388 nnAudio mels projected to d_model: its config (the fixture's
    with the real sizes) must parse and size like whisper-small (its 244 M less the text embedding)."""
    cfg = json.loads((CHECKPOINT / "config.json").read_text())
    cfg.update(n_fft=1024, n_mels=388, hidden_size=768, num_attention_heads=12, num_hidden_layers=12)
    cfg["backbone_config"].update(d_model=768, encoder_layers=12, decoder_layers=12, encoder_attention_heads=12,
                                  decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                                  num_mel_bins=768)
    config = parse_config(cfg)
    with torch.device("meta"):
        model = Mapperatorinator(config)
    assert parameter_count(config) == sum(t.numel() for t in model.state_dict().values())
    # whisper-small is 244 M with its 51,865-token embedding; this vocabulary is the tiny one
    assert 205e6 < parameter_count(config) < 220e6
    assert detect_version(config.backbone_name, set()) == "v29"


def test_parameter_count_matches_the_tiny_checkpoint():
    ck = checkpoint()
    assert parameter_count(ck.config) == sum(t.numel() for t in ck.model.state_dict().values())


def test_nnaudio_front_end_recomputed_equals_the_stored_one():
    """A model built from scratch computes nnAudio's STFT kernels and slaney mel basis itself."""
    ck = checkpoint()
    stft, c = ck.model.spectrogram.transform.stft, ck.config.spectrogram
    wsin, wcos, window = fourier_kernels(c.n_fft)
    torch.testing.assert_close(wsin, stft.wsin, atol=1e-7, rtol=0)
    torch.testing.assert_close(wcos, stft.wcos, atol=1e-7, rtol=0)
    torch.testing.assert_close(window, stft.window_mask.flatten(), atol=0, rtol=0)
    mel = slaney_mel_basis(c, c.n_fft // 2 + 1)
    torch.testing.assert_close(mel, ck.model.spectrogram.transform.mel_basis, atol=1e-8, rtol=1e-6)


# --- forward goldens ------------------------------------------------------------------------------------------------


def test_forward_equals_upstream():
    ck = checkpoint()
    golden = json.loads((FIXTURE / "forward" / "call0_inputs.json").read_text())
    frames, ids = window0(), torch.tensor([golden["decoder_input_ids"]])
    with torch.no_grad():
        mel = ck.model.spectrogram(frames)
        encoded = ck.model.encode(frames)
        logits = ck.model(frames=frames, decoder_input_ids=ids)[0].numpy()
    assert list(mel.shape) == golden["mel_shape"]
    np.testing.assert_allclose(mel[0, :8].numpy(), np.load(FIXTURE / "forward" / "call0_mel_first8.npy"), atol=1e-6)
    np.testing.assert_allclose(encoded[0].numpy(), np.load(FIXTURE / "forward" / "call0_encoder_out.npy"), atol=1e-6)
    np.testing.assert_allclose(logits[golden["logits_rows"]], np.load(FIXTURE / "forward" / "call0_logits_rows.npy"),
                               atol=1e-5)
    np.testing.assert_allclose(logits.max(-1), np.load(FIXTURE / "forward" / "call0_rowmax.npy"), atol=1e-5)
    assert logits.argmax(-1).tolist() == golden["argmax"]


def test_cached_decoding_equals_teacher_forcing():
    """Learned decoder positions follow the cache: token by token gives the teacher-forced logits."""
    ck = checkpoint()
    ids = torch.tensor([json.loads((FIXTURE / "forward" / "call0_inputs.json").read_text())["decoder_input_ids"]])
    with torch.no_grad():
        encoded = ck.model.encode(window0())
        full = ck.model(encoder_out=encoded, decoder_input_ids=ids)[0]
        state = ck.model.start_decoding(encoded, torch.ones_like(ids, dtype=torch.bool), 2048)
        steps = [ck.model.decode_step(ids[:, :5], state)]
        steps += [ck.model.decode_step(ids[:, i: i + 1], state) for i in range(5, ids.shape[1])]
    torch.testing.assert_close(torch.cat(steps), full[4:], atol=1e-5, rtol=0)


def test_encoder_refuses_a_window_of_the_wrong_length():
    ck = checkpoint()
    with pytest.raises(ValueError, match="1024 frames"):
        ck.model.encode(torch.zeros(1, 128 * 500))


# --- token layout ---------------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def tokenization() -> dict:
    return json.loads((FIXTURE / "tokenization.json").read_text())


MAPS = ["Soleily - Renatus (Gamu) [Normal].osu", "Soleily - Renatus (MMzz) [Futsuu].osu"]


def _stream(ctype, triplets, **kw) -> ContextStream:
    from engine.events import EventStream

    stream = EventStream([Event(EventType(t), int(v)) for t, v, _ in triplets], [int(x) for _, _, x in triplets])
    return ContextStream(ctype, stream, given=True, **kw)


def test_tokenizer_layout_is_v29s():
    tok = Tokenizer.from_file(CHECKPOINT / "tokenizer.json")
    assert tok.offset == 17 and (tok.vocab_size_out, tok.vocab_size_in) == (3667, 4340)
    assert tok.range[EventType.TIME_SHIFT].max_value == 818  # 8.184 s windows in 10 ms steps
    assert tok.range[EventType.POS].max_value == 33 * 29 - 1  # joint positions on the 32-px grid
    assert EventType.SONG_POSITION in tok.range and EventType.DIFFICULTY in tok.range


@pytest.mark.parametrize("name", MAPS)
def test_map_and_timing_events_equal_upstream(name, beatmaps_dir):
    from engine.beatmap import read_beatmap
    from engine.events import map_events, timing_events

    case = tokenization()[name]
    beatmap = read_beatmap(beatmaps_dir / name)
    flags = PRESETS["v29"].data
    ours = map_events(beatmap, flags, song_length_ms=case["song_length_ms"])
    assert [[e.type.value, e.value, t] for e, t in zip(*ours)] == case["map_events"]
    ours = timing_events(beatmap, flags, song_length_ms=case["song_length_ms"])
    assert [[e.type.value, e.value, t] for e, t in zip(*ours)] == case["timing_events"]


@pytest.mark.parametrize("name", MAPS)
def test_context_windows_equal_upstream(name, beatmaps_dir):
    from engine.beatmap import read_beatmap
    from engine.events import context_events

    golden = tokenization()
    meta, case = golden["_meta"], golden[name]
    tok = Tokenizer.from_file(CHECKPOINT / "tokenizer.json")
    flags = PRESETS["v29"].data
    layout = WindowLayout.for_preset(PRESETS["v29"])
    assert layout.window_ms == meta["miliseconds_per_sequence"] and layout.stride_ms == meta["miliseconds_per_stride"]
    assert layout.window_starts_ms(3) == meta["window_starts"]
    beatmap = read_beatmap(beatmaps_dir / name)
    streams = {C.MAP: case["map_events"], C.TIMING: case["timing_events"]}
    for w in case["windows"]:
        ctype, start, as_input = C(w["context_type"]), int(w["frame_time_ms"]), w["form"] == "in_context"
        cls = tuple(w["class_tokens"]) if w["class_tokens"] is not None else None
        if ctype in streams:
            stream = _stream(ctype, streams[ctype], class_tokens=cls if as_input else None)
        else:
            events = context_events(ctype, beatmap, flags, song_length_ms=case["song_length_ms"])
            stream = ContextStream(ctype, events, given=True)
        builder = PromptBuilder(tok, flags, plan_contexts(flags), window_ms=layout.window_ms,
                                song_length_ms=case["song_length_ms"], class_tokens=[])
        assert builder.context_ids(stream, start, as_input=as_input) == w["token_ids"], (ctype, w["form"], start)


# --- generation -----------------------------------------------------------------------------------------------------


def song_cut(tmp_path: Path) -> Path:
    """The 10 s song of the golden run: the shared click150.wav's first 441000 frames."""
    path = tmp_path / "click150_10s.wav"
    with wave.open(str(need(UPSTREAM / "audio" / "click150.wav"))) as src, wave.open(str(path), "wb") as dst:
        dst.setparams(src.getparams())
        dst.writeframes(src.readframes(441000))
    return path


@pytest.mark.slow
@pytest.mark.golden
def test_cli_generate_reproduces_upstream_greedy_run(tmp_path, monkeypatch, capsys):
    """``mapperator generate model_path=<tiny v29 folder>``: every decode call equals upstream's, token for token."""
    import engine.decoding
    from engine.beatmap import read_beatmap
    from mapperator_app.cli import main

    calls = []
    real = engine.decoding.decode

    def spy(model, tokenizer, frames, prompts, opts, stop, **kwargs):
        rows = real(model, tokenizer, frames, prompts, opts, stop, **kwargs)
        calls.extend(zip(prompts, rows))
        return rows

    monkeypatch.setattr(engine.decoding, "decode", spy)
    reference = need(UPSTREAM / "audio" / "click150_timing.osu")
    out = tmp_path / "out"
    out.mkdir()
    code = main(["generate", f"audio_path={song_cut(tmp_path)}", f"output_path={out}", f"model_path={CHECKPOINT}",
                 f"beatmap_path={reference}", "in_context=[TIMING]", "gamemode=0", "difficulty=5.0", "year=2023",
                 "do_sample=false", "seed=12345", "device=cpu", "precision=fp32", "generate_positions=false"])
    assert code == 0, capsys.readouterr()
    expected = json.loads((RUN / "generate_calls.json").read_text())
    assert len(calls) == len(expected) == 8
    for i, ((prompt, generated), golden) in enumerate(zip(calls, expected)):
        assert prompt == golden["prompt"][0], f"call {i}: prompt differs"
        assert generated == golden["generated"][0], f"call {i}: generated tokens differ"
    written = read_beatmap(next(out.glob("*.osu")))
    theirs = read_beatmap(RUN / "generated.osu")
    assert written.hit_objects == theirs.hit_objects == []
    assert written.timing_points == theirs.timing_points
    assert written.metadata.version == "Mapperatorinator V29.1"


def test_v29_preset_is_upstreams_inference_config():
    inf = PRESETS["v29"].inference
    assert inf.output_type == (C.TIMING, C.KIAI, C.MAP, C.SV)
    assert (inf.super_timing, inf.temperature, inf.top_p, inf.timing_leniency) == (True, 0.9, 0.9, 3)
    data = PRESETS["v29"].data
    assert (data.src_seq_len, data.tgt_seq_len, data.position_precision, data.position_split_axes) == (1024, 2048, 32,
                                                                                                      False)


@pytest.mark.slow
def test_v29_trains_from_scratch_and_saves_the_published_format(tmp_path, capsys):
    """A v29 model from scratch: plain Whisper with nnAudio mels projected to d_model, reloaded strictly as v29."""
    from engine.checkpoint import load_checkpoint
    from mapperator_app.cli import main
    from tests.test_training_data import make_mmrs_dataset

    data = make_mmrs_dataset(tmp_path / "mmrs", seconds=10)
    code = main(["train", "version=v29", f"train_dataset_path={data}", "d_model=16", "encoder_layers=1",
                 "decoder_layers=1", "attention_heads=2", "ffn_dim=32", "total_steps=2", "batch_size=2",
                 "use_accelerate=false", f"output_dir={tmp_path / 'out'}", "device=cpu"])
    assert code == 0, capsys.readouterr()
    ck = load_checkpoint(str(tmp_path / "out" / "checkpoint-2"))
    assert ck.version == "v29" and ck.config.backbone.flavour == WHISPER
    assert ck.config.spectrogram.implementation == NNAUDIO and ck.config.spectrogram.n_mels == 388
    assert ck.config.project_encoder_input and ck.config.backbone.num_mel_bins == 16
    stft = ck.model.spectrogram.transform.stft
    torch.testing.assert_close(stft.wsin, fourier_kernels(1024)[0], atol=1e-7, rtol=0)


@pytest.mark.slow
def test_maimod_scores_a_map_with_v29(tmp_path):
    """Upstream's MaiMod offers v29 but asserts on the SV context (as for v31/v32: "Logits length 0 does not match
    events length 12 for context ContextType.SV", seen running it on this checkpoint); here it scores the map."""
    from engine.modding import ModOptions, mod
    from engine.suggestions import Suggestion

    found = mod(ModOptions(beatmap_path=str(need(UPSTREAM / "tokenization" / "kimi_no_bouken.osu")),
                           audio_path=str(song_cut(tmp_path)), model_path=str(CHECKPOINT), device="cpu",
                           precision="fp32", rules=False, min_surprisal=0.0, max_per_category=0))
    assert found and all(isinstance(s, Suggestion) for s in found)  # random weights: every event is scored


def test_v29_positions_are_the_centres_of_its_32px_grid():
    """Without generate_positions, a V29 POS token becomes the centre of its 32-px cell (upstream's rescale)."""
    from engine.prompt import rescale_positions

    flags = PRESETS["v29"].data
    x_count = 768 // 32 + 256 // 32 + 1
    tokens = [Event(EventType.POS, v) for v in (0, 8 * x_count + 8, 28 * x_count + 32)]
    events, _ = rescale_positions(tokens, [0, 0, 0], flags)
    xy = [(events[i].value, events[i + 1].value) for i in range(0, len(events), 2)]
    assert xy == [(-256 + 16, -256 + 16), (16, 16), (768 + 16, 640 + 16)]
