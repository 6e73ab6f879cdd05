"""``mapperator mod``: the report, --json, and errors, on upstream's damaged MaiMod map."""
from __future__ import annotations

import json

import pytest

import engine
from mapperator_app import cli, logs
from tests.conftest import UPSTREAM, need

TRAINED = UPSTREAM / "trained"
V30 = TRAINED / "v30" / "checkpoint"
DAMAGED = TRAINED / "v30" / "maimod" / "std_damaged" / "synth150_std_damaged.osu"
SONG = TRAINED / "audio" / "synth150.wav"


@pytest.fixture(autouse=True)
def log_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "log_dir", lambda: tmp_path / "logs")


def words(*extra: str) -> list[str]:
    return ["mod", f"beatmap_path={need(DAMAGED)}", f"audio_path={need(SONG)}", f"model_path={need(V30)}",
            "device=cpu", "precision=fp32", "rules=false", *extra]  # the figures below are fp32's


def test_report_groups_by_category(capsys):
    assert cli.main(words()) == 0  # suggestions are not an error
    out = capsys.readouterr().out
    lines = out.splitlines()
    headers = [line for line in lines if line.endswith(":") and not line.startswith(" ")]
    assert headers == ["Compose:", "Hit Sounds:", "Misc:", "Rhythm:", "Timing:"]
    assert "(3) 00:13:400 (9) (Circle) - Expected distance 167 to the previous Circle instead of 149." in out
    assert "(12) 00:14:200 (11) (Last Anchor) - Expected a Circle instead of a Last Anchor." in out
    rhythm = lines[lines.index("Rhythm:") + 1: lines.index("Timing:")]
    assert [line.split()[1] for line in rhythm if line.strip()] == [
        "00:03:430", "00:09:775", "00:11:800", "00:14:200", "00:15:000"]  # chronological
    assert lines[-1] == "Found 10 suggestions (1 warning, 9 minor; 10 from MaiMod)."


def test_report_limits_each_category(capsys):
    assert cli.main(words("max_per_category=2")) == 0
    out = capsys.readouterr().out
    assert "... 3 more (max_per_category=0 shows all)" in out  # Rhythm has 5
    assert "00:14:200" not in out
    assert out.splitlines()[-1].startswith("Found 10 suggestions")


def test_json_lists_every_suggestion(capsys):
    assert cli.main(["mod", "--json", *words()[1:]]) == 0
    items = json.loads(capsys.readouterr().out)
    direct = engine.mod(engine.ModOptions(beatmap_path=str(DAMAGED), audio_path=str(SONG), model_path=str(V30),
                                          rules=False, device="cpu", precision="fp32"))
    assert items == [s.to_dict() for s in direct]
    assert len(items) == 10
    first = items[0]
    assert first["source"] == "ai" and first["severity"] == "minor" and first["category"] == "Rhythm"
    assert first["timestamp"] == "00:03:430 (8) - " and first["actual"] == "1/13" and first["expected"] == "1/1"


def test_errors_are_one_line_with_exit_code_2(capsys, tmp_path):
    assert cli.main(["mod", f"beatmap_path={tmp_path / 'missing.osu'}"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "file not found" in err and "Traceback" not in err
    assert cli.main(["mod", "audio_path=song.mp3"]) == 2
    assert "beatmap_path is required" in capsys.readouterr().err
    assert cli.main(["mod", f"beatmap_path={DAMAGED}", "sugestions=3"]) == 2
    assert "unknown option" in capsys.readouterr().err
