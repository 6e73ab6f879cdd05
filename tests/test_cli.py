"""The `mapperator` command as users type it (a separate process, as from a shell)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from engine.beatmap import read_beatmap

from .conftest import REPO, UPSTREAM, need

TRAINED = UPSTREAM / "trained"


def mapperator(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    environment = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "mapperator_app.cli", *args], cwd=cwd or REPO, env=environment,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_generate_with_a_windows_style_path_and_config_file(tmp_path):
    """Spaces, brackets and an apostrophe in paths need no extra quoting; config=FILE.yaml sets the rest."""
    folder = tmp_path / "osu!" / "Songs" / "1 Synth - Song [TV Size] 'live'"
    folder.mkdir(parents=True)
    song = folder / "audio (final).wav"
    shutil.copy(need(TRAINED / "audio" / "synth150.wav"), song)
    config = tmp_path / "my settings.yaml"
    config.write_text("gamemode: 0\ndifficulty: 3.2\nmapper_id: 2\nyear: 2023\ndo_sample: false\nseed: 7\n")
    out = mapperator("generate", f"audio_path={song}", f"model_path={TRAINED / 'v32' / 'checkpoint'}",
                     f"config={config}", "device=cpu", "title=Song [TV Size]", "difficulty=3.2")
    assert out.returncode == 0, out.stderr
    written = [p for p in folder.glob("*.osu")]
    assert len(written) == 1 and f"Wrote {written[0]}" in out.stdout
    beatmap = read_beatmap(written[0])
    assert beatmap.metadata.title == "Song [TV Size]" and beatmap.hit_objects
    assert "seed=7" in beatmap.metadata.tags


@pytest.mark.parametrize("args,text", [
    (["generate", "audio_path=/no/such.mp3"], "audio file /no/such.mp3 not found"),
    (["generate", "difficulyt=3"], "unknown option 'difficulyt' (did you mean difficulty"),
    (["generate", "gamemode=osu"], "expected a whole number"),
    (["generate", "just-a-word"], "expected key=value"),
    (["download", "v31"], "mapperator download OliBomby/Mapperatorinator-v31"),
])
def test_errors_are_one_clear_line(args, text, tmp_path):
    out = mapperator(*args, env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert out.returncode == 2
    assert text in out.stderr.replace("\n", " ")
    assert "Traceback" not in out.stderr


def test_version_and_help():
    assert mapperator("--version").stdout.startswith("mapperator ")
    help_text = mapperator("--help").stdout
    for command in ("generate", "mod", "timing", "app", "download", "wizard", "train"):
        assert command in help_text


@pytest.mark.slow
def test_timing_command_writes_a_timing_map(tmp_path):
    out = mapperator("timing", f"audio_path={need(TRAINED / 'audio' / 'synth150.wav')}",
                     f"model_path={TRAINED / 'v32' / 'checkpoint'}", f"output_path={tmp_path}", "device=cpu")
    assert out.returncode == 0, out.stderr
    assert "150" in out.stdout and "605" in out.stdout
    (written,) = tmp_path.glob("*[[]Timing[]].osu")
    assert read_beatmap(written).timing_points[0].time == 605
