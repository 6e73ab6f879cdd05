"""The app's desktop helpers: settings files, osu! Songs folder and mapset copies, pictures, the window probe."""
from __future__ import annotations

import json
import shutil

import pytest

from engine.beatmap import read_beatmap, read_osz
from engine.errors import OptionError
from mapperator_app import osu, pictures, window
from mapperator_app.settings import Settings
from tests.conftest import BEATMAPS, UPSTREAM, need


# --- settings ----------------------------------------------------------------------------------------------


def test_settings_survive_a_restart(tmp_path):
    path = tmp_path / "cfg" / "settings.json"
    s = Settings(path)
    assert s.songs_folder == "" and s.tab("generate") == {}
    s.set_folders(songs_folder=" /games/osu!/Songs ", output_folder="/maps")
    s.remember("generate", {"difficulty": "5.5", "descriptors": ("style/clean",), "gamemode": "mania",
                            "not_json": object()})
    again = Settings(path)
    assert again.songs_folder == "/games/osu!/Songs" and again.output_folder == "/maps"
    assert again.tab("generate") == {"difficulty": "5.5", "descriptors": ["style/clean"], "gamemode": "mania"}
    assert json.loads(path.read_text(encoding="utf-8"))["tabs"]["generate"]["gamemode"] == "mania"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"songs_folder": 5, "tabs": "x"}'])
def test_damaged_settings_mean_defaults(tmp_path, content):
    path = tmp_path / "settings.json"
    path.write_text(content, encoding="utf-8")
    s = Settings(path)
    assert s.songs_folder == "" and s.output_folder == "" and s.tab("mod") == {}
    s.remember("mod", {"model": "v30"})  # and saving replaces the damaged file
    assert Settings(path).tab("mod") == {"model": "v30"}


# --- osu! --------------------------------------------------------------------------------------------------


@pytest.fixture
def generated_map(tmp_path):
    """A real beatmap with its song beside it, as the generator writes them."""
    source = need(UPSTREAM / "trained" / "audio")
    folder = tmp_path / "out"
    folder.mkdir()
    shutil.copy(source / "synth150_std.osu", folder / "synth150_std.osu")
    audio = read_beatmap(folder / "synth150_std.osu").general.audio_filename
    shutil.copy(source / "synth150.wav", folder / audio)
    return folder / "synth150_std.osu", folder / audio


def test_install_mapset_copies_map_and_song_into_songs(tmp_path, generated_map):
    osu_path, audio = generated_map
    songs = tmp_path / "Songs"
    songs.mkdir()
    folder = osu.install_mapset(osu_path, songs)
    beatmap = read_beatmap(osu_path)
    assert folder == songs / osu.set_folder_name(beatmap)
    assert sorted(p.name for p in folder.iterdir()) == sorted([osu_path.name, audio.name])
    assert (folder / osu_path.name).read_bytes() == osu_path.read_bytes()
    with pytest.raises(OptionError, match="already exists"):
        osu.install_mapset(osu_path, songs)
    with pytest.raises(OptionError, match="Songs folder"):
        osu.install_mapset(osu_path, tmp_path / "missing")


def test_open_in_osu_uses_the_songs_folder(tmp_path, generated_map):
    osu_path, _ = generated_map
    songs = tmp_path / "Songs"
    songs.mkdir()
    message = osu.open_in_osu(osu_path, songs)
    assert "F5" in message and any(songs.iterdir())


def test_pack_osz_holds_map_and_song(generated_map):
    osu_path, audio = generated_map
    osz = osu.pack_osz(osu_path)
    assert osz.suffix == ".osz" and osz.parent == osu_path.parent
    assert sorted(read_osz(osz).names) == sorted([osu_path.name, audio.name])
    assert osu.pack_osz(osu_path).name == f"{osu_path.stem} (2).osz"  # never replaces


def test_detect_songs_folder_follows_osu_config(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("WINEPREFIX", str(tmp_path / "wine"))
    assert osu.detect_songs_folder() is None
    install = tmp_path / "data" / "osu-wine" / "osu!"
    (install / "Songs").mkdir(parents=True)
    assert osu.detect_songs_folder() == install / "Songs"
    (tmp_path / "Beatmaps").mkdir()
    (install / "osu!.someone.cfg").write_text(f"VolumeUniversal = 80\nBeatmapDirectory = {tmp_path / 'Beatmaps'}\n")
    assert osu.detect_songs_folder() == tmp_path / "Beatmaps"


def test_open_path_of_a_missing_file_says_so(tmp_path):
    with pytest.raises(OptionError, match="does not exist"):
        osu.open_path(tmp_path / "gone")


# --- pictures ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, colours", [
    ("Soleily - Renatus (Gamu) [Insane].osu", [pictures.CIRCLE]),
    ("Soleily - Renatus (MMzz) [Oni].osu", [pictures.DON, pictures.KAT]),
    ("Soleily - Renatus (Deif) [Salad].osu", [pictures.SLIDER]),
    ("sample-beatmap-mania.osu", [pictures.CIRCLE]),
])
def test_pictures_of_real_maps(name, colours):
    beatmap = read_beatmap(need(BEATMAPS / name))
    strip = pictures.timeline_strip(beatmap, size=(600, 80))
    thumb = pictures.playfield_thumbnail(beatmap, size=(320, 240))
    assert strip.size == (600, 80) and thumb.size == (320, 240)
    strip_colours = {c for _, c in strip.getcolors(600 * 80)}
    assert pictures.CIRCLE in strip_colours or pictures.SLIDER in strip_colours
    if any(p.uninherited for p in beatmap.timing_points):
        assert pictures.RED_LINE in strip_colours
    thumb_colours = {c for _, c in thumb.getcolors(320 * 240)}
    drawn = sum(n for n, c in thumb.getcolors(320 * 240) if c != pictures.BACKGROUND)
    assert drawn > 500
    if beatmap.mode != 0:  # the charts use the colours as they are; the playfield blends them
        assert all(c in thumb_colours for c in colours)


def test_pictures_of_an_empty_map():
    beatmap = read_beatmap(need(BEATMAPS / "sample-beatmap-osu.osu"))
    beatmap.hit_objects = []
    assert pictures.timeline_strip(beatmap).size == (960, 96)
    assert pictures.playfield_thumbnail(beatmap).size == (384, 288)


# --- the window --------------------------------------------------------------------------------------------


def test_no_display_means_no_window_with_a_reason(monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    problem = window.native_problem()
    assert problem is not None and "display" in problem


def test_chromium_runs_without_sandbox_as_root(monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setenv("QTWEBENGINE_CHROMIUM_FLAGS", "--disable-gpu")
    monkeypatch.setenv("PYWEBVIEW_GUI", "qt")  # prepare_environment sets it; this restores it afterwards
    window.prepare_environment()
    import os

    assert os.environ["QTWEBENGINE_CHROMIUM_FLAGS"].split() == ["--disable-gpu", "--no-sandbox"]
    window.prepare_environment()  # idempotent
    assert os.environ["QTWEBENGINE_CHROMIUM_FLAGS"].split() == ["--disable-gpu", "--no-sandbox"]


def test_bridge_without_a_window_leaves_fields_alone():
    bridge = window.Bridge()
    assert bridge.pick_file("audio", "/x/song.mp3") == ""
    assert bridge.pick_folder("") == "" and bridge.save_file("timing.osu", "") == ""
    assert bridge.ping() == "mapperator"
