"""Extreme and oversized input: sliders with a thousand control points, subnormal beat lengths, zip
bombs, archives with too many files, songs whose header announces hours, beatmaps with millions of
objects. Each is either handled like osu! handles it or refused early with a clear error."""
from __future__ import annotations

import importlib
import math
import re
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from engine.beatmap import parse_beatmap
from engine.errors import BeatmapError
from engine.events import context_events
from engine.presets import PRESETS
from engine.rules import check_beatmap
from engine.tokenizer import ContextType

slider_path_module = importlib.import_module("engine.beatmap.slider_path")
slider_compat = importlib.import_module("engine.events._upstream_parser")

HEAD = """osu file format v14

[General]
AudioFilename: audio.mp3
Mode: 0

[Metadata]
Title:t
Artist:a
Creator:c
Version:v

[Difficulty]
HPDrainRate:5
CircleSize:4
OverallDifficulty:5
ApproachRate:5
SliderMultiplier:1.4
SliderTickRate:1

"""


def osu_text(timing: list[str], objects: list[str]) -> str:
    return HEAD + "[TimingPoints]\n" + "\n".join(timing) + "\n\n[HitObjects]\n" + "\n".join(objects) + "\n"


def long_bezier(points: int = 1100) -> str:
    """A Bezier slider through ``points`` distinct control points (no red anchors)."""
    path = "|".join(f"{(i * 7) % 512}:{(i * 13) % 384}" for i in range(points))
    return f"256,192,1000,2,0,B|{path},1,300"


def run_pipeline(beatmap) -> None:
    """Everything mod and generate do with a beatmap, short of a model: timing, events, rules."""
    for obj in beatmap.hit_objects:
        assert math.isfinite(beatmap.end_time(obj))
    beatmap.combo_info()
    for version in ("v30", "v32"):
        for context in (ContextType.TIMING, ContextType.MAP, ContextType.SV, ContextType.GD):
            context_events(context, beatmap, PRESETS[version].data, song_length_ms=5000)
    check_beatmap(beatmap)


# --- extreme values ------------------------------------------------------------------------------------------


def test_bezier_with_1100_control_points():
    beatmap = parse_beatmap(osu_text(["0,500,4,2,0,100,1,0"], [long_bezier(), "256,192,3000,1,0,0:0:0:0:"]))
    slider = beatmap.hit_objects[0]
    assert len(slider.curve_points) == 1100
    info = beatmap.slider_info(slider)
    assert np.isfinite(info.path.vertices).all() and len(info.path.vertices) >= 2
    assert info.distance == pytest.approx(300) and info.path.calculated_distance > 300
    # the tokenizer's Bernstein form needs binomials up to C(1099, 549) ~ 1e329, past a float
    view_points = [(int(slider.x), int(slider.y))] + [(int(p.x), int(p.y)) for p in slider.curve_points]
    end = slider_compat.end_position("B", view_points, 300.0)
    assert all(math.isfinite(v) for v in end)
    run_pipeline(beatmap)


def test_long_bezier_matches_short_form_where_both_work():
    """Above ~1030 points the tokenizer switches to log-space Bernstein weights; they agree with the
    binomial form wherever that one is finite."""
    rng = np.random.default_rng(3)
    points = [tuple(map(int, p)) for p in rng.integers(0, 512, size=(600, 2))]
    t = np.linspace(0, 1, 50)
    direct = slider_compat._bezier_at(points, t)
    logs = slider_compat._log_bernstein_weights(len(points) - 1, t.reshape(-1, 1))
    assert np.allclose(direct, np.sum(logs[:, None] * np.array(points).T, axis=-1), atol=1e-6)


def test_array_subdivision_is_bit_identical():
    """Long control polygons are subdivided with numpy; the vertices must not move by a single bit."""
    rng = np.random.default_rng(0)
    for n in (60, 150):
        for degree in (None, 3):
            points = np.cumsum(rng.normal(0, 40, size=(n, 2)), axis=0).round()
            fast = slider_path_module.approximate_bspline(points, degree)
            old = slider_path_module.ARRAY_SUBDIVISION_MIN_POINTS
            try:
                slider_path_module.ARRAY_SUBDIVISION_MIN_POINTS = 10**9
                slow = slider_path_module.approximate_bspline(points, degree)
            finally:
                slider_path_module.ARRAY_SUBDIVISION_MIN_POINTS = old
            assert fast.shape == slow.shape and np.array_equal(fast, slow)


@pytest.mark.parametrize("red, green, sv", [("1e-320", "-1e-320", 10), ("5e-324", "-5e-324", 10), ("1e-300", "NaN", 1),
                                            ("0.0001", "-2147483647", 0.1)])
def test_subnormal_and_extreme_beat_lengths(red, green, sv):
    beatmap = parse_beatmap(osu_text([f"0,{red},4,2,0,100,1,0", f"100,{green},4,2,0,100,0,0"],
                                     ["256,192,1000,2,0,B|300:200|350:100,1,300", "256,192,3000,1,0,0:0:0:0:",
                                      "256,192,4000,12,0,4500"]))
    red_line = beatmap.timing_points[0]
    assert red_line.bpm == 10000  # osu! plays beat lengths under 6 ms as 6 ms
    assert beatmap.beat_length_at(1000) == 6
    assert beatmap.slider_velocity_at(1000) == sv  # clamped to 0.1..10; NaN means 1
    run_pipeline(beatmap)
    from engine.postprocess import settings_from_beatmap

    assert settings_from_beatmap(beatmap).bpm == 10000


def test_objects_at_the_end_of_time_make_bounded_event_streams():
    """A spinner ending, and a circle starting, at 2147483647 ms (24 days): the beat grid and the
    spinner's sustain events stop where any song has ended instead of filling memory."""
    beatmap = parse_beatmap(osu_text(["0,300,4,2,0,100,1,0"],
                                     ["256,192,1000,12,0,2147483647", "256,192,2147483647,1,0,0:0:0:0:"]))
    run_pipeline(beatmap)
    for context in (ContextType.TIMING, ContextType.MAP):
        stream = context_events(context, beatmap, PRESETS["v32"].data)
        assert 0 < len(stream.events) < 200_000


def test_a_beat_grid_of_millions_of_beats_is_refused():
    beatmap = parse_beatmap(osu_text(["0,1,4,2,0,100,1,0"], ["256,192,0,1,0,0:0:0:0:", "256,192,7000000,1,0,0:0:0:0:"]), "fuzzed.osu")
    with pytest.raises(BeatmapError, match="fuzzed.osu: its timing makes a beat grid of 7000001 beats"):
        context_events(ContextType.TIMING, beatmap, PRESETS["v32"].data)
    check_beatmap(beatmap)  # the rules have no grid to walk


# --- beatmaps with too many objects ----------------------------------------------------------------------------

decoder = importlib.import_module("engine.beatmap.decoder")


def test_a_beatmap_with_more_objects_than_the_cap_is_refused_before_parsing(tmp_path, monkeypatch):
    """250,000 circles (a 6.5 MB file; the 50 MB one of the issue has 1.9 million) fail at once, naming
    the file, the count and the limit, before a single object is parsed."""
    parsed = []
    original = decoder._Decoder._hit_object
    monkeypatch.setattr(decoder._Decoder, "_hit_object", lambda self, *a: parsed.append(1) or original(self, *a))
    path = tmp_path / "huge.osu"
    path.write_bytes(osu_text(["0,500,4,2,0,100,1,0"], []).encode() + b"256,192,1000,1,0,0:0:0:0:\n" * 250_000)
    with pytest.raises(BeatmapError) as e:
        decoder.read_beatmap(path)
    assert e.value.path == path  # 250,000 lines of objects and a blank one:
    assert re.search(r"has 25000\d lines of hit objects, more than the 200000 allowed", e.value.reason)
    assert parsed == []


def test_the_object_cap_also_holds_while_parsing(monkeypatch):
    """With old Mac line ends (CR only) the fast count sees one line; parsing still stops at the cap."""
    monkeypatch.setattr(decoder, "MAX_HIT_OBJECTS", 1000)
    parsed = []
    original = decoder._Decoder._hit_object
    monkeypatch.setattr(decoder._Decoder, "_hit_object", lambda self, *a: parsed.append(1) or original(self, *a))
    text = osu_text(["0,500,4,2,0,100,1,0"], ["256,192,1000,1,0,0:0:0:0:"] * 5000).replace("\n", "\r")
    with pytest.raises(BeatmapError, match="more than the 1000 hit objects allowed") as e:
        parse_beatmap(text, "cr.osu")
    assert e.value.line is not None and len(parsed) == 1001


def test_timing_point_cap(monkeypatch):
    monkeypatch.setattr(decoder, "MAX_TIMING_POINTS", 100)
    with pytest.raises(BeatmapError, match="101 lines of timing points, more than the 100 allowed"):
        parse_beatmap(osu_text([f"{i},500,4,2,0,100,1,0" for i in range(101)], []), "lines.osu")
    assert len(parse_beatmap(osu_text([f"{i},500,4,2,0,100,1,0" for i in range(100)], [])).timing_points) == 100


def test_a_slider_with_too_many_control_points_is_dropped_with_a_warning(monkeypatch):
    monkeypatch.setattr(decoder, "MAX_SLIDER_POINTS", 1000)
    beatmap = parse_beatmap(osu_text(["0,500,4,2,0,100,1,0"], [long_bezier(1001), long_bezier(1000)]))
    assert [len(s.curve_points) for s in beatmap.hit_objects] == [1000]
    assert any("1001 control points, more than the 1000" in w.reason for w in beatmap.warnings)


# --- archives ------------------------------------------------------------------------------------------------

osz_module = importlib.import_module("engine.beatmap.osz")
SOME_MAP = osu_text(["0,500,4,2,0,100,1,0"], ["256,192,1000,1,0,0:0:0:0:"])


def write_zip(path, files: dict) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)


def peak_memory(call) -> int:
    """Peak bytes Python allocated while ``call`` ran (what it raised is re-raised)."""
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.fixture
def small_caps(monkeypatch):
    """The archive caps scaled down 64 times, so that a bomb over them takes milliseconds to make."""
    monkeypatch.setattr(osz_module, "MAX_OSZ_BEATMAP_BYTES", 2 << 20)
    monkeypatch.setattr(osz_module, "MAX_OSZ_SIZE", 16 << 20)
    monkeypatch.setattr(osz_module, "MAX_OSZ_ENTRIES", 100)


def test_zip_bomb_is_refused_before_it_is_unpacked(tmp_path, small_caps):
    """8 MB of .osu compressing to 8 kB, over the (scaled) cap for beatmaps: refused from the sizes the
    archive declares, naming the file and the limit, with no memory spent on its content."""
    bomb = tmp_path / "bomb.osz"
    write_zip(bomb, {"map.osu": SOME_MAP, "bomb.osu": SOME_MAP + " " * (8 << 20)})
    assert bomb.stat().st_size < 100_000
    errors = []
    peak = peak_memory(lambda: errors.append(pytest.raises(BeatmapError, osz_module.read_osz, bomb)))
    error = errors[0].value
    assert error.path == bomb and "8 MiB, more than the 2 MiB" in error.reason and "zip bomb" in error.reason
    assert peak < 1 << 20


def test_zip_bomb_with_lying_sizes_stops_while_reading(tmp_path, small_caps):
    """The same bomb with its declared size patched to 100 bytes: reading stops at what was declared
    and at the cap, never holding the 8 MB. (zipfile itself reads no further than the declared size
    and then fails its CRC check; the reader must keep that property.)"""
    bomb = tmp_path / "liar.osz"
    write_zip(bomb, {"bomb.osu": SOME_MAP + " " * (8 << 20)})
    data = bytearray(bomb.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local and central headers
        at = data.index(signature)
        data[at + offset:at + offset + 4] = struct.pack("<I", 100)
    bomb.write_bytes(bytes(data))
    errors = []
    peak = peak_memory(lambda: errors.append(pytest.raises(BeatmapError, osz_module.read_osz, bomb)))
    assert errors[0].value.path == bomb
    assert peak < 4 << 20
    with pytest.raises(BeatmapError):
        osz_module.read_member(bomb, "bomb.osu", 1 << 20)


def test_the_real_caps_refuse_a_bomb_and_keep_real_sets(tmp_path):
    """Unscaled: three .osu of 45 MiB each (each under the 64 MiB a single .osu may have, 135 MiB in
    all, 140 kB compressed) are refused without being read; two ordinary difficulties are read."""
    bomb = tmp_path / "bomb.osz"
    block = b" " * (1 << 20)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("a.osu", "b.osu", "c.osu"):
            with z.open(name, "w") as f:
                for _ in range(45):
                    f.write(block)
    errors = []
    peak = peak_memory(lambda: errors.append(pytest.raises(BeatmapError, osz_module.read_osz, bomb)))
    assert "135 MiB, more than the 128 MiB" in errors[0].value.reason and peak < 1 << 20
    fine = tmp_path / "fine.osz"
    write_zip(fine, {"a.osu": SOME_MAP, "b.osu": SOME_MAP, "audio.mp3": b"\xff" * 1000})
    assert len(osz_module.read_osz(fine).difficulties) == 2


def test_an_archive_with_too_many_files_is_refused(tmp_path):
    many = tmp_path / "many.osz"
    with zipfile.ZipFile(many, "w") as z:
        z.writestr("map.osu", SOME_MAP)
        for i in range(10_000):
            z.writestr(f"sb/{i}.png", b"")
    with pytest.raises(BeatmapError, match="10001 files, more than the 10000") as e:
        osz_module.read_osz(many)
    assert e.value.path == many


# --- songs and training --------------------------------------------------------------------------------------


def wav_header(rate: int, frames: int) -> bytes:
    """A PCM WAV header: 8-bit mono at ``rate`` Hz announcing ``frames`` samples."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    return b"RIFF" + struct.pack("<I", 36 + frames) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", frames)


def osz_set(path, song_name: str, song: bytes):
    from engine.training.dataset import MapSet

    write_zip(path, {"map.osu": SOME_MAP.replace("audio.mp3", song_name), song_name: song})
    return MapSet((1, path.name), path.stem, (), osz_path=path, audio_member=song_name)


def test_a_song_announcing_hours_is_refused_before_it_is_extracted(tmp_path):
    """Inside an .osz, a WAV whose header announces 2.5 hours (9 MB of samples, 9 kB compressed) is
    refused from its header, naming the archive member and the limit, without unpacking the 9 MB."""
    from engine.errors import AudioError
    from engine.training.dataset import AudioSource

    seconds = 9000
    s = osz_set(tmp_path / "long.osz", "song.wav", wav_header(1000, 1000 * seconds) + b"\x80" * (1000 * seconds))
    errors = []
    peak = peak_memory(lambda: errors.append(pytest.raises(AudioError, AudioSource(s).load, 16000)))
    message = str(errors[0].value)
    assert "long.osz/song.wav" in message and "150 minutes long, over the 120-minute limit" in message
    assert peak < 4 << 20


def test_a_huge_song_entry_is_refused_from_its_declared_size(tmp_path):
    """A song entry the archive declares as 800 MB is refused before a byte of it is read."""
    from engine.errors import AudioError
    from engine.training.dataset import AudioSource

    path = tmp_path / "huge.osz"
    s = osz_set(path, "song.mp3", b"\xff\xfb" * 1000)
    data = bytearray(path.read_bytes())
    song = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)  # the central header of the 2nd entry
    data[song + 24:song + 28] = struct.pack("<I", 800 << 20)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"huge.osz/song.mp3: the song is 800 MiB, over the 512 MiB limit"):
        AudioSource(s).load(16000)


def test_training_skips_a_zip_bomb_and_lists_it(tmp_path, small_caps):
    from engine.training.dataset import SkipLog, read_dataset

    root = tmp_path / "osz"
    root.mkdir()
    write_zip(root / "1 fine.osz", {"map.osu": SOME_MAP, "audio.mp3": b"\xff" * 100})
    write_zip(root / "2 bomb.osz", {f"{i}.osu": SOME_MAP + " " * (1 << 20) for i in range(3)} | {"audio.mp3": b""})
    skipped, sets = SkipLog(), []
    peak = peak_memory(lambda: sets.extend(read_dataset(root, "osz", skipped)))
    assert [s.osz_path.name for s in sets] == ["1 fine.osz"]
    reasons = [r for r in skipped.counts if r.startswith("unreadable .osz")]
    assert len(reasons) == 1 and "zip bomb" in reasons[0] and "2 bomb.osz" in skipped.summary()
    assert peak < 2 << 20


# --- rule checks stay linear ---------------------------------------------------------------------------------

beatmap_stacking = importlib.import_module("engine.beatmap.stacking")
rules_timing = importlib.import_module("engine.rules.timing_checks")


def counting(monkeypatch, module, name: str) -> list:
    """Count the calls of ``module.name`` (a module-level function the rules look up when called)."""
    calls = []
    original = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a: calls.append(1) or original(*a))
    return calls


def test_rules_on_a_large_map_fetch_the_timing_once(monkeypatch):
    """Every slider's timing used to re-check the whole list of timing points (time in proportion to
    sliders x timing points); the checks now fetch the lookups once. (bench/rules.py times it.)"""
    from bench.rules import synthetic_map
    from engine.beatmap import Beatmap

    beatmap = synthetic_map(8000)
    assert len(beatmap.hit_objects) == 8000 and len(beatmap.timing_points) > 2000
    fetched = counting(monkeypatch, Beatmap, "control_points")
    found = check_beatmap(beatmap)
    assert {s.check for s in found} >= {"unsnapped", "offscreen"}
    assert len(fetched) <= 2


def test_many_lines_at_one_time_are_checked_in_linear_time(monkeypatch):
    """3000 green lines whose times differ by float noise (1e-13 ms) count as one time: each line's
    section end used to be found by walking all the lines after it."""
    lines = ["0,500,4,2,0,100,1,0"] + [f"{1000 + i * 1e-13!r},-{50 + i % 100},4,2,0,{i % 100},0,0"
                                       for i in range(3000)]
    beatmap = parse_beatmap(osu_text(lines, ["256,192,1000,2,0,L|300:192,1,40"]))
    compared = counting(monkeypatch, rules_timing, "_same_time")
    found = check_beatmap(beatmap, checks=["unused-lines", "concurrent-lines"])
    assert any("3000 concurrent inherited lines" in s.message for s in found)
    assert len(compared) < 20 * 3000  # one pass; it was 3000 x 3000 / 2


def test_thousands_of_objects_inside_one_approach_time_are_stacked_in_linear_time(monkeypatch):
    objects = [f"{i % 500},{i // 500 * 10},1000,1,0,0:0:0:0:" for i in range(3000)]  # all at 1000 ms, apart
    beatmap = parse_beatmap(osu_text(["0,500,4,2,0,100,1,0"], objects))
    near = counting(monkeypatch, beatmap_stacking, "_near")
    check_beatmap(beatmap, checks=["offscreen"])
    assert 0 < len(near) <= 3000 * beatmap_stacking.MAX_STACK_SEARCH  # it was 3000 x 3000 / 2


def test_an_archive_announcing_a_million_files_is_refused_before_zipfile_lists_them(tmp_path, monkeypatch):
    """The count in the archive's end record (here ZIP64: 1,000,001 files) is checked before zipfile
    builds an object per file."""
    many = tmp_path / "million.osz"
    write_zip(many, {"map.osu": SOME_MAP})
    data = bytearray(many.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    zip64 = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 1_000_001, 1_000_001,
                        end - data.index(b"PK\x01\x02"), data.index(b"PK\x01\x02"))
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, end, 1)
    record = bytearray(data[end:])
    record[8:12] = struct.pack("<HH", 0xFFFF, 0xFFFF)
    many.write_bytes(bytes(data[:end]) + zip64 + locator + bytes(record))
    listed = counting(monkeypatch, zipfile.ZipFile, "_RealGetContents")
    with pytest.raises(BeatmapError, match="1000001 files, more than the 10000") as e:
        osz_module.read_osz(many)
    assert e.value.path == many and listed == []
