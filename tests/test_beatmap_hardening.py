"""Extreme and oversized input: sliders with a thousand control points, subnormal beat lengths, zip
bombs, archives with too many files, songs whose header announces hours, beatmaps with millions of
objects. Each is either handled like osu! handles it or refused early with a clear error."""
from __future__ import annotations

import importlib
import math
import re

import numpy as np
import pytest

from engine.beatmap import parse_beatmap
from engine.errors import BeatmapError
from engine.events import context_events
from engine.presets import PRESETS
from engine.rules import check_beatmap
from engine.tokenizer import ContextType

slider_path_module = importlib.import_module("engine.beatmap.slider_path")
slider_compat = importlib.import_module("engine.events._slider_compat")

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
