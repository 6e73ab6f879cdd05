"""Rule checks: time per hit object on synthetic osu!standard maps of growing size.

    python bench/rules.py [--sizes 5000 20000 80000] [--repeat 3]

The maps (:func:`synthetic_map`) mix what the checks look at: circles in stacks and near the
screen edges, Bezier/linear/perfect-circle sliders (some with repeats), spinners, slightly
unsnapped objects, a red line every 1,000 objects and a green line every four. Every check runs
(``engine.rules.check_beatmap``); the figure to watch is microseconds per object, which stays flat
when the checks are linear in the number of objects.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.beatmap import Beatmap, parse_beatmap  # noqa: E402

BEATS_MS = (400.0, 300.0, 500.0)  # the red lines cycle through 150, 200 and 120 BPM


def synthetic_map(objects: int, *, seed: int = 1) -> Beatmap:
    """An osu!standard map of ``objects`` hit objects (see the module docstring).

    Objects follow each other every half beat; sliders last half a beat (a full beat with a repeat),
    so only the objects shifted on purpose (one in 25) are unsnapped.
    """
    import random

    rng = random.Random(seed)
    timing, lines = [], []
    time_ms, sv, prev_x, prev_y = 1000.0, 1.0, 256, 192
    for i in range(objects):
        beat = BEATS_MS[i // 1000 % len(BEATS_MS)]
        if i % 1000 == 0:
            timing.append(f"{time_ms:g},{beat:g},4,2,0,60,1,0")
        if i % 4 == 0:
            sv = (0.8, 1.0, 1.25, 1.6)[i // 4 % 4]
            timing.append(f"{time_ms:g},{-100 / sv:g},4,2,0,{50 + i % 40},0,{i // 64 % 2}")
        t = int(time_ms) + (rng.choice((1, 2)) if i % 25 == 7 else 0)
        x, y = rng.randint(0, 512), rng.randint(0, 384)
        if i % 50 == 13:  # near or past an edge
            x, y = rng.choice((-40, 560)), rng.randint(-40, 420)
        kind = i % 10
        step = beat / 2
        if i % 500 == 499:
            lines.append(f"256,192,{t},12,0,{t + int(beat * 2)}")
            step = beat * 2.5
        elif kind in (1, 5):
            slides = 1 + (i % 7 == 0)
            length = 70 * sv  # half a beat at SliderMultiplier 1.4
            angle = rng.uniform(0, 6.283)
            x2, y2 = int(x + length * math.cos(angle)), int(y + length * math.sin(angle))
            curve = ("B", "L", "P")[i % 3]
            middle = f"{(x + x2) // 2 + rng.randint(-15, 15)}:{(y + y2) // 2 + rng.randint(-15, 15)}|"
            path = f"{curve}|{middle if curve != 'L' else ''}{x2}:{y2}"
            lines.append(f"{x},{y},{t},2,0,{path},{slides},{length:g}")
            step = beat / 2 * (slides + 1)
        elif kind in (2, 3):  # a small stack on the previous circle's spot
            lines.append(f"{x if kind == 2 else prev_x},{y if kind == 2 else prev_y},{t},1,0,0:0:0:0:")
        else:
            lines.append(f"{x},{y},{t},{5 if kind == 0 else 1},0,0:0:0:0:")
        prev_x, prev_y = x, y
        time_ms += step
    text = "\n".join(["osu file format v14", "", "[General]", "AudioFilename: audio.mp3", "Mode: 0", "",
                      "[Difficulty]", "HPDrainRate:5", "CircleSize:4", "OverallDifficulty:8", "ApproachRate:9",
                      "SliderMultiplier:1.4", "SliderTickRate:1", "", "[TimingPoints]", *timing, "",
                      "[HitObjects]", *lines, ""])
    return parse_beatmap(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 80000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from engine.rules import RULES, check_beatmap

    for size in args.sizes:
        per_rule = {}
        best = float("inf")
        for _ in range(args.repeat):
            beatmap = synthetic_map(size)  # fresh: nothing cached from the previous run
            start = time.perf_counter()
            found = check_beatmap(beatmap)
            best = min(best, time.perf_counter() - start)
        for rule_id in RULES:
            beatmap = synthetic_map(size)
            start = time.perf_counter()
            check_beatmap(beatmap, checks=[rule_id])
            per_rule[rule_id] = time.perf_counter() - start
        slowest = ", ".join(f"{r} {t * 1e6 / size:.0f}" for r, t in sorted(per_rule.items(), key=lambda p: -p[1])[:3])
        print(f"{size:>7} objects: {best:6.2f} s, {best * 1e6 / size:5.0f} us/object, {len(found)} findings "
              f"(slowest alone, us/object: {slowest})")


if __name__ == "__main__":
    main()
