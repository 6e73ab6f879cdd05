"""``mapperator mapset`` (and ``generate num_variants=N``): one check line per map, --json the whole."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import engine
from engine.beatmap import read_beatmap
from engine.generation import GenerationResult
from engine.mapset_job import MapsetResult
from engine.options import GenerateOptions
from mapperator_app import cli

from .conftest import UPSTREAM, need

TRAINED = UPSTREAM / "trained"
SONG = TRAINED / "audio" / "synth150.wav"
V32 = TRAINED / "v32" / "checkpoint"
STD_MAP = TRAINED / "audio" / "synth150_std.osu"


def fake_result(tmp_path) -> MapsetResult:
    """Two real maps as a mapset result: the hand-made one, and a copy with every object doubled."""
    maps = []
    for i, (stars, name) in enumerate([(3.2, "Hard"), (5.0, "Insane")]):
        beatmap = read_beatmap(need(STD_MAP))
        beatmap.metadata.version = name
        if i:
            beatmap.hit_objects = sorted(beatmap.hit_objects * 2, key=lambda o: o.time)
        path = tmp_path / f"{name}.osu"
        maps.append(GenerationResult(beatmap, path, path, GenerateOptions(difficulty=stars, seed=7 + i), "v32", 7 + i))
    return MapsetResult("mapset", tmp_path, maps, tokens=100, seconds=2.0)


def test_one_check_line_per_map(tmp_path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(engine, "generate_mapset", lambda options, progress=None: seen.append(options) or
                        fake_result(tmp_path))
    assert cli.main(["mapset", f"audio_path={SONG}", "difficulties=[3.2,5]", "gamemodes=[0]"]) == 0
    assert seen[0].difficulties == (3.2, 5.0) and seen[0].gamemodes == (0,)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Wrote 2 difficulties to {tmp_path}"
    assert out[1].startswith("  [Hard] seed 7: ") and "(asked 3.2)" in out[1] and " 0 doubled" in out[1]
    assert out[2].startswith("  [Insane] seed 8: ") and "(asked 5)" in out[2] and " 65 doubled" in out[2]


def test_generate_with_num_variants_is_a_variants_job(tmp_path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(engine, "generate_mapset", lambda options, progress=None: seen.append(options) or
                        fake_result(tmp_path))
    assert cli.main(["generate", f"audio_path={SONG}", "difficulty=5", "num_variants=3", "--json"]) == 0
    assert seen[0].num_variants == 3 and seen[0].difficulty == 5
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "mapset" and [m["seed"] for m in data["maps"]] == [7, 8]
    assert data["maps"][1]["check"]["doubled"] == 65 and data["maps"][0]["check"]["asked_difficulty"] == 3.2


def test_a_bad_request_is_an_error_line(capsys):
    assert cli.main(["mapset", f"audio_path={SONG}", "difficulty=3", "difficulties=[2,4]"]) == 2
    assert "either difficulty or difficulties" in capsys.readouterr().err


@pytest.mark.slow
def test_mapset_command_writes_the_set(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["mapset", f"audio_path={need(SONG)}", f"model_path={need(V32)}", "gamemode=0",
                     "difficulties=[2,6]", "mapper_id=2", "year=2023", "do_sample=false", "device=cpu",
                     "precision=fp32", "end_time=6000", f"output_path={out}", "seed=4", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "mapset" and Path(data["path"]) == out and len(data["maps"]) == 2
    assert [m["seed"] for m in data["maps"]] == [4, 5]
    for m in data["maps"]:
        assert Path(m["path"]).is_file() and m["check"]["object_count"] == m["objects"] > 0
        assert m["check"]["red_lines"] and m["options"]["difficulty"] in (2.0, 6.0)
    assert len(list(out.glob("*.osu"))) == 2 and (out / SONG.name).is_file()
