"""Slider paths, durations and nested events, checked against osu!'s facts, geometry and rosu-pp."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from engine.beatmap import (CurvePoint, HitCircle, Slider, Spinner, control_points, parse_beatmap, read_beatmap,
                            slider_path)
from engine.beatmap.slider_path import CircularArc, approximate_bspline
from tests.conftest import BEATMAPS, UPSTREAM, need


def _cps(slider, version=14):
    return [(p.x, p.y, p.type) for p in control_points(slider, version)]


def test_multi_segment_control_points_follow_osu(edge_cases_dir):
    sliders = read_beatmap(edge_cases_dir / "multi-segment-slider.osu").hit_objects
    assert _cps(sliders[0], 128) == [(0, 0, "P"), (161, -244, None), (376, -3, "B"), (68, 15, None),
                                     (259, -132, None), (92, -107, None)]
    assert _cps(sliders[1], 128) == [(0, 0, "P"), (161, -244, None), (376, -3, None)]
    assert _cps(sliders[2], 128) == [(0, 0, "B"), (0, 192, None), (224, 192, None), (224, 0, "B"),
                                     (224, -192, None), (480, -192, None), (480, 0, None)]
    assert _cps(sliders[3], 128) == [(0, 0, "B"), (1, 1, None), (2, 2, None), (3, 3, None), (3, 3, None)]
    assert [t for *_, t in _cps(sliders[4], 128)] == ["B", None, None, None, None, "B", None]
    assert [t for *_, t in _cps(sliders[5], 128)] == ["B", None, "B", None, None]  # implicit: becomes Bezier
    assert [t for *_, t in _cps(sliders[6], 128)] == ["P", None, "P", None, None]  # explicit: stays perfect


def test_catmull_segments_merge_before_lazer(edge_cases_dir):
    adjacent = read_beatmap(edge_cases_dir / "adjacent-catmull-segments.osu").hit_objects[0]
    assert len(_cps(adjacent, 14)) == 6 and [t for *_, t in _cps(adjacent, 14) if t] == ["C"]
    assert [t for *_, t in _cps(adjacent, 128)] == ["C", "C", "C", None]
    duplicate = read_beatmap(edge_cases_dir / "catmull-duplicate-initial-controlpoint.osu").hit_objects[0]
    points = _cps(duplicate)
    assert len(points) == 4 and points[0] == (0, 0, "C") and points[1][:2] != (0, 0)


def test_no_extension_when_the_last_point_repeats(edge_cases_dir):
    slider = read_beatmap(edge_cases_dir / "duplicate-last-position-slider.osu").hit_objects[0]
    path = slider_path(slider)
    assert path.expected_distance == 2 and path.distance == 1


def _all_sliders(mode=None):
    for path in sorted(BEATMAPS.glob("*.osu")):
        beatmap = read_beatmap(path)
        if mode is None or beatmap.mode == mode:
            yield beatmap, [o for o in beatmap.hit_objects if isinstance(o, Slider)]


def test_paths_have_the_written_length(beatmaps_dir):
    checked = 0
    for beatmap, sliders in _all_sliders():
        for slider in sliders:
            path = slider_path(slider, beatmap.format_version)
            verts = path.vertices
            stuck = len(verts) >= 2 and np.array_equal(verts[-1], verts[-2]) and slider.length > path.calculated_distance
            if not stuck:
                assert path.distance == pytest.approx(slider.length, abs=1e-6), (beatmap.metadata.version, slider)
                steps = np.hypot(*np.diff(verts, axis=0).T).sum()
                # optimised Catmull paths keep the length of the vertices they dropped
                assert steps <= path.distance + 1e-6
                if slider.curve_type != "C":
                    assert steps == pytest.approx(path.distance, abs=1e-6)
            assert np.allclose(path.position_at(0.0), (slider.x, slider.y))
            checked += 1
    assert checked > 1000


def test_bezier_vertices_lie_on_the_curve():
    rng = np.random.default_rng(7)
    for _ in range(20):
        points = rng.uniform(0, 512, size=(int(rng.integers(3, 7)), 2))
        vertices = approximate_bspline(points)
        t = np.linspace(0, 1, 20001)[:, None]
        n = len(points) - 1
        coeff = np.array([math.comb(n, k) for k in range(n + 1)])
        exact = (coeff * t ** np.arange(n + 1) * (1 - t) ** (n - np.arange(n + 1))) @ points
        gaps = np.min(np.hypot(*(vertices[:, None, :] - exact[None]).transpose(2, 0, 1)), axis=1)
        assert gaps.max() < 0.25  # osu!'s Bezier tolerance
        assert np.allclose(vertices[[0, -1]], points[[0, -1]])


def test_perfect_curves_are_circular_arcs():
    slider = Slider(x=100, y=200, time=0, curve_type="P", curve_points=(CurvePoint(200, 100), CurvePoint(300, 200)),
                    length=200.0)
    path = slider_path(slider)
    radius = np.hypot(*(path.vertices - (200, 200)).T)
    assert np.allclose(radius[:-1], 100, atol=1e-9)  # the last vertex is where the length cuts a chord
    assert path.distance == pytest.approx(200)
    # 200 px along a circle of radius 100 from (100, 200), curving up, is at 2 rad; the length is measured
    # along chords (0.1 px from the arc), so the end lands a little further but still on the circle
    end = path.position_at(1.0)
    exact = [200 - 100 * math.cos(2.0), 200 - 100 * math.sin(2.0)]
    assert np.hypot(*(end - exact)) < 0.5 and abs(np.hypot(*(end - (200, 200))) - 100) < 0.1
    arc = CircularArc.through(np.array([(0, 0), (1, 1), (2, 2)], dtype=float))
    assert arc is None  # colinear: no circle


def test_colinear_perfect_curves_become_linear():
    slider = Slider(x=0, y=0, time=0, curve_type="P", curve_points=(CurvePoint(50, 0), CurvePoint(100, 0)),
                    length=150.0)
    assert [t for *_, t in _cps(slider)] == ["L", None, None]
    assert slider_path(slider).position_at(1.0) == pytest.approx([150, 0])  # extended along the line


def test_linear_path_positions_and_shortening():
    slider = Slider(x=0, y=0, time=0, curve_type="L", curve_points=(CurvePoint(100, 0), CurvePoint(100, 100)),
                    length=150.0)
    path = slider_path(slider)
    assert path.position_at(np.array([0, 0.5, 1.0])) == pytest.approx(np.array([[0, 0], [75, 0], [100, 50]]))
    assert path.segment_ends == pytest.approx([200 / 150])  # one segment, cut before its end


def _std_map_paths():
    paths = sorted(BEATMAPS.glob("*.osu")) + sorted((UPSTREAM / "tokenization").glob("*.osu"))
    std = [p for p in paths if read_beatmap(p).mode == 0]  # other modes convert sliders differently
    return [pytest.param(p, id=p.name) for p in std] or [pytest.param(None, marks=pytest.mark.skip("no data"))]


@pytest.mark.parametrize("path", _std_map_paths())
def test_nested_objects_match_rosu_pp_max_combo(path):
    rosu = pytest.importorskip("rosu_pp_py")
    beatmap = read_beatmap(path)
    combo = 0
    for obj in beatmap.hit_objects:
        if isinstance(obj, Slider):
            combo += sum(e.kind != "legacy_last_tick" for e in beatmap.slider_info(obj).events)
        else:
            combo += 1
    assert combo == rosu.Difficulty().calculate(rosu.Beatmap(path=str(path))).max_combo


def test_old_maps_space_ticks_by_unscaled_beats():
    rosu = pytest.importorskip("rosu_pp_py")
    body = ("\n[Difficulty]\nSliderMultiplier:1.4\nSliderTickRate:1\n[TimingPoints]\n0,500,4,1,0,100,1,0\n"
            "0,-50,4,1,0,100,0,0\n[HitObjects]\n0,0,0,2,0,L|400:0,1,400\n")
    for version, ticks in (("v7", 2), ("v14", 1)):  # before v8 ticks ignore the SV (here 2)
        text = f"osu file format {version}\n{body}"
        info = parse_beatmap(text).slider_info(parse_beatmap(text).hit_objects[0])
        assert len(info.ticks) == ticks
        assert len(info.events) - 1 == rosu.Difficulty().calculate(rosu.Beatmap(content=text)).max_combo


def test_slider_timing_and_events():
    text = ("osu file format v14\n[Difficulty]\nSliderMultiplier:1.4\nSliderTickRate:2\n[TimingPoints]\n"
            "1000,500,4,1,0,100,1,0\n1000,-50,4,1,0,100,0,0\n[HitObjects]\n0,0,1000,2,0,L|560:0,3,560\n").replace(
        "SliderTickRate:2", "SliderTickRate:1")
    beatmap = parse_beatmap(text)
    info = beatmap.slider_info(beatmap.hit_objects[0])
    assert info.velocity == pytest.approx(100 * 1.4 * 2 / 500)  # px/ms at SV 2
    assert info.span_count == 3 and info.span_duration == pytest.approx(1000)
    assert info.end_time == pytest.approx(4000) == beatmap.end_time(beatmap.hit_objects[0])
    assert info.end_position == pytest.approx((560, 0))
    kinds = [e.kind for e in info.events]
    assert kinds[0] == "head" and kinds[-2:] == ["legacy_last_tick", "tail"] and kinds.count("repeat") == 2
    # ticks every 280 px (one beat at SV 2, tick rate 1), none at the ends
    assert [e.position[0] for e in info.ticks] == pytest.approx([280, 280, 280])
    assert [e.time for e in info.ticks] == pytest.approx([1500, 2500, 3500])
    assert [e.time for e in info.repeats] == pytest.approx([2000, 3000])
    legacy = info.events[-2]
    assert legacy.time == pytest.approx(4000 - 36) and legacy.position[0] == pytest.approx(560 - 36 * info.velocity)
    assert info.position_at_time(2500) == pytest.approx((280, 0))
    assert all(a.time <= b.time for a, b in zip(info.events, info.events[1:]))


def test_zero_length_sliders_have_one_span():
    beatmap = parse_beatmap("osu file format v14\n[HitObjects]\n100,100,0,2,0,L|100:100,5,0\n")
    info = beatmap.slider_info(beatmap.hit_objects[0])
    assert info.span_count == 1 and info.duration == 0 and [e.kind for e in info.events] == [
        "head", "legacy_last_tick", "tail"]


def test_slider_ends_agree_with_upstream_goldens(upstream):
    # upstream's slider library truncates the end time to whole ms; osu! keeps the double
    goldens = json.loads(need(upstream / "tokenization" / "v30.json").read_text())
    for name in ("kimi_no_bouken.osu", "visual_spacing_test12.osu"):
        beatmap = read_beatmap(upstream / "tokenization" / name)
        ends = [t for kind, _, t in goldens[name]["map_events"] if kind == "slider_end"]
        ours = [beatmap.end_time(o) for o in beatmap.hit_objects if isinstance(o, Slider)]
        assert len(ours) == len(ends)
        assert all(-1e-6 < a - b <= 1 + 1e-6 for a, b in zip(ours, ends))


def test_end_times_of_other_objects(beatmaps_dir):
    beatmap = read_beatmap(beatmaps_dir / "sample-beatmap-osu.osu")
    spinner = next(o for o in beatmap.hit_objects if isinstance(o, Spinner))
    circle = next(o for o in beatmap.hit_objects if isinstance(o, HitCircle))
    assert beatmap.end_time(spinner) == spinner.end_time and beatmap.end_time(circle) == circle.time
