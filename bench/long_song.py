"""Long songs: peak memory and seconds per song minute for synthesized click songs of several lengths.

Each length runs in its own subprocess so its peak RSS (VmHWM) is clean. Not run by the test suite:
    .venv/bin/python -m bench.long_song 2 10 30

With the tiny v32 fixture and default options (timing pass + map pass, lookback 0.5 / lookahead 0.4) a loaded
2-core machine takes about 70 s per song minute, so 30 minutes run for about 35 minutes.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

FIXTURES = Path("/work/shared/fixtures/upstream/trained")
CHECKPOINT = FIXTURES / "v32" / "checkpoint"


def click_song(path: Path, minutes: float, rate: int = 22050, bpm: float = 150.0) -> Path:
    """A mono 16-bit click track (a short decaying tone on each beat), written block by block."""
    import soundfile as sf

    beat = int(rate * 60 / bpm)
    click = np.zeros(beat, np.float32)
    n = int(0.03 * rate)
    click[:n] = np.sin(2 * np.pi * 1000 * np.arange(n) / rate) * np.exp(-np.arange(n) / (0.006 * rate))
    beats = int(minutes * 60 * rate / beat)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for start in range(0, beats, 256):
            f.write(np.tile(click, min(256, beats - start)) * 0.8)
    return path


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(song: str, out: str, checkpoint: str) -> None:
    import time

    import engine
    from engine.options import GenerateOptions

    fractions: list[float] = []
    start = time.perf_counter()
    engine.generate(GenerateOptions(audio_path=song, output_path=out, model_path=checkpoint, gamemode=0,
                                    do_sample=False, seed=1, device="cpu"),
                    progress=lambda p: fractions.append(p.fraction))
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(),
                      "updates": len(fractions)}))


def measure(minutes: float, checkpoint: Path = CHECKPOINT) -> dict:
    """Generate on a ``minutes``-long click song in a fresh interpreter; its seconds and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        song = click_song(Path(tmp) / "clicks.wav", minutes)
        code = f"from bench.long_song import _child; _child({str(song)!r}, {str(Path(tmp) / 'out')!r}, " \
               f"{str(checkpoint)!r})"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"minutes": minutes, **result, "seconds_per_minute": result["seconds"] / minutes}


if __name__ == "__main__":
    for m in [float(a) for a in sys.argv[1:]] or [2.0, 10.0, 30.0]:
        r = measure(m)
        print(f"{m:5.1f} min: peak RSS {r['peak_rss_mb']:7.1f} MB, {r['seconds']:7.1f} s "
              f"({r['seconds_per_minute']:.1f} s per song minute)", flush=True)
