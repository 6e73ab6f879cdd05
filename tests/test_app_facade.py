"""The engine's facade as the app uses it: one checkpoint-complete rule, one game-mode table, no option that
does nothing, and the Timing tab's target."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import engine
from engine import CheckpointState, GenerateOptions, OptionError, checkpoint_state, gamemode_index, parse_overrides
from mapperator_app import forms

from .conftest import UPSTREAM, need

TRAINED = UPSTREAM / "trained"


def _folder(tmp_path: Path, *names: str, index: dict | None = None) -> Path:
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    if index is not None:
        (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": index}), encoding="utf-8")
    return tmp_path


def test_a_real_checkpoint_is_complete():
    assert checkpoint_state(need(TRAINED / "v32" / "checkpoint")) is CheckpointState.COMPLETE


@pytest.mark.parametrize("names, index, state", [
    (("config.json", "tokenizer.json", "model.safetensors"), None, CheckpointState.COMPLETE),
    # shards without an index load (the loader globs model-*.safetensors), so they count as complete
    (("config.json", "tokenizer.json", "model-00001-of-00002.safetensors"), None, CheckpointState.COMPLETE),
    (("config.json", "tokenizer.json", "model-1.safetensors", "model-2.safetensors"),
     {"a": "model-1.safetensors", "b": "model-2.safetensors"}, CheckpointState.COMPLETE),
    # an index naming a shard that is not here is an interrupted download
    (("config.json", "tokenizer.json", "model-1.safetensors"),
     {"a": "model-1.safetensors", "b": "model-2.safetensors"}, CheckpointState.PARTIAL),
    (("config.json", "tokenizer.json"), None, CheckpointState.PARTIAL),
    (("model.safetensors",), None, CheckpointState.PARTIAL),
    (("README.md",), None, CheckpointState.MISSING),
])
def test_checkpoint_state_rule(tmp_path, names, index, state):
    assert checkpoint_state(_folder(tmp_path, *names, index=index)) is state


def test_a_damaged_index_is_not_complete(tmp_path):
    folder = _folder(tmp_path, "config.json", "tokenizer.json", "model-1.safetensors")
    (folder / "model.safetensors.index.json").write_text("{not json", encoding="utf-8")
    assert checkpoint_state(folder) is CheckpointState.PARTIAL
    assert checkpoint_state(tmp_path / "nothing") is CheckpointState.MISSING


def test_one_game_mode_table():
    assert engine.GAMEMODE_NAMES == {0: "osu!", 1: "taiko", 2: "catch", 3: "mania"}
    assert forms.GAMEMODES == list(engine.GAMEMODE_NAMES.values())
    assert [gamemode_index(v) for v in ("osu!", "std", "Taiko", "ctb", "fruits", "mania", 3, "2", 1.0, "")] == \
        [0, 0, 1, 2, 2, 3, 3, 2, 1, None]
    for bad in ("piano", 4, 1.5, True):
        with pytest.raises(OptionError, match="game mode"):
            gamemode_index(bad)


def test_retired_upstream_options_are_accepted_only_at_their_default(tmp_path):
    config = tmp_path / "upstream.yaml"
    config.write_text("parallel: false\ntimer_num_beams: 1\ndifficulty: 5\n", encoding="utf-8")
    options = parse_overrides(GenerateOptions, [f"config={config}", "parallel=false", "timer_num_beams=1"])
    assert options.difficulty == 5 and not hasattr(options, "parallel") and not hasattr(options, "timer_num_beams")
    with pytest.raises(OptionError, match="parallel=true .* not supported"):
        parse_overrides(GenerateOptions, ["parallel=true"])
    with pytest.raises(OptionError, match="timer_num_beams .* not supported"):
        parse_overrides(GenerateOptions, ["timer_num_beams=4"])
    with pytest.raises(OptionError, match="timer_num_beams"):
        forms.generate_options({"timer_num_beams": "2"})


def test_timing_target(tmp_path):
    from mapperator_app.tabs.timing import timing_target

    song = tmp_path / "song.mp3"
    assert timing_target("", str(song)) == str(tmp_path)  # the song's folder: the .osu gets a map's name
    assert timing_target(str(tmp_path), str(song)) == str(tmp_path)
    assert timing_target(str(tmp_path / "mine"), str(song)) == str(tmp_path / "mine.osu")
    assert timing_target(str(tmp_path / "mine.osu"), str(song)) == str(tmp_path / "mine.osu")
    with pytest.raises(OptionError, match="save path"):
        timing_target(str(tmp_path / "missing" / "x.osu"), str(song))
