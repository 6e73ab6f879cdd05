"""``mapperator mapset``: several difficulties (or variants) of one song in one job, each map checked.

    mapperator mapset audio_path=song.mp3 gamemode=0 difficulties=[2,3.5,5,6.5]
    mapperator mapset audio_path=song.mp3 difficulty=5 num_variants=4 seed=7 --json
    mapperator generate audio_path=song.mp3 difficulty=5 num_variants=4        (the same as the line above)
"""
from __future__ import annotations

import json
import sys
from typing import Sequence


def cmd_mapset(words: Sequence[str], as_json: bool = False) -> int:
    import engine

    from .cli import _Bar, result_json
    from .forms import result_check

    options = engine.parse_overrides(engine.MapsetOptions, words)
    bar = _Bar("mapset")
    try:
        result = engine.generate_mapset(options, progress=bar)
    finally:
        bar.close()
    checks = [result_check(row) for row in result.maps]
    if as_json:
        print(json.dumps(mapset_json(result, checks, result_json), indent=1, ensure_ascii=False, default=str))
        return 0
    for row in result.maps:
        for warning in row.warnings:
            print(f"warning: [{row.beatmap.metadata.version}] {warning}", file=sys.stderr)
    what = "variants" if result.kind == "variants" else "difficulties"
    print(f"Wrote {len(result.maps)} {what} to {result.path}")
    for row, check in zip(result.maps, checks):
        print(f"  [{row.beatmap.metadata.version}] seed {row.seed}: {check.summary_line()}")
    print(f"  {result.tokens} tokens in {result.seconds:.1f} s")
    return 0


def mapset_json(result, checks, result_json) -> dict:
    """The job and, per map, what ``generate --json`` prints for one."""
    return {"kind": result.kind, "path": str(result.path), "tokens": result.tokens,
            "seconds": round(result.seconds, 3), "warnings": list(result.warnings),
            "maps": [result_json(row, check) for row, check in zip(result.maps, checks)]}
