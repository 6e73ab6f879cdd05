"""engine.mod: finding the song, bad input, cancelling, and merging MaiMod with the rule checks."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

import engine
from engine.errors import AudioError, BeatmapError, Cancelled, OptionError
from engine.suggestions import Source, sort_suggestions
from tests.conftest import EDGE_CASES, UPSTREAM, need

TRAINED = UPSTREAM / "trained"
V30 = TRAINED / "v30" / "checkpoint"
DAMAGED = TRAINED / "v30" / "maimod" / "std_damaged" / "synth150_std_damaged.osu"
SONG = TRAINED / "audio" / "synth150.wav"


@pytest.fixture
def map_folder(tmp_path) -> Path:
    """The damaged map with its song beside it (AudioFilename: synth150.wav)."""
    shutil.copy(need(DAMAGED), tmp_path / "map.osu")
    shutil.copy(need(SONG), tmp_path / "synth150.wav")
    return tmp_path


def test_mod_finds_the_song_from_audio_filename(map_folder):
    found = engine.mod(engine.ModOptions(beatmap_path=str(map_folder / "map.osu"), model_path=str(need(V30)),
                                         rules=False, device="cpu"))
    explicit = engine.mod(engine.ModOptions(beatmap_path=str(need(DAMAGED)), audio_path=str(need(SONG)),
                                            model_path=str(V30), rules=False, device="cpu"))
    assert len(found) == 10
    assert [s.to_dict() for s in found] == [s.to_dict() for s in explicit]
    assert all(s.source == Source.AI for s in found)


def test_a_silent_song_is_named_in_the_suggestions_in_the_users_language(map_folder):
    """MaiMod judges the map against its song: a silent (or cut-off) song makes the AI's suggestions
    meaningless, so the table says so instead of leaving it to a log nobody reads."""
    import numpy as np
    import soundfile as sf

    from mapperator_app import forms

    song = map_folder / "synth150.wav"
    sf.write(song, np.zeros(16000 * 30), 16000, subtype="PCM_16")
    found = engine.mod(engine.ModOptions(beatmap_path=str(map_folder / "map.osu"), model_path=str(need(V30)),
                                         rules=False, device="cpu"))
    notes = [s for s in found if s.check == "song-audio"]
    assert [(n.category, n.severity.value, str(n.message)) for n in notes] == [
        ("Files", "warning", f"{song}: the audio is completely silent")]
    row = forms.suggestion_records(notes, "fr")[0]
    assert row["message"] == f"{song} : l'audio est entièrement silencieux"


def test_mod_reports_progress_and_stops_when_cancelled(map_folder):
    stages = []
    engine.mod(engine.ModOptions(beatmap_path=str(map_folder / "map.osu"), model_path=str(need(V30)), rules=False,
                                 device="cpu"), progress=stages.append)
    fractions = [p.fraction for p in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("Scor" in p.stage for p in stages)

    cancel = threading.Event()

    def cancel_while_scoring(p):
        if "Scoring" in p.stage:
            cancel.set()

    with pytest.raises(Cancelled):
        engine.mod(engine.ModOptions(beatmap_path=str(map_folder / "map.osu"), model_path=str(V30), rules=False,
                                     device="cpu"), progress=cancel_while_scoring, cancel=cancel)


def test_mod_merges_ai_and_rule_suggestions(map_folder):
    pytest.importorskip("engine.rules", reason="engine.rules (the rule checks) is not in this checkout")
    both = engine.mod(engine.ModOptions(beatmap_path=str(map_folder / "map.osu"), model_path=str(need(V30)),
                                        device="cpu"))
    ai = engine.mod(engine.ModOptions(beatmap_path=str(map_folder / "map.osu"), model_path=str(V30), rules=False,
                                      device="cpu"))
    rules = engine.mod(engine.ModOptions(beatmap_path=str(map_folder / "map.osu"), ai=False))
    assert rules and all(s.source == Source.RULE for s in rules)
    assert [s.to_dict() for s in both] == [s.to_dict() for s in sort_suggestions(ai + rules)]


def test_rules_only_needs_no_song(tmp_path):
    pytest.importorskip("engine.rules", reason="engine.rules (the rule checks) is not in this checkout")
    shutil.copy(need(DAMAGED), tmp_path / "map.osu")  # its song is not beside it
    found = engine.mod(engine.ModOptions(beatmap_path=str(tmp_path / "map.osu"), ai=False))
    assert all(s.source == Source.RULE for s in found)


def test_missing_beatmap(tmp_path):
    with pytest.raises(BeatmapError, match="file not found"):
        engine.mod(engine.ModOptions(beatmap_path=str(tmp_path / "nothing.osu")))


def test_beatmap_must_be_an_osu_file(tmp_path):
    with pytest.raises(OptionError, match=r"\.osu file"):
        engine.mod(engine.ModOptions(beatmap_path=str(need(SONG))))


def test_broken_beatmap(tmp_path):
    bad = tmp_path / "broken.osu"
    bad.write_bytes(b"\x00\xff\xfe not a beatmap")
    with pytest.raises(BeatmapError, match="not an osu! beatmap"):
        engine.mod(engine.ModOptions(beatmap_path=str(bad), audio_path=str(need(SONG))))


@pytest.mark.parametrize("name, reason", [
    ("corrupted-header.osu", "no hit objects"),  # osu! reads it, but there is nothing to judge
    ("multi-segment-slider.osu", "timing point"),  # objects but no red line
])
def test_odd_beatmaps_osu_reads_are_refused_with_a_reason(name, reason):
    with pytest.raises(BeatmapError, match=reason):
        engine.mod(engine.ModOptions(beatmap_path=str(need(EDGE_CASES / name)), audio_path=str(need(SONG)),
                                     model_path=str(need(V30)), device="cpu"))


def test_missing_song_beside_the_map(tmp_path):
    shutil.copy(need(DAMAGED), tmp_path / "map.osu")
    with pytest.raises(AudioError, match="synth150.wav"):
        engine.mod(engine.ModOptions(beatmap_path=str(tmp_path / "map.osu"), model_path=str(need(V30))))
    with pytest.raises(AudioError, match="not found"):
        engine.mod(engine.ModOptions(beatmap_path=str(tmp_path / "map.osu"), audio_path=str(tmp_path / "other.mp3")))


def test_bad_options():
    with pytest.raises(OptionError, match="nothing to check"):
        engine.mod(engine.ModOptions(beatmap_path=str(need(DAMAGED)), ai=False, rules=False))
    with pytest.raises(OptionError, match="unknown option"):
        engine.build_options(engine.ModOptions, {"beatmap_path": str(DAMAGED), "min_surprise": 3})
    with pytest.raises(OptionError, match="precision"):
        engine.mod(engine.ModOptions(beatmap_path=str(DAMAGED), audio_path=str(need(SONG)),
                                     model_path=str(need(V30)), precision="fp8", rules=False))


def test_a_model_that_cannot_read_the_mode_is_refused():
    mania = need(TRAINED / "audio" / "synth150_mania.osu")
    with pytest.raises(OptionError, match="game mode 3"):
        engine.mod(engine.ModOptions(beatmap_path=str(mania), audio_path=str(need(SONG)),
                                     model_path=str(need(V30)), rules=False, device="cpu"))


@pytest.mark.parametrize("precision", ["bf16", "amp"])
def test_lower_precisions_find_the_same_spots(precision):
    # bf16 weights need the conditioning tensors in bf16 too
    found = engine.mod(engine.ModOptions(beatmap_path=str(need(DAMAGED)), audio_path=str(need(SONG)),
                                         model_path=str(need(V30)), rules=False, device="cpu",
                                         precision=precision))
    assert [s.time_ms for s in found] == [3430, 6400, 9775, 9775, 12200, 13400, 13800, 14600, 15400, 19040]
