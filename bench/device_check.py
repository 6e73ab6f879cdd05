"""Fidelity on another device or precision: upstream goldens replayed on e.g. a CUDA GPU.

    python bench/device_check.py --device cuda

Prints, per precision, the largest logit difference against upstream's fp32 CPU goldens (forward goldens), and
whether greedy generation with the trained fixture checkpoints reproduces upstream's tokens. Needs the shared
fixtures (../shared or MAPPERATOR_SHARED).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("MAPPERATOR_SHARED", ROOT.parent / "shared")) / "fixtures" / "upstream"

import engine  # noqa: E402
import engine.decoding  # noqa: E402
from engine.checkpoint import load_checkpoint  # noqa: E402
from engine.runtime import weight_dtype  # noqa: E402

FORWARD = [("v30", "aimod_teacher_forced"), ("v32", "timingctx_call0_map")]
RUNS = {
    "v30/pipeline_greedy_std": dict(gamemode=0, difficulty=3.2, mapper_id=2),
    "v32/pipeline_greedy_std": dict(gamemode=0, difficulty=3.2, mapper_id=2, year=2023),
    "v32/pipeline_greedy_taiko": dict(gamemode=1, difficulty=1.16, mapper_id=1002, scroll_speed_ratio=0.0, year=2023),
    "v32/pipeline_greedy_mania": dict(gamemode=3, difficulty=1.04, mapper_id=3002, keycount=4, scroll_speed_ratio=0.0,
                                      hold_note_ratio=0.0, year=2023),
}


@torch.inference_mode()
def forward_diffs(device: torch.device, precision: str) -> None:
    for version, name in FORWARD:
        ck = load_checkpoint(str(SHARED / version / "checkpoint"), device=device, dtype=weight_dtype(precision))
        inputs = json.loads((SHARED / version / "forward" / f"{name}_inputs.json").read_text())
        ids = torch.tensor(inputs["decoder_input_ids"], device=device).reshape(1, -1)
        cond = {k: torch.tensor(v, device=device) for k, v in inputs.get("cond", {}).items()}
        frames = torch.from_numpy(np.load(SHARED / version / "preprocess" / "window0_samples.npy"))[None].to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=precision == "amp"):
            logits = ck.model(frames, decoder_input_ids=ids, causal=version != "v32", **cond)[0].float().cpu().numpy()
        golden = np.load(SHARED / version / "forward" / f"{name}_logits.npy")
        same = (logits.argmax(-1) == golden.argmax(-1)).mean()
        print(f"  forward {version}/{name:<22} max |logit diff| {np.abs(logits - golden).max():.2e}, argmax equal {same:.1%}")


def generation(device: torch.device, precision: str) -> None:
    real = engine.decoding.decode
    for run, extra in RUNS.items():
        calls = json.loads((SHARED / "trained" / run / "generate_calls.json").read_text())
        expected = [ast.literal_eval(c["generated"]) if isinstance(c["generated"], str) else c["generated"] for c in calls]
        expected = [g[0] if g and isinstance(g[0], list) else g for g in expected]
        seen = []

        def spy(*args, **kwargs):
            rows = real(*args, **kwargs)
            seen.extend(rows)
            return rows

        engine.decoding.decode = spy
        try:
            with tempfile.TemporaryDirectory() as out:
                t = time.perf_counter()
                result = engine.generate(engine.GenerateOptions(
                    audio_path=str(SHARED / "trained" / "audio" / "synth150.wav"), output_path=out,
                    model_path=str(SHARED / "trained" / run.split("/")[0] / "checkpoint"), do_sample=False, seed=12345,
                    device=str(device), precision=precision, **extra))
                wall = time.perf_counter() - t
        finally:
            engine.decoding.decode = real
        equal = sum(a == b for a, b in zip(seen, expected))
        print(f"  generate {run:<30} calls with upstream's tokens {equal}/{len(expected)}, "
              f"{len(result.beatmap.hit_objects)} objects, {wall:.1f} s, {result.tokens_per_second:.0f} tok/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precisions", nargs="*", default=["fp32", "bf16", "amp"])
    args = ap.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}")
    for precision in args.precisions:
        print(f"precision {precision}")
        forward_diffs(device, precision)
        generation(device, precision)


if __name__ == "__main__":
    main()
