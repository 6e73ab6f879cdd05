"""The recorded upstream runs the golden tests replay: one list, each test takes the runs it needs.

Runs are folders of the shared fixtures (``fixtures/upstream``): ``trained/<version>/<run>`` were made with
trained tiny checkpoints on the synthetic song, ``<version>/<run>`` with random-weight stand-ins.
"""
from __future__ import annotations

from tests.conftest import UPSTREAM

SONG_MAP = UPSTREAM / "trained" / "audio" / "synth150_std.osu"

# "<version>/<run>" under trained/ -> the generate options upstream's run used (besides greedy decoding, the seed
# and the year, which every test sets alike)
TRAINED_RUNS = {
    "v30/pipeline_greedy_std": dict(gamemode=0, difficulty=3.2, mapper_id=2),
    # Upstream passed mapper_id=2, which the v31 stand-in vocabulary does not know; it fell back to the
    # "unknown mapper" row, which is what no mapper gives (we refuse unknown mappers instead).
    "v31/pipeline_greedy_std": dict(gamemode=0, difficulty=3.2),
    "v31/pipeline_greedy_std_timingctx": dict(gamemode=0, difficulty=3.2, in_context=("TIMING",),
                                              beatmap_path=str(SONG_MAP)),
    "v32/pipeline_greedy_std": dict(gamemode=0, difficulty=3.2, mapper_id=2),
    "v32/pipeline_greedy_taiko": dict(gamemode=1, difficulty=1.16, mapper_id=1002, scroll_speed_ratio=0.0),
    "v32/pipeline_greedy_catch": dict(gamemode=2, difficulty=1.84, mapper_id=2002),
    "v32/pipeline_greedy_mania": dict(gamemode=3, difficulty=1.04, mapper_id=3002, keycount=4,
                                      scroll_speed_ratio=0.0, hold_note_ratio=0.0),
}

# (folder, run) of the random-weight runs
RANDOM_WEIGHT_RUNS = [
    ("v30", "pipeline_greedy"),
    ("v30", "pipeline_sample"),
    ("v31", "pipeline_greedy"),
    ("v31", "pipeline_sample"),
    ("v31", "pipeline_greedy_timingctx"),
    ("v32", "pipeline_greedy"),
    ("v32", "pipeline_sample"),
    ("v32", "pipeline_greedy_timingctx"),
]


def all_runs() -> list[tuple[str, str]]:
    """(folder, run) of every recorded run, random-weight ones first."""
    trained = [(f"trained/{run.split('/')[0]}", run.split("/")[1]) for run in TRAINED_RUNS]
    return RANDOM_WEIGHT_RUNS + trained
