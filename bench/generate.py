"""Generation speed: tokens per second and seconds per minute of audio.

    python bench/generate.py [--device cpu|cuda] [--precision fp32|bf16|amp] [--threads N] [--super-timing]

1. Tiny trained fixture checkpoint (../shared/fixtures/upstream/trained/v32): a full ``engine.generate`` run on a
   real song (Debian's asc-music, else the fixture song; ``--audio`` picks one), wall time and tokens. The tiny
   model only knows its training song: on other music some of its windows never close their context and
   decode to the length cap, which makes super timing (20 passes, windows batched) far slower than a
   published model would be. ``--audio ../shared/fixtures/upstream/trained/audio/synth150.wav`` times it on
   the song it knows.
2. Random weights at the published sizes (v32 = varwhisper-small, v32-mini = varwhisper-base): random weights
   emit junk of arbitrary length, so the decoder is timed for a fixed number of tokens per window and the
   result is scaled to the token count of a real ranked map (tokenization golden ``kimi_no_bouken``: its
   events per minute), timing pass included.
"""
from __future__ import annotations

import argparse
import os
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.forward import real_size  # noqa: E402
from engine.audio import audio_duration_ms  # noqa: E402
from engine.checkpoint import new_model  # noqa: E402
from engine.options import GenerateOptions  # noqa: E402

SHARED = Path(os.environ.get("MAPPERATOR_SHARED", ROOT.parent / "shared")) / "fixtures" / "upstream"
ASC = Path("/usr/share/games/asc/music")


def song(args) -> Path:
    if args.audio:
        return Path(args.audio)
    songs = sorted(ASC.glob("*.mp3"))
    return songs[0] if songs else SHARED / "trained" / "audio" / "synth150.wav"


def bench_tiny(args) -> None:
    import engine

    audio = song(args)
    minutes = audio_duration_ms(audio) / 60000
    for super_timing in ([False, True] if args.super_timing else [False]):
        with tempfile.TemporaryDirectory() as out:
            opts = GenerateOptions(audio_path=str(audio), output_path=out, model_path=str(SHARED / "trained" / "v32" / "checkpoint"),
                                   gamemode=0, difficulty=3.2, do_sample=False, seed=1, device=args.device,
                                   precision=args.precision, super_timing=super_timing)
            t = time.perf_counter()
            result = engine.generate(opts)
            wall = time.perf_counter() - t
        label = "tiny v32" + (" + super timing" if super_timing else "")
        print(f"{label:<28} {audio.name} ({minutes:.2f} min): {wall:7.1f} s wall, {wall / minutes:7.1f} s per minute, "
              f"{result.tokens} tokens, {result.tokens_per_second:7.1f} tok/s")


def map_tokens_per_minute() -> float:
    golden = SHARED / "tokenization" / "v32.json"
    if not golden.exists():
        return 4000.0
    data = json.loads(golden.read_text())["kimi_no_bouken.osu"]
    return len(data["map_events"]) / (data["song_length_ms"] / 60000)


@torch.inference_mode()
def bench_real(name: str, args) -> None:
    from engine.windows import WindowLayout
    from engine.presets import PRESETS

    device = torch.device(args.device)
    config = real_size(name)
    model = new_model(config, seed=0).to(device).eval()
    if args.precision == "bf16":
        spectrogram = model.spectrogram
        model.to(torch.bfloat16)
        spectrogram.float()
    layout = WindowLayout.for_preset(PRESETS[name])
    frames = torch.randn(1, layout.window_samples, device=device)
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=args.precision == "amp")
    with autocast:
        model.encode(frames)
        t = time.perf_counter()
        for _ in range(3):
            encoder_out = model.encode(frames)
        if device.type == "cuda":
            torch.cuda.synchronize()
        encode_s = (time.perf_counter() - t) / 3
        prompt = torch.randint(3, config.vocab_size_out, (1, 64), device=device)
        state = model.start_decoding(encoder_out, torch.ones(1, 64, dtype=torch.bool, device=device), 64 + args.tokens + 2)
        model.decode_step(prompt, state)
        step = prompt[:, -1:]
        t = time.perf_counter()
        for _ in range(args.tokens):
            model.decode_step(step, state)
        if device.type == "cuda":
            torch.cuda.synchronize()
        token_s = (time.perf_counter() - t) / args.tokens
    windows_per_minute = 60000 / layout.stride_ms
    tokens = map_tokens_per_minute() * 1.2  # + timing pass (about one beat event pair per beat)
    per_minute = 2 * windows_per_minute * encode_s + tokens * token_s
    print(f"{name + ' (random)':<28} encoder {encode_s * 1000:7.1f} ms/window, decoder {1 / token_s:7.1f} tok/s -> "
          f"about {per_minute:7.1f} s per minute of a real map ({tokens:.0f} tokens, {2 * windows_per_minute:.0f} windows)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", choices=("fp32", "bf16", "amp"), default="fp32")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--tokens", type=int, default=128, help="decoder steps timed per real-size model")
    ap.add_argument("--super-timing", action="store_true", help="also time a super-timing run (tiny model)")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--audio", help="song for the tiny-model runs (default: the first asc-music mp3, else the "
                                    "fixture's synth150.wav, the song the tiny model was trained on)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, precision {args.precision}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    if (SHARED / "trained" / "v32" / "checkpoint").is_dir():
        bench_tiny(args)
    if not args.skip_real:
        for name in ("v32", "v32-mini"):
            bench_real(name, args)


if __name__ == "__main__":
    main()
